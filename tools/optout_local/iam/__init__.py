"""IAM for the local stack: AWS's policy evaluation logic, applied to every call a function makes."""
