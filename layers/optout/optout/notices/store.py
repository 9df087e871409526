"""The NoticesTable: notices, idempotency keys and one delivery record per recipient and channel.

Items (pk / sk):

    notice#<id> / notice                        the notice: a JSON document plus atomic counters
    notice#<id> / batch#<batch>                 a send batch's mark: taken (with its plan), then done
    notice#<id> / delivery#<recipient>#<channel> a delivery record, written once with its final decision
    idem#<key>  / idem                          an Idempotency-Key and the hash of its request
    seen#<id>#<segment>#<n> / seen              a chunk of the dispatcher's seen set (sorted 8-byte digests)

A send batch is marked taken before anything of it is sent, so a redelivered batch never sends
twice; its records and counts are written with the mark set done, in one transaction. While it is
sent, its mark records progress per provider call (one bulk mail, or one mail or text): the call
in flight (``inflight``, written before the call goes out; the first rides on the mark itself) and
each finished call's results (``call_<k>``, written with the next call's ``inflight`` in one
UpdateItem; the last call's results are the batch's records). An interrupted batch thus shows
which recipients were answered, which one call may or may not have gone out, and which were never
tried.

A recipient listed twice in a manifest, or at an address an earlier recipient has on that channel,
is dropped by the dispatcher, which reads the manifest in one pass: an address duplicate gets a
delivery record with decision ``duplicate`` (its recipient id, channel and address key, never the
address).

The dispatcher's seen set (the digests of the ids and addresses read so far) is saved beside its
checkpoint, append-only, as segments: each the digests added since the previous one, sorted, in
chunks of at most SEEN_CHUNK_KEYS digests (384 KB, under DynamoDB's 400 KB item limit), each chunk
its own partition key so that writing and reading a large set spreads over partitions. A segment
counts only once a checkpoint names it (the notice's ``seen_segments``, with ``seen_offset``: the
byte the segments cover up to): a dispatch that lost its checkpoint race leaves chunks no
checkpoint names, which are never read.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from optout.core.dynamo import (
    BatchUnfinished,
    DynamoTable,
    batch_get,
    batch_write,
    from_item,
    iso_lower_bound,
    page,
    pages,
    to_item,
)
from optout.core.errors import InvalidFields, OptoutError
from optout.notices.manifest import Cursor, SeenSegment, SeenState
from optout.notices.model import BadRow, ChannelName, Counts, Decision, DeliveryRecord, Notice, People, Status

log = logging.getLogger(__name__)
NOTICE_SK = "notice"
DELIVERY_PREFIX = "delivery#"
BATCH_PREFIX = "batch#"
MAX_BAD_ROW_SAMPLES = 1000
SEEN_PREFIX = "seen#"
SEEN_CHUNK_KEYS = 48_000  # 8-byte digests a chunk item: 384,000 bytes
DUPLICATE_REASON = "an earlier recipient in the manifest has this address on this channel"
ITEM_LIMIT = 400 * 1024  # DynamoDB's item limit: every attribute's name and value, in UTF-8 bytes
SAMPLE_MIME_BYTES = 20_000  # a dry run's sample mail, as stored with its result
# A notice item grows as it is dispatched: up to MAX_BAD_ROW_SAMPLES samples of bad rows and warnings
# together (at most about 140 bytes each: dispatch.MAX_REASON), a dry run's result (its sample mail,
# at most twice SAMPLE_MIME_BYTES JSON-escaped, and its sample text), the CSV header, counters and
# seen-set segments. Its first write leaves them room.
NOTICE_GROWTH = 200 * 1024
NOTICE_CREATE_LIMIT = ITEM_LIMIT - NOTICE_GROWTH
_STATIC = ("kind", "topic", "channels", "mode", "variables", "manifest", "dry_run", "created_by", "created_at")


class NoticeNotFound(OptoutError):
    code = "not_found"


class NoticesUnavailable(OptoutError):
    code = "try_again"


class CallResult(NamedTuple):
    """What one provider call did for one of its recipients on one channel."""

    recipient_id: str
    channel: ChannelName
    decision: Decision
    reason: str | None = None
    message_id: str | None = None


@dataclass(frozen=True)
class SendProgress:
    """What a taken batch's mark says of its provider calls."""

    step: int  # the call in flight (0: the first), as the mark last recorded it
    results: Mapping[tuple[str, str], tuple[CallResult, datetime]]  # answered calls, by (recipient, channel)
    inflight: frozenset[tuple[str, str]]  # the (recipient, channel) of the call that may have gone out


class BatchTaken(Exception):
    """This send batch was taken before: the redelivery only records what was left."""

    def __init__(
        self,
        batch: str,
        done: bool,
        planned: str | None,
        later: str | None = None,
        owner: str | None = None,
        lease_until: datetime | None = None,
        progress: SendProgress | None = None,
    ) -> None:
        super().__init__(f"batch {batch} was taken before")
        self.done = done
        self.planned = planned
        self.later = later
        self.owner = owner  # the invocation that took it
        self.lease_until = lease_until  # until when that invocation may still be sending it
        self.progress = progress  # None: a mark written before progress was recorded per call

    def leased(self, now: datetime) -> bool:
        """Whether the invocation that took the batch may still be sending it."""
        return not self.done and self.lease_until is not None and now < self.lease_until


class CheckpointMoved(Exception):
    """Another dispatch of this notice checkpointed since this one read its cursor."""


@dataclass(frozen=True)
class DispatchRead:
    """What dispatch read since its last checkpoint."""

    rows: int
    recipients: int
    duplicates: int
    bad_rows: int
    samples: Sequence[BadRow]  # of the bad rows, as many as the notice may still keep
    channel_duplicates: Mapping[str, int] = field(default_factory=dict)  # duplicate channels, by channel
    warnings: int = 0  # rows kept for their usable channels, with a warning
    warning_samples: Sequence[BadRow] = ()  # of them, within the same budget as ``samples``
    people: People = field(default_factory=People)  # persons first read (without_address: a net change)


class IdempotencyConflict(OptoutError):
    code = "idempotency_conflict"


def _pk(notice_id: str) -> str:
    return f"notice#{notice_id}"


def _key(pk: str, sk: str) -> dict[str, Any]:
    return to_item({"pk": pk, "sk": sk})


def _counter(name: str) -> str:
    return name.replace(".", "__")


@dataclass(frozen=True)
class Progress:
    """What the counts written with each batch add up to: enough to tell whether the notice is finished."""

    status: Status
    total: int | None
    dispatched: bool
    settled: int  # recipients with a final decision


class NoticeStore(DynamoTable):
    """``retention_days``: delivery evidence (records and send-batch marks) carries ``expires_at``,
    that many days after it was written, and DynamoDB's TTL deletes it then (EvidenceRetentionDays)."""

    def __init__(self, table: str, client: Any = None, retention_days: int | None = None) -> None:
        super().__init__(table, client)
        self.retention = timedelta(days=retention_days) if retention_days else None

    def _expires(self, at: datetime) -> int | None:
        return int((at + self.retention).timestamp()) if self.retention is not None else None

    # --- notices ---------------------------------------------------------------------

    def create(self, notice: Notice, idempotency_key: str | None, request_hash: str) -> Notice:
        """Store a new notice (and its Idempotency-Key), or return the one the key already made.

        A notice too large for its item is refused with 422 naming its largest field: DynamoDB would
        refuse it whole (400 KB), and a field's characters say nothing of its bytes (a CJK character
        is 3 bytes stored).
        """
        doc = notice.model_dump(mode="json", include=set(_STATIC))
        plain: dict[str, Any] = {
            "pk": _pk(notice.id),
            "sk": NOTICE_SK,
            "doc": json.dumps(doc, ensure_ascii=False),  # UTF-8 as stored: a \u escape is 6 bytes
            "status": notice.status,
            "updated_at": notice.updated_at.isoformat(),
            "rows_read": 0,
            "bad_rows": 0,
            "offset": 0,
            "line": 0,
            "dispatched": False,
        }
        if notice.discovered_at is not None:
            plain["discovered_at"] = notice.discovered_at.isoformat()
        # the by_created index (keys only: the notice's counters never write to it)
        plain[LISTED_ATTRIBUTE], plain["created_at"] = NOTICE_SK, notice.created_at.isoformat()
        item = to_item(plain)
        size = item_bytes(item)
        if size > NOTICE_CREATE_LIMIT:
            path, field_size = _largest_field(doc)
            message = (
                f"too large to store: {field_size} bytes in UTF-8, and the notice would take {size} bytes,"
                f" over the {NOTICE_CREATE_LIMIT} a notice may take"
            )
            raise InvalidFields([(path, message)])
        puts: list[Any] = [
            {"Put": {"TableName": self.table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}}
        ]
        if idempotency_key is not None:
            idem = to_item(
                {"pk": f"idem#{idempotency_key}", "sk": "idem", "notice_id": notice.id, "hash": request_hash}
            )
            puts.append(
                {"Put": {"TableName": self.table, "Item": idem, "ConditionExpression": "attribute_not_exists(pk)"}}
            )
        try:
            self.client.transact_write_items(TransactItems=puts)
        except self.client.exceptions.TransactionCanceledException as exc:
            if idempotency_key is None:
                raise
            found = self.client.get_item(
                TableName=self.table, Key=_key(f"idem#{idempotency_key}", "idem"), ConsistentRead=True
            ).get("Item")
            if found is None:
                raise
            existing = from_item(found)
            if existing["hash"] != request_hash:
                raise IdempotencyConflict("this Idempotency-Key was used with a different request") from exc
            return self.get(existing["notice_id"])
        return notice

    def get(self, notice_id: str) -> Notice:
        item = self.client.get_item(TableName=self.table, Key=_key(_pk(notice_id), NOTICE_SK), ConsistentRead=True).get(
            "Item"
        )
        if item is None:
            raise NoticeNotFound("no notice with this id")
        return _notice(notice_id, from_item(item))

    def listed(
        self, since: datetime | None, limit: int, start: dict[str, Any] | None = None
    ) -> tuple[list[Notice], dict[str, Any] | None]:
        """Notices created at or after ``since``, newest first, a page at a time (the by_created index,
        then one BatchGetItem of the notices themselves). Returns the page and the key to go on from."""
        condition, values = "#listed = :listed", {":listed": NOTICE_SK}
        if since is not None:
            condition += " AND created_at >= :since"
            values[":since"] = iso_lower_bound(since)
        items, last = page(
            self.client,
            "query",
            start,
            TableName=self.table,
            IndexName=BY_CREATED_INDEX,
            KeyConditionExpression=condition,
            ExpressionAttributeNames={"#listed": LISTED_ATTRIBUTE},
            ExpressionAttributeValues=to_item(values),
            ScanIndexForward=False,
            Limit=limit,
        )
        ids = [from_item(item)["pk"].removeprefix("notice#") for item in items]
        found = self._get_notices(ids)
        return [found[i] for i in ids if i in found], last

    def _get_notices(self, ids: Sequence[str]) -> dict[str, Notice]:
        """Up to 100 notices in one BatchGetItem (strongly consistent), with what it leaves unprocessed
        asked again a few times: a page of a listing, never an unbounded loop."""
        found: dict[str, Notice] = {}
        keys = [{"pk": _pk(i), "sk": NOTICE_SK} for i in ids]
        try:
            items = batch_get(self.client, self.table, keys, consistent=True, attempts=LIST_ATTEMPTS)
        except BatchUnfinished as exc:
            raise NoticesUnavailable("DynamoDB left notices of this page unread; try again") from exc
        for item in items:
            plain = from_item(item)
            notice_id = plain["pk"].removeprefix("notice#")
            found[notice_id] = _notice(notice_id, plain)
        return found

    def cursor(self, notice_id: str) -> tuple[Cursor, bool]:
        """The checkpoint, with the seen set saved with it (``Cursor.saved``), in one consistent read."""
        item = self.client.get_item(
            TableName=self.table,
            Key=_key(_pk(notice_id), NOTICE_SK),
            ConsistentRead=True,
            ProjectionExpression="#o, #line, #header, #fmt, #dispatched, #so, #sl, #segs",
            ExpressionAttributeNames={
                "#o": "offset",
                "#line": "line",
                "#header": "header",
                "#fmt": "fmt",
                "#dispatched": "dispatched",
                "#so": "seen_offset",
                "#sl": "seen_line",
                "#segs": "seen_segments",
            },
        ).get("Item")
        if item is None:
            raise NoticeNotFound("no notice with this id")
        plain = from_item(item)
        header = json.loads(plain["header"]) if "header" in plain else None
        saved = SeenState(
            offset=int(plain.get("seen_offset", 0)),
            line=int(plain.get("seen_line", 0)),
            segments=tuple(SeenSegment.decode(v) for v in plain.get("seen_segments", [])),
        )
        cursor = Cursor(
            offset=int(plain["offset"]),
            line=int(plain["line"]),
            header=header,
            fmt=plain.get("fmt", "csv"),
            saved=saved,
        )
        return cursor, bool(plain.get("dispatched"))

    def set_status(
        self, notice_id: str, status: Status, now: datetime, only_from: Sequence[Status] = (), error: str | None = None
    ) -> bool:
        values: dict[str, Any] = {":s": status, ":u": now.isoformat()}
        expression = "SET #st = :s, updated_at = :u"
        if error is not None:
            expression += ", #err = :e"
            values[":e"] = error
        condition = "attribute_exists(pk)"
        if only_from:
            condition += " AND #st IN (" + ", ".join(f":f{i}" for i in range(len(only_from))) + ")"
            values.update({f":f{i}": s for i, s in enumerate(only_from)})
        names = {"#st": "status", **({"#err": "error"} if error is not None else {})}
        try:
            self.client.update_item(
                TableName=self.table,
                Key=_key(_pk(notice_id), NOTICE_SK),
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_item(values),
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def checkpoint(
        self,
        notice_id: str,
        cursor: Cursor,
        read: DispatchRead,
        since: int,
        done: bool,
        now: datetime,
        dry_run_result: dict[str, Any] | None = None,
        seen: tuple[SeenSegment | None, int, int] | None = None,
    ) -> None:
        """Record how far dispatch got, atomically with what it read since its last checkpoint.

        Only if the last checkpoint is still the one at byte ``since``: a second dispatch of the
        same notice (SQS delivers at least once) gets CheckpointMoved and stops. A duplicate (a
        recipient listed again) is settled here: it counts towards the total and as a recipient
        decision; so is each duplicate channel, by channel. A dry run's result so far is written in
        the same update. ``seen``: (segment saved with save_seen_segment or None, byte, line): the
        seen set now covers the manifest up to there, with that segment added.
        """
        values: dict[str, Any] = {
            ":o": cursor.offset,
            ":l": cursor.line,
            ":r": read.rows,
            ":b": read.bad_rows,
            ":d": done,
            ":u": now.isoformat(),
            ":f": cursor.fmt,
            ":q": read.recipients + read.duplicates,
            ":since": since,
        }
        sets = ["#o = :o", "#line = :l", "#dispatched = :d", "#updated = :u", "#fmt = :f"]
        names = {
            "#o": "offset", "#line": "line", "#dispatched": "dispatched", "#updated": "updated_at", "#fmt": "fmt",
            "#rows": "rows_read", "#bad": "bad_rows", "#queued": "queued",
        }  # fmt: skip
        if cursor.header is not None:
            sets.append("#header = :h")
            names["#header"] = "header"
            values[":h"] = json.dumps(cursor.header)
        if read.samples:
            sets.append("#samples = list_append(if_not_exists(#samples, :empty), :bad)")
            names["#samples"] = "samples"
            values[":empty"] = []
            values[":bad"] = [json.dumps(b.model_dump()) for b in read.samples]
        if read.warning_samples:
            sets.append("#wsamples = list_append(if_not_exists(#wsamples, :empty), :warn)")
            names["#wsamples"] = "warning_samples"
            values[":empty"] = []
            values[":warn"] = [json.dumps(b.model_dump()) for b in read.warning_samples]
        if dry_run_result is not None:
            sets.append("#dry = :dry")
            names["#dry"] = "dry_run_result"
            values[":dry"] = json.dumps(dry_run_result)
        adds = ["#rows :r", "#bad :b", "#queued :q"]
        # People and warnings: added even when zero, so a notice read by this code always has them
        for i, (name, amount) in enumerate(
            (
                ("warnings", read.warnings),
                ("people", read.people.listed),
                ("people_without_address", read.people.without_address),
                ("people_shared", read.people.shared),
            )
        ):
            names[f"#pw{i}"] = name
            values[f":pw{i}"] = amount
            adds.append(f"#pw{i} :pw{i}")
        if read.duplicates:
            names["#dup"] = "c__" + _counter("r.duplicate")
            values[":dup"] = read.duplicates
            adds.append("#dup :dup")
        for i, (channel, amount) in enumerate(sorted(read.channel_duplicates.items())):
            if amount:
                names[f"#cdup{i}"] = "c__" + _counter(f"{channel}.duplicate")
                values[f":cdup{i}"] = amount
                adds.append(f"#cdup{i} :cdup{i}")
        if seen is not None:
            self._seen_commit(seen, sets, names, values)
        if done:
            sets.append("#total = if_not_exists(#queued, :zero) + :q")
            names["#total"] = "total"
            values[":zero"] = 0
        try:
            self.client.update_item(
                TableName=self.table,
                Key=_key(_pk(notice_id), NOTICE_SK),
                UpdateExpression="SET " + ", ".join(sets) + " ADD " + ", ".join(adds),
                ConditionExpression="#o = :since",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_item(values),
            )
        except self.client.exceptions.ConditionalCheckFailedException as exc:
            if self._checkpoint_is(notice_id, cursor.offset, now):
                return  # our own update, applied before its answer was lost and retried: done
            raise CheckpointMoved(notice_id) from exc

    # --- the dispatcher's seen set and duplicate records ------------------------------------

    @staticmethod
    def _seen_commit(
        seen: tuple[SeenSegment | None, int, int], sets: list[str], names: dict[str, str], values: dict[str, Any]
    ) -> None:
        segment, offset, line = seen
        sets += ["#so = :so", "#sl = :sl"]
        names.update({"#so": "seen_offset", "#sl": "seen_line"})
        values.update({":so": offset, ":sl": line})
        if segment is not None:
            sets.append("#segs = list_append(if_not_exists(#segs, :nosegs), :seg)")
            names["#segs"] = "seen_segments"
            values[":nosegs"] = []
            values[":seg"] = [segment.encode()]

    def save_seen_segment(self, notice_id: str, digests: bytes, offset: int) -> SeenSegment | None:
        """Write a segment of the seen set (sorted 8-byte digests), not yet named by a checkpoint.

        The segment id is new each time (the offset, for reading, and a random part): a second
        dispatch of the notice never writes over the chunks of the first.
        """
        if not digests:
            return None
        segment_id = f"{offset}.{uuid.uuid4().hex[:12]}"
        size = SEEN_CHUNK_KEYS * 8
        chunks = 0
        for chunks, start in enumerate(range(0, len(digests), size), start=1):
            # UpdateItem creates the item: the dispatcher's role has no PutItem
            self.client.update_item(
                TableName=self.table,
                Key=_key(_seen_pk(notice_id, segment_id, chunks - 1), "seen"),
                UpdateExpression="SET #k = :k",
                ExpressionAttributeNames={"#k": "keys"},
                ExpressionAttributeValues=to_item({":k": digests[start : start + size]}),
            )
        return SeenSegment(segment_id, chunks, len(digests) // 8)

    def load_seen_segment(self, notice_id: str, segment: SeenSegment) -> bytes:
        parts = []
        for n in range(segment.chunks):
            item = self.client.get_item(
                TableName=self.table,
                Key=_key(_seen_pk(notice_id, segment.id, n), "seen"),
                ConsistentRead=True,
            ).get("Item")
            if item is None:
                raise RuntimeError(f"seen set chunk {segment.id}#{n} of notice {notice_id} is missing")
            parts.append(from_item(item)["keys"])
        data = b"".join(parts)
        if len(data) != segment.keys * 8:
            raise RuntimeError(f"seen set segment {segment.id} of notice {notice_id} has the wrong size")
        return data

    def record_duplicates(self, records: Sequence[DeliveryRecord]) -> None:
        """Write the delivery records of duplicate channels (idempotent: the same rows give the same records).

        One UpdateItem each, which creates the item: the dispatcher's role has neither PutItem nor
        BatchWriteItem. The dispatcher writes them before the checkpoint past their rows.
        """
        for record in records:
            item = self._delivery_item(record)
            key = _key(item.pop("pk"), item.pop("sk"))
            names = {f"#a{i}": name for i, name in enumerate(item)}
            self.client.update_item(
                TableName=self.table,
                Key=key,
                UpdateExpression="SET " + ", ".join(f"#a{i} = :a{i}" for i in range(len(item))),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_item({f":a{i}": value for i, value in enumerate(item.values())}),
            )

    def _checkpoint_is(self, notice_id: str, offset: int, now: datetime) -> bool:
        """Whether the stored checkpoint is the one this dispatcher wrote at ``now`` (to the microsecond)."""
        item = self.client.get_item(
            TableName=self.table,
            Key=_key(_pk(notice_id), NOTICE_SK),
            ConsistentRead=True,
            ProjectionExpression="#o, #updated",
            ExpressionAttributeNames={"#o": "offset", "#updated": "updated_at"},
        ).get("Item", {})
        stored = from_item(item)
        return stored.get("offset") == offset and stored.get("updated_at") == now.isoformat()

    def _counts_update(
        self,
        notice_id: str,
        channel_counts: dict[str, int],
        recipient_counts: dict[str, int],
        sent_at: datetime | None,
        now: datetime,
        deferred_until: Collection[datetime] = (),
    ) -> dict[str, Any] | None:
        names: dict[str, str] = {}
        values: dict[str, Any] = {":u": now.isoformat()}
        adds: list[str] = []
        pairs = [*channel_counts.items(), *(("r." + k, v) for k, v in recipient_counts.items())]
        for i, (name, amount) in enumerate(pairs):
            if amount:
                names[f"#c{i}"] = "c__" + _counter(name)
                values[f":c{i}"] = amount
                adds.append(f"#c{i} :c{i}")
        if deferred_until:  # a string set: batches add their times concurrently, none lost
            names["#du"] = "deferred_until"
            values[":du"] = {moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00") for moment in deferred_until}
            adds.append("#du :du")
        sets = ["updated_at = :u"]
        if sent_at is not None:
            values[":t"] = sent_at.isoformat()
            sets += ["first_sent_at = if_not_exists(first_sent_at, :t)", "last_sent_at = :t"]
        if not adds and sent_at is None:
            return None
        update: dict[str, Any] = {
            "TableName": self.table,
            "Key": _key(_pk(notice_id), NOTICE_SK),
            "UpdateExpression": "SET " + ", ".join(sets) + (" ADD " + ", ".join(adds) if adds else ""),
            "ExpressionAttributeValues": to_item(values),
        }
        if names:
            update["ExpressionAttributeNames"] = names
        return update

    def progress(self, notice_id: str) -> Progress:
        item = self.client.get_item(TableName=self.table, Key=_key(_pk(notice_id), NOTICE_SK), ConsistentRead=True).get(
            "Item"
        )
        if item is None:
            raise NoticeNotFound("no notice with this id")
        return _progress(from_item(item))

    # --- deliveries ------------------------------------------------------------------------

    def claim_batch(
        self,
        notice_id: str,
        batch: str,
        planned: str,
        now: datetime,
        owner: str | None = None,
        lease_until: datetime | None = None,
        inflight: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Mark a send batch taken, with what it planned, before any of it is sent.

        The mark carries a lease: the invocation that took it (``owner``) and until when it may
        be sending (its own deadline), and the batch's first provider call as in flight
        (``inflight``: its recipients and channel), which goes out right after. Raises BatchTaken
        if it was taken before: a redelivery, which then sends nothing (if the last attempt
        completed), leaves it to its owner (if the lease is live), or records what the
        interrupted attempt left (``planned`` and its progress).
        """
        claim = uuid.uuid4().hex
        mark: dict[str, Any] = {
            "pk": _pk(notice_id),
            "sk": f"{BATCH_PREFIX}{batch}",
            "state": "sending",
            "at": now.isoformat(),
            "planned": planned,
            "claim": claim,
            "step": 0,
            "inflight": json.dumps([list(ref) for ref in inflight], separators=(",", ":")),
        }
        if owner:
            mark["owner"] = owner
        if lease_until is not None:
            mark["lease_until"] = lease_until.isoformat()
        try:
            self.client.put_item(
                TableName=self.table,
                Item=to_item(mark),
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self.client.exceptions.ConditionalCheckFailedException as exc:
            old = from_item(dict(exc.response.get("Item") or {}))  # type: ignore[call-overload]
            if old.get("claim") == claim:
                return  # our own mark: applied, its answer lost, the client's retry found it
            lease = old.get("lease_until")
            raise BatchTaken(
                batch,
                done=old.get("state") == "done",
                planned=old.get("planned"),
                later=old.get("later"),
                owner=old.get("owner"),
                lease_until=datetime.fromisoformat(lease) if lease else None,
                progress=_send_progress(old),
            ) from exc
        except Exception:
            # The mark may be there all the same (applied, its answer lost), with a call in flight
            # that will never go out: take it back, or a redelivery would record its recipients
            # unknown. Only if the mark is ours, and we raise: this invocation sends none of it.
            self._release(notice_id, batch, claim)
            raise

    def _release(self, notice_id: str, batch: str, claim: str) -> None:
        """Best effort: our mark, if there, has nothing in flight and no lease (a redelivery records it at once)."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key=_key(_pk(notice_id), f"{BATCH_PREFIX}{batch}"),
                UpdateExpression="SET #i = :none REMOVE #owner, #lease",
                ConditionExpression="#claim = :claim AND #state = :sending AND #step = :zero",
                ExpressionAttributeNames={
                    "#i": "inflight", "#owner": "owner", "#lease": "lease_until", "#claim": "claim",
                    "#state": "state", "#step": "step",
                },
                ExpressionAttributeValues=to_item({":none": "[]", ":claim": claim, ":sending": "sending", ":zero": 0}),
            )  # fmt: skip
        except Exception:  # not ours, not there, or unreachable: the redelivery sees what there is
            log.warning("cannot release a send batch's mark", exc_info=True, extra={"batch": batch})

    def record_call(
        self,
        notice_id: str,
        batch: str,
        step: int,
        answered: Sequence[CallResult],
        answered_at: datetime,
        inflight: Sequence[tuple[str, str]],
        release: bool = False,
    ) -> None:
        """Before provider call ``step`` (1, 2, ...) goes out: call ``step - 1`` answered, ``step`` in flight.

        One UpdateItem on the batch's mark. Idempotent, so the client may retry it after a lost
        answer. Conditional on the batch still being sent: it fails (ConditionalCheckFailed) once
        a redelivery has recorded the batch, and the invocation then starts no more calls. And on
        the mark never going back: a delayed duplicate of an earlier step's write fails too, or
        the mark would show a call that went out since as never tried, and it would be sent again.

        ``release``: the invocation gives the batch up (no call in flight, ``inflight`` empty): the
        lease goes with it, so a redelivery records the batch from its mark at once.
        """
        result = {"at": answered_at.isoformat(), "r": [_trimmed(r) for r in answered]}
        names = {"#r": f"call_{step - 1}", "#i": "inflight", "#step": "step", "#state": "state"}
        update = "SET #r = :r, #i = :i, #step = :step"
        if release:
            update += " REMOVE #owner, #lease"
            names |= {"#owner": "owner", "#lease": "lease_until"}
        self.client.update_item(
            TableName=self.table,
            Key=_key(_pk(notice_id), f"{BATCH_PREFIX}{batch}"),
            UpdateExpression=update,
            ConditionExpression="#state = :sending AND #step <= :step",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=to_item(
                {
                    ":r": json.dumps(result, separators=(",", ":")),
                    ":i": json.dumps([list(ref) for ref in inflight], separators=(",", ":")),
                    ":step": step,
                    ":sending": "sending",
                }
            ),
        )

    def complete_batch(
        self,
        notice_id: str,
        batch: str,
        records: Sequence[DeliveryRecord],
        channel_counts: dict[str, int],
        recipient_counts: dict[str, int],
        sent_at: datetime | None,
        now: datetime,
        later: str | None = None,
        step: int | None = None,
        deferred_until: Collection[datetime] = (),
    ) -> None:
        """In one transaction: the batch's delivery records, its counts, and its mark set done.

        ``deferred_until``: when the texts this batch held for quiet hours are due, kept on the
        notice so that whoever waits for it can be told until when.

        ``later`` (the entries queued again, by recipient id) stays on the mark, so a redelivery
        can queue them again if queueing failed after this transaction. ``step``: for a batch
        recorded from its mark's progress, the step that progress showed; the transaction then
        fails if the mark moved on since (its owner was alive after all and started a call).

        All or nothing: a batch interrupted before this point has written no record and added no
        count, so its redelivery knows exactly what is left, and nothing is ever counted twice.
        """
        # The done mark replaces the taken one (its plan is of no more use), if still taken
        mark: dict[str, Any] = {
            "pk": _pk(notice_id),
            "sk": f"{BATCH_PREFIX}{batch}",
            "state": "done",
            "at": now.isoformat(),
        }
        if later:
            mark["later"] = later
        if (expires := self._expires(now)) is not None:
            mark[TTL_ATTRIBUTE] = expires
        expected: dict[str, Any] = {":sending": "sending"}
        condition: dict[str, Any] = {
            "ConditionExpression": "#state = :sending",
            "ExpressionAttributeNames": {"#state": "state"},
        }
        if step is not None:
            condition["ConditionExpression"] += " AND #step = :step"
            condition["ExpressionAttributeNames"]["#step"] = "step"
            expected[":step"] = step
        condition["ExpressionAttributeValues"] = to_item(expected)
        items: list[Any] = [{"Put": {"TableName": self.table, "Item": to_item(mark), **condition}}]
        items += [{"Put": {"TableName": self.table, "Item": to_item(self._delivery_item(r))}} for r in records]
        update = self._counts_update(notice_id, channel_counts, recipient_counts, sent_at, now, deferred_until)
        if update is not None:
            items.append({"Update": update})
        if len(items) > 100:
            raise ValueError("a batch records at most 98 deliveries")
        # Cancelled for a conflict (say, another batch of the notice adding to the same counts item)
        # or throttled, the transaction was not applied, and botocore does not retry a cancellation:
        # try it again, a few times. Safe: the mark's condition lets it apply once at most.
        for attempt in range(COMPLETE_ATTEMPTS):
            try:
                self.client.transact_write_items(TransactItems=items)
                return
            except self.client.exceptions.ClientError as exc:
                if attempt == COMPLETE_ATTEMPTS - 1 or not _not_applied_try_again(exc):
                    raise
            time.sleep(random.uniform(0, 0.05 * 2**attempt))  # noqa: S311 - jitter  # nosec B311

    def deliveries(
        self, notice_id: str, limit: int = 100, start: str | None = None
    ) -> tuple[list[DeliveryRecord], str | None]:
        items, last = page(
            self.client,
            "query",
            _key(_pk(notice_id), DELIVERY_PREFIX + start) if start else None,
            **self._deliveries_query(notice_id),
            Limit=limit,
        )
        records = [delivery_from_item(item) for item in items]
        return records, (from_item(last)["sk"].removeprefix(DELIVERY_PREFIX) if last else None)

    def _deliveries_query(self, notice_id: str) -> dict[str, Any]:
        return {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :d)",
            "ExpressionAttributeValues": to_item({":pk": _pk(notice_id), ":d": DELIVERY_PREFIX}),
        }

    def _delivery_item(self, record: DeliveryRecord) -> dict[str, Any]:
        item = _delivery_item(record)
        if (expires := self._expires(record.at)) is not None:
            item[TTL_ATTRIBUTE] = expires
        return item

    # --- erasure (optout.privacy.erasure) -----------------------------------------------------------

    def deliveries_to(self, address_key: str, page: int = 100) -> Iterator[dict[str, Any]]:
        """The delivery items of one address key, from the by_address index (it projects them whole),
        ``page`` a query, so that a caller watching its deadline stops between two small pages."""
        for found in pages(
            self.client,
            "query",
            TableName=self.table,
            IndexName=BY_ADDRESS_INDEX,
            KeyConditionExpression="address_key = :k",
            ExpressionAttributeValues=to_item({":k": address_key}),
            ProjectionExpression="pk, sk, #d, #at, #ttl, decided_at",
            ExpressionAttributeNames={"#d": "decision", "#at": "at", "#ttl": TTL_ATTRIBUTE},
            Limit=page,
        ):
            yield from found.get("Items", [])

    def delivery_page(
        self, address_key: str, start: dict[str, Any] | None, limit: int
    ) -> tuple[list[DeliveryRecord], dict[str, Any] | None]:
        """One page of an address key's delivery records (the by_address index projects them whole),
        and the key the next page starts from (None after the last): the subject's export."""
        items, last = page(
            self.client, "query", start,
            TableName=self.table, IndexName=BY_ADDRESS_INDEX,
            KeyConditionExpression="address_key = :k", ExpressionAttributeValues=to_item({":k": address_key}),
            Limit=limit,
        )  # fmt: skip
        return [delivery_from_item(item) for item in items], last

    def pseudonymise_deliveries(self, items: Sequence[dict[str, Any]], pseudonym: Callable[[str, str], str]) -> int:
        """Move each delivery record to a pseudonymous recipient id, without its address key.

        The record keeps its notice, channel, decision and time (the notice's evidence and counts
        still add up) and its ``expires_at``; it loses the recipient id (``pseudonym(notice_id,
        recipient_id)`` instead), the address key (so the by_address index no longer finds it), the
        provider's message id and the reason (a provider's refusal may quote the address).

        The copies are written first, then the originals deleted (BatchWriteItem, one write unit
        each): interrupted in between, an erasure run again writes the same copies and deletes what
        is left, so nothing is lost or doubled. Returns how many records were moved.
        """
        copies: list[dict[str, Any]] = []
        originals: list[dict[str, Any]] = []
        for item in items:
            plain = from_item(item)
            notice_id = plain["pk"].removeprefix("notice#")
            recipient_id, _, channel = plain["sk"].removeprefix(DELIVERY_PREFIX).rpartition("#")
            copy = {
                "pk": plain["pk"],
                "sk": _delivery_sk(pseudonym(notice_id, recipient_id), channel),
                "decision": plain["decision"],
                "at": plain["at"],
                "reason": ERASED_REASON,
            }
            if TTL_ATTRIBUTE in plain:
                copy[TTL_ATTRIBUTE] = plain[TTL_ATTRIBUTE]
            copies.append(copy)
            originals.append({"pk": plain["pk"], "sk": plain["sk"]})
        # two calls, not one: every copy is written before any original goes
        batch_write(self.client, self.table, put=copies)
        batch_write(self.client, self.table, delete=originals)
        return len(originals)

    def all_deliveries(self, notice_id: str) -> Iterator[DeliveryRecord]:
        for found in pages(self.client, "query", **self._deliveries_query(notice_id), Limit=1000):
            for item in found.get("Items", []):
                yield delivery_from_item(item)


TTL_ATTRIBUTE = "expires_at"  # the NoticesTable's TimeToLiveSpecification
BY_ADDRESS_INDEX = "by_address"
BY_CREATED_INDEX = "by_created"  # notices by creation time: only notice items carry LISTED_ATTRIBUTE
LISTED_ATTRIBUTE = "listed"
LIST_ATTEMPTS = 4
ERASED_REASON = "subject erased: recipient id pseudonymised, address key removed"
COMPLETE_ATTEMPTS = 5  # a batch's transaction, cancelled by a conflict or throttled: within about a second
# What cancels a transaction, or refuses a request, without applying it, and may pass if tried again
_TRY_AGAIN_REASONS = frozenset({"None", "TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"})
_TRY_AGAIN_CODES = frozenset({"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"})


def item_bytes(item: Mapping[str, Any]) -> int:
    """An item's size as DynamoDB counts it: names and values in UTF-8 (a number: at most its digits)."""
    return sum(len(name.encode("utf-8", "surrogatepass")) + _value_bytes(value) for name, value in item.items())


def _value_bytes(value: Mapping[str, Any]) -> int:
    ((kind, inner),) = value.items()
    if kind in ("S", "N"):
        return len(str(inner).encode("utf-8", "surrogatepass"))
    if kind == "B":
        return len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS"):
        return sum(len(str(v).encode("utf-8", "surrogatepass")) for v in inner)
    if kind == "BS":
        return sum(len(v) for v in inner)
    if kind == "L":
        return 3 + sum(1 + _value_bytes(v) for v in inner)
    return 3 + sum(1 + len(k.encode("utf-8", "surrogatepass")) + _value_bytes(v) for k, v in inner.items())  # M


def _largest_field(doc: Mapping[str, Any]) -> tuple[str, int]:
    """The request field that takes the most bytes of a notice document, and how many."""
    fields = {f"variables.{name}": value for name, value in doc.get("variables", {}).items()}
    fields.update({name: doc[name] for name in ("manifest", "created_by") if name in doc})
    sizes = {
        path: len(json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"))
        for path, value in fields.items()
    }
    path = max(sizes, key=lambda p: sizes[p])
    return path, sizes[path]


def _not_applied_try_again(exc: Any) -> bool:
    """A TransactWriteItems error that proves nothing was applied, and that trying again may get past.

    Not a 5xx or a timeout (botocore retried those, with the same idempotency token), and not a
    cancellation by a condition: the batch was recorded by someone else, or its mark moved on.
    """
    error = exc.response.get("Error", {})
    if error.get("Code") == "TransactionCanceledException":
        reasons = [r.get("Code", "None") for r in exc.response.get("CancellationReasons") or []]
        return bool(reasons) and set(reasons) <= _TRY_AGAIN_REASONS and set(reasons) != {"None"}
    return error.get("Code") in _TRY_AGAIN_CODES


def _trimmed(result: CallResult) -> list[str | None]:
    values = list(result)
    while values[-1] is None:  # a sent result has no reason, others no message id: keep the mark small
        values.pop()
    return values


def _send_progress(mark: dict[str, Any]) -> SendProgress | None:
    """What a batch's mark (its plain values) says of its provider calls."""
    if "inflight" not in mark:  # a mark from before progress was recorded per call
        return None
    results: dict[tuple[str, str], tuple[CallResult, datetime]] = {}
    for name, value in mark.items():
        if name.startswith("call_"):
            call = json.loads(value)
            at = datetime.fromisoformat(call["at"])
            for fields in call["r"]:
                result = CallResult(*fields)
                results[(result.recipient_id, result.channel)] = (result, at)
    return SendProgress(
        step=int(mark.get("step", 0)),
        results=results,
        inflight=frozenset((rid, channel) for rid, channel in json.loads(mark["inflight"])),
    )


def _seen_pk(notice_id: str, segment_id: str, chunk: int) -> str:
    return f"{SEEN_PREFIX}{notice_id}#{segment_id}#{chunk}"


def _delivery_sk(recipient_id: str, channel: str) -> str:
    return f"{DELIVERY_PREFIX}{recipient_id}#{channel}"


def _delivery_item(record: DeliveryRecord) -> dict[str, Any]:
    """A delivery record's item, as plain values."""
    # The recipient and channel are in the sort key (a recipient id never contains "#"): items
    # stay small, and one delivery costs one write unit.
    item: dict[str, Any] = {
        "pk": _pk(record.notice_id),
        "sk": _delivery_sk(record.recipient_id, record.channel),
        "decision": record.decision,
        "at": record.at.isoformat(),
    }
    if record.decided_at is not None and record.decision in ("sent", "unknown"):
        item["decided_at"] = record.decided_at.isoformat()
    for name in ("address_key", "reason", "provider_message_id"):
        value = getattr(record, name)
        if value:
            item[name] = value
    return item


def delivery_from_item(item: dict[str, Any]) -> DeliveryRecord:
    """A delivery record from its item, as a query of the table or of its by_address index returns it."""
    plain = from_item(item)
    recipient_id, _, channel = plain["sk"].removeprefix(DELIVERY_PREFIX).rpartition("#")
    return DeliveryRecord(
        notice_id=plain["pk"].removeprefix("notice#"),
        recipient_id=recipient_id,
        channel=channel,
        address_key=plain.get("address_key"),
        decision=plain["decision"],
        reason=plain.get("reason"),
        provider_message_id=plain.get("provider_message_id"),
        at=datetime.fromisoformat(plain["at"]),
        decided_at=datetime.fromisoformat(plain["decided_at"]) if "decided_at" in plain else None,
    )


def _counts(item: dict[str, Any]) -> Counts:
    counts = Counts()
    for name, value in item.items():
        if not name.startswith("c__"):
            continue
        scope, _, decision = name[3:].partition("__")
        amount = int(value)
        if scope == "r":
            counts.recipients[decision] = amount
        else:
            counts.by_channel.setdefault(scope, {})[decision] = amount
    return counts


def _progress(item: dict[str, Any]) -> Progress:
    counts = _counts(item)
    return Progress(
        status=item["status"],
        total=int(item["total"]) if "total" in item else None,
        dispatched=bool(item.get("dispatched")),
        settled=counts.recipient_total(),
    )


def _notice(notice_id: str, item: dict[str, Any]) -> Notice:
    """A notice from its item's plain values (``from_item``)."""
    doc = json.loads(item["doc"])
    samples = [BadRow.model_validate_json(s) for s in item.get("samples", [])[:MAX_BAD_ROW_SAMPLES]]
    warned = [BadRow.model_validate_json(s) for s in item.get("warning_samples", [])]
    rows_read = int(item.get("rows_read", 0))
    people: People | None = None  # read before people were counted: unknown
    if "people" in item:
        people = People(
            listed=int(item["people"]),
            without_address=int(item.get("people_without_address", 0)),
            shared=int(item.get("people_shared", 0)),
        )
    elif rows_read == 0:
        people = People()  # nothing read yet
    optional = {k: item[k] for k in ("discovered_at", "first_sent_at", "last_sent_at", "error") if k in item}
    return Notice(
        id=notice_id,
        **doc,
        status=item["status"],
        updated_at=datetime.fromisoformat(item["updated_at"]),
        total=int(item["total"]) if "total" in item else None,
        rows_read=rows_read,
        bad_rows=int(item.get("bad_rows", 0)),
        bad_row_samples=samples,
        warnings=int(item.get("warnings", 0)),
        warning_samples=warned[:MAX_BAD_ROW_SAMPLES],
        people=people,
        counts=_counts(item),
        deferred_until=sorted(datetime.fromisoformat(moment) for moment in item.get("deferred_until", ())),
        dry_run_result=json.loads(item["dry_run_result"]) if "dry_run_result" in item else None,
        **optional,
    )
