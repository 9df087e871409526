"""optout.core.dynamo: items both ways, pages, and batches whose retries of unprocessed work are capped.

No AWS: stub clients answer the calls and record them.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from optout.core import dynamo
from optout.core.dynamo import (
    BatchUnfinished,
    batch_get,
    batch_write,
    from_item,
    items_under,
    page,
    pages,
    to_item,
    value,
)


def test_round_trips_keep_python_types() -> None:
    plain: dict[str, Any] = {
        "s": "état",
        "n": 42,
        "big": 2**62,
        "negative": -7,
        "fraction": Decimal("1.25"),
        "yes": True,
        "no": False,
        "nothing": None,
        "raw": b"\x00\xff",
        "topics": {"news", "offers"},
        "counts": {1, 2, 3},
        "blobs": {b"a", b"b"},
        "list": ["a", 1, None, {"x": True}],
        "map": {"reason": "bounce", "evidence": {"id": "m-1"}, "n": 0},
    }
    item = to_item(plain)
    assert item["s"] == {"S": "état"}
    assert item["n"] == {"N": "42"}
    assert item["yes"] == {"BOOL": True}  # a bool is not the number 1
    assert item["nothing"] == {"NULL": True}
    assert item["raw"] == {"B": b"\x00\xff"}
    assert sorted(item["topics"]["SS"]) == ["news", "offers"]
    assert sorted(item["counts"]["NS"]) == ["1", "2", "3"]
    assert item["map"]["M"]["evidence"] == {"M": {"id": {"S": "m-1"}}}
    back = from_item(item)
    assert back == plain
    for name in ("n", "big", "negative"):
        assert type(back[name]) is int
    assert type(back["fraction"]) is Decimal
    assert type(back["raw"]) is bytes and all(type(b) is bytes for b in back["blobs"])
    assert type(back["map"]["n"]) is int and all(type(n) is int for n in back["counts"])


def test_a_number_written_elsewhere_with_a_fraction_or_exponent_reads_as_it_is() -> None:
    assert from_item({"a": {"N": "1.0"}, "b": {"N": "1E+2"}, "c": {"N": "0.5"}}) == {
        "a": Decimal("1.0"),
        "b": 100,
        "c": Decimal("0.5"),
    }


def test_value_serialises_one_and_refuses_a_float() -> None:
    assert value("x") == {"S": "x"}
    assert value(3) == {"N": "3"}
    assert value([]) == {"L": []}
    with pytest.raises(TypeError):
        value(0.5)


class Pages:
    """A client whose Query answers a fixed list of pages, following ExclusiveStartKey."""

    def __init__(self, answers: list[dict[str, Any]]) -> None:
        self.answers = answers
        self.calls: list[dict[str, Any]] = []

    def query(self, **params: Any) -> dict[str, Any]:
        self.calls.append(params)
        start = params.get("ExclusiveStartKey")
        index = 0 if start is None else int(from_item(start)["at"]) + 1
        return self.answers[index]

    def get_paginator(self, operation: str) -> Any:
        from botocore.paginate import Paginator

        model = {"input_token": "ExclusiveStartKey", "output_token": "LastEvaluatedKey", "limit_key": "Limit"}
        return Paginator(getattr(self, operation), {**model, "result_key": "Items"}, None)


def _answers(pages_of: list[list[str]]) -> list[dict[str, Any]]:
    out = []
    for n, names in enumerate(pages_of):
        answer: dict[str, Any] = {"Items": [to_item({"pk": name}) for name in names]}
        if n < len(pages_of) - 1:
            answer["LastEvaluatedKey"] = to_item({"at": n})
        out.append(answer)
    return out


def test_pages_reads_every_page_one_call_each() -> None:
    client = Pages(_answers([["a", "b"], [], ["c"]]))
    got = [from_item(item)["pk"] for p in pages(client, "query", TableName="t", Limit=2) for item in p["Items"]]
    assert got == ["a", "b", "c"]
    assert len(client.calls) == 3
    assert all(call["Limit"] == 2 and call["TableName"] == "t" for call in client.calls)
    assert "ExclusiveStartKey" not in client.calls[0]
    assert from_item(client.calls[2]["ExclusiveStartKey"]) == {"at": 1}


def test_items_under_reads_a_partitions_prefix_over_every_page_strongly_consistent() -> None:
    client = Pages(_answers([["a", "b"], ["c"]]))
    got = [from_item(item)["pk"] for item in items_under(client, "t", "key-1", "event#")]
    assert got == ["a", "b", "c"]
    first = client.calls[0]
    assert first["KeyConditionExpression"] == "pk = :pk AND begins_with(sk, :prefix)" and first["ConsistentRead"]
    assert from_item(first["ExpressionAttributeValues"]) == {":pk": "key-1", ":prefix": "event#"}


def test_page_is_one_call_and_where_to_go_on_from() -> None:
    client = Pages(_answers([["a"], ["b"]]))
    items, last = page(client, "query", None, TableName="t")
    assert [from_item(i)["pk"] for i in items] == ["a"] and last == to_item({"at": 0})
    items, last = page(client, "query", last, TableName="t")
    assert [from_item(i)["pk"] for i in items] == ["b"] and last is None
    assert len(client.calls) == 2


class Batches:
    """BatchGetItem / BatchWriteItem that leave everything unprocessed for the first ``stubborn`` calls
    of each chunk (``None``: always), then process all."""

    def __init__(self, stubborn: int | None) -> None:
        self.stubborn = stubborn
        self.gets: list[dict[str, Any]] = []
        self.writes: list[dict[str, Any]] = []
        self.stored: dict[str, dict[str, Any]] = {}
        self.written: list[dict[str, Any]] = []
        self._refused = 0

    def _refuse(self) -> bool:
        if self.stubborn is None or self._refused < self.stubborn:
            self._refused += 1
            return True
        self._refused = 0  # the next chunk starts stubborn again
        return False

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:  # noqa: N803 - the API's name
        self.gets.append(RequestItems)
        ((table, request),) = RequestItems.items()
        if self._refuse():
            return {"Responses": {table: []}, "UnprocessedKeys": RequestItems}
        found = [self.stored[from_item(k)["pk"]] for k in request["Keys"] if from_item(k)["pk"] in self.stored]
        return {"Responses": {table: found}, "UnprocessedKeys": {}}

    def batch_write_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:  # noqa: N803 - the API's name
        self.writes.append(RequestItems)
        if self._refuse():
            return {"UnprocessedItems": RequestItems}
        ((_, requests),) = RequestItems.items()
        self.written += requests
        return {"UnprocessedItems": {}}


def test_batch_get_stops_after_the_cap_and_says_so() -> None:
    client, slept = Batches(stubborn=None), []
    with pytest.raises(BatchUnfinished) as caught:
        batch_get(client, "t", [{"pk": "a", "sk": "state"}], attempts=4, sleep=slept.append)
    assert len(client.gets) == 4 and len(slept) == 3
    assert caught.value.left == 1 and caught.value.attempts == 4 and "BatchGetItem on t" in str(caught.value)
    assert all(0 <= s <= dynamo.BACKOFF_CAP for s in slept)


def test_batch_get_returns_all_once_the_table_catches_up() -> None:
    client, slept = Batches(stubborn=2), []
    client.stored = {f"k{i}": to_item({"pk": f"k{i}", "v": i}) for i in range(150)}
    keys = [{"pk": f"k{i}"} for i in range(150)] + [{"pk": "k0"}, {"pk": "missing"}]
    found = batch_get(client, "t", keys, sleep=slept.append)
    assert sorted(from_item(i)["v"] for i in found) == list(range(150))
    assert len(client.gets) == 6  # two chunks (100 and 51 keys), each refused twice, then read
    assert [len(g["t"]["Keys"]) for g in client.gets[::3]] == [100, 51]
    assert all(g["t"]["ConsistentRead"] is True for g in client.gets)
    assert len(slept) == 4


def test_batch_get_without_trouble_is_one_call_per_hundred_keys() -> None:
    client = Batches(stubborn=0)
    batch_get(client, "t", [{"pk": f"k{i}"} for i in range(100)], consistent=False, sleep=pytest.fail)
    assert len(client.gets) == 1 and client.gets[0]["t"]["ConsistentRead"] is False


def test_batch_write_stops_after_the_cap_and_says_so() -> None:
    client = Batches(stubborn=None)
    with pytest.raises(BatchUnfinished) as caught:
        batch_write(client, "t", put=[{"pk": "a"}], delete=[{"pk": "b"}], sleep=lambda _: None)
    assert len(client.writes) == dynamo.BATCH_ATTEMPTS and caught.value.left == 2


def test_batch_write_writes_all_once_the_table_catches_up() -> None:
    client, slept = Batches(stubborn=2), []
    puts = [{"pk": f"p{i}", "n": i} for i in range(30)]
    batch_write(client, "t", put=puts, delete=[{"pk": "gone", "sk": "x"}], sleep=slept.append)
    assert len(client.writes) == 6 and [len(w["t"]) for w in client.writes[::3]] == [25, 6]
    assert [from_item(r["PutRequest"]["Item"]) for r in client.written[:30]] == puts
    assert client.written[30] == {"DeleteRequest": {"Key": to_item({"pk": "gone", "sk": "x"})}}
