"""The throughput floor: the very SendEmail requests the pipeline made, made again bare, in an environment of its own.

The event carries the requests as the local AWS received them (SES v2 JSON, the raw message
base64-encoded); they are sent with a client configured as the layer configures its provider
clients (``optout.clients.provider``: one attempt, the same timeouts), and the handler returns how
long the sends alone took.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import boto3
from botocore.config import Config

_client: list[Any] = []


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if not _client:
        config = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=2, read_timeout=10)
        _client.append(boto3.session.Session().client("sesv2", config=config))
    client = _client[0]
    requests = []
    for request in event["requests"]:
        raw = request["Content"]["Raw"]
        requests.append({**request, "Content": {"Raw": {**raw, "Data": base64.b64decode(raw["Data"])}}})
    started = time.perf_counter()
    for request in requests:
        client.send_email(**request)
    return {"seconds": time.perf_counter() - started, "sent": len(requests)}
