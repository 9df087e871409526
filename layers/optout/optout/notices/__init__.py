"""Admin notices: policy-change and change-of-control notices, breach alerts, product and
marketing mail and texts; from the request (``admin``) through the manifest (``dispatch``) to
each recipient's decision at send time (``rules``, ``send``) and the evidence (``store``).
"""
