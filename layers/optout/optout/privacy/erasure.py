"""Erasure of a data subject: what the pipeline holds about one address goes, the opt-out stays.

``POST /admin/subjects/erase`` (``optout subject erase CHANNEL ADDRESS``), in this order:

1. The address's suppression state is marked ``erased_at`` (a versioned write, as any consent
   change). Queued send batches cannot be edited (SQS), so the sender, which reads this state in
   its one BatchGetItem at send time, skips the address for every notice created before the mark
   and records that delivery pseudonymised. A notice created after it is sent as usual: the
   address is in a newer manifest, so its owner is a user again.
2. Its delivery records (found through the by_address index on its hashed key) move to a
   pseudonymous recipient id, without the address key, the provider's message id or the reason.
   The notice's counts and evidence still add up; nothing links the record to the address.
3. Its rows in the manifests still in the bucket are blanked: each of their bytes becomes a space,
   so every byte offset and line number a dispatcher checkpointed stays right (a blank line is
   skipped), and the version that held them is deleted.
4. The erasure is recorded beside the suppression state (who, when, what was removed), keyed by the
   hashed address: the state and its consent events are kept, so an opt-out survives the erasure.

Run it again at any time: each step is idempotent. A batch already in flight when the mark was
written may still record its delivery under the recipient id: an erasure run after the notice
completes removes it.
"""

from __future__ import annotations

import contextlib
import csv
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, StringConstraints

from optout.core.dynamo import DynamoTable, from_item, items_under, to_item
from optout.core.errors import ConcurrentUpdate
from optout.core.identity import Channel, address_key, normalise
from optout.notices.manifest import Cursor, Format, format_of, lines, parse_line
from optout.notices.model import Recipient, pseudonym
from optout.notices.store import NoticeStore
from optout.suppression.admin import report
from optout.suppression.model import SuppressionState
from optout.suppression.store import DynamoSuppressionStore

Address = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=320)]
ERASURE_PREFIX = "erasure#"
# A manifest is rewritten in the admin API's memory; one larger is left to the lifecycle rule
# (and the sender's check) and counted as such in the erasure record.
MAX_REWRITE_BYTES = 64 * 1024 * 1024
MARK_ATTEMPTS = 5
DELIVERY_CHUNK = 100  # records pseudonymised between two looks at the clock
STOP_WHEN_LEFT_MS = 3_000  # an invocation with less left starts no more work: it answers complete false


class EraseRequest(BaseModel, extra="forbid"):
    channel: Channel
    address: Address


def blank_rows(data: bytes, fmt: Format, channel: Channel, address: str) -> tuple[bytes, int]:
    """The manifest with every row of ``address`` (normalised) on ``channel`` blanked, and how many.

    A blanked row keeps its length (spaces) and its newline, so byte offsets and line numbers do
    not move, and the dispatcher reads it as a blank line. A row that does not parse, or was kept
    for its other channel only, is blanked when it holds the address as written.
    """
    out = bytearray(data)
    cursor = Cursor(fmt=fmt)
    begin = 0
    found = 0
    for raw, number, end in lines([data], Cursor(fmt=fmt)):
        row = parse_line(raw, number, cursor)
        if isinstance(row, Recipient):
            match = (row.email if channel == "email" else row.phone) == address
            # a row kept for its other channel (a warning) may hold this one in a form it could not use
            match = match or (row.warning is not None and _holds(raw, fmt, channel, address))
        else:
            match = row is not None and _holds(raw, fmt, channel, address)
        if match:
            content = data[begin:end].rstrip(b"\n").rstrip(b"\r")
            out[begin : begin + len(content)] = b" " * len(content)
            found += 1
        begin = end
    return bytes(out), found


_BRACKETED = re.compile(r"<([^<>]*)>")


def _holds(raw: bytes, fmt: Format, channel: Channel, address: str) -> bool:
    """Whether one of the row's values, or an address in angle brackets within one, normalises to
    ``address``: whole values compared, so erasing al@example.com never blanks sal@example.com."""
    text = raw.decode("utf-8", errors="replace")
    values: list[str] = []
    if fmt == "csv":
        values = next(csv.reader([text]), [])
    else:
        with contextlib.suppress(ValueError, RecursionError):
            document = json.loads(text)
            if isinstance(document, dict):
                values = [v for v in document.values() if isinstance(v, str)]
    for value in values:
        for candidate in (value, *_BRACKETED.findall(value)):
            with contextlib.suppress(Exception):  # whatever does not normalise is not this address
                if normalise(channel, candidate) == address:
                    return True
    return False


class ErasureLog(DynamoTable):
    """Erasure records in the SuppressionTable, beside the state: ``<address key> / erasure#<time>#<id>``."""

    def record(
        self, key: str, channel: Channel, at: datetime, actor: str, removed: dict[str, int], complete: bool = True
    ) -> dict[str, Any]:
        self.client.put_item(
            TableName=self.table,
            Item=to_item(
                {
                    "pk": key,
                    "sk": f"{ERASURE_PREFIX}{at.isoformat()}#{uuid.uuid4().hex}",
                    "channel": channel,
                    "at": at.isoformat(),
                    "actor": actor,
                    "removed": dict(removed),
                    "complete": complete,
                }
            ),
            ConditionExpression="attribute_not_exists(pk)",
        )
        return {"at": at.isoformat(), "actor": actor, "removed": removed, "complete": complete}

    def history(self, key: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for item in items_under(self.client, self.table, key, ERASURE_PREFIX):
            plain = from_item(item)
            removed = {name: int(n) for name, n in plain.get("removed", {}).items()}
            complete = plain.get("complete", True)  # recorded before it said
            out.append({"at": plain["at"], "actor": plain["actor"], "removed": removed, "complete": complete})
        return out


@dataclass
class SubjectEraser:
    suppressions: DynamoSuppressionStore
    notices: NoticeStore
    s3: Callable[[], Any]
    bucket: str
    pepper: Callable[[], bytes]
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    @property
    def log(self) -> ErasureLog:
        return ErasureLog(self.suppressions.table, self.suppressions.client)

    def erase(self, request: EraseRequest, actor: str, remaining_ms: Callable[[], int] | None = None) -> dict[str, Any]:
        """Erase the subject, as far as the invocation's time allows (``remaining_ms``).

        Out of time, it stops between two steps and says ``complete: false``: the caller asks again
        (the CLI does), and the next call carries on from what is left. Each call is recorded.
        """
        address = normalise(request.channel, request.address)
        pepper = self.pepper()
        key = address_key(pepper, request.channel, address)
        at = self.now()

        def out_of_time() -> bool:
            return remaining_ms is not None and remaining_ms() < STOP_WHEN_LEFT_MS

        state = self._mark(key, request.channel, at)
        moved, complete = self._deliveries(key, lambda n, r: pseudonym(pepper, n, r), out_of_time)
        manifests = rows = too_large = 0
        if complete:
            manifests, rows, too_large, complete = self._manifests(request.channel, address, out_of_time)
        removed = {
            "deliveries_pseudonymised": moved,
            "manifests_rewritten": manifests,
            "manifest_rows_blanked": rows,
            "manifests_too_large": too_large,
        }
        erasure = self.log.record(key, request.channel, at, actor, removed, complete)
        return {
            "channel": request.channel,
            "address_key": key,
            "complete": complete,
            "erasure": erasure,
            "kept": report(state, self.suppressions.history(key)),
        }

    def _deliveries(
        self, key: str, pseudonymous: Callable[[str, str], str], out_of_time: Callable[[], bool]
    ) -> tuple[int, bool]:
        """Pseudonymise the address's delivery records, a chunk at a time: (how many, all of them)."""
        moved = 0
        chunk: list[dict[str, Any]] = []
        for item in self.notices.deliveries_to(key, DELIVERY_CHUNK):
            chunk.append(item)
            if len(chunk) >= DELIVERY_CHUNK:
                moved += self.notices.pseudonymise_deliveries(chunk, pseudonymous)
                chunk = []
                if out_of_time():
                    return moved, False
        return moved + self.notices.pseudonymise_deliveries(chunk, pseudonymous), True

    def _mark(self, key: str, channel: Channel, at: datetime) -> SuppressionState:
        """Set ``erased_at`` on the state, conditional on its version like every consent change."""
        for attempt in range(MARK_ATTEMPTS):
            state = self.suppressions.get(key) or SuppressionState(address_key=key, channel=channel)
            marked = state.model_copy(update={"erased_at": at, "version": state.version + 1})
            try:
                self.suppressions.save(marked, state.version, [])
                return marked
            except ConcurrentUpdate:
                if attempt == MARK_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _manifests(self, channel: Channel, address: str, out_of_time: Callable[[], bool]) -> tuple[int, int, int, bool]:
        """Blank the subject's rows in every manifest of the bucket: (objects rewritten, rows, too
        large, all of them read)."""
        s3 = self.s3()
        rewritten = rows = too_large = 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for entry in page.get("Contents", []):
                if out_of_time():
                    return rewritten, rows, too_large, False
                name = entry["Key"]
                if entry["Size"] > MAX_REWRITE_BYTES:
                    too_large += 1
                    continue
                got = s3.get_object(Bucket=self.bucket, Key=name)
                data = got["Body"].read()
                blanked, found = blank_rows(data, format_of(name, data[:64]), channel, address)
                if not found:
                    continue
                s3.put_object(Bucket=self.bucket, Key=name, Body=blanked)
                version = got.get("VersionId")
                if version and version != "null":  # the version that held the rows goes too
                    s3.delete_object(Bucket=self.bucket, Key=name, VersionId=version)
                rewritten += 1
                rows += found
        return rewritten, rows, too_large, True
