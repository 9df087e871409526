"""Logger, metrics and a lazily built tracer, shared by every function.

The X-Ray SDK behind Powertools' Tracer costs more import time than boto3 itself, so it is
only imported when the first traced invocation runs, and never when tracing is disabled.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics

logger = Logger()
metrics = Metrics()

F = TypeVar("F", bound=Callable[..., Any])


def _tracing_enabled() -> bool:
    disabled = os.environ.get("POWERTOOLS_TRACE_DISABLED", "").lower() in ("1", "true")
    return not disabled and "AWS_XRAY_DAEMON_ADDRESS" in os.environ


def traced(handler: F) -> F:
    """Wrap ``handler`` in Tracer.capture_lambda_handler, importing the tracer on first use."""
    wrapped: list[Callable[..., Any]] = []

    @functools.wraps(handler)
    def invoke(event: Any, context: Any) -> Any:
        if not wrapped:
            if _tracing_enabled():
                from aws_lambda_powertools import Tracer

                # Only botocore is worth tracing here; patching all 13 libraries the SDK knows costs
                # the first invocation about 15 ms of imports for nothing.
                wrapped.append(Tracer(patch_modules=("botocore",)).capture_lambda_handler(handler))
            else:
                wrapped.append(handler)
        return wrapped[0](event, context)

    return invoke  # type: ignore[return-value]
