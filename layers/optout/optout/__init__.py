"""optout: the domain package shipped in the Lambda layer.

Handlers in ``functions/`` call into this package; nothing here imports from them.
"""
