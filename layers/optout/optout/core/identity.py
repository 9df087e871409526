"""Addresses: normalise an email or phone number and key it with a peppered HMAC.

The key, never the address, is what the suppression table stores, so an opt-out outlives the
deletion of the person's account without keeping their address.

Email domains are normalised by IDNA2008 with UTS #46 mapping (non-transitional, STD3 rules), as
browsers and mail systems resolve them: ``faß.de`` stays ``xn--fa-hia.de``, never the other domain
``fass.de``. Until this release the IDNA2003 codec folded ß, ς and the joiners away, so the few
addresses whose domain holds them were keyed under another address: ``legacy_email`` gives it,
and the sender and dispatcher honour an opt-out recorded under either key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Literal

from optout.core.errors import InvalidAddress

Channel = Literal["email", "sms"]
CHANNELS: tuple[Channel, ...] = ("email", "sms")

_LOCAL_PART = re.compile(r"^[^\s@\x00-\x1f\x7f]{1,64}$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_KEY = re.compile(r"^[0-9a-f]{64}$")
_CODEPOINT = re.compile(r"U\+[0-9A-F]{4,6}")
_HOST_NAME = "the domain is not a valid host name"


def normalise_email(raw: str) -> str:
    value = raw.strip()
    if value.count("@") != 1:
        raise InvalidAddress("an email address needs exactly one @")
    local, domain = value.split("@")
    local = local.lower()
    if not _LOCAL_PART.fullmatch(local):
        raise InvalidAddress("the part before @ is empty, too long or has spaces")
    domain = domain.rstrip(".")
    # Nearly every address: an ASCII host name, which UTS #46 maps to itself in lower case
    plain = domain.isascii() and "xn--" not in domain.lower()
    ascii_domain = domain.lower() if plain else _idna2008(domain)
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        raise InvalidAddress(_HOST_NAME)
    address = f"{local}@{ascii_domain}"
    if len(address) > 254:
        raise InvalidAddress("the address is longer than 254 characters")
    return address


def _idna2008(domain: str) -> str:
    """An internationalised domain's A-labels, or why IDNA2008 refuses it (no label is quoted: it is
    part of the address)."""
    import idna  # 10 ms of tables: only paid for by an internationalised domain

    try:
        return idna.encode(domain, uts46=True, std3_rules=True, transitional=False).decode("ascii")
    except idna.IDNABidiError as exc:
        raise InvalidAddress("the domain mixes right-to-left and left-to-right text as IDNA2008 forbids") from exc
    except idna.InvalidCodepointContext as exc:
        found = _CODEPOINT.search(str(exc))
        where = f" ({found.group()})" if found else ""
        raise InvalidAddress(f"the domain has a joiner or mark{where} where IDNA2008 does not allow it") from exc
    except idna.InvalidCodepoint as exc:
        found = _CODEPOINT.search(str(exc))
        if found and int(found.group()[2:], 16) < 0x80:  # ASCII punctuation or an underscore
            raise InvalidAddress(_HOST_NAME) from exc
        where = f" ({found.group()})" if found else ""
        raise InvalidAddress(f"the domain has a character{where} IDNA2008 does not allow in a host name") from exc
    except (idna.IDNAError, UnicodeError) as exc:
        text = str(exc)
        if "A-label" in text or "Punycode" in text or "xn--" in text.lower():
            raise InvalidAddress("the domain has a label that is not valid IDNA2008 (xn--)") from exc
        raise InvalidAddress(_HOST_NAME) from exc


def legacy_email(normalised: str) -> str | None:
    """The address as the IDNA2003 codec normalised it before, where that differs; else None.

    It differs only for a domain whose Unicode form holds a character IDNA2003 mapped away (ß to
    ss, ς to σ, the joiners to nothing): opt-outs of such an address may be recorded under this
    address's key. ``normalised`` is what normalise_email returned. An address with no ``xn--``
    label costs a substring test.
    """
    local, _, domain = normalised.rpartition("@")
    if "xn--" not in domain:
        return None
    import idna

    try:
        legacy = idna.decode(domain).encode("idna").decode("ascii")
    except (idna.IDNAError, UnicodeError):  # IDNA2003 refused it: nothing was ever keyed under it
        return None
    return None if legacy == domain else f"{local}@{legacy}"


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


def legacy_address_key(pepper: bytes, channel: Channel, normalised: str) -> str | None:
    """The key an opt-out of this address may be recorded under from before IDNA2008 (legacy_email), if another."""
    legacy = legacy_email(normalised) if channel == "email" else None
    return address_key(pepper, channel, legacy) if legacy is not None else None


def is_address_key(value: str) -> bool:
    return bool(_KEY.fullmatch(value))


# Apostrophes are legal in a local part (mary.o'neil@...): they are part of what is redacted.
EMAIL_IN_TEXT = re.compile(r"(?:[^\s<>\"'@;,][^\s<>\"@;,]*|'+)@[^\s<>\"'@;,]+")
# A number in international form, as providers quote it (+14155550123, +44 20 7946 0958): a
# leading + keeps account ids, request ids, timestamps and IP addresses readable.
PHONE_IN_TEXT = re.compile(r"\+\d[\d\s().-]{5,}\d")


def redact_addresses(text: str) -> str:
    """``text`` with every email address and every international phone number made ``[redacted]``.

    For text that others wrote about an address (a provider's error, a bounce diagnostic), which
    is kept or logged: it keeps the reason, and what an operator needs (ARNs, request ids).
    """
    return PHONE_IN_TEXT.sub("[redacted]", EMAIL_IN_TEXT.sub("[redacted]", text))


@dataclass(frozen=True)
class Identity:
    channel: Channel
    key: str

    @classmethod
    def of(cls, pepper: bytes, channel: Channel, raw: str) -> Identity:
        return cls(channel, address_key(pepper, channel, normalise(channel, raw)))
