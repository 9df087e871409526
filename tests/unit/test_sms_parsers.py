"""Inbound SMS parsers never raise anything but InvalidInbound, whatever arrives."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from optout.sms.inbound import InboundSms, InvalidInbound, from_sqs_body, from_twilio, parse_queued

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=20), inner, max_size=6),
    max_leaves=20,
)
FIELDS = ["originationNumber", "destinationNumber", "messageBody", "inboundMessageId", "messageKeyword"]


@settings(max_examples=300)
@given(st.text(max_size=400))
def test_any_text_body_is_parsed_or_refused(body: str) -> None:
    with contextlib.suppress(InvalidInbound):
        assert isinstance(from_sqs_body(body, NOW), InboundSms)


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6), st.booleans())
def test_any_two_way_sms_shape_raw_or_enveloped_is_parsed_or_refused(document: dict, enveloped: bool) -> None:  # type: ignore[type-arg]
    body = json.dumps(document)
    if enveloped:
        body = json.dumps({"Type": "Notification", "Message": body, "Timestamp": "2026-11-26T10:00:00.000Z"})
    try:
        sms = from_sqs_body(body, NOW)
    except InvalidInbound:
        return
    assert sms.provider == "end_user_messaging" and len(sms.body) <= 1600


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(["From", "To", "Body", "MessageSid", "AccountSid", "X"]), st.text(max_size=60)))
def test_any_twilio_form_is_parsed_or_refused(form: dict[str, str]) -> None:
    try:
        sms = from_twilio(form, NOW)
    except InvalidInbound:
        return
    assert sms.provider == "twilio" and sms.sent_at == NOW


def test_a_hand_off_as_earlier_releases_wrote_it_is_still_a_hand_off() -> None:
    # Given a handed-off webhook exactly as the SmsWebhook function has always written it (a message
    # waiting in InboundSmsQueue or its DLQ across a deploy): its kind is data, not a module path
    body = json.dumps({
        "kind": "optout.twilio-webhook", "version": 1, "attempt": "a" * 32, "received_at": NOW.isoformat(),
        "params": [["From", "+14155550101"], ["To", "+14155550100"], ["Body", "STOP"], ["MessageSid", "SM" + "1" * 32]],
    })  # fmt: skip
    # When the SmsInbound function reads it
    sms, attempt = parse_queued(body, NOW)
    # Then it is the Twilio message it carried, with the attempt that handed it off
    assert (sms.provider, sms.body, sms.from_number, attempt) == ("twilio", "STOP", "+14155550101", "a" * 32)
