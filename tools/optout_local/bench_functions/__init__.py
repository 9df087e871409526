"""Functions the bench runs beside the template's, on the same local Lambda runtime (never deployed)."""
