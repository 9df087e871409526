"""DynamoDB in one place: items to and from Python values, pages, and batches with capped retries.

Every store speaks DynamoDB through this module: ``to_item`` / ``from_item`` (boto3's
``TypeSerializer`` / ``TypeDeserializer``) for items, keys and ``ExpressionAttributeValues``
(``value`` for one), ``pages`` for a read of every page (boto3's paginators), ``page`` for an API
read that returns one page and where to go on from, and ``batch_get`` / ``batch_write``, which
ask again for what DynamoDB left unprocessed, a capped number of times, then raise
``BatchUnfinished``. A store is a ``DynamoTable`` (its table, and a client built on first use), and
``iso_lower_bound`` is the key condition on the stores' ISO times. ``tests/unit/test_dynamo_one_place.py``
keeps it so.

Import cost: ``boto3.dynamodb.types`` imports the boto3 package (its session, resources and
s3transfer, which imports multiprocessing). On the Lambda runtime's SDK (python3.13 -X importtime
-I -S, ``build/lambda/runtime-sdk-*``, after ``import botocore.session``) that is 23-37 ms in eight
runs (60 ms on a cold file cache), beside ``botocore.session``'s own 200-350 ms, the functions'
only other SDK import (``optout.core.clients``). So it is imported on first use, not with this module:
a function pays it with its first DynamoDB read or write, and one that answers without DynamoDB
(a malformed request, a static page) never does. boto3 is the runtime's own (the layer pins
botocore to the runtime's version), so it ships in no layer.

Per item, the generic (de)serialiser costs more than hand-built dicts: a suppression state reads
in about 22 us instead of 8 (27 instead of 7 to write), so the sender's 100 states a batch take
about 1.5 ms more, beside the BatchGetItem that reads them.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from optout.core import clients

if TYPE_CHECKING:
    from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
    from mypy_boto3_dynamodb import DynamoDBClient

BATCH_GET_LIMIT = 100  # keys in one BatchGetItem
BATCH_WRITE_LIMIT = 25  # requests in one BatchWriteItem
BATCH_ATTEMPTS = 6  # calls for one chunk: the first and five retries of what it left, within about 3 s
BACKOFF_BASE = 0.05  # seconds before the first retry (at most), doubled each retry
BACKOFF_CAP = 2.0

Sleep = Callable[[float], None]


class BatchUnfinished(Exception):
    """DynamoDB still left part of a batch unprocessed after every attempt (throttled, most likely).

    Nothing is known to be lost: the caller fails, and its own retry (a redelivery, the client's
    next request) starts over.
    """

    def __init__(self, operation: str, table: str, left: int, attempts: int) -> None:
        super().__init__(f"{operation} on {table}: {left} left unprocessed after {attempts} attempts")
        self.operation = operation
        self.table = table
        self.left = left
        self.attempts = attempts


@cache
def _serializer() -> TypeSerializer:
    from boto3.dynamodb.types import TypeSerializer

    return TypeSerializer()


@cache
def _deserializer() -> TypeDeserializer:
    from boto3.dynamodb.types import TypeDeserializer

    class Deserializer(TypeDeserializer):
        """boto3's, with integral numbers as ``int`` and binary as ``bytes``.

        The stores write counters, versions and epoch seconds from ints and compare, add and
        format them as ints; boto3 gives every number as ``Decimal`` (and binary as its ``Binary``
        wrapper), which would leak into models and JSON. A number with a fraction stays ``Decimal``.
        """

        def _deserialize_n(self, value: str) -> Any:
            number = super()._deserialize_n(value)  # type: ignore[misc]
            return int(number) if number.as_tuple().exponent >= 0 else number

        def _deserialize_b(self, value: bytes) -> bytes:
            return bytes(value)

    return Deserializer()


def value(python: Any) -> dict[str, Any]:
    """One attribute value (``{"S": ...}``, ``{"N": ...}``, ...) for a key, a condition or an update.

    An int or ``Decimal`` is a number (a float is refused: DynamoDB numbers are decimal), a set of
    strings a string set. An empty set is refused by DynamoDB: leave the attribute out.
    """
    return dict(_serializer().serialize(python))


def to_item(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """An item, a key or ``ExpressionAttributeValues`` from plain values: each serialised by ``value``."""
    serializer = _serializer()
    return {name: dict(serializer.serialize(v)) for name, v in mapping.items()}


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """Plain values from an item (or a key) as DynamoDB returns it: integral numbers as ``int``,
    other numbers as ``Decimal``, sets as ``set``, binary as ``bytes``, ``NULL`` as None."""
    deserializer = _deserializer()
    return {name: deserializer.deserialize(v) for name, v in item.items()}


def pages(client: Any, operation: str, **params: Any) -> Iterator[dict[str, Any]]:
    """Every page of a Query or Scan (``operation``: ``"query"``, ``"scan"``), as DynamoDB returns
    it, each one call: a ``Limit`` in ``params`` is the size of every page."""
    yield from client.get_paginator(operation).paginate(**params)


def items_under(client: Any, table: str, pk: str, prefix: str) -> Iterator[dict[str, Any]]:
    """Every item of partition ``pk`` whose sort key starts with ``prefix``, strongly consistent,
    as DynamoDB returns them (a partition's history: its events, its erasures)."""
    for response in pages(
        client,
        "query",
        TableName=table,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
        ExpressionAttributeValues=to_item({":pk": pk, ":prefix": prefix}),
        ConsistentRead=True,
    ):
        yield from response.get("Items", [])


def page(
    client: Any, operation: str, start: Mapping[str, Any] | None = None, **params: Any
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """One page of a Query or Scan, in one call, from ``start`` (a key as DynamoDB gave it) if any:
    its items as DynamoDB returns them, and the key to go on from (None: there is no more)."""
    if start:
        params["ExclusiveStartKey"] = start
    response = getattr(client, operation)(**params)
    last = response.get("LastEvaluatedKey")
    return list(response.get("Items", [])), (dict(last) if last else None)


def _pause(retry: int, sleep: Sleep) -> None:
    sleep(min(BACKOFF_CAP, BACKOFF_BASE * 2**retry) * random.random())  # noqa: S311 - jitter  # nosec B311


def batch_get(
    client: Any,
    table: str,
    keys: Sequence[Mapping[str, Any]],
    consistent: bool = True,
    attempts: int = BATCH_ATTEMPTS,
    sleep: Sleep = time.sleep,
) -> list[dict[str, Any]]:
    """The items at ``keys`` (plain values; duplicates are read once), one BatchGetItem per 100
    keys, strongly consistent unless ``consistent`` is False, as DynamoDB returns them (in no
    particular order; a key with no item has none).

    What a call leaves unprocessed is asked again after a jittered backoff, up to ``attempts``
    calls for a chunk in all; then ``BatchUnfinished``.
    """
    unique = list({tuple(sorted(k.items())): to_item(k) for k in keys}.values())
    found: list[dict[str, Any]] = []
    for start in range(0, len(unique), BATCH_GET_LIMIT):
        request: dict[str, Any] = {
            table: {"Keys": unique[start : start + BATCH_GET_LIMIT], "ConsistentRead": consistent}
        }
        for attempt in range(attempts):
            if attempt:
                _pause(attempt, sleep)
            response = client.batch_get_item(RequestItems=request)
            found += response.get("Responses", {}).get(table, [])
            request = dict(response.get("UnprocessedKeys") or {})
            if not request:
                break
        else:
            raise BatchUnfinished("BatchGetItem", table, len(request[table]["Keys"]), attempts)
    return found


def batch_write(
    client: Any,
    table: str,
    put: Sequence[Mapping[str, Any]] = (),
    delete: Sequence[Mapping[str, Any]] = (),
    attempts: int = BATCH_ATTEMPTS,
    sleep: Sleep = time.sleep,
) -> None:
    """Put the items ``put`` and delete the keys ``delete`` (plain values), 25 a BatchWriteItem
    (puts first), each call's unprocessed requests sent again after a jittered backoff, up to
    ``attempts`` calls for a chunk in all; then ``BatchUnfinished``."""
    requests = [{"PutRequest": {"Item": to_item(item)}} for item in put]
    requests += [{"DeleteRequest": {"Key": to_item(key)}} for key in delete]
    for start in range(0, len(requests), BATCH_WRITE_LIMIT):
        pending: dict[str, Any] = {table: requests[start : start + BATCH_WRITE_LIMIT]}
        for attempt in range(attempts):
            if attempt:
                _pause(attempt, sleep)
            pending = dict(client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {})
            if not pending:
                break
        else:
            raise BatchUnfinished("BatchWriteItem", table, len(pending[table]), attempts)


def iso_lower_bound(moment: datetime) -> str:
    """A string key condition ``>=`` on the UTC ISO 8601 times the stores write (``isoformat()``) that
    keeps every time from ``moment`` on: a whole second is written without its fraction, and that
    prefix sorts before every time in its second."""
    utc = moment.astimezone(UTC)
    return utc.isoformat() if utc.microsecond else utc.strftime("%Y-%m-%dT%H:%M:%S")


class DynamoTable:
    """A store over one DynamoDB table; its client is built on first use (or injected by tests).

    Items, pages and batches go through ``optout.core.dynamo``."""

    def __init__(self, table: str, client: DynamoDBClient | None = None) -> None:
        self.table = table
        self._client = client

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            self._client = clients.dynamodb()
        return self._client
