"""The cold-start baselines: environments on the same runtime and path whose handler imports boto3 and
returns (``handler``), or also builds the SDK clients a function's first call used (``with_clients``)."""

from __future__ import annotations

from typing import Any

import boto3  # importing it is what the bare environment's cold start measures


def handler(event: Any, context: Any) -> dict[str, Any]:
    return {}


def with_clients(event: Any, context: Any) -> dict[str, Any]:
    """The SDK's own floor under a function's cold start: its clients, built as boto3 builds them, no call made."""
    session = boto3.session.Session()
    return {"clients": [type(session.client(name)).__name__ for name in event.get("services", [])]}
