"""Where suppression state and consent events live: DynamoDB, or memory for unit tests.

Item layout in the SuppressionTable (pk = address key, never an address):

    sk = "state"                       one per address: channel, blocked, all_optional, topics, version
    sk = "event#<iso time>#<uuid>"     append-only consent events

A state change and its events are written in one transaction, conditional on the version that
was read, so two concurrent opt-outs cannot lose each other. A bulk writer (the importer) writes
many addresses in one transaction the same way (``save_many``), each conditional on its own version.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from optout.clients import DynamoTable, iso_lower_bound
from optout.errors import AlreadyProcessed, ConcurrentUpdate
from optout.suppression import Block, ConsentEvent, SuppressionState

STATE_SK = "state"
EVENT_PREFIX = "event#"
ONCE_PREFIX = "once#"
ONCE_SK = "once"
ONCE_TTL = timedelta(days=90)
BATCH_GET_LIMIT = 100
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
    ) -> None: ...

    def save_many(self, writes: Sequence[StateWrite]) -> None: ...

    def record(self, address_key: str, events: Sequence[ConsentEvent], once: OnceMarker | None = None) -> None: ...

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
    ) -> None:
        self._check(state.address_key, expected_version)
        self._claim(once)
        self.states[state.address_key] = state
        self.events.setdefault(state.address_key, []).extend(events)

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

    def record(self, address_key: str, events: Sequence[ConsentEvent], once: OnceMarker | None = None) -> None:
        self._claim(once)
        self.events.setdefault(address_key, []).extend(events)

    def _claim(self, once: OnceMarker | None) -> None:
        if once is not None:
            if once.key in self.once:
                raise AlreadyProcessed("this inbound message was already processed")
            self.once[once.key] = once

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


def _s(value: str) -> dict[str, Any]:
    return {"S": value}


def _map(values: dict[str, str]) -> dict[str, Any]:
    return {"M": {k: _s(v) for k, v in values.items()}}


def _unmap(attr: dict[str, Any] | None) -> dict[str, str]:
    return {k: v["S"] for k, v in (attr or {}).get("M", {}).items()}


def state_to_item(state: SuppressionState) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": _s(state.address_key),
        "sk": _s(STATE_SK),
        "channel": _s(state.channel),
        "all_optional": {"BOOL": state.all_optional},
        "version": {"N": str(state.version)},
    }
    if state.topics:
        item["topics"] = {"SS": sorted(state.topics)}
    if state.blocked is not None:
        block = state.blocked
        item["blocked"] = {
            "M": {
                "reason": _s(block.reason),
                "source": _s(block.source),
                "at": _s(block.at.isoformat()),
                "evidence": _map(block.evidence),
            }
        }
    if state.updated_at is not None:
        item["updated_at"] = _s(state.updated_at.isoformat())
    if state.keyword_at is not None:
        item["keyword_at"] = _s(state.keyword_at.isoformat())
    if state.erased_at is not None:
        item["erased_at"] = _s(state.erased_at.isoformat())
    return item


def item_to_state(item: dict[str, Any]) -> SuppressionState:
    blocked = None
    if "blocked" in item:
        b = item["blocked"]["M"]
        blocked = Block(
            reason=b["reason"]["S"],
            source=b["source"]["S"],
            at=datetime.fromisoformat(b["at"]["S"]),
            evidence=_unmap(b.get("evidence")),
        )
    return SuppressionState(
        address_key=item["pk"]["S"],
        channel=item["channel"]["S"],
        blocked=blocked,
        all_optional=item.get("all_optional", {}).get("BOOL", False),
        topics=frozenset(item.get("topics", {}).get("SS", [])),
        version=int(item["version"]["N"]),
        updated_at=datetime.fromisoformat(item["updated_at"]["S"]) if "updated_at" in item else None,
        keyword_at=datetime.fromisoformat(item["keyword_at"]["S"]) if "keyword_at" in item else None,
        erased_at=datetime.fromisoformat(item["erased_at"]["S"]) if "erased_at" in item else None,
    )


def event_to_item(address_key: str, event: ConsentEvent) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": _s(address_key),
        "sk": _s(f"{EVENT_PREFIX}{event.at.isoformat()}#{uuid.uuid4().hex}"),
        "action": _s(event.action),
        "scope": _s(event.scope),
        "source": _s(event.source),
        "at": _s(event.at.isoformat()),
        "evidence": _map(event.evidence),
    }
    if event.actor:
        item["actor"] = _s(event.actor)
    return item


def item_to_event(item: dict[str, Any]) -> ConsentEvent:
    return ConsentEvent(
        action=item["action"]["S"],
        scope=item["scope"]["S"],
        source=item["source"]["S"],
        at=datetime.fromisoformat(item["at"]["S"]),
        evidence=_unmap(item.get("evidence")),
        actor=item["actor"]["S"] if "actor" in item else None,
    )


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class DynamoSuppressionStore(DynamoTable):
    def get(self, address_key: str) -> SuppressionState | None:
        response = self.client.get_item(
            TableName=self.table, Key={"pk": _s(address_key), "sk": _s(STATE_SK)}, ConsistentRead=True
        )
        item = response.get("Item")
        return item_to_state(item) if item else None

    def get_many(self, address_keys: Sequence[str]) -> dict[str, SuppressionState]:
        """Strongly consistent BatchGetItem, one call per 100 keys plus retries of unprocessed keys."""
        found: dict[str, SuppressionState] = {}
        unique = list(dict.fromkeys(address_keys))
        for chunk in _chunks(unique, BATCH_GET_LIMIT):
            request: dict[str, Any] = {
                self.table: {"Keys": [{"pk": _s(k), "sk": _s(STATE_SK)} for k in chunk], "ConsistentRead": True}
            }
            attempt = 0
            while request:
                response = self.client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self.table, []):
                    state = item_to_state(item)
                    found[state.address_key] = state
                request = dict(response.get("UnprocessedKeys") or {})
                if request:
                    attempt += 1
                    time.sleep(min(2.0, 0.05 * 2**attempt) * random.random())  # noqa: S311 - jitter  # nosec B311
        return found

    def history(self, address_key: str) -> list[ConsentEvent]:
        events: list[ConsentEvent] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": _s(address_key), ":prefix": _s(EVENT_PREFIX)},
            "ConsistentRead": True,
        }
        while True:
            response = self.client.query(**kwargs)
            events.extend(item_to_event(item) for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return events
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

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
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "FilterExpression": "sk = :state AND (updated_at >= :since OR attribute_exists(blocked)"
            " OR all_optional = :true OR attribute_exists(topics))",
            "ExpressionAttributeValues": {
                ":state": _s(STATE_SK),
                ":since": _s(iso_lower_bound(since)),
                ":true": {"BOOL": True},
            },
            "Limit": limit,
        }
        if start:
            kwargs["ExclusiveStartKey"] = start
        response = self.client.scan(**kwargs)
        return [item_to_state(item) for item in response.get("Items", [])], response.get("LastEvaluatedKey")

    def save(
        self,
        state: SuppressionState,
        expected_version: int,
        events: Sequence[ConsentEvent],
        once: OnceMarker | None = None,
    ) -> None:
        self._transact([self._state_put(state, expected_version), *self._event_puts(state.address_key, events)], once)

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
                "ExpressionAttributeValues": {":expected": {"N": str(expected_version)}},
            }
        return {"Put": {"TableName": self.table, "Item": state_to_item(state), **condition}}

    def record(self, address_key: str, events: Sequence[ConsentEvent], once: OnceMarker | None = None) -> None:
        """Append events (and claim ``once``) without touching the state item."""
        puts = self._event_puts(address_key, events)
        if puts or once is not None:
            self._transact(puts, once)

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

    def _transact(self, items: list[Any], once: OnceMarker | None) -> None:
        if once is not None:
            marker: dict[str, Any] = {
                "pk": _s(ONCE_PREFIX + once.key),
                "sk": _s(ONCE_SK),
                "expires_at": {"N": str(int((datetime.now().astimezone() + ONCE_TTL).timestamp()))},
            }
            if once.reply is not None:
                marker["reply"] = _s(once.reply)
            if once.replied_at is not None:
                marker["replied_at"] = _s(once.replied_at.isoformat())
            for name in ("claimed_by", "mirror", "reply_outcome"):
                value = getattr(once, name)
                if value is not None:
                    marker[name] = _s(value)
            items.append(
                {"Put": {"TableName": self.table, "Item": marker, "ConditionExpression": "attribute_not_exists(pk)"}}
            )
        try:
            self.client.transact_write_items(TransactItems=items)
        except self.client.exceptions.TransactionCanceledException as exc:
            reasons: list[dict[str, Any]] = list(exc.response.get("CancellationReasons", []))  # type: ignore[arg-type]
            codes = [r.get("Code") for r in reasons]
            if once is not None and codes and codes[-1] == "ConditionalCheckFailed":
                raise AlreadyProcessed("this inbound message was already processed") from exc
            if any(c in ("ConditionalCheckFailed", "TransactionConflict") for c in codes):
                raise ConcurrentUpdate("suppression state changed while it was being updated") from exc
            raise

    def once_get(self, key: str) -> OnceMarker | None:
        response = self.client.get_item(
            TableName=self.table, Key={"pk": _s(ONCE_PREFIX + key), "sk": _s(ONCE_SK)}, ConsistentRead=True
        )
        item = response.get("Item")
        if not item:
            return None
        replied = item.get("replied_at", {}).get("S")
        text: dict[str, str | None] = {
            name: item[name]["S"] if name in item else None
            for name in ("reply", "claimed_by", "mirror", "reply_outcome")
        }
        return OnceMarker(
            key=key,
            reply=text["reply"],
            replied_at=datetime.fromisoformat(replied) if replied else None,
            claimed_by=text["claimed_by"],
            mirror=text["mirror"],
            reply_outcome=text["reply_outcome"],
        )

    def once_mark_replied(self, key: str, at: datetime, by: str | None = None, over: str | None = None) -> bool:
        """Claim the reply (set replied_at, and ``by``); False if it was already claimed (someone else sends it).

        ``over``: a claim by that attempt may be taken over (it is known to have sent nothing).
        """
        condition = "attribute_exists(pk) AND attribute_not_exists(replied_at)"
        values: dict[str, Any] = {":at": _s(at.isoformat())}
        if over is not None:
            condition = "attribute_exists(pk) AND (attribute_not_exists(replied_at) OR claimed_by = :over)"
            values[":over"] = _s(over)
        update = "SET replied_at = :at"
        if by is not None:
            update += ", claimed_by = :by"
            values[":by"] = _s(by)
        else:
            update += " REMOVE claimed_by"
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"pk": _s(ONCE_PREFIX + key), "sk": _s(ONCE_SK)},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def once_unmark_replied(self, key: str) -> None:
        """Give the reply back (its send surely failed) so a redelivery sends it."""
        self._once_update(key, "REMOVE replied_at, claimed_by")

    def once_reply_unknown(self, key: str) -> None:
        """The reply's send may have gone out (its answer was lost): it stays claimed, and says so."""
        self._once_update(key, "SET reply_outcome = :unknown", {":unknown": _s("unknown")})

    def once_mirrored(self, key: str) -> None:
        """The opt-out list holds what the message changed: no redelivery mirrors it again."""
        self._once_update(key, "REMOVE mirror")

    def _once_update(self, key: str, update: str, values: dict[str, Any] | None = None) -> None:
        request: dict[str, Any] = {
            "TableName": self.table,
            "Key": {"pk": _s(ONCE_PREFIX + key), "sk": _s(ONCE_SK)},
            "UpdateExpression": update,
            "ConditionExpression": "attribute_exists(pk)",
        }
        if values:
            request["ExpressionAttributeValues"] = values
        self.client.update_item(**request)
