"""The local SQS event source mapping: batching window and throttles, against a fake queue.

Why a fake: the timing under test (messages arriving every 0.2 s, a 1 s window) is the poller's
own loop, and a fake queue that records each ReceiveMessage shows it without moto's long-poll
granularity. The mapping's real path (moto, the runtime, redrive) is in the integration tests.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from optout_local.lambda_runtime import Throttled
from optout_local.pollers import QueuePoller
from optout_local.provision import QueueSource

ARN = "arn:aws:sqs:us-east-1:123456789012:q"


class FakeQueue:
    """Messages that become available at given offsets; a long poll waits for them as SQS does."""

    def __init__(self, arrivals: list[tuple[float, str]], visibility: int = 60) -> None:
        self.t0 = time.monotonic()
        self.pending = list(arrivals)
        self.deleted: list[str] = []
        self.waits: list[int] = []
        self.visibility = visibility
        self.lock = threading.Lock()

    def get_queue_attributes(self, **_: Any) -> dict[str, Any]:
        return {"Attributes": {"QueueArn": ARN, "VisibilityTimeout": str(self.visibility)}}

    def receive_message(self, MaxNumberOfMessages: int, WaitTimeSeconds: int, **_: Any) -> dict[str, Any]:  # noqa: N803
        self.waits.append(WaitTimeSeconds)
        end = time.monotonic() + WaitTimeSeconds
        while True:
            with self.lock:
                now = time.monotonic() - self.t0
                ready = [p for p in self.pending if p[0] <= now][:MaxNumberOfMessages]
                for p in ready:
                    self.pending.remove(p)
            if ready or time.monotonic() >= end:
                return {"Messages": [{"MessageId": i, "ReceiptHandle": f"rh-{i}", "Body": "{}"} for _, i in ready]}
            time.sleep(0.01)

    def delete_message_batch(self, Entries: list[dict[str, str]], **_: Any) -> dict[str, Any]:  # noqa: N803
        self.deleted += [e["ReceiptHandle"].removeprefix("rh-") for e in Entries]
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}


def _poller(queue: FakeQueue, invoke: Any, window: int, size: int = 10, timeout: int = 10) -> QueuePoller:
    source = QueueSource("F", ARN, size, window, True, True)
    poller = QueuePoller(source, "url", queue, invoke, "us-east-1", function_timeout=timeout)
    poller.visibility = queue.visibility
    return poller


def _drain(poller: QueuePoller, queue: FakeQueue, batches: list[int]) -> None:
    deadline = time.monotonic() + 10
    while (queue.pending or not batches) and time.monotonic() < deadline:
        poller.poll_once()


def test_the_batching_window_gathers_messages_that_trickle_in() -> None:
    # Given BatchSize 10, a 1 s window, and a message every 0.2 s (ten in 2 s)
    queue = FakeQueue([(0.2 * k, f"m{k}") for k in range(10)])
    batches: list[int] = []
    poller = _poller(queue, lambda _f, e: batches.append(len(e["Records"])), window=1)
    # When the poller drains the queue
    _drain(poller, queue, batches)
    # Then the window gathered several messages a batch, as Lambda does, not one each
    assert sum(batches) == 10
    assert len(batches) <= 3 and max(batches) >= 4, batches


def test_without_a_window_a_batch_is_what_one_receive_finds() -> None:
    queue = FakeQueue([(0, "a"), (0, "b"), (0.5, "c")])
    batches: list[list[str]] = []
    poller = _poller(queue, lambda _f, e: batches.append([r["messageId"] for r in e["Records"]]), window=0)
    poller.poll_once()
    assert batches == [["a", "b"]]  # invoked at once: "c" comes in a batch of its own
    assert queue.deleted == ["a", "b"]


def test_a_full_batch_does_not_wait_out_the_window() -> None:
    queue = FakeQueue([(0, f"m{k}") for k in range(3)])
    batches: list[int] = []
    poller = _poller(queue, lambda _f, e: batches.append(len(e["Records"])), window=5, size=3)
    started = time.monotonic()
    poller.poll_once()
    assert batches == [3] and time.monotonic() - started < 2


def test_a_throttled_batch_is_tried_again_not_failed() -> None:
    # Given a function that is throttled twice, then runs
    queue = FakeQueue([(0, "a"), (0, "b")])
    calls: list[float] = []

    def invoke(_function: str, _event: dict[str, Any]) -> dict[str, Any]:
        calls.append(time.monotonic())
        if len(calls) <= 2:
            raise Throttled("F")
        return {"batchItemFailures": []}

    poller = _poller(queue, invoke, window=0)
    # When the poller takes the batch
    poller.poll_once()
    # Then it invoked again after a short backoff, and the batch is done: no visibility timeout waited
    assert len(calls) == 3 and calls[-1] - calls[0] < 2
    assert sorted(queue.deleted) == ["a", "b"]


def test_a_throttle_that_outlasts_the_visibility_timeout_leaves_the_batch() -> None:
    # Given a queue whose messages stay hidden 1 s past a function timeout of 0 (the retry budget)
    queue = FakeQueue([(0, "a")], visibility=1)

    def invoke(_function: str, _event: dict[str, Any]) -> Any:
        raise Throttled("F")

    poller = _poller(queue, invoke, window=0, timeout=0)
    started = time.monotonic()
    poller.poll_once()
    # Then it gave up within the visibility timeout, and the message stays for its next receive
    assert time.monotonic() - started < 1.5
    assert queue.deleted == []
