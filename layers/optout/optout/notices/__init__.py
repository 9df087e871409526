"""Admin notices: policy-change notices, breach alerts, product and marketing mail and texts."""
