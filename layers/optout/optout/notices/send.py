"""The sender: one SendQueue batch, checked against suppressions at the moment of sending.

In order: read the batch's suppression state in one strongly consistent BatchGetItem (shared by
the invocation's batches); decide each recipient and channel (rules.py); work out the provider
calls (bulk mails of up to 50, single mails, one text each); mark the batch taken, with that plan
and its first call in flight; make the calls, paced under the provider rate, recording on the mark
before each later call the previous call's results and that call in flight; then, in one
transaction, write every delivery record with its final decision, add the counts and mark the
batch done; re-enqueue what must wait (quiet hours, throttling) with a delay.

A redelivered batch sends nothing twice: its mark says it was taken. If the last attempt died
before its transaction, its mark tells its recipients apart: those of answered calls are recorded
as answered; those of the one call in flight are ``unknown`` (it may have gone out: never sent
again, listed); those never tried are queued again; the rest as planned.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from optout.channels.email import BULK_MAX, BulkEntry, PermanentSendError, RenderedEmail, SesEmail
from optout.channels.pacing import (
    OutcomeUnknown,
    TokenBucket,
    Transient,
    email_pace,
    refused_for_good,
    send_at_most_once,
)
from optout.channels.sms import MessageType, SmsChannel
from optout.core.settings import SenderSettings
from optout.notices.mark import BatchPlan, LaterEntries
from optout.notices.model import (
    BatchEntry,
    ChannelName,
    Decision,
    DeliveryRecord,
    Notice,
    Recipient,
    SendBatch,
    pseudonym,
)
from optout.notices.render import NOTICE_LANGUAGES, bulk_template, render_email, render_sms
from optout.notices.rules import AddressKeys, ChannelOutcome, RecipientOutcome, address_keys, decide_for, erased_since
from optout.notices.store import BatchTaken, CallResult, NoticeStore
from optout.suppression.store import SuppressionStore
from optout.unsubscribe.token import KeyRing, issue, unsubscribe_url

MAX_DELAY = 900  # SQS DelaySeconds limit
log = logging.getLogger(__name__)
# Suppression states by address key, read once for all the batches of an invocation (None: no state)
Prefetched = Mapping[str, Any]


@dataclass
class Plan:
    entry: BatchEntry
    outcome: RecipientOutcome
    keys: dict[ChannelName, str]  # address keys of the channels with an address
    erased: frozenset[ChannelName] = frozenset()  # channels whose address was erased since the notice
    decided_at: datetime | None = None  # when the suppression state this plan follows was read


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


@dataclass
class Call:
    """One provider call: a bulk mail to up to 50 recipients (``template`` and ``entries``), or one
    mail or text to one recipient."""

    channel: ChannelName
    plans: list[Plan]
    template: RenderedEmail | None = None
    entries: list[BulkEntry] = field(default_factory=list)  # in the order of ``plans``

    @property
    def refs(self) -> list[tuple[str, ChannelName]]:
        return [(plan.entry.recipient.recipient_id, self.channel) for plan in self.plans]


@dataclass
class Made:
    """What the calls of a batch did: each recipient's result, and the last call made."""

    last_at: datetime  # when the last call made was answered
    results: dict[tuple[str, str], CallResult] = field(default_factory=dict)  # by (recipient, channel)
    calls: int = 0  # how many calls were made (the first ``calls`` of the batch)
    last: list[CallResult] = field(default_factory=list)  # the last call made: its results


@dataclass(frozen=True)
class BatchResult:
    sent: int
    suppressed: int
    deferred: int
    unreachable: int
    failed: int
    duplicates: int
    redelivered: bool = False
    unknown: int = 0


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
            # Its share of the SES quota; it hears SES's answers and slows down on throttling
            "email": email_pace(
                settings.email_rate_per_second, settings.sender_concurrency, lambda: self.email().client
            ),
            "sms": TokenBucket(settings.sms_rate_per_second),
        }
        self._notices: dict[str, Notice] = {}
        self.optional_topics = settings.optional_topics  # read per recipient: worked out once
        self.links_base_url = settings.links_base_url

    def prefetch(self, batches: Sequence[SendBatch]) -> Prefetched:
        """Read the suppression state of several batches in one BatchGetItem (100 keys a call).

        The sender takes two 50-recipient batches per invocation, so email recipients cost one
        suppression read per 100. The states are read just before those batches are sent and
        belong to that invocation: the caller hands them to ``process`` and drops them after.
        """
        # With each address's legacy key where it has one (rules.AddressKeys): in the same calls
        keys = [key for batch in batches for key in self._keys(batch).to_read()]
        unique = list(dict.fromkeys(keys))
        found = self.suppressions.get_many(unique)
        return {key: found.get(key) for key in unique}

    def _keys(self, batch: SendBatch) -> AddressKeys:
        notice = self.notice(batch.notice_id)
        return address_keys(self.pepper(), ((e.recipient, e.only or notice.channels) for e in batch.entries))

    def _states(self, keys: list[str], prefetched: Prefetched) -> dict[str, Any]:
        if keys and all(k in prefetched for k in keys):
            return {k: v for k in keys if (v := prefetched[k]) is not None}
        return dict(self.suppressions.get_many(keys))

    def notice(self, notice_id: str) -> Notice:
        # The content of a notice never changes after creation: cache it for the warm instance.
        if notice_id not in self._notices:
            self._notices[notice_id] = self.notices.get(notice_id)
        return self._notices[notice_id]

    # --- the batch ----------------------------------------------------------------------

    def process(
        self,
        batch: SendBatch,
        owner: str | None = None,
        remaining_ms: int | None = None,
        prefetched: Prefetched | None = None,
    ) -> BatchResult:
        """Send one batch. ``owner``: the invocation (its request id); ``remaining_ms``: its time left;
        ``prefetched``: the suppression states its invocation read for all its batches (``prefetch``).

        The batch's mark holds a lease until the deadline: a second delivery of the batch while
        its owner may still be sending raises BatchLeased, so the message goes back to the queue
        and nothing is recorded twice. Near the deadline no provider call is started: what is
        left is recorded deferred and queued again.

        The calls are worked out before the mark, so that the mark itself puts the first in
        flight: a batch of one bulk call (most email batches) costs no progress write at all.
        """
        notice = self.notice(batch.notice_id)
        now = self.now()
        deadline = now + timedelta(milliseconds=remaining_ms) if remaining_ms is not None else None
        keys = self._keys(batch)
        states = self._states(keys.to_read(), prefetched or {})
        read_at = self.now()  # each send is decided on these states, read by now
        plans: list[Plan] = []
        seen: set[str] = set()
        for entry in batch.entries:
            # The dispatcher drops a recipient listed twice; a batch built some other way (say, by
            # hand for a redrive) must still not write one item twice in a transaction.
            if entry.recipient.recipient_id not in seen:
                seen.add(entry.recipient.recipient_id)
                plans.append(replace(self._plan(notice, entry, keys, states, now), decided_at=read_at))
        duplicates = len(batch.entries) - len(plans)
        lease_until = deadline + LEASE_SLACK if deadline is not None else None
        stop_at = deadline - SEND_MARGIN if deadline is not None else None
        ring = self.key_ring()  # once a batch, not once a recipient
        calls = self._calls(notice, plans, ring)
        start = bool(calls) and not (stop_at is not None and self.now() >= stop_at)
        if start:
            self._pace(calls[0])  # before the mark puts the call in flight: the call follows at once
        try:
            self.notices.claim_batch(
                notice.id, batch.batch, _planned(plans), now, owner, lease_until, calls[0].refs if start else ()
            )
        except BatchTaken as taken:
            if taken.done:  # recorded already; queue its later entries again in case that failed
                self._enqueue_later(notice, batch, LaterEntries.load(taken.later).again(batch))
                return BatchResult(0, 0, 0, 0, 0, 0, redelivered=True)
            if taken.leased(now):  # its owner may still be sending: leave the batch to it
                raise BatchLeased(batch.batch, taken.owner, taken.lease_until) from taken
            return self._recover(notice, batch, plans, taken, duplicates)
        made = self._make_calls(notice, batch, calls, ring, stop_at, start)
        return self._send_all(notice, batch, plans, made, duplicates)

    def _plan(
        self,
        notice: Notice,
        entry: BatchEntry,
        keys: AddressKeys,
        states: dict[str, Any],
        now: datetime,
    ) -> Plan:
        rid = entry.recipient.recipient_id
        channels = entry.only or notice.channels
        own = {ch: keys.current[(rid, ch)] for ch in channels if (rid, ch) in keys.current}
        channel_states = {ch: keys.state((rid, ch), states) for ch in own}
        outcome = decide_for(
            notice, entry.recipient, channels, channel_states, now, self.optional_topics, self.settings.default_timezone
        )
        return Plan(entry, outcome, own, erased_since(notice, channel_states))

    def _send_all(
        self,
        notice: Notice,
        batch: SendBatch,
        plans: list[Plan],
        made: Made,
        duplicates: int,
    ) -> BatchResult:
        results = made.results
        done: list[Done] = []
        later: list[tuple[BatchEntry, int]] = []
        last_sent: datetime | None = None
        for plan in plans:
            records = []
            rid = plan.entry.recipient.recipient_id
            for outcome in plan.outcome.channels:
                decision, reason, message_id = outcome.decision, outcome.reason, None
                if decision == "sent":  # every planned send was one call's, made or not
                    decision, reason, message_id = self._final(plan, results[(rid, outcome.channel)])
                records.append(self._record(notice, plan, outcome.channel, decision, reason, message_id))
                if decision == "sent":
                    last_sent = records[-1].at
            done.append(Done(plan, records))
            later += self._later(notice, plan, records)
        try:
            self._complete(notice, batch, done, later, last_sent)
        except Exception:
            self._leave_progress(notice, batch, made)
            raise
        self._enqueue_later(notice, batch, later)
        return _result(done, duplicates)

    def _leave_progress(self, notice: Notice, batch: SendBatch, made: Made) -> None:
        """The batch could not be recorded: leave its last call's results on the mark, none in flight.

        Else the redelivery would find that call still in flight and record its recipients
        ``unknown``, though the provider answered (or, when its progress write had failed, though
        no call after it went out). The lease goes too: this invocation gives the batch up.
        """
        if not made.calls:  # nothing went out: the mark says so already
            return
        try:
            self.notices.record_call(notice.id, batch.batch, made.calls, made.last, made.last_at, (), release=True)
        except Exception:  # the redelivery then goes by the mark as it is
            log.warning("cannot leave send progress", exc_info=True, extra={"notice_id": notice.id})

    def _final(self, plan: Plan, result: CallResult) -> tuple[Decision, str | None, str | None]:
        throttled = result.decision == "deferred" and result.reason == RETRY_REASON
        if throttled and plan.entry.attempt >= self.settings.send_retry_limit:
            return "failed", GAVE_UP_REASON, None
        return result.decision, result.reason, result.message_id

    def _later(self, notice: Notice, plan: Plan, records: Sequence[DeliveryRecord]) -> list[tuple[BatchEntry, int]]:
        """One later entry for a recipient's deferred channels: throttled, never started, quiet hours.

        It carries the decisions of the recipient's other channels, so the later batch can count
        the recipient right (a recipient already sent by email stays "sent" whatever SMS does).
        In first_available mode a text held for the morning brings the channels after it along,
        never tried yet: if the number is blocked by then, the next channel is used instead.
        """
        # Tried again: what the provider throttled, and what an interrupted attempt never tried
        # (counted as an attempt, so that a batch that keeps dying before its calls ends)
        deferred_now = [r for r in records if r.decision == "deferred"]
        retry = [r.channel for r in deferred_now if r.reason in (RETRY_REASON, NOT_TRIED_REASON)]
        unstarted = [r.channel for r in deferred_now if r.reason in UNSTARTED_REASONS]
        waiting = [o for o in plan.outcome.channels if o.decision == "deferred" and o.defer_until is not None]
        if not retry and not waiting and not unstarted:
            return []
        throttled = any(r.reason == RETRY_REASON for r in deferred_now)
        delays = [30 * 2 ** min(plan.entry.attempt, 4) if throttled else 0] if retry else []
        if unstarted:  # out of time, or progress unrecorded, before trying: at once, no attempt counted
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
        recipient = plan.entry.recipient
        if plan.erased:  # an erased address never rides in a queued message again
            recipient = recipient.model_copy(update={"email" if ch == "email" else "phone": None for ch in plan.erased})
        entry = BatchEntry(
            recipient=recipient,
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
        at: datetime | None = None,
    ) -> DeliveryRecord:
        # Built from values this code produced, so not validated again (once per recipient)
        erased = channel in plan.erased
        recipient_id = plan.entry.recipient.recipient_id
        return DeliveryRecord.model_construct(
            notice_id=notice.id,
            recipient_id=pseudonym(self.pepper(), notice.id, recipient_id) if erased else recipient_id,
            channel=channel,
            address_key=None if erased else plan.keys.get(channel),
            decision=decision,
            reason=reason,
            provider_message_id=message_id,
            at=at or self.now(),
            decided_at=plan.decided_at,
        )

    def _complete(
        self,
        notice: Notice,
        batch: SendBatch,
        done: Sequence[Done],
        later: Sequence[tuple[BatchEntry, int]],
        last_sent: datetime | None,
        step: int | None = None,
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
        # Held for quiet hours (the sender's plan says until when): the notice keeps when they are due
        until = {o.defer_until for item in done for o in item.plan.outcome.channels if o.defer_until is not None}
        self.notices.complete_batch(
            notice.id,
            batch.batch,
            records,
            dict(channels),
            dict(recipients),
            last_sent,
            self.now(),
            _later_refs(later),
            step,
            deferred_until=until,
        )

    def _calls(self, notice: Notice, plans: Sequence[Plan], ring: KeyRing) -> list[Call]:
        """The provider calls for the batch's planned sends, in the order they are made.

        Email goes through SendBulkEmail, up to 50 recipients who share a language a call; a
        recipient left out (an address SES cannot take, content SES's substitution would change)
        is mailed alone with SendEmail, and each text is a call of its own.
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
            template = templates[language]
            if template is None:
                continue
            token = issue(ring, "email", plan.keys.get("email", ""), notice.topic)
            url = unsubscribe_url(self.links_base_url, token)
            if html.escape(url) != url:  # the HTML part would need it escaped: SES puts it in as it is
                continue
            headers = [("X-Optout-Notice", notice.id)]
            if optional:  # RFC 8058, List-Unsubscribe first (Gmail reads them in that order)
                headers += [("List-Unsubscribe", f"<{url}>"), ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")]
            data: tuple[tuple[str, str], ...] = ()
            if template.personal:
                name = recipient.name or ""
                data = (("name", name), ("name_html", html.escape(name)))
            entry = BulkEntry(recipient.email or "", url, tuple(headers), data)
            groups.setdefault(language, []).append((plan, entry))
        calls: list[Call] = []
        in_bulk: set[str] = set()
        for language, members in groups.items():
            template = templates[language]
            if template is None:  # cannot happen (grouped only with one); were it to, mailed one by one
                continue
            size = min(BULK_MAX, self.buckets["email"].most_per_call)  # a call fits the pace's burst
            for start in range(0, len(members), size):
                chunk = members[start : start + size]
                calls.append(Call("email", [plan for plan, _ in chunk], template, [entry for _, entry in chunk]))
                in_bulk.update(plan.entry.recipient.recipient_id for plan, _ in chunk)
        for plan in plans:
            for outcome in plan.outcome.to_send:
                if outcome.channel != "email" or plan.entry.recipient.recipient_id not in in_bulk:
                    calls.append(Call(outcome.channel, [plan]))
        return calls

    def _pace(self, call: Call) -> None:
        for _ in call.plans:  # SES's quota counts recipients, not calls
            self.buckets[call.channel].take()

    def _make_calls(
        self,
        notice: Notice,
        batch: SendBatch,
        calls: Sequence[Call],
        ring: KeyRing,
        stop_at: datetime | None,
        started: bool,
    ) -> Made:
        """Make the calls in order; each recipient's result, by (recipient, channel).

        The mark put the first call in flight (``started``: it was paced and may go out). Before
        each later call, one UpdateItem on the mark records the previous call's results and this
        call in flight, so an interrupted batch leaves at most one call's recipients unknown. Near
        the deadline, or when progress cannot be recorded, no more calls are started: what is left
        is queued again.
        """
        made = Made(last_at=self.now())
        stopped = None if started else OUT_OF_TIME_REASON
        for step, call in enumerate(calls):
            if stopped is None and step > 0:
                stopped = self._before_call(notice, batch, step, call, made.last, made.last_at, stop_at)
            if stopped is not None:
                answered = [CallResult(rid, channel, "deferred", stopped) for rid, channel in call.refs]
            else:
                answered = self._call(notice, call, ring)
                made.calls, made.last, made.last_at = step + 1, answered, self.now()
            made.results.update(((r.recipient_id, r.channel), r) for r in answered)
        return made

    def _before_call(
        self,
        notice: Notice,
        batch: SendBatch,
        step: int,
        call: Call,
        answered: Sequence[CallResult],
        answered_at: datetime,
        stop_at: datetime | None,
    ) -> str | None:
        """Pace call ``step`` and put it in flight on the mark; or why it must not be started."""
        if stop_at is not None and self.now() >= stop_at:
            return OUT_OF_TIME_REASON
        self._pace(call)
        try:
            self.notices.record_call(notice.id, batch.batch, step, answered, answered_at, call.refs)
        except Exception:  # unrecorded, a call could not be told apart from the one before it: stop
            log.warning("cannot record send progress", exc_info=True, extra={"notice_id": notice.id, "step": step})
            return UNRECORDED_REASON
        return None

    def _call(self, notice: Notice, call: Call, ring: KeyRing) -> list[CallResult]:
        if call.template is not None:
            answers = self._bulk_call(notice, call.template, call.entries)
        else:
            answers = [self._send_one(notice, call.plans[0], call.channel, ring)]
        return [CallResult(rid, channel, *answer) for (rid, channel), answer in zip(call.refs, answers, strict=True)]

    def _bulk_call(
        self, notice: Notice, template: RenderedEmail, entries: list[BulkEntry]
    ) -> list[tuple[Decision, str | None, str | None]]:
        """One SendBulkEmail: each entry's result decides its recipient; SUCCESS is sent, a permanent
        status failed, any other tried again later. A refused call is tried again later for all; a
        call whose outcome is unknown is never repeated: all its recipients are ``unknown``."""
        n = len(entries)
        try:  # before anything can go out: an error here is surely no send
            email = self.email()
        except Exception as exc:
            return [_not_sent(notice, exc)] * n
        try:
            answered = send_at_most_once(lambda: email.send_bulk(template, entries))
        except Transient:
            return [("deferred", RETRY_REASON, None)] * n
        except OutcomeUnknown as exc:  # it may have gone out: never sent again, listed
            log.warning("bulk send outcome unknown", extra={"notice_id": notice.id, "recipients": n, "error": str(exc)})
            return [("unknown", f"{LOST_ANSWER_REASON} ({exc})", None)] * n
        except PermanentSendError as exc:
            return [("failed", f"rejected by provider: {exc}", None)] * n
        except Exception as exc:  # anything else: unknown unless the provider surely refused it
            return [_unexpected(notice, exc)] * n
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
        try:  # before anything can go out: an error here is surely no send
            send = self._one(notice, plan, channel, ring)
        except Exception as exc:
            return _not_sent(notice, exc)
        try:
            message_id = send_at_most_once(send)
        except Transient:
            return "deferred", RETRY_REASON, None
        except OutcomeUnknown as exc:  # it may have gone out: never sent again, listed as unknown
            log.warning("send outcome unknown", extra={"notice_id": notice.id, "channel": channel, "error": str(exc)})
            return "unknown", f"{LOST_ANSWER_REASON} ({exc})", None
        except PermanentSendError as exc:
            return "failed", f"rejected by provider: {exc}", None
        except Exception as exc:  # anything else: unknown unless the provider surely refused it
            return _unexpected(notice, exc)
        return "sent", None, message_id

    def _one(self, notice: Notice, plan: Plan, channel: ChannelName, ring: KeyRing) -> Callable[[], str]:
        """The send of one mail or text, rendered and with its client: the call is all that is left."""
        recipient = plan.entry.recipient
        if channel == "email":
            raw = self._email(notice, recipient, plan.keys.get(channel, ""), ring)
            email = self.email()
            return lambda: email.send(recipient.email or "", raw)
        optional = notice.topic in self.optional_topics
        text = render_sms(notice, recipient, self.settings.brand_name, optional)
        message_type: MessageType = "PROMOTIONAL" if notice.kind == "marketing" else "TRANSACTIONAL"
        sms = self.sms()
        return lambda: sms.send(recipient.phone or "", text, message_type=message_type)

    def _email(self, notice: Notice, recipient: Recipient, key: str, ring: KeyRing) -> bytes:
        token = issue(ring, "email", key, notice.topic)
        # A token is URL-safe by construction (base64url and [a-z0-9_-] parts joined by dots)
        url = unsubscribe_url(self.links_base_url, token)
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
        self, notice: Notice, batch: SendBatch, plans: list[Plan], taken: BatchTaken, duplicates: int
    ) -> BatchResult:
        """The last attempt died after its mark and before its records: record what its mark says.

        The recipients of its answered calls as answered; of the call in flight, ``unknown`` (it
        may have gone out: never sent again); of calls never tried, deferred and queued again at
        once; the rest as that attempt planned them. A mark from before progress was recorded
        per call cannot tell its calls apart: every send it planned is then ``unknown``.
        """
        was = BatchPlan.load(taken.planned).outcomes()
        progress = taken.progress
        done: list[Done] = []
        later: list[tuple[BatchEntry, int]] = []
        last_sent: datetime | None = None
        for plan in plans:
            rid = plan.entry.recipient.recipient_id
            before = was.get(rid)
            if before is None:  # not in the mark (cannot happen with marks this code writes): assume sent
                channels = plan.entry.only or notice.channels
                before = RecipientOutcome("sent", tuple(ChannelOutcome(ch, "sent") for ch in channels))
            then = Plan(plan.entry, before, plan.keys, plan.erased)
            records = []
            for o in before.channels:
                decision, reason, message_id, at = o.decision, o.reason, None, None
                answered = progress.results.get((rid, o.channel)) if progress is not None else None
                if decision != "sent":
                    pass
                elif answered is not None:
                    (decision, reason, message_id), at = self._final(then, answered[0]), answered[1]
                elif progress is None or (rid, o.channel) in progress.inflight:
                    decision, reason = "unknown", UNKNOWN_REASON
                elif plan.entry.attempt >= self.settings.send_retry_limit:
                    decision, reason = "failed", KEPT_DYING_REASON
                else:
                    decision, reason = "deferred", NOT_TRIED_REASON
                records.append(self._record(notice, then, o.channel, decision, reason, message_id, at))
                if decision == "sent" and (last_sent is None or records[-1].at > last_sent):
                    last_sent = records[-1].at
            done.append(Done(then, records))
            later += self._later(notice, then, records)
        self._complete(notice, batch, done, later, last_sent, progress.step if progress is not None else None)
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
UNRECORDED_REASON = "not started: its progress could not be recorded; queued again"
UNSTARTED_REASONS = (OUT_OF_TIME_REASON, UNRECORDED_REASON)  # queued again at once, no attempt counted
NOT_TRIED_REASON = "never tried: the invocation sending it was interrupted; queued again"
GAVE_UP_REASON = "provider kept throttling; gave up after retries"
KEPT_DYING_REASON = "never tried: the invocations sending it kept being interrupted; gave up"
# Both "unknown": the send may have gone out, so it is never made again
UNKNOWN_REASON = "interrupted while its provider call was in flight; outcome unknown, not retried to avoid a duplicate"
LOST_ANSWER_REASON = "the provider's answer was lost or it failed after taking the send; outcome unknown, not retried"
UNEXPECTED_REASON = "an unexpected error once the send may have gone out; outcome unknown, not retried"


def _error_code(exc: BaseException) -> str:
    return (getattr(exc, "response", None) or {}).get("Error", {}).get("Code") or type(exc).__name__


def _not_sent(notice: Notice, exc: BaseException) -> tuple[Decision, str | None, str | None]:
    """An error before the provider call was made (rendering, building the client): failed, for sure."""
    code = _error_code(exc)
    # The code only: an error's message may quote an address
    log.warning("send not made", extra={"notice_id": notice.id, "error": code})
    return "failed", f"not sent: {code}", None


def _unexpected(notice: Notice, exc: BaseException) -> tuple[Decision, str | None, str | None]:
    """An error of the provider call none of the known kinds: ``failed`` only if it proves the send
    was not taken (the provider answered a 4xx, or botocore refused the request before sending);
    anything else may have come after the request went out, so ``unknown``, never sent again."""
    code = _error_code(exc)
    log.warning("send failed", extra={"notice_id": notice.id, "error": code})  # the code only, as above
    if refused_for_good(exc):
        return "failed", f"send error: {code}", None
    return "unknown", f"{UNEXPECTED_REASON} ({code})", None


def _planned(plans: Sequence[Plan]) -> str:
    """The batch's plan, for its mark (notices.mark.BatchPlan)."""
    return BatchPlan.of({p.entry.recipient.recipient_id: p.outcome for p in plans}).dump()


def _later_refs(later: Sequence[tuple[BatchEntry, int]]) -> str | None:
    """What a done mark keeps of the later entries, to queue them again: ids, never addresses."""
    return LaterEntries.of(later).dump() if later else None


def _result(done: Sequence[Done], duplicates: int) -> BatchResult:
    # A recipient is reported by the batch that settles them; one sent before stays with that batch
    tally = Counter(item.decision for item in done if "sent" not in item.plan.entry.settled)
    return BatchResult(
        tally["sent"],
        tally["suppressed"],
        tally["deferred"],
        tally["unreachable"],
        tally["failed"],
        duplicates,
        unknown=tally["unknown"],
    )


def _recipient_decision(decisions: Sequence[Decision], planned: Decision) -> Decision:
    # Sent on one channel is sent; else still waiting; else perhaps told (unknown) over surely not
    order: tuple[Decision, ...] = ("sent", "deferred", "unknown", "failed")
    for decision in order:
        if decision in decisions:
            return decision
    return planned


def batch_from_message(body: str) -> SendBatch:
    return SendBatch.model_validate(json.loads(body))
