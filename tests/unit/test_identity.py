"""optout.core.identity: normalising addresses and keying them with a peppered HMAC."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optout.core.errors import InvalidAddress
from optout.core.identity import (
    Identity,
    address_key,
    is_address_key,
    normalise,
    normalise_email,
    normalise_phone,
)

PEPPER = b"unit-test-pepper-0123456789abcdef"
OTHER_PEPPER = b"another-pepper-0123456789abcdef!"

# A domain of three 63-character labels plus a one-letter TLD is 193 characters long.
_LONG_DOMAIN = ".".join(["b" * 63, "c" * 63, "d" * 63, "e"])


# --- email ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("alice@example.com", "alice@example.com", id="already-normal"),
        pytest.param("  alice@example.com \t\n", "alice@example.com", id="surrounding-whitespace"),
        pytest.param("Alice.Smith@Example.COM", "alice.smith@example.com", id="lower-cased"),
        pytest.param("alice+news@mail.example.co.uk", "alice+news@mail.example.co.uk", id="plus-and-subdomains"),
        pytest.param("Bob@Bücher.Example", "bob@xn--bcher-kva.example", id="idna-domain"),
        pytest.param("bob@XN--BCHER-KVA.example", "bob@xn--bcher-kva.example", id="punycode-domain-kept"),
        pytest.param("alice@example.com.", "alice@example.com", id="trailing-dot"),
        pytest.param("alice@example.com..", "alice@example.com", id="trailing-dots"),
        pytest.param("bob@bücher.example.", "bob@xn--bcher-kva.example", id="idna-and-trailing-dot"),
        pytest.param("alice@example\u3002com", "alice@example.com", id="ideographic-full-stop-separator"),
        pytest.param("a@b.c", "a@b.c", id="shortest"),
        pytest.param("a" * 60 + "@" + _LONG_DOMAIN, "a" * 60 + "@" + _LONG_DOMAIN, id="exactly-254-chars"),
    ],
)
def test_normalise_email_accepts_and_normalises(raw: str, expected: str) -> None:
    assert normalise_email(raw) == expected


def test_equivalent_spellings_share_one_key() -> None:
    # Given two spellings of the same address
    # When both are keyed
    # Then they map to the same identity, so an opt-out under one covers the other
    assert Identity.of(PEPPER, "email", " Bob@Bücher.Example. ") == Identity.of(
        PEPPER, "email", "bob@xn--bcher-kva.example"
    )


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
        pytest.param("alice.example.com", id="no-at"),
        pytest.param("alice@bob@example.com", id="two-at"),
        pytest.param("alice@@example.com", id="double-at"),
        pytest.param("al ice@example.com", id="space-in-local-part"),
        pytest.param("al\tice@example.com", id="tab-in-local-part"),
        pytest.param("al\x00ice@example.com", id="nul-in-local-part"),
        pytest.param("alice@exa mple.com", id="space-in-domain"),
        pytest.param("@example.com", id="empty-local-part"),
        pytest.param("a" * 65 + "@example.com", id="local-part-over-64"),
        pytest.param("alice@", id="empty-domain"),
        pytest.param("alice@localhost", id="single-label-domain"),
        pytest.param("alice@-example.com", id="label-starts-with-hyphen"),
        pytest.param("alice@example-.com", id="label-ends-with-hyphen"),
        pytest.param("alice@exa_mple.com", id="underscore-in-label"),
        pytest.param("alice@exam!ple.com", id="punctuation-in-label"),
        pytest.param("alice@example..com", id="empty-label"),
        pytest.param("alice@.example.com", id="leading-dot"),
        pytest.param("alice@" + "x" * 64 + ".com", id="label-over-63"),
        pytest.param("a" * 61 + "@" + _LONG_DOMAIN, id="255-chars"),
        pytest.param("a" * 64 + "@" + ".".join(["a" * 60] * 5), id="far-over-254"),
    ],
)
def test_normalise_email_rejects_invalid(raw: str) -> None:
    with pytest.raises(InvalidAddress):
        normalise_email(raw)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("alice\n@example.com", id="newline-ends-local-part"),
        pytest.param("alice@example\n.com", id="newline-ends-domain-label"),
    ],
)
def test_normalise_email_rejects_an_embedded_newline(raw: str) -> None:
    # Given an address whose local part or a label ends in a newline
    # When it is normalised
    # Then it is refused (a newline would key the address differently and could reach a header)
    # from the same address without one (and could reach a mail header)
    with pytest.raises(InvalidAddress):
        normalise_email(raw)


def test_overlong_address_is_rejected_for_its_length() -> None:
    # Every part is individually valid; only the total length is over the limit.
    with pytest.raises(InvalidAddress, match="254"):
        normalise_email("a" * 61 + "@" + _LONG_DOMAIN)


# --- IDNA2008 (UTS #46, non-transitional) and the keys it must keep --------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("+14155550100 ext 12", id="ext"),
        pytest.param("+1 415 555 0100 x12", id="x"),
        pytest.param("+14155550100#12", id="hash"),
        pytest.param("+14155550100;ext=12", id="rfc3966"),
    ],
)
def test_a_phone_number_with_an_extension_is_refused_for_it(raw: str) -> None:
    # Given a valid number followed by an extension
    # When it is normalised
    # Then it is refused, saying why (E.164 would silently drop the extension and text the switchboard)
    with pytest.raises(InvalidAddress, match="extension"):
        normalise_phone(raw)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("+1 800 FLOWERS", id="vanity-word"),
        pytest.param("+1 800 356 9377a", id="a-trailing-letter"),
        pytest.param("+44 20 7946 O958", id="letter-o-for-zero"),
    ],
)
def test_a_phone_number_with_letters_is_refused_never_read_as_keypad_digits(raw: str) -> None:
    with pytest.raises(InvalidAddress, match="letters"):
        normalise_phone(raw)
    # the digits it stands for are a valid number: the refusal is about the letters
    assert normalise_phone("+1 800 356 9377") == "+18003569377"


# --- dispatch and keys ---------------------------------------------------------------------


def test_normalise_dispatches_on_channel() -> None:
    assert normalise("email", "Alice@Example.com") == "alice@example.com"
    assert normalise("sms", "+1 415-555-0101") == "+14155550101"
    with pytest.raises(InvalidAddress):
        normalise("sms", "alice@example.com")
    with pytest.raises(InvalidAddress, match="unknown channel"):
        normalise("fax", "+14155550101")  # type: ignore[arg-type]


def test_address_key_is_the_documented_hmac() -> None:
    # The key is persisted in the suppression table: its construction must never drift.
    expected = hmac.new(PEPPER, b"email:alice@example.com", hashlib.sha256).hexdigest()
    assert address_key(PEPPER, "email", "alice@example.com") == expected


def test_address_key_is_deterministic_64_lower_hex() -> None:
    first = address_key(PEPPER, "email", "alice@example.com")
    second = address_key(PEPPER, "email", "alice@example.com")
    assert first == second
    assert len(first) == 64
    assert set(first) <= set("0123456789abcdef")
    assert is_address_key(first)


def test_address_key_depends_on_pepper() -> None:
    assert address_key(PEPPER, "email", "alice@example.com") != address_key(OTHER_PEPPER, "email", "alice@example.com")


def test_address_key_depends_on_channel() -> None:
    # The same string under two channels must not collide.
    assert address_key(PEPPER, "email", "+14155550101") != address_key(PEPPER, "sms", "+14155550101")


def test_address_key_depends_on_address() -> None:
    assert address_key(PEPPER, "email", "alice@example.com") != address_key(PEPPER, "email", "alicf@example.com")


@pytest.mark.parametrize(
    ("channel", "address", "fragments"),
    [
        pytest.param("email", "alice@example.com", ["alice@example.com", "example.com"], id="email"),
        pytest.param("sms", "+14155550101", ["+14155550101", "14155550101", "4155550101"], id="sms"),
    ],
)
def test_address_key_never_contains_the_address(channel: str, address: str, fragments: list[str]) -> None:
    key = address_key(PEPPER, channel, address)  # type: ignore[arg-type]
    identity = Identity.of(PEPPER, channel, address)  # type: ignore[arg-type]
    assert identity.key == key
    for fragment in fragments:
        assert fragment not in key
        assert fragment not in repr(identity)
        assert fragment.encode().hex() not in key


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param("a" * 63, id="63-chars"),
        pytest.param("a" * 65, id="65-chars"),
        pytest.param("A" * 64, id="upper-case"),
        pytest.param("g" * 64, id="not-hex"),
        pytest.param(
            "a" * 64 + "\n",
            id="trailing-newline",
        ),
    ],
)
def test_is_address_key_rejects_non_keys(value: str) -> None:
    assert not is_address_key(value)


# --- properties ----------------------------------------------------------------------------

_label = st.text(st.characters(codec="utf-8"), max_size=12)
_domain = st.lists(
    st.one_of(_label, st.from_regex(r"[A-Za-z0-9-]{1,10}", fullmatch=True), st.sampled_from(["Bücher", "xn--"])),
    min_size=1,
    max_size=4,
).map(".".join)
_email_like = st.builds(
    lambda local, domain, tail: f"{local}@{domain}{tail}", _label, _domain, st.sampled_from(["", "."])
)
_emails = st.one_of(st.text(), st.emails(), _email_like)


@settings(max_examples=300, deadline=None)
@given(_emails)
def test_normalise_email_is_idempotent_and_raises_only_invalid_address(raw: str) -> None:
    try:
        normalised = normalise_email(raw)
    except InvalidAddress:
        return
    assert normalise_email(normalised) == normalised
    assert normalised.count("@") == 1
    assert normalised.split("@")[1].isascii()  # the domain is always stored in its ASCII form
    assert normalised == normalised.strip()
    assert len(normalised) <= 254


_phone_like = st.builds(
    lambda prefix, rest: prefix + rest,
    st.sampled_from(["+", "00", "+1", "+44", "+34 ", "+("]),
    st.text(st.sampled_from("0123456789 -().x;=+"), max_size=20),
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), _phone_like))
def test_normalise_phone_is_idempotent_and_raises_only_invalid_address(raw: str) -> None:
    try:
        normalised = normalise_phone(raw)
    except InvalidAddress:
        return
    assert normalise_phone(normalised) == normalised
    assert normalised.startswith("+")
    assert normalised[1:].isdigit()
