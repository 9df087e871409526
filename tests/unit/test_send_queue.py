"""The sender's batch processor: each record parsed once, every batch's suppression state read in
one call before the first batch is sent, a malformed record failing alone."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch import process_partial_response

from optout.notices.model import SendBatch
from optout.notices.send_queue import SendBatchProcessor, SendBatchRecord

SAMPLE = json.loads((Path(__file__).parents[2] / "events" / "sender_batch.json").read_text())


class Context:
    aws_request_id = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def _record(message_id: str, batch: str | None) -> dict[str, Any]:
    record = copy.deepcopy(SAMPLE["Records"][0])
    record["messageId"] = message_id
    if batch is None:
        record["body"] = "{not json"
    else:
        body = json.loads(record["body"])
        body["batch"] = batch
        record["body"] = json.dumps(body)
    return record


def test_every_batch_is_prefetched_once_before_the_first_is_handled_and_each_body_parsed_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given two batches in one invocation
    events: list[Any] = []

    def prefetch(batches: Sequence[SendBatch]) -> dict[str, Any]:
        events.append(("prefetch", [b.batch for b in batches]))
        return {"k": {"state": 1}}

    processor = SendBatchProcessor(prefetch=prefetch)
    handled: list[SendBatchRecord] = []

    def handler(record: SendBatchRecord, lambda_context: Any) -> None:
        events.append(("handle", record.body.batch, dict(processor.prefetched)))
        handled.append(record)

    event = {"Records": [_record("m1", "b1"), _record("m2", "b2")]}
    # When the invocation is processed
    response = process_partial_response(event=event, record_handler=handler, processor=processor, context=Context())
    # Then both batches were read in one prefetch before either was handled, with those states
    assert response == {"batchItemFailures": []}
    assert events == [
        ("prefetch", ["b1", "b2"]),
        ("handle", "b1", {"k": {"state": 1}}),
        ("handle", "b2", {"k": {"state": 1}}),
    ]
    assert [r.messageId for r in handled] == ["m1", "m2"]
    # and the states are gone once the invocation ends
    assert processor.prefetched == {}
    # and (counted on a second invocation) each record is parsed once, not once more for its turn
    calls: list[int] = []
    original_record = SendBatchRecord.model_validate.__func__  # type: ignore[attr-defined]

    def counting_record(cls: type[SendBatchRecord], value: Any, *args: Any, **kwargs: Any) -> SendBatchRecord:
        calls.append(1)
        return original_record(cls, value, *args, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(SendBatchRecord, "model_validate", classmethod(counting_record))
    process_partial_response(event=event, record_handler=handler, processor=processor, context=Context())
    assert len(calls) == 2  # one parse per record


def test_a_malformed_record_fails_alone_and_is_not_prefetched() -> None:
    # Given a good record beside one whose body is not JSON
    seen: list[list[str]] = []
    processor = SendBatchProcessor(prefetch=lambda batches: seen.append([b.batch for b in batches]) or {})
    handled: list[str] = []
    event = {"Records": [_record("bad", None), _record("good", "b7")]}
    # When it is processed
    response = process_partial_response(
        event=event, record_handler=lambda record, lambda_context: handled.append(record.body.batch),
        processor=processor, context=Context(),
    )  # fmt: skip
    # Then only the bad record comes back, and the good one was prefetched and sent
    assert response == {"batchItemFailures": [{"itemIdentifier": "bad"}]}
    assert seen == [["b7"]]
    assert handled == ["b7"]


def test_a_failed_prefetch_leaves_each_batch_to_read_its_own_states() -> None:
    # Given a prefetch that fails (say, a batch of a deleted notice)
    def prefetch(batches: Sequence[SendBatch]) -> dict[str, Any]:
        raise RuntimeError("no such notice")

    processor = SendBatchProcessor(prefetch=prefetch)
    states: list[dict[str, Any]] = []
    event = {"Records": [_record("m1", "b1")]}
    # When it is processed
    response = process_partial_response(
        event=event, record_handler=lambda record, lambda_context: states.append(dict(processor.prefetched)),
        processor=processor, context=Context(),
    )  # fmt: skip
    # Then the batch is still handled, with nothing prefetched
    assert response == {"batchItemFailures": []}
    assert states == [{}]
