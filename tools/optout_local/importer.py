"""Import suppressions from another provider: SES suppression list, SendGrid exports, plain CSV.

Every address is normalised and hashed on the way in (nothing plain is stored). Rows are merged
with the state already there and written in transactions conditional on the version read (an
opt-out that lands meanwhile is re-read, never overwritten); progress is saved as each chunk is
written (see ``progress_folder`` for where), so an interrupted import resumes where it stopped.
Invalid rows are reported with their line numbers.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optout.consent import MAX_ATTEMPTS
from optout.errors import ConcurrentUpdate, InvalidAddress
from optout.identity import Channel, Identity
from optout.settings import Settings
from optout.suppression import (
    CHANNEL_SCOPE,
    OPTIONAL_SCOPE,
    ConsentChange,
    ConsentEvent,
    SuppressionState,
    apply_changes,
    empty_state,
)
from optout.suppression_store import TRANSACTION_LIMIT, DynamoSuppressionStore, StateWrite, item_to_state

if TYPE_CHECKING:
    from optout_local.target import Target

CHUNK = 100
PROGRESS_SUFFIX = ".import-progress.json"


def progress_folder(target: Target) -> Path:
    """Where imports into ``target`` keep their progress files.

    The local stack: its state folder's ``imports/`` (which its moto process names at
    ``/_local/state``), so progress is discarded with the data it describes: ``--fresh``
    removes both, and a stack without a state folder keeps them in a folder that goes when it does.

    A deployed stack: the user's state folder ($XDG_STATE_HOME, else ~/.local/state), under
    ``optout/imports/<region>/<table>/``. Not next to the input file as before: that kept one
    progress per file whatever the target, so importing a file into dev and then into prod would
    have skipped in prod every row done in dev. Not in the checkout either: the data lives in AWS
    and outlives any checkout, and nothing of it belongs in git.
    """
    if target.local:
        endpoint = target.clients("dynamodb").meta.endpoint_url
        with urllib.request.urlopen(f"{endpoint}/_local/state", timeout=30) as response:  # noqa: S310  # nosec B310
            return Path(json.load(response)["imports_dir"])
    home = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return home / "optout" / "imports" / target.region / target.table


def progress_file(path: Path, folder: Path | None = None) -> Path:
    """The progress file of importing ``path``: next to it, or in ``folder`` (named after it)."""
    if folder is None:
        return path.with_name(path.name + PROGRESS_SUFFIX)
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]  # same name, other folder
    return folder / f"{path.name}.{digest}{PROGRESS_SUFFIX}"


# (changes made, changes saved) of a local stack's moto process: see snapshot_watch
Durable = Callable[[], tuple[int, int]]


def snapshot_watch(target: Target) -> Durable | None:
    """For a local stack that saves its state: how many changes it has made, and how many its last
    snapshot holds. A SIGKILL of that stack loses what came after the snapshot, so an import's
    progress may only record chunks the snapshot holds (or a resumed import would skip rows that
    are gone). None for a deployed stack (DynamoDB keeps what it acknowledged) or one in memory."""
    if not target.local:
        return None
    url = f"{target.clients('dynamodb').meta.endpoint_url}/_local/state"

    def counts() -> tuple[int, int]:
        with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - our own local URL  # nosec B310
            state = json.load(response)
        return int(state["changes"]), int(state["saved"])

    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - our own local URL  # nosec B310
        return counts if "saved" in json.load(response) else None


class _Progress:
    """An import's progress file; with ``durable``, never ahead of the store's last snapshot."""

    def __init__(self, path: Path, durable: Durable | None) -> None:
        self.path = path
        self.durable = durable
        self.pending: list[tuple[int, int]] = []  # (changes once a chunk was written, its last line)

    def written(self, line: int) -> None:
        if self.durable is None:
            self._save(line)
            return
        changes, saved = self.durable()
        self.pending.append((changes, line))
        self._catch_up(saved)

    def complete(self, line: int, timeout: float = 60) -> None:
        """Mark the import complete once everything it wrote is saved (a second or two locally)."""
        deadline = time.monotonic() + timeout
        while self.durable is not None and self.pending:
            _, saved = self.durable()
            self._catch_up(saved)
            if self.pending and time.monotonic() > deadline:
                return  # not marked complete: a rerun re-applies what may be missing (it is idempotent)
            if self.pending:
                time.sleep(0.1)
        self._save(line, complete=True)

    def _catch_up(self, saved: int) -> None:
        line = None
        while self.pending and self.pending[0][0] <= saved:
            line = self.pending.pop(0)[1]
        if line is not None:
            self._save(line)

    def _save(self, line: int, complete: bool = False) -> None:
        self.path.write_text(json.dumps({"line": line, "complete": True} if complete else {"line": line}))


@dataclass(frozen=True)
class ImportRow:
    line: int
    channel: Channel
    address: str
    scope: str
    reason: str


@dataclass
class ImportReport:
    read: int = 0
    imported: int = 0
    unchanged: int = 0
    invalid: list[tuple[int, str]] = field(default_factory=list)
    resumed_from: int = 0


def rows(path: Path, fmt: str) -> Iterator[ImportRow | tuple[int, str]]:
    """Yield import rows, or (line, reason) for rows that cannot be imported."""
    text = path.read_text(encoding="utf-8-sig")
    if fmt == "ses" and text.lstrip().startswith("{"):
        document = json.loads(text)
        for index, item in enumerate(document.get("SuppressedDestinationSummaries", []), start=1):
            yield _ses(index, item.get("EmailAddress", ""), item.get("Reason", ""))
        return
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in reader.fieldnames or []]
    for number, record in enumerate(reader, start=2):
        row = {k.strip().lower(): (v or "").strip() for k, v in record.items() if k}
        if fmt == "ses":
            yield _ses(number, row.get("emailaddress") or row.get("email_address", ""), row.get("reason", ""))
        elif fmt == "sendgrid":
            address = row.get("email", "")
            if "status" in header and "reason" in header:  # bounces export
                yield ImportRow(number, "email", address, CHANNEL_SCOPE, "bounce")
            elif "ip" in header:  # spam reports export
                yield ImportRow(number, "email", address, OPTIONAL_SCOPE, "complaint")
            else:  # unsubscribes / global unsubscribes export
                yield ImportRow(number, "email", address, OPTIONAL_SCOPE, "unsubscribe")
        else:
            channel: Channel
            if row.get("channel") == "email":
                channel = "email"
            elif row.get("channel") == "sms":
                channel = "sms"
            else:
                yield number, "channel must be email or sms"
                continue
            reason = row.get("reason", "") or "import"
            yield ImportRow(number, channel, row.get("address", ""), row.get("scope", ""), reason)


def _ses(number: int, address: str, reason: str) -> ImportRow | tuple[int, str]:
    if reason.upper() == "BOUNCE":
        return ImportRow(number, "email", address, CHANNEL_SCOPE, "bounce")
    if reason.upper() == "COMPLAINT":
        return ImportRow(number, "email", address, OPTIONAL_SCOPE, "complaint")
    return number, "Reason must be BOUNCE or COMPLAINT"


class Importer:
    def __init__(self, settings: Settings, table: str, client: Any, pepper: bytes) -> None:
        self.settings = settings
        self.store = DynamoSuppressionStore(table, client)
        self.pepper = pepper

    def change_for(self, row: ImportRow) -> ConsentChange:
        if row.scope == CHANNEL_SCOPE:
            return ConsentChange("block", CHANNEL_SCOPE, row.reason)
        if row.scope == OPTIONAL_SCOPE or row.scope in self.settings.optional_topics:
            return ConsentChange("opt_out", row.scope)
        raise ValueError("scope must be channel, optional or an optional topic")

    def run(
        self,
        path: Path,
        fmt: str,
        progress: Callable[[int], None],
        resume: bool = True,
        progress_dir: Path | None = None,
        durable: Durable | None = None,
    ) -> ImportReport:
        """Import ``path``; progress goes to ``progress_dir`` (see ``progress_folder``), else next to it.

        ``durable`` (see ``snapshot_watch``): the progress file then never gets ahead of what the
        store will still hold after a crash.
        """
        checkpoint = progress_file(path, progress_dir)
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        done = json.loads(checkpoint.read_text())["line"] if resume and checkpoint.exists() else 0
        saved = _Progress(checkpoint, durable)
        report = ImportReport(resumed_from=done)
        chunk: list[tuple[ImportRow, str, ConsentChange]] = []
        last_line = done
        for item in rows(path, fmt):
            line = item[0] if isinstance(item, tuple) else item.line
            if line <= done:
                continue
            report.read += 1
            last_line = line
            if isinstance(item, tuple):
                report.invalid.append(item)
                continue
            try:
                identity = Identity.of(self.pepper, item.channel, item.address)
                change = self.change_for(item)
            except (InvalidAddress, ValueError) as exc:
                report.invalid.append((item.line, getattr(exc, "message", None) or str(exc)))
                continue
            chunk.append((item, identity.key, change))
            if len(chunk) >= CHUNK:
                self._write(chunk, report)
                saved.written(chunk[-1][0].line)  # saved before anything else
                progress(len(chunk))
                chunk = []
        if chunk:
            self._write(chunk, report)
            saved.written(chunk[-1][0].line)
            progress(len(chunk))
        saved.complete(last_line)
        return report

    def _write(self, chunk: list[tuple[ImportRow, str, ConsentChange]], report: ImportReport) -> None:
        """Merge a chunk's rows into the states they name, each write conditional on the version read.

        A state that changed since it was read (an opt-out arriving during the import) fails its
        transaction; the addresses of that transaction are read again and their rows re-applied on
        top of the newer state, so the import never erases what happened meanwhile.
        """
        rows_of: dict[str, list[tuple[ImportRow, ConsentChange]]] = {}
        for row, key, change in chunk:
            rows_of.setdefault(key, []).append((row, change))
        states = self.store.get_many(list(rows_of))
        pending = list(rows_of)
        for _ in range(MAX_ATTEMPTS):
            conflicted: list[str] = []
            writes: list[tuple[StateWrite, int]] = []
            for key in pending:
                write, imported, unchanged = self._merge(key, states.get(key), rows_of[key])
                if write is None:
                    report.unchanged += unchanged
                else:
                    writes.append((write, imported))
            for batch in _transactions(writes):
                try:
                    self.store.save_many([write for write, _ in batch])
                except ConcurrentUpdate:
                    conflicted += [write.state.address_key for write, _ in batch]
                    continue
                for write, imported in batch:
                    report.imported += imported
                    report.unchanged += len(rows_of[write.state.address_key]) - imported
            if not conflicted:
                return
            fresh = self.store.get_many(conflicted)
            states = {k: v for k, v in states.items() if k not in conflicted} | fresh
            pending = conflicted
        raise ConcurrentUpdate("suppression states kept changing during the import; run it again to resume")

    def _merge(
        self, key: str, state: SuppressionState | None, rows: list[tuple[ImportRow, ConsentChange]]
    ) -> tuple[StateWrite | None, int, int]:
        """The write that applies ``rows`` to ``state`` (None if they change nothing), and the
        counts of rows that changed something and of rows that did not."""
        read = state or empty_state(key, rows[0][0].channel)
        current, imported = read, 0
        events: list[ConsentEvent] = []
        now = datetime.now(UTC)
        for row, change in rows:
            current, new_events = apply_changes(
                current, [change], self.settings.optional_topics, "import", now, evidence={"reason": row.reason}
            )
            imported += bool(new_events)
            events += new_events
        if not events:
            return None, 0, len(rows)
        return StateWrite(current, read.version, events), imported, len(rows) - imported


def _transactions(writes: list[tuple[StateWrite, int]]) -> Iterator[list[tuple[StateWrite, int]]]:
    """Pack writes into transactions of at most TRANSACTION_LIMIT items (a state and its events)."""
    batch: list[tuple[StateWrite, int]] = []
    size = 0
    for write in writes:
        items = 1 + len(write[0].events)
        if batch and size + items > TRANSACTION_LIMIT:
            yield batch
            batch, size = [], 0
        batch.append(write)
        size += items
    if batch:
        yield batch


def export_rows(client: Any, table: str) -> Iterator[dict[str, str]]:
    """Every suppression state as a CSV row: address keys, scopes, reasons and times."""
    paginator = client.get_paginator("scan")
    for page in paginator.paginate(
        TableName=table, FilterExpression="sk = :state", ExpressionAttributeValues={":state": {"S": "state"}}
    ):
        for item in page.get("Items", []):
            state = item_to_state(item)
            scopes = []
            if state.blocked:
                scopes.append(CHANNEL_SCOPE)
            if state.all_optional:
                scopes.append(OPTIONAL_SCOPE)
            scopes += sorted(state.topics)
            if not scopes:
                continue
            yield {
                "address_key": state.address_key,
                "channel": state.channel,
                "scopes": " ".join(scopes),
                "blocked_reason": state.blocked.reason if state.blocked else "",
                "blocked_source": state.blocked.source if state.blocked else "",
                "blocked_at": state.blocked.at.isoformat() if state.blocked else "",
                "updated_at": state.updated_at.isoformat() if state.updated_at else "",
            }
