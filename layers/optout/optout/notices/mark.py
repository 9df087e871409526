"""What a batch's mark keeps of the sender's work: its plan, and the entries it queues again.

Both are versioned models. A deploy replaces the sender while batches are in flight, so a mark
written by the release before is read too: version 1 was positional JSON lists, which a new field
would have broken. Neither holds an address: recipient ids, decisions and reasons only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from optout.notices.model import BatchEntry, ChannelName, Decision, SendBatch
from optout.notices.rules import ChannelOutcome, RecipientOutcome


class _Stored(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def dump(self) -> str:
        return self.model_dump_json(exclude_none=True)


class PlannedChannel(_Stored):
    channel: ChannelName
    decision: Decision
    reason: str | None = None
    until: datetime | None = None  # deferred: when it may go


class PlannedRecipient(_Stored):
    decision: Decision
    channels: list[PlannedChannel]


class BatchPlan(_Stored):
    """What the sender decided for each recipient of the batch, before any call: a recovery after
    a crash records the batch from it."""

    version: Literal[2] = 2
    recipients: dict[str, PlannedRecipient]

    @classmethod
    def of(cls, outcomes: Mapping[str, RecipientOutcome]) -> BatchPlan:
        return cls(
            recipients={
                rid: PlannedRecipient(
                    decision=o.decision,
                    channels=[PlannedChannel(channel=c.channel, decision=c.decision, reason=c.reason,
                                             until=c.defer_until) for c in o.channels],
                )
                for rid, o in outcomes.items()
            }
        )  # fmt: skip

    @classmethod
    def load(cls, stored: str | None) -> BatchPlan:
        data: Any = json.loads(stored or "{}")
        if not (isinstance(data, dict) and isinstance(data.get("recipients"), dict)):
            # version 1: {recipient: [decision, [[channel, decision, reason, until]]]}
            data = {
                "recipients": {
                    rid: {"decision": decision,
                          "channels": [dict(zip(("channel", "decision", "reason", "until"), c, strict=True))
                                       for c in channels]}
                    for rid, (decision, channels) in data.items()
                }
            }  # fmt: skip
        return cls.model_validate(data)

    def outcomes(self) -> dict[str, RecipientOutcome]:
        return {
            rid: RecipientOutcome(
                r.decision, tuple(ChannelOutcome(c.channel, c.decision, c.reason, c.until) for c in r.channels)
            )
            for rid, r in self.recipients.items()
        }


class LaterEntry(_Stored):
    recipient_id: str
    only: list[ChannelName] | None = None
    deferred: list[ChannelName] | None = None
    attempt: int = 0
    settled: list[Decision] = Field(default_factory=list)
    delay: int = 0  # seconds before it is sent again


class LaterEntries(_Stored):
    """The entries a done batch queues again (deferred, throttled, never tried), kept on its mark so
    a redelivery that finds the batch done queues them itself: ids, never addresses."""

    version: Literal[2] = 2
    entries: list[LaterEntry]

    @classmethod
    def of(cls, later: Sequence[tuple[BatchEntry, int]]) -> LaterEntries:
        return cls(
            entries=[
                LaterEntry(recipient_id=e.recipient.recipient_id, only=e.only, deferred=e.deferred,
                           attempt=e.attempt, settled=list(e.settled), delay=delay)
                for e, delay in later
            ]
        )  # fmt: skip

    @classmethod
    def load(cls, stored: str | None) -> LaterEntries:
        data: Any = json.loads(stored or "[]")
        if isinstance(data, list):  # version 1: [[recipient_id, only, deferred, attempt, settled, delay]]
            fields = ("recipient_id", "only", "deferred", "attempt", "settled", "delay")
            data = {"entries": [dict(zip(fields, row, strict=True)) for row in data]}
        return cls.model_validate(data)

    def again(self, batch: SendBatch) -> list[tuple[BatchEntry, int]]:
        """The entries, rebuilt from the batch's own recipients."""
        recipients = {e.recipient.recipient_id: e.recipient for e in batch.entries}
        return [
            (
                BatchEntry(recipient=recipients[e.recipient_id], only=e.only, deferred=e.deferred,
                           previous="deferred", attempt=e.attempt, settled=e.settled),
                e.delay,
            )
            for e in self.entries
        ]  # fmt: skip
