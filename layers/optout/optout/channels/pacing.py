"""Pace sends under a provider quota, slow down on throttling, and never repeat a send that may have gone out.

SES counts recipients per second, per account. Each sender instance paces itself with a token
bucket at its share of the quota: ``EmailRatePerSecond``, or with ``auto`` the account's
``MaxSendRate`` (sesv2 ``GetAccount``, read once per environment and again hourly) divided by
the sender's reserved concurrency, since that many instances may send at once. The bucket holds
0.6 s of the share, and no call carries more recipients than it holds (``most_per_call``):
however the instances' calls line up, together they stay within one second of the quota (the
burst a per-second rate allows), with 0.4 s of it spare for calls that arrive late and then
close together. So a share under 84 recipients a second (a small quota, or many instances) makes
bulk calls of fewer than 50: lower SenderConcurrency for a small quota.

A throttling answer (an error by which SES refused the request, or a bulk entry
``ACCOUNT_THROTTLED``) halves the instance's pace at once, for every recipient after it; the pace
then climbs back to the share by a tenth of it a second (AIMD). The bucket hears SES's answers
through the client's ``after-call`` event, so every call the instance makes counts, whoever made it.

SES and SNS have no idempotency key, so a send is retried only while the provider refuses it
(``send_at_most_once``).
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable
from typing import Any, Literal, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)
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


SANDBOX_RATE = 1.0  # SES's lowest MaxSendRate (an account in the sandbox): the pace when no quota could be read
QUOTA_MAX_AGE = 3600.0  # seconds: a raised (or lowered) quota reaches running environments within the hour
QUOTA_RETRY = 60.0  # seconds: after a failed GetAccount, try again this soon
BURST_SECONDS = 0.6  # an SES pace holds 0.6 s of its share (see the module's docstring)
DECREASE = 0.5  # a throttle halves the pace ...
COOLDOWN = 1.0  # ... once a second at most: answers to the calls already in flight do not halve it again
RECOVERY_SECONDS = 10.0  # the pace climbs from nothing to the ceiling in this long (from half, in half of it)
LOWEST = 1 / 16  # a fraction of the ceiling the pace never falls below


class TokenBucket:
    """A pace of ``rate_per_second``, in bursts of up to ``burst`` (default ``burst_seconds`` of the rate, at least 1).

    AIMD around a ceiling, the configured rate: ``throttled()`` halves the rate (once a ``COOLDOWN``
    at most) and empties the bucket; the rate then climbs back by ``ceiling / RECOVERY_SECONDS`` a
    second. A ``take(n)`` larger than the bucket waits for a full bucket and leaves it in debt.
    """

    def __init__(
        self,
        rate_per_second: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        burst_seconds: float = 1.0,
    ) -> None:
        self.clock = clock
        self.lock = threading.RLock()  # re-entrant: the quota's read is answered (after-call) under it
        self._burst, self._burst_seconds = burst, burst_seconds
        self.ceiling = self.rate = self.capacity = self.tokens = 0.0
        self._set_ceiling(rate_per_second)
        self.tokens = self.capacity
        self.updated = clock()
        self.throttles = 0  # throttling answers heard, for tests and the bench
        self._decreased_at = -math.inf

    def _set_ceiling(self, rate: float, climb: bool = True) -> None:
        """A new ceiling: a lower one holds at once, a higher one is climbed to (``climb``) or taken."""
        if rate <= 0:
            raise ValueError(f"a pace must be positive, not {rate}")
        self.rate = min(self.rate, rate) if climb and self.ceiling else rate
        self.ceiling = rate
        self.capacity = self._burst if self._burst is not None else max(1.0, rate * self._burst_seconds)
        self.tokens = min(self.tokens, self.capacity)

    def _prepare(self) -> None:
        """Called under the lock before each take (a subclass reads its ceiling here)."""

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)
        if self.rate < self.ceiling:  # additive increase
            self.rate = min(self.ceiling, self.rate + self.ceiling / RECOVERY_SECONDS * elapsed)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
        self.updated = now

    @property
    def most_per_call(self) -> int:
        """The most recipients one call should carry: what the bucket holds when full."""
        with self.lock:
            self._prepare()
            return max(1, int(self.capacity + 1e-9))  # 1000 / 6 * 0.6 is 99.99999999999999

    def take(self, n: int = 1, sleep: Callable[[float], None] = time.sleep) -> None:
        """Wait until ``n`` sends (recipients) fit the pace, and count them."""
        while True:
            with self.lock:
                self._refill(self.clock())  # the time gone by, at the pace it went by at
                self._prepare()
                need = min(float(n), self.capacity)
                if self.tokens >= need - 1e-9:  # not a sleep of 1e-15 s for a rounding error
                    self.tokens -= n
                    return
                wait = (need - self.tokens) / self.rate
            sleep(wait)

    def throttled(self) -> None:
        """The provider refused a send as over its rate: slow down (multiplicative decrease)."""
        with self.lock:
            now = self.clock()
            self._refill(now)
            self.throttles += 1
            if now - self._decreased_at < COOLDOWN:
                return
            self._decreased_at = now
            self.rate = max(self.ceiling * LOWEST, self.rate * DECREASE)
            self.tokens = min(self.tokens, 0.0)


class SesPace(TokenBucket):
    """One sender instance's email pace: a fixed rate, or its share of the account's SES quota.

    ``rate`` None is ``auto``: the ceiling is ``MaxSendRate / instances``, read with GetAccount on
    the first take and again after ``QUOTA_MAX_AGE``. If the first read fails (no permission, SES
    unreachable) the instance paces at its share of ``SANDBOX_RATE``, the lowest quota an account
    has, so it cannot be throttled for long whatever the quota is, logs why, and reads again after
    ``QUOTA_RETRY``; a later read that fails keeps the quota it had. Either way the bucket listens to
    the client's answers (``after-call``) and slows down on throttling.
    """

    def __init__(
        self,
        client: Callable[[], Any],
        rate: float | None,
        instances: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if instances < 1:
            raise ValueError(f"instances must be at least 1, not {instances}")
        super().__init__(rate or SANDBOX_RATE / instances, clock=clock, burst_seconds=BURST_SECONDS)
        self.auto = rate is None
        self.instances = instances
        self.quota: float | None = None  # MaxSendRate as last read (auto)
        self._client = client
        self._watched: Any = None
        self._read_after = -math.inf

    def _prepare(self) -> None:
        if self._watched is None:
            self._watched = self._client()
            self._watched.meta.events.register("after-call.sesv2", self._answered, unique_id=f"optout-pace-{id(self)}")
        if self.auto and self.clock() >= self._read_after:
            self._read_quota()

    def _read_quota(self) -> None:
        try:
            quota = max_send_rate(self._watched)
        except Exception as exc:
            self._read_after = self.clock() + QUOTA_RETRY
            code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code") or type(exc).__name__
            log.warning("SES sending quota unread; pacing at %s recipients/s", self.ceiling, extra={"error": code})
            return
        # The first quota known is taken at once (the sandbox rate before it was a guess); a later
        # one that is higher is climbed to, as after a throttle
        self._set_ceiling(quota / self.instances, climb=self.quota is not None)
        self.quota = quota
        self._read_after = self.clock() + QUOTA_MAX_AGE

    def _answered(self, http_response: Any = None, parsed: Any = None, **_: Any) -> None:
        if isinstance(parsed, dict) and throttling_answer(getattr(http_response, "status_code", 200), parsed):
            self.throttled()


def max_send_rate(client: Any) -> float:
    """The account's SES MaxSendRate in this region (sesv2 GetAccount), in recipients a second."""
    rate = float(client.get_account()["SendQuota"]["MaxSendRate"])
    if not rate > 0:
        raise ValueError(f"SES answered a MaxSendRate of {rate}")
    return rate


def throttling_answer(status: int, parsed: dict[str, Any]) -> bool:
    """SES refused the call as over a rate, or refused one of a bulk call's entries so."""
    code = (parsed.get("Error") or {}).get("Code")
    if code:
        return status < 500 and code in REFUSED_CODES
    return any(r.get("Status") == "ACCOUNT_THROTTLED" for r in parsed.get("BulkEmailEntryResults") or ())


def email_pace(rate: float | Literal["auto"], instances: int, client: Callable[[], Any]) -> SesPace:
    """The email pace of one sender instance (``DeliverySettings``): ``client`` makes its sesv2 client."""
    return SesPace(client, None if rate == "auto" else float(rate), instances)


def refused(exc: BaseException) -> bool:
    """The request surely had no effect: the provider refused it, or it never reached the provider."""
    from botocore import exceptions

    if isinstance(exc, exceptions.ClientError):
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 400)
        return status < 500 and exc.response.get("Error", {}).get("Code") in REFUSED_CODES
    # Connecting failed: nothing was sent
    return isinstance(exc, exceptions.EndpointConnectionError | exceptions.ConnectTimeoutError)


def refused_for_good(exc: BaseException) -> bool:
    """The request surely had no effect and never will: the provider answered a 4xx that is no
    throttle, or botocore refused the request before sending it."""
    from botocore import exceptions

    if isinstance(exc, exceptions.ParamValidationError):
        return True
    if isinstance(exc, exceptions.ClientError):
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 500)
        return status < 500 and exc.response.get("Error", {}).get("Code") not in REFUSED_CODES
    return False


def may_have_taken_effect(exc: BaseException) -> bool:
    """The request may have been applied: a lost answer (timeout, dropped connection), a 5xx, or an
    answer botocore could not read (the provider answered: it had the request)."""
    from botocore import exceptions
    from botocore.parsers import ResponseParserError

    if isinstance(exc, exceptions.ClientError):
        return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 400) >= 500
    if isinstance(exc, ResponseParserError):
        return True
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
