"""The cold-start baseline: an environment on the same runtime and path whose handler imports boto3 and returns."""

from __future__ import annotations

from typing import Any

import boto3  # noqa: F401 - importing it is what this environment's cold start measures


def handler(event: Any, context: Any) -> dict[str, Any]:
    return {}
