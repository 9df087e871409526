"""The dispatcher: stream a notice's manifest from S3 into SendQueue batches, resumably.

It reads from the last checkpoint (a byte offset), writes batches of at most 50 recipients with
SendMessageBatch (10 batches a call), and checkpoints after every call, atomically with the
rows and bad rows it read. Near the end of its time it queues a continuation of itself, so a
manifest of millions of rows never dies at Lambda's 15-minute limit. A dry run reads the same
way but decides instead of sending. A recipient listed twice is dropped here and counted as a
duplicate: the dispatcher reads the manifest in one pass, so it alone sees every row (a
continuation rebuilds what it had seen from the rows before its checkpoint). A ``finalize``
message closes the notice once every dispatched recipient has a final decision.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from optout.notices.manifest import Cursor, format_of, lines, parse_line
from optout.notices.model import FINAL_STATUSES, BadRow, BatchEntry, ChannelName, Notice, Recipient, SendBatch, Status
from optout.notices.rules import address_keys, decide
from optout.notices.store import MAX_BAD_ROW_SAMPLES, CheckpointMoved, DispatchRead, NoticeStore
from optout.settings import DispatcherSettings
from optout.suppression_store import SuppressionStore

BATCH_MAX = 50
RECORDS_MAX = 98  # claims per batch transaction (100 items less the marker and the counts)
MESSAGES_PER_CALL = 10
STOP_WHEN_LEFT_MS = 60_000


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

    def bad_row(self, row: BadRow) -> None:
        self.bad_rows += 1
        if self.samples_left > 0:
            self.bad.append(row)
            self.samples_left -= 1

    def reset(self, since: int) -> None:
        self.since, self.rows, self.recipients, self.duplicates, self.bad_rows, self.bad = since, 0, 0, 0, 0, []


@dataclass
class Reading:
    """A manifest being read: where from, its bytes, and the recipients read before."""

    cursor: Cursor
    stream: Iterator[bytes]
    seen: SeenRecipients


class SeenRecipients:
    """The recipient ids read so far, as 16-byte digests: about 100 bytes of memory a recipient."""

    def __init__(self) -> None:
        self._digests: set[bytes] = set()

    def first_time(self, recipient_id: str) -> bool:
        digest = hashlib.blake2b(recipient_id.encode(), digest_size=16).digest()
        if digest in self._digests:
            return False
        self._digests.add(digest)
        return True

    def __len__(self) -> int:
        return len(self._digests)


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
    ) -> None:
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
        cursor, dispatched = self.notices.cursor(notice_id)
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
        seen = SeenRecipients()
        if cursor.line == 0:
            chunks = _chunks(body)
            head = next(chunks, b"")
            cursor.fmt = format_of(key, head)
            stream: Iterator[bytes] = _prepend(head, chunks)
        else:
            stream = _chunks(body)
            self._replay(bucket, key, cursor, seen)
        try:
            if notice.dry_run:
                return self._dry_run(notice, Reading(cursor, stream, seen), remaining_ms)
            return self._send(notice, Reading(cursor, stream, seen), remaining_ms)
        except CheckpointMoved:
            # Another dispatch of this notice (SQS delivers at least once) checkpointed first: it
            # carries on; what this one queued repeats its batches, which the sender sends once.
            return "superseded"

    def _replay(self, bucket: str, key: str, cursor: Cursor, seen: SeenRecipients) -> None:
        """A continuation: learn the recipients before the checkpoint by reading those rows again."""
        if cursor.offset == 0:
            return
        prefix = self.s3().get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{cursor.offset - 1}")["Body"]
        replay = Cursor(fmt=cursor.fmt)
        for raw, number, _ in lines(_chunks(prefix), replay):
            parsed = parse_line(raw, number, replay)
            if isinstance(parsed, Recipient):
                seen.first_time(parsed.recipient_id)

    def _recipients(self, reading: Reading, tally: Tally) -> Iterator[Recipient]:
        """The manifest's recipients from the cursor on, each once; the rest is counted in ``tally``."""
        cursor = reading.cursor
        for raw, number, offset in lines(reading.stream, cursor):
            parsed = parse_line(raw, number, cursor)
            cursor.line, cursor.offset = number, offset
            if parsed is None:
                continue
            tally.rows += 1
            if isinstance(parsed, BadRow):
                tally.bad_row(parsed)
                continue
            if not reading.seen.first_time(parsed.recipient_id):
                tally.duplicates += 1
                continue
            tally.recipients += 1
            yield parsed

    def _checkpoint(
        self, notice: Notice, cursor: Cursor, tally: Tally, done: bool, dry_run: DryRun | None = None
    ) -> None:
        self.notices.checkpoint(
            notice.id,
            cursor,
            DispatchRead(tally.rows, tally.recipients, tally.duplicates, tally.bad_rows, tally.bad),
            since=tally.since,
            done=done,
            now=self.now(),
            dry_run_result=dry_run.to_json() if dry_run is not None else None,
        )
        tally.reset(since=cursor.offset)

    def _tally(self, notice: Notice, cursor: Cursor) -> Tally:
        return Tally(since=cursor.offset, samples_left=max(0, MAX_BAD_ROW_SAMPLES - notice.bad_rows))

    def _finish(self, notice: Notice) -> None:
        """After the last checkpoint: a dry run is complete; a notice is sending, and will be closed."""
        if notice.dry_run:
            self.notices.set_status(notice.id, "complete", self.now(), only_from=("dispatching",))
            return
        self.notices.set_status(notice.id, "sending", self.now(), only_from=("dispatching",))
        self.requeue({"notice_id": notice.id, "action": "finalize", "attempt": 0}, 2)

    def _continue_later(self, notice: Notice, remaining_ms: Callable[[], int]) -> bool:
        if remaining_ms() >= STOP_WHEN_LEFT_MS:
            return False
        # Whatever was read after the last checkpoint was not sent: the continuation reads it again.
        self.requeue({"notice_id": notice.id}, 0)
        return True

    def _send(self, notice: Notice, reading: Reading, remaining_ms: Callable[[], int]) -> str:
        cursor = reading.cursor
        width = len(notice.channels)
        batch: list[Recipient] = []
        messages: list[dict[str, Any]] = []
        tally = self._tally(notice, cursor)
        for recipient in self._recipients(reading, tally):
            batch.append(recipient)
            if len(batch) >= BATCH_MAX or (len(batch) + 1) * width > RECORDS_MAX:
                messages.append(self._message(notice, batch))
                batch = []
            if len(messages) >= MESSAGES_PER_CALL:
                self.send_batches(messages)
                messages = []
                self._checkpoint(notice, cursor, tally, done=False)
                if self._continue_later(notice, remaining_ms):
                    return "continued"
        if batch:
            messages.append(self._message(notice, batch))
        if messages:
            self.send_batches(messages)
        self._checkpoint(notice, cursor, tally, done=True)
        self._finish(notice)
        return "dispatched"

    def _message(self, notice: Notice, recipients: list[Recipient]) -> dict[str, Any]:
        # The batch id is where it starts in the manifest: the same rows always make the same batch.
        batch = SendBatch(
            notice_id=notice.id,
            batch=f"L{recipients[0].line}",
            entries=[BatchEntry(recipient=r) for r in recipients],
        )
        # Defaults left out: a third of the bytes, for SQS to carry and the sender to parse
        return batch.model_dump(mode="json", exclude_defaults=True)

    # --- dry run -------------------------------------------------------------------------

    def _dry_run(self, notice: Notice, reading: Reading, remaining_ms: Callable[[], int]) -> str:
        cursor = reading.cursor
        result = DryRun.from_json(notice.dry_run_result)
        chunk: list[Recipient] = []
        tally = self._tally(notice, cursor)
        for recipient in self._recipients(reading, tally):
            chunk.append(recipient)
            if len(chunk) >= BATCH_MAX:
                self._evaluate(notice, chunk, result)
                chunk = []
                if tally.recipients >= BATCH_MAX * MESSAGES_PER_CALL:
                    self._save_dry_run(notice, cursor, tally, result, done=False)
                    if self._continue_later(notice, remaining_ms):
                        return "continued"
        if chunk:
            self._evaluate(notice, chunk, result)
        self._save_dry_run(notice, cursor, tally, result, done=True)
        self._finish(notice)
        return "dry run complete"

    def _save_dry_run(self, notice: Notice, cursor: Cursor, tally: Tally, result: DryRun, done: bool) -> None:
        # The result so far and the checkpoint in one write: a retry never counts a row twice
        if tally.duplicates:
            result.recipients["duplicate"] += tally.duplicates
        self._checkpoint(notice, cursor, tally, done=done, dry_run=result)

    def _evaluate(self, notice: Notice, chunk: list[Recipient], result: DryRun) -> None:
        keys = address_keys(self.pepper(), ((recipient, notice.channels) for recipient in chunk))
        states = self.suppressions.get_many(list(dict.fromkeys(keys.values())))
        now = self.now()
        for recipient in chunk:
            channel_states = {ch: states.get(keys.get((recipient.recipient_id, ch), "")) for ch in notice.channels}
            outcome = decide(
                recipient, notice.topic, self.settings.optional_topics, notice.channels, notice.mode, channel_states,
                now, hold_optional_sms=notice.kind != "breach_alert", default_timezone=self.settings.default_timezone,
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
        url = f"{self.settings.links_base_url}/unsubscribe?token=SAMPLE"
        raw = render_email(
            notice,
            sample,
            self.settings.brand_name,
            self.settings.sender_address,
            url,
            url if optional else None,
            self.now(),
        )
        return {"mime": raw.decode("utf-8", "replace")[:20000]}

    # --- finalize ------------------------------------------------------------------------

    def finalize(self, notice_id: str, attempt: int) -> str:
        progress = self.notices.progress(notice_id)
        if progress.status in FINAL_STATUSES:
            return "already final"
        if progress.dispatched and progress.total is not None and progress.settled >= progress.total:
            notice = self.notices.get(notice_id)
            failed = notice.counts.recipients.get("failed", 0)
            status: Status = "complete_with_failures" if failed else "complete"
            self.notices.set_status(notice_id, status, self.now(), only_from=("sending", "dispatching"))
            return status
        self.requeue({"notice_id": notice_id, "action": "finalize", "attempt": attempt + 1}, min(60, 2 + 2 * attempt))
        return "waiting"


def _chunks(body: Any, size: int = 256 * 1024) -> Iterator[bytes]:
    if hasattr(body, "iter_chunks"):
        yield from body.iter_chunks(size)
    else:
        yield from body


def _prepend(head: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if head:
        yield head
    yield from rest
