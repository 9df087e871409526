"""Unsubscribe links and pages: the signed ``token``, the preference page and RFC 8058 one-click
(``service``), and "email me a new link" (``link_request``). Notices build their links with
``token``.
"""
