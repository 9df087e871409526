"""AWS clients, built on first use and cached: importing this module costs nothing."""

from __future__ import annotations

import threading
from functools import cache
from typing import TYPE_CHECKING, Any

from optout.core.identity import redact_addresses

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_secretsmanager import SecretsManagerClient


_lock = threading.Lock()


@cache
def _session() -> Any:
    """One botocore session for every client: each new session loads the SDK's data files again.

    botocore, not boto3: the functions use clients only, and boto3's import (resources,
    s3transfer) is cold-start time for nothing.
    """
    import botocore.session

    return botocore.session.get_session()


def _create(service: str, config: Any) -> Any:
    with _lock:  # a botocore session is not thread-safe; the clients it makes are
        client = _session().create_client(service, config=config)
    client.meta.events.register("after-call", _redact_answer)
    return client


def _redact_answer(parsed: Any = None, **_: Any) -> None:
    """Take addresses out of what a service says went wrong, before anyone reads it.

    A provider's error can quote the address it refused (SES: "... failed the check in region
    ...: <address>"). botocore builds the ClientError from this message, X-Ray's botocore patch
    records that error in the trace, and the code logs and stores it; SES's per-entry bulk errors
    are kept as a delivery's reason. This runs on every answer before botocore raises.
    """
    if not isinstance(parsed, dict):
        return
    error = parsed.get("Error")
    if isinstance(error, dict):
        for holder in (error, parsed):  # the error, and a modeled error's own message field
            for field in ("Message", "message"):
                if isinstance(holder.get(field), str):
                    holder[field] = redact_addresses(holder[field])
    for entry in parsed.get("BulkEmailEntryResults") or ():
        if isinstance(entry, dict) and isinstance(entry.get("Error"), str):
            entry["Error"] = redact_addresses(entry["Error"])


@cache
def _client(service: str) -> Any:
    from botocore.config import Config

    return _create(service, Config(retries={"mode": "adaptive", "max_attempts": 8}, connect_timeout=2, read_timeout=5))


@cache
def provider(service: str) -> Any:
    """A client for provider sends (SES, SNS, End User Messaging SMS): botocore never retries.

    Those APIs have no idempotency key: a retried request whose answer was lost sends twice.
    ``channels.pacing.send_at_most_once`` retries only what the provider refused.
    """
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=2, read_timeout=10)
    return _create(service, config)


def dynamodb() -> DynamoDBClient:
    client: DynamoDBClient = _client("dynamodb")
    return client


def secretsmanager() -> SecretsManagerClient:
    client: SecretsManagerClient = _client("secretsmanager")
    return client


def client(service: str) -> Any:
    """Any other service's client, built and cached the same way."""
    return _client(service)


def reset() -> None:
    """Forget cached clients (tests switch endpoints and credentials between cases)."""
    _client.cache_clear()
    provider.cache_clear()
    _session.cache_clear()
