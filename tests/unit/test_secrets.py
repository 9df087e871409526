"""The secret store: one GetSecretValue per secret and max age, and a parse (the key ring) once per value."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from optout.core.secrets import SecretStore
from optout.unsubscribe.token import KeyRing

RING_V1 = {"active": "k1", "k1": "a" * 64}
RING_V2 = {"active": "k2", "k1": "a" * 64, "k2": "b" * 64, "retired": {"k1": "2026-12-01T00:00:00+00:00"}}


class FakeSecrets:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.calls = 0

    def get_secret_value(self, SecretId: str) -> dict[str, Any]:  # noqa: N803 - boto3's name
        self.calls += 1
        return {"SecretString": self.values[SecretId]}


@pytest.fixture
def secrets() -> FakeSecrets:
    fake = FakeSecrets()
    fake.values = {"ring": json.dumps(RING_V1), "pepper": "p" * 32}
    return fake


def test_a_value_is_read_once_per_max_age(secrets: FakeSecrets) -> None:
    # Given a store whose values live 60 s
    now = [0.0]
    store = SecretStore(lambda: secrets, 60, clock=lambda: now[0])  # type: ignore[arg-type, return-value]
    # When a warm function asks for the pepper on every request
    assert {store.pepper("pepper") for _ in range(5)} == {b"p" * 32}
    now[0] = 59.9
    store.pepper("pepper")
    # Then it called Secrets Manager once, and again only once the value is 60 s old
    assert secrets.calls == 1
    now[0] = 60.0
    store.pepper("pepper")
    assert secrets.calls == 2


def test_a_parse_is_kept_per_value_and_redone_after_a_rotation(secrets: FakeSecrets) -> None:
    now = [0.0]
    store = SecretStore(lambda: secrets, 60, clock=lambda: now[0])  # type: ignore[arg-type, return-value]
    parses: list[str] = []

    def ring(grace: int) -> KeyRing:
        def parse(value: str) -> KeyRing:
            parses.append(value)
            return KeyRing.from_secret(json.loads(value), grace_days=grace)

        return store.parsed("ring", ("key_ring", grace), parse)

    # Given the ring asked for on every request
    first = ring(30)
    assert ring(30) is first and parses == [json.dumps(RING_V1)]
    # When the secret rotates, and the cached value ages out
    secrets.values["ring"] = json.dumps(RING_V2)
    assert ring(30) is first  # still within max age: the old value, not parsed again
    now[0] = 61.0
    rotated = ring(30)
    # Then the new value is parsed once, and the new ring is what callers get
    assert rotated is not first and rotated.active == "k2"
    assert ring(30) is rotated and len(parses) == 2
    # And a value read again unchanged is not parsed again
    now[0] = 122.0
    assert ring(30) is rotated and len(parses) == 2


def test_different_parses_of_one_secret_are_kept_apart(secrets: FakeSecrets) -> None:
    store = SecretStore(lambda: secrets, 60)  # type: ignore[arg-type, return-value]
    short = store.parsed("ring", ("key_ring", 1), lambda v: KeyRing.from_secret(json.loads(v), grace_days=1))
    long = store.parsed("ring", ("key_ring", 90), lambda v: KeyRing.from_secret(json.loads(v), grace_days=90))
    assert short is not long
    assert (short.grace, long.grace) == (timedelta(days=1), timedelta(days=90))


def test_an_unconfigured_secret_is_an_error_that_says_so(secrets: FakeSecrets) -> None:
    store = SecretStore(lambda: secrets, 60)  # type: ignore[arg-type, return-value]
    with pytest.raises(RuntimeError, match="not configured"):
        store.string("")
    assert secrets.calls == 0
