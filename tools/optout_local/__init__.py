"""optout's local stack and admin CLI. Never shipped to Lambda."""
