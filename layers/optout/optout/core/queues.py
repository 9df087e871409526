"""SQS messages as the pipeline sends them (notice batches, handed-off webhooks): compact JSON, ten a batch."""

from __future__ import annotations

import json
from typing import Any

from optout.core import clients


def _body(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


def send_message(queue_url: str, message: dict[str, Any], delay: int = 0) -> None:
    clients.client("sqs").send_message(
        QueueUrl=queue_url, MessageBody=_body(message), DelaySeconds=max(0, min(900, delay))
    )


def send_message_batch(queue_url: str, messages: list[dict[str, Any]]) -> None:
    """SendMessageBatch, 10 a call; entries SQS reports as failed are sent again, then it raises."""
    sqs = clients.client("sqs")
    for start in range(0, len(messages), 10):
        entries = [{"Id": str(i), "MessageBody": _body(m)} for i, m in enumerate(messages[start : start + 10])]
        for _ in range(5):
            failed = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries).get("Failed", [])
            if not failed:
                break
            ids = {f["Id"] for f in failed}
            entries = [e for e in entries if e["Id"] in ids]
        else:
            raise RuntimeError(f"SQS kept refusing {len(entries)} send batches")
