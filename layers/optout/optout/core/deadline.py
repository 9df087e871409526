"""A call bounded by what is left of an invocation.

The call runs on one of a pool's threads, in a copy of the caller's context (the invocation's
logging and tracing context goes with it); the caller stops waiting at the deadline. A call that
has started runs on, unawaited, so whatever it writes must be harmless late. One still waiting
for a thread is cancelled instead: it never runs.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class NotStarted(Exception):
    """The call did not start before the deadline (no time left, or no thread free): it had no effect."""


def within(pool: ThreadPoolExecutor, seconds: float, call: Callable[[], T]) -> T:
    """``call()``'s result if it comes within ``seconds``; else TimeoutError (it runs on) or NotStarted."""
    if seconds <= 0:
        raise NotStarted("no time left")
    future = pool.submit(contextvars.copy_context().run, call)
    try:
        return future.result(timeout=seconds)
    except TimeoutError:
        if future.cancel():
            raise NotStarted("no thread was free in time") from None
        raise
