"""optout.feedback.ses_events: parsing SES events (both formats, raw or in SNS) and their effect on suppression.

No AWS: the service runs over MemorySuppressionStore with a fixed pepper and an injected clock.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from optout.core.identity import address_key, normalise_email
from optout.core.settings import Settings
from optout.feedback.ses_events import Feedback, FeedbackEvent, FeedbackOutcome, InvalidFeedback, parse, redact
from optout.suppression.store import MemorySuppressionStore, OnceMarker
from optout.web.http import http_status

EVENTS = Path(__file__).resolve().parents[2] / "events"
PEPPER = b"p" * 32
SETTINGS = Settings()
OPTIONAL = SETTINGS.optional_topics
REQUIRED = SETTINGS.required_topics
T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
MESSAGE_ID = "010001812345abcd-11111111-2222-3333-4444-555555555555-000000"
NOTICE_ID = "ntc_20261126T100000_000000000000"
FEEDBACK_TIME = "2026-11-26T10:00:01.000Z"
FEEDBACK_AT = datetime(2026, 11, 26, 10, 0, 1, tzinfo=UTC)

# (format field, wrapped in an SNS envelope?)
FORMATS = [
    pytest.param("eventType", False, id="event-raw"),
    pytest.param("eventType", True, id="event-sns"),
    pytest.param("notificationType", False, id="notification-raw"),
    pytest.param("notificationType", True, id="notification-sns"),
]
EVENT_FORMATS = [FORMATS[0], FORMATS[1]]


# --- builders ------------------------------------------------------------------------------


def key(address: str) -> str:
    return address_key(PEPPER, "email", address)


def mail(headers: Any = None, message_id: str | None = MESSAGE_ID) -> dict[str, Any]:
    value: dict[str, Any] = {
        "timestamp": "2026-11-26T10:00:00.000Z",
        "source": "notices@example.com",
        "sendingAccountId": "123456789012",
        "destination": ["someone@example.com"],
        "headersTruncated": False,
        "headers": [{"name": "X-Optout-Notice", "value": NOTICE_ID}] if headers is None else headers,
        "commonHeaders": {"from": ["notices@example.com"], "subject": "Example Co: a notice"},
    }
    if message_id is not None:
        value["messageId"] = message_id
    return value


def document(field: str, event_type: str, section: str | None, payload: Any, **mail_args: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {field: event_type, "mail": mail(**mail_args)}
    if section is not None:
        doc[section] = payload
    return doc


def body(doc: Any, wrapped: bool) -> str:
    if not wrapped:
        return json.dumps(doc)
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": "a1b2c3d4-0000-1111-2222-333344445555",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:optout-SesEventsTopic",
            "Message": json.dumps(doc),
            "Timestamp": "2026-11-26T10:00:02.000Z",
            "SignatureVersion": "1",
            "Signature": "EXAMPLE",
        }
    )


def recipient(address: str, diagnostic: str | None = None, status: str = "5.1.1") -> dict[str, Any]:
    value: dict[str, Any] = {"emailAddress": address, "action": "failed", "status": status}
    if diagnostic is not None:
        value["diagnosticCode"] = diagnostic
    return value


def bounce_payload(
    bounce_type: str | None,
    subtype: str | None,
    recipients: list[dict[str, Any]],
    feedback_id: str | None = "fb-bounce-1",
    timestamp: str | None = FEEDBACK_TIME,
) -> dict[str, Any]:
    payload: dict[str, Any] = {"bouncedRecipients": recipients, "reportingMTA": "dns; smtp-out.amazonses.com"}
    for name, value in (
        ("bounceType", bounce_type),
        ("bounceSubType", subtype),
        ("feedbackId", feedback_id),
        ("timestamp", timestamp),
    ):
        if value is not None:
            payload[name] = value
    return payload


def complaint_payload(
    addresses: list[str],
    feedback_type: str | None = "abuse",
    feedback_id: str | None = "fb-complaint-1",
    timestamp: str | None = FEEDBACK_TIME,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "complainedRecipients": [{"emailAddress": a} for a in addresses],
        "userAgent": "Mailbox Provider",
        "complaintSubType": None,
    }
    for name, value in (
        ("complaintFeedbackType", feedback_type),
        ("feedbackId", feedback_id),
        ("timestamp", timestamp),
    ):
        if value is not None:
            payload[name] = value
    return payload


def bounce_event(
    bounce_type: str,
    subtype: str,
    addresses: list[str],
    feedback_id: str = "fb-bounce-1",
    field: str = "eventType",
    wrapped: bool = False,
) -> FeedbackEvent:
    recipients = [recipient(a, f"smtp; 550 5.1.1 user unknown <{a}>") for a in addresses]
    payload = bounce_payload(bounce_type, subtype, recipients, feedback_id)
    return parse(body(document(field, "Bounce", "bounce", payload), wrapped))


def complaint_event(
    addresses: list[str],
    feedback_id: str = "fb-complaint-1",
    feedback_type: str | None = "abuse",
    field: str = "eventType",
    wrapped: bool = False,
) -> FeedbackEvent:
    payload = complaint_payload(addresses, feedback_type, feedback_id)
    return parse(body(document(field, "Complaint", "complaint", payload), wrapped))


def transient(address: str, feedback_id: str) -> FeedbackEvent:
    return bounce_event("Transient", "MailboxFull", [address], feedback_id)


def sample_body(name: str) -> str:
    records = json.loads((EVENTS / f"{name}.json").read_text())["Records"]
    return str(records[0]["body"])


class Clock:
    def __init__(self, at: datetime = T0) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at += timedelta(**delta)


@pytest.fixture
def store() -> MemorySuppressionStore:
    return MemorySuppressionStore()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(store: MemorySuppressionStore, clock: Clock) -> Feedback:
    return Feedback(SETTINGS, store, lambda: PEPPER, now=clock)


def snapshot(store: MemorySuppressionStore) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Everything stored, serialised, to compare before and after."""
    states = {k: s.model_dump_json() for k, s in store.states.items()}
    events = {k: [e.model_dump_json() for e in es] for k, es in store.events.items()}
    return states, events


# --- parse: the sample events in events/ ---------------------------------------------------


def test_parse_sample_bounce_in_sns_envelope() -> None:
    event = parse(sample_body("feedback_bounce_sns_envelope"))

    assert event == FeedbackEvent(
        kind="bounce",
        event_type="Bounce",
        feedback_id="010001812345abcd-bounce-0001",
        addresses=("bounce@simulator.amazonses.com",),
        bounce_type="Permanent",
        bounce_subtype="General",
        diagnostics=("smtp; 550 5.1.1 user unknown <[redacted]>",),
        ses_message_id=MESSAGE_ID,
        notice_id=NOTICE_ID,
        at=FEEDBACK_AT,
    )


def test_parse_sample_raw_complaint_notification() -> None:
    event = parse(sample_body("feedback_complaint_raw"))

    assert event == FeedbackEvent(
        kind="complaint",
        event_type="Complaint",
        feedback_id="010001812345abcd-complaint-0001",
        addresses=("complaint@simulator.amazonses.com",),
        complaint_type="abuse",
        ses_message_id=MESSAGE_ID,
        notice_id=NOTICE_ID,
        at=datetime(2026, 11, 26, 10, 5, tzinfo=UTC),
    )


# --- parse: bounces and complaints in both formats, raw or wrapped -------------------------

# (section payload, expected fields of the parsed event)
BOUNCES = [
    pytest.param(
        bounce_payload(
            "Permanent", "General", [recipient("gone@example.com", "smtp; 550 5.1.1 user unknown <gone@example.com>")]
        ),
        {
            "feedback_id": "fb-bounce-1",
            "addresses": ("gone@example.com",),
            "bounce_type": "Permanent",
            "bounce_subtype": "General",
            "diagnostics": ("smtp; 550 5.1.1 user unknown <[redacted]>",),
        },
        id="permanent-general",
    ),
    pytest.param(
        bounce_payload(
            "Permanent",
            "NoEmail",
            [recipient("Nobody@Example.ORG", "smtp; 550 5.1.1 <Nobody@Example.ORG>: Recipient address rejected")],
            feedback_id="fb-noemail",
        ),
        {
            "feedback_id": "fb-noemail",
            "addresses": ("Nobody@Example.ORG",),
            "bounce_type": "Permanent",
            "bounce_subtype": "NoEmail",
            "diagnostics": ("smtp; 550 5.1.1 <[redacted]>: Recipient address rejected",),
        },
        id="permanent-noemail",
    ),
    pytest.param(
        bounce_payload(
            "Transient",
            "MailboxFull",
            [recipient("full@example.net", "smtp; 452 4.2.2 mailbox full: full@example.net", status="4.2.2")],
        ),
        {
            "feedback_id": "fb-bounce-1",
            "addresses": ("full@example.net",),
            "bounce_type": "Transient",
            "bounce_subtype": "MailboxFull",
            "diagnostics": ("smtp; 452 4.2.2 mailbox full: [redacted]",),
        },
        id="transient-mailboxfull",
    ),
    pytest.param(
        # No feedbackId and no diagnosticCode: the id falls back to the message id, the diagnostic to the status.
        bounce_payload("Undetermined", "Undetermined", [recipient("who@example.com", status="5.0.0")], None),
        {
            "feedback_id": f"{MESSAGE_ID}:bounce",
            "addresses": ("who@example.com",),
            "bounce_type": "Undetermined",
            "bounce_subtype": "Undetermined",
            "diagnostics": ("5.0.0",),
        },
        id="undetermined-no-feedback-id",
    ),
    pytest.param(
        bounce_payload(None, None, [recipient("x@example.com", "rfc822; x@example.com")]),
        {
            "feedback_id": "fb-bounce-1",
            "addresses": ("x@example.com",),
            "bounce_type": "Undetermined",
            "bounce_subtype": "",
            "diagnostics": ("rfc822; [redacted]",),
        },
        id="missing-type-is-undetermined",
    ),
    pytest.param(
        bounce_payload(
            "Permanent",
            "General",
            [
                recipient("a@example.com", "550 <a@example.com> unknown"),
                recipient("b@example.com", "550 mailbox b@example.com disabled"),
            ],
        ),
        {
            "feedback_id": "fb-bounce-1",
            "addresses": ("a@example.com", "b@example.com"),
            "bounce_type": "Permanent",
            "bounce_subtype": "General",
            "diagnostics": ("550 <[redacted]> unknown", "550 mailbox [redacted] disabled"),
        },
        id="two-recipients",
    ),
]


@pytest.mark.parametrize(("field", "wrapped"), FORMATS)
@pytest.mark.parametrize(("payload", "expected"), BOUNCES)
def test_parse_bounce(field: str, wrapped: bool, payload: dict[str, Any], expected: dict[str, Any]) -> None:
    # Given an SES bounce in either format, raw or inside SNS
    raw = body(document(field, "Bounce", "bounce", payload), wrapped)

    # When it is parsed
    event = parse(raw)

    # Then every field is read, and no address survives in the diagnostics
    assert (event.kind, event.event_type) == ("bounce", "Bounce")
    assert {name: getattr(event, name) for name in expected} == expected
    assert event.ses_message_id == MESSAGE_ID
    assert event.notice_id == NOTICE_ID
    assert event.at == FEEDBACK_AT
    assert event.complaint_type is None
    for diagnostic in event.diagnostics:
        assert "@" not in diagnostic
        assert all(a.lower() not in diagnostic.lower() for a in event.addresses)


COMPLAINTS = [
    pytest.param(
        complaint_payload(["angry@example.com"], "abuse"),
        {"feedback_id": "fb-complaint-1", "addresses": ("angry@example.com",), "complaint_type": "abuse"},
        id="with-feedback-type",
    ),
    pytest.param(
        complaint_payload(["angry@example.com", "Also@Example.com"], None, feedback_id=None),
        {
            "feedback_id": f"{MESSAGE_ID}:complaint",
            "addresses": ("angry@example.com", "Also@Example.com"),
            "complaint_type": "",
        },
        id="without-feedback-type-or-id",
    ),
    pytest.param(
        complaint_payload(["angry@example.com"], "not-spam", feedback_id="fb-x"),
        {"feedback_id": "fb-x", "addresses": ("angry@example.com",), "complaint_type": "not-spam"},
        id="not-spam",
    ),
]


@pytest.mark.parametrize(("field", "wrapped"), FORMATS)
@pytest.mark.parametrize(("payload", "expected"), COMPLAINTS)
def test_parse_complaint(field: str, wrapped: bool, payload: dict[str, Any], expected: dict[str, Any]) -> None:
    event = parse(body(document(field, "Complaint", "complaint", payload), wrapped))

    assert (event.kind, event.event_type) == ("complaint", "Complaint")
    assert {name: getattr(event, name) for name in expected} == expected
    assert event.ses_message_id == MESSAGE_ID
    assert event.notice_id == NOTICE_ID
    assert event.at == FEEDBACK_AT
    assert (event.bounce_type, event.bounce_subtype, event.diagnostics) == (None, None, ())


# (event type, its section, a plausible payload); the older format only knows Delivery of these.
OTHER_TYPES = [
    ("Delivery", "delivery", {"timestamp": FEEDBACK_TIME, "recipients": ["ok@example.com"], "smtpResponse": "250"}),
    ("Send", "send", {}),
    ("Open", "open", {"timestamp": FEEDBACK_TIME, "userAgent": "Mozilla", "ipAddress": "192.0.2.1"}),
    ("Click", "click", {"timestamp": FEEDBACK_TIME, "link": "https://example.com/", "linkTags": {}}),
    ("Reject", "reject", {"reason": "Bad content"}),
    ("DeliveryDelay", "deliveryDelay", {"delayType": "MailboxFull", "delayedRecipients": [{"emailAddress": "d@x.io"}]}),
    ("Rendering Failure", "failure", {"errorMessage": "Attribute 'name' is not present", "templateName": "t"}),
    ("Subscription", "subscription", {"contactList": "news", "newTopicPreferences": {"unsubscribeAll": True}}),
]


@pytest.mark.parametrize(("field", "wrapped"), [*EVENT_FORMATS])
@pytest.mark.parametrize(("event_type", "section", "payload"), OTHER_TYPES, ids=[t[0] for t in OTHER_TYPES])
def test_parse_other_event_types(
    field: str, wrapped: bool, event_type: str, section: str, payload: dict[str, Any]
) -> None:
    event = parse(body(document(field, event_type, section, payload), wrapped))

    assert event.kind == "other"
    assert event.event_type == event_type
    assert event.feedback_id == MESSAGE_ID
    assert event.addresses == ()


@pytest.mark.parametrize(("field", "wrapped"), FORMATS)
def test_parse_delivery_in_both_formats(field: str, wrapped: bool) -> None:
    event = parse(body(document(field, "Delivery", "delivery", OTHER_TYPES[0][2]), wrapped))

    assert (event.kind, event.event_type, event.feedback_id, event.addresses) == (
        "other",
        "Delivery",
        MESSAGE_ID,
        (),
    )


def test_parse_event_type_wins_over_notification_type() -> None:
    doc = document("eventType", "Delivery", "delivery", {})
    doc["notificationType"] = "Bounce"

    assert parse(json.dumps(doc)).kind == "other"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param([{"name": "X-Optout-Notice", "value": "ntc_1"}], "ntc_1", id="canonical-case"),
        pytest.param([{"name": "x-optout-notice", "value": "ntc_2"}], "ntc_2", id="lower-case"),
        pytest.param([{"name": "X-OPTOUT-NOTICE", "value": "ntc_3"}], "ntc_3", id="upper-case"),
        pytest.param(
            [{"name": "From", "value": "notices@example.com"}, {"name": "x-Optout-NOTICE", "value": "ntc_4"}],
            "ntc_4",
            id="not-the-first-header",
        ),
        pytest.param([{"name": "X-Optout-Notice", "value": "n" * 500}], "n" * 128, id="capped-at-128"),
        pytest.param([{"name": "Subject", "value": "hello"}], None, id="absent"),
        pytest.param([], None, id="no-headers"),
        pytest.param({"X-Optout-Notice": "ntc_5"}, None, id="headers-not-a-list"),
        pytest.param(["X-Optout-Notice: ntc_6"], None, id="header-not-an-object"),
    ],
)
@pytest.mark.parametrize("kind", ["bounce", "complaint"])
def test_parse_notice_id_from_headers(kind: str, headers: Any, expected: str | None) -> None:
    if kind == "bounce":
        doc = document("eventType", "Bounce", "bounce", bounce_payload("Permanent", "General", []), headers=headers)
    else:
        doc = document("eventType", "Complaint", "complaint", complaint_payload([]), headers=headers)

    assert parse(json.dumps(doc)).notice_id == expected


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        pytest.param("2026-11-26T10:00:01.000Z", FEEDBACK_AT, id="zulu-millis"),
        pytest.param("2026-11-26T10:00:01Z", FEEDBACK_AT, id="zulu"),
        pytest.param("2026-11-26T12:00:01+02:00", FEEDBACK_AT, id="offset"),
        pytest.param(None, None, id="absent"),
        pytest.param("yesterday", None, id="garbage"),
    ],
)
def test_parse_at_from_timestamp(timestamp: str | None, expected: datetime | None) -> None:
    payload = bounce_payload("Permanent", "General", [], timestamp=timestamp)

    event = parse(json.dumps(document("eventType", "Bounce", "bounce", payload)))

    assert event.at == expected


# --- parse: bad input ----------------------------------------------------------------------

SNS = '{{"Type": "Notification", "MessageId": "m-1", "Message": {message}}}'


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("not json", id="not-json"),
        pytest.param("", id="empty"),
        pytest.param("{", id="truncated"),
        pytest.param("[]", id="json-list"),
        pytest.param('[{"eventType": "Bounce"}]', id="json-list-of-events"),
        pytest.param('"Bounce"', id="json-string"),
        pytest.param("42", id="json-number"),
        pytest.param("null", id="json-null"),
        pytest.param("[" * 100_000, id="deeply-nested"),
        pytest.param(SNS.format(message=json.dumps("not json")), id="sns-message-not-json"),
        pytest.param(SNS.format(message=json.dumps("{")), id="sns-message-truncated"),
        pytest.param(SNS.format(message=json.dumps("[" * 100_000)), id="sns-message-deeply-nested"),
        pytest.param(SNS.format(message=json.dumps("[1, 2]")), id="sns-message-json-list"),
        pytest.param(SNS.format(message=json.dumps(json.dumps("x"))), id="sns-message-json-string"),
        pytest.param(SNS.format(message=json.dumps('{"mail": {}}')), id="sns-message-without-type"),
        pytest.param(SNS.format(message="42"), id="sns-message-not-a-string"),
        pytest.param("{}", id="empty-object"),
        pytest.param(json.dumps({"mail": mail(), "bounce": {}}), id="neither-type-field"),
        pytest.param(json.dumps({"eventType": "", "notificationType": None}), id="empty-type-fields"),
    ],
)
def test_parse_rejects_bad_input(raw: str) -> None:
    with pytest.raises(InvalidFeedback) as info:
        parse(raw)
    assert info.value.code == "invalid_feedback"
    assert http_status(info.value) == 400


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(),
        st.text().map(lambda s: SNS.format(message=json.dumps(s))),
        st.text().map(lambda s: '{"eventType": ' + s),
        st.text().map(lambda s: '{"notificationType": "Bounce", "bounce": ' + s + "}"),
    )
)
def test_parse_arbitrary_text_raises_only_invalid_feedback(raw: str) -> None:
    try:
        event = parse(raw)
    except InvalidFeedback:
        return
    assert event.kind in ("bounce", "complaint", "other")


# SES-shaped JSON whose fields hold any JSON value, not the expected type.
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)
SES_SHAPED = st.fixed_dictionaries(
    {"eventType": st.sampled_from(["Bounce", "Complaint", "Delivery"])},
    optional={
        "mail": st.fixed_dictionaries({}, optional={"messageId": JSON, "headers": JSON}),
        "bounce": st.fixed_dictionaries(
            {},
            optional={
                "bouncedRecipients": JSON | st.lists(st.fixed_dictionaries({}, optional={"emailAddress": JSON})),
                "bounceType": JSON,
                "feedbackId": JSON,
                "timestamp": JSON,
            },
        ),
        "complaint": st.fixed_dictionaries(
            {}, optional={"complainedRecipients": JSON, "complaintFeedbackType": JSON, "timestamp": JSON}
        ),
    },
)


@settings(max_examples=200, deadline=None)
@given(SES_SHAPED)
@example({"eventType": "Bounce", "bounce": {"bouncedRecipients": None}})
def test_parse_ses_shaped_json_of_wrong_types_raises_only_invalid_feedback(doc: dict[str, Any]) -> None:
    with contextlib.suppress(InvalidFeedback):
        parse(json.dumps(doc))


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param({"eventType": "Bounce", "bounce": None}, id="bounce-null"),
        pytest.param({"eventType": "Bounce", "bounce": [1, 2]}, id="bounce-list"),
        pytest.param({"eventType": "Bounce", "bounce": {"bouncedRecipients": "x@y.com"}}, id="recipients-string"),
        pytest.param({"eventType": "Bounce", "bounce": {"bouncedRecipients": {"a": 1}}}, id="recipients-object"),
        pytest.param({"eventType": "Bounce", "bounce": {"bouncedRecipients": [1, "a", None]}}, id="recipients-junk"),
        pytest.param(
            {"eventType": "Bounce", "bounce": {"bouncedRecipients": [{"emailAddress": None}]}}, id="address-null"
        ),
        pytest.param({"eventType": "Bounce", "bounce": {"timestamp": 12345}}, id="timestamp-number"),
        pytest.param({"eventType": "Bounce", "mail": None}, id="mail-null"),
        pytest.param({"eventType": "Bounce", "mail": {"headers": [{"name": None}]}}, id="header-name-null"),
        pytest.param({"eventType": "Complaint", "complaint": "abuse"}, id="complaint-string"),
        pytest.param({"eventType": "Delivery", "mail": {"messageId": 7}}, id="message-id-number"),
        pytest.param(
            {"eventType": "Bounce", "bounce": {"bouncedRecipients": None}},
            id="recipients-null",
        ),
        pytest.param(
            {"eventType": "Bounce", "bounce": {"bouncedRecipients": 3}},
            id="recipients-number",
        ),
        pytest.param(
            {"notificationType": "Complaint", "complaint": {"complainedRecipients": None}},
            id="complained-recipients-null",
        ),
    ],
)
def test_parse_wrong_field_types_never_crash(doc: dict[str, Any]) -> None:
    try:
        event = parse(json.dumps(doc))
    except InvalidFeedback:
        return
    assert all(isinstance(a, str) for a in event.addresses)
    assert len(event.diagnostics) in (0, len(event.addresses))


# --- redact --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "smtp; 550 5.1.1 user unknown <bounce@example.com>",
            "smtp; 550 5.1.1 user unknown <[redacted]>",
            id="angle-brackets",
        ),
        pytest.param("rfc822; a.b+tag@sub.example.co.uk", "rfc822; [redacted]", id="after-semicolon"),
        pytest.param("550 'quoted@example.com' rejected", "550 '[redacted]' rejected", id="single-quotes"),
        pytest.param('550 "dq@example.com" rejected', '550 "[redacted]" rejected', id="double-quotes"),
        pytest.param("to a@x.io, b@y.io; c@z.io", "to [redacted], [redacted]; [redacted]", id="several"),
        pytest.param("Mailbox JOSÉ@Bücher.de is full", "Mailbox [redacted] is full", id="unicode"),
        pytest.param("550 5.1.1 mailbox unavailable", "550 5.1.1 mailbox unavailable", id="no-address"),
        pytest.param("5.1.1", "5.1.1", id="status-only"),
        pytest.param("", "", id="empty"),
        pytest.param("stray @ sign and trailing@", "stray @ sign and trailing@", id="no-local-or-domain"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize("length", [0, 299, 300, 301, 5000])
def test_redact_caps_length_at_300(length: int) -> None:
    assert redact("x" * length) == "x" * min(length, 300)


def test_redact_replaces_before_truncating() -> None:
    # Given an address straddling the 300th character
    text = "y" * 290 + " someone@example.com tail"

    out = redact(text)

    assert out == ("y" * 290 + " [redacted] tail")[:300]
    assert "someone" not in out


# Apostrophes (valid in a local part) are excluded here: see test_redact_addresses_with_apostrophes.
ADDRESSES = st.emails().filter(lambda a: "'" not in a)


@settings(max_examples=200, deadline=None)
@given(prefix=st.text(), address=ADDRESSES, suffix=st.text())
def test_redact_removes_any_address_property(prefix: str, address: str, suffix: str) -> None:
    out = redact(f"{prefix} <{address}> {suffix}")

    assert len(out) <= 300
    assert address not in out
    assert "@" + address.rsplit("@", 1)[1] not in out


_APOSTROPHE_BUG = (
    "redact()'s pattern treats ' as a delimiter, yet ' is valid in a local part (normalise_email accepts it): "
    "the text before the last ' of the local part is kept, and a local part ending in ' is not redacted at all"
)


@pytest.mark.parametrize(
    ("address", "leak"),
    [
        pytest.param("mary.o'neil@example.com", "mary.o'", id="apostrophe-inside"),
        pytest.param("o'@example.com", "@example.com", id="apostrophe-last"),
        pytest.param("'@a.ac", "@a.ac", id="apostrophe-only"),
    ],
)
def test_redact_addresses_with_apostrophes(address: str, leak: str) -> None:
    assert normalise_email(address) == address  # a real, accepted address

    out = redact(f"550 5.1.1 <{address}> user unknown")

    assert leak not in out


# --- Feedback.handle: permanent bounces ----------------------------------------------------


@pytest.mark.parametrize(("field", "wrapped"), FORMATS)
@pytest.mark.parametrize("subtype", ["General", "NoEmail", "Suppressed"])
def test_permanent_bounce_blocks_email(
    service: Feedback, store: MemorySuppressionStore, clock: Clock, field: str, wrapped: bool, subtype: str
) -> None:
    # Given a permanent bounce for one address
    event = bounce_event("Permanent", subtype, ["gone@example.com"], "fb-perm", field, wrapped)

    # When it is handled
    outcome = service.handle(event)

    # Then the email channel is blocked for that address's key, with the bounce as evidence
    assert outcome == FeedbackOutcome("bounce", changed=1, duplicates=0)
    state = store.get(key("gone@example.com"))
    assert state is not None and state.blocked is not None
    assert state.channel == "email"
    assert (state.blocked.reason, state.blocked.source, state.blocked.at) == ("bounce", "bounce", T0)
    assert state.blocked.evidence == {
        "feedback_id": "fb-perm",
        "ses_message_id": MESSAGE_ID,
        "notice_id": NOTICE_ID,
        "bounce_type": "Permanent",
        "bounce_subtype": subtype,
        "diagnostic": "smtp; 550 5.1.1 user unknown <[redacted]>",
        "received_at": "2026-11-26T10:00:01+00:00",  # SES's time: the compliance report's clock starts there
    }
    assert state.all_optional is False and state.topics == frozenset()
    assert state.version == 1 and state.updated_at == T0
    # And one consent event records it
    [consent] = store.history(key("gone@example.com"))
    assert (consent.action, consent.scope, consent.source, consent.at) == ("block", "channel", "bounce", T0)
    assert consent.evidence == state.blocked.evidence


def test_sample_bounce_blocks_the_simulator_address(service: Feedback, store: MemorySuppressionStore) -> None:
    outcome = service.handle(parse(sample_body("feedback_bounce_sns_envelope")))

    assert outcome.changed == 1
    state = store.get(key("bounce@simulator.amazonses.com"))
    assert state is not None and state.blocked is not None
    assert state.blocked.reason == "bounce"
    assert state.blocked.evidence["feedback_id"] == "010001812345abcd-bounce-0001"
    assert state.blocked.evidence["notice_id"] == NOTICE_ID


def test_bounce_for_an_already_blocked_address_records_it_as_ignored(
    service: Feedback, store: MemorySuppressionStore, clock: Clock
) -> None:
    service.handle(bounce_event("Permanent", "General", ["gone@example.com"], "fb-1"))
    before = store.get(key("gone@example.com"))
    clock.advance(hours=1)

    outcome = service.handle(bounce_event("Permanent", "General", ["gone@example.com"], "fb-2"))

    assert outcome == FeedbackOutcome("bounce", changed=0, duplicates=0)
    assert store.get(key("gone@example.com")) == before
    block, ignored = store.history(key("gone@example.com"))
    assert block.action == "block"
    assert (ignored.action, ignored.source, ignored.at) == ("ignored", "bounce", clock.at)
    assert ignored.evidence["reason"] == "already blocked"
    assert ignored.evidence["feedback_id"] == "fb-2"


# --- Feedback.handle: complaints -----------------------------------------------------------


@pytest.mark.parametrize(("field", "wrapped"), FORMATS)
@pytest.mark.parametrize(("feedback_type", "expected_type"), [("abuse", "abuse"), (None, "")])
def test_complaint_opts_out_of_optional_topics_only(
    service: Feedback,
    store: MemorySuppressionStore,
    field: str,
    wrapped: bool,
    feedback_type: str | None,
    expected_type: str,
) -> None:
    # Given a complaint
    event = complaint_event(["angry@example.com"], "fb-c", feedback_type, field, wrapped)

    # When it is handled
    outcome = service.handle(event)

    # Then every optional topic is opted out, the channel is not blocked
    assert outcome == FeedbackOutcome("complaint", changed=1, duplicates=0)
    state = store.get(key("angry@example.com"))
    assert state is not None
    assert state.all_optional is True
    assert state.blocked is None
    assert state.topics == frozenset()
    # And required notices keep flowing while optional ones stop
    for topic in REQUIRED:
        assert state.opted_out(topic, OPTIONAL) is False
    for topic in OPTIONAL:
        assert state.opted_out(topic, OPTIONAL) is True
    [consent] = store.history(key("angry@example.com"))
    assert (consent.action, consent.scope, consent.source, consent.at) == ("opt_out", "optional", "complaint", T0)
    assert consent.evidence == {
        "feedback_id": "fb-c",
        "ses_message_id": MESSAGE_ID,
        "notice_id": NOTICE_ID,
        "complaint_type": expected_type,
        "received_at": "2026-11-26T10:00:01+00:00",
    }


def test_sample_complaint_opts_out(service: Feedback, store: MemorySuppressionStore) -> None:
    outcome = service.handle(parse(sample_body("feedback_complaint_raw")))

    assert outcome == FeedbackOutcome("complaint", changed=1, duplicates=0)
    state = store.get(key("complaint@simulator.amazonses.com"))
    assert state is not None and state.all_optional and state.blocked is None
    assert not state.opted_out("policy", OPTIONAL)


def test_complaint_after_a_bounce_keeps_the_block(service: Feedback, store: MemorySuppressionStore) -> None:
    service.handle(bounce_event("Permanent", "General", ["both@example.com"], "fb-b"))

    outcome = service.handle(complaint_event(["both@example.com"], "fb-c"))

    assert outcome.changed == 1
    state = store.get(key("both@example.com"))
    assert state is not None and state.blocked is not None
    assert state.blocked.reason == "bounce"
    assert state.all_optional is True
    assert [e.action for e in store.history(key("both@example.com"))] == ["block", "opt_out"]


def test_second_complaint_is_recorded_as_an_ignored_complaint(service: Feedback, store: MemorySuppressionStore) -> None:
    service.handle(complaint_event(["angry@example.com"], "fb-c1"))

    outcome = service.handle(complaint_event(["angry@example.com"], "fb-c2"))

    assert outcome == FeedbackOutcome("complaint", changed=0, duplicates=0)
    _, ignored = store.history(key("angry@example.com"))
    assert ignored.action == "ignored"
    assert ignored.evidence["reason"] == "already opted out of optional topics"
    assert ignored.source == "complaint"


# --- Feedback.handle: transient bounces ----------------------------------------------------


@pytest.mark.parametrize(
    ("bounce_type", "subtype"),
    [("Transient", "MailboxFull"), ("Transient", "General"), ("Transient", "MessageTooLarge"), ("Undetermined", "")],
)
def test_transient_bounce_records_a_soft_bounce_only(
    service: Feedback, store: MemorySuppressionStore, bounce_type: str, subtype: str
) -> None:
    outcome = service.handle(bounce_event(bounce_type, subtype, ["soft@example.com"], "fb-t"))

    assert outcome == FeedbackOutcome("bounce", changed=0, duplicates=0)
    assert store.get(key("soft@example.com")) is None
    [soft] = store.history(key("soft@example.com"))
    assert (soft.action, soft.scope, soft.source, soft.at) == ("soft_bounce", "channel", "bounce", T0)
    assert soft.evidence["bounce_type"] == bounce_type
    assert soft.evidence["bounce_subtype"] == subtype
    assert soft.evidence["feedback_id"] == "fb-t"
    assert soft.evidence["diagnostic"] == "smtp; 550 5.1.1 user unknown <[redacted]>"


@pytest.mark.parametrize("limit", [1, 2, 3, 5])
def test_transient_bounce_limit_blocks(store: MemorySuppressionStore, clock: Clock, limit: int) -> None:
    # Given a limit of `limit` transient bounces within the window
    config = Settings(transient_bounce_limit=limit)
    service = Feedback(config, store, lambda: PEPPER, now=clock)
    address = "flaky@example.com"

    # When limit - 1 of them arrive, nothing is blocked
    for i in range(limit - 1):
        clock.advance(hours=1)
        assert service.handle(transient(address, f"fb-{i}")).changed == 0
        assert store.get(key(address)) is None

    # And the limit-th blocks with reason transient_bounces
    clock.advance(hours=1)
    outcome = service.handle(transient(address, "fb-last"))

    assert outcome == FeedbackOutcome("bounce", changed=1, duplicates=0)
    state = store.get(key(address))
    assert state is not None and state.blocked is not None
    assert (state.blocked.reason, state.blocked.source, state.blocked.at) == ("transient_bounces", "bounce", clock.at)
    assert state.blocked.evidence["feedback_id"] == "fb-last"
    assert state.blocked.evidence["bounce_type"] == "Transient"
    actions = [e.action for e in store.history(key(address))]
    assert actions == ["soft_bounce"] * limit + ["block"]


class WriteLog(MemorySuppressionStore):
    """Logs every write (what it held and its once marker); fails the next ``fail_saves`` state writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[str, list[str], str | None]] = []
        self.fail_saves = 0

    def save(self, state: Any, expected_version: int, events: Any, once: OnceMarker | None = None) -> bool:
        if self.fail_saves:
            self.fail_saves -= 1
            raise RuntimeError("DynamoDB is unavailable")  # a transient failure: the message is retried
        self.writes.append(("save", [e.action for e in events], once.key if once else None))
        return super().save(state, expected_version, events, once)

    def record(self, address_key: str, events: Any, once: OnceMarker | None = None) -> bool:
        self.writes.append(("record", [e.action for e in events], once.key if once else None))
        return super().record(address_key, events, once)


def test_the_bounce_that_reaches_the_limit_writes_its_block_with_its_marker_in_one_write(clock: Clock) -> None:
    store = WriteLog()
    service = Feedback(SETTINGS, store, lambda: PEPPER, now=clock)
    for i in range(SETTINGS.transient_bounce_limit - 1):
        service.handle(transient("flaky@example.com", f"fb-{i}"))
    store.writes.clear()

    assert service.handle(transient("flaky@example.com", "fb-last")).changed == 1

    # One conditional state write holds the soft bounce, the block and the once marker
    assert store.writes == [("save", ["soft_bounce", "block"], f"ses#fb-last#{key('flaky@example.com')[:32]}")]


def test_a_block_whose_write_failed_is_made_by_the_redelivery(clock: Clock) -> None:
    store = WriteLog()
    service = Feedback(SETTINGS, store, lambda: PEPPER, now=clock)
    address = "flaky@example.com"
    for i in range(SETTINGS.transient_bounce_limit - 1):
        service.handle(transient(address, f"fb-{i}"))
    # Given the bounce that reaches the limit, whose write fails
    store.fail_saves = 1
    with pytest.raises(RuntimeError):
        service.handle(transient(address, "fb-last"))
    assert store.get(key(address)) is None
    # When SQS delivers it again
    outcome = service.handle(transient(address, "fb-last"))
    # Then it blocks now, not at some later bounce, and counts once
    assert outcome == FeedbackOutcome("bounce", changed=1, duplicates=0)
    state = store.get(key(address))
    assert state is not None and state.blocked is not None and state.blocked.reason == "transient_bounces"
    actions = [e.action for e in store.history(key(address))]
    assert actions == ["soft_bounce"] * SETTINGS.transient_bounce_limit + ["block"]


def test_a_soft_bounce_on_a_blocked_address_past_the_limit_says_why_it_did_not_block(
    service: Feedback, store: MemorySuppressionStore
) -> None:
    service.handle(bounce_event("Permanent", "General", ["x@example.com"], "fb-hard"))
    for i in range(SETTINGS.transient_bounce_limit):
        service.handle(transient("x@example.com", f"fb-{i}"))

    reasons = [(e.action, e.evidence.get("reason")) for e in store.history(key("x@example.com"))]
    assert reasons == [("block", None)] + [("soft_bounce", None)] * (SETTINGS.transient_bounce_limit - 1) + [
        ("soft_bounce", None), ("ignored", "already blocked"),
    ]  # fmt: skip


def test_default_transient_limit_is_three_in_seven_days() -> None:
    assert (SETTINGS.transient_bounce_limit, SETTINGS.transient_bounce_window_days) == (3, 7)


# Days after T0 at which transient bounces arrive (default: 3 within 7 days), and whether the last one blocks.
WINDOWS = [
    pytest.param([0, 0, 0], True, id="three-at-once"),
    pytest.param([0, 3, 6.9], True, id="three-within-the-window"),
    pytest.param([0, 1, 8], False, id="first-older-than-the-window"),
    pytest.param([0, 1, 9, 10], False, id="two-fell-out"),
    pytest.param([0, 3, 8, 9], True, id="sliding-window"),
    pytest.param([0, 10, 20, 30, 40], False, id="spread-out"),
    pytest.param([0, 10, 20, 30, 40, 40.5, 41], True, id="burst-after-spread"),
]


@pytest.mark.parametrize(("days", "blocked"), WINDOWS)
def test_transient_bounces_outside_the_window_do_not_count(
    service: Feedback, store: MemorySuppressionStore, clock: Clock, days: list[float], blocked: bool
) -> None:
    address = "flaky@example.com"
    for i, day in enumerate(days):
        clock.at = T0 + timedelta(days=day)
        outcome = service.handle(transient(address, f"fb-{i}"))
        if i < len(days) - 1:
            assert store.get(key(address)) is None, f"blocked early, at the bounce on day {day}"

    state = store.get(key(address))
    assert outcome.changed == int(blocked)
    assert (state is not None and state.blocked is not None) is blocked
    if blocked:
        assert state is not None and state.blocked is not None
        assert state.blocked.reason == "transient_bounces"
    soft = [e for e in store.history(key(address)) if e.action == "soft_bounce"]
    assert [e.at for e in soft] == [T0 + timedelta(days=d) for d in days]


def test_transient_bounces_count_per_address(service: Feedback, store: MemorySuppressionStore) -> None:
    for i, address in enumerate(["a@example.com", "b@example.com", "a@example.com", "b@example.com"]):
        service.handle(transient(address, f"fb-{i}"))

    assert store.states == {}
    assert len(store.history(key("a@example.com"))) == 2


def test_permanent_bounce_after_soft_bounces_blocks_as_bounce(service: Feedback, store: MemorySuppressionStore) -> None:
    service.handle(transient("x@example.com", "fb-1"))

    service.handle(bounce_event("Permanent", "General", ["x@example.com"], "fb-2"))

    state = store.get(key("x@example.com"))
    assert state is not None and state.blocked is not None and state.blocked.reason == "bounce"


# --- Feedback.handle: everything else is ignored -------------------------------------------


@pytest.mark.parametrize(("field", "wrapped"), EVENT_FORMATS)
@pytest.mark.parametrize(("event_type", "section", "payload"), OTHER_TYPES, ids=[t[0] for t in OTHER_TYPES])
def test_other_event_types_are_ignored(
    service: Feedback,
    store: MemorySuppressionStore,
    field: str,
    wrapped: bool,
    event_type: str,
    section: str,
    payload: dict[str, Any],
) -> None:
    event = parse(body(document(field, event_type, section, payload), wrapped))

    outcome = service.handle(event)

    assert outcome == FeedbackOutcome("other", changed=0, duplicates=0, ignored=True)
    assert (store.states, store.events, store.once) == ({}, {}, {})


def test_unknown_future_event_type_is_ignored(service: Feedback, store: MemorySuppressionStore) -> None:
    outcome = service.handle(parse(json.dumps(document("eventType", "SomethingNew", "somethingNew", {}))))

    assert outcome.ignored is True
    assert (store.states, store.events) == ({}, {})


# --- Feedback.handle: each (feedback id, recipient) once -----------------------------------

_DUPLICATE_BUG = (
    "a redelivered transient bounce that reaches transient_bounce_limit appends a second soft_bounce: "
    "Feedback._bounce records that soft_bounce with once=None before change_consent claims the once marker"
)

# (events handled first, the event then handled twice)
DUPLICATES = [
    pytest.param([], bounce_event("Permanent", "General", ["d@example.com"], "fb-d"), id="permanent-bounce"),
    pytest.param([], complaint_event(["d@example.com"], "fb-d"), id="complaint"),
    pytest.param([], transient("d@example.com", "fb-d"), id="first-transient"),
    pytest.param(
        [transient("d@example.com", "fb-1")],
        transient("d@example.com", "fb-d"),
        id="transient-reaching-limit",
    ),
    pytest.param(
        [transient("d@example.com", "fb-1"), transient("d@example.com", "fb-2")],
        transient("d@example.com", "fb-d"),
        id="transient-that-blocked",
    ),
    pytest.param(
        [bounce_event("Permanent", "General", ["d@example.com"], "fb-1")],
        bounce_event("Permanent", "General", ["d@example.com"], "fb-d"),
        id="bounce-on-blocked-address",
    ),
    pytest.param(
        [complaint_event(["d@example.com"], "fb-1")],
        complaint_event(["d@example.com"], "fb-d"),
        id="complaint-on-opted-out-address",
    ),
]


@pytest.mark.parametrize(("before", "event"), DUPLICATES)
def test_same_event_twice_has_no_second_effect(
    service: Feedback,
    store: MemorySuppressionStore,
    clock: Clock,
    before: list[FeedbackEvent],
    event: FeedbackEvent,
) -> None:
    # Given the event was processed once (after any earlier ones)
    for earlier in before:
        service.handle(earlier)
        clock.advance(minutes=5)
    first = service.handle(event)
    assert first.duplicates == 0
    stored = snapshot(store)
    clock.advance(minutes=5)

    # When SES (or SQS) delivers it again
    second = service.handle(event)

    # Then it is reported as a duplicate and nothing changes
    assert second == FeedbackOutcome(event.kind, changed=0, duplicates=1)
    assert snapshot(store) == stored


def test_redelivered_transient_bounce_does_not_count_twice(
    service: Feedback, store: MemorySuppressionStore, clock: Clock
) -> None:
    # Given two transient bounces six days apart, the second delivered twice
    address = "flaky@example.com"
    service.handle(transient(address, "fb-1"))
    clock.advance(days=6)
    service.handle(transient(address, "fb-2"))
    service.handle(transient(address, "fb-2"))

    # When a third arrives once the first has left the 7-day window
    clock.advance(days=2)
    service.handle(transient(address, "fb-3"))

    # Then only two distinct bounces are in the window: no block
    assert store.get(key(address)) is None


def test_same_feedback_id_for_another_recipient_is_not_a_duplicate(
    service: Feedback, store: MemorySuppressionStore
) -> None:
    service.handle(bounce_event("Permanent", "General", ["one@example.com"], "fb-shared"))

    outcome = service.handle(bounce_event("Permanent", "General", ["two@example.com"], "fb-shared"))

    assert outcome == FeedbackOutcome("bounce", changed=1, duplicates=0)
    assert store.get(key("two@example.com")) is not None


def test_redelivered_multi_recipient_bounce_counts_each_duplicate(
    service: Feedback, store: MemorySuppressionStore
) -> None:
    event = bounce_event("Permanent", "General", ["a@example.com", "b@example.com", "c@example.com"], "fb-m")
    service.handle(event)
    stored = snapshot(store)

    assert service.handle(event) == FeedbackOutcome("bounce", changed=0, duplicates=3)
    assert snapshot(store) == stored


# --- Feedback.handle: recipients -----------------------------------------------------------


@pytest.mark.parametrize("kind", ["bounce", "complaint"])
def test_every_recipient_is_handled(service: Feedback, store: MemorySuppressionStore, kind: str) -> None:
    addresses = ["a@example.com", "b@example.org", "c@example.net"]
    if kind == "bounce":
        event = bounce_event("Permanent", "General", addresses, "fb-m")
    else:
        event = complaint_event(addresses, "fb-m")

    outcome = service.handle(event)

    assert outcome == FeedbackOutcome(kind, changed=3, duplicates=0)  # type: ignore[arg-type]
    assert set(store.states) == {key(a) for a in addresses}
    for address in addresses:
        state = store.get(key(address))
        assert state is not None
        if kind == "bounce":
            assert state.blocked is not None and state.blocked.reason == "bounce"
        else:
            assert state.all_optional and state.blocked is None


def test_invalid_recipients_are_skipped_and_diagnostics_stay_aligned(
    service: Feedback, store: MemorySuppressionStore
) -> None:
    # Given a bounce whose recipients include addresses that cannot be normalised
    recipients = [
        recipient("not-an-address", "550 bad one"),
        recipient("", "550 empty"),
        recipient("two@@example.com", "550 two ats"),
        {"action": "failed", "diagnosticCode": "550 no address field"},
        recipient("a b@example.com", "550 space"),
        recipient("ok@example.com", "550 5.1.1 <ok@example.com> no such user"),
        recipient("bad@-example-.com", "550 bad domain"),
    ]
    raw = body(document("eventType", "Bounce", "bounce", bounce_payload("Permanent", "General", recipients)), False)

    # When it is handled
    outcome = service.handle(parse(raw))

    # Then only the valid one is blocked, with its own diagnostic, and nothing raised
    assert outcome == FeedbackOutcome("bounce", changed=1, duplicates=0)
    assert list(store.states) == [key("ok@example.com")]
    state = store.get(key("ok@example.com"))
    assert state is not None and state.blocked is not None
    assert state.blocked.evidence["diagnostic"] == "550 5.1.1 <[redacted]> no such user"


def test_event_with_no_recipients_changes_nothing(service: Feedback, store: MemorySuppressionStore) -> None:
    raw = json.dumps(document("eventType", "Bounce", "bounce", bounce_payload("Permanent", "General", [])))

    assert service.handle(parse(raw)) == FeedbackOutcome("bounce", changed=0, duplicates=0)
    assert (store.states, store.events) == ({}, {})


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("Bounce@Example.COM", "bounce@example.com"),
        ("  bounce@example.com\t", "bounce@example.com"),
        ("BOUNCE@EXAMPLE.COM.", "bounce@example.com"),
        ("Bob@Bücher.Example", "bob@xn--bcher-kva.example"),
    ],
)
def test_addresses_are_normalised_before_hashing(
    service: Feedback, store: MemorySuppressionStore, raw: str, normalised: str
) -> None:
    assert normalise_email(raw) == normalised

    service.handle(bounce_event("Permanent", "General", [raw], "fb-n"))

    assert list(store.states) == [key(normalised)]
    # And a later complaint spelled the canonical way lands on the same state
    service.handle(complaint_event([normalised], "fb-c"))
    state = store.get(key(normalised))
    assert state is not None and state.blocked is not None and state.all_optional
    assert len(store.states) == 1


def test_the_pepper_is_read_for_the_key(store: MemorySuppressionStore, clock: Clock) -> None:
    other = Feedback(SETTINGS, store, lambda: b"q" * 32, now=clock)

    other.handle(bounce_event("Permanent", "General", ["gone@example.com"], "fb"))

    assert list(store.states) == [address_key(b"q" * 32, "email", "gone@example.com")]
    assert key("gone@example.com") not in store.states


# --- nothing stored holds a plain address --------------------------------------------------


def test_no_plain_address_is_stored(service: Feedback, store: MemorySuppressionStore, clock: Clock) -> None:
    # Given a mix of feedback whose addresses also appear in diagnostics in many spellings
    inputs = [
        "Gone@Example.com",
        "multi1@example.org",
        "multi2@example.org",
        "flaky@example.net",
        "angry@example.com",
        "Bob@Bücher.Example",
        "tagged+news@sub.example.co.uk",
    ]
    diagnostics = {
        "Gone@Example.com": "smtp; 550 5.1.1 <Gone@Example.com>... User unknown",
        "multi1@example.org": "rfc822;multi1@example.org 550",
        "multi2@example.org": "550 'multi2@example.org' rejected, see mailto:postmaster@example.org",
        "flaky@example.net": 'smtp; 452 4.2.2 "flaky@example.net" over quota',
        "Bob@Bücher.Example": "550 Bob@Bücher.Example [Bob@xn--bcher-kva.example] unknown",
        "tagged+news@sub.example.co.uk": "x" * 280 + " tagged+news@sub.example.co.uk",
    }

    def bounce(bounce_type: str, addresses: list[str], feedback_id: str) -> FeedbackEvent:
        recipients = [recipient(a, diagnostics[a]) for a in addresses]
        payload = bounce_payload(bounce_type, "General", recipients, feedback_id)
        return parse(body(document("notificationType", "Bounce", "bounce", payload), True))

    # When all of it is handled
    service.handle(bounce("Permanent", ["Gone@Example.com"], "fb-1"))
    service.handle(bounce("Permanent", ["multi1@example.org", "multi2@example.org", "Bob@Bücher.Example"], "fb-2"))
    for i in range(SETTINGS.transient_bounce_limit + 1):
        clock.advance(hours=1)
        service.handle(bounce("Transient", ["flaky@example.net"], f"fb-t{i}"))
    service.handle(bounce("Transient", ["tagged+news@sub.example.co.uk"], "fb-3"))
    service.handle(complaint_event(["angry@example.com", "Gone@Example.com"], "fb-c1"))
    service.handle(complaint_event(["angry@example.com"], "fb-c2"))
    service.handle(bounce("Permanent", ["Gone@Example.com"], "fb-1"))  # a duplicate

    # Then the store holds states and events for every address...
    assert len(store.states) == 6
    assert sum(len(v) for v in store.events.values()) > len(store.states)
    # ...keyed by HMAC, and no serialised state or event contains any address
    dumps = [s.model_dump_json() for s in store.states.values()]
    dumps += [e.model_dump_json() for events in store.events.values() for e in events]
    dumps += list(store.states) + list(store.events) + list(store.once)
    spellings = {a.lower() for a in inputs} | {normalise_email(a) for a in inputs} | {"postmaster@example.org"}
    for dump in dumps:
        assert "@" not in dump, dump
        for address in spellings:
            assert address not in dump.lower()
    assert any("[redacted]" in d for d in dumps)


@pytest.mark.parametrize(
    ("address", "leak"),
    [
        pytest.param("mary.o'neil@example.com", "mary.o'", id="apostrophe-inside"),
        pytest.param("o'@example.com", "@example.com", id="apostrophe-last"),
    ],
)
def test_no_address_with_an_apostrophe_is_stored(
    service: Feedback, store: MemorySuppressionStore, address: str, leak: str
) -> None:
    payload = bounce_payload("Permanent", "General", [recipient(address, f"smtp; 550 5.1.1 <{address}> unknown")])

    service.handle(parse(body(document("eventType", "Bounce", "bounce", payload), False)))

    [state] = store.states.values()
    assert state.blocked is not None
    dumps = [state.model_dump_json()] + [e.model_dump_json() for e in store.history(state.address_key)]
    for dump in dumps:
        assert leak not in dump
