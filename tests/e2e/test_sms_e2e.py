"""SMS keywords on the real local stack, over HTTP (Twilio-style) and SNS (End User Messaging)."""

from __future__ import annotations

import json

import pytest
import requests

from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e


def simulate(stack: RunningStack, number: str, body: str, via: str) -> list[str]:
    return stack.cli("sms", "simulate", "--from", number, "--body", body, "--via", via).stdout.splitlines()


def reply(lines: list[str]) -> str:
    (line,) = [x for x in lines if x.startswith("reply: ")]
    return line.removeprefix("reply: ")


def outbox_to(stack: RunningStack, number: str) -> list[str]:
    messages = json.loads(stack.cli("outbox", "--json").stdout)["sms"]
    return [m["body"] for m in messages if m["to"] == number]


def history(stack: RunningStack, number: str) -> dict:
    return json.loads(stack.cli("suppression", "show", "sms", number, "--json").stdout)


def test_keywords_through_the_twilio_webhook(local_stack) -> None:
    number = "+14155550201"
    assert "unsubscribed" in reply(simulate(local_stack, number, "STOP", "twilio"))
    assert reply(simulate(local_stack, number, "Stop!", "twilio")) == "(none)"
    assert "resubscribed" in reply(simulate(local_stack, number, "START", "twilio"))
    assert "Msg & data rates may apply" in reply(simulate(local_stack, number, "HELP", "twilio"))
    assert reply(simulate(local_stack, number, "see you", "twilio")) == "(none)"
    state = history(local_stack, number)
    assert state["blocked"] is None
    assert [e["action"] for e in state["events"]] == ["block", "ignored", "unblock", "help", "ignored"]
    assert all(e["evidence"]["inbound_message_id"].startswith("SM") for e in state["events"])


def test_keywords_through_sns_and_the_queue_with_replies_by_sms(local_stack) -> None:
    number = "+14155550202"
    lines = simulate(local_stack, number, "STOP", "sns")
    assert "recorded: block channel" in lines
    assert history(local_stack, number)["blocked"]["source"] == "sms_keyword"
    assert "recorded: ignored channel (already blocked)" in simulate(local_stack, number, "stop", "sns")
    assert "recorded: unblock channel" in simulate(local_stack, number, "START", "sns")
    assert "recorded: help channel" in simulate(local_stack, number, "HELP", "sns")
    assert "recorded: ignored channel (not a keyword)" in simulate(local_stack, number, "hi there", "sns")
    # The confirmations and the help text, each once, in moto's sent SMS
    sent = outbox_to(local_stack, number)
    assert len(sent) == 3
    assert "unsubscribed" in sent[0] and "resubscribed" in sent[1] and "Msg & data rates may apply" in sent[2]


def test_unsigned_and_forged_webhooks_are_refused(local_stack) -> None:
    url = local_stack.api_url + "/sms/twilio"
    form = {"From": "+14155550203", "To": "+14155550100", "Body": "STOP", "MessageSid": "SM" + "1" * 32}
    assert requests.post(url, data=form, timeout=10).status_code == 403
    forged = {"X-Twilio-Signature": "RSOYDt4T1cUTdK1PDd93/VVr8B8="}
    assert requests.post(url, data=form, headers=forged, timeout=10).status_code == 403
    assert requests.post(url, json=form, headers=forged, timeout=10).status_code == 415
    assert requests.get(url, timeout=10).status_code == 404  # only POST is routed, as in API Gateway
    assert history(local_stack, "+14155550203")["events"] == []
