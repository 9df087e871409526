"""The throughput floor: the very SES requests the pipeline made, made again bare, in an environment of its own.

The event carries the requests as the local AWS received them (SES v2 JSON: SendBulkEmail, or
SendEmail with the raw message base64-encoded, each as ``{"operation", "params"}``); they are
sent with a client configured as the layer configures its provider clients
(``optout.core.clients.provider``: one attempt, the same timeouts), and the handler returns how long
the sends alone took and how many recipients they mailed.
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
    requests: list[tuple[str, dict[str, Any]]] = []
    for request in event["requests"]:
        params = request["params"]
        if request["operation"] == "SendEmail":
            raw = params["Content"]["Raw"]
            params = {**params, "Content": {"Raw": {**raw, "Data": base64.b64decode(raw["Data"])}}}
        requests.append((request["operation"], params))
    started = time.perf_counter()
    sent = 0
    for operation, params in requests:
        if operation == "SendBulkEmail":
            answer = client.send_bulk_email(**params)
            sent += sum(r.get("Status") == "SUCCESS" for r in answer["BulkEmailEntryResults"])
        else:
            client.send_email(**params)
            sent += 1
    return {"seconds": time.perf_counter() - started, "sent": sent}
