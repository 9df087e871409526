"""Addresses: normalise an email or phone number and key it with a peppered HMAC.

The key, never the address, is what the suppression table stores, so an opt-out outlives the
deletion of the person's account without keeping their address.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Literal

from optout.errors import InvalidAddress

Channel = Literal["email", "sms"]
CHANNELS: tuple[Channel, ...] = ("email", "sms")

_LOCAL_PART = re.compile(r"^[^\s@\x00-\x1f\x7f]{1,64}$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_KEY = re.compile(r"^[0-9a-f]{64}$")


def normalise_email(raw: str) -> str:
    value = raw.strip()
    if value.count("@") != 1:
        raise InvalidAddress("an email address needs exactly one @")
    local, domain = value.split("@")
    local = local.lower()
    if not _LOCAL_PART.fullmatch(local):
        raise InvalidAddress("the part before @ is empty, too long or has spaces")
    domain = domain.rstrip(".").lower()
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise InvalidAddress("the domain is not a valid internationalised name") from exc
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        raise InvalidAddress("the domain is not a valid host name")
    address = f"{local}@{ascii_domain}"
    if len(address) > 254:
        raise InvalidAddress("the address is longer than 254 characters")
    return address


def normalise_phone(raw: str) -> str:
    import phonenumbers  # heavy metadata: only paid for by code that handles phones

    value = raw.strip()
    if value.startswith("00"):  # the international call prefix many countries dial
        value = "+" + value[2:]
    if not value.startswith("+"):
        raise InvalidAddress("a phone number must be in international form, starting with +")
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidAddress("not a phone number") from exc
    if number.extension:
        # E.164 has no extension: dropping it would text the switchboard, not the person
        raise InvalidAddress("a phone number with an extension cannot receive texts; give the direct number")
    if any(c.isalpha() for c in value):
        # phonenumbers reads vanity letters as keypad digits (FLOWERS: 3569377): say so, never guess
        raise InvalidAddress("a phone number must be written in digits, not letters (vanity numbers are refused)")
    if not phonenumbers.is_valid_number(number):
        raise InvalidAddress("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise(channel: Channel, raw: str) -> str:
    if channel == "email":
        return normalise_email(raw)
    if channel == "sms":
        return normalise_phone(raw)
    raise InvalidAddress(f"unknown channel {channel!r}")


def address_key(pepper: bytes, channel: Channel, normalised: str) -> str:
    """HMAC-SHA256(pepper, channel + ":" + normalised), hex."""
    message = f"{channel}:{normalised}".encode()
    return hmac.new(pepper, message, hashlib.sha256).hexdigest()


def is_address_key(value: str) -> bool:
    return bool(_KEY.fullmatch(value))


@dataclass(frozen=True)
class Identity:
    channel: Channel
    key: str

    @classmethod
    def of(cls, pepper: bytes, channel: Channel, raw: str) -> Identity:
        return cls(channel, address_key(pepper, channel, normalise(channel, raw)))
