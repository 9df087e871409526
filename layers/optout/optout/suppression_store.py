"""Where suppression state and consent events live: DynamoDB, or memory for unit tests.

Item layout in the SuppressionTable (pk = address key, never an address):

    sk = "state"                       one per address: channel, blocked, all_optional, topics, version
    sk = "event#<iso time>#<uuid>"     append-only consent events

A state change and its events are written in one transaction, conditional on the version that
was read, so two concurrent opt-outs cannot lose each other.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from optout.errors import ConcurrentUpdate
from optout.suppression import Block, ConsentEvent, SuppressionState

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

STATE_SK = "state"
EVENT_PREFIX = "event#"
BATCH_GET_LIMIT = 100


class SuppressionStore(Protocol):
    def get(self, address_key: str) -> SuppressionState | None: ...

    def get_many(self, address_keys: Sequence[str]) -> dict[str, SuppressionState]: ...

    def history(self, address_key: str) -> list[ConsentEvent]: ...

    def save(self, state: SuppressionState, expected_version: int, events: Sequence[ConsentEvent]) -> None: ...


class MemorySuppressionStore:
    """A dict-backed store with the same contract, for fast unit tests of the rules."""

    def __init__(self) -> None:
        self.states: dict[str, SuppressionState] = {}
        self.events: dict[str, list[ConsentEvent]] = {}

    def get(self, address_key: str) -> SuppressionState | None:
        return self.states.get(address_key)

    def get_many(self, address_keys: Sequence[str]) -> dict[str, SuppressionState]:
        return {k: self.states[k] for k in address_keys if k in self.states}

    def history(self, address_key: str) -> list[ConsentEvent]:
        return list(self.events.get(address_key, []))

    def save(self, state: SuppressionState, expected_version: int, events: Sequence[ConsentEvent]) -> None:
        current = self.states.get(state.address_key)
        if (current.version if current else 0) != expected_version:
            raise ConcurrentUpdate("suppression state changed while it was being updated")
        self.states[state.address_key] = state
        self.events.setdefault(state.address_key, []).extend(events)


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


class DynamoSuppressionStore:
    def __init__(self, table: str, client: DynamoDBClient | None = None) -> None:
        self.table = table
        self._client = client

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            from optout import clients

            self._client = clients.dynamodb()
        return self._client

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
                    time.sleep(min(2.0, 0.05 * 2**attempt) * random.random())  # noqa: S311 - jitter
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

    def save(self, state: SuppressionState, expected_version: int, events: Sequence[ConsentEvent]) -> None:
        condition: dict[str, Any]
        if expected_version == 0:
            condition = {"ConditionExpression": "attribute_not_exists(pk)"}
        else:
            condition = {
                "ConditionExpression": "version = :expected",
                "ExpressionAttributeValues": {":expected": {"N": str(expected_version)}},
            }
        items: list[Any] = [{"Put": {"TableName": self.table, "Item": state_to_item(state), **condition}}]
        items += [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": event_to_item(state.address_key, event),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
            for event in events
        ]
        try:
            self.client.transact_write_items(TransactItems=items)
        except self.client.exceptions.TransactionCanceledException as exc:
            reasons: Iterable[dict[str, Any]] = exc.response.get("CancellationReasons", [])  # type: ignore[assignment]
            if any(r.get("Code") in ("ConditionalCheckFailed", "TransactionConflict") for r in reasons):
                raise ConcurrentUpdate("suppression state changed while it was being updated") from exc
            raise
