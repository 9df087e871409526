"""SMS keyword ordering: a keyword loses to any keyword sent after it that is already recorded.

Every STOP and START records when it was sent, even when it changes nothing, so the delivery order
never matters: the number ends as the last-sent keyword says. Over the in-memory store, which keeps
DynamoDB's contract (conditional on the version read, once markers claimed in the same write).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optout.core.errors import ConcurrentUpdate
from optout.core.settings import SmsKeywordSettings
from optout.sms.inbound import InboundSms, SmsInbound, keyword_changes
from optout.sms.keywords import load_book
from optout.suppression.model import Block, ConsentEvent, SuppressionState, empty_state
from optout.suppression.store import MemorySuppressionStore, OnceMarker

NUMBER = "+14155550101"
OURS = "+14155550100"
T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
KEY = "ab" * 32


class NoSms:
    def send(self, number: str, text: str, origination: str | None = None) -> str:
        return "msg-" + uuid.uuid4().hex

    def mirror_opt_out(self, number: str) -> None:
        pass

    def mirror_opt_in(self, number: str) -> None:
        pass


class CountingStore(MemorySuppressionStore):
    """Counts reads and writes, as the DynamoDB store makes one call for each."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def get(self, address_key: str) -> SuppressionState | None:
        self.calls.append("get")
        return super().get(address_key)

    def save(self, state: SuppressionState, expected_version: int, events: Sequence[ConsentEvent], *rest: Any) -> bool:
        self.calls.append("save")
        return super().save(state, expected_version, events, *rest)

    def record(self, address_key: str, events: Sequence[ConsentEvent], once: OnceMarker | None = None) -> bool:
        self.calls.append("record")
        return super().record(address_key, events, once)


def service(store: MemorySuppressionStore) -> SmsInbound:
    settings = SmsKeywordSettings.from_env({"OPTOUT_SUPPRESSION_TABLE": "t", "OPTOUT_PEPPER_SECRET": "p"})
    return SmsInbound(settings, store, lambda: b"pepper" * 6, load_book(), lambda: NoSms(), now=lambda: T0)


def inbound(body: str, sent_at: datetime, message_id: str | None = None) -> InboundSms:
    return InboundSms(
        provider="end_user_messaging", message_id=message_id or uuid.uuid4().hex, from_number=NUMBER,
        to_number=OURS, body=body, sent_at=sent_at,
    )  # fmt: skip


def only_state(store: MemorySuppressionStore) -> SuppressionState:
    (state,) = store.states.values()
    return state


def test_a_start_on_an_open_number_then_an_earlier_stop_delivered_late_leaves_it_open() -> None:
    store = CountingStore()
    inbound_sms = service(store)
    # Given a START sent at 10:01 on a number that is not blocked, delivered first
    start = inbound_sms.handle(inbound("START", T0 + timedelta(minutes=1)))
    # Then it changes nothing and sends nothing, but records when it was sent, in its one write
    assert (start.changed, start.reply) == (False, None)
    assert only_state(store).keyword_at == T0 + timedelta(minutes=1)
    assert store.calls == ["get", "save"]
    # When the STOP the person sent at 10:00 is delivered after it
    stop = inbound_sms.handle(inbound("STOP", T0))
    # Then the STOP loses to the later START: the number stays open, and no confirmation goes out
    assert (stop.changed, stop.reply) == (False, None)
    state = only_state(store)
    assert state.blocked is None and state.keyword_at == T0 + timedelta(minutes=1)
    reasons = [e.evidence["reason"] for e in store.history(state.address_key)]
    assert reasons == ["not blocked", "superseded by a later keyword"]
    # And the late STOP is one read and one write (the superseded keyword leaves the state alone)
    assert store.calls == ["get", "save", "get", "record"]


def test_a_stop_on_a_blocked_number_records_its_time_so_an_earlier_start_loses() -> None:
    store = MemorySuppressionStore()
    inbound_sms = service(store)
    inbound_sms.handle(inbound("STOP", T0))
    # Given a second STOP at 10:05 that changes nothing (already blocked)
    assert not inbound_sms.handle(inbound("STOP", T0 + timedelta(minutes=5))).changed
    # When a START sent at 10:02 arrives after it
    assert not inbound_sms.handle(inbound("START", T0 + timedelta(minutes=2))).changed
    # Then the number stays blocked: the START lost to the later STOP
    assert only_state(store).blocked is not None


def test_a_redelivered_keyword_that_changed_nothing_is_a_duplicate() -> None:
    store = MemorySuppressionStore()
    inbound_sms = service(store)
    message = inbound("START", T0, message_id="m-1")
    inbound_sms.handle(message)
    version = only_state(store).version

    again = inbound_sms.handle(message)

    assert again.duplicate and again.reply is None
    assert only_state(store).version == version
    assert len(store.history(only_state(store).address_key)) == 1


KEYWORDS = st.lists(st.sampled_from(["STOP", "START"]), min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(KEYWORDS, st.randoms(use_true_random=False))
def test_the_last_sent_keyword_wins_whatever_the_delivery_order(keywords: list[str], rng: Any) -> None:
    # Given keywords sent a minute apart, delivered in any order
    store = MemorySuppressionStore()
    inbound_sms = service(store)
    sent = [inbound(body, T0 + timedelta(minutes=i)) for i, body in enumerate(keywords)]
    delivered = list(sent)
    rng.shuffle(delivered)
    # When each is delivered (some twice)
    for message in delivered + delivered[: len(delivered) // 2]:
        inbound_sms.handle(message)
    # Then the number is blocked exactly when the last one sent is a STOP
    state = only_state(store)
    assert (state.blocked is not None) is (keywords[-1] == "STOP")
    assert state.keyword_at == sent[-1].sent_at


class RivalStopStore(MemorySuppressionStore):
    """Lets a rival STOP (sent at 10:00) land between a START's read and its write."""

    def __init__(self, rival: SmsInbound | None = None) -> None:
        super().__init__()
        self.rival = rival
        self.raced = False

    def save(self, state: SuppressionState, expected_version: int, events: Sequence[ConsentEvent], *rest: Any) -> bool:
        if self.rival is not None and not self.raced:
            self.raced = True
            self.rival.handle(inbound("STOP", T0))
        return super().save(state, expected_version, events, *rest)


def test_a_start_that_changes_nothing_retries_when_a_stop_lands_before_its_write() -> None:
    store = RivalStopStore()
    store.rival = service(store)
    # When a START sent at 10:01 reads an open number, and a STOP sent at 10:00 blocks it meanwhile
    result = service(store).handle(inbound("START", T0 + timedelta(minutes=1)))
    # Then the START's write fails on the version, it re-reads, and lifts the earlier STOP's block
    assert store.raced and result.changed
    state = only_state(store)
    assert state.blocked is None and state.keyword_at == T0 + timedelta(minutes=1)
    assert [e.action for e in store.history(state.address_key)] == ["block", "unblock"]


BOUNCE = Block(reason="bounce", source="bounce", at=T0)


@pytest.mark.parametrize(
    ("state", "intent", "sent_at", "wanted", "why"),
    [
        pytest.param(empty_state(KEY, "sms"), "opt_out", T0, ["block"], "blocked", id="stop-blocks"),
        pytest.param(empty_state(KEY, "sms"), "opt_in", T0, [], "not blocked", id="start-on-open"),
        pytest.param(empty_state(KEY, "sms").model_copy(update={"keyword_at": T0}), "opt_out",
                     T0 - timedelta(seconds=1), [], "superseded by a later keyword", id="older-stop-loses"),
        pytest.param(empty_state(KEY, "sms").model_copy(update={"keyword_at": T0}), "opt_out", T0, ["block"],
                     "blocked", id="same-second-stop-counts"),
        pytest.param(empty_state(KEY, "sms").model_copy(update={"blocked": BOUNCE}), "opt_in", T0, [],
                     "blocked by bounce: only an admin can lift it", id="start-cannot-lift-a-bounce"),
    ],
)  # fmt: skip
def test_keyword_changes(state: SuppressionState, intent: Any, sent_at: datetime, wanted: list[str], why: str) -> None:
    changes, reason = keyword_changes(state, intent, sent_at)
    assert [c.action for c in changes] == wanted
    assert reason == why


def test_a_keyword_that_keeps_losing_its_race_gives_up() -> None:
    class AlwaysLosing(MemorySuppressionStore):
        def save(self, *args: Any, **kwargs: Any) -> bool:
            raise ConcurrentUpdate("lost")

    with pytest.raises(ConcurrentUpdate):
        service(AlwaysLosing()).handle(inbound("START", T0))
