"""Play the template's SQS event source mappings: receive, invoke, delete what succeeded.

Batch size, batching window and ``ScalingConfig.MaximumConcurrency`` come from the template; a
mapping runs as many pollers as the function may have environments at once (its reserved
concurrency or the local cap), so each poller's batch goes to an environment of its own. With
ReportBatchItemFailures only the failed messages stay on the queue; otherwise a failed invocation
(an error, a timeout, a killed environment) keeps the whole batch. Messages
that stay become visible again after the queue's visibility timeout, and the queue's redrive
policy (enforced by moto on receive) moves them to the DLQ after maxReceiveCount receives. A
throttled invocation is not a failure: as Lambda does, the poller tries the batch again, backing
off, while it is still invisible.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from optout_local.lambda_runtime import Throttled
from optout_local.provision import QueueSource

log = logging.getLogger(__name__)
Invoke = Callable[[str, dict[str, Any]], Any]
SHORT_POLL = 0.05  # seconds between short polls in the last fraction of a batching window
THROTTLE_BACKOFF, THROTTLE_BACKOFF_MAX = 0.1, 5.0  # seconds: a throttled batch is tried again after


def sqs_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    attributes = message.get("Attributes", {})
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {
            "ApproximateReceiveCount": attributes.get("ApproximateReceiveCount", "1"),
            "SentTimestamp": attributes.get("SentTimestamp", str(int(time.time() * 1000))),
            "SenderId": attributes.get("SenderId", "AIDAIENQZJOLO23YVJ4VO"),
            "ApproximateFirstReceiveTimestamp": attributes.get("ApproximateFirstReceiveTimestamp", ""),
            **{
                k: v
                for k, v in attributes.items()
                if k in ("MessageGroupId", "MessageDeduplicationId", "SequenceNumber")
            },
        },
        "messageAttributes": {
            name: {
                "stringValue": value.get("StringValue"),
                "binaryValue": value.get("BinaryValue"),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": value["DataType"],
            }
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message.get("MD5OfBody")
        or hashlib.md5(message["Body"].encode(), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


class MappingRefused(Exception):
    """An event source mapping that Lambda would not create."""


class QueuePoller:
    def __init__(
        self,
        source: QueueSource,
        queue_url: str,
        sqs: Any,
        invoke: Invoke,
        region: str,
        concurrency: int = 1,
        function_timeout: int | None = None,
    ) -> None:
        self.source = source
        self.function_timeout = function_timeout
        self.queue_url = queue_url
        self.sqs = sqs
        self.invoke = invoke
        self.region = region
        self.stopping = threading.Event()
        self.visibility = 30  # the queue's, read as the mapping starts
        if source.maximum_concurrency is not None:
            concurrency = min(concurrency, source.maximum_concurrency)
        self.threads = [
            threading.Thread(target=self._run, name=f"poller-{source.function}-{n}", daemon=True)
            for n in range(max(1, concurrency))
        ]

    def start(self) -> None:
        # Lambda reads the queue's attributes with the function's role when it enables the
        # mapping, and refuses a role that may not ("...does not have permissions to call
        # GetQueueAttributes on SQS"); an access denial here stops the stack's start the same way.
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["QueueArn", "VisibilityTimeout"]
        ).get("Attributes", {})
        # Lambda refuses a mapping whose queue could show a batch again while the function still
        # runs: CreateEventSourceMapping answers InvalidParameterValueException "Queue visibility
        # timeout: 30 seconds is less than Function timeout: 60 seconds" (the deploy fails there).
        self.visibility = visibility = int(attributes.get("VisibilityTimeout", 30))
        if self.function_timeout is not None and visibility < self.function_timeout:
            raise MappingRefused(
                f"{self.source.function}: InvalidParameterValueException: Queue visibility timeout: "
                f"{visibility} seconds is less than Function timeout: {self.function_timeout} seconds"
            )
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            if thread.ident is not None:  # a refused mapping never started its pollers
                thread.join(timeout=5)

    def _receive_batch(self) -> list[dict[str, Any]]:
        """One batch: wait for a first message, then gather up to BatchSize for the batching window.

        The window opens with the first message, and is spent in full unless the batch fills: an
        empty receive before it closes does not end it. Whole seconds are long polls; what is
        left of the window after them, short polls a few times a second.
        """
        messages: list[dict[str, Any]] = []
        deadline: float | None = None
        while len(messages) < self.source.batch_size and not self.stopping.is_set():
            if deadline is None:
                wait = 1  # nothing yet: long polls of a second, so that a stop is heard
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                wait = min(1, int(left))  # a second at a time here too: a stop is heard
            received = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(10, self.source.batch_size - len(messages)),
                WaitTimeSeconds=wait,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if received:
                messages.extend(received)
                if deadline is None:
                    deadline = time.monotonic() + self.source.batching_window
            elif deadline is None:
                break  # an idle second: the caller polls again
            elif wait == 0:
                self.stopping.wait(min(SHORT_POLL, max(0.0, deadline - time.monotonic())))
        return messages

    def _invoke(self, event: dict[str, Any], received_at: float) -> Any:
        """Invoke; a throttled invocation is tried again, with backoff, while the batch stays invisible.

        Lambda does not count a throttle as the function's error: it retries "until the message's
        timestamp exceeds your queue's visibility timeout", so a short throttle costs seconds,
        not a visibility timeout and one of the queue's receives.
        """
        backoff = THROTTLE_BACKOFF
        while True:
            try:
                return self.invoke(self.source.function, event)
            except Throttled:
                hidden_until = received_at + self.visibility - (self.function_timeout or 0)
                if self.stopping.is_set() or time.monotonic() + backoff >= hidden_until:
                    raise
                if self.stopping.wait(backoff):
                    raise  # the stack is stopping: the batch stays for the next start
                backoff = min(backoff * 2, THROTTLE_BACKOFF_MAX)

    def poll_once(self) -> int:
        """Receive one batch, invoke the function, delete what succeeded. Returns batch size."""
        messages = self._receive_batch()
        if not messages:
            return 0
        received_at = time.monotonic()
        event = {"Records": [sqs_record(m, self.source.queue_arn, self.region) for m in messages]}
        failed: set[str] = set()
        try:
            result = self._invoke(event, received_at)
            if self.source.report_failures and isinstance(result, dict):
                failed = {str(f.get("itemIdentifier") or "") for f in result.get("batchItemFailures") or []}
                if not failed <= {m["MessageId"] for m in messages}:
                    # An empty or unknown itemIdentifier: Lambda fails the whole batch
                    log.warning("function %s returned an invalid partial batch response", self.source.function)
                    failed = {m["MessageId"] for m in messages}
        except Exception as exc:
            # The batch stays on the queue and comes back after its visibility timeout.
            log.warning("function %s failed on a batch of %d: %s", self.source.function, len(messages), exc)
            failed = {m["MessageId"] for m in messages}
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done[start : start + 10])
                ],
            )
        return len(messages)

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.poll_once()
            except Exception:
                if self.stopping.is_set():
                    return
                log.exception("poller for %s failed; retrying", self.source.function)
                self.stopping.wait(1)
