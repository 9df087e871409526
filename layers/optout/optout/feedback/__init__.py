"""SES feedback (``ses_events``): a hard bounce or repeated soft ones block the email channel, a
complaint opts the address out of every optional topic."""
