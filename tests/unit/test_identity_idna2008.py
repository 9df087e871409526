"""Email domains by IDNA2008 with UTS #46 mapping, and the legacy (IDNA2003) key opt-outs may sit under."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from optout.core.errors import InvalidAddress
from optout.core.identity import Identity, address_key, legacy_address_key, legacy_email, normalise_email
from optout.notices.model import Recipient
from optout.notices.rules import address_keys, decide, stricter
from optout.suppression.model import Block, SuppressionState

PEPPER = b"unit-test-pepper-0123456789abcdef"
NOW = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("user@faß.de", "user@xn--fa-hia.de", id="sharp-s-kept"),
        pytest.param("user@FASS.de", "user@fass.de", id="ascii-fass-unchanged"),
        pytest.param("x@ς.gr", "x@xn--3xa.gr", id="final-sigma-kept"),
        pytest.param("x@Σ.gr", "x@xn--4xa.gr", id="capital-sigma-maps-to-sigma"),
        pytest.param("Bob@Bücher.Example", "bob@xn--bcher-kva.example", id="umlaut-as-before"),
        pytest.param("x@ＥＸＡＭＰＬＥ.com", "x@example.com", id="fullwidth-mapped"),
        pytest.param("x@example\u3002com", "x@example.com", id="ideographic-full-stop"),
        pytest.param("x@xn--fa-hia.de", "x@xn--fa-hia.de", id="a-label-kept"),
        pytest.param("x@例え.テスト", "x@xn--r8jz45g.xn--zckzah", id="japanese"),
    ],
)
def test_domains_are_normalised_by_idna2008_with_uts46_mapping(raw: str, expected: str) -> None:
    assert normalise_email(raw) == expected


def test_fass_and_fass_with_sharp_s_are_two_addresses_with_two_keys() -> None:
    # Given faß.de and fass.de, two domains with two owners
    sharp, plain = Identity.of(PEPPER, "email", "user@faß.de"), Identity.of(PEPPER, "email", "user@fass.de")
    # Then they no longer share a suppression key
    assert sharp.key != plain.key
    assert sharp.key == address_key(PEPPER, "email", "user@xn--fa-hia.de")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param("x@☃.net", "character (U+2603) IDNA2008 does not allow", id="symbol"),
        pytest.param("x@a\u200db.com", "joiner or mark (U+200D)", id="joiner-out-of-context"),
        pytest.param("x@xn--zz.com", "not valid IDNA2008 (xn--)", id="bad-a-label"),
        pytest.param("x@a1עברית.com", "right-to-left", id="bidi"),
        pytest.param("x@exä_mple.com", "not a valid host name", id="underscore-in-idn"),
        pytest.param("x@" + "ü" * 70 + ".com", "not a valid host name", id="label-too-long"),
        pytest.param("x@bü..com", "not a valid host name", id="empty-label"),
    ],
)
def test_domains_idna2008_refuses_are_refused_with_a_reason(raw: str, reason: str) -> None:
    with pytest.raises(InvalidAddress, match=reason.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        normalise_email(raw)
    # and the reason never quotes the domain
    with pytest.raises(InvalidAddress) as refused:
        normalise_email(raw)
    assert raw.split("@")[1].split(".")[0] not in refused.value.message


@pytest.mark.parametrize(
    ("raw", "legacy"),
    [
        pytest.param("user@faß.de", "user@fass.de", id="sharp-s"),
        pytest.param("x@ς.gr", "x@xn--4xa.gr", id="final-sigma"),
        pytest.param("user@example.com", None, id="ascii"),
        pytest.param("user@bücher.example", None, id="umlaut-same-under-both"),
        pytest.param("x@例え.テスト", None, id="japanese-same-under-both"),
    ],
)
def test_legacy_email_is_the_idna2003_form_only_where_it_differs(raw: str, legacy: str | None) -> None:
    normalised = normalise_email(raw)
    assert legacy_email(normalised) == legacy
    if legacy is not None:
        # the key an opt-out recorded before IDNA2008 is under: what the IDNA2003 codec made of it
        assert raw.split("@")[1].encode("idna").decode() == legacy.split("@")[1]


def test_legacy_key_only_for_changed_email_addresses() -> None:
    assert legacy_address_key(PEPPER, "email", "user@xn--fa-hia.de") == address_key(PEPPER, "email", "user@fass.de")
    assert legacy_address_key(PEPPER, "email", "user@example.com") is None
    assert legacy_address_key(PEPPER, "sms", "+14155550100") is None


def test_address_keys_add_a_legacy_key_only_where_the_normalisation_changed() -> None:
    # Given a batch of ordinary addresses and one on faß.de
    recipients = [
        Recipient(recipient_id="u1", email="ana@example.com", phone="+14155550100"),
        Recipient(recipient_id="u2", email=normalise_email("bob@bücher.example")),
        Recipient(recipient_id="u3", email=normalise_email("cy@faß.de")),
    ]
    keys = address_keys(PEPPER, ((r, ["email", "sms"]) for r in recipients))
    # Then only faß.de's address has a second key to read, and nothing else costs a key more
    assert keys.legacy == {("u3", "email"): address_key(PEPPER, "email", "cy@fass.de")}
    assert len(keys.to_read()) == len(keys.current) + 1 == 5


def _state(key: str, **fields: object) -> SuppressionState:
    return SuppressionState(address_key=key, channel="email", **fields)  # type: ignore[arg-type]


def test_an_opt_out_under_the_legacy_key_decides_the_address() -> None:
    # Given cy@faß.de opted out of marketing before IDNA2008 (under the fass.de key)
    recipient = Recipient(recipient_id="u3", email=normalise_email("cy@faß.de"))
    keys = address_keys(PEPPER, [(recipient, ["email"])])
    legacy = keys.legacy[("u3", "email")]
    states = {legacy: _state(legacy, topics=frozenset({"marketing"}))}
    # When a marketing mail is decided
    state = keys.state(("u3", "email"), states)
    outcome = decide(recipient, "marketing", ["product", "marketing"], ["email"], "all", {"email": state}, NOW)
    # Then it is suppressed
    assert outcome.decision == "suppressed" and outcome.channels[0].reason == "opted out of marketing"


def test_stricter_keeps_every_opt_out_and_block_of_both_keys() -> None:
    block = Block(reason="bounce", source="bounce", at=NOW)
    current = _state("a" * 64, topics=frozenset({"product"}), version=3)
    legacy = _state("b" * 64, topics=frozenset({"marketing"}), all_optional=True, blocked=block)
    merged = stricter(current, legacy)
    assert merged is not None
    assert (merged.address_key, merged.version) == ("a" * 64, 3)
    assert merged.topics == {"product", "marketing"} and merged.all_optional and merged.blocked == block
    assert stricter(current, None) is current and stricter(None, legacy) is legacy
