"""Manifests: CSV or JSON Lines of recipients, read as a stream with resumable byte offsets.

Columns: ``recipient_id`` and at least one of ``email``/``phone`` are required; ``locale``,
``timezone`` and ``name`` are optional. A bad row is reported with its line number and reason
and never stops the notice. A row with one usable address is kept for it: an invalid address
on its other channel, or an unknown time zone, is its ``warning`` (reported with the bad rows),
never a reason to leave the person untold. Each row must sit on one line (that is what makes a
byte offset a safe place to resume).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from optout.core.errors import InvalidAddress
from optout.core.identity import normalise_email, normalise_phone
from optout.notices.model import BadRow, Recipient

Format = Literal["csv", "jsonl"]
MAX_LINE = 64 * 1024


def format_of(key: str, first_bytes: bytes = b"") -> Format:
    lowered = key.lower()
    if lowered.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if lowered.endswith(".csv"):
        return "csv"
    return "jsonl" if first_bytes.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"{") else "csv"


@dataclass(frozen=True)
class SeenSegment:
    """Digests added to the seen set between two saves: ``chunks`` items under one segment id."""

    id: str
    chunks: int
    keys: int

    def encode(self) -> str:
        return f"{self.id}:{self.chunks}:{self.keys}"

    @classmethod
    def decode(cls, value: str) -> SeenSegment:
        segment_id, chunks, keys = value.rsplit(":", 2)
        return cls(segment_id, int(chunks), int(keys))


@dataclass(frozen=True)
class SeenState:
    """The dispatcher's saved seen set (the ids and addresses it read): its segments, and the
    manifest position (byte, line) they cover up to, at or before the checkpoint's."""

    offset: int = 0
    line: int = 0
    segments: tuple[SeenSegment, ...] = ()


@dataclass
class Cursor:
    """Where reading stopped: the next byte, the last line number read, and the CSV header.

    A checkpoint read back also says what of the seen set was saved with it (``saved``).
    """

    offset: int = 0
    line: int = 0
    header: list[str] | None = None
    fmt: Format = "csv"
    saved: SeenState = field(default_factory=lambda: SeenState())


def lines(chunks: Iterable[bytes], cursor: Cursor) -> Iterator[tuple[bytes, int, int]]:
    """Yield (line without newline, its line number, the offset just after it).

    A line longer than MAX_LINE is yielded once, cut at MAX_LINE (parse_line reports it), and
    the rest of it is skipped up to its newline, however the bytes arrive in chunks.
    """
    buffer = b""
    offset = cursor.offset
    number = cursor.line
    runaway: bytes | None = None  # the head of an overlong line whose newline has not come yet
    for chunk in chunks:
        buffer += chunk
        while True:
            newline = buffer.find(b"\n")
            if runaway is not None:
                if newline < 0:
                    offset += len(buffer)
                    buffer = b""
                    break
                offset += newline + 1
                buffer = buffer[newline + 1 :]
                number += 1
                yield runaway, number, offset
                runaway = None
                continue
            if newline < 0:
                if len(buffer) > MAX_LINE:  # a runaway line: keep its head, skip the rest of it
                    runaway = buffer[:MAX_LINE]
                    offset += len(buffer)
                    buffer = b""
                break
            line, buffer = buffer[:newline], buffer[newline + 1 :]
            number += 1
            offset += newline + 1
            yield line.rstrip(b"\r"), number, offset
    if runaway is not None:
        number += 1
        offset += len(buffer)
        yield runaway, number, offset
    elif buffer:
        number += 1
        offset += len(buffer)
        yield buffer.rstrip(b"\r"), number, offset


def parse_line(raw: bytes, number: int, cursor: Cursor) -> Recipient | BadRow | None:
    """One line to a recipient, a bad row, or None (blank line, or the CSV header)."""
    if len(raw) >= MAX_LINE:
        return BadRow(line=number, reason="line longer than 64 KiB")
    try:
        text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError:
        return BadRow(line=number, reason="not valid UTF-8")
    if not text.strip():
        return None
    if cursor.fmt == "csv":
        try:
            cells = next(csv.reader([text]))
        except (csv.Error, StopIteration):
            return BadRow(line=number, reason="not a valid CSV row")
        if cursor.header is None:
            header = [c.strip().lower() for c in cells]
            if "recipient_id" not in header:
                cursor.header = []
                return BadRow(line=number, reason="the header has no recipient_id column")
            cursor.header = header
            return None
        if not cursor.header:
            return BadRow(line=number, reason="no usable header")
        if len(cells) > len(cursor.header):
            return BadRow(line=number, reason=f"{len(cells)} cells for {len(cursor.header)} columns")
        row = dict(zip(cursor.header, cells, strict=False))
    else:
        try:
            document = json.loads(text)
        except (ValueError, RecursionError):
            return BadRow(line=number, reason="not valid JSON")
        if not isinstance(document, dict):
            return BadRow(line=number, reason="not a JSON object")
        row = {k: ("" if v is None else str(v)) for k, v in document.items() if isinstance(k, str)}
    return recipient(row, number)


def recipient(row: dict[str, str], number: int) -> Recipient | BadRow:
    """A row to a recipient, kept for every channel whose address is valid; a bad row if none is.

    What could not be used of a kept row (an invalid address, an unknown time zone: ignored, so
    quiet hours go by the phone number's region) is its ``warning``. A bad row with a valid
    recipient id carries it, so the reach report counts that person as unreachable.
    """
    recipient_id = row.get("recipient_id", "").strip()
    if not recipient_id or len(recipient_id) > 128 or "#" in recipient_id:
        return BadRow(line=number, reason="recipient_id is missing, longer than 128 characters or contains #")
    raw_email = row.get("email", "").strip() or None
    raw_phone = row.get("phone", "").strip() or None
    if raw_email is None and raw_phone is None:
        return BadRow(line=number, reason="no email and no phone", recipient_id=recipient_id)
    problems: list[str] = []
    email = phone = None
    try:
        email = normalise_email(raw_email) if raw_email else None
    except InvalidAddress as exc:
        problems.append(f"invalid email: {exc.message}")
    try:
        phone = normalise_phone(raw_phone) if raw_phone else None
    except InvalidAddress as exc:
        problems.append(f"invalid phone: {exc.message}")
    if email is None and phone is None:
        return BadRow(line=number, reason="; ".join(problems), recipient_id=recipient_id)
    if problems:  # first: a sample's reason may be cut short (dispatch.MAX_REASON)
        problems.insert(0, f"kept for {'email' if email else 'phone'} only")
    timezone = row.get("timezone", "").strip() or None
    if timezone is not None:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            timezone = None  # local time then goes by the phone number's region, or the default zone
            problems.insert(1 if problems else 0, "unknown timezone ignored")
    locale = (row.get("locale", "").strip() or "en").replace("_", "-").split("-")[0].lower()
    name = (row.get("name", "").strip() or None) if len(row.get("name", "")) <= 200 else None
    return Recipient(
        recipient_id=recipient_id, email=email, phone=phone, locale=locale or "en", timezone=timezone,
        name=name, line=number, warning="; ".join(problems) or None,
    )  # fmt: skip
