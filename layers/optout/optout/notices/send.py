"""The sender: one SendQueue batch, checked against suppressions at the moment of sending.

In order: read the batch's suppression state in one strongly consistent BatchGetItem; decide
each recipient and channel (rules.py); in one transaction mark the batch taken, claim its
delivery records and add its counts; send, paced under the provider rate; complete the records;
re-enqueue what must wait (quiet hours, throttling) with a delay. A redelivered batch sends
nothing twice: its marker says it was taken, and only records left claimed by a crash are
resolved (as failed, outcome unknown, never re-sent).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from optout.channels.email import PermanentSendError, SesEmail
from optout.channels.pacing import TokenBucket, Transient, with_backoff
from optout.channels.sms import MessageType, SmsChannel
from optout.notices.model import (
    BatchEntry,
    ChannelName,
    Decision,
    DeliveryRecord,
    Notice,
    Recipient,
    SendBatch,
)
from optout.notices.render import render_email, render_sms
from optout.notices.rules import ChannelOutcome, RecipientOutcome, address_keys, decide
from optout.notices.store import BatchTaken, ClaimConflict, NoticeStore
from optout.settings import Settings
from optout.suppression_store import SuppressionStore
from optout.token import KeyRing, issue

MAX_DELAY = 900  # SQS DelaySeconds limit
log = logging.getLogger(__name__)


@dataclass
class Plan:
    entry: BatchEntry
    outcome: RecipientOutcome
    records: list[DeliveryRecord] = field(default_factory=list)


@dataclass(frozen=True)
class BatchResult:
    sent: int
    suppressed: int
    deferred: int
    unreachable: int
    failed: int
    duplicates: int
    redelivered: bool = False


class Sender:
    def __init__(
        self,
        settings: Settings,
        notices: NoticeStore,
        suppressions: SuppressionStore,
        pepper: Callable[[], bytes],
        key_ring: Callable[[], KeyRing],
        email: Callable[[], SesEmail],
        sms: Callable[[], SmsChannel],
        enqueue: Callable[[dict[str, Any], int], None],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.notices = notices
        self.suppressions = suppressions
        self.pepper = pepper
        self.key_ring = key_ring
        self.email = email
        self.sms = sms
        self.enqueue = enqueue
        self.now = now
        self.buckets = {
            "email": TokenBucket(settings.email_rate_per_second),
            "sms": TokenBucket(settings.sms_rate_per_second),
        }
        self._notices: dict[str, Notice] = {}
        self._prefetched: dict[str, Any] = {}

    def prefetch(self, batches: Sequence[SendBatch]) -> None:
        """Read the suppression state of several batches in one BatchGetItem (100 keys a call).

        The sender takes two 50-recipient batches per invocation, so email recipients cost one
        suppression read per 100. The states are read here, just before those batches are sent,
        and forgotten when the invocation ends (forget_prefetched).
        """
        keys = [key for batch in batches for key in self._keys(batch).values()]
        unique = list(dict.fromkeys(keys))
        found = self.suppressions.get_many(unique)
        self._prefetched = {key: found.get(key) for key in unique}

    def _keys(self, batch: SendBatch) -> dict[tuple[str, ChannelName], str]:
        notice = self.notice(batch.notice_id)
        return address_keys(self.pepper(), ((e.recipient, e.only or notice.channels) for e in batch.entries))

    def forget_prefetched(self) -> None:
        self._prefetched = {}

    def _states(self, keys: list[str]) -> dict[str, Any]:
        if keys and all(k in self._prefetched for k in keys):
            return {k: v for k in keys if (v := self._prefetched[k]) is not None}
        return dict(self.suppressions.get_many(keys))

    def notice(self, notice_id: str) -> Notice:
        # The content of a notice never changes after creation: cache it for the warm instance.
        if notice_id not in self._notices:
            self._notices[notice_id] = self.notices.get(notice_id)
        return self._notices[notice_id]

    # --- the batch ----------------------------------------------------------------------

    def process(self, batch: SendBatch) -> BatchResult:
        notice = self.notice(batch.notice_id)
        now = self.now()
        keys = self._keys(batch)
        states = self._states(list(dict.fromkeys(keys.values())))
        plans: list[Plan] = []
        seen: set[str] = set()
        duplicates = 0
        for entry in batch.entries:
            if entry.recipient.recipient_id in seen:  # listed twice within one batch
                duplicates += 1
                continue
            seen.add(entry.recipient.recipient_id)
            plans.append(self._plan(notice, entry, keys, states, now))
        if duplicates:
            self.notices.add_counts(notice.id, {}, {"duplicate": duplicates}, None, now)
            duplicates = 0
        while True:
            records = [r for p in plans for r in p.records]
            try:
                self.notices.claim_batch(notice.id, batch.batch, records, *_counts(plans), now)
                break
            except BatchTaken:
                return self._recover(notice, batch, plans)
            except ClaimConflict as conflict:
                taken = {r.recipient_id for r in conflict.records}
                # A recipient listed twice in the manifest (or a deferral delivered twice):
                # notified once already, so dropped from this batch.
                duplicates += sum(
                    1 for p in plans if p.entry.recipient.recipient_id in taken and p.entry.previous is None
                )
                plans = [p for p in plans if p.entry.recipient.recipient_id not in taken]
                if duplicates:
                    self.notices.add_counts(notice.id, {}, {"duplicate": duplicates}, None, now)
                duplicates = 0
                if not plans:
                    return BatchResult(0, 0, 0, 0, 0, len(taken))
        return self._send_all(notice, batch, plans)

    def _plan(
        self,
        notice: Notice,
        entry: BatchEntry,
        keys: dict[tuple[str, ChannelName], str],
        states: dict[str, Any],
        now: datetime,
    ) -> Plan:
        rid = entry.recipient.recipient_id
        channels = entry.only or notice.channels
        channel_states = {ch: states.get(keys.get((rid, ch), "")) for ch in channels}
        outcome = decide(
            entry.recipient,
            notice.topic,
            self.settings.optional_topics,
            channels,
            notice.mode,
            channel_states,
            now,
            hold_optional_sms=notice.kind != "breach_alert",
            default_timezone=self.settings.default_timezone,
        )
        records = [
            DeliveryRecord(
                notice_id=notice.id,
                recipient_id=rid,
                channel=c.channel,
                address_key=keys.get((rid, c.channel)),
                decision=c.decision,
                reason=c.reason,
                at=now,
            )
            for c in outcome.channels
        ]
        return Plan(entry, outcome, records)

    def _send_all(self, notice: Notice, batch: SendBatch, plans: list[Plan]) -> BatchResult:
        ring = self.key_ring()  # once a batch, not once a recipient
        finished: list[DeliveryRecord] = []
        channel_moves: Counter[str] = Counter()
        recipient_moves: Counter[str] = Counter()
        later: list[tuple[BatchEntry, int]] = []
        last_sent: datetime | None = None
        for plan in plans:
            outcomes: list[ChannelOutcome] = []
            for channel_outcome, record in zip(plan.outcome.channels, plan.records, strict=True):
                if record.decision != "sent":
                    outcomes.append(channel_outcome)
                    continue
                decision, reason, message_id = self._send_one(notice, plan.entry.recipient, record, ring)
                final = record.model_copy(
                    update={"decision": decision, "reason": reason, "provider_message_id": message_id, "at": self.now()}
                )
                finished.append(final)
                outcomes.append(ChannelOutcome(channel_outcome.channel, decision, reason))
                if decision != "sent":
                    channel_moves[f"{record.channel}.sent"] -= 1
                    channel_moves[f"{record.channel}.{decision}"] += 1
                else:
                    last_sent = final.at
            final_decision = _recipient_decision(outcomes, plan.outcome.decision)
            if final_decision != plan.outcome.decision:
                recipient_moves[plan.outcome.decision] -= 1
                recipient_moves[final_decision] += 1
            retry = [o.channel for o in outcomes if o.decision == "deferred" and o.reason == RETRY_REASON]
            if retry:
                entry = BatchEntry(
                    recipient=plan.entry.recipient, only=retry, previous="deferred", attempt=plan.entry.attempt + 1
                )
                later.append((entry, 30 * 2 ** min(plan.entry.attempt, 4)))
            waiting = [o for o in plan.outcome.channels if o.decision == "deferred" and o.defer_until is not None]
            if waiting:
                until = max(o.defer_until for o in waiting if o.defer_until is not None)
                delay = int((until - self.now()).total_seconds()) + 1
                entry = BatchEntry(
                    recipient=plan.entry.recipient,
                    only=[o.channel for o in waiting],
                    previous="deferred",
                    attempt=plan.entry.attempt,
                )
                later.append((entry, delay))
        if finished:
            self.notices.complete(finished, batch.batch)
        if channel_moves or recipient_moves or last_sent:
            self.notices.add_counts(notice.id, dict(channel_moves), dict(recipient_moves), last_sent, self.now())
        self._enqueue_later(notice, batch, later)
        tally = Counter(_recipient_decision(list(_final_outcomes(p, finished)), p.outcome.decision) for p in plans)
        return BatchResult(
            tally["sent"], tally["suppressed"], tally["deferred"], tally["unreachable"], tally["failed"], 0
        )

    def _send_one(
        self, notice: Notice, recipient: Recipient, record: DeliveryRecord, ring: KeyRing
    ) -> tuple[Decision, str | None, str | None]:
        channel = record.channel
        try:
            self.buckets[channel].take()
            if channel == "email":
                raw = self._email(notice, recipient, record.address_key or "", ring)
                message_id = with_backoff(lambda: self.email().send(recipient.email or "", raw))
            else:
                optional = notice.topic in self.settings.optional_topics
                text = render_sms(notice, recipient, self.settings.brand_name, optional)
                message_type: MessageType = "PROMOTIONAL" if notice.kind == "marketing" else "TRANSACTIONAL"
                message_id = with_backoff(
                    lambda: self.sms().send(recipient.phone or "", text, message_type=message_type)
                )
        except Transient:
            return "deferred", RETRY_REASON, None
        except PermanentSendError as exc:
            return "failed", f"rejected by provider: {exc}", None
        except Exception as exc:  # anything else: this recipient failed, the batch goes on
            code = getattr(exc, "response", {}).get("Error", {}).get("Code") or type(exc).__name__
            log.exception("send failed", extra={"notice_id": notice.id, "channel": channel, "error": code})
            return "failed", f"send error: {code}", None
        return "sent", None, message_id

    def _email(self, notice: Notice, recipient: Recipient, key: str, ring: KeyRing) -> bytes:
        token = issue(ring, "email", key, notice.topic)
        url = f"{self.settings.links_base_url}/unsubscribe?{urlencode({'token': token})}"
        optional = notice.topic in self.settings.optional_topics
        return render_email(
            notice,
            recipient,
            self.settings.brand_name,
            self.settings.sender_address,
            preferences_url=url,
            unsubscribe_url=url if optional else None,
            now=self.now(),
        )

    def _enqueue_later(self, notice: Notice, batch: SendBatch, later: list[tuple[BatchEntry, int]]) -> None:
        retry_limit = self.settings.send_retry_limit
        gave_up = [e for e, _ in later if e.attempt > retry_limit]
        if gave_up:
            self._give_up(notice, batch, gave_up)
        by_delay: dict[int, list[BatchEntry]] = {}
        for entry, delay in later:
            if entry.attempt <= retry_limit:
                by_delay.setdefault(min(MAX_DELAY, max(0, delay)), []).append(entry)
        for n, (delay, entries) in enumerate(sorted(by_delay.items())):
            for start in range(0, len(entries), 50):
                message = SendBatch(
                    notice_id=notice.id,
                    batch=f"{batch.batch}.{batch.hop + 1}.{n}.{start // 50}"[-64:],
                    entries=entries[start : start + 50],
                    hop=batch.hop + 1,
                )
                self.enqueue(message.model_dump(mode="json"), delay)

    def _give_up(self, notice: Notice, batch: SendBatch, entries: Sequence[BatchEntry]) -> None:
        now = self.now()
        records = [
            DeliveryRecord(notice_id=notice.id, recipient_id=e.recipient.recipient_id, channel=ch, decision="failed",
                           reason="provider kept throttling; gave up after retries", at=now)
            for e in entries for ch in (e.only or [])
        ]  # fmt: skip
        self.notices.complete(records, batch.batch)
        moves: Counter[str] = Counter()
        for record in records:
            moves[f"{record.channel}.deferred"] -= 1
            moves[f"{record.channel}.failed"] += 1
        self.notices.add_counts(notice.id, dict(moves), {"deferred": -len(entries), "failed": len(entries)}, None, now)

    # --- a redelivered batch ----------------------------------------------------------------

    def _recover(self, notice: Notice, batch: SendBatch, plans: list[Plan]) -> BatchResult:
        """Records still claimed were being sent when the last attempt died: never re-sent."""
        keys = [(p.entry.recipient.recipient_id, ch) for p in plans for ch in (p.entry.only or notice.channels)]
        stuck = [
            r
            for r, state, owner in self.notices.batch_records(notice.id, keys)
            if state == "claimed" and owner == batch.batch
        ]
        if stuck:
            now = self.now()
            failed = [r.model_copy(update={"decision": "failed", "reason": UNKNOWN_REASON, "at": now}) for r in stuck]
            self.notices.complete(failed, batch.batch)
            moves: Counter[str] = Counter()
            for record in stuck:
                moves[f"{record.channel}.sent"] -= 1
                moves[f"{record.channel}.failed"] += 1
            # A recipient was counted "sent" when claimed; with every claimed channel stuck, they failed.
            people = {r.recipient_id for r in stuck}
            recipient_moves = {"sent": -len(people), "failed": len(people)}
            self.notices.add_counts(notice.id, dict(moves), recipient_moves, None, now)
        return BatchResult(0, 0, 0, 0, len(stuck), 0, redelivered=True)


RETRY_REASON = "provider throttled; will retry"
UNKNOWN_REASON = "interrupted during sending; outcome unknown, not retried to avoid a duplicate"


def _counts(plans: Sequence[Plan]) -> tuple[dict[str, int], dict[str, int]]:
    channels: Counter[str] = Counter()
    recipients: Counter[str] = Counter()
    for plan in plans:
        for record in plan.records:
            channels[f"{record.channel}.{record.decision}"] += 1
        recipients[plan.outcome.decision] += 1
        if plan.entry.previous == "deferred":
            recipients["deferred"] -= 1
            for channel in plan.entry.only or []:
                channels[f"{channel}.deferred"] -= 1
    return dict(channels), dict(recipients)


def _final_outcomes(plan: Plan, finished: Sequence[DeliveryRecord]) -> list[ChannelOutcome]:
    done = {(r.recipient_id, r.channel): r for r in finished}
    outcomes = []
    for outcome in plan.outcome.channels:
        record = done.get((plan.entry.recipient.recipient_id, outcome.channel))
        outcomes.append(ChannelOutcome(outcome.channel, record.decision, record.reason) if record else outcome)
    return outcomes


def _recipient_decision(outcomes: Sequence[ChannelOutcome], planned: Decision) -> Decision:
    decisions = {o.decision for o in outcomes}
    order: tuple[Decision, ...] = ("sent", "deferred", "failed")
    for decision in order:
        if decision in decisions:
            return decision
    return planned


def batch_from_message(body: str) -> SendBatch:
    return SendBatch.model_validate(json.loads(body))
