"""core.deadline.within: a call bounded by the time left, on a pool's thread."""

from __future__ import annotations

import contextvars
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from optout.core.deadline import NotStarted, within

SEEN: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="")


def test_a_call_in_time_gives_its_result_in_the_callers_context() -> None:
    SEEN.set("invocation-1")
    with ThreadPoolExecutor(1) as pool:
        assert within(pool, 1.0, SEEN.get) == "invocation-1"


def test_a_started_call_past_the_deadline_times_out_and_runs_on() -> None:
    done = threading.Event()

    def slow() -> None:
        time.sleep(0.5)
        done.set()

    with ThreadPoolExecutor(1) as pool:
        with pytest.raises(TimeoutError):
            within(pool, 0.1, slow)
        assert done.wait(2)  # it was not stopped: whatever it does must be harmless late


def test_a_call_that_could_not_start_is_cancelled_and_never_runs() -> None:
    ran = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(time.sleep, 0.5)
        with pytest.raises(NotStarted):
            within(pool, 0.1, ran.set)
        busy.result()
    assert not ran.is_set()
    with ThreadPoolExecutor(1) as pool, pytest.raises(NotStarted):
        within(pool, 0.0, ran.set)
    assert not ran.is_set()
