"""Secrets the domain needs: the address pepper and the token signing key ring.

Values are kept for ``max_age_seconds`` so a warm function makes no call per request, and a
rotated key ring reaches every function within that time. ``optout.wiring`` holds the store.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from optout.token import KeyRing

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient


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
        self._rings: dict[str, tuple[str, int, KeyRing]] = {}

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

    def key_ring(self, secret_id: str, grace_days: int) -> KeyRing:
        """Parsed once per secret value: callers may ask for the ring on every request."""
        value = self.string(secret_id)
        with self._lock:
            parsed = self._rings.get(secret_id)
            if parsed is not None and parsed[:2] == (value, grace_days):
                return parsed[2]
        ring = KeyRing.from_secret(json.loads(value), grace_days=grace_days)
        with self._lock:
            self._rings[secret_id] = (value, grace_days, ring)
        return ring
