"""Each side effect of an inbound SMS that must happen once is tracked on its own once-marker.

The confirmation (claimed before it is sent, never sent twice) and the mirror into End User
Messaging's opt-out list (pending until done): a redelivery finishes what a failed attempt left
undone. The memory store keeps the DynamoDB store's once-marker contract; the fake provider
records every text and every mirror call it was handed.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from optout.channels.sms import OptedOutAtProvider
from optout.core.settings import SmsKeywordSettings
from optout.sms.inbound import HandedOffTwilio, SmsInbound
from optout.sms.keywords import load_book
from optout.suppression.store import MemorySuppressionStore

NUMBER = "+14155550101"
OURS = "+14155550100"
SENT = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


class FakeProvider:
    """End User Messaging: texts and opt-out list calls, each of which can be made to fail.

    As AWS does, it refuses to text a number on its opt-out list (``EndUserMessagingSms`` turns
    SendTextMessage's ConflictException DESTINATION_PHONE_NUMBER_OPTED_OUT into OptedOutAtProvider).
    """

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str | None]] = []
        self.mirrored: list[tuple[str, str]] = []
        self.fail_mirror = 0
        self.opted_out: set[str] = set()
        self.refused: list[str] = []

    def send(self, number: str, text: str, origination: str | None = None) -> str:
        if number in self.opted_out:
            self.refused.append(number)
            raise OptedOutAtProvider("DESTINATION_PHONE_NUMBER_OPTED_OUT")
        self.sent.append((number, text, origination))
        return "msg-" + uuid.uuid4().hex

    def mirror_opt_out(self, number: str) -> None:
        self._mirror("opt_out", number)

    def mirror_opt_in(self, number: str) -> None:
        self._mirror("opt_in", number)

    def _mirror(self, what: str, number: str) -> None:
        if self.fail_mirror:
            self.fail_mirror -= 1
            raise ConnectionError("the opt-out list did not answer")
        self.mirrored.append((what, number))
        if what == "opt_out":
            self.opted_out.add(number)
        else:
            self.opted_out.discard(number)


@pytest.fixture
def parts() -> tuple[SmsInbound, MemorySuppressionStore, FakeProvider]:
    settings = SmsKeywordSettings.from_env(
        {
            "OPTOUT_SUPPRESSION_TABLE": "t",
            "OPTOUT_PEPPER_SECRET": "p",
            "OPTOUT_SMS_PROVIDER": "end-user-messaging",
            "OPTOUT_SMS_ORIGINATION_IDENTITY": "pool-1",
            "OPTOUT_SMS_OPT_OUT_LIST": "optout",
        }
    )
    store, provider = MemorySuppressionStore(), FakeProvider()
    service = SmsInbound(settings, store, lambda: b"pepper" * 6, load_book(), lambda: provider, now=lambda: SENT)
    return service, store, provider


def two_way(body: str, message_id: str) -> str:
    return json.dumps(
        {"originationNumber": NUMBER, "destinationNumber": OURS, "messageBody": body, "inboundMessageId": message_id}
    )


def test_a_mirror_that_failed_is_finished_by_the_redelivery_and_never_repeated(parts) -> None:
    service, store, provider = parts
    # Given the opt-out list fails once, after the STOP is recorded and confirmed
    provider.fail_mirror = 1
    with pytest.raises(ConnectionError):
        service.receive_queued(two_way("STOP", "m-1"), SENT)
    assert store.get(next(iter(store.states))).blocked is not None  # type: ignore[union-attr]
    assert provider.mirrored == []
    assert len(provider.sent) == 1 and "unsubscribed" in provider.sent[0][1]
    # When SQS delivers the message again
    result = service.receive_queued(two_way("STOP", "m-1"), SENT)
    # Then it counts as a duplicate, mirrors the opt-out, and sends no second confirmation
    assert result is not None and result.duplicate
    assert provider.mirrored == [("opt_out", NUMBER)]
    assert len(provider.sent) == 1
    # And a third delivery does neither again
    service.receive_queued(two_way("STOP", "m-1"), SENT)
    assert provider.mirrored == [("opt_out", NUMBER)] and len(provider.sent) == 1


def test_a_pending_mirror_that_a_later_keyword_superseded_is_not_replayed(parts) -> None:
    service, _, provider = parts
    # Given a STOP whose mirror failed, then a START (mirrored)
    provider.fail_mirror = 1
    with pytest.raises(ConnectionError):
        service.receive_queued(two_way("STOP", "m-1"), SENT)
    service.receive_queued(two_way("START", "m-2"), SENT + timedelta(minutes=1))
    assert provider.mirrored == [("opt_in", NUMBER)]
    # When the STOP is delivered again, late
    service.receive_queued(two_way("STOP", "m-1"), SENT)
    # Then the number stays off the opt-out list: the START came after it
    assert provider.mirrored == [("opt_in", NUMBER)]
    service.receive_queued(two_way("STOP", "m-1"), SENT)
    assert provider.mirrored == [("opt_in", NUMBER)]


def test_a_handed_off_twilio_stop_is_confirmed_from_the_channels_own_number(parts) -> None:
    service, _, provider = parts
    # Given a Twilio STOP handed off by a webhook attempt
    form = [("From", NUMBER), ("To", OURS), ("Body", "STOP"), ("MessageSid", "SM" + "1" * 32)]
    handed = HandedOffTwilio(params=form, received_at=SENT, attempt=uuid.uuid4().hex)
    # When the queue takes it
    result = service.receive_queued(handed.model_dump_json(), SENT + timedelta(seconds=5))
    # Then it is recorded as Twilio's message, mirrored, and confirmed by SMS once: not from the
    # Twilio number (not ours to send from through AWS) but from the channel's own identity
    assert result is not None and result.changed and result.once_key == "sms#twilio#SM" + "1" * 32
    assert provider.mirrored == [("opt_out", NUMBER)]
    assert [(to, origination) for to, _, origination in provider.sent] == [(NUMBER, None)]


def test_a_stop_is_confirmed_before_its_number_goes_on_the_opt_out_list(parts) -> None:
    service, _, provider = parts
    # When a STOP arrives through End User Messaging, whose list refuses texts to listed numbers
    result = service.receive_queued(two_way("STOP", "m-1"), SENT)
    # Then the one confirmation went out, then the number went on the list, and the record is done
    assert result is not None and result.changed
    assert [(to, "unsubscribed" in text) for to, text, _ in provider.sent] == [(NUMBER, True)]
    assert provider.mirrored == [("opt_out", NUMBER)] and provider.refused == []
    # And a redelivery sends nothing and mirrors nothing again
    service.receive_queued(two_way("STOP", "m-1"), SENT)
    assert len(provider.sent) == 1 and provider.mirrored == [("opt_out", NUMBER)]


def test_a_start_comes_off_the_opt_out_list_before_it_is_confirmed(parts) -> None:
    service, _, provider = parts
    # Given a number that sent STOP (confirmed, then listed)
    service.receive_queued(two_way("STOP", "m-1"), SENT)
    # When it sends START
    result = service.receive_queued(two_way("START", "m-2"), SENT + timedelta(minutes=1))
    # Then it came off the list first, so its confirmation was not refused
    assert result is not None and result.changed
    assert provider.mirrored == [("opt_out", NUMBER), ("opt_in", NUMBER)]
    assert len(provider.sent) == 2 and provider.refused == []


def test_a_reply_to_a_number_the_provider_lists_is_final_not_a_poison_message(parts) -> None:
    service, _, provider = parts
    # Given a number already on the provider's opt-out list (a STOP that reached AWS some other way)
    provider.opted_out.add(NUMBER)
    # When it asks for HELP, whose reply the provider refuses
    result = service.receive_queued(two_way("HELP", "m-1"), SENT)
    # Then the message is recorded and the record succeeds: no retry could ever send that reply
    assert result is not None and provider.refused == [NUMBER] and provider.sent == []
    # And a redelivery does not try again
    service.receive_queued(two_way("HELP", "m-1"), SENT)
    assert provider.refused == [NUMBER]


def test_a_stop_whose_reply_is_refused_for_good_is_still_mirrored_and_recorded(parts) -> None:
    from botocore.exceptions import ClientError

    service, store, provider = parts

    def refuse(number: str, text: str, origination: str | None = None) -> str:
        raise ClientError(
            {"Error": {"Code": "ValidationException", "Message": "bad"}, "ResponseMetadata": {"HTTPStatusCode": 400}},
            "SendTextMessage",
        )

    provider.send = refuse  # type: ignore[method-assign]
    # When a STOP comes whose confirmation the provider refuses (not a throttle)
    result = service.receive_queued(two_way("STOP", "m-1"), SENT)
    # Then the record succeeds (no poison message), the STOP is in force and mirrored
    assert result is not None and result.changed
    assert store.get(next(iter(store.states))).blocked is not None  # type: ignore[union-attr]
    assert provider.mirrored == [("opt_out", NUMBER)]


def test_a_throttled_reply_waits_for_the_redelivery_and_so_does_the_stops_mirror(parts) -> None:
    from optout.channels.pacing import Transient

    service, _, provider = parts
    send = provider.send

    def throttled(number: str, text: str, origination: str | None = None) -> str:
        raise Transient("throttled")

    provider.send = throttled  # type: ignore[method-assign]
    with pytest.raises(Transient):
        service.receive_queued(two_way("STOP", "m-1"), SENT)
    assert provider.mirrored == []
    # When SQS delivers it again and the provider takes the text
    provider.send = send  # type: ignore[method-assign]
    service.receive_queued(two_way("STOP", "m-1"), SENT)
    # Then the one confirmation went out, then the number went on the list
    assert len(provider.sent) == 1 and provider.mirrored == [("opt_out", NUMBER)]
