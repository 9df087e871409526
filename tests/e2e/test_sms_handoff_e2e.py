"""Durable intake on the real local stack: SmsWebhook's DynamoDB fails, the STOP still lands, confirmed once.

The stack is the one ``optout local`` runs, on the local Lambda runtime (every function in an
environment of its own, with its role), its functions reaching moto through the fault proxy
(:mod:`optout_local.harness`). Faults hit only SmsWebhook's calls: its role's access key names
them on the wire. Confirmations are counted from moto's outbox.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

import pytest
import requests

from optout.core.identity import Identity
from optout.sms.twilio import signature
from optout_local import harness
from optout_local.faults import Call, FaultPlan, Ledger
from optout_local.simulate import twilio_form

pytestmark = pytest.mark.e2e

OURS = "+14155550100"


@dataclass
class WebhookFaults(FaultPlan):
    """Every call of one role (by its access key) to the ``failing`` services answers 503."""

    access_key: str | None = None
    failing: frozenset[str] = field(default_factory=frozenset)

    def draw(self, call: Call) -> tuple[str, int] | None:
        if self.access_key is not None and call.access_key == self.access_key and call.service in self.failing:
            return "unavailable", 0
        return None


@pytest.fixture(scope="module")
def faulted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[harness.Proxied, WebhookFaults]]:
    plan = WebhookFaults()
    logs = (Path(tmp_path_factory.mktemp("handoff")) / "functions.log").open("w", encoding="utf-8")
    with harness.proxied_stack(plan, logs=logs) as env:
        assert env.stack.functions is not None and env.stack.functions.sessions is not None
        plan.access_key = env.stack.functions.sessions.credentials("SmsWebhookFunction").access_key_id
        yield env, plan
    logs.close()


def stop(env: harness.Proxied, number: str) -> tuple[requests.Response, dict[str, str]]:
    form = twilio_form(number, OURS, "STOP")
    url = env.config.api_url + "/sms/twilio"
    headers = {"X-Twilio-Signature": signature(env.target.twilio_auth_token(), url, form.items())}
    return requests.post(url, data=form, headers=headers, timeout=30), form


def confirmations(env: harness.Proxied, number: str) -> list[str]:
    return [m["body"] for m in env.stack.sent_sms() if m["to"] == number]


def wait_until(check: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_a_stop_the_webhook_cannot_write_is_queued_recorded_and_confirmed_once(faulted) -> None:
    env, plan = faulted
    number = "+14155550301"
    identity = Identity.of(env.target.pepper(), "sms", number)
    handed_off: list[str] = []

    def keep_hand_off(call: Call) -> None:
        if call.name == "sqs:SendMessage" and call.access_key == plan.access_key:
            handed_off.append(call.json()["MessageBody"])

    # Given every DynamoDB call of SmsWebhook answers 503
    plan.failing = frozenset({"dynamodb"})
    try:
        with env.proxy.recording(Ledger(observe=keep_hand_off)):
            response, form = stop(env, number)
    finally:
        plan.failing = frozenset()
    # Then the carrier got 200 and an empty TwiML: the message went to the queue, as it came
    assert response.status_code == 200, response.text
    assert len(ElementTree.fromstring(response.text)) == 0  # noqa: S314 - our own TwiML
    (body,) = handed_off
    assert dict(json.loads(body)["params"]) == form
    # And SmsInbound recorded it from the queue and texted the one confirmation
    wait_until(lambda: (s := env.target.store.get(identity.key)) is not None and s.blocked is not None)
    wait_until(lambda: len(confirmations(env, number)) == 1)
    history = env.target.store.history(identity.key)
    assert [(e.action, e.evidence["inbound_message_id"]) for e in history] == [("block", form["MessageSid"])]
    # When SQS delivers the same message again
    sqs = env.config.client("sqs")
    queue = env.stack.stack.ref("InboundSmsQueue")  # type: ignore[union-attr]
    sqs.send_message(QueueUrl=queue, MessageBody=body)
    wait_until(lambda: harness.queue_depth(sqs, queue) == 0)
    time.sleep(2.0)  # the reply, had there been one, goes out right after the record
    # Then no second confirmation went out, and nothing more was recorded
    assert len(confirmations(env, number)) == 1
    assert len(env.target.store.history(identity.key)) == 1


def test_when_the_queue_fails_too_the_webhook_answers_503(faulted) -> None:
    env, plan = faulted
    # Given SmsWebhook's DynamoDB and SQS calls both answer 503
    plan.failing = frozenset({"dynamodb", "sqs"})
    try:
        response, _ = stop(env, "+14155550302")
    finally:
        plan.failing = frozenset()
    # Then the webhook answers 503 with the JSON error, naming no number
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "intake_unavailable"
    assert "4155550302" not in response.text
