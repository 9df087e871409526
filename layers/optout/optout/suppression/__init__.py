"""Suppression: who may be sent what, kept by hashed address so it outlives an erasure.

``model`` (the state and its pure rules), ``store`` (the SuppressionTable), ``consent`` (a change
and its audit event, written together), ``admin`` (look up, add, lift) and ``bulk`` (import,
export). Every context that sends or takes an opt-out stands on this one.
"""
