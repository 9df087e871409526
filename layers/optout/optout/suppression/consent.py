"""Change an address's consent: read, apply the rules, write state and events atomically."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from optout.core.errors import ConcurrentUpdate
from optout.core.identity import Channel
from optout.suppression.model import (
    ConsentChange,
    ConsentEvent,
    Source,
    SuppressionState,
    apply_changes,
    empty_state,
)
from optout.suppression.store import OnceMarker, SuppressionStore

MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class ConsentOutcome:
    state: SuppressionState
    events: list[ConsentEvent]
    already_processed: bool = False  # ``once`` was claimed before: nothing was written

    @property
    def changed(self) -> bool:
        return bool(self.events)


@dataclass(frozen=True)
class Unchanged:
    """What a request that changes nothing still records: why (its events), and its once marker."""

    events: Sequence[ConsentEvent] = ()
    once: OnceMarker | None = None


def current_state(store: SuppressionStore, address_key: str, channel: Channel) -> SuppressionState:
    return store.get(address_key) or empty_state(address_key, channel)


def change_consent(
    store: SuppressionStore,
    address_key: str,
    channel: Channel,
    changes: Sequence[ConsentChange] | Callable[[SuppressionState], Sequence[ConsentChange]],
    optional_topics: Sequence[str],
    source: Source,
    evidence: dict[str, str] | None = None,
    actor: str | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    once: OnceMarker | None = None,
    keyword_at: datetime | None = None,
    also: Sequence[ConsentEvent] = (),
    unchanged: Callable[[SuppressionState], Unchanged] | None = None,
) -> ConsentOutcome:
    """Apply ``changes`` (or changes computed from the fresh state) and persist them.

    Returns only after the write is durable, so an opt-out is in force before the caller
    answers. Lost races are retried against the newer state.

    Everything one request records goes in one write: its changes, the events in ``also`` (such
    as the soft bounce that reached a threshold) and ``once``; or, when it changes nothing, what
    ``unchanged`` says about the state it saw. Any write of the state item is conditional on the
    version read, so what a request recorded about a state never lands on another one. With
    neither ``also`` nor ``unchanged``, a request that changes nothing writes nothing.
    """
    for _ in range(MAX_ATTEMPTS):
        state = current_state(store, address_key, channel)
        wanted = changes(state) if callable(changes) else changes
        new_state, events = apply_changes(state, wanted, optional_topics, source, now(), evidence, actor, keyword_at)
        marker = once
        recorded = [*also, *events]
        if not events:
            note = unchanged(state) if unchanged is not None else Unchanged(once=once if also else None)
            recorded, marker = [*also, *note.events], note.once
        written = True
        try:
            if new_state is not state:
                written = store.save(new_state, state.version, recorded, marker)
            elif recorded or marker is not None:
                # The state stays as read; a rival's change in between does not alter what is recorded.
                written = store.record(address_key, recorded, marker)
        except ConcurrentUpdate:
            continue
        if not written:
            return ConsentOutcome(state, [], already_processed=True)
        return ConsentOutcome(new_state, events)
    raise ConcurrentUpdate("the suppression state kept changing; try again")
