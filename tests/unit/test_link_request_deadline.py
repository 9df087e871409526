"""'Email me a new link' answers within the invocation, whatever SES does.

The provider client waits up to 12 s for SES (connect, then read) and the Unsubscribe function's
Timeout is 10 s, after three rate-limit writes: Lambda would kill the invocation mid-send, the
gateway would answer 5xx, and the person, asking again, could be mailed twice. The send gets
what is left of the invocation; past it, the answer is the same page. Fakes for the store, the
limits and SES: what is under test is the deadline, not the AWS calls.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from urllib.parse import urlencode

from optout.core.settings import UnsubscribeSettings
from optout.suppression.store import MemorySuppressionStore
from optout.unsubscribe.link_request import ANSWER_RESERVE, LinkRequest, LinkRequests
from optout.unsubscribe.token import KeyRing

SETTINGS = UnsubscribeSettings.from_env(
    {
        "OPTOUT_SUPPRESSION_TABLE": "suppressions", "OPTOUT_SIGNING_KEYS_SECRET": "signing-keys",
        "OPTOUT_PEPPER_SECRET": "pepper", "OPTOUT_PUBLIC_BASE_URL": "https://x.test", "OPTOUT_NOTICES_TABLE": "notices",
    }
)  # fmt: skip


class Limits:
    def take(self, counter: str, limit: int, window_seconds: int, now: datetime) -> bool:
        return True


class SlowSes:
    def __init__(self, seconds: float) -> None:
        self.seconds, self.started, self.done = seconds, threading.Event(), threading.Event()

    def send(self, to: str, raw_message: bytes) -> str:
        self.started.set()
        time.sleep(self.seconds)
        self.done.set()
        return "m-1"


def _service(ses: SlowSes) -> LinkRequests:
    ring = KeyRing(active="k1", keys={"k1": b"k" * 32})
    return LinkRequests(SETTINGS, MemorySuppressionStore(), Limits(), lambda: b"p" * 32, lambda: ring, lambda: ses)


def _ask(seconds_left: float | None) -> LinkRequest:
    body = urlencode({"email": "someone@example.com"}).encode()
    return LinkRequest(body, "application/x-www-form-urlencoded", "203.0.113.10", "en", seconds_left)


def test_a_send_that_outlasts_the_invocation_gets_the_same_answer_in_time() -> None:
    # Given SES that answers after 3 s, and an invocation with 2 s left
    ses = SlowSes(3.0)
    started = time.monotonic()
    # When someone asks for a new link
    result = _service(ses).request(_ask(2.0))
    # Then the answer comes before the invocation ends, as the same page, with the send's outcome unknown
    assert time.monotonic() - started < 2.0 - ANSWER_RESERVE + 0.5
    assert result.page.status == 200 and result.outcome == "unknown"
    assert ses.started.is_set()  # it was sent: it may arrive, so it is not "failed"
    assert ses.done.wait(5)


def test_a_send_within_the_time_left_is_sent() -> None:
    ses = SlowSes(0.1)
    result = _service(ses).request(_ask(5.0))
    assert result.outcome == "sent" and ses.done.is_set()


def test_no_time_left_sends_nothing() -> None:
    ses = SlowSes(0.1)
    result = _service(ses).request(_ask(ANSWER_RESERVE / 2))
    assert result.page.status == 200 and result.outcome == "failed" and not ses.started.is_set()


def test_a_send_that_never_started_in_time_is_failed_and_never_runs_later() -> None:
    # Given four sends that hang (every sender thread busy)
    hung = SlowSes(3.0)
    service = _service(hung)
    for _ in range(4):
        threading.Thread(target=service.request, args=(_ask(2.0),)).start()
    assert hung.started.wait(2)
    time.sleep(0.2)
    # When a fifth request's send cannot start before its deadline
    fifth = SlowSes(0.0)
    result = _service(fifth).request(_ask(1.5))
    # Then it is failed, not unknown, and it is not sent once the others are done
    assert result.outcome == "failed"
    time.sleep(3.5)
    assert not fifth.started.is_set()
