"""`optout keys rotate`: a new key signs, and the one it replaces is dated, so its grace ends."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from optout.core.errors import InvalidToken
from optout.core.identity import address_key
from optout.core.settings import Settings
from optout.unsubscribe.token import KeyRing, issue, verify
from optout_local import cli
from optout_local.provision import Stack
from optout_local.target import Target

TTL = timedelta(days=365)


def _target(aws: Stack) -> Target:
    return Target(
        base_url="http://127.0.0.1",
        table=aws.ref("SuppressionTable"),
        signing_secret=aws.ref("SigningKeysSecret"),
        pepper_secret=aws.ref("PepperSecret"),
        settings=Settings(key_grace_days=60),
        clients=boto3.client,
    )


def _stored(aws: Stack) -> dict[str, Any]:
    secret = boto3.client("secretsmanager").get_secret_value(SecretId=aws.ref("SigningKeysSecret"))
    ring: dict[str, Any] = json.loads(secret["SecretString"])
    return ring


def test_rotate_dates_the_old_key_and_signs_with_a_new_one(aws: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the stack's generated ring (k1 only) and a link signed with it
    monkeypatch.setattr(cli, "resolve_target", lambda *args: _target(aws))
    before = KeyRing.from_secret(_stored(aws), grace_days=60)
    key = address_key(b"p" * 32, "email", "alice@example.com")
    old_link = issue(before, "email", key, "marketing")
    # When the keys are rotated twice
    start = datetime.now(UTC).replace(microsecond=0)
    first = CliRunner().invoke(cli.main, ["keys", "rotate"])
    second = CliRunner().invoke(cli.main, ["keys", "rotate"])
    # Then k3 signs, and k1 and k2 each carry the date they retired
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    stored = _stored(aws)
    assert stored["active"] == "k3" and stored["k1"] == before.keys["k1"].decode()
    retired = {kid: datetime.fromisoformat(at) for kid, at in stored["retired"].items()}
    assert set(retired) == {"k1", "k2"}
    assert all(start <= at <= datetime.now(UTC) for at in retired.values())
    new_key = stored["k3"]
    assert isinstance(new_key, str) and len(new_key) == 64 and new_key.isalnum()
    # And what it prints names the keys and dates, never a key's value
    assert "k2 signs new links; k1 retired" in first.stdout
    assert all(str(stored[k]) not in first.output + second.output for k in ("k1", "k2", "k3"))
    # And the old link verifies until the old key's grace ends, and not after
    ring = KeyRing.from_secret(stored, grace_days=60)
    assert ring.undated() == []
    assert verify(ring, old_link, TTL).address_key == key
    with pytest.raises(InvalidToken):
        verify(ring, old_link, TTL, now=retired["k1"] + timedelta(days=60, seconds=1))
    assert issue(ring, "email", key, "marketing").split(".")[1] == "k3"


def test_rotate_warns_about_a_key_rotated_out_by_hand_without_a_date(
    aws: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a ring someone rotated by hand, forgetting k1's retired date
    stored = _stored(aws)
    by_hand = {"active": "k2", "k1": stored["k1"], "k2": "2" * 64}
    client = boto3.client("secretsmanager")
    client.put_secret_value(SecretId=aws.ref("SigningKeysSecret"), SecretString=json.dumps(by_hand))
    monkeypatch.setattr(cli, "resolve_target", lambda *args: _target(aws))
    # When the keys are rotated
    result = CliRunner().invoke(cli.main, ["keys", "rotate"])
    # Then k2 is dated, and the command says that k1 verifies nothing
    assert result.exit_code == 0, result.output
    assert "k1 was rotated out without a retired date and verifies nothing" in result.stderr
    assert sorted(_stored(aws)["retired"]) == ["k2"]
