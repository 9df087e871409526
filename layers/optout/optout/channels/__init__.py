"""Outbound channels: SMS now; email (SES raw MIME) joins with the notices."""
