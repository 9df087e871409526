"""Unsubscribe tokens: signed, opaque, long-lived, and free of any plain address.

Format (all parts URL-safe, joined by "."):

    1 . kid . channel . address_key . topic . issued_at(base 36) . mac(base64url)

The MAC is HMAC-SHA256 under the key named by ``kid`` over everything before it. Keys live
in a key ring: the active key signs; retired keys keep verifying for a grace period so links
in mail already sent keep working after a rotation. A key that is not active verifies only
with the date it retired: without one its grace could never end.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from optout.core.errors import InvalidToken, MalformedToken
from optout.core.identity import CHANNELS, Channel, is_address_key

VERSION = "1"
MAX_TOKEN_LENGTH = 256
CLOCK_SKEW = timedelta(minutes=5)
_KID = re.compile(r"^[A-Za-z0-9_-]{1,16}$")
_TOPIC = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_IAT = re.compile(r"^[0-9a-z]{1,7}$")
_MAC = re.compile(r"^[A-Za-z0-9_-]{43}$")
_CHANNEL_CODES: dict[Channel, str] = {"email": "e", "sms": "s"}
_CODE_CHANNELS: dict[str, Channel] = {v: k for k, v in _CHANNEL_CODES.items()}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokenClaims:
    channel: Channel
    address_key: str
    topic: str
    issued_at: datetime


@dataclass(frozen=True)
class KeyRing:
    """Signing keys by id; ``retired`` maps a key id to when it stopped signing."""

    active: str
    keys: Mapping[str, bytes]
    retired: Mapping[str, datetime] = field(default_factory=dict)
    grace: timedelta = timedelta(days=365)

    def __post_init__(self) -> None:
        if self.active not in self.keys:
            raise ValueError("the active key id has no key")
        for kid, key in self.keys.items():
            if not _KID.fullmatch(kid) or len(key) < 32:
                raise ValueError("key ids must be short and URL-safe, keys at least 32 bytes")

    @classmethod
    def from_secret(cls, raw: Mapping[str, object], grace_days: int = 365) -> KeyRing:
        """Read the secret's JSON: ``{"active": kid, kid: key, ..., "retired": {kid: iso}}``."""
        active = raw.get("active")
        retired_raw = raw.get("retired") or {}
        if not isinstance(active, str) or not isinstance(retired_raw, dict):
            raise ValueError("the signing key secret needs an 'active' key id")
        keys = {k: v.encode() for k, v in raw.items() if k not in ("active", "retired") and isinstance(v, str)}
        retired = {k: _utc(datetime.fromisoformat(str(v))) for k, v in retired_raw.items()}
        ring = cls(active=active, keys=keys, retired=retired, grace=timedelta(days=grace_days))
        for kid in ring.undated():
            # Not refused: the ring's other keys keep every other link working.
            log.warning("signing key %s is not active and has no retired date: it verifies no token", kid)
        return ring

    def to_secret(self) -> dict[str, object]:
        """The secret's JSON, as ``from_secret`` reads it."""
        keys: dict[str, object] = {kid: key.decode("ascii") for kid, key in self.keys.items()}
        retired = {kid: at.isoformat() for kid, at in self.retired.items() if kid in self.keys}
        return {"active": self.active, **keys, "retired": retired}

    def rotated(self, kid: str, key: bytes, now: datetime) -> KeyRing:
        """``kid`` signs from ``now`` on; the key it replaces retires at ``now`` and verifies for the grace."""
        if kid in self.keys:
            raise ValueError(f"key id {kid} is already in the ring")
        retired = {k: at for k, at in self.retired.items() if k != kid} | {self.active: _utc(now)}
        return KeyRing(active=kid, keys={**self.keys, kid: key}, retired=retired, grace=self.grace)

    def undated(self) -> list[str]:
        """Keys rotated out without a retired date: they verify nothing."""
        return sorted(kid for kid in self.keys if kid != self.active and kid not in self.retired)

    def verifying_key(self, kid: str, now: datetime) -> bytes | None:
        key = self.keys.get(kid)
        if key is None or kid == self.active:
            return key
        retired_at = self.retired.get(kid)
        if retired_at is None or now > retired_at + self.grace:
            return None
        return key


def _utc(moment: datetime) -> datetime:
    """A retirement time written without a zone is UTC (comparing naive and aware times fails)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _mac(key: bytes, signed: str) -> str:
    return _b64(hmac.new(key, signed.encode("ascii"), hashlib.sha256).digest())


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def unsubscribe_url(base_url: str, token: str) -> str:
    """The link a token travels in: the one route that reads it (GET and POST /unsubscribe)."""
    return f"{base_url.rstrip('/')}/unsubscribe?token={quote(token, safe='')}"


def issue(ring: KeyRing, channel: Channel, address_key: str, topic: str, now: datetime | None = None) -> str:
    if channel not in CHANNELS or not is_address_key(address_key) or not _TOPIC.fullmatch(topic):
        raise ValueError("cannot sign a token for these claims")
    issued = int((now or datetime.now(UTC)).timestamp())
    signed = ".".join((VERSION, ring.active, _CHANNEL_CODES[channel], address_key, topic, _base36(issued)))
    return f"{signed}.{_mac(ring.keys[ring.active], signed)}"


def verify(ring: KeyRing, token: str, ttl: timedelta, now: datetime | None = None) -> TokenClaims:
    """Return the claims of a genuine, unexpired token; raise MalformedToken or InvalidToken."""
    now = now or datetime.now(UTC)
    if not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        raise MalformedToken("the link is incomplete or damaged")
    parts = token.split(".")
    if len(parts) != 7:
        raise MalformedToken("the link is incomplete or damaged")
    version, kid, code, key, topic, iat, mac = parts
    if (
        version != VERSION
        or not _KID.fullmatch(kid)
        or code not in _CODE_CHANNELS
        or not is_address_key(key)
        or not _TOPIC.fullmatch(topic)
        or not _IAT.fullmatch(iat)
        or not _MAC.fullmatch(mac)
    ):
        raise MalformedToken("the link is incomplete or damaged")
    secret = ring.verifying_key(kid, now)
    expected = _mac(secret if secret is not None else b"\0" * 32, token.rsplit(".", 1)[0])
    # Compare even for an unknown key so timing does not reveal which key ids exist.
    if not hmac.compare_digest(expected, mac) or secret is None:
        raise InvalidToken("the link is not valid")
    issued_at = datetime.fromtimestamp(int(iat, 36), UTC)
    if issued_at > now + CLOCK_SKEW:
        raise InvalidToken("the link is not valid")
    if now - issued_at > ttl:
        raise InvalidToken("the link has expired")
    return TokenClaims(_CODE_CHANNELS[code], key, topic, issued_at)
