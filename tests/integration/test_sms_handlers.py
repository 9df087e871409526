"""SmsWebhook and SmsInbound on moto: signed webhooks, and the SNS -> SQS -> function path."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode
from xml.etree import ElementTree

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from optout import wiring
from optout.core.identity import Identity
from optout.core.settings import get_settings
from optout.sms.twilio import signature
from optout.suppression.store import DynamoSuppressionStore
from optout_local.iam import in_process
from optout_local.provision import ACCOUNT_ID, Stack
from optout_local.runtime import LambdaContext, load_handler
from tests.conftest import PUBLIC_BASE_URL, sample_event, sent_sms

NUMBER = "+14155550101"
OURS = "+14155550100"
WEBHOOK_URL = PUBLIC_BASE_URL + "/sms/twilio"  # the configured public URL, as behind API Gateway


@pytest.fixture
def store(aws: Stack) -> DynamoSuppressionStore:
    return DynamoSuppressionStore(get_settings().suppression_table)


def key(number: str = NUMBER) -> str:
    return Identity.of(wiring.pepper(), "sms", number).key


# --- Twilio-style webhook ---------------------------------------------------------------


def twilio_event(body: str = "STOP", sign: bool = True, url: str = WEBHOOK_URL, **fields: str) -> dict[str, Any]:
    form = {
        "From": NUMBER,
        "To": OURS,
        "Body": body,
        "MessageSid": "SM" + uuid.uuid4().hex,
        "AccountSid": "AC" + "0" * 32,
    }
    form.update(fields)
    event = sample_event("sms_webhook_twilio")
    event["body"] = urlencode(form)
    token = wiring.secret(get_settings().twilio_auth_token_secret)
    if sign:
        event["headers"]["x-twilio-signature"] = signature(token, url, form.items())
    else:
        event["headers"].pop("x-twilio-signature")
    return event


def reply_of(response: dict[str, Any]) -> str | None:
    assert response["statusCode"] == 200, response
    assert response["headers"]["Content-Type"].startswith("text/xml")
    message = ElementTree.fromstring(response["body"]).find("Message")  # noqa: S314 - our own TwiML
    return message.text if message is not None else None


@pytest.fixture
def webhook(aws: Stack) -> Any:
    return load_handler(aws.function("SmsWebhook"))


def test_stop_start_help_and_chatter_through_the_webhook(webhook, lambda_context: LambdaContext, store) -> None:
    stop = reply_of(webhook(twilio_event("STOP"), lambda_context))
    assert stop is not None and "Example Co" in stop and "START" in stop
    state = store.get(key())
    assert state is not None and state.blocked is not None and state.blocked.source == "sms_keyword"
    assert reply_of(webhook(twilio_event("stop please"), lambda_context)) is None  # no second confirmation
    start = reply_of(webhook(twilio_event("START"), lambda_context))
    assert start is not None and "resubscribed" in start
    assert store.get(key()).blocked is None  # type: ignore[union-attr]
    help_text = reply_of(webhook(twilio_event("HELP"), lambda_context))
    assert help_text is not None and "Msg & data rates may apply" in help_text and "support@example.com" in help_text
    assert reply_of(webhook(twilio_event("Thanks, see you soon 😊"), lambda_context)) is None
    actions = [(e.action, e.evidence.get("reason")) for e in store.history(key())]
    assert actions == [
        ("block", None),
        ("ignored", "already blocked"),
        ("unblock", None),
        ("help", None),
        ("ignored", "not a keyword"),
    ]
    assert sent_sms() == []  # Twilio replies travel in the TwiML, not as new messages


def test_a_retried_webhook_has_no_second_effect_and_no_second_reply(webhook, lambda_context, store) -> None:
    event = twilio_event("STOP")
    assert reply_of(webhook(event, lambda_context)) is not None
    assert reply_of(webhook(event, lambda_context)) is None
    assert len(store.history(key())) == 1


def test_a_webhook_stop_is_one_read_and_one_write_and_its_reply_is_claimed_in_that_write(
    webhook, lambda_context, store
) -> None:
    # Given a counter on the DynamoDB client the handler uses
    from optout.core import clients

    calls: list[str] = []
    clients.dynamodb().meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
    event = twilio_event("STOP")
    # When a STOP arrives for the first time
    assert reply_of(webhook(event, lambda_context)) is not None
    # Then it costs the state read and the one transaction that holds the change, its event and
    # the once marker with the reply already claimed: no marker read before, no claim after
    assert calls == ["GetItem", "TransactWriteItems"]
    marker = store.once_get(f"sms#twilio#{dict(parse_qsl(event['body']))['MessageSid']}")
    assert marker is not None and marker.replied_at is not None
    # And a redelivery reads the marker, sends no second reply and records nothing more
    calls.clear()
    assert reply_of(webhook(event, lambda_context)) is None
    assert "UpdateItem" not in calls and len(store.history(key())) == 1


def test_a_redelivery_sends_a_reply_no_delivery_has_claimed(webhook, lambda_context, store) -> None:
    # Given a marker whose reply was never claimed (written by the queued path, or before replies were
    # claimed in the write)
    from optout.suppression.store import OnceMarker

    event = twilio_event("STOP")
    sid = dict(parse_qsl(event["body"]))["MessageSid"]
    store.record(key(), [], OnceMarker(f"sms#twilio#{sid}", "You are unsubscribed. Reply START to resubscribe."))
    # When the message comes again, it gets that reply once
    assert reply_of(webhook(event, lambda_context)) == "You are unsubscribed. Reply START to resubscribe."
    assert reply_of(webhook(event, lambda_context)) is None


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ("unsigned", 403), ("forged", 403), ("changed-body", 403), ("wrong-url", 403),
        ("json", 415), ("oversized-body", 400), ("missing-from", 400), ("not-e164", 400), ("bad-sid", 400),
        ("non-utf8", 400), ("bad-base64", 400),
    ],
)  # fmt: skip
def test_bad_webhooks_get_a_fitting_4xx_and_change_nothing(webhook, lambda_context, store, change, status) -> None:
    event = twilio_event("STOP")
    if change == "unsigned":
        event = twilio_event("STOP", sign=False)
    elif change == "forged":
        event["headers"]["x-twilio-signature"] = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    elif change == "changed-body":
        event["body"] = event["body"].replace("Body=STOP", "Body=START")
    elif change == "wrong-url":  # signed for another endpoint, replayed at ours
        event = twilio_event("STOP", url="https://attacker.example/sms/twilio")
    elif change == "json":
        event["headers"]["content-type"] = "application/json"
    elif change == "oversized-body":
        event = twilio_event("x" * 1601)
    elif change == "missing-from":
        event = twilio_event("STOP", From="")
    elif change == "not-e164":
        event = twilio_event("STOP", From="4155550101")
    elif change == "bad-sid":
        event = twilio_event("STOP", MessageSid="SM<script>")
    elif change == "non-utf8":
        event["body"] = event["body"] + "&X=%FF%FE"
    elif change == "bad-base64":
        event["isBase64Encoded"] = True
    response = webhook(event, lambda_context)
    assert response["statusCode"] == status, response["body"]
    body = json.loads(response["body"])
    assert set(body["error"]) == {"code", "message"}
    assert "4155550101" not in response["body"]
    assert store.get(key()) is None and store.history(key()) == []


@pytest.mark.parametrize("body", ["STOP 🛑", "توقف STOP", "STOP\u200f", "ARRÊT", "ＳＴＯＰ"])
def test_emoji_rtl_and_full_width_text_are_handled(webhook, lambda_context, store, body) -> None:
    response = webhook(twilio_event(body), lambda_context)
    assert response["statusCode"] == 200
    assert len(store.history(key())) == 1


# --- End User Messaging: SNS -> SQS -> SmsInbound ----------------------------------------


@pytest.fixture
def inbound(aws: Stack) -> Any:
    return load_handler(aws.function("SmsInbound"))


def two_way(body: str, message_id: str | None = None, number: str = NUMBER) -> dict[str, str]:
    return {
        "originationNumber": number, "destinationNumber": OURS, "messageKeyword": "KEYWORD_123456789012",
        "messageBody": body, "inboundMessageId": message_id or str(uuid.uuid4()),
        "previousPublishedMessageId": str(uuid.uuid4()),
    }  # fmt: skip


def drain(aws: Stack) -> list[dict[str, Any]]:
    """A batch as the queue's event source mapping receives it, with its function's role; left on the queue."""
    return in_process.installed().poll("InboundSmsQueue")


def test_sns_to_queue_to_function_with_envelope_and_raw_messages(aws, inbound, lambda_context, store) -> None:
    # Given STOP published to the topic (SNS envelope) and START sent raw, later
    # As End User Messaging publishes an inbound SMS: from our number, under the topic's policy
    source = f"arn:aws:sms-voice:us-east-1:{ACCOUNT_ID}:phone-number/{OURS.lstrip('+')}"
    delivered = in_process.installed().deliver(
        "sms-voice.amazonaws.com", source, "InboundSmsTopic", json.dumps(two_way("STOP"))
    )
    assert delivered["delivered"], delivered
    records = drain(aws)
    assert len(records) == 1 and json.loads(records[0]["body"])["Type"] == "Notification"
    # When the function takes the batch
    assert inbound({"Records": records}, lambda_context) == {"batchItemFailures": []}
    # Then the number is blocked, with the inbound id as evidence, and one confirmation went out
    state = store.get(key())
    assert state is not None and state.blocked is not None
    (event,) = store.history(key())
    assert (
        event.evidence["inbound_message_id"]
        == json.loads(json.loads(records[0]["body"])["Message"])["inboundMessageId"]
    )
    assert sent_sms() == [(NUMBER, store_reply("opt_out"))]
    # And a raw START lifts it
    boto3.client("sqs").send_message(QueueUrl=aws.ref("InboundSmsQueue"), MessageBody=json.dumps(two_way("START")))
    assert inbound({"Records": drain(aws)}, lambda_context) == {"batchItemFailures": []}
    assert store.get(key()).blocked is None  # type: ignore[union-attr]
    assert len(sent_sms()) == 2


def store_reply(intent: str) -> str:
    service = wiring.sms_inbound()
    reply = service.book.reply(intent, "en", service.settings.brand_name, service.settings.support_contact)  # type: ignore[arg-type]
    assert reply is not None
    return reply


def envelope_record(body: str, message_id: str, sent: datetime) -> dict[str, Any]:
    record = sample_event("sms_inbound_sns_envelope")["Records"][0]
    envelope = json.loads(record["body"])
    envelope["Message"] = json.dumps(two_way(body, message_id))
    envelope["Timestamp"] = sent.isoformat().replace("+00:00", "Z")
    record["body"] = json.dumps(envelope)
    record["messageId"] = str(uuid.uuid4())
    return record


def test_duplicates_have_no_second_effect(inbound, lambda_context, store) -> None:
    record = envelope_record("STOP", "dup-1", datetime.now(UTC))
    assert inbound({"Records": [record]}, lambda_context) == {"batchItemFailures": []}
    assert inbound({"Records": [record, record]}, lambda_context) == {"batchItemFailures": []}
    assert len(store.history(key())) == 1
    assert len(sent_sms()) == 1


def test_a_stop_sent_before_a_start_but_delivered_after_it_does_not_block(inbound, lambda_context, store) -> None:
    now = datetime.now(UTC)
    # Given STOP (sent at t) and START (sent at t+30s); the START is delivered first
    inbound({"Records": [envelope_record("STOP", "s-1", now - timedelta(minutes=5))]}, lambda_context)
    inbound({"Records": [envelope_record("START", "s-2", now + timedelta(seconds=30))]}, lambda_context)
    assert store.get(key()).blocked is None  # type: ignore[union-attr]
    # When the earlier STOP of a second exchange arrives late
    inbound({"Records": [envelope_record("STOP", "s-3", now)]}, lambda_context)
    # Then the number stays unblocked, and the late STOP is recorded as superseded
    assert store.get(key()).blocked is None  # type: ignore[union-attr]
    assert store.history(key())[-1].evidence["reason"] == "superseded by a later keyword"


def test_a_start_on_an_open_number_then_an_earlier_stop_delivered_late_leaves_it_open(
    inbound, lambda_context, store
) -> None:
    from optout.core import clients

    calls: list[str] = []
    clients.dynamodb().meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
    now = datetime.now(UTC)
    # Given a START sent at t+1min on a number that is not blocked, delivered first
    assert inbound({"Records": [envelope_record("START", "o-2", now + timedelta(minutes=1))]}, lambda_context) == {
        "batchItemFailures": []
    }
    # Then it changed nothing and texted nothing, but its one write recorded when it was sent
    assert calls == ["GetItem", "TransactWriteItems"]
    assert store.get(key()).keyword_at == now + timedelta(minutes=1)  # type: ignore[union-attr]
    # When the STOP sent at t arrives after it
    inbound({"Records": [envelope_record("STOP", "o-1", now)]}, lambda_context)
    # Then the number stays open and no confirmation went out: the later START wins
    assert store.get(key()).blocked is None  # type: ignore[union-attr]
    assert [e.evidence["reason"] for e in store.history(key())] == ["not blocked", "superseded by a later keyword"]
    assert sent_sms() == []


def test_a_webhook_start_that_changes_nothing_is_one_read_and_one_write(webhook, lambda_context, store) -> None:
    from optout.core import clients

    calls: list[str] = []
    clients.dynamodb().meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
    # When a START arrives on a number that is not blocked
    assert reply_of(webhook(twilio_event("START"), lambda_context)) is None
    # Then its send time, its event and its once marker went in the one transaction after the read
    assert calls == ["GetItem", "TransactWriteItems"]
    state = store.get(key())
    assert state is not None and state.blocked is None and state.keyword_at is not None
    assert [e.action for e in store.history(key())] == ["ignored"]


def test_a_poison_message_beside_good_ones_never_blocks_them(inbound, lambda_context, store, monkeypatch) -> None:
    good = envelope_record("STOP", "good-1", datetime.now(UTC))
    other = envelope_record("STOP", "good-2", datetime.now(UTC))
    other["body"] = other["body"].replace(NUMBER, "+14155550123")
    garbage = {**good, "messageId": "garbage", "body": "this is not json"}
    bad_number = envelope_record("STOP", "bad-number", datetime.now(UTC))
    bad_number["body"] = bad_number["body"].replace(NUMBER, "12")
    bad_number["messageId"] = "bad-number"
    oversized = envelope_record("x" * 2000, "too-long", datetime.now(UTC))
    oversized["messageId"] = "too-long"
    # And one message whose reply cannot be sent right now (a transient provider failure)
    real_sms = wiring.sms_inbound().sms

    class FailingFor:
        def __init__(self, channel: Any) -> None:
            self.channel = channel

        def send(self, to: str, body: str, **kwargs: Any) -> str:
            if to == "+14155550123":
                raise RuntimeError("throttled")
            return str(self.channel.send(to, body, **kwargs))

    monkeypatch.setattr(wiring.sms_inbound(), "sms", lambda: FailingFor(real_sms()))
    result = inbound({"Records": [garbage, good, bad_number, other, oversized]}, lambda_context)
    # Then only the transiently failing record is retried; unusable ones are ignored, not retried
    assert result == {"batchItemFailures": [{"itemIdentifier": other["messageId"]}]}
    assert store.get(key()).blocked is not None  # type: ignore[union-attr]
    # And the failed record's opt-out is already in force; its retry sends the confirmation once
    assert store.get(key("+14155550123")).blocked is not None  # type: ignore[union-attr]
    monkeypatch.setattr(wiring.sms_inbound(), "sms", real_sms)
    assert inbound({"Records": [other]}, lambda_context) == {"batchItemFailures": []}
    assert [to for to, _ in sent_sms()].count("+14155550123") == 1
    assert inbound({"Records": [other]}, lambda_context) == {"batchItemFailures": []}
    assert [to for to, _ in sent_sms()].count("+14155550123") == 1


def test_sample_events_run(inbound, webhook, lambda_context, store) -> None:
    assert inbound(sample_event("sms_inbound_sns_envelope"), lambda_context) == {"batchItemFailures": []}
    assert store.get(key()).blocked is not None  # type: ignore[union-attr]
    assert inbound(sample_event("sms_inbound_raw"), lambda_context) == {"batchItemFailures": []}
    assert store.get(key()).blocked is None  # type: ignore[union-attr]
    # The webhook sample carries a placeholder signature: refused, as a forged one must be
    assert webhook(sample_event("sms_webhook_twilio"), lambda_context)["statusCode"] == 403


def test_a_reply_whose_answer_was_lost_is_never_sent_again(inbound, lambda_context, store, monkeypatch) -> None:
    # Given SNS takes the confirmation text and its answer is lost (a read timeout)
    from botocore.exceptions import ReadTimeoutError

    client = wiring.sms_inbound().sms().client
    real, calls = client.publish, []

    def taken_then_lost(**kwargs: Any) -> Any:
        calls.append(kwargs)
        real(**kwargs)
        raise ReadTimeoutError(endpoint_url="https://sns.us-east-1.amazonaws.com")

    monkeypatch.setattr(client, "publish", taken_then_lost)
    record = envelope_record("STOP", "lost-1", datetime.now(UTC))
    # When the STOP is processed, and SQS delivers the message again
    assert inbound({"Records": [record]}, lambda_context) == {"batchItemFailures": []}
    assert inbound({"Records": [record]}, lambda_context) == {"batchItemFailures": []}
    # Then the block holds, the text went out once and was never tried again
    assert store.get(key()).blocked is not None  # type: ignore[union-attr]
    assert len(calls) == 1 and len(sent_sms()) == 1


def test_a_refused_reply_is_sent_by_the_redelivery(inbound, lambda_context, store, monkeypatch) -> None:
    # Given SNS refuses the confirmation text once (throttled: it surely did not go out)
    from botocore.exceptions import ClientError

    client = wiring.sms_inbound().sms().client
    real, calls = client.publish, []

    def refuse_once(**kwargs: Any) -> Any:
        calls.append(kwargs)
        if len(calls) <= 5:  # every attempt of the first delivery (send_at_most_once makes 5)
            raise ClientError({"Error": {"Code": "Throttling", "Message": "Rate exceeded"}}, "Publish")
        return real(**kwargs)

    monkeypatch.setattr(client, "publish", refuse_once)
    record = envelope_record("STOP", "refused-1", datetime.now(UTC))
    # When the STOP is processed: the block is stored, the record fails with its reply unsent
    with pytest.raises(BatchProcessingError):  # its only record failed: SQS delivers it again
        inbound({"Records": [record]}, lambda_context)
    assert store.get(key()).blocked is not None  # type: ignore[union-attr]
    assert sent_sms() == []
    # Then the redelivery sends the one confirmation, and a third delivery nothing more
    assert inbound({"Records": [record]}, lambda_context) == {"batchItemFailures": []}
    assert inbound({"Records": [record]}, lambda_context) == {"batchItemFailures": []}
    assert len(sent_sms()) == 1 and len(calls) == 6
