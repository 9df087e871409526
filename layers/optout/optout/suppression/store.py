"""Where suppression state and consent events live: DynamoDB, or memory for unit tests.

Item layout in the SuppressionTable (pk = address key, never an address):

    sk = "state"                       one per address: channel, blocked, all_optional, topics, version
    sk = "event#<iso time>#<uuid>"     append-only consent events

A state change and its events are written in one transaction, conditional on the version that
was read, so two concurrent opt-outs cannot lose each other. A bulk writer (the importer) writes
many addresses in one transaction the same way (``save_many``), each conditional on its own version.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from optout.core.dynamo import DynamoTable, batch_get, from_item, iso_lower_bound, items_under, page, to_item
from optout.core.errors import ConcurrentUpdate
from optout.suppression.model import Block, ConsentEvent, SuppressionState

STATE_SK = "state"
EVENT_PREFIX = "event#"
ONCE_PREFIX = "once#"
ONCE_SK = "once"
ONCE_TTL = timedelta(days=90)
TRANSACTION_LIMIT = 100  # items in one TransactWriteItems


@dataclass(frozen=True)
class OnceMarker:
    """Proof that one inbound message (a carrier's message id) was processed, and its reply.

    Written in the same transaction as the change it caused, so a redelivered message is
    recognised without ever losing the change; ``replied_at`` is set once the reply went out.

    Each side effect that must happen once is tracked on its own, so a redelivery finishes what
    an attempt left undone:

    - the reply: ``replied_at`` is its claim, set before it is sent (SMS has no idempotency key:
      a claimed reply is never sent again), with ``claimed_by`` the attempt that claimed it (a
      webhook attempt that handed the message off sent nothing, so the queue may take its claim
      over) and ``reply_outcome`` ``unknown`` when the send's answer was lost;
    - the mirror into the provider's opt-out list: ``mirror`` (``opt_out`` or ``opt_in``) is
      written with the change and removed once mirrored (mirroring is idempotent).
    """

    key: str
    reply: str | None = None
    replied_at: datetime | None = None
    claimed_by: str | None = None
    mirror: str | None = None
    reply_outcome: str | None = None


@dataclass(frozen=True)
class StateWrite:
    """One address's new state, the version it was computed from, and the events that explain it."""

    state: SuppressionState
    expected_version: int
    events: Sequence[ConsentEvent] = ()


class SuppressionStore(Protocol):
    def get(self, address_key: str) -> SuppressionState | None: ...

    def get_many(self, address_keys: Sequence[str]) -> dict[str, SuppressionState]: ...

    def history(self, address_key: str) -> list[ConsentEvent]: ...

    def save(
        self,
        state: SuppressionState,
        expected_version: int,
        events: Sequence[ConsentEvent],
        once: OnceMarker | None = None,
    ) -> bool:
        """Write the state and its events; False (and nothing written) if ``once`` was claimed before."""
        ...

    def save_many(self, writes: Sequence[StateWrite]) -> None: ...

    def record(self, address_key: str, events: Sequence[ConsentEvent], once: OnceMarker | None = None) -> bool:
        """Append events; False (and nothing written) if ``once`` was claimed before."""
        ...

    def once_get(self, key: str) -> OnceMarker | None: ...

    def once_mark_replied(self, key: str, at: datetime, by: str | None = None, over: str | None = None) -> bool: ...

    def once_unmark_replied(self, key: str) -> None: ...

    def once_reply_unknown(self, key: str) -> None: ...

    def once_mirrored(self, key: str) -> None: ...


class MemorySuppressionStore:
    """A dict-backed store with the same contract, for fast unit tests of the rules."""

    def __init__(self) -> None:
        self.states: dict[str, SuppressionState] = {}
        self.events: dict[str, list[ConsentEvent]] = {}
        self.once: dict[str, OnceMarker] = {}

    def get(self, address_key: str) -> SuppressionState | None:
        return self.states.get(address_key)

    def get_many(self, address_keys: Sequence[str]) -> dict[str, SuppressionState]:
        return {k: self.states[k] for k in address_keys if k in self.states}

    def history(self, address_key: str) -> list[ConsentEvent]:
        return list(self.events.get(address_key, []))

    def save(
        self,
        state: SuppressionState,
        expected_version: int,
        events: Sequence[ConsentEvent],
        once: OnceMarker | None = None,
    ) -> bool:
        self._check(state.address_key, expected_version)
        if not self._claim(once):
            return False
        self.states[state.address_key] = state
        self.events.setdefault(state.address_key, []).extend(events)
        return True

    def save_many(self, writes: Sequence[StateWrite]) -> None:
        if len({w.state.address_key for w in writes}) != len(writes):
            raise ValueError("one write per address")  # as DynamoDB refuses two operations on one item
        for write in writes:  # all or nothing, as in a transaction
            self._check(write.state.address_key, write.expected_version)
        for write in writes:
            self.states[write.state.address_key] = write.state
            self.events.setdefault(write.state.address_key, []).extend(write.events)

    def _check(self, address_key: str, expected_version: int) -> None:
        current = self.states.get(address_key)
        if (current.version if current else 0) != expected_version:
            raise ConcurrentUpdate("suppression state changed while it was being updated")

    def record(self, address_key: str, events: Sequence[ConsentEvent], once: OnceMarker | None = None) -> bool:
        if not self._claim(once):
            return False
        self.events.setdefault(address_key, []).extend(events)
        return True

    def _claim(self, once: OnceMarker | None) -> bool:
        if once is not None:
            if once.key in self.once:
                return False
            self.once[once.key] = once
        return True

    def once_get(self, key: str) -> OnceMarker | None:
        return self.once.get(key)

    def once_mark_replied(self, key: str, at: datetime, by: str | None = None, over: str | None = None) -> bool:
        marker = self.once.get(key)
        if marker is None or (marker.replied_at is not None and (over is None or marker.claimed_by != over)):
            return False
        self.once[key] = replace(marker, replied_at=at, claimed_by=by)
        return True

    def once_unmark_replied(self, key: str) -> None:
        if key in self.once:
            self.once[key] = replace(self.once[key], replied_at=None, claimed_by=None)

    def once_reply_unknown(self, key: str) -> None:
        if key in self.once:
            self.once[key] = replace(self.once[key], reply_outcome="unknown")

    def once_mirrored(self, key: str) -> None:
        if key in self.once:
            self.once[key] = replace(self.once[key], mirror=None)


def state_to_item(state: SuppressionState) -> dict[str, Any]:
    plain: dict[str, Any] = {
        "pk": state.address_key,
        "sk": STATE_SK,
        "channel": state.channel,
        "all_optional": state.all_optional,
        "version": state.version,
    }
    if state.topics:  # DynamoDB refuses an empty set
        plain["topics"] = set(state.topics)
    if state.blocked is not None:
        block = state.blocked
        plain["blocked"] = {
            "reason": block.reason,
            "source": block.source,
            "at": block.at.isoformat(),
            "evidence": dict(block.evidence),
        }
    for name in ("updated_at", "keyword_at", "erased_at"):
        moment: datetime | None = getattr(state, name)
        if moment is not None:
            plain[name] = moment.isoformat()
    return to_item(plain)


def item_to_state(item: dict[str, Any]) -> SuppressionState:
    """A state from its item, as DynamoDB returns it."""
    plain = from_item(item)
    blocked = None
    if "blocked" in plain:
        b = plain["blocked"]
        blocked = Block(
            reason=b["reason"],
            source=b["source"],
            at=datetime.fromisoformat(b["at"]),
            evidence=b.get("evidence") or {},
        )
    moments = {
        name: datetime.fromisoformat(plain[name]) if name in plain else None
        for name in ("updated_at", "keyword_at", "erased_at")
    }
    return SuppressionState(
        address_key=plain["pk"],
        channel=plain["channel"],
        blocked=blocked,
        all_optional=plain.get("all_optional", False),
        topics=frozenset(plain.get("topics", ())),
        version=plain["version"],
        **moments,
    )


def event_to_item(address_key: str, event: ConsentEvent) -> dict[str, Any]:
    plain: dict[str, Any] = {
        "pk": address_key,
        "sk": f"{EVENT_PREFIX}{event.at.isoformat()}#{uuid.uuid4().hex}",
        "action": event.action,
        "scope": event.scope,
        "source": event.source,
        "at": event.at.isoformat(),
        "evidence": dict(event.evidence),
    }
    if event.actor:
        plain["actor"] = event.actor
    return to_item(plain)


def item_to_event(item: dict[str, Any]) -> ConsentEvent:
    plain = from_item(item)
    return ConsentEvent(
        action=plain["action"],
        scope=plain["scope"],
        source=plain["source"],
        at=datetime.fromisoformat(plain["at"]),
        evidence=plain.get("evidence") or {},
        actor=plain.get("actor"),
    )


def _key(pk: str, sk: str) -> dict[str, Any]:
    return to_item({"pk": pk, "sk": sk})


class DynamoSuppressionStore(DynamoTable):
    def get(self, address_key: str) -> SuppressionState | None:
        response = self.client.get_item(TableName=self.table, Key=_key(address_key, STATE_SK), ConsistentRead=True)
        item = response.get("Item")
        return item_to_state(item) if item else None

    def get_many(self, address_keys: Sequence[str]) -> dict[str, SuppressionState]:
        """Strongly consistent BatchGetItem, one call per 100 keys plus a few retries of unprocessed
        keys (``optout.core.dynamo.BatchUnfinished`` if DynamoDB still leaves some)."""
        found: dict[str, SuppressionState] = {}
        keys = [{"pk": k, "sk": STATE_SK} for k in dict.fromkeys(address_keys)]
        for item in batch_get(self.client, self.table, keys, consistent=True):
            state = item_to_state(item)
            found[state.address_key] = state
        return found

    def history(self, address_key: str) -> list[ConsentEvent]:
        return [item_to_event(item) for item in items_under(self.client, self.table, address_key, EVENT_PREFIX)]

    def reportable_since(
        self, since: datetime, limit: int, start: dict[str, Any] | None = None
    ) -> tuple[list[SuppressionState], dict[str, Any] | None]:
        """One page of a Scan: the state items changed at or after ``since``, or suppressing anything
        now (an older opt-out a send since then may have gone against), one per address, so an
        address is never listed twice; and the key to go on from (None: the table is done).

        A Scan reads every item of the table whatever its filter (``limit`` of them a call, so a page
        may be empty and still have more to come): a report costs one read of the whole table,
        eventually consistent (half the read units; a report is not a decision).
        """
        items, last = page(
            self.client,
            "scan",
            start,
            TableName=self.table,
            FilterExpression="sk = :state AND (updated_at >= :since OR attribute_exists(blocked)"
            " OR all_optional = :true OR attribute_exists(topics))",
            ExpressionAttributeValues=to_item({":state": STATE_SK, ":since": iso_lower_bound(since), ":true": True}),
            Limit=limit,
        )
        return [item_to_state(item) for item in items], last

    def save(
        self,
        state: SuppressionState,
        expected_version: int,
        events: Sequence[ConsentEvent],
        once: OnceMarker | None = None,
    ) -> bool:
        return self._transact(
            [self._state_put(state, expected_version), *self._event_puts(state.address_key, events)], once
        )

    def save_many(self, writes: Sequence[StateWrite]) -> None:
        """Write several addresses in one transaction (up to ``TRANSACTION_LIMIT`` items in all).

        Each state is conditional on the version its write was computed from: if any address
        changed meanwhile, nothing is written and ``ConcurrentUpdate`` says to re-read and re-apply.
        """
        items: list[Any] = []
        for write in writes:
            items += [self._state_put(write.state, write.expected_version)]
            items += self._event_puts(write.state.address_key, write.events)
        if len(items) > TRANSACTION_LIMIT:
            raise ValueError(f"a transaction holds at most {TRANSACTION_LIMIT} items, not {len(items)}")
        if items:
            self._transact(items, None)

    def _state_put(self, state: SuppressionState, expected_version: int) -> dict[str, Any]:
        condition: dict[str, Any]
        if expected_version == 0:
            condition = {"ConditionExpression": "attribute_not_exists(pk)"}
        else:
            condition = {
                "ConditionExpression": "version = :expected",
                "ExpressionAttributeValues": to_item({":expected": expected_version}),
            }
        return {"Put": {"TableName": self.table, "Item": state_to_item(state), **condition}}

    def record(self, address_key: str, events: Sequence[ConsentEvent], once: OnceMarker | None = None) -> bool:
        """Append events (and claim ``once``) without touching the state item."""
        puts = self._event_puts(address_key, events)
        return self._transact(puts, once) if puts or once is not None else True

    def _event_puts(self, address_key: str, events: Sequence[ConsentEvent]) -> list[Any]:
        return [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": event_to_item(address_key, event),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
            for event in events
        ]

    def _transact(self, items: list[Any], once: OnceMarker | None) -> bool:
        """The items in one transaction; False if ``once`` was claimed before (nothing is written)."""
        if once is not None:
            marker: dict[str, Any] = {
                "pk": ONCE_PREFIX + once.key,
                "sk": ONCE_SK,
                "expires_at": int((datetime.now().astimezone() + ONCE_TTL).timestamp()),
            }
            if once.reply is not None:
                marker["reply"] = once.reply
            if once.replied_at is not None:
                marker["replied_at"] = once.replied_at.isoformat()
            for name in ("claimed_by", "mirror", "reply_outcome"):
                value = getattr(once, name)
                if value is not None:
                    marker[name] = value
            put = {"TableName": self.table, "Item": to_item(marker), "ConditionExpression": "attribute_not_exists(pk)"}
            items.append({"Put": put})
        try:
            self.client.transact_write_items(TransactItems=items)
            return True
        except self.client.exceptions.TransactionCanceledException as exc:
            reasons: list[dict[str, Any]] = list(exc.response.get("CancellationReasons", []))  # type: ignore[arg-type]
            codes = [r.get("Code") for r in reasons]
            if once is not None and codes and codes[-1] == "ConditionalCheckFailed":
                return False  # this inbound message was processed before: no second effect
            if any(c in ("ConditionalCheckFailed", "TransactionConflict") for c in codes):
                raise ConcurrentUpdate("suppression state changed while it was being updated") from exc
            raise

    def once_get(self, key: str) -> OnceMarker | None:
        response = self.client.get_item(TableName=self.table, Key=_key(ONCE_PREFIX + key, ONCE_SK), ConsistentRead=True)
        item = response.get("Item")
        if not item:
            return None
        plain = from_item(item)
        replied = plain.get("replied_at")
        return OnceMarker(
            key=key,
            reply=plain.get("reply"),
            replied_at=datetime.fromisoformat(replied) if replied else None,
            claimed_by=plain.get("claimed_by"),
            mirror=plain.get("mirror"),
            reply_outcome=plain.get("reply_outcome"),
        )

    def once_mark_replied(self, key: str, at: datetime, by: str | None = None, over: str | None = None) -> bool:
        """Claim the reply (set replied_at, and ``by``); False if it was already claimed (someone else sends it).

        ``over``: a claim by that attempt may be taken over (it is known to have sent nothing).
        """
        condition = "attribute_exists(pk) AND attribute_not_exists(replied_at)"
        values: dict[str, Any] = {":at": at.isoformat()}
        if over is not None:
            condition = "attribute_exists(pk) AND (attribute_not_exists(replied_at) OR claimed_by = :over)"
            values[":over"] = over
        update = "SET replied_at = :at"
        if by is not None:
            update += ", claimed_by = :by"
            values[":by"] = by
        else:
            update += " REMOVE claimed_by"
        try:
            self.client.update_item(
                TableName=self.table,
                Key=_key(ONCE_PREFIX + key, ONCE_SK),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeValues=to_item(values),
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def once_unmark_replied(self, key: str) -> None:
        """Give the reply back (its send surely failed) so a redelivery sends it."""
        self._once_update(key, "REMOVE replied_at, claimed_by")

    def once_reply_unknown(self, key: str) -> None:
        """The reply's send may have gone out (its answer was lost): it stays claimed, and says so."""
        self._once_update(key, "SET reply_outcome = :unknown", {":unknown": "unknown"})

    def once_mirrored(self, key: str) -> None:
        """The opt-out list holds what the message changed: no redelivery mirrors it again."""
        self._once_update(key, "REMOVE mirror")

    def _once_update(self, key: str, update: str, values: dict[str, Any] | None = None) -> None:
        request: dict[str, Any] = {
            "TableName": self.table,
            "Key": _key(ONCE_PREFIX + key, ONCE_SK),
            "UpdateExpression": update,
            "ConditionExpression": "attribute_exists(pk)",
        }
        if values:
            request["ExpressionAttributeValues"] = to_item(values)
        self.client.update_item(**request)
