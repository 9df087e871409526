"""Secrets the domain needs: the address pepper and the token signing key ring.

Values are kept for ``max_age_seconds`` so a warm function makes no call per request, and a
rotated key ring reaches every function within that time. ``optout.wiring`` holds the store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, TypeVar, cast

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient


T = TypeVar("T")


class SecretStore:
    def __init__(
        self,
        client: Callable[[], SecretsManagerClient],
        max_age_seconds: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.max_age_seconds = max_age_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._values: dict[str, tuple[float, str]] = {}
        self._parsed: dict[tuple[str, Hashable], tuple[str, object]] = {}

    def string(self, secret_id: str) -> str:
        if not secret_id:
            raise RuntimeError("a secret this function needs is not configured")
        now = self.clock()
        with self._lock:
            hit = self._values.get(secret_id)
            if hit is not None and now - hit[0] < self.max_age_seconds:
                return hit[1]
        value = self.client().get_secret_value(SecretId=secret_id)["SecretString"]
        with self._lock:
            self._values[secret_id] = (now, value)
        return value

    def pepper(self, secret_id: str) -> bytes:
        return self.string(secret_id).encode()

    def parsed(self, secret_id: str, parser: Hashable, parse: Callable[[str], T]) -> T:
        """``parse`` of the secret's value, computed once per value and ``parser`` (a key naming the
        parse and its arguments): callers may ask for it on every request."""
        value = self.string(secret_id)
        key = (secret_id, parser)
        with self._lock:
            hit = self._parsed.get(key)
            if hit is not None and hit[0] == value:
                return cast(T, hit[1])
        result = parse(value)
        with self._lock:
            self._parsed[key] = (value, result)
        return result
