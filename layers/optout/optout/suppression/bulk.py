"""Suppressions in bulk: import a batch of rows, export every suppression a page at a time.

``POST /admin/suppressions/import`` (``optout suppression import``) takes at most
``MAX_IMPORT_ROWS`` rows a request and answers one result per row, in order, so the CLI reports
each and saves its progress after each batch. Every address is normalised and hashed on the way in
(nothing plain is stored); a batch's rows are merged with the states already there and written in
transactions conditional on the version read (an opt-out that lands meanwhile is re-read, never
overwritten). Each event records the IAM principal that imported it. A batch sent twice changes
nothing the second time.

``GET /admin/suppressions/export`` (``optout suppression export``): one page of a Scan of the state
items, as CSV-ready rows of address keys, scopes, reasons and times (never an address).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from optout.core import page_token
from optout.core.dynamo import page, to_item
from optout.core.errors import ConcurrentUpdate, InvalidAddress
from optout.core.identity import Channel, Identity
from optout.core.settings import TopicSettings
from optout.suppression.consent import MAX_ATTEMPTS
from optout.suppression.model import (
    CHANNEL_SCOPE,
    OPTIONAL_SCOPE,
    ConsentChange,
    ConsentEvent,
    SuppressionState,
    apply_changes,
    empty_state,
)
from optout.suppression.store import STATE_SK, TRANSACTION_LIMIT, DynamoSuppressionStore, StateWrite, item_to_state

MAX_IMPORT_ROWS = 500  # a request's rows: well inside the body limit and a few seconds of writes
EXPORT_COLUMNS = ("address_key", "channel", "scopes", "blocked_reason", "blocked_source", "blocked_at", "updated_at")
BAD_SCOPE = "scope must be channel, optional or an optional topic"
Outcome = Literal["imported", "unchanged", "invalid"]


class ImportRow(BaseModel, extra="forbid"):
    """One row; ``line`` is the caller's (its file's line number), echoed in the row's result."""

    line: int = Field(default=0, ge=0, le=2**31)
    channel: Channel
    # Loose on purpose: a row that is not an address is a per-row result, not a refusal of the batch
    address: Annotated[str, StringConstraints(max_length=320)]
    scope: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)]
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)] = "import"


class ImportRequest(BaseModel, extra="forbid"):
    rows: Annotated[list[ImportRow], Field(min_length=1, max_length=MAX_IMPORT_ROWS)]


@dataclass
class _Result:
    line: int
    outcome: Outcome = "unchanged"
    message: str | None = None

    def public(self) -> dict[str, Any]:
        return {"line": self.line, "outcome": self.outcome, "message": self.message}


@dataclass
class _Pending:
    result: _Result
    change: ConsentChange
    reason: str
    channel: Channel


@dataclass
class SuppressionBulk:
    settings: TopicSettings
    store: DynamoSuppressionStore
    pepper: Callable[[], bytes]
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    def change_for(self, scope: str, reason: str) -> ConsentChange:
        if scope == CHANNEL_SCOPE:
            return ConsentChange("block", CHANNEL_SCOPE, reason)
        if scope == OPTIONAL_SCOPE or scope in self.settings.optional_topics:
            return ConsentChange("opt_out", scope)
        raise ValueError(BAD_SCOPE)

    def import_rows(self, request: ImportRequest, actor: str) -> dict[str, Any]:
        """Apply the rows; one result per row, in order (``message`` says why a row is invalid)."""
        pepper = self.pepper()
        results: list[_Result] = []
        rows_of: dict[str, list[_Pending]] = {}
        for row in request.rows:
            result = _Result(row.line)
            results.append(result)
            try:
                identity = Identity.of(pepper, row.channel, row.address)
                change = self.change_for(row.scope, row.reason)
            except (InvalidAddress, ValueError) as exc:  # messages name no address
                result.outcome, result.message = "invalid", getattr(exc, "message", None) or str(exc)
                continue
            rows_of.setdefault(identity.key, []).append(_Pending(result, change, row.reason, identity.channel))
        self._write(rows_of, actor)
        counts = {name: sum(r.outcome == name for r in results) for name in ("imported", "unchanged", "invalid")}
        return {"results": [r.public() for r in results], **counts}

    def _write(self, rows_of: dict[str, list[_Pending]], actor: str) -> None:
        """Merge each address's rows into its state, each write conditional on the version read.

        A state that changed since it was read (an opt-out arriving during the import) fails its
        transaction; the addresses of that transaction are read again and their rows re-applied on
        top of the newer state, so the import never erases what happened meanwhile.
        """
        if not rows_of:
            return
        states = self.store.get_many(list(rows_of))
        pending = list(rows_of)
        for _ in range(MAX_ATTEMPTS):
            conflicted: list[str] = []
            writes: list[tuple[StateWrite, list[bool]]] = []
            for key in pending:
                write, changed = self._merge(key, states.get(key), rows_of[key], actor)
                if write is not None:
                    writes.append((write, changed))
            for batch in _transactions(writes):
                try:
                    self.store.save_many([write for write, _ in batch])
                except ConcurrentUpdate:
                    conflicted += [write.state.address_key for write, _ in batch]
                    continue
                for write, changed in batch:
                    for row, did in zip(rows_of[write.state.address_key], changed, strict=True):
                        row.result.outcome = "imported" if did else "unchanged"
            if not conflicted:
                return
            fresh = self.store.get_many(conflicted)
            states = {k: v for k, v in states.items() if k not in conflicted} | fresh
            pending = conflicted
        raise ConcurrentUpdate("suppression states kept changing during the import; send the batch again")

    def _merge(
        self, key: str, state: SuppressionState | None, rows: list[_Pending], actor: str
    ) -> tuple[StateWrite | None, list[bool]]:
        """The write that applies ``rows`` to ``state`` (None if they change nothing), and which rows changed it."""
        read = state or empty_state(key, rows[0].channel)
        current = read
        events: list[ConsentEvent] = []
        changed: list[bool] = []
        now = self.now()
        for row in rows:
            current, new_events = apply_changes(
                current, [row.change], self.settings.optional_topics, "import", now,
                evidence={"reason": row.reason}, actor=actor,
            )  # fmt: skip
            changed.append(bool(new_events))
            events += new_events
        if not events:
            return None, changed
        return StateWrite(current, read.version, events), changed

    def export_page(self, limit: int, next_token: str | None) -> tuple[list[dict[str, str]], str | None]:
        """One page of every suppression (``limit`` state items read; a page may be empty and still
        have a next one), and the token of the next page (None: the table is done)."""
        start = page_token.decode(next_token, ("pk", "sk")) if next_token else None
        items, last = page(
            self.store.client, "scan", start,
            TableName=self.store.table, FilterExpression="sk = :state",
            ExpressionAttributeValues=to_item({":state": STATE_SK}), Limit=limit,
        )  # fmt: skip
        rows = [row for row in (export_row(item_to_state(item)) for item in items) if row is not None]
        return rows, page_token.encode(last)


def export_row(state: SuppressionState) -> dict[str, str] | None:
    """A state as an export row (None: it suppresses nothing)."""
    scopes = []
    if state.blocked:
        scopes.append(CHANNEL_SCOPE)
    if state.all_optional:
        scopes.append(OPTIONAL_SCOPE)
    scopes += sorted(state.topics)
    if not scopes:
        return None
    return {
        "address_key": state.address_key,
        "channel": state.channel,
        "scopes": " ".join(scopes),
        "blocked_reason": state.blocked.reason if state.blocked else "",
        "blocked_source": state.blocked.source if state.blocked else "",
        "blocked_at": state.blocked.at.isoformat() if state.blocked else "",
        "updated_at": state.updated_at.isoformat() if state.updated_at else "",
    }


def _transactions(writes: list[tuple[StateWrite, list[bool]]]) -> Iterator[list[tuple[StateWrite, list[bool]]]]:
    """Pack writes into transactions of at most TRANSACTION_LIMIT items (a state and its events)."""
    batch: list[tuple[StateWrite, list[bool]]] = []
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
