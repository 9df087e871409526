"""Dead-letter queues: what waits in them, and moving it back once the cause is fixed.

In AWS, redrive uses SQS's own StartMessageMoveTask; locally (moto has no move tasks) the
messages are received from the DLQ, sent to their source queue and deleted, in that order.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from optout.core.identity import redact_addresses

_DIGITS = re.compile(r"\+?\d[\d\s().-]{7,}\d")  # in a sample body, any long run of digits may be a number


@dataclass(frozen=True)
class DeadLetterQueue:
    name: str  # logical id, e.g. SendDeadLetterQueue
    url: str
    arn: str
    source_url: str
    source_arn: str


def dead_letter_queues(
    refs: Mapping[str, Any], attrs: Mapping[tuple[str, str], Any], template: Mapping[str, Any]
) -> list[DeadLetterQueue]:
    """Every queue whose RedrivePolicy names a DLQ in the template, as (DLQ, source) pairs."""
    found = []
    for logical_id, resource in template.get("Resources", {}).items():
        redrive = (
            resource.get("Properties", {}).get("RedrivePolicy") if resource.get("Type") == "AWS::SQS::Queue" else None
        )
        if not redrive:
            continue
        target = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
        found.append(
            DeadLetterQueue(target, refs[target], attrs[(target, "Arn")], refs[logical_id], attrs[(logical_id, "Arn")])
        )
    return sorted(found, key=lambda d: d.name)


def scrub(text: str, limit: int = 160) -> str:
    """A sample body with addresses and phone numbers removed: safe to print."""
    return _DIGITS.sub("[redacted]", redact_addresses(text))[:limit]


def depth(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def sample(sqs: Any, url: str) -> str | None:
    """Peek at one message (visible again right away) and return it redacted."""
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=0).get("Messages", [])
    if not messages:
        return None
    body = messages[0]["Body"]
    with contextlib.suppress(ValueError):
        body = json.dumps(json.loads(body), separators=(",", ":"))
    return scrub(body)


def redrive_locally(sqs: Any, queue: DeadLetterQueue, limit: int | None = None) -> int:
    moved = 0
    while limit is None or moved < limit:
        batch = sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=10, VisibilityTimeout=30,
                                    MessageAttributeNames=["All"]).get("Messages", [])  # fmt: skip
        if not batch:
            return moved
        for message in batch:
            sqs.send_message(QueueUrl=queue.source_url, MessageBody=message["Body"])
            sqs.delete_message(QueueUrl=queue.url, ReceiptHandle=message["ReceiptHandle"])
            moved += 1
    return moved


def redrive_in_aws(sqs: Any, queue: DeadLetterQueue) -> str:
    """Start SQS's own move task back to the source queue; returns its handle."""
    handle: str = sqs.start_message_move_task(SourceArn=queue.arn, DestinationArn=queue.source_arn)["TaskHandle"]
    return handle
