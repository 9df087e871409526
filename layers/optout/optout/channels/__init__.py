"""Outbound channels: ``email`` (SES v2 bulk and raw sends), ``sms`` (SNS, or End User Messaging) and
``pacing`` (the quota's token bucket, and at most one try of a call that may have taken effect).
They know nothing of notices: a notice renders into ``email.RenderedEmail``.
"""
