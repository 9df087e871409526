"""A data subject's rights and the proof owed to an authority, above every other context.

``erasure`` (the subject's data goes, the opt-out stays), ``subject`` (export, and a link for one
address), ``compliance`` (time-to-honour, pure) and ``compliance_admin`` (its pages for the admin
API).
"""
