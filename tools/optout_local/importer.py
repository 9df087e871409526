"""Import suppressions from another provider: SES suppression list, SendGrid exports, plain CSV.

The file is read here and its rows go to the admin API (``POST /admin/suppressions/import``) in
batches, so each change records the IAM principal who imported it; the API normalises and hashes
every address (nothing plain is stored) and merges the rows as ``optout.suppression.bulk`` says.
Progress is saved, as a line number, once a batch is answered (see ``progress_folder`` for where),
so an interrupted import resumes after the last answered batch (a batch sent again changes
nothing). Invalid rows are reported with their line numbers.
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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optout.core.identity import Channel
from optout.suppression.bulk import BAD_SCOPE
from optout.suppression.model import CHANNEL_SCOPE, OPTIONAL_SCOPE

if TYPE_CHECKING:
    from optout_local.target import Target

CHUNK = 100  # rows a request (the API takes up to 500): progress is saved this often
MAX_ADDRESS = 320  # as the API's row model
MAX_SCOPE = 64
MAX_REASON = 500
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
    """Sends the rows to ``POST /admin/suppressions/import``, ``CHUNK`` a request (``send``: one
    request's rows in, its answer out), and saves the progress after each answered batch."""

    def __init__(self, send: Callable[[list[dict[str, Any]]], dict[str, Any]]) -> None:
        self.send = send

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
        chunk: list[ImportRow] = []
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
            problem = _too_long(item)
            if problem is not None:
                report.invalid.append(problem)
                continue
            chunk.append(item)
            if len(chunk) >= CHUNK:
                self._send(chunk, report)
                saved.written(chunk[-1].line)  # saved before anything else
                progress(len(chunk))
                chunk = []
        if chunk:
            self._send(chunk, report)
            saved.written(chunk[-1].line)
            progress(len(chunk))
        saved.complete(last_line)
        report.invalid.sort()
        return report

    def _send(self, chunk: list[ImportRow], report: ImportReport) -> None:
        answer = self.send(
            [{"line": r.line, "channel": r.channel, "address": r.address, "scope": r.scope, "reason": r.reason}
             for r in chunk]
        )  # fmt: skip
        for result in answer["results"]:
            if result["outcome"] == "imported":
                report.imported += 1
            elif result["outcome"] == "unchanged":
                report.unchanged += 1
            else:
                report.invalid.append((result["line"], result.get("message") or "invalid"))


def _too_long(row: ImportRow) -> tuple[int, str] | None:
    """A row the API's request model would refuse with the whole batch: reported here, as its line."""
    if len(row.address) > MAX_ADDRESS:
        return row.line, f"an address has at most {MAX_ADDRESS} characters"
    if len(row.scope) > MAX_SCOPE:
        return row.line, BAD_SCOPE
    if len(row.reason) > MAX_REASON:
        return row.line, f"a reason has at most {MAX_REASON} characters"
    return None
