"""SmsInbound on revocations in other words: a clear one blocks; an unclear one is asked about once a day.

The memory store keeps the same once-marker contract as DynamoDB; the fake channel stands in for
the provider and records every text it was handed.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from optout.core.settings import SmsKeywordSettings
from optout.sms.inbound import InboundSms, SmsInbound
from optout.sms.keywords import load_book
from optout.suppression.store import MemorySuppressionStore

NUMBER = "+14155550101"
OURS = "+14155550100"
DAY = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


class FakeSms:
    """The outbound SMS provider: every text handed to it, and a send that can be made to fail."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.fail_next = 0

    def send(self, number: str, text: str, origination: str | None = None) -> str:
        if self.fail_next:
            self.fail_next -= 1
            raise ValueError("refused")  # neither throttling nor a lost answer: surely not sent
        self.sent.append((number, text))
        return "msg-" + uuid.uuid4().hex

    def mirror_opt_out(self, number: str) -> None:
        pass

    def mirror_opt_in(self, number: str) -> None:
        pass


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


Parts = tuple[SmsInbound, MemorySuppressionStore, FakeSms, Clock]


@pytest.fixture
def parts() -> Parts:
    settings = SmsKeywordSettings.from_env({"OPTOUT_SUPPRESSION_TABLE": "t", "OPTOUT_PEPPER_SECRET": "p"})
    store, sms, clock = MemorySuppressionStore(), FakeSms(), Clock(DAY)
    service = SmsInbound(settings, store, lambda: b"pepper" * 6, load_book(), lambda: sms, now=clock)
    return service, store, sms, clock


def inbound(body: str, at: datetime = DAY, message_id: str | None = None) -> InboundSms:
    return InboundSms(
        provider="end_user_messaging",
        message_id=message_id or uuid.uuid4().hex,
        from_number=NUMBER,
        to_number=OURS,
        body=body,
        sent_at=at,
    )


def queued(service: SmsInbound, sms: InboundSms) -> None:
    result = service.handle(sms)
    reply = service.claim_reply(result)
    if reply is not None:
        try:
            service.sms().send(NUMBER, reply, origination=OURS)
        except Exception:
            service.release_reply(result)
            raise


def blocked(store: MemorySuppressionStore) -> bool:
    return any(state.blocked is not None for state in store.states.values())


@pytest.mark.parametrize(
    "body",
    ["Please stop texting me", "I want to unsubscribe", "no more texts", "No más mensajes", "Plus de SMS svp"],
)
def test_a_clear_revocation_in_other_words_blocks_with_one_confirmation(parts: Parts, body: str) -> None:
    service, store, sms, _ = parts

    queued(service, inbound(body))
    queued(service, inbound(body))  # said twice: still one confirmation

    assert blocked(store)
    assert len(sms.sent) == 1
    assert "START" in sms.sent[0][1] or "COMENZAR" in sms.sent[0][1] or "COMMENCER" in sms.sent[0][1]


@pytest.mark.parametrize("body", ["don't stop", "Do not stop sending me updates", "No pares", "N'arrêtez pas"])
def test_a_negated_revocation_neither_blocks_nor_texts(parts: Parts, body: str) -> None:
    service, store, sms, _ = parts

    queued(service, inbound(body))

    assert not blocked(store)
    assert sms.sent == []


def test_an_unclear_message_gets_one_clarification_a_day_and_no_block(parts: Parts) -> None:
    service, store, sms, _ = parts

    # Given three unclear messages on one day
    for body in ["I'll cancel my appointment", "not interested", "who is this?"]:
        queued(service, inbound(body))

    # Then one clarification went out, naming how to opt out, and nothing was blocked
    assert not blocked(store)
    assert len(sms.sent) == 1
    assert "STOP" in sms.sent[0][1]
    reasons = [e.evidence["reason"] for e in next(iter(store.events.values()))]
    assert reasons == [
        "unclear; clarification asked",
        "unclear; clarification already asked today",
        "unclear; clarification already asked today",
    ]

    # And the next day, another unclear message is asked about once more
    queued(service, inbound("not interested", DAY + timedelta(days=1)))
    assert len(sms.sent) == 2


def test_a_redelivered_unclear_message_is_not_asked_about_twice(parts: Parts) -> None:
    service, _, sms, _ = parts
    message = inbound("not interested", message_id="m-1")

    queued(service, message)
    queued(service, message)

    assert len(sms.sent) == 1


def test_a_clarification_whose_send_failed_goes_out_on_redelivery_once(parts: Parts) -> None:
    service, _, sms, _ = parts
    message = inbound("not interested", message_id="m-2")
    sms.fail_next = 1

    # Given a first delivery whose clarification the provider refused
    with pytest.raises(ValueError, match="refused"):
        queued(service, message)
    assert sms.sent == []

    # When the message is delivered again, and again
    queued(service, message)
    queued(service, message)

    # Then the clarification went out once
    assert len(sms.sent) == 1


def test_a_blocked_number_is_asked_nothing(parts: Parts) -> None:
    service, store, sms, clock = parts
    queued(service, inbound("STOP"))
    clock.at = DAY + timedelta(minutes=1)

    queued(service, inbound("not interested", DAY + timedelta(minutes=1)))

    assert blocked(store)
    assert len(sms.sent) == 1  # the confirmation only
    assert next(iter(store.events.values()))[-1].evidence["reason"] == "unclear; already blocked"


def test_the_webhook_answers_one_clarification_a_day(parts: Parts) -> None:
    service, _, sms, _ = parts

    # Given unclear messages through a path whose reply travels in the HTTP answer
    first = service.handle(inbound("not interested"), reply_in_response=True)
    second = service.handle(inbound("who are you"), reply_in_response=True)

    # Then the first answer carries the clarification and the second none
    assert first.intent == "clarify" and first.reply is not None and not first.duplicate
    assert second.reply is None
    # and the one that was answered is claimed: a queue delivery of the same day sends nothing
    queued(service, inbound("no thanks"))
    assert sms.sent == []


def test_a_clarification_left_unsent_is_answered_once_by_the_next_webhook_message(parts: Parts) -> None:
    service, _, sms, _ = parts
    # Given a queued unclear message whose clarification the provider refused
    sms.fail_next = 1
    with pytest.raises(ValueError, match="refused"):
        queued(service, inbound("not interested", message_id="q-1"))

    # When another unclear message of the same day comes through the webhook, twice
    other = inbound("who are you", message_id="w-1")
    first = service.handle(other, reply_in_response=True)
    again = service.handle(other, reply_in_response=True)

    # Then the first answer carries the clarification, claimed: neither the redelivery of
    # either message nor the webhook's retry sends it again
    assert first.reply is not None and not first.duplicate
    assert again.duplicate and service.claim_reply(again) is None
    queued(service, inbound("not interested", message_id="q-1"))
    assert sms.sent == []
