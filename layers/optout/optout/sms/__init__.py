"""Inbound SMS: ``keywords`` (STOP, START, HELP, and what a person means by other words),
``twilio`` (signed webhooks and TwiML) and ``inbound`` (the intake that turns a reply into a
consent change and at most one answer).
"""
