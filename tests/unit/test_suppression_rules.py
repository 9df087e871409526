"""optout.suppression.model rules and optout.suppression.consent.change_consent over the in-memory store."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optout.core.errors import ConcurrentUpdate
from optout.suppression.consent import MAX_ATTEMPTS, Unchanged, change_consent, current_state
from optout.suppression.model import (
    OPTIONAL_SCOPE,
    Block,
    ConsentChange,
    ConsentEvent,
    SuppressionState,
    apply_changes,
    changes_for_subscriptions,
    empty_state,
)
from optout.suppression.store import MemorySuppressionStore, OnceMarker, StateWrite

KEY = "ab" * 32
OPTIONAL = ("marketing", "product")
AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EARLIER = AT - timedelta(days=10)
EVIDENCE = {"token_topic": "marketing", "ip_hash": "abc123"}
BOUNCE = Block(reason="hard_bounce", source="bounce", at=EARLIER)


def state(
    *, topics: Sequence[str] = (), all_optional: bool = False, blocked: Block | None = None, version: int = 0
) -> SuppressionState:
    return SuppressionState(
        address_key=KEY,
        channel="email",
        topics=frozenset(topics),
        all_optional=all_optional,
        blocked=blocked,
        version=version,
        updated_at=EARLIER if version else None,
    )


def out(action: str, scope: str) -> ConsentChange:
    return ConsentChange(action, scope)  # type: ignore[arg-type]


# --- apply_changes: effective changes ------------------------------------------------------

# (starting state, changes, expected (all_optional, topics, blocked?), expected event (action, scope) pairs)
EFFECTIVE = [
    pytest.param(
        state(),
        [out("opt_out", "marketing")],
        (False, {"marketing"}, False),
        [("opt_out", "marketing")],
        id="opt-out-topic-on-empty",
    ),
    pytest.param(
        state(topics=["marketing"]),
        [out("opt_out", "product")],
        (False, {"marketing", "product"}, False),
        [("opt_out", "product")],
        id="opt-out-second-topic",
    ),
    pytest.param(
        state(all_optional=True),
        [out("opt_out", "policy")],
        (True, {"policy"}, False),
        [("opt_out", "policy")],
        id="opt-out-non-optional-topic-while-all-optional",
    ),
    pytest.param(
        state(),
        [out("opt_out", OPTIONAL_SCOPE)],
        (True, set(), False),
        [("opt_out", OPTIONAL_SCOPE)],
        id="opt-out-all-optional",
    ),
    pytest.param(
        state(topics=["marketing", "product"]),
        [out("opt_out", OPTIONAL_SCOPE)],
        (True, {"marketing", "product"}, False),
        [("opt_out", OPTIONAL_SCOPE)],
        id="opt-out-all-optional-when-each-already-out",
    ),
    pytest.param(
        state(all_optional=True),
        [out("opt_in", "marketing")],
        (False, {"product"}, False),
        [("opt_in", "marketing")],
        id="opt-in-one-while-all-optional-keeps-the-others-out",
    ),
    pytest.param(
        state(all_optional=True, topics=["policy"]),
        [out("opt_in", "product")],
        (False, {"marketing", "policy"}, False),
        [("opt_in", "product")],
        id="opt-in-one-while-all-optional-keeps-explicit-topics",
    ),
    pytest.param(
        state(all_optional=True, topics=["marketing"]),
        [out("opt_in", OPTIONAL_SCOPE)],
        (False, set(), False),
        [("opt_in", OPTIONAL_SCOPE)],
        id="opt-in-optional-clears-flag-and-optional-topics",
    ),
    pytest.param(
        state(topics=["marketing", "policy"]),
        [out("opt_in", OPTIONAL_SCOPE)],
        (False, {"policy"}, False),
        [("opt_in", OPTIONAL_SCOPE)],
        id="opt-in-optional-without-flag-keeps-non-optional",
    ),
    pytest.param(
        state(topics=["marketing"]),
        [out("opt_in", "marketing")],
        (False, set(), False),
        [("opt_in", "marketing")],
        id="opt-in-topic",
    ),
    pytest.param(
        state(topics=["marketing"]),
        [out("block", "channel")],
        (False, {"marketing"}, True),
        [("block", "channel")],
        id="block-channel-keeps-topics",
    ),
    pytest.param(
        state(blocked=BOUNCE, all_optional=True),
        [out("unblock", "channel")],
        (True, set(), False),
        [("unblock", "channel")],
        id="unblock-channel-keeps-preferences",
    ),
    pytest.param(
        state(),
        [out("opt_out", "marketing"), out("opt_out", "marketing"), out("opt_out", "product")],
        (False, {"marketing", "product"}, False),
        [("opt_out", "marketing"), ("opt_out", "product")],
        id="batch-skips-its-own-repeats",
    ),
    pytest.param(
        state(),
        [out("opt_out", OPTIONAL_SCOPE), out("opt_in", "product")],
        (False, {"marketing"}, False),
        [("opt_out", OPTIONAL_SCOPE), ("opt_in", "product")],
        id="batch-applies-in-order",
    ),
]


@pytest.mark.parametrize(("start", "changes", "expected", "actions"), EFFECTIVE)
def test_apply_changes_effective(
    start: SuppressionState,
    changes: list[ConsentChange],
    expected: tuple[bool, set[str], bool],
    actions: list[tuple[str, str]],
) -> None:
    new, events = apply_changes(start, changes, OPTIONAL, "preference_page", AT)
    all_optional, topics, blocked = expected
    assert (new.all_optional, set(new.topics), new.blocked is not None) == (all_optional, topics, blocked)
    assert [(e.action, e.scope) for e in events] == actions
    # One effective apply is one new version, however many events it carries.
    assert new.version == start.version + 1
    assert new.updated_at == AT
    assert (new.address_key, new.channel) == (start.address_key, start.channel)


NO_OPS = [
    pytest.param(state(topics=["marketing"]), [out("opt_out", "marketing")], id="opt-out-again"),
    pytest.param(state(all_optional=True), [out("opt_out", "marketing")], id="opt-out-topic-covered-by-all-optional"),
    pytest.param(state(all_optional=True), [out("opt_out", OPTIONAL_SCOPE)], id="opt-out-all-optional-again"),
    pytest.param(state(), [out("opt_in", "marketing")], id="opt-in-when-subscribed"),
    pytest.param(state(topics=["policy"]), [out("opt_in", OPTIONAL_SCOPE)], id="opt-in-optional-when-none-out"),
    pytest.param(state(blocked=BOUNCE), [out("block", "channel")], id="block-when-blocked"),
    pytest.param(state(), [out("unblock", "channel")], id="unblock-when-not-blocked"),
    pytest.param(state(), [out("opt_out", "channel")], id="opt-out-of-channel-scope-is-not-a-block"),
    pytest.param(state(topics=["marketing"]), [], id="no-changes"),
]


@pytest.mark.parametrize(("start", "changes"), NO_OPS)
def test_apply_changes_no_op(start: SuppressionState, changes: list[ConsentChange]) -> None:
    # Given a state that already reflects the request
    start = start.model_copy(update={"version": 3, "updated_at": EARLIER})
    # When the request is applied again
    new, events = apply_changes(start, changes, OPTIONAL, "link", AT)
    # Then nothing happens: the very same state, no events, no new version
    assert new is start
    assert events == []
    assert new.version == 3
    assert new.updated_at == EARLIER


def test_events_carry_source_time_evidence_and_actor() -> None:
    evidence = dict(EVIDENCE)
    _, events = apply_changes(
        state(),
        [out("opt_out", "marketing"), out("block", "channel")],
        OPTIONAL,
        "admin",
        AT,
        evidence=evidence,
        actor="ops@example.com",
    )
    assert events == [
        ConsentEvent(
            action="opt_out", scope="marketing", source="admin", at=AT, evidence=EVIDENCE, actor="ops@example.com"
        ),
        ConsentEvent(
            action="block", scope="channel", source="admin", at=AT, evidence=EVIDENCE, actor="ops@example.com"
        ),
    ]
    # The events keep their own copy of the evidence.
    evidence["ip_hash"] = "changed"
    assert all(e.evidence == EVIDENCE for e in events)


def test_events_without_evidence_or_actor() -> None:
    _, events = apply_changes(state(), [out("opt_out", "marketing")], OPTIONAL, "one_click", AT)
    assert (events[0].source, events[0].at, events[0].evidence, events[0].actor) == ("one_click", AT, {}, None)


@pytest.mark.parametrize(
    ("reason", "expected_reason"),
    [
        pytest.param("complaint_feedback", "complaint_feedback", id="given-reason"),
        pytest.param(None, "bounce", id="source"),
    ],
)
def test_block_records_reason_source_time_and_evidence(reason: str | None, expected_reason: str) -> None:
    new, _ = apply_changes(state(), [ConsentChange("block", "channel", reason)], OPTIONAL, "bounce", AT, EVIDENCE)
    assert new.blocked == Block(reason=expected_reason, source="bounce", at=AT, evidence=EVIDENCE)


def test_version_increments_by_one_per_effective_apply() -> None:
    steps = [
        (out("opt_out", "marketing"), 1),
        (out("opt_out", "marketing"), 1),  # a no-op does not count
        (out("opt_out", OPTIONAL_SCOPE), 2),
        (out("opt_in", "product"), 3),
    ]
    current = state()
    for change, expected_version in steps:
        current, _ = apply_changes(current, [change], OPTIONAL, "link", AT)
        assert current.version == expected_version


def test_opted_out_helpers() -> None:
    s = state(all_optional=True, topics=["policy"])
    assert s.opted_out("marketing", OPTIONAL)
    assert s.opted_out("policy", OPTIONAL)
    assert not s.opted_out("security", OPTIONAL)
    assert s.opted_out_topics(OPTIONAL) == {"marketing", "product", "policy"}
    assert state(topics=["product"]).opted_out_topics(OPTIONAL) == {"product"}


# --- changes_for_subscriptions -------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "subscribed", "expected"),
    [
        pytest.param(state(), ["marketing", "product"], [], id="all-wanted-nothing-out"),
        pytest.param(state(), ["marketing"], [("opt_out", "product")], id="drop-one"),
        pytest.param(state(), [], [("opt_out", "marketing"), ("opt_out", "product")], id="drop-all"),
        pytest.param(state(topics=["marketing"]), ["marketing", "product"], [("opt_in", "marketing")], id="add-one"),
        pytest.param(state(topics=["marketing"]), ["product"], [], id="already-so"),
        pytest.param(state(all_optional=True), [], [], id="all-out-and-none-wanted"),
        pytest.param(state(all_optional=True), ["product"], [("opt_in", "product")], id="one-back-from-all-out"),
        pytest.param(state(), ["marketing", "product", "policy", "bogus"], [], id="non-optional-names-ignored"),
        pytest.param(
            state(topics=["policy"]), [], [("opt_out", "marketing"), ("opt_out", "product")], id="keeps-policy"
        ),
    ],
)
def test_changes_for_subscriptions(
    start: SuppressionState, subscribed: list[str], expected: list[tuple[str, str]]
) -> None:
    assert changes_for_subscriptions(start, subscribed, OPTIONAL) == [out(a, s) for a, s in expected]


_states = st.builds(
    lambda topics, all_optional: state(topics=sorted(topics), all_optional=all_optional),
    st.sets(st.sampled_from([*OPTIONAL, "policy"])),
    st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(_states, st.sets(st.sampled_from(OPTIONAL)))
def test_changes_for_subscriptions_reach_exactly_the_wanted_set(start: SuppressionState, wanted: set[str]) -> None:
    # When the computed changes are applied
    changes = changes_for_subscriptions(start, wanted, OPTIONAL)
    new, events = apply_changes(start, changes, OPTIONAL, "preference_page", AT)
    # Then exactly the wanted optional topics receive mail, every change was effective,
    # topics outside the optional set are untouched, and asking again changes nothing
    assert {t for t in OPTIONAL if not new.opted_out(t, OPTIONAL)} == wanted
    assert len(events) == len(changes)
    assert new.opted_out("policy", OPTIONAL) == start.opted_out("policy", OPTIONAL)
    assert changes_for_subscriptions(new, wanted, OPTIONAL) == []
    assert len(changes) == len({t for t in OPTIONAL if (t in wanted) == start.opted_out(t, OPTIONAL)})


# --- MemorySuppressionStore and change_consent ---------------------------------------------


def test_memory_store_save_is_conditional_on_version() -> None:
    store = MemorySuppressionStore()
    first = state(topics=["marketing"], version=1)
    store.save(first, 0, [])
    with pytest.raises(ConcurrentUpdate):
        store.save(state(topics=["product"], version=1), 0, [])
    assert store.get(KEY) == first
    assert store.get_many([KEY, "cd" * 32]) == {KEY: first}


def test_change_consent_writes_state_and_events() -> None:
    store = MemorySuppressionStore()
    # When an address opts out for the first time
    outcome = change_consent(
        store, KEY, "email", [out("opt_out", "marketing")], OPTIONAL, "link", evidence=EVIDENCE, now=lambda: AT
    )
    # Then the new state and its event are stored before change_consent returns
    assert outcome.changed
    assert outcome.state == store.get(KEY)
    assert outcome.state.topics == {"marketing"}
    assert outcome.state.version == 1
    assert store.history(KEY) == outcome.events
    assert [(e.action, e.scope, e.source, e.at, e.evidence) for e in outcome.events] == [
        ("opt_out", "marketing", "link", AT, EVIDENCE)
    ]


class CountingStore(MemorySuppressionStore):
    def __init__(self) -> None:
        super().__init__()
        self.gets = 0
        self.saves: list[tuple[SuppressionState, int]] = []

    def get(self, address_key: str) -> SuppressionState | None:
        self.gets += 1
        return super().get(address_key)

    def save(self, state: SuppressionState, expected_version: int, events: Sequence[ConsentEvent], *rest: Any) -> bool:
        # *rest passes on any further arguments of the store protocol (such as an idempotency marker).
        self.saves.append((state, expected_version))
        return super().save(state, expected_version, events, *rest)


def test_change_consent_no_op_writes_nothing() -> None:
    store = CountingStore()
    change_consent(store, KEY, "email", [out("opt_out", "marketing")], OPTIONAL, "link", now=lambda: AT)
    # When the same opt-out arrives again (a second click)
    again = change_consent(
        store, KEY, "email", [out("opt_out", "marketing")], OPTIONAL, "link", now=lambda: AT + timedelta(hours=1)
    )
    # Then it reports no change and nothing is written
    assert not again.changed
    assert again.events == []
    assert again.state == store.get(KEY)
    assert again.state.version == 1
    assert len(store.saves) == 1
    assert len(store.history(KEY)) == 1


def test_current_state_of_an_unknown_address_is_empty() -> None:
    assert current_state(MemorySuppressionStore(), KEY, "sms") == empty_state(KEY, "sms")


class RacingStore(CountingStore):
    """Loses the first save to another writer, whose opt-out of "product" lands in between."""

    def save(self, state: SuppressionState, expected_version: int, events: Sequence[ConsentEvent], *rest: Any) -> bool:
        if not self.saves:
            self.saves.append((state, expected_version))
            rival, rival_events = apply_changes(
                self.get(state.address_key) or empty_state(state.address_key, state.channel),
                [out("opt_out", "product")],
                OPTIONAL,
                "one_click",
                AT,
            )
            MemorySuppressionStore.save(self, rival, expected_version, rival_events)
            raise ConcurrentUpdate("lost the race")
        return super().save(state, expected_version, events, *rest)


def test_change_consent_retries_against_the_newer_state() -> None:
    store = RacingStore()
    seen: list[SuppressionState] = []

    def wanted(current: SuppressionState) -> list[ConsentChange]:
        seen.append(current)
        return [out("opt_out", "marketing")]

    # When our opt-out of marketing races with another writer's opt-out of product
    outcome = change_consent(store, KEY, "email", wanted, OPTIONAL, "link", now=lambda: AT)
    # Then the second attempt re-read the rival's state and landed on top of it
    assert [s.version for s in seen] == [0, 1]
    assert seen[1].topics == {"product"}
    assert [expected for _, expected in store.saves] == [0, 1]
    assert outcome.state == store.get(KEY)
    assert outcome.state.topics == {"marketing", "product"}
    assert outcome.state.version == 2
    # And both changes are in the history, the rival's first
    assert [(e.scope, e.source) for e in store.history(KEY)] == [("product", "one_click"), ("marketing", "link")]


def test_change_consent_with_fixed_changes_also_retries() -> None:
    store = RacingStore()
    outcome = change_consent(store, KEY, "email", [out("opt_out", "marketing")], OPTIONAL, "link", now=lambda: AT)
    assert outcome.state.topics == {"marketing", "product"}
    assert len(store.saves) == 2


class AlwaysLosingStore(CountingStore):
    def save(self, state: SuppressionState, expected_version: int, events: Sequence[ConsentEvent], *rest: Any) -> bool:
        self.saves.append((state, expected_version))
        raise ConcurrentUpdate("lost the race again")


def test_change_consent_gives_up_after_max_attempts() -> None:
    store = AlwaysLosingStore()
    with pytest.raises(ConcurrentUpdate):
        change_consent(store, KEY, "email", [out("opt_out", "marketing")], OPTIONAL, "link", now=lambda: AT)
    assert len(store.saves) == MAX_ATTEMPTS
    assert store.gets == MAX_ATTEMPTS  # every attempt re-read the state
    assert store.get(KEY) is None
    assert store.history(KEY) == []


# --- keyword times, what a no-op still records, and bulk writes ----------------------------


@pytest.mark.parametrize(
    ("recorded", "sent", "moves"),
    [
        pytest.param(None, AT, True, id="first-keyword"),
        pytest.param(EARLIER, AT, True, id="newer-keyword"),
        pytest.param(AT, EARLIER, False, id="older-keyword"),
        pytest.param(AT, AT, False, id="same-time"),
        pytest.param(AT, None, False, id="not-a-keyword"),
    ],
)
def test_a_no_op_keyword_records_its_send_time_only_when_it_is_the_latest(
    recorded: datetime | None, sent: datetime | None, moves: bool
) -> None:
    start = state(blocked=BOUNCE, version=3).model_copy(update={"keyword_at": recorded})
    new, events = apply_changes(start, [out("block", "channel")], OPTIONAL, "sms_keyword", AT, keyword_at=sent)
    assert events == []
    if moves:
        # A new version, so the write is conditional like any other; what it blocks stays as it was
        assert (new.version, new.keyword_at, new.blocked, new.updated_at) == (4, sent, BOUNCE, EARLIER)
    else:
        assert new is start


def test_an_effective_change_never_moves_the_keyword_time_back() -> None:
    start = empty_state(KEY, "sms").model_copy(update={"keyword_at": AT})
    new, _ = apply_changes(start, [out("block", "channel")], OPTIONAL, "sms_keyword", AT, keyword_at=EARLIER)
    assert new.blocked is not None and new.keyword_at == AT


def ignored(reason: str) -> ConsentEvent:
    return ConsentEvent(action="ignored", scope="channel", source="sms_keyword", at=AT, evidence={"reason": reason})


def test_a_no_op_records_what_unchanged_says_with_its_own_marker() -> None:
    store = CountingStore()
    change_consent(store, KEY, "email", [out("block", "channel")], OPTIONAL, "bounce", now=lambda: AT)
    # When a second block changes nothing
    outcome = change_consent(
        store, KEY, "email", [out("block", "channel")], OPTIONAL, "bounce", now=lambda: AT,
        once=OnceMarker("m-2", "confirmation"), unchanged=lambda s: Unchanged([ignored("already")], OnceMarker("m-2")),
    )  # fmt: skip
    # Then its reason and its reply-less marker are recorded, and the state is not rewritten
    assert not outcome.changed and len(store.saves) == 1
    assert [e.action for e in store.history(KEY)] == ["block", "ignored"]
    assert store.once["m-2"].reply is None


def test_events_in_also_go_with_the_change_and_its_marker_in_one_save() -> None:
    store = CountingStore()
    soft = ConsentEvent(action="soft_bounce", scope="channel", source="bounce", at=AT)
    change_consent(store, KEY, "email", [out("block", "channel")], OPTIONAL, "bounce", now=lambda: AT,
                   once=OnceMarker("fb-3"), also=[soft])  # fmt: skip
    assert len(store.saves) == 1 and "fb-3" in store.once
    assert [e.action for e in store.history(KEY)] == ["soft_bounce", "block"]


def test_memory_save_many_is_all_or_nothing() -> None:
    store = MemorySuppressionStore()
    other = "cd" * 32
    store.save(state(topics=["marketing"], version=1), 0, [])
    stale = StateWrite(state(blocked=BOUNCE, version=1), 0)  # computed from a read before the opt-out
    new = StateWrite(empty_state(other, "email").model_copy(update={"all_optional": True, "version": 1}), 0)
    with pytest.raises(ConcurrentUpdate):
        store.save_many([new, stale])
    assert store.get(other) is None and store.get(KEY) == state(topics=["marketing"], version=1)
    store.save_many([new, StateWrite(state(topics=["marketing"], blocked=BOUNCE, version=2), 1)])
    assert store.get(other) is not None and store.get(KEY).blocked == BOUNCE  # type: ignore[union-attr]
