"""optout.web.forms: parsing urlencoded and multipart/form-data bodies into text fields."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optout.core.errors import BadForm, OptoutError, PayloadTooLarge, UnsupportedMediaType
from optout.web.forms import MAX_FIELDS, MULTIPART, URLENCODED, first, media_type, parse_form
from optout.web.http import http_status

LIMIT = 8192
BOUNDARY = "----optoutBoundary7MA4YWxk"
MULTIPART_TYPE = f"{MULTIPART}; boundary={BOUNDARY}"


def field(name: str, value: bytes | str, headers: tuple[str, ...] = ()) -> bytes:
    """One multipart part: a form-data Content-Disposition, extra headers, a blank line, the value."""
    raw = value.encode() if isinstance(value, str) else value
    lines = [f'Content-Disposition: form-data; name="{name}"', *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + raw


def multipart(*parts: bytes, boundary: str = BOUNDARY, close: bool = True) -> bytes:
    """A multipart body with CRLF line endings, as browsers send it."""
    delimiter = f"--{boundary}".encode()
    body = b"".join(delimiter + b"\r\n" + part + b"\r\n" for part in parts)
    return body + (delimiter + b"--\r\n" if close else b"")


# --- urlencoded ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(b"action=save", {"action": ["save"]}, id="one-field"),
        pytest.param(
            b"action=save&subscribed=marketing&subscribed=product",
            {"action": ["save"], "subscribed": ["marketing", "product"]},
            id="repeated-name-keeps-order",
        ),
        pytest.param(b"a=caf%C3%A9+au+lait", {"a": ["café au lait"]}, id="percent-and-plus-decoding"),
        pytest.param("a=café".encode(), {"a": ["café"]}, id="raw-utf8"),
        pytest.param(b"a=&b=1", {"a": [""], "b": ["1"]}, id="blank-value-kept"),
        pytest.param(b"List-Unsubscribe=One-Click", {"List-Unsubscribe": ["One-Click"]}, id="rfc8058-one-click"),
        pytest.param(b"", {}, id="empty-body"),
    ],
)
def test_urlencoded(body: bytes, expected: dict[str, list[str]]) -> None:
    assert parse_form(body, URLENCODED, LIMIT) == expected


@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-www-form-urlencoded; charset=UTF-8",
        "Application/X-WWW-Form-Urlencoded",
        "  application/x-www-form-urlencoded ;charset=utf-8",
    ],
)
def test_media_type_is_matched_case_insensitively_without_parameters(content_type: str) -> None:
    assert media_type(content_type) == URLENCODED
    assert parse_form(b"a=1", content_type, LIMIT) == {"a": ["1"]}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"a=\xff", id="invalid-utf8-value"),
        pytest.param(b"\xc3=1", id="truncated-utf8-name"),
        pytest.param(b"a=1&&b=2", id="empty-pair"),
        pytest.param(b"a", id="pair-without-equals"),
    ],
)
def test_malformed_urlencoded_is_bad_form(body: bytes) -> None:
    with pytest.raises(BadForm):
        parse_form(body, URLENCODED, LIMIT)


def test_urlencoded_field_limit() -> None:
    # Given exactly MAX_FIELDS fields, the form parses
    at_limit = "&".join(f"f{i}=x" for i in range(MAX_FIELDS)).encode()
    assert len(parse_form(at_limit, URLENCODED, LIMIT)) == MAX_FIELDS
    # Given one more, distinct or repeated, it is refused
    with pytest.raises(BadForm):
        parse_form(at_limit + b"&extra=x", URLENCODED, LIMIT)
    with pytest.raises(BadForm):
        parse_form("&".join(["f=x"] * (MAX_FIELDS + 1)).encode(), URLENCODED, LIMIT)


# --- multipart -----------------------------------------------------------------------------


def test_multipart_fields() -> None:
    body = multipart(field("action", "save"), field("subscribed", "marketing"), field("subscribed", "product"))
    assert parse_form(body, MULTIPART_TYPE, LIMIT) == {"action": ["save"], "subscribed": ["marketing", "product"]}


def test_multipart_with_quoted_boundary() -> None:
    body = multipart(field("action", "unsubscribe_all"))
    assert parse_form(body, f'{MULTIPART}; boundary="{BOUNDARY}"', LIMIT) == {"action": ["unsubscribe_all"]}


def test_multipart_value_keeps_inner_line_breaks_and_utf8() -> None:
    body = multipart(field("note", "línea uno\r\nlínea dos"))
    assert parse_form(body, MULTIPART_TYPE, LIMIT) == {"note": ["línea uno\r\nlínea dos"]}


def test_multipart_honours_part_charset() -> None:
    body = multipart(field("a", b"caf\xe9", headers=("Content-Type: text/plain; charset=latin-1",)))
    assert parse_form(body, MULTIPART_TYPE, LIMIT) == {"a": ["café"]}


def test_multipart_empty_value() -> None:
    assert parse_form(multipart(field("a", "")), MULTIPART_TYPE, LIMIT) == {"a": [""]}


def test_multipart_field_limit() -> None:
    at_limit = multipart(*(field(f"f{i}", "x") for i in range(MAX_FIELDS)))
    assert len(parse_form(at_limit, MULTIPART_TYPE, 100_000)) == MAX_FIELDS
    over = multipart(*(field(f"f{i}", "x") for i in range(MAX_FIELDS + 1)))
    with pytest.raises(BadForm, match="too many"):
        parse_form(over, MULTIPART_TYPE, 100_000)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(multipart(field("a", "1")), MULTIPART, id="missing-boundary"),
        pytest.param(multipart(field("a", "1")), f"{MULTIPART}; charset=utf-8", id="boundary-param-absent"),
        pytest.param(multipart(field("a", "1")), f"{MULTIPART}; boundary=", id="empty-boundary"),
        pytest.param(multipart(field("a", "1")), f"{MULTIPART}; boundary=other", id="wrong-boundary"),
        pytest.param(multipart(field("a", "1"), close=False), MULTIPART_TYPE, id="no-closing-delimiter"),
        pytest.param(b"a=1", MULTIPART_TYPE, id="urlencoded-body"),
        pytest.param(b"", MULTIPART_TYPE, id="empty-body"),
    ],
)
def test_malformed_multipart_is_bad_form(body: bytes, content_type: str) -> None:
    with pytest.raises(BadForm):
        parse_form(body, content_type, LIMIT)


@pytest.mark.parametrize(
    "part",
    [
        pytest.param(
            b'Content-Disposition: form-data; name="upload"; filename="a.txt"\r\nContent-Type: text/plain\r\n\r\nhello',
            id="file-part",
        ),
        pytest.param(
            b'Content-Disposition: form-data; name="upload"; filename=""\r\n\r\n',
            id="empty-file-part",
        ),
        pytest.param(b'Content-Disposition: attachment; name="a"\r\n\r\nx', id="not-form-data"),
        pytest.param(b"Content-Type: text/plain\r\n\r\nx", id="no-content-disposition"),
        pytest.param(b"Content-Disposition: form-data\r\n\r\nx", id="no-name"),
        pytest.param(field("a", b"caf\xe9"), id="invalid-utf8"),
        pytest.param(field("a", "x", headers=("Content-Type: text/plain; charset=no-such-charset",)), id="bad-charset"),
        pytest.param(
            field(
                "a",
                b"--inner\r\nContent-Disposition: form-data; name=b\r\n\r\ny\r\n--inner--",
                headers=("Content-Type: multipart/mixed; boundary=inner",),
            ),
            id="nested-multipart",
        ),
    ],
)
def test_multipart_accepts_only_plain_text_fields(part: bytes) -> None:
    # Given a well-formed multipart body with one part that is not a plain text field
    body = multipart(field("action", "save"), part)
    # Then the whole form is refused rather than half-parsed
    with pytest.raises(BadForm):
        parse_form(body, MULTIPART_TYPE, LIMIT)


# --- size and media type -------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [URLENCODED, MULTIPART_TYPE, "application/json", None])
def test_body_over_the_limit_is_too_large(content_type: str | None) -> None:
    # The size is checked before anything else, so no parser ever sees an oversized body.
    with pytest.raises(PayloadTooLarge):
        parse_form(b"a" * 257, content_type, 256)


def test_body_at_the_limit_is_parsed() -> None:
    body = b"a=" + b"x" * 254
    assert parse_form(body, URLENCODED, 256) == {"a": ["x" * 254]}
    with pytest.raises(PayloadTooLarge):
        parse_form(body + b"x", URLENCODED, 256)


def test_multipart_at_and_over_the_limit() -> None:
    body = multipart(field("a", "1"))
    assert parse_form(body, MULTIPART_TYPE, len(body)) == {"a": ["1"]}
    with pytest.raises(PayloadTooLarge):
        parse_form(body, MULTIPART_TYPE, len(body) - 1)


@pytest.mark.parametrize(
    "content_type",
    [
        pytest.param("application/json", id="json"),
        pytest.param("text/plain", id="text-plain"),
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param("multipart/mixed; boundary=x", id="multipart-mixed"),
        pytest.param("application/x-www-form-urlencoded-extra", id="lookalike"),
    ],
)
def test_unsupported_media_types(content_type: str | None) -> None:
    with pytest.raises(UnsupportedMediaType):
        parse_form(b"a=1", content_type, LIMIT)


def test_form_errors_are_optout_errors_with_client_statuses() -> None:
    # Handlers turn any OptoutError into its status; these three must never surface as a 500.
    assert all(issubclass(error, OptoutError) for error in (BadForm, PayloadTooLarge, UnsupportedMediaType))
    statuses = [http_status(error("x")) for error in (BadForm, PayloadTooLarge, UnsupportedMediaType)]
    assert statuses == [400, 413, 415]


def test_first() -> None:
    form = {"a": ["1", "2"], "b": []}
    assert first(form, "a") == "1"
    assert first(form, "b") is None
    assert first(form, "missing") is None


# --- properties ----------------------------------------------------------------------------

_header = st.sampled_from(
    [
        b'Content-Disposition: form-data; name="a"',
        b"Content-Disposition: form-data; name=a; filename=",
        b"Content-Disposition: form-data; name*=utf-8''%ff",
        b'Content-Disposition: form-data; name="',
        b"Content-Type: text/plain; charset=",
        b'Content-Type: text/plain; charset="utf-16"',
        b"Content-Type: multipart/mixed; boundary=B",
        b"Content-Transfer-Encoding: base64",
        b"Content-Transfer-Encoding: quoted-printable",
    ]
)
_part = st.tuples(st.lists(st.one_of(_header, st.binary(max_size=20)), max_size=3), st.binary(max_size=30)).map(
    lambda hv: b"\r\n".join(hv[0]) + b"\r\n\r\n" + hv[1]
)
_multipart_like = st.lists(_part, max_size=4).map(lambda parts: multipart(*parts, boundary="B"))


def _check_outcome(body: bytes, content_type: str) -> None:
    try:
        form = parse_form(body, content_type, LIMIT)
    except (BadForm, PayloadTooLarge, UnsupportedMediaType):  # the form errors; any other exception fails
        return
    assert all(isinstance(k, str) and all(isinstance(v, str) for v in vs) for k, vs in form.items())
    assert sum(len(vs) for vs in form.values()) <= MAX_FIELDS


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600), st.sampled_from([URLENCODED, "multipart/form-data; boundary=B"]))
def test_arbitrary_bytes_raise_only_optout_errors(body: bytes, content_type: str) -> None:
    _check_outcome(body, content_type)


@settings(max_examples=200, deadline=None)
@given(_multipart_like, st.sampled_from(['multipart/form-data; boundary="B"', "multipart/form-data; boundary=B"]))
def test_multipart_shaped_bytes_raise_only_optout_errors(body: bytes, content_type: str) -> None:
    _check_outcome(body, content_type)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200), st.text(max_size=60))
def test_arbitrary_content_type_parameters_raise_only_optout_errors(body: bytes, params: str) -> None:
    _check_outcome(body, f"multipart/form-data; boundary={params}")
