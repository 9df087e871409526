"""Revocations in other words through the real functions on moto: DynamoDB once-markers, moto's outbox."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from optout import wiring
from optout.core.identity import Identity
from optout.core.settings import get_settings
from optout.suppression.store import DynamoSuppressionStore
from optout_local.provision import Stack
from optout_local.runtime import LambdaContext, load_handler
from tests.conftest import sample_event, sent_sms

NUMBER = "+14155550111"
OURS = "+14155550100"


@pytest.fixture
def store(aws: Stack) -> DynamoSuppressionStore:
    return DynamoSuppressionStore(get_settings().suppression_table)


@pytest.fixture
def inbound(aws: Stack) -> Any:
    return load_handler(aws.function("SmsInbound"))


def key() -> str:
    return Identity.of(wiring.pepper(), "sms", NUMBER).key


def record(body: str, sent: datetime, message_id: str | None = None) -> dict[str, Any]:
    """One InboundSmsQueue record: End User Messaging's two-way SMS inside its SNS envelope."""
    message = {
        "originationNumber": NUMBER, "destinationNumber": OURS, "messageKeyword": "KEYWORD_123456789012",
        "messageBody": body, "inboundMessageId": message_id or str(uuid.uuid4()),
    }  # fmt: skip
    event: dict[str, Any] = sample_event("sms_inbound_sns_envelope")["Records"][0]
    envelope = json.loads(event["body"])
    envelope["Message"] = json.dumps(message)
    envelope["Timestamp"] = sent.isoformat().replace("+00:00", "Z")
    event["body"] = json.dumps(envelope)
    event["messageId"] = str(uuid.uuid4())
    return event


def test_unclear_replies_get_one_clarification_a_day_and_a_clear_one_blocks(
    inbound: Any, lambda_context: LambdaContext, store: DynamoSuppressionStore
) -> None:
    now = datetime.now(UTC)
    # Given two unclear replies on one day, the first delivered twice
    first = record("Not interested", now, "unclear-1")
    assert inbound({"Records": [first, first]}, lambda_context) == {"batchItemFailures": []}
    assert inbound({"Records": [record("who is this?", now + timedelta(seconds=1))]}, lambda_context) == {
        "batchItemFailures": []
    }

    # Then moto's outbox holds one clarification, and the number is not blocked
    texts = [text for number, text in sent_sms() if number == NUMBER]
    assert len(texts) == 1 and "STOP" in texts[0] and "?" in texts[0]
    state = store.get(key())
    assert state is None or state.blocked is None

    # When the person then writes a revocation in words of their own
    assert inbound({"Records": [record("please stop texting me", now + timedelta(seconds=2))]}, lambda_context) == {
        "batchItemFailures": []
    }

    # Then the number is blocked and gets the one confirmation
    state = store.get(key())
    assert state is not None and state.blocked is not None and state.blocked.source == "sms_keyword"
    texts = [text for number, text in sent_sms() if number == NUMBER]
    assert len(texts) == 2 and "START" in texts[1]
    reasons = [e.evidence.get("reason") for e in store.history(key())]
    assert reasons == ["unclear; clarification asked", "unclear; clarification already asked today", None]
