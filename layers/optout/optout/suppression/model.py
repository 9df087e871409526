"""Suppression state of one address and the rules that change it.

Pure logic: no AWS. One state item per address key (channel block, all optional topics, the
set of opted-out topics) plus an append-only consent event for every change that happened.
A change that would not alter the state writes nothing, so repeated clicks are harmless; only an
SMS keyword newer than the one recorded is recorded even then (its send time settles ordering).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from optout.core.identity import Channel

Source = Literal["link", "one_click", "preference_page", "sms_keyword", "bounce", "complaint", "admin", "import"]
# help and ignored record inbound messages that changed nothing, for the audit trail
Action = Literal["opt_out", "opt_in", "block", "unblock", "help", "ignored", "soft_bounce"]
CHANNEL_SCOPE = "channel"
OPTIONAL_SCOPE = "optional"


class Block(BaseModel, frozen=True):
    reason: str
    source: Source
    at: datetime
    evidence: dict[str, str] = Field(default_factory=dict)


class SuppressionState(BaseModel, frozen=True):
    address_key: str
    channel: Channel
    blocked: Block | None = None
    all_optional: bool = False
    topics: frozenset[str] = frozenset()
    version: int = 0
    updated_at: datetime | None = None
    # When the latest SMS keyword recorded here was *sent*, whether or not it changed anything: a
    # keyword sent earlier but delivered later loses to it.
    keyword_at: datetime | None = None
    # When the subject's personal data was last erased (optout.privacy.erasure): batches of notices created
    # before then are not sent to this address. The state and its events are kept: the opt-out holds.
    erased_at: datetime | None = None

    def opted_out(self, topic: str, optional_topics: Iterable[str]) -> bool:
        return topic in self.topics or (self.all_optional and topic in set(optional_topics))

    def opted_out_topics(self, optional_topics: Sequence[str]) -> frozenset[str]:
        return frozenset(optional_topics) | self.topics if self.all_optional else self.topics


class ConsentEvent(BaseModel, frozen=True):
    action: Action
    scope: str
    source: Source
    at: datetime
    evidence: dict[str, str] = Field(default_factory=dict)
    actor: str | None = None


@dataclass(frozen=True)
class ConsentChange:
    """One requested change: opt out of / into a topic or all optional ones, block or unblock."""

    action: Action
    scope: str
    reason: str | None = None


def empty_state(address_key: str, channel: Channel) -> SuppressionState:
    return SuppressionState(address_key=address_key, channel=channel)


def apply_changes(
    state: SuppressionState,
    changes: Sequence[ConsentChange],
    optional_topics: Sequence[str],
    source: Source,
    at: datetime,
    evidence: dict[str, str] | None = None,
    actor: str | None = None,
    keyword_at: datetime | None = None,
) -> tuple[SuppressionState, list[ConsentEvent]]:
    """Apply ``changes`` in order; return the new state and one event per effective change."""
    optional = frozenset(optional_topics)
    blocked, all_optional, topics = state.blocked, state.all_optional, state.topics
    events: list[ConsentEvent] = []

    def record(change: ConsentChange) -> None:
        events.append(
            ConsentEvent(
                action=change.action,
                scope=change.scope,
                source=source,
                at=at,
                evidence=dict(evidence or {}),
                actor=actor,
            )
        )

    for change in changes:
        effective_out = (optional | topics) if all_optional else topics
        if change.action == "block" and blocked is None:
            blocked = Block(reason=change.reason or source, source=source, at=at, evidence=dict(evidence or {}))
            record(change)
        elif change.action == "unblock" and blocked is not None:
            blocked = None
            record(change)
        elif change.action == "opt_out" and change.scope == OPTIONAL_SCOPE and not all_optional:
            all_optional = True
            record(change)
        elif change.action == "opt_in" and change.scope == OPTIONAL_SCOPE and effective_out & optional:
            all_optional, topics = False, topics - optional
            record(change)
        elif (
            change.action == "opt_out"
            and change.scope not in (OPTIONAL_SCOPE, CHANNEL_SCOPE)
            and change.scope not in effective_out
        ):
            topics = topics | {change.scope}
            record(change)
        elif change.action == "opt_in" and change.scope in effective_out:
            if all_optional:  # opting back into one topic turns "all optional" into the explicit rest
                all_optional, topics = False, (optional | topics) - {change.scope}
            else:
                topics = topics - {change.scope}
            record(change)

    latest_keyword = latest(state.keyword_at, keyword_at)
    if not events:
        if latest_keyword == state.keyword_at:
            return state, []
        # A keyword that changes nothing still records when it was sent, so that a keyword sent
        # before it but delivered after it loses to it (a START on an open number, then a late STOP).
        return state.model_copy(update={"version": state.version + 1, "keyword_at": latest_keyword}), []
    new_state = state.model_copy(
        update={
            "blocked": blocked,
            "all_optional": all_optional,
            "topics": topics,
            "version": state.version + 1,
            "updated_at": at,
            "keyword_at": latest_keyword,
        }
    )
    return new_state, events


def latest(recorded: datetime | None, sent: datetime | None) -> datetime | None:
    """The later of two keyword times (None: none recorded)."""
    if recorded is None or sent is None:
        return recorded or sent
    return max(recorded, sent)


def changes_for_subscriptions(
    state: SuppressionState, subscribed: Iterable[str], optional_topics: Sequence[str]
) -> list[ConsentChange]:
    """The changes that make exactly ``subscribed`` of the optional topics receive mail."""
    wanted = frozenset(subscribed)
    out_now = state.opted_out_topics(optional_topics)
    changes = [ConsentChange("opt_in", t) for t in optional_topics if t in wanted and t in out_now]
    changes += [ConsentChange("opt_out", t) for t in optional_topics if t not in wanted and t not in out_now]
    return changes
