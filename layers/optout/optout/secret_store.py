"""Secrets the domain needs: the address pepper and the token signing key ring.

Values are cached for ``secrets_max_age_seconds`` so a warm function makes no call per request,
and a rotated key ring reaches every function within that time.
"""

from __future__ import annotations

import json
import threading
import time
from functools import lru_cache

from optout import clients
from optout.settings import get_settings
from optout.token import KeyRing

_lock = threading.Lock()
_cache: dict[str, tuple[float, str]] = {}


def secret_string(secret_id: str) -> str:
    if not secret_id:
        raise RuntimeError("a secret this function needs is not configured")
    max_age = get_settings().secrets_max_age_seconds
    now = time.monotonic()
    with _lock:
        hit = _cache.get(secret_id)
        if hit is not None and now - hit[0] < max_age:
            return hit[1]
    value = clients.secretsmanager().get_secret_value(SecretId=secret_id)["SecretString"]
    with _lock:
        _cache[secret_id] = (now, value)
    return value


def pepper() -> bytes:
    secret_id = get_settings().pepper_secret
    if not secret_id:
        raise RuntimeError("OPTOUT_PEPPER_SECRET is not configured")
    return secret_string(secret_id).encode()


def key_ring() -> KeyRing:
    settings = get_settings()
    if not settings.signing_keys_secret:
        raise RuntimeError("OPTOUT_SIGNING_KEYS_SECRET is not configured")
    return _parsed_ring(secret_string(settings.signing_keys_secret), settings.key_grace_days)


@lru_cache(maxsize=8)
def _parsed_ring(value: str, grace_days: int) -> KeyRing:
    """Parsed once per secret value: callers may ask for the ring on every request."""
    return KeyRing.from_secret(json.loads(value), grace_days=grace_days)


def reset() -> None:
    with _lock:
        _cache.clear()
