"""Play a carrier: send inbound SMS to a local or deployed stack and report what happened."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any
from xml.etree import ElementTree  # nosec B405

import click
import requests

from optout.core.identity import Identity
from optout.sms.twilio import signature
from optout_local.provision import ACCOUNT_ID
from optout_local.stack import LocalConfig
from optout_local.target import Target

TWILIO_PATH = "/sms/twilio"


def local_view(name: str, config: LocalConfig | None = None) -> list[dict[str, Any]]:
    """What the running local stack serves at ``/_local/<name>`` (its outboxes, its traces)."""
    config = config or LocalConfig()
    try:
        response = requests.get(f"{config.api_url}/_local/{name}", timeout=30)
    except requests.ConnectionError as exc:
        raise click.ClickException(f"no local stack answers at {config.api_url}; start one with `make run`") from exc
    response.raise_for_status()
    items: list[dict[str, Any]] = response.json()
    return items


def outbox(config: LocalConfig | None = None, kind: str = "sms") -> list[dict[str, Any]]:
    return local_view(f"outbox/{kind}", config)


def twilio_form(from_number: str, to_number: str, body: str) -> dict[str, str]:
    """What Twilio posts for an inbound SMS (the fields we read, and the usual others)."""
    return {
        "ToCountry": "US", "ToState": "CA", "SmsMessageSid": "", "NumMedia": "0", "ToCity": "",
        "FromZip": "", "SmsSid": "", "FromState": "", "SmsStatus": "received", "FromCity": "",
        "Body": body, "FromCountry": "", "To": to_number, "ToZip": "", "NumSegments": "1",
        "MessageSid": "SM" + uuid.uuid4().hex, "AccountSid": "AC" + "0" * 32, "From": from_number,
        "ApiVersion": "2010-04-01",
    }  # fmt: skip


def via_twilio(target: Target, from_number: str, to_number: str, body: str) -> list[str]:
    form = twilio_form(from_number, to_number, body)
    form["SmsMessageSid"] = form["SmsSid"] = form["MessageSid"]
    url = target.base_url + TWILIO_PATH
    headers = {"X-Twilio-Signature": signature(target.twilio_auth_token(), url, form.items())}
    response = requests.post(url, data=form, headers=headers, timeout=30)
    lines = [f"via twilio: HTTP {response.status_code} (MessageSid {form['MessageSid']})"]
    if response.status_code != 200:
        return [*lines, response.text]
    message = ElementTree.fromstring(response.text).find("Message")  # noqa: S314 - our own TwiML  # nosec B314
    lines.append(f"reply: {message.text}" if message is not None else "reply: (none)")
    return lines


def via_sns(target: Target, from_number: str, to_number: str, body: str, wait: float) -> list[str]:
    inbound_id = str(uuid.uuid4())
    document = {
        "originationNumber": from_number,
        "destinationNumber": to_number,
        "messageKeyword": "KEYWORD_" + "0" * 12,
        "messageBody": body,
        "inboundMessageId": inbound_id,
        "previousPublishedMessageId": str(uuid.uuid4()),
    }
    before = len(outbox()) if target.local else 0
    if target.local:  # as End User Messaging publishes it: its own principal, under the topic's policy
        number = f"arn:aws:sms-voice:{target.region}:{ACCOUNT_ID}:phone-number/{to_number.lstrip('+')}"
        outcome = deliver(target, "sms-voice.amazonaws.com", number, target.inbound_topic, json.dumps(document))
        if not outcome.get("delivered"):
            return [f"via sns: End User Messaging could not publish: {outcome.get('reason')}"]
    else:  # a deployed stack: the operator's own credentials publish for End User Messaging
        target.clients("sns").publish(TopicArn=target.inbound_topic, Message=json.dumps(document))
    lines = [f"via sns: published inbound message {inbound_id}"]
    identity = Identity.of(target.pepper(), "sms", from_number)
    deadline = time.monotonic() + wait
    event: dict[str, Any] | None = None
    while time.monotonic() < deadline and event is None:
        for item in target.store.history(identity.key):
            if item.evidence.get("inbound_message_id") == inbound_id:
                event = item.model_dump(mode="json")
        if event is None:
            time.sleep(0.2)
    if event is None:
        return [*lines, f"not processed within {wait:.0f}s (is the stack's SmsInbound poller running?)"]
    lines.append(
        f"recorded: {event['action']} {event['scope']}"
        + (f" ({event['evidence'].get('reason')})" if event["evidence"].get("reason") else "")
    )
    if target.local:
        sent = _wait_for_reply(before, identity, target, deadline)
        lines.append(f"reply: {sent}" if sent else "reply: (none)")
    return lines


def deliver(target: Target, principal: str, source_arn: str, topic_arn: str, message: str) -> dict[str, Any]:
    """Publish to a topic of the local stack as an AWS service does, if the topic's policy lets it.

    ``principal``: ``sms-voice.amazonaws.com`` (inbound SMS), ``ses.amazonaws.com`` (SES events);
    ``source_arn``: the phone number, or the configuration set. Returns ``{"delivered": bool, ...}``.
    """
    config = LocalConfig()
    body = {"principal": principal, "source_arn": source_arn, "topic_arn": topic_arn, "message": message}
    answer = requests.post(f"{config.aws_url}/_local/deliver", json=body, timeout=30)
    outcome: dict[str, Any] = answer.json()
    return outcome


def _wait_for_reply(before: int, identity: Identity, target: Target, deadline: float) -> str | None:
    # Replies go out right after the event is recorded; give the SMS a moment to land.
    settle = min(deadline, time.monotonic() + 2.0)
    while True:
        new = outbox()[before:]
        mine = [m for m in new if Identity.of(target.pepper(), "sms", m["to"]).key == identity.key]
        if mine or time.monotonic() >= settle:
            return mine[-1]["body"] if mine else None
        time.sleep(0.1)
