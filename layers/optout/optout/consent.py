"""Change an address's consent: read, apply the rules, write state and events atomically."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from optout.errors import ConcurrentUpdate
from optout.identity import Channel
from optout.suppression import (
    ConsentChange,
    ConsentEvent,
    Source,
    SuppressionState,
    apply_changes,
    empty_state,
)
from optout.suppression_store import OnceMarker, SuppressionStore

MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class ConsentOutcome:
    state: SuppressionState
    events: list[ConsentEvent]

    @property
    def changed(self) -> bool:
        return bool(self.events)


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
) -> ConsentOutcome:
    """Apply ``changes`` (or changes computed from the fresh state) and persist them.

    Returns only after the write is durable, so an opt-out is in force before the caller
    answers. Lost races are retried against the newer state.
    """
    for _ in range(MAX_ATTEMPTS):
        state = current_state(store, address_key, channel)
        wanted = changes(state) if callable(changes) else changes
        new_state, events = apply_changes(state, wanted, optional_topics, source, now(), evidence, actor, keyword_at)
        if not events:
            return ConsentOutcome(state, [])
        try:
            store.save(new_state, state.version, events, once)
        except ConcurrentUpdate:
            continue
        return ConsentOutcome(new_state, events)
    raise ConcurrentUpdate("the suppression state kept changing; try again")
