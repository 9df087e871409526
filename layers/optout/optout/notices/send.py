"""The sender: one SendQueue batch, checked against suppressions at the moment of sending.

In order: read the batch's suppression state in one strongly consistent BatchGetItem (shared by
the invocation's batches); decide each recipient and channel (rules.py); mark the batch taken,
with that plan; send, paced under the provider rate; then, in one transaction, write every
delivery record with its final decision, add the counts and mark the batch done; re-enqueue what
must wait (quiet hours, throttling) with a delay. A redelivered batch sends nothing twice: its
mark says it was taken. If the last attempt died before its transaction, what it planned to send
is recorded failed (outcome unknown, never re-sent) and the rest as it was planned.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from optout.channels.email import BULK_MAX, BulkEntry, PermanentSendError, SesEmail
from optout.channels.pacing import OutcomeUnknown, TokenBucket, Transient, send_at_most_once
from optout.channels.sms import MessageType, SmsChannel
from optout.notices.model import BatchEntry, ChannelName, Decision, DeliveryRecord, Notice, Recipient, SendBatch
from optout.notices.render import NOTICE_LANGUAGES, RenderedEmail, bulk_template, render_email, render_sms
from optout.notices.rules import ChannelOutcome, RecipientOutcome, address_keys, decide
from optout.notices.store import BatchTaken, NoticeStore
from optout.settings import SenderSettings
from optout.suppression_store import SuppressionStore
from optout.token import KeyRing, issue

MAX_DELAY = 900  # SQS DelaySeconds limit
log = logging.getLogger(__name__)


@dataclass
class Plan:
    entry: BatchEntry
    outcome: RecipientOutcome
    keys: dict[ChannelName, str]  # address keys of the channels with an address


@dataclass
class Done:
    """A recipient of the batch, settled: the plan and the records of its final decisions."""

    plan: Plan
    records: list[DeliveryRecord]

    @property
    def decision(self) -> Decision:
        """The recipient's decision over every channel: this batch's, and those settled before."""
        decisions = [*self.plan.entry.settled, *(r.decision for r in self.records)]
        return _recipient_decision(decisions, self.plan.outcome.decision)


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
        settings: SenderSettings,
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
        self.optional_topics = settings.optional_topics  # read per recipient: worked out once
        self.links_base_url = settings.links_base_url
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

    def process(self, batch: SendBatch, owner: str | None = None, remaining_ms: int | None = None) -> BatchResult:
        """Send one batch. ``owner``: the invocation (its request id); ``remaining_ms``: its time left.

        The batch's mark holds a lease until the deadline: a second delivery of the batch while
        its owner may still be sending raises BatchLeased, so the message goes back to the queue
        and nothing is recorded twice. Near the deadline no provider call is started: what is
        left is recorded deferred and queued again.
        """
        notice = self.notice(batch.notice_id)
        now = self.now()
        deadline = now + timedelta(milliseconds=remaining_ms) if remaining_ms is not None else None
        keys = self._keys(batch)
        states = self._states(list(dict.fromkeys(keys.values())))
        plans: list[Plan] = []
        seen: set[str] = set()
        for entry in batch.entries:
            # The dispatcher drops a recipient listed twice; a batch built some other way (say, by
            # hand for a redrive) must still not write one item twice in a transaction.
            if entry.recipient.recipient_id not in seen:
                seen.add(entry.recipient.recipient_id)
                plans.append(self._plan(notice, entry, keys, states, now))
        duplicates = len(batch.entries) - len(plans)
        lease_until = deadline + LEASE_SLACK if deadline is not None else None
        try:
            self.notices.claim_batch(notice.id, batch.batch, _planned(plans), now, owner, lease_until)
        except BatchTaken as taken:
            if taken.done:  # recorded already; queue its later entries again in case that failed
                self._enqueue_later(notice, batch, _later_again(batch, taken.later))
                return BatchResult(0, 0, 0, 0, 0, 0, redelivered=True)
            if taken.leased(now):  # its owner may still be sending: leave the batch to it
                raise BatchLeased(batch.batch, taken.owner, taken.lease_until) from taken
            return self._recover(notice, batch, plans, taken.planned, duplicates)
        stop_at = deadline - SEND_MARGIN if deadline is not None else None
        return self._send_all(notice, batch, plans, duplicates, stop_at)

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
        own = {ch: keys[(rid, ch)] for ch in channels if (rid, ch) in keys}
        outcome = decide(
            entry.recipient,
            notice.topic,
            self.optional_topics,
            channels,
            notice.mode,
            {ch: states.get(key) for ch, key in own.items()},
            now,
            hold_optional_sms=notice.kind != "breach_alert",
            default_timezone=self.settings.default_timezone,
        )
        return Plan(entry, outcome, own)

    def _send_all(
        self, notice: Notice, batch: SendBatch, plans: list[Plan], duplicates: int, stop_at: datetime | None = None
    ) -> BatchResult:
        ring = self.key_ring()  # once a batch, not once a recipient
        mailed = self._send_bulk(notice, plans, ring, stop_at)
        done: list[Done] = []
        later: list[tuple[BatchEntry, int]] = []
        last_sent: datetime | None = None
        for plan in plans:
            records = []
            for outcome in plan.outcome.channels:
                decision, reason, message_id = outcome.decision, outcome.reason, None
                bulk = mailed.get(plan.entry.recipient.recipient_id) if outcome.channel == "email" else None
                if decision == "sent" and bulk is not None:
                    decision, reason, message_id = bulk
                elif decision == "sent" and stop_at is not None and self.now() >= stop_at:
                    decision, reason = "deferred", OUT_OF_TIME_REASON  # never started: queued again
                elif decision == "sent":
                    decision, reason, message_id = self._send_one(notice, plan, outcome.channel, ring)
                    if decision == "deferred" and plan.entry.attempt >= self.settings.send_retry_limit:
                        decision, reason = "failed", GAVE_UP_REASON
                records.append(self._record(notice, plan, outcome.channel, decision, reason, message_id))
                if decision == "sent":
                    last_sent = records[-1].at
            done.append(Done(plan, records))
            later += self._later(notice, plan, records)
        self._complete(notice, batch, done, later, last_sent)
        self._enqueue_later(notice, batch, later)
        return _result(done, duplicates)

    def _later(self, notice: Notice, plan: Plan, records: Sequence[DeliveryRecord]) -> list[tuple[BatchEntry, int]]:
        """One later entry for a recipient's deferred channels: throttled ones and quiet-hour ones.

        It carries the decisions of the recipient's other channels, so the later batch can count
        the recipient right (a recipient already sent by email stays "sent" whatever SMS does).
        In first_available mode a text held for the morning brings the channels after it along,
        never tried yet: if the number is blocked by then, the next channel is used instead.
        """
        retry = [r.channel for r in records if r.decision == "deferred" and r.reason == RETRY_REASON]
        unstarted = [r.channel for r in records if r.decision == "deferred" and r.reason == OUT_OF_TIME_REASON]
        waiting = [o for o in plan.outcome.channels if o.decision == "deferred" and o.defer_until is not None]
        if not retry and not waiting and not unstarted:
            return []
        delays = [30 * 2 ** min(plan.entry.attempt, 4)] if retry else []
        if unstarted:  # the last invocation ran out of time before trying: at once, no attempt counted
            delays.append(0)
            retry = [*retry, *unstarted]
        if waiting:
            until = max(o.defer_until for o in waiting if o.defer_until is not None)
            delays.append(int((until - self.now()).total_seconds()) + 1)
        deferred = [*retry, *(o.channel for o in waiting)]
        only = list(deferred)
        if notice.mode == "first_available" and waiting:
            channels = plan.entry.only or notice.channels
            only += channels[channels.index(waiting[-1].channel) + 1 :]
        entry = BatchEntry(
            recipient=plan.entry.recipient,
            only=only,
            previous="deferred",
            deferred=deferred if only != deferred else None,
            attempt=plan.entry.attempt + (1 if len(retry) > len(unstarted) else 0),
            settled=[*plan.entry.settled, *(r.decision for r in records if r.channel not in only)],
        )
        return [(entry, max(delays))]

    def _record(
        self,
        notice: Notice,
        plan: Plan,
        channel: ChannelName,
        decision: Decision,
        reason: str | None,
        message_id: str | None,
    ) -> DeliveryRecord:
        # Built from values this code produced, so not validated again (once per recipient)
        return DeliveryRecord.model_construct(
            notice_id=notice.id,
            recipient_id=plan.entry.recipient.recipient_id,
            channel=channel,
            address_key=plan.keys.get(channel),
            decision=decision,
            reason=reason,
            provider_message_id=message_id,
            at=self.now(),
        )

    def _complete(
        self,
        notice: Notice,
        batch: SendBatch,
        done: Sequence[Done],
        later: Sequence[tuple[BatchEntry, int]],
        last_sent: datetime | None,
    ) -> None:
        channels: Counter[str] = Counter()
        recipients: Counter[str] = Counter()
        for item in done:
            for record in item.records:
                channels[f"{record.channel}.{record.decision}"] += 1
            entry = item.plan.entry
            if entry.previous != "deferred":
                recipients[item.decision] += 1
                continue
            # An earlier batch counted these channels deferred, and the recipient "sent" if another
            # channel went out then, else "deferred": move the counts on to what holds now.
            for channel in entry.deferred if entry.deferred is not None else entry.only or []:
                channels[f"{channel}.deferred"] -= 1
            before = "sent" if "sent" in entry.settled else "deferred"
            if item.decision != before:
                recipients[before] -= 1
                recipients[item.decision] += 1
        records = [r for item in done for r in item.records]
        self.notices.complete_batch(
            notice.id, batch.batch, records, dict(channels), dict(recipients), last_sent, self.now(), _later_refs(later)
        )

    def _send_bulk(
        self, notice: Notice, plans: Sequence[Plan], ring: KeyRing, stop_at: datetime | None
    ) -> dict[str, tuple[Decision, str | None, str | None]]:
        """Mail the batch's email recipients with SendBulkEmail, up to 50 who share a language a call.

        Returns each mailed recipient's (decision, reason, message id). Each entry's result decides
        its recipient alone: SUCCESS is sent; a permanent status failed; any other status is tried
        again later. A call that SES refused is tried again later for all its recipients; a call
        whose outcome is unknown is never repeated, and its recipients are recorded failed with
        the reason "outcome unknown". Recipients left out (an address SES cannot take, content
        SES's substitution would change) are mailed one by one by ``_send_one``.
        """
        optional = notice.topic in self.optional_topics
        templates: dict[str, RenderedEmail | None] = {}  # per language, once a batch
        groups: dict[str, list[tuple[Plan, BulkEntry]]] = {}
        for plan in plans:
            recipient = plan.entry.recipient
            wants_mail = any(o.channel == "email" and o.decision == "sent" for o in plan.outcome.channels)
            if not wants_mail or not (recipient.email or "").isascii():
                continue
            language = recipient.locale if recipient.locale in NOTICE_LANGUAGES else "en"
            if language not in templates:
                templates[language] = bulk_template(notice, language, self.settings.brand_name, optional)
            if templates[language] is None:
                continue
            token = issue(ring, "email", plan.keys.get("email", ""), notice.topic)
            url = f"{self.links_base_url}/unsubscribe?token={token}"
            if html.escape(url) != url:  # the HTML part would need it escaped: SES puts it in as it is
                continue
            headers = [("X-Optout-Notice", notice.id)]
            if optional:  # RFC 8058, List-Unsubscribe first (Gmail reads them in that order)
                headers += [("List-Unsubscribe", f"<{url}>"), ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")]
            groups.setdefault(language, []).append((plan, BulkEntry(recipient.email or "", url, tuple(headers))))
        results: dict[str, tuple[Decision, str | None, str | None]] = {}
        for language, members in groups.items():
            template = templates[language]
            if template is None:  # cannot happen (grouped only with one); were it to, mailed one by one
                continue
            for start in range(0, len(members), BULK_MAX):
                chunk = members[start : start + BULK_MAX]
                ids = [plan.entry.recipient.recipient_id for plan, _ in chunk]
                if stop_at is not None and self.now() >= stop_at:
                    results.update(dict.fromkeys(ids, ("deferred", OUT_OF_TIME_REASON, None)))
                    continue
                for _ in chunk:  # SES's quota counts recipients, not calls
                    self.buckets["email"].take()
                entries = [entry for _, entry in chunk]
                results.update(zip(ids, self._bulk_call(notice, template, entries), strict=True))
        return results

    def _bulk_call(
        self, notice: Notice, template: RenderedEmail, entries: list[BulkEntry]
    ) -> list[tuple[Decision, str | None, str | None]]:
        n = len(entries)
        try:
            answered = send_at_most_once(lambda: self.email().send_bulk(template, entries))
        except Transient:
            return [("deferred", RETRY_REASON, None)] * n
        except OutcomeUnknown as exc:  # it may have gone out: never sent again, listed
            log.warning("bulk send outcome unknown", extra={"notice_id": notice.id, "recipients": n, "error": str(exc)})
            return [("failed", f"{LOST_ANSWER_REASON} ({exc})", None)] * n
        except PermanentSendError as exc:
            return [("failed", f"rejected by provider: {exc}", None)] * n
        except Exception as exc:  # anything else: this call's recipients failed, the batch goes on
            code = getattr(exc, "response", {}).get("Error", {}).get("Code") or type(exc).__name__
            log.exception("bulk send failed", extra={"notice_id": notice.id, "error": code})
            return [("failed", f"send error: {code}", None)] * n
        out: list[tuple[Decision, str | None, str | None]] = []
        for result in answered:
            if result.status == "SUCCESS":
                out.append(("sent", None, result.message_id))
            elif result.permanent:
                out.append(("failed", f"rejected by provider: {result.status} {result.error or ''}".strip(), None))
            else:
                out.append(("deferred", RETRY_REASON, None))
        return out

    def _send_one(
        self, notice: Notice, plan: Plan, channel: ChannelName, ring: KeyRing
    ) -> tuple[Decision, str | None, str | None]:
        recipient = plan.entry.recipient
        try:
            self.buckets[channel].take()
            if channel == "email":
                raw = self._email(notice, recipient, plan.keys.get(channel, ""), ring)
                message_id = send_at_most_once(lambda: self.email().send(recipient.email or "", raw))
            else:
                optional = notice.topic in self.optional_topics
                text = render_sms(notice, recipient, self.settings.brand_name, optional)
                message_type: MessageType = "PROMOTIONAL" if notice.kind == "marketing" else "TRANSACTIONAL"
                message_id = send_at_most_once(
                    lambda: self.sms().send(recipient.phone or "", text, message_type=message_type)
                )
        except Transient:
            return "deferred", RETRY_REASON, None
        except OutcomeUnknown as exc:  # it may have gone out: never sent again, listed as unknown
            log.warning("send outcome unknown", extra={"notice_id": notice.id, "channel": channel, "error": str(exc)})
            return "failed", f"{LOST_ANSWER_REASON} ({exc})", None
        except PermanentSendError as exc:
            return "failed", f"rejected by provider: {exc}", None
        except Exception as exc:  # anything else: this recipient failed, the batch goes on
            code = getattr(exc, "response", {}).get("Error", {}).get("Code") or type(exc).__name__
            log.exception("send failed", extra={"notice_id": notice.id, "channel": channel, "error": code})
            return "failed", f"send error: {code}", None
        return "sent", None, message_id

    def _email(self, notice: Notice, recipient: Recipient, key: str, ring: KeyRing) -> bytes:
        token = issue(ring, "email", key, notice.topic)
        # A token is URL-safe by construction (base64url and [a-z0-9_-] parts joined by dots)
        url = f"{self.links_base_url}/unsubscribe?token={token}"
        optional = notice.topic in self.optional_topics
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
        by_delay: dict[int, list[BatchEntry]] = {}
        for entry, delay in later:
            by_delay.setdefault(min(MAX_DELAY, max(0, delay)), []).append(entry)
        root = batch.batch.split(".", 1)[0]  # the first batch's id: where it starts in the manifest
        for n, (delay, entries) in enumerate(sorted(by_delay.items())):
            for start in range(0, len(entries), 50):
                # The same batch always queues the same later batches, under ids unique in the notice
                path = hashlib.blake2b(f"{batch.batch}/{n}/{start}".encode(), digest_size=8).hexdigest()
                message = SendBatch(
                    notice_id=notice.id,
                    batch=f"{root}.{batch.hop + 1}.{path}",
                    entries=entries[start : start + 50],
                    hop=batch.hop + 1,
                )
                self.enqueue(message.model_dump(mode="json", exclude_defaults=True), delay)

    # --- a redelivered batch ----------------------------------------------------------------

    def _recover(
        self, notice: Notice, batch: SendBatch, plans: list[Plan], planned: str | None, duplicates: int
    ) -> BatchResult:
        """The last attempt died after its mark and before its records: what it meant to send may
        have gone out, so it is recorded failed (outcome unknown) and never re-sent; the rest is
        recorded as that attempt planned it, and what it deferred is queued again."""
        was = _unplanned(planned)
        done: list[Done] = []
        later: list[tuple[BatchEntry, int]] = []
        for plan in plans:
            before = was.get(plan.entry.recipient.recipient_id)
            if before is None:  # not in the mark (cannot happen with marks this code writes): assume sent
                channels = plan.entry.only or notice.channels
                before = RecipientOutcome("sent", tuple(ChannelOutcome(ch, "sent") for ch in channels))
            then = Plan(plan.entry, before, plan.keys)
            records = [
                self._record(
                    notice,
                    then,
                    o.channel,
                    *(("failed", UNKNOWN_REASON) if o.decision == "sent" else (o.decision, o.reason)),
                    None,
                )
                for o in before.channels
            ]
            done.append(Done(then, records))
            later += self._later(notice, then, records)
        self._complete(notice, batch, done, later, None)
        self._enqueue_later(notice, batch, later)
        return replace(_result(done, duplicates), redelivered=True)


class BatchLeased(Exception):
    """Another invocation holds this batch's lease and may still be sending it: try again later."""

    def __init__(self, batch: str, owner: str | None, until: datetime | None) -> None:
        super().__init__(f"batch {batch} is being sent by {owner or 'another invocation'} until {until}")
        self.batch, self.owner, self.until = batch, owner, until


# Near its deadline the sender starts no provider call: a call may take its connect and read
# timeouts (2 s and 10 s, clients.provider) and recording the batch a few seconds more.
SEND_MARGIN = timedelta(seconds=15)
LEASE_SLACK = timedelta(seconds=30)  # past its deadline, an invocation is gone: its lease with it
RETRY_REASON = "provider throttled; will retry"
OUT_OF_TIME_REASON = "not started before the invocation's deadline; queued again"
GAVE_UP_REASON = "provider kept throttling; gave up after retries"
UNKNOWN_REASON = "interrupted during sending; outcome unknown, not retried to avoid a duplicate"
LOST_ANSWER_REASON = "the provider's answer was lost or it failed after taking the send; outcome unknown, not retried"


def _planned(plans: Sequence[Plan]) -> str:
    """The batch's plan, compact, for its mark: {recipient: [decision, [[channel, decision, reason, until]]]}."""
    return json.dumps(
        {
            p.entry.recipient.recipient_id: [
                p.outcome.decision,
                [[o.channel, o.decision, o.reason, o.defer_until.isoformat() if o.defer_until else None]
                 for o in p.outcome.channels],
            ]
            for p in plans
        },
        separators=(",", ":"),
    )  # fmt: skip


def _unplanned(planned: str | None) -> dict[str, RecipientOutcome]:
    outcomes = {}
    for rid, (decision, channels) in json.loads(planned or "{}").items():
        outcomes[rid] = RecipientOutcome(
            decision,
            tuple(ChannelOutcome(ch, d, reason, datetime.fromisoformat(until) if until else None)
                  for ch, d, reason, until in channels),
        )  # fmt: skip
    return outcomes


def _later_refs(later: Sequence[tuple[BatchEntry, int]]) -> str | None:
    """What a done mark keeps of the later entries, to queue them again: ids, never addresses."""
    if not later:
        return None
    refs = [[e.recipient.recipient_id, e.only, e.deferred, e.attempt, e.settled, delay] for e, delay in later]
    return json.dumps(refs, separators=(",", ":"))


def _later_again(batch: SendBatch, refs: str | None) -> list[tuple[BatchEntry, int]]:
    recipients = {e.recipient.recipient_id: e.recipient for e in batch.entries}
    later = []
    for rid, only, deferred, attempt, settled, delay in json.loads(refs or "[]"):
        entry = BatchEntry(
            recipient=recipients[rid],
            only=only,
            deferred=deferred,
            previous="deferred",
            attempt=attempt,
            settled=settled,
        )
        later.append((entry, delay))
    return later


def _result(done: Sequence[Done], duplicates: int) -> BatchResult:
    # A recipient is reported by the batch that settles them; one sent before stays with that batch
    tally = Counter(item.decision for item in done if "sent" not in item.plan.entry.settled)
    return BatchResult(
        tally["sent"], tally["suppressed"], tally["deferred"], tally["unreachable"], tally["failed"], duplicates
    )


def _recipient_decision(decisions: Sequence[Decision], planned: Decision) -> Decision:
    order: tuple[Decision, ...] = ("sent", "deferred", "failed")
    for decision in order:
        if decision in decisions:
            return decision
    return planned


def batch_from_message(body: str) -> SendBatch:
    return SendBatch.model_validate(json.loads(body))
