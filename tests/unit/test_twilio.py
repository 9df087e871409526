"""optout.sms.twilio: X-Twilio-Signature, TwiML replies and the webhook's form body."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import urlencode

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from optout.core.errors import BadForm, OptoutError, PayloadTooLarge, UnsupportedMediaType
from optout.sms.twilio import form_params, signature, twiml, valid_signature
from optout.web.forms import URLENCODED
from optout.web.http import http_status

# Twilio's published request-validation example
TOKEN = "12345"
URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = [
    ("CallSid", "CA1234567890ABCDE"),
    ("Caller", "+14158675309"),
    ("Digits", "1234"),
    ("From", "+14158675309"),
    ("To", "+18005551212"),
]
EXPECTED = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
# Twilio's vector for a parameter sent more than once
DUPLICATE_PARAMS = [
    ("Sid", "CA123"),
    ("SidAccount", "AC123"),
    ("Digits", "5678"),
    ("Digits", "1234"),
    ("Digits", "1234"),
]
DUPLICATE_EXPECTED = "IK+Dwps556ElfBT0I3Rgjkr1wJU="
LIMIT = 8192


# --- signature -----------------------------------------------------------------------------


def test_signature_matches_twilios_published_vector() -> None:
    assert signature(TOKEN, URL, PARAMS) == EXPECTED


def test_signature_matches_twilios_duplicate_parameter_vector() -> None:
    assert signature(TOKEN, URL, DUPLICATE_PARAMS) == DUPLICATE_EXPECTED


def test_signature_does_not_depend_on_parameter_order() -> None:
    assert signature(TOKEN, URL, list(reversed(PARAMS))) == EXPECTED
    assert signature(TOKEN, URL, [DUPLICATE_PARAMS[i] for i in (4, 2, 0, 3, 1)]) == DUPLICATE_EXPECTED


def test_a_repeated_identical_pair_counts_once_but_a_new_value_counts() -> None:
    once = signature(TOKEN, URL, [("Digits", "1234")])

    assert signature(TOKEN, URL, [("Digits", "1234"), ("Digits", "1234")]) == once
    assert signature(TOKEN, URL, [("Digits", "1234"), ("Digits", "5678")]) != once


def test_signature_covers_non_ascii_values() -> None:
    # Given a body with accents and emoji (an SMS "Arrêt 🛑")
    params = [("Body", "Arrêt 🛑"), ("From", "+33612345678")]

    assert signature(TOKEN, URL, params) != signature(TOKEN, URL, [("Body", "Arret 🛑"), ("From", "+33612345678")])
    assert valid_signature(TOKEN, URL, params, signature(TOKEN, URL, params))


# --- valid_signature -----------------------------------------------------------------------


def test_accepts_the_published_vector() -> None:
    assert valid_signature(TOKEN, URL, PARAMS, EXPECTED)
    assert valid_signature(TOKEN, URL, DUPLICATE_PARAMS, DUPLICATE_EXPECTED)


def test_accepts_surrounding_whitespace_in_the_header() -> None:
    assert valid_signature(TOKEN, URL, PARAMS, f"  {EXPECTED}\r\n")


@pytest.mark.parametrize(
    ("configured", "signed"),
    [
        pytest.param("https://mycompany.com:443/myapp.php?foo=1&bar=2", URL, id="configured-with-443-signed-without"),
        pytest.param(URL, "https://mycompany.com:443/myapp.php?foo=1&bar=2", id="configured-without-signed-with-443"),
        pytest.param("http://mycompany.com/hook", "http://mycompany.com:80/hook", id="http-port-80"),
        pytest.param("http://mycompany.com:80/hook", "http://mycompany.com/hook", id="http-configured-with-80"),
    ],
)
def test_accepts_the_default_port_either_way(configured: str, signed: str) -> None:
    # Given Twilio signed the URL with (or without) the scheme's default port
    claimed = signature(TOKEN, signed, PARAMS)

    # Then the configured URL without (or with) it still verifies
    assert valid_signature(TOKEN, configured, PARAMS, claimed)


@pytest.mark.parametrize(
    ("configured", "signed"),
    [
        pytest.param(URL, "https://mycompany.com:8443/myapp.php?foo=1&bar=2", id="non-default-port"),
        pytest.param(URL, "https://mycompany.com:80/myapp.php?foo=1&bar=2", id="http-port-on-https"),
        pytest.param("http://mycompany.com/hook", "http://mycompany.com:443/hook", id="https-port-on-http"),
    ],
)
def test_other_ports_are_not_interchangeable(configured: str, signed: str) -> None:
    assert not valid_signature(TOKEN, configured, PARAMS, signature(TOKEN, signed, PARAMS))


def _with(params: list[tuple[str, str]], name: str, value: str) -> list[tuple[str, str]]:
    return [(n, value if n == name else v) for n, v in params]


@pytest.mark.parametrize(
    ("token", "url", "params", "claimed"),
    [
        pytest.param(TOKEN, URL, _with(PARAMS, "Digits", "1235"), EXPECTED, id="changed-param-value"),
        pytest.param(TOKEN, URL, _with(PARAMS, "From", "+14158675300"), EXPECTED, id="replayed-with-other-sender"),
        pytest.param(TOKEN, URL, [*PARAMS, ("Body", "STOP")], EXPECTED, id="added-param"),
        pytest.param(TOKEN, URL, PARAMS[:-1], EXPECTED, id="removed-param"),
        pytest.param(
            TOKEN, URL, [("callsid", v) if n == "CallSid" else (n, v) for n, v in PARAMS], EXPECTED, id="renamed-param"
        ),
        pytest.param(TOKEN, URL + "&baz=3", PARAMS, EXPECTED, id="extra-query-parameter"),
        pytest.param(TOKEN, "https://mycompany.com/myapp.php", PARAMS, EXPECTED, id="query-dropped"),
        pytest.param(TOKEN, "https://mycompany.com/other.php?foo=1&bar=2", PARAMS, EXPECTED, id="other-path"),
        pytest.param(TOKEN, "http://mycompany.com/myapp.php?foo=1&bar=2", PARAMS, EXPECTED, id="other-scheme"),
        pytest.param(TOKEN, "https://evil.example/myapp.php?foo=1&bar=2", PARAMS, EXPECTED, id="other-host"),
        pytest.param("12346", URL, PARAMS, EXPECTED, id="wrong-token"),
        pytest.param(TOKEN, URL, PARAMS, None, id="signature-missing"),
        pytest.param(TOKEN, URL, PARAMS, "", id="signature-empty"),
        pytest.param(TOKEN, URL, PARAMS, "   ", id="signature-blank"),
        pytest.param(TOKEN, URL, PARAMS, EXPECTED[:-1], id="signature-truncated"),
        pytest.param(TOKEN, URL, PARAMS, EXPECTED.lower(), id="signature-wrong-case"),
        pytest.param(TOKEN, URL, PARAMS, EXPECTED + EXPECTED, id="signature-doubled"),
        pytest.param(TOKEN, URL, PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8é", id="signature-non-ascii"),
        pytest.param(TOKEN, URL, PARAMS, "🛑" * 7, id="signature-emoji"),
        pytest.param(TOKEN, URL, PARAMS, "\x00" * 28, id="signature-nul-bytes"),
        pytest.param(
            TOKEN,
            URL,
            PARAMS,
            "\udc80",
            id="signature-lone-surrogate",
        ),
    ],
)
def test_rejects(token: str, url: str, params: list[tuple[str, str]], claimed: str | None) -> None:
    assert valid_signature(token, url, params, claimed) is False


def test_rejects_an_empty_auth_token_even_with_a_matching_signature() -> None:
    # Given a deployment whose auth token is not configured (empty)
    # and a request signed with the empty key (anyone can compute it)
    forged = signature("", URL, PARAMS)

    assert valid_signature("", URL, PARAMS, forged) is False


def test_accepts_params_given_as_a_one_shot_iterator() -> None:
    # The params are consumed for every URL variant: a generator must work too
    claimed = signature(TOKEN, "https://mycompany.com:443/myapp.php?foo=1&bar=2", PARAMS)

    assert valid_signature(TOKEN, URL, iter(PARAMS), claimed)


PARAM_TEXT = st.text(max_size=20)
PARAM_LISTS = st.lists(st.tuples(PARAM_TEXT, PARAM_TEXT), max_size=8)


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=32), PARAM_LISTS)
def test_any_request_verifies_against_its_own_signature(token: str, params: list[tuple[str, str]]) -> None:
    assert valid_signature(token, URL, params, signature(token, URL, params))


@settings(max_examples=200, deadline=None)
@given(PARAM_LISTS, PARAM_TEXT, PARAM_TEXT)
def test_any_added_parameter_breaks_the_signature(params: list[tuple[str, str]], name: str, value: str) -> None:
    # Twilio counts a repeated identical pair once, and a pair adds only name + value to the signed text
    assume((name, value) not in params and name + value)
    claimed = signature(TOKEN, URL, params)

    assert not valid_signature(TOKEN, URL, [*params, (name, value)], claimed)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=64))
@example("RSOYDt4T1cUTdK1PDd93/VVr8B8")
@example("ÿ" * 28)
def test_any_other_claimed_signature_is_rejected_without_raising(claimed: str) -> None:
    assume(claimed.strip() != EXPECTED)
    assert valid_signature(TOKEN, URL, PARAMS, claimed) is False


# --- twiml ---------------------------------------------------------------------------------


def _parse(document: str | bytes) -> ET.Element:
    """Parse TwiML we generated ourselves (no DTD, no entities): the stdlib parser is fine here."""
    return ET.fromstring(document)  # noqa: S314


def test_no_reply_is_an_empty_response() -> None:
    document = twiml(None)

    assert document == '<?xml version="1.0" encoding="UTF-8"?><Response/>'
    root = _parse(document)
    assert root.tag == "Response"
    assert list(root) == []


def test_reply_is_one_message() -> None:
    root = _parse(twiml("Acme: You are unsubscribed."))

    assert [child.tag for child in root] == ["Message"]
    assert root[0].text == "Acme: You are unsubscribed."


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param("Tom & Jerry <Co> say \"hi\" & 'bye'", id="markup-characters"),
        pytest.param("</Message><Redirect>https://evil.example</Redirect><Message>", id="element-injection"),
        pytest.param("]]> <![CDATA[ x ]]>", id="cdata-markers"),
        pytest.param("&amp; already escaped", id="entity-looking-text"),
        pytest.param("Arrêt : réabonné 🛑", id="non-ascii"),
    ],
)
def test_reply_text_is_escaped_and_round_trips(reply: str) -> None:
    document = twiml(reply)

    root = _parse(document)
    assert [child.tag for child in root] == ["Message"]
    assert root[0].text == reply
    assert list(root[0]) == []  # no injected elements


def test_markup_characters_are_escaped_in_the_document() -> None:
    document = twiml("a < b & c > d")

    assert "a &lt; b &amp; c &gt; d" in document


# XML 1.0 text: no control characters except tab and newline (a CR is normalised to LF by parsers)
XML_TEXT = st.text(
    st.one_of(
        st.characters(exclude_categories=("Cc", "Cs"), exclude_characters="\ufffe\uffff"),
        st.sampled_from("\t\n"),
    ),
    min_size=1,
    max_size=200,
)


@settings(max_examples=200, deadline=None)
@given(XML_TEXT)
def test_any_reply_round_trips_through_an_xml_parser(reply: str) -> None:
    root = _parse(twiml(reply).encode("utf-8"))

    assert root.tag == "Response"
    assert [child.tag for child in root] == ["Message"]
    assert root[0].text == reply


# --- form_params ---------------------------------------------------------------------------


def test_a_twilio_webhook_body_is_parsed_into_ordered_pairs() -> None:
    body = b"ToCountry=US&Body=Stop+texting+me%21&From=%2B14155550100&To=%2B18005550199&MessageSid=SM0123"

    assert form_params(body, URLENCODED, LIMIT) == [
        ("ToCountry", "US"),
        ("Body", "Stop texting me!"),
        ("From", "+14155550100"),
        ("To", "+18005550199"),
        ("MessageSid", "SM0123"),
    ]


def test_repeated_keys_are_all_kept_in_order() -> None:
    body = b"Digits=5678&Sid=CA123&Digits=1234&Digits=1234"

    assert form_params(body, URLENCODED, LIMIT) == [
        ("Digits", "5678"),
        ("Sid", "CA123"),
        ("Digits", "1234"),
        ("Digits", "1234"),
    ]


def test_blank_values_and_utf8_are_kept() -> None:
    body = "Body=&MediaUrl0=&Note=Arr%C3%AAt+🛑".encode()

    assert form_params(body, URLENCODED, LIMIT) == [("Body", ""), ("MediaUrl0", ""), ("Note", "Arrêt 🛑")]


def test_empty_body_has_no_params() -> None:
    assert form_params(b"", URLENCODED, LIMIT) == []


def test_parsed_body_verifies_against_twilios_vector() -> None:
    # Given the published example's parameters as Twilio would post them (in any order)
    body = urlencode(list(reversed(PARAMS))).encode()

    # When parsed
    params = form_params(body, "application/x-www-form-urlencoded; charset=utf-8", LIMIT)

    # Then the signature verifies
    assert valid_signature(TOKEN, URL, params, EXPECTED)


@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded; charset=UTF-8", "Application/X-WWW-Form-Urlencoded", " " + URLENCODED + " "],
)
def test_urlencoded_content_type_variants_are_accepted(content_type: str) -> None:
    assert form_params(b"Body=STOP", content_type, LIMIT) == [("Body", "STOP")]


@pytest.mark.parametrize(
    "content_type",
    [
        pytest.param("application/json", id="json"),
        pytest.param("multipart/form-data; boundary=B", id="multipart"),
        pytest.param("text/plain", id="text"),
        pytest.param("application/x-www-form-urlencodedx", id="suffix"),
        pytest.param("", id="empty"),
        pytest.param(None, id="missing"),
    ],
)
def test_other_content_types_are_refused(content_type: str | None) -> None:
    with pytest.raises(UnsupportedMediaType) as caught:
        form_params(b"Body=STOP", content_type, LIMIT)
    assert http_status(caught.value) == 415


def test_a_body_over_the_limit_is_refused() -> None:
    body = b"Body=" + b"x" * (LIMIT - 4)
    assert len(body) == LIMIT + 1

    with pytest.raises(PayloadTooLarge) as caught:
        form_params(body, URLENCODED, LIMIT)
    assert http_status(caught.value) == 413


def test_a_body_exactly_at_the_limit_is_accepted() -> None:
    body = b"Body=" + b"x" * (LIMIT - 5)

    assert form_params(body, URLENCODED, LIMIT) == [("Body", "x" * (LIMIT - 5))]


def test_the_size_limit_applies_before_the_content_type() -> None:
    with pytest.raises(PayloadTooLarge):
        form_params(b"x" * 20, "application/json", 10)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"Body=%FF", id="percent-FF"),
        pytest.param(b"Body=%C3", id="truncated-percent-sequence"),
        pytest.param(b"%ED%A0%80=1", id="percent-encoded-surrogate-name"),
        pytest.param(b"Body=\xff", id="raw-invalid-byte"),
        pytest.param(b"Body=\xc3", id="raw-truncated-sequence"),
    ],
)
def test_invalid_utf8_is_a_bad_form(body: bytes) -> None:
    with pytest.raises(BadForm) as caught:
        form_params(body, URLENCODED, LIMIT)
    assert http_status(caught.value) == 400


def test_at_most_one_hundred_fields() -> None:
    hundred = "&".join(f"f{i}=v" for i in range(100)).encode()
    assert len(form_params(hundred, URLENCODED, LIMIT)) == 100

    with pytest.raises(BadForm):
        form_params(hundred + b"&f100=v", URLENCODED, LIMIT)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600), st.sampled_from([URLENCODED, "text/plain", None]), st.integers(0, 700))
@example(b"a=%FF", URLENCODED, 100)
@example(b"&" * 150, URLENCODED, 700)
def test_arbitrary_bytes_raise_only_optout_errors(body: bytes, content_type: str | None, limit: int) -> None:
    try:
        params = form_params(body, content_type, limit)
    except OptoutError:
        return
    assert all(isinstance(name, str) and isinstance(value, str) for name, value in params)
    assert len(params) <= 100


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=20), st.text(max_size=20)), max_size=30))
def test_urlencoded_pairs_round_trip(pairs: list[tuple[str, str]]) -> None:
    body = urlencode(pairs).encode()

    assert form_params(body, URLENCODED, 1 << 20) == pairs
