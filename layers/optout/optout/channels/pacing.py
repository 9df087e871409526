"""Pace sends under a provider quota, back off on throttling, and never repeat a send that may have gone out.

SES counts recipients per second; a token bucket per function instance keeps under the rate
this instance was given (the stack caps the sender's concurrency so instances x rate stays
under the account's quota). SES and SNS have no idempotency key, so a send is retried only
while the provider refuses it (``send_at_most_once``).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
# Answers by which a provider says it did not take the request (HTTP 4xx): sending again is safe.
REFUSED_CODES = frozenset(
    {
        "Throttling", "ThrottlingException", "Throttled", "TooManyRequestsException", "LimitExceededException",
        "RequestLimitExceeded", "SlowDown", "KMSThrottling",
    }
)  # fmt: skip


class Transient(Exception):
    """The provider kept throttling or failing: try this recipient again later."""


class OutcomeUnknown(Exception):
    """A send may have taken effect (its answer was lost, or the provider failed after taking it).

    SES and SNS have no idempotency key, so such a send is never repeated: its recipient is
    recorded with the outcome unknown instead.
    """


class TokenBucket:
    def __init__(self, rate_per_second: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.rate = rate_per_second
        self.capacity = burst if burst is not None else max(1.0, rate_per_second)
        self.tokens = self.capacity
        self.clock = clock
        self.updated = clock()
        self.lock = threading.Lock()

    def take(self, sleep: Callable[[float], None] = time.sleep) -> None:
        with self.lock:
            while True:
                now = self.clock()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                sleep((1 - self.tokens) / self.rate)


def refused(exc: BaseException) -> bool:
    """The request surely had no effect: the provider refused it, or it never reached the provider."""
    from botocore import exceptions

    if isinstance(exc, exceptions.ClientError):
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 400)
        return status < 500 and exc.response.get("Error", {}).get("Code") in REFUSED_CODES
    # Connecting failed: nothing was sent
    return isinstance(exc, exceptions.EndpointConnectionError | exceptions.ConnectTimeoutError)


def may_have_taken_effect(exc: BaseException) -> bool:
    """The request may have been applied: a lost answer (timeout, dropped connection) or a 5xx."""
    from botocore import exceptions

    if isinstance(exc, exceptions.ClientError):
        return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 400) >= 500
    return isinstance(exc, exceptions.ConnectionError | exceptions.HTTPClientError) and not refused(exc)


def send_at_most_once(
    call: Callable[[], T], attempts: int = 5, base: float = 0.2, sleep: Callable[[float], None] = time.sleep
) -> T:
    """A provider send: retried only while the provider refuses it, never once it may have gone out.

    The client behind ``call`` must not retry either (``clients.provider``). Throttling backs off
    and then raises Transient (try later); a lost answer or a 5xx raises OutcomeUnknown.
    """
    for attempt in range(attempts):
        try:
            return call()
        except Exception as exc:
            if may_have_taken_effect(exc):
                code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code") or type(exc).__name__
                raise OutcomeUnknown(code) from exc
            if not refused(exc):
                raise
            if attempt == attempts - 1:
                raise Transient(str(exc)) from exc
            sleep(random.uniform(0, base * 2**attempt))  # noqa: S311 - jitter, not security  # nosec B311
    raise AssertionError("unreachable")
