"""Suppression administration: look up, add and lift suppressions, each a recorded consent event.

Scopes: ``channel`` blocks the whole channel, ``optional`` every optional topic, or a topic
name. Lifting is a consent event with who did it and why; an SMS block that came from the
recipient's STOP can only be lifted by their own START, and the API says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, StringConstraints

from optout.core.errors import OptoutError, RequiredTopic, UnknownTopic
from optout.core.identity import Channel, Identity
from optout.core.settings import TopicSettings
from optout.suppression.consent import ConsentOutcome, change_consent, current_state
from optout.suppression.model import CHANNEL_SCOPE, OPTIONAL_SCOPE, ConsentChange, SuppressionState
from optout.suppression.store import SuppressionStore

Address = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=320)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Scope = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[a-z][a-z0-9_-]{0,31}$")]


class LookupRequest(BaseModel, extra="forbid"):
    channel: Channel
    address: Address


class SuppressionRequest(BaseModel, extra="forbid"):
    channel: Channel
    address: Address
    scope: Scope
    reason: Reason


class KeywordBlock(OptoutError):
    code = "keyword_block"


def report(state: SuppressionState, events: list[Any]) -> dict[str, Any]:
    """State and history as the API and the CLI show them: keys, never addresses."""
    return {
        "channel": state.channel,
        "address_key": state.address_key,
        "blocked": state.blocked.model_dump(mode="json") if state.blocked else None,
        "all_optional": state.all_optional,
        "topics": sorted(state.topics),
        "version": state.version,
        "updated_at": state.updated_at.isoformat() if state.updated_at else None,
        "erased_at": state.erased_at.isoformat() if state.erased_at else None,
        "events": [e.model_dump(mode="json") for e in events],
    }


@dataclass
class SuppressionAdmin:
    settings: TopicSettings
    store: SuppressionStore
    pepper: Callable[[], bytes]
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    def _identity(self, channel: Channel, address: str) -> Identity:
        return Identity.of(self.pepper(), channel, address)

    def lookup(self, request: LookupRequest) -> dict[str, Any]:
        identity = self._identity(request.channel, request.address)
        state = current_state(self.store, identity.key, identity.channel)
        return report(state, self.store.history(identity.key))

    def _scope(self, scope: str) -> str:
        if scope in (CHANNEL_SCOPE, OPTIONAL_SCOPE):
            return scope
        topic = self.settings.topic(scope)
        if topic is None:
            raise UnknownTopic(
                f"unknown scope; use channel, optional or one of {', '.join(self.settings.optional_topics)}"
            )
        if not topic.optional:
            raise RequiredTopic("required notices cannot be suppressed by topic; block the channel instead")
        return scope

    def add(self, request: SuppressionRequest, actor: str) -> tuple[dict[str, Any], bool]:
        scope = self._scope(request.scope)
        identity = self._identity(request.channel, request.address)
        change = ConsentChange("block", scope, "admin") if scope == CHANNEL_SCOPE else ConsentChange("opt_out", scope)
        outcome = self._apply(identity, [change], actor, request.reason)
        return report(outcome.state, self.store.history(identity.key)), outcome.changed

    def remove(self, request: SuppressionRequest, actor: str) -> tuple[dict[str, Any], bool]:
        scope = self._scope(request.scope)
        identity = self._identity(request.channel, request.address)
        if scope == CHANNEL_SCOPE:
            state = current_state(self.store, identity.key, identity.channel)
            if state.blocked is not None and state.blocked.source == "sms_keyword":
                raise KeywordBlock("this number texted STOP: only the recipient's own START can lift the block")
            change = ConsentChange("unblock", scope)
        else:
            change = ConsentChange("opt_in", scope)
        outcome = self._apply(identity, [change], actor, request.reason)
        return report(outcome.state, self.store.history(identity.key)), outcome.changed

    def _apply(self, identity: Identity, changes: list[ConsentChange], actor: str, reason: str) -> ConsentOutcome:
        def guarded(state: SuppressionState) -> list[ConsentChange]:
            # Re-checked on the fresh state: a STOP that lands meanwhile still wins.
            if changes[0].action == "unblock" and state.blocked is not None and state.blocked.source == "sms_keyword":
                raise KeywordBlock("this number texted STOP: only the recipient's own START can lift the block")
            return changes

        return change_consent(
            self.store, identity.key, identity.channel, guarded, self.settings.optional_topics, "admin",
            evidence={"reason": reason}, actor=actor, now=self.now,
        )  # fmt: skip
