"""Durable intake: a Twilio webhook that cannot record its message inline hands it to InboundSmsQueue.

The handlers run in this process on moto, each with its function's role (the hand-off's
``sqs:SendMessage`` and the queue key's ``kms:GenerateDataKey`` are authorized as SmsWebhook's);
faults are injected on the DynamoDB and SQS clients the layer uses. Confirmations are counted
from moto's sent SMS, not from our records.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl
from xml.etree import ElementTree

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from optout import wiring
from optout.core import clients
from optout.sms.inbound import HANDED_OFF_KIND
from optout_local.iam import in_process
from optout_local.provision import Stack
from optout_local.runtime import LambdaContext
from tests.conftest import sent_sms
from tests.integration.test_sms_handlers import NUMBER, inbound, key, store, twilio_event, webhook

__all__ = ["inbound", "store", "webhook"]  # fixtures, used by name

CONFIRMATION = "You are unsubscribed"


@pytest.fixture
def faults() -> Iterator[pytest.MonkeyPatch]:
    """Patches of the layer's clients that a test undoes when the fault ends (the environment stays)."""
    patches = pytest.MonkeyPatch()
    yield patches
    patches.undo()


def throttled(operation: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "Rate exceeded"},
         "ResponseMetadata": {"HTTPStatusCode": 400}},
        operation,
    )  # fmt: skip


def empty_twiml(response: dict[str, Any]) -> bool:
    assert response["statusCode"] == 200, response
    assert response["headers"]["Content-Type"].startswith("text/xml")
    root = ElementTree.fromstring(response["body"])  # noqa: S314 - our own TwiML
    return root.tag == "Response" and len(root) == 0


def queued() -> list[dict[str, Any]]:
    """What InboundSmsQueue holds, received as SmsInbound's event source mapping receives it."""
    return in_process.installed().poll("InboundSmsQueue")


def confirmations() -> list[str]:
    return [text for number, text in sent_sms() if number == NUMBER]


def test_a_webhook_whose_inline_write_fails_is_queued_recorded_and_confirmed_once(
    aws: Stack, webhook: Any, inbound: Any, lambda_context: LambdaContext, store: Any, faults: pytest.MonkeyPatch
) -> None:
    # Given DynamoDB refuses the webhook's write (throttled, every attempt)
    dynamodb = clients.dynamodb()

    def refuse(**_: Any) -> Any:
        raise throttled("TransactWriteItems")

    faults.setattr(dynamodb, "transact_write_items", refuse)
    event = twilio_event("STOP")
    sid = dict(parse_qsl(event["body"]))["MessageSid"]
    # When a signed STOP arrives
    response = webhook(event, lambda_context)
    # Then the carrier gets 200 and an empty TwiML, and nothing is recorded yet
    assert empty_twiml(response)
    assert store.get(key()) is None
    # And the message waits on InboundSmsQueue, as it came: every signed field
    faults.undo()
    records = queued()
    assert len(records) == 1
    message = json.loads(records[0]["body"])
    assert message["kind"] == HANDED_OFF_KIND and message["version"] == 1
    assert dict(message["params"]) == dict(parse_qsl(event["body"]))
    # When SmsInbound takes it
    assert inbound({"Records": records}, lambda_context) == {"batchItemFailures": []}
    # Then the number is blocked, with the Twilio message id as evidence, and one confirmation went out by SMS
    state = store.get(key())
    assert state is not None and state.blocked is not None and state.blocked.source == "sms_keyword"
    assert [(e.action, e.evidence["inbound_message_id"]) for e in store.history(key())] == [("block", sid)]
    assert len(confirmations()) == 1 and CONFIRMATION in confirmations()[0]
    # And a redelivery, and the same webhook again, send nothing more
    assert inbound({"Records": records}, lambda_context) == {"batchItemFailures": []}
    assert empty_twiml(webhook(event, lambda_context))
    assert len(confirmations()) == 1 and len(store.history(key())) == 1


def test_a_write_applied_whose_answer_was_lost_is_confirmed_once_by_the_queue(
    aws: Stack, webhook: Any, inbound: Any, lambda_context: LambdaContext, store: Any, faults: pytest.MonkeyPatch
) -> None:
    # Given DynamoDB applies the webhook's transaction (the reply claimed in it) and the answer is lost
    dynamodb = clients.dynamodb()
    real = dynamodb.transact_write_items

    def applied_then_lost(**kwargs: Any) -> Any:
        real(**kwargs)
        raise ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")

    faults.setattr(dynamodb, "transact_write_items", applied_then_lost)
    event = twilio_event("STOP")
    # When the STOP arrives, the webhook hands it off and answers without the reply
    assert empty_twiml(webhook(event, lambda_context))
    faults.undo()
    assert store.get(key()).blocked is not None  # type: ignore[union-attr]
    # Then the queue sees the message recorded, takes over the reply that attempt claimed but
    # never sent, and texts it once; a redelivery sends nothing more
    records = queued()
    assert inbound({"Records": records}, lambda_context) == {"batchItemFailures": []}
    assert inbound({"Records": records}, lambda_context) == {"batchItemFailures": []}
    assert len(confirmations()) == 1
    assert len(store.history(key())) == 1


def test_an_inline_write_that_outlasts_its_budget_is_handed_off_and_confirmed_once(
    aws: Stack, webhook: Any, inbound: Any, lambda_context: LambdaContext, store: Any, faults: pytest.MonkeyPatch
) -> None:
    # Given a DynamoDB that takes 1.5 s to answer the write, and a webhook with 0.3 s for it
    dynamodb = clients.dynamodb()
    real = dynamodb.transact_write_items

    def slow(**kwargs: Any) -> Any:
        time.sleep(1.5)
        return real(**kwargs)

    faults.setattr(dynamodb, "transact_write_items", slow)
    faults.setattr(wiring.sms_webhook(), "inline_seconds", 0.3)
    # When a STOP arrives: the webhook answers within its budget, with an empty TwiML
    started = time.monotonic()
    assert empty_twiml(webhook(twilio_event("STOP"), lambda_context))
    assert time.monotonic() - started < 1.4
    # And the late write still lands (its reply claimed by the attempt that gave up on it)
    deadline = time.monotonic() + 10
    while (store.get(key()) is None) and time.monotonic() < deadline:
        time.sleep(0.1)
    faults.undo()
    assert store.get(key()).blocked is not None  # type: ignore[union-attr]
    # Then the queue sends the one confirmation, and a redelivery nothing more
    records = queued()
    assert inbound({"Records": records}, lambda_context) == {"batchItemFailures": []}
    assert inbound({"Records": records}, lambda_context) == {"batchItemFailures": []}
    assert len(confirmations()) == 1


def test_inline_writes_hanging_in_a_brownout_never_hold_up_the_hand_off(
    aws: Stack, webhook: Any, lambda_context: LambdaContext, faults: pytest.MonkeyPatch
) -> None:
    # Given a DynamoDB whose writes hang (each abandoned inline call keeps its thread), more of
    # them than the inline calls have threads
    import threading

    dynamodb = clients.dynamodb()
    release = threading.Event()
    faults.setattr(dynamodb, "transact_write_items", lambda **kwargs: release.wait(30) and throttled("Transact"))
    faults.setattr(dynamodb, "get_item", lambda **kwargs: release.wait(30) and {})
    faults.setattr(wiring.sms_webhook(), "inline_seconds", 0.2)
    try:
        # When 24 STOPs arrive one after another
        took = []
        for _ in range(24):
            started = time.monotonic()
            assert empty_twiml(webhook(twilio_event("STOP"), lambda_context))
            took.append(time.monotonic() - started)
        # Then every one was handed off within its budget: none waited for a hung inline call
        assert max(took) < 2.0, took
        handed = 0
        while batch := in_process.installed().poll("InboundSmsQueue", delete=True):
            handed += len(batch)
        assert handed == 24
    finally:
        release.set()


def test_when_the_hand_off_fails_too_the_webhook_answers_503(
    aws: Stack, webhook: Any, lambda_context: LambdaContext, store: Any, faults: pytest.MonkeyPatch
) -> None:
    # Given DynamoDB refuses the write and SQS is unavailable
    def refuse(**_: Any) -> Any:
        raise throttled("TransactWriteItems")

    def unavailable(**_: Any) -> Any:
        raise ClientError(
            {"Error": {"Code": "ServiceUnavailable", "Message": "unavailable"},
             "ResponseMetadata": {"HTTPStatusCode": 503}},
            "SendMessage",
        )  # fmt: skip

    faults.setattr(clients.dynamodb(), "transact_write_items", refuse)
    faults.setattr(clients.client("sqs"), "send_message", unavailable)
    # When a STOP arrives
    response = webhook(twilio_event("STOP"), lambda_context)
    # Then it gets a 503 with the JSON error (so the carrier may try again), and nothing is queued
    assert response["statusCode"] == 503, response
    assert json.loads(response["body"])["error"]["code"] == "intake_unavailable"
    assert NUMBER.lstrip("+") not in response["body"]
    faults.undo()
    assert queued() == []
    assert store.get(key()) is None


def test_bad_input_is_refused_and_never_handed_off(
    aws: Stack, webhook: Any, lambda_context: LambdaContext, faults: pytest.MonkeyPatch
) -> None:
    # Given DynamoDB would fail any write
    def refuse(**_: Any) -> Any:
        raise throttled("TransactWriteItems")

    faults.setattr(clients.dynamodb(), "transact_write_items", refuse)
    # Then a forged, or a signed but unusable, webhook still gets its 4xx, and nothing is queued
    forged = twilio_event("STOP")
    forged["headers"]["x-twilio-signature"] = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert webhook(forged, lambda_context)["statusCode"] == 403
    assert webhook(twilio_event("STOP", From="4155550101"), lambda_context)["statusCode"] == 400
    faults.undo()
    assert queued() == []


def test_a_handed_off_message_of_an_unknown_version_is_retried_not_dropped(
    aws: Stack, inbound: Any, lambda_context: LambdaContext, store: Any
) -> None:
    # Given a hand-off written by a newer SmsWebhook than this SmsInbound knows
    body = {"kind": HANDED_OFF_KIND, "version": 2, "params": [["From", NUMBER], ["Body", "STOP"]]}
    clients.client("sqs").send_message(QueueUrl=aws.ref("InboundSmsQueue"), MessageBody=json.dumps(body))
    records = queued()
    # Then its record fails (SQS delivers it again, and in the end keeps it in the DLQ)
    from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

    with pytest.raises(BatchProcessingError):
        inbound({"Records": records}, lambda_context)
    assert store.get(key()) is None and sent_sms() == []
