"""The dispatcher: stream a notice's manifest from S3 into SendQueue batches, resumably.

It reads from the last checkpoint (a byte offset), writes batches of at most 50 recipients with
SendMessageBatch (10 batches a call), and checkpoints after every call, atomically with the
rows and bad rows it read. Near the end of its time it queues a continuation of itself, so a
manifest of millions of rows never dies at Lambda's 15-minute limit. A dry run reads the same
way but decides instead of sending. A ``finalize`` message closes the notice once every
dispatched recipient has a final decision.

One notice reaches an address once. The dispatcher reads the manifest in one pass, so it alone
sees every row, and it drops (see ``Dispatcher._classify``):

- a recipient id listed again: the whole row, counted as a duplicate recipient (the id already
  has its decision; its delivery records are the first listing's);
- a channel whose normalised address an earlier recipient has on that channel (one person under
  two ids): that channel only. It gets a delivery record with decision ``duplicate`` (recipient
  id, channel, address key; never the address) and counts as ``<channel>.duplicate``; the
  recipient keeps the channels whose address is new, and is decided on those by the sender. A
  recipient with no new address left is a duplicate recipient, with a record per channel.

It also counts people (a person is a recipient id), for the reach report (Notice.reach): each
id once, however many rows list it; an id listed only on bad rows (no usable address) is a person
without an address, unreachable, until a later row gives them one. A row kept for its one usable
channel (manifest.recipient) is counted with its warning.

What it has seen (ids, and addresses per channel) is a set of 8-byte keyed digests (SeenKeys),
saved beside the checkpoint in segments (NoticeStore.save_seen_segment) whenever it stops and
every SNAPSHOT_KEYS new digests: a continuation loads them and never reads the manifest before
its checkpoint again, except the rows since the last save after a crash (at most SNAPSHOT_KEYS
digests' worth).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import sys
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from optout.core.identity import address_key
from optout.core.settings import DispatcherSettings
from optout.notices.manifest import Cursor, format_of, lines, parse_line
from optout.notices.model import (
    FINAL_STATUSES,
    NEEDS_FOLLOW_UP,
    BadRow,
    BatchEntry,
    ChannelName,
    DeliveryRecord,
    Notice,
    People,
    Recipient,
    SendBatch,
    Status,
)
from optout.notices.public import PublicNoticeStore, from_notice
from optout.notices.rules import address_keys, address_of, decide_for
from optout.notices.store import (
    DUPLICATE_REASON,
    MAX_BAD_ROW_SAMPLES,
    SAMPLE_MIME_BYTES,
    CheckpointMoved,
    DispatchRead,
    NoticeStore,
)
from optout.suppression.store import SuppressionStore
from optout.unsubscribe.token import unsubscribe_url

log = logging.getLogger(__name__)
# Kinds whose free content may name the recipient ({{ name }}): their batches carry the name
NAMED_KINDS = ("product", "marketing")
BATCH_MAX = 50
RECORDS_MAX = 98  # claims per batch transaction (100 items less the marker and the counts)
MESSAGES_PER_CALL = 10
STOP_WHEN_LEFT_MS = 60_000
SNAPSHOT_KEYS = 1_000_000  # new seen digests that make a checkpoint save them (8 MB, 21 chunk items)
MAX_REASON = 110  # characters of a bad row's or warning's reason kept in its sample


@dataclass
class Tally:
    """What was read since the last checkpoint."""

    since: int  # the byte offset of the last checkpoint: a checkpoint from elsewhere stops this run
    samples_left: int  # bad-row samples the notice may still keep
    rows: int = 0
    recipients: int = 0
    duplicates: int = 0
    bad_rows: int = 0
    bad: list[BadRow] = field(default_factory=list)  # samples of them
    warnings: int = 0  # rows kept with a warning
    warned: list[BadRow] = field(default_factory=list)  # samples of them, within the same budget
    people: int = 0  # persons (recipient ids) read for the first time
    without_address: int = 0  # a net change: persons first read on a bad row, less those listed again on a good one
    shared: int = 0  # persons every address of whom was listed before
    channel_duplicates: Counter[str] = field(default_factory=Counter)  # duplicate channels, by channel
    records: list[DeliveryRecord] = field(default_factory=list)  # theirs, to write before the checkpoint

    def bad_row(self, row: BadRow) -> None:
        self.bad_rows += 1
        self._sample(self.bad, row)

    def warning(self, line: int, reason: str) -> None:
        self.warnings += 1
        self._sample(self.warned, BadRow(line=line, reason=reason))

    def _sample(self, samples: list[BadRow], row: BadRow) -> None:
        if self.samples_left > 0:
            if len(row.reason) > MAX_REASON:  # the samples' room in the notice item is bounded (NOTICE_GROWTH)
                row = row.model_copy(update={"reason": row.reason[: MAX_REASON - 1] + "…"})
            samples.append(row)
            self.samples_left -= 1

    def reset(self, since: int) -> None:
        self.since, self.rows, self.recipients, self.duplicates, self.bad_rows, self.bad = since, 0, 0, 0, 0, []
        self.warnings, self.warned, self.people, self.without_address, self.shared = 0, [], 0, 0, 0
        self.channel_duplicates, self.records = Counter(), []


@dataclass
class Reading:
    """A manifest being read: where from, its bytes, and what was read before."""

    cursor: Cursor
    stream: Iterator[bytes]
    seen: SeenKeys


BUCKET_BITS = 17
_SHIFT = 64 - BUCKET_BITS
_LITTLE = sys.byteorder == "little"


class SeenKeys:
    """The recipient ids and addresses a notice's dispatch has read, as 8-byte digests.

    A digest is BLAKE2b-64 keyed with a secret derived from the pepper and the notice id: the
    stored set can neither be read back nor tested for an address without the pepper, and two
    values that collide in one notice do not collide in another. Exact otherwise; a collision
    would drop a real recipient as a duplicate (visibly: it is recorded ``duplicate``), with a
    chance of about n^2 / 2^65: 1.6e-5 for the 24 million digests of 8 million recipients with
    an email and a phone.

    Digests live in 2^17 buckets (bytearrays, by their top 17 bits), searched in C: about 11
    bytes of memory a digest, so 8 million recipients (ids, emails, phones: 24 million digests)
    take about 260 MB and a lookup scans about 1.5 KB. The digests added since the last save
    also wait in ``pending`` (8 bytes each) until take_pending writes them out as a segment.
    """

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._buckets: list[bytearray | None] = [None] * (1 << BUCKET_BITS)
        self._pending = bytearray()
        self._count = 0

    @classmethod
    def for_notice(cls, pepper: bytes, notice_id: str) -> SeenKeys:
        return cls(hmac.new(pepper, f"seen:{notice_id}".encode(), hashlib.sha256).digest())

    def digest(self, kind: str, value: str) -> bytes:
        """``kind``: "id" for a recipient id, else the channel of an address."""
        return hashlib.blake2b(f"{kind}:{value}".encode(), key=self._secret, digest_size=8).digest()

    def __contains__(self, digest: bytes) -> bool:
        bucket = self._buckets[int.from_bytes(digest, "little") >> _SHIFT]
        if bucket is None:
            return False
        at = bucket.find(digest)
        while at >= 0 and at & 7:  # a match across two digests: look on
            at = bucket.find(digest, at + 1)
        return at >= 0

    def add(self, digest: bytes) -> None:
        """Add a digest not in the set (the caller checked)."""
        index = int.from_bytes(digest, "little") >> _SHIFT
        bucket = self._buckets[index]
        if bucket is None:
            self._buckets[index] = bytearray(digest)
        else:
            bucket += digest
        self._pending += digest
        self._count += 1

    def __len__(self) -> int:
        return self._count

    @property
    def pending(self) -> int:
        return len(self._pending) // 8

    def take_pending(self) -> bytes:
        """The digests added since the last call, sorted (as little-endian integers), and forget them."""
        values = _u64(bytes(self._pending))
        self._pending = bytearray()
        ordered = array("Q", sorted(values))
        if not _LITTLE:
            ordered.byteswap()
        return ordered.tobytes()

    def load(self, segment: bytes) -> None:
        """Add a saved segment (sorted, as take_pending gave it): no digest in it is in the set yet."""
        values = _u64(segment)
        count = len(values)
        view = memoryview(segment)
        if count < len(self._buckets) // 2:
            for start in range(0, len(segment), 8):
                self._append(int.from_bytes(view[start : start + 8], "little") >> _SHIFT, view[start : start + 8])
        else:  # sorted: each bucket's digests are one slice, found by bisection
            low = 0
            for index in range(len(self._buckets)):
                high = bisect_left(values, (index + 1) << _SHIFT, low) if index + 1 < len(self._buckets) else count
                if high > low:
                    self._append(index, view[low * 8 : high * 8])
                    low = high
        self._count += count

    def _append(self, index: int, digests: memoryview) -> None:
        bucket = self._buckets[index]
        if bucket is None:
            self._buckets[index] = bytearray(digests)
        else:
            bucket += digests

    def memory(self) -> int:
        """Bytes the buckets and pending digests take (for the bench)."""
        return (
            sys.getsizeof(self._buckets)
            + sys.getsizeof(self._pending)
            + sum(sys.getsizeof(b) for b in self._buckets if b is not None)
        )


def _u64(data: bytes) -> array[int]:
    values = array("Q")
    values.frombytes(data)
    if not _LITTLE:
        values.byteswap()
    return values


@dataclass(frozen=True)
class Entry:
    """A recipient to decide: ``only`` its channels with a new address, if some were duplicates."""

    recipient: Recipient
    only: list[ChannelName] | None = None


@dataclass
class DryRun:
    """Per channel: how many would be sent, suppressed (by reason), deferred, unreachable."""

    channels: dict[str, Counter[str]] = field(default_factory=dict)
    reasons: dict[str, Counter[str]] = field(default_factory=dict)
    recipients: Counter[str] = field(default_factory=Counter)
    samples: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "channels": {c: dict(v) for c, v in self.channels.items()},
            "reasons": {c: dict(v) for c, v in self.reasons.items()},
            "recipients": dict(self.recipients),
            "samples": self.samples,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> DryRun:
        data = data or {}
        return cls(
            channels={c: Counter(v) for c, v in data.get("channels", {}).items()},
            reasons={c: Counter(v) for c, v in data.get("reasons", {}).items()},
            recipients=Counter(data.get("recipients", {})),
            samples=dict(data.get("samples", {})),
        )


class Dispatcher:
    def __init__(
        self,
        settings: DispatcherSettings,
        notices: NoticeStore,
        suppressions: SuppressionStore,
        s3: Callable[[], Any],
        send_batches: Callable[[list[dict[str, Any]]], None],
        requeue: Callable[[dict[str, Any], int], None],
        pepper: Callable[[], bytes],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        public: PublicNoticeStore | None = None,
    ) -> None:
        self.public = public  # where a breach alert publishes for the people it could not reach
        self.settings = settings
        self.notices = notices
        self.suppressions = suppressions
        self.s3 = s3
        self.send_batches = send_batches
        self.requeue = requeue
        self.pepper = pepper
        self.now = now

    def handle(self, message: dict[str, Any], remaining_ms: Callable[[], int]) -> str:
        notice_id = str(message["notice_id"])
        if message.get("action") == "finalize":
            return self.finalize(notice_id, int(message.get("attempt", 0)))
        return self.dispatch(notice_id, remaining_ms)

    # --- dispatch ----------------------------------------------------------------------

    def dispatch(self, notice_id: str, remaining_ms: Callable[[], int]) -> str:
        notice = self.notices.get(notice_id)
        if notice.status in FINAL_STATUSES:
            return "already final"
        cursor, dispatched = self.notices.cursor(notice_id)  # with the seen set saved with it
        if dispatched:  # read to the end before: only what followed its last checkpoint may be missing
            self._finish(notice)
            return "already dispatched"
        self.notices.set_status(notice_id, "dispatching", self.now(), only_from=("queued", "dispatching"))
        bucket, key = notice.manifest.removeprefix("s3://").split("/", 1)
        try:
            body = self.s3().get_object(Bucket=bucket, Key=key, Range=f"bytes={cursor.offset}-")["Body"]
        except Exception as exc:  # a missing or unreadable manifest ends the notice, with the reason
            code = getattr(exc, "response", {}).get("Error", {}).get("Code") or type(exc).__name__
            if code in ("InvalidRange",) and cursor.offset > 0:
                body = iter(())
            else:
                self.notices.set_status(notice_id, "failed", self.now(), error=f"cannot read the manifest: {code}")
                return "failed"
        seen = SeenKeys.for_notice(self.pepper(), notice.id)
        if cursor.line == 0:
            chunks = _chunks(body)
            head = next(chunks, b"")
            cursor.fmt = format_of(key, head)
            stream: Iterator[bytes] = _prepend(head, chunks)
        else:
            stream = _chunks(body)
            self._restore(notice, bucket, key, cursor, seen)
        try:
            if notice.dry_run:
                return self._dry_run(notice, Reading(cursor, stream, seen), remaining_ms)
            return self._send(notice, Reading(cursor, stream, seen), remaining_ms)
        except CheckpointMoved:
            # Another dispatch of this notice (SQS delivers at least once) checkpointed first: it
            # carries on; what this one queued repeats its batches, which the sender sends once.
            return "superseded"

    def _restore(self, notice: Notice, bucket: str, key: str, cursor: Cursor, seen: SeenKeys) -> None:
        """A continuation: load the seen set saved with the checkpoints, then read again only the
        rows between its last save and the checkpoint (none, unless a dispatch died between them)."""
        saved = cursor.saved
        for segment in saved.segments:
            seen.load(self.notices.load_seen_segment(notice.id, segment))
        if saved.offset >= cursor.offset:
            return
        if saved.offset == 0:
            replay = Cursor(fmt=cursor.fmt)
        else:
            replay = Cursor(offset=saved.offset, line=saved.line, header=cursor.header, fmt=cursor.fmt)
        rows = self.s3().get_object(Bucket=bucket, Key=key, Range=f"bytes={saved.offset}-{cursor.offset - 1}")["Body"]
        for raw, number, _ in lines(_chunks(rows), replay):
            parsed = parse_line(raw, number, replay)
            if isinstance(parsed, Recipient):
                self._classify(notice, parsed, seen)
            elif isinstance(parsed, BadRow):
                self._without_address(parsed, seen)

    def _classify(self, notice: Notice, recipient: Recipient, seen: SeenKeys) -> tuple[str, list[ChannelName]]:
        """Whether the recipient is "new", "duplicate" (its id, or every address it has on the
        notice's channels, was read before) or "partial" (some channels' addresses were), and the
        channels whose address was read before; adds what is new to ``seen``.

        Two recipient ids with one email and different phones: the second keeps its phone. Each
        address is sent the notice once, by the first recipient that lists it on a channel, and
        no address is dropped unsent: the phone may be another person's (a family sharing an
        email), and for a breach alert it is the only way to reach them. The email channel of the
        second is recorded ``duplicate`` and the recipient gets one final decision, from the
        channels it keeps. (In first_available mode the first recipient may end up using
        another channel, by the state of its addresses at send time: the address stays theirs,
        and the second recipient's fallback to it is a duplicate.)

        A repeated id is dropped whole, addresses included: the id already has its decision (the
        kind is "duplicate", with no channel repeated).
        """
        id_digest = seen.digest("id", recipient.recipient_id)
        if id_digest in seen:
            return "duplicate", []
        seen.add(id_digest)
        new: list[ChannelName] = []
        repeated: list[ChannelName] = []
        for channel in notice.channels:
            address = address_of(recipient, channel)
            if address is None:
                continue
            digest = seen.digest(channel, address)
            if digest in seen:
                repeated.append(channel)
            else:
                seen.add(digest)
                new.append(channel)
        if not repeated:
            return "new", []
        return ("partial" if new else "duplicate"), repeated

    def _without_address(self, row: BadRow, seen: SeenKeys) -> bool:
        """Whether a bad row lists a person for the first time (one with no usable address so far);
        adds them to ``seen`` (as "badid", so that a good row listing them later is still read)."""
        if row.recipient_id is None or seen.digest("id", row.recipient_id) in seen:
            return False
        digest = seen.digest("badid", row.recipient_id)
        if digest in seen:
            return False
        seen.add(digest)
        return True

    def _recipients(self, notice: Notice, reading: Reading, tally: Tally) -> Iterator[Entry]:
        """The manifest's recipients from the cursor on, each once and each address once; the rest
        is counted in ``tally`` (with the records of duplicate channels, for a notice that sends).

        People are counted once each (a person is a recipient id): a person listed only on bad
        rows has no usable address (unreachable); one whose every address was listed before
        shares it with an earlier recipient.
        """
        cursor = reading.cursor
        pepper = self.pepper()
        seen = reading.seen
        # No bad row read yet, none listed a person: a good row need not be looked up as one (most manifests)
        bad_ids = notice.bad_rows > 0
        for raw, number, offset in lines(reading.stream, cursor):
            parsed = parse_line(raw, number, cursor)
            cursor.line, cursor.offset = number, offset
            if parsed is None:
                continue
            tally.rows += 1
            if isinstance(parsed, BadRow):
                tally.bad_row(parsed)
                bad_ids = bad_ids or parsed.recipient_id is not None
                if self._without_address(parsed, seen):
                    tally.people += 1
                    tally.without_address += 1
                continue
            kind, repeated = self._classify(notice, parsed, seen)
            for channel in repeated:
                tally.channel_duplicates[channel] += 1
                if not notice.dry_run:
                    tally.records.append(self._duplicate_record(notice, parsed, channel, pepper))
            if kind == "duplicate" and not repeated:  # the id listed again: the row is dropped
                tally.duplicates += 1
                continue
            if parsed.warning:
                tally.warning(number, parsed.warning)
            if bad_ids and seen.digest("badid", parsed.recipient_id) in seen:  # counted, as without an address
                tally.without_address -= 1
            else:
                tally.people += 1
            if kind == "duplicate":
                tally.shared += 1
                tally.duplicates += 1
                continue
            tally.recipients += 1
            if kind == "partial":
                yield Entry(parsed, [ch for ch in notice.channels if ch not in repeated])
            else:
                yield Entry(parsed)

    def _duplicate_record(
        self, notice: Notice, recipient: Recipient, channel: ChannelName, pepper: bytes
    ) -> DeliveryRecord:
        return DeliveryRecord(
            notice_id=notice.id,
            recipient_id=recipient.recipient_id,
            channel=channel,
            address_key=address_key(pepper, channel, address_of(recipient, channel) or ""),
            decision="duplicate",
            reason=DUPLICATE_REASON,
            at=self.now(),
        )

    def _checkpoint(
        self,
        notice: Notice,
        reading: Reading,
        tally: Tally,
        done: bool,
        dry_run: DryRun | None = None,
        stopping: bool = False,
    ) -> None:
        cursor, seen = reading.cursor, reading.seen
        if tally.records:  # before the checkpoint past their rows: a retry writes the same again
            self.notices.record_duplicates(tally.records)
        saved = None
        if not done and (stopping or seen.pending >= SNAPSHOT_KEYS):
            # What the continuation (or a retry) will need, so that it reads no row twice
            segment = self.notices.save_seen_segment(notice.id, seen.take_pending(), cursor.offset)
            saved = (segment, cursor.offset, cursor.line)
        self.notices.checkpoint(
            notice.id,
            cursor,
            DispatchRead(
                tally.rows,
                tally.recipients,
                tally.duplicates,
                tally.bad_rows,
                tally.bad,
                dict(tally.channel_duplicates),
                tally.warnings,
                tally.warned,
                People(listed=tally.people, without_address=tally.without_address, shared=tally.shared),
            ),
            since=tally.since,
            done=done,
            now=self.now(),
            dry_run_result=dry_run.to_json() if dry_run is not None else None,
            seen=saved,
        )
        tally.reset(since=cursor.offset)

    def _tally(self, notice: Notice, cursor: Cursor) -> Tally:
        return Tally(since=cursor.offset, samples_left=max(0, MAX_BAD_ROW_SAMPLES - notice.bad_rows - notice.warnings))

    def _finish(self, notice: Notice) -> None:
        """After the last checkpoint: a dry run is complete; a notice is sending, and will be closed."""
        if notice.dry_run:
            self.notices.set_status(notice.id, "complete", self.now(), only_from=("dispatching",))
            return
        self.notices.set_status(notice.id, "sending", self.now(), only_from=("dispatching",))
        self.requeue({"notice_id": notice.id, "action": "finalize", "attempt": 0}, 2)

    def _continue_later(self, notice: Notice) -> str:
        # Whatever was read after the last checkpoint was not sent: the continuation reads it again.
        self.requeue({"notice_id": notice.id}, 0)
        return "continued"

    def _send(self, notice: Notice, reading: Reading, remaining_ms: Callable[[], int]) -> str:
        width = len(notice.channels)
        batch: list[Entry] = []
        messages: list[dict[str, Any]] = []
        tally = self._tally(notice, reading.cursor)
        for entry in self._recipients(notice, reading, tally):
            batch.append(entry)
            if len(batch) >= BATCH_MAX or (len(batch) + 1) * width > RECORDS_MAX:
                messages.append(self._message(notice, batch))
                batch = []
            if len(messages) >= MESSAGES_PER_CALL:
                self.send_batches(messages)
                messages = []
                stopping = remaining_ms() < STOP_WHEN_LEFT_MS
                self._checkpoint(notice, reading, tally, done=False, stopping=stopping)
                if stopping:
                    return self._continue_later(notice)
        if batch:
            messages.append(self._message(notice, batch))
        if messages:
            self.send_batches(messages)
        self._checkpoint(notice, reading, tally, done=True)
        self._finish(notice)
        return "dispatched"

    def _message(self, notice: Notice, entries: Sequence[Entry]) -> dict[str, Any]:
        # The batch id is where it starts in the manifest: the same rows always make the same batch.
        batch = SendBatch(
            notice_id=notice.id,
            batch=f"L{entries[0].recipient.line}",
            entries=[BatchEntry(recipient=e.recipient, only=e.only) for e in entries],
        )
        # Defaults left out (a third of the bytes, for SQS to carry and the sender to parse), and
        # what the sender never reads: the manifest line, and the name where no content can use it
        unused = {"line"} if notice.kind in NAMED_KINDS else {"line", "name"}
        exclude = {"entries": {"__all__": {"recipient": unused}}}
        return batch.model_dump(mode="json", exclude_defaults=True, exclude=exclude)

    # --- dry run -------------------------------------------------------------------------

    def _dry_run(self, notice: Notice, reading: Reading, remaining_ms: Callable[[], int]) -> str:
        result = DryRun.from_json(notice.dry_run_result)
        chunk: list[Entry] = []
        tally = self._tally(notice, reading.cursor)
        for entry in self._recipients(notice, reading, tally):
            chunk.append(entry)
            if len(chunk) >= BATCH_MAX:
                self._evaluate(notice, chunk, result)
                chunk = []
                if tally.recipients >= BATCH_MAX * MESSAGES_PER_CALL:
                    stopping = remaining_ms() < STOP_WHEN_LEFT_MS
                    self._save_dry_run(notice, reading, tally, result, done=False, stopping=stopping)
                    if stopping:
                        return self._continue_later(notice)
        if chunk:
            self._evaluate(notice, chunk, result)
        self._save_dry_run(notice, reading, tally, result, done=True)
        self._finish(notice)
        return "dry run complete"

    def _save_dry_run(
        self, notice: Notice, reading: Reading, tally: Tally, result: DryRun, done: bool, stopping: bool = False
    ) -> None:
        # The result so far and the checkpoint in one write: a retry never counts a row twice
        if tally.duplicates:
            result.recipients["duplicate"] += tally.duplicates
        for channel, amount in tally.channel_duplicates.items():
            result.channels.setdefault(channel, Counter())["duplicate"] += amount
        self._checkpoint(notice, reading, tally, done=done, dry_run=result, stopping=stopping)

    def _evaluate(self, notice: Notice, chunk: list[Entry], result: DryRun) -> None:
        keys = address_keys(self.pepper(), ((e.recipient, e.only or notice.channels) for e in chunk))
        states = self.suppressions.get_many(keys.to_read())  # legacy keys too (rules.AddressKeys): one read
        now = self.now()
        for entry in chunk:
            recipient, channels = entry.recipient, entry.only or notice.channels
            channel_states = {ch: keys.state((recipient.recipient_id, ch), states) for ch in channels}
            outcome = decide_for(
                notice, recipient, channels, channel_states, now,
                self.settings.optional_topics, self.settings.default_timezone,
            )  # fmt: skip
            result.recipients[outcome.decision] += 1
            for channel_outcome in outcome.channels:
                result.channels.setdefault(channel_outcome.channel, Counter())[channel_outcome.decision] += 1
                if channel_outcome.reason:
                    result.reasons.setdefault(channel_outcome.channel, Counter())[channel_outcome.reason] += 1
                if channel_outcome.decision == "sent" and channel_outcome.channel not in result.samples:
                    result.samples[channel_outcome.channel] = self._sample(notice, recipient, channel_outcome.channel)

    def _sample(self, notice: Notice, recipient: Recipient, channel: ChannelName) -> dict[str, Any]:
        from optout.notices.render import render_email, render_sms, sms_segments  # dry runs only: off the cold path

        optional = notice.topic in self.settings.optional_topics
        if channel == "sms":
            text = render_sms(notice, recipient, self.settings.brand_name, optional)
            return {"text": text, **sms_segments(text)}
        sample = recipient.model_copy(update={"email": "recipient@example.invalid", "name": None})
        url = unsubscribe_url(self.settings.links_base_url, "SAMPLE")
        raw = render_email(
            notice,
            sample,
            self.settings.brand_name,
            self.settings.sender_address,
            url,
            url if optional else None,
            self.now(),
        )
        # cut in bytes, not characters: it is stored in the notice's item (NoticeStore: NOTICE_GROWTH)
        return {"mime": raw[:SAMPLE_MIME_BYTES].decode("utf-8", "ignore")}

    # --- finalize ------------------------------------------------------------------------

    def finalize(self, notice_id: str, attempt: int) -> str:
        progress = self.notices.progress(notice_id)
        if progress.status in FINAL_STATUSES:
            return "already final"
        if progress.dispatched and progress.total is not None and progress.settled >= progress.total:
            notice = self.notices.get(notice_id)
            follow_up = sum(notice.counts.recipients.get(d, 0) for d in NEEDS_FOLLOW_UP)
            status: Status = "complete_with_failures" if follow_up else "complete"
            self._publish_for_unreachable(notice)  # first: a failure here retries the finalize
            if self.notices.set_status(notice_id, status, self.now(), only_from=("sending", "dispatching")):
                self.delete_manifest(notice)
            return status
        self.requeue({"notice_id": notice_id, "action": "finalize", "attempt": attempt + 1}, min(60, 2 + 2 * attempt))
        return "waiting"

    def _publish_for_unreachable(self, notice: Notice) -> None:
        """Art. 34(3)(c): a breach alert that asked for it (``publish_if_unreachable``) and could not
        reach everyone publishes its public communication (GET /notices). Publishing is idempotent."""
        reach = notice.reach()
        if (
            notice.kind != "breach_alert"
            or notice.dry_run
            or not notice.variables.get("publish_if_unreachable")
            or self.public is None
            or not reach
            or not reach["unreachable"]
        ):
            return
        published = self.public.publish(from_notice(notice, self.now()))
        log.info("breach alert published for the unreachable", extra={"notice_id": notice.id,
                 "unreachable": reach["unreachable"], "published_at": published.published_at.isoformat()})  # fmt: skip

    def delete_manifest(self, notice: Notice) -> None:
        """A complete notice needs its manifest no more: delete every version of it (retention, README).

        Each current version is deleted by its id until none is left, so no older version comes back
        as current. Best effort: the bucket's lifecycle rule is the backstop. A dry run keeps its
        manifest, for the notice it tries out.
        """
        if notice.dry_run:
            return
        bucket, key = notice.manifest.removeprefix("s3://").split("/", 1)
        s3 = self.s3()
        try:
            for _ in range(MANIFEST_VERSIONS_DELETED):
                try:
                    version = s3.head_object(Bucket=bucket, Key=key).get("VersionId")
                except Exception as exc:
                    if getattr(exc, "response", {}).get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                        return  # gone (or a delete marker on top)
                    raise
                s3.delete_object(Bucket=bucket, Key=key, **({"VersionId": version} if version else {}))
                if not version or version == "null":
                    return
        except Exception:
            log.warning("cannot delete a complete notice's manifest", exc_info=True, extra={"notice_id": notice.id})


MANIFEST_VERSIONS_DELETED = 20  # versions of one manifest key deleted on completion; the lifecycle rule does the rest


def _chunks(body: Any, size: int = 256 * 1024) -> Iterator[bytes]:
    if hasattr(body, "iter_chunks"):
        yield from body.iter_chunks(size)
    else:
        yield from body


def _prepend(head: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if head:
        yield head
    yield from rest
