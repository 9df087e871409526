"""optout.notices.manifest: streaming lines with resumable offsets, CSV/JSONL rows, recipients."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optout.notices import manifest
from optout.notices.manifest import Cursor, format_of, lines, parse_line, recipient
from optout.notices.model import BadRow, Recipient

CSV = (
    b"recipient_id,email,phone,locale,timezone,name\n"
    b"u1,ana@example.com,,es_MX,Europe/Madrid,Ana\r\n"
    b'u2,,+14155550100,,,"Smith, Bob"\n'
    b"\n"
    b"u3,cy@example.com,+447911123456,fr,,Cy\n"
    b"u4,dee@example.com"  # final line without a newline
)
CHUNK_SIZES = [1, 3, 7, len(CSV)]


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def read_all(data: bytes, size: int, cursor: Cursor | None = None) -> list[tuple[bytes, int, int]]:
    return list(lines(chunked(data, size), cursor or Cursor()))


def parse_all(data: bytes, fmt: str = "csv", size: int | None = None) -> list[Recipient | BadRow]:
    cursor = Cursor(fmt=fmt)  # type: ignore[arg-type]
    out = []
    for raw, number, _ in lines(chunked(data, size or max(1, len(data))), cursor):
        parsed = parse_line(raw, number, cursor)
        if parsed is not None:
            out.append(parsed)
    return out


# --- lines() ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", CHUNK_SIZES, ids=lambda s: f"chunks-of-{s}")
def test_lines_numbers_and_end_offsets(size: int) -> None:
    rows = read_all(CSV, size)

    assert [(number, end) for _, number, end in rows] == [
        (1, 46),
        (2, 91),  # ends after "\r\n"
        (3, 123),
        (4, 124),  # the blank line is a line
        (5, 163),
        (6, len(CSV)),  # no final newline: ends at the end of the data
    ]
    assert [raw for raw, _, _ in rows] == CSV.replace(b"\r\n", b"\n").split(b"\n")
    for raw, _, end in rows:
        # each end offset sits just after its line (and its line break, where there is one)
        assert CSV[:end].rstrip(b"\r\n").endswith(raw)
        assert end == len(CSV) or CSV[end - 1 : end] == b"\n"


@pytest.mark.parametrize("size", [1, 3, 7], ids=lambda s: f"chunks-of-{s}")
def test_chunking_does_not_change_lines(size: int) -> None:
    assert read_all(CSV, size) == read_all(CSV, len(CSV))


def test_crlf_split_across_chunks_is_stripped() -> None:
    # Given "\r" at the end of one chunk and "\n" at the start of the next
    rows = list(lines([b"a,b\r", b"\nc,d\r", b"\n"], Cursor()))
    assert rows == [(b"a,b", 1, 5), (b"c,d", 2, 10)]


def test_empty_input_yields_nothing() -> None:
    assert list(lines([], Cursor())) == []
    assert list(lines([b"", b""], Cursor())) == []


@pytest.mark.parametrize("stop_after", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("size", CHUNK_SIZES, ids=lambda s: f"chunks-of-{s}")
def test_resume_from_cursor_continues_where_reading_stopped(stop_after: int, size: int) -> None:
    # Given a full read, and a cursor saved after line `stop_after`
    full = read_all(CSV, len(CSV))
    _, line, offset = full[stop_after - 1]
    cursor = Cursor(offset=offset, line=line)

    # When reading resumes from that byte
    resumed = read_all(CSV[offset:], size, cursor)

    # Then numbering and absolute offsets continue: the same rows as the rest of the full read
    assert resumed == full[stop_after:]


def test_resume_parses_the_same_recipients_as_a_full_read() -> None:
    full = parse_all(CSV)
    # Given a cursor after line 3 that remembers the header
    cursor = Cursor(fmt="csv")
    consumed: list[Recipient | BadRow] = []
    for raw, number, end in lines([CSV], cursor):
        parsed = parse_line(raw, number, cursor)
        if parsed is not None:
            consumed.append(parsed)
        if number == 3:
            cursor.offset, cursor.line = end, number
            break
    # When the rest is read from that cursor
    rest = []
    for raw, number, _ in lines(chunked(CSV[cursor.offset :], 3), cursor):
        parsed = parse_line(raw, number, cursor)
        if parsed is not None:
            rest.append(parsed)
    # Then together they are the full read
    assert consumed + rest == full
    assert [r.line for r in full] == [2, 3, 5, 6]


def test_line_longer_than_max_line_is_one_bad_row_in_one_chunk() -> None:
    long_line = b"u1," + b"x" * (manifest.MAX_LINE + 10) + b"@example.com"
    data = b"recipient_id,email\n" + long_line + b"\nu2,b@example.com\n"

    rows = parse_all(data)

    assert rows[0] == BadRow(line=2, reason="line longer than 64 KiB")
    assert isinstance(rows[1], Recipient) and rows[1].recipient_id == "u2" and rows[1].line == 3
    assert len(rows) == 2


def test_runaway_final_line_without_newline_is_reported() -> None:
    data = b"recipient_id,email\n" + b"u1," + b"y" * (manifest.MAX_LINE + 100)
    assert parse_all(data, size=len(data)) == [BadRow(line=2, reason="line longer than 64 KiB")]


SMALL_MAX = 32
LONG = b"recipient_id,email\n" + b"u1," + b"z" * 80 + b"@example.com\nu2,b@example.com\n"


def _line_numbers_with_small_max(monkeypatch: pytest.MonkeyPatch, size: int) -> list[tuple[int, int]]:
    monkeypatch.setattr(manifest, "MAX_LINE", SMALL_MAX)
    return [(number, end) for _, number, end in read_all(LONG, size)]


def test_long_line_whole_chunk_small_max(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _line_numbers_with_small_max(monkeypatch, len(LONG)) == [(1, 19), (2, 115), (3, 132)]


@pytest.mark.parametrize("size", [1, 3, 7], ids=lambda s: f"chunks-of-{s}")
def test_long_line_is_one_line_whatever_the_chunking(monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    assert _line_numbers_with_small_max(monkeypatch, size) == [(1, 19), (2, 115), (3, 132)]


def test_long_line_across_real_chunks_keeps_numbering() -> None:
    long_line = b"u1," + b"x" * (manifest.MAX_LINE + 10_000) + b"@example.com"
    data = b"recipient_id,email\n" + long_line + b"\nu2,b@example.com\n"
    assert parse_all(data, size=8192) == parse_all(data, size=len(data))


# --- parse_line: CSV -----------------------------------------------------------------------


def test_csv_rows_parse_to_recipients() -> None:
    rows = parse_all(CSV)
    assert rows == [
        Recipient(
            recipient_id="u1", email="ana@example.com", locale="es", timezone="Europe/Madrid", name="Ana", line=2
        ),
        Recipient(recipient_id="u2", phone="+14155550100", name="Smith, Bob", line=3),
        Recipient(recipient_id="u3", email="cy@example.com", phone="+447911123456", locale="fr", name="Cy", line=5),
        Recipient(recipient_id="u4", email="dee@example.com", line=6),
    ]


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(b"recipient_id,email", id="plain"),
        pytest.param(b"\xef\xbb\xbfrecipient_id,email", id="utf8-bom"),
        pytest.param(b"RECIPIENT_ID,Email", id="upper-case"),
        pytest.param(b"\xef\xbb\xbf Recipient_ID , EMAIL \r", id="bom-spaces-crlf"),
    ],
)
def test_csv_header_detection(header: bytes) -> None:
    cursor = Cursor(fmt="csv")
    assert parse_line(header.rstrip(b"\r"), 1, cursor) is None
    assert cursor.header == ["recipient_id", "email"]
    assert parse_line(b"u1,Ana@Example.com", 2, cursor) == Recipient(recipient_id="u1", email="ana@example.com", line=2)


def test_csv_columns_in_any_order_and_unknown_columns_ignored() -> None:
    rows = parse_all(b"phone,segment,recipient_id\n+12125550100,gold,u9\n")
    assert rows == [Recipient(recipient_id="u9", phone="+12125550100", line=2)]


def test_csv_header_without_recipient_id_makes_every_row_bad() -> None:
    rows = parse_all(b"id,email\nu1,a@example.com\nu2,b@example.com\n")
    assert rows == [
        BadRow(line=1, reason="the header has no recipient_id column"),
        BadRow(line=2, reason="no usable header"),
        BadRow(line=3, reason="no usable header"),
    ]


def test_csv_too_many_cells() -> None:
    rows = parse_all(b"recipient_id,email\nu1,a@example.com,extra\n")
    assert rows == [BadRow(line=2, reason="3 cells for 2 columns")]


def test_csv_fewer_cells_than_columns_is_fine() -> None:
    rows = parse_all(b"recipient_id,email,phone,name\nu1,a@example.com\n")
    assert rows == [Recipient(recipient_id="u1", email="a@example.com", line=2)]


def test_csv_quoted_commas_and_quotes() -> None:
    rows = parse_all(b'recipient_id,name,email\nu1,"Doe, Jane ""JD""",jane@example.com\n')
    assert rows == [Recipient(recipient_id="u1", name='Doe, Jane "JD"', email="jane@example.com", line=2)]


def test_csv_blank_first_lines_before_header() -> None:
    rows = parse_all(b"\n   \nrecipient_id,email\nu1,a@example.com\n")
    assert rows == [Recipient(recipient_id="u1", email="a@example.com", line=4)]


def test_invalid_utf8_is_a_bad_row() -> None:
    rows = parse_all(b"recipient_id,email\nu1,\xff\xfe@example.com\n")
    assert rows == [BadRow(line=2, reason="not valid UTF-8")]


# --- parse_line: JSON Lines -------------------------------------------------------------------


def test_jsonl_objects() -> None:
    data = (
        b'{"recipient_id": "u1", "email": "A@Example.com", "locale": "es-ES", "name": "Ana"}\n'
        b'{"recipient_id": 42, "phone": "+14155550100", "extra": {"nested": true}}\n'
    )
    assert parse_all(data, "jsonl") == [
        Recipient(recipient_id="u1", email="a@example.com", locale="es", name="Ana", line=1),
        Recipient(recipient_id="42", phone="+14155550100", line=2),
    ]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        pytest.param(b'["u1", "a@example.com"]', "not a JSON object", id="array"),
        pytest.param(b'"u1"', "not a JSON object", id="string"),
        pytest.param(b"42", "not a JSON object", id="number"),
        pytest.param(b"null", "not a JSON object", id="null"),
        pytest.param(b'{"recipient_id": "u1", "email": ', "not valid JSON", id="truncated"),
        pytest.param(b"recipient_id,email", "not valid JSON", id="csv-in-jsonl"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, "line longer than 64 KiB", id="too-long"),
        pytest.param(b"[" * 30_000 + b"]" * 30_000, "not valid JSON", id="deeply-nested"),
    ],
)
def test_jsonl_bad_rows(line: bytes, reason: str) -> None:
    assert parse_line(line, 7, Cursor(fmt="jsonl")) == BadRow(line=7, reason=reason)


def test_jsonl_null_values_count_as_missing() -> None:
    line = json.dumps({"recipient_id": "u1", "email": "a@example.com", "phone": None, "timezone": None, "name": None})
    assert parse_line(line.encode(), 3, Cursor(fmt="jsonl")) == Recipient(
        recipient_id="u1", email="a@example.com", line=3
    )


def test_jsonl_null_recipient_id_is_missing() -> None:
    line = b'{"recipient_id": null, "email": "a@example.com"}'
    parsed = parse_line(line, 3, Cursor(fmt="jsonl"))
    assert isinstance(parsed, BadRow) and parsed.line == 3 and "recipient_id" in parsed.reason


def test_blank_lines_are_skipped_in_both_formats() -> None:
    assert parse_line(b"   ", 4, Cursor(fmt="jsonl")) is None
    assert parse_line(b"", 4, Cursor(fmt="csv", header=["recipient_id"])) is None


# --- recipient() ------------------------------------------------------------------------------

ID_REASON = "recipient_id is missing, longer than 128 characters or contains #"


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        pytest.param({"email": "a@example.com"}, ID_REASON, id="id-missing"),
        pytest.param({"recipient_id": "   ", "email": "a@example.com"}, ID_REASON, id="id-blank"),
        pytest.param({"recipient_id": "x" * 129, "email": "a@example.com"}, ID_REASON, id="id-129-chars"),
        pytest.param({"recipient_id": "u#1", "email": "a@example.com"}, ID_REASON, id="id-with-hash"),
        pytest.param({"recipient_id": "u1"}, "no email and no phone", id="no-address"),
        pytest.param({"recipient_id": "u1", "email": " ", "phone": ""}, "no email and no phone", id="blank-address"),
        pytest.param(
            {"recipient_id": "u1", "email": "not-an-email"},
            "invalid email: an email address needs exactly one @",
            id="email-no-at",
        ),
        pytest.param(
            {"recipient_id": "u1", "email": "a@localhost"},
            "invalid email: the domain is not a valid host name",
            id="email-bad-domain",
        ),
        pytest.param(
            {"recipient_id": "u1", "phone": "4155550100"},
            "invalid phone: a phone number must be in international form, starting with +",
            id="phone-not-international",
        ),
        pytest.param(
            {"recipient_id": "u1", "phone": "+1415"},
            "invalid phone: not a valid phone number",
            id="phone-too-short",
        ),
        pytest.param(
            {"recipient_id": "u1", "email": "a@", "phone": "+1 415 555 01"},
            "invalid email: the domain is not a valid host name; invalid phone: not a valid phone number",
            id="both-addresses-invalid",
        ),
    ],
)
def test_recipient_bad_rows(row: dict[str, str], reason: str) -> None:
    parsed = recipient(row, 12)
    assert isinstance(parsed, BadRow) and (parsed.line, parsed.reason) == (12, reason)
    # A valid id goes with the bad row (the person is counted unreachable), but never into its sample
    assert parsed.recipient_id == (row["recipient_id"] if row.get("recipient_id") == "u1" else None)
    assert parsed.model_dump() == {"line": 12, "reason": reason}


@pytest.mark.parametrize(
    ("row", "kept", "warning"),
    [
        pytest.param(
            {"email": "a@example.com", "phone": "+1 415 555 01"},
            {"email": "a@example.com", "phone": None},
            "kept for email only; invalid phone: not a valid phone number",
            id="good-email-bad-phone",
        ),
        pytest.param(
            {"email": "not-an-email", "phone": "+14155550100"},
            {"email": None, "phone": "+14155550100"},
            "kept for phone only; invalid email: an email address needs exactly one @",
            id="bad-email-good-phone",
        ),
        pytest.param(
            {"email": "a@example.com", "phone": "+1 800 FLOWERS"},
            {"email": "a@example.com", "phone": None},
            "kept for email only; invalid phone: a phone number must be written in digits, not letters"
            " (vanity numbers are refused)",
            id="good-email-vanity-phone",
        ),
        pytest.param(
            {"email": "a@example.com", "timezone": "Mars/Olympus_Mons"},
            {"email": "a@example.com", "timezone": None},
            "unknown timezone ignored",
            id="unknown-timezone",
        ),
        pytest.param(
            {"email": "a@example.com", "phone": "+14155550100", "timezone": "../etc/passwd"},
            {"email": "a@example.com", "phone": "+14155550100", "timezone": None},
            "unknown timezone ignored",
            id="timezone-path",
        ),
        pytest.param(
            {"email": "a@@example.com", "phone": "+14155550100", "timezone": "Nowhere/Else"},
            {"email": None, "phone": "+14155550100", "timezone": None},
            "kept for phone only; unknown timezone ignored; invalid email: an email address needs exactly one @",
            id="bad-email-and-timezone",
        ),
    ],
)
def test_a_row_with_one_usable_channel_is_kept_with_a_warning(
    row: dict[str, str], kept: dict[str, str | None], warning: str
) -> None:
    # Given a row with one usable address and a problem elsewhere (a breach alert must still reach them)
    parsed = recipient({"recipient_id": "u1", "name": "Ana", **row}, 12)
    # Then it is a recipient on the usable channel, with the problem as its warning
    assert isinstance(parsed, Recipient), parsed
    assert {k: getattr(parsed, k) for k in kept} == kept
    assert (parsed.recipient_id, parsed.name, parsed.line, parsed.warning) == ("u1", "Ana", 12, warning)
    # And the warning never travels in a send batch
    assert "warning" not in parsed.model_dump() and "kept for" not in parsed.model_dump_json()


def test_a_clean_row_has_no_warning() -> None:
    parsed = recipient({"recipient_id": "u1", "email": "a@example.com", "phone": "+14155550100"}, 3)
    assert isinstance(parsed, Recipient) and parsed.warning is None


def test_parse_line_keeps_a_csv_row_with_a_bad_phone() -> None:
    # Given a CSV manifest row with a valid email and an invalid phone
    rows = parse_all(b"recipient_id,email,phone,timezone\nu1,ana@example.com,+1 415 555 01,Europe/Madrid\n")
    # Then it is kept for its email, not refused whole
    assert len(rows) == 1 and isinstance(rows[0], Recipient)
    assert (rows[0].email, rows[0].phone, rows[0].timezone) == ("ana@example.com", None, "Europe/Madrid")
    assert rows[0].warning == "kept for email only; invalid phone: not a valid phone number"


def test_recipient_id_of_128_characters_is_accepted() -> None:
    parsed = recipient({"recipient_id": "x" * 128, "email": "a@example.com"}, 1)
    assert isinstance(parsed, Recipient) and parsed.recipient_id == "x" * 128


@pytest.mark.parametrize(
    ("row", "field", "expected"),
    [
        pytest.param({"email": "  Ana.Diaz@Example.COM. "}, "email", "ana.diaz@example.com", id="email-lower-trim"),
        pytest.param({"email": "bob@bücher.de"}, "email", "bob@xn--bcher-kva.de", id="email-idna"),
        pytest.param({"phone": "+1 (415) 555-0100"}, "phone", "+14155550100", id="phone-us-formatted"),
        pytest.param({"phone": "0044 7911 123456"}, "phone", "+447911123456", id="phone-00-prefix"),
        pytest.param({"email": "a@example.com", "locale": "es_MX"}, "locale", "es", id="locale-es_MX"),
        pytest.param({"email": "a@example.com", "locale": "pt-BR"}, "locale", "pt", id="locale-pt-BR"),
        pytest.param({"email": "a@example.com", "locale": "EN"}, "locale", "en", id="locale-upper"),
        pytest.param({"email": "a@example.com"}, "locale", "en", id="locale-default"),
        pytest.param({"email": "a@example.com", "locale": "  "}, "locale", "en", id="locale-blank"),
        pytest.param({"email": "a@example.com", "timezone": " Asia/Tokyo "}, "timezone", "Asia/Tokyo", id="tz"),
        pytest.param({"email": "a@example.com", "name": "  Ana  "}, "name", "Ana", id="name-trimmed"),
        pytest.param({"email": "a@example.com", "name": "n" * 201}, "name", None, id="name-too-long-dropped"),
    ],
)
def test_recipient_normalisation(row: dict[str, str], field: str, expected: str | None) -> None:
    parsed = recipient({"recipient_id": "u1", **row}, 5)
    assert isinstance(parsed, Recipient)
    assert getattr(parsed, field) == expected
    assert parsed.line == 5


# --- format_of --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "first", "expected"),
    [
        pytest.param("manifests/list.csv", b"", "csv", id="csv-ext"),
        pytest.param("manifests/LIST.CSV", b"", "csv", id="csv-ext-upper"),
        pytest.param("m.jsonl", b"", "jsonl", id="jsonl-ext"),
        pytest.param("m.ndjson", b"", "jsonl", id="ndjson-ext"),
        pytest.param("m.JSON", b"", "jsonl", id="json-ext-upper"),
        pytest.param("m.csv", b'{"recipient_id": "u1"}', "csv", id="extension-beats-sniffing"),
        pytest.param("m.jsonl", b"recipient_id,email", "jsonl", id="extension-beats-sniffing-jsonl"),
        pytest.param("upload-123", b'  \n{"recipient_id": "u1"}', "jsonl", id="sniff-json-object"),
        pytest.param("upload-123", b"recipient_id,email\n", "csv", id="sniff-csv"),
        pytest.param("upload-123", b"", "csv", id="no-extension-no-bytes"),
        pytest.param("upload.txt", b"[1, 2]", "csv", id="json-array-is-not-jsonl"),
        pytest.param("upload-123", b'\xef\xbb\xbf{"recipient_id": "u1"}', "jsonl", id="sniff-json-after-bom"),
        pytest.param("upload-123", b"\xef\xbb\xbfrecipient_id,email", "csv", id="sniff-csv-after-bom"),
    ],
)
def test_format_of(key: str, first: bytes, expected: str) -> None:
    assert format_of(key, first) == expected


# --- property: arbitrary bytes never break the reader ----------------------------------------

FRAGMENTS = st.sampled_from(
    [
        b"\n", b"\r\n", b"\r", b",", b'"', b"#", b"{", b"}", b"\xef\xbb\xbf", b"\xff", b"\x00",
        b"recipient_id,email,phone,locale,timezone,name\n", b'{"recipient_id": "u1", "email": "a@example.com"}',
        b"u1,a@example.com", b"+14155550100", b"Europe/Paris", b"es_MX", b"null", b"[]",
    ]
)  # fmt: skip
MANIFEST_BYTES = st.lists(st.one_of(FRAGMENTS, st.binary(max_size=20)), max_size=40).map(b"".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=MANIFEST_BYTES, fmt=st.sampled_from(["csv", "jsonl"]), size=st.integers(min_value=1, max_value=64))
def test_arbitrary_bytes_never_raise(data: bytes, fmt: str, size: int) -> None:
    cursor = Cursor(fmt=fmt)  # type: ignore[arg-type]
    last_end = 0
    for expected_number, (raw, number, end) in enumerate(lines(chunked(data, size), cursor), start=1):
        assert number == expected_number
        assert end > last_end
        last_end = end
        parsed = parse_line(raw, number, cursor)
        assert parsed is None or isinstance(parsed, Recipient | BadRow)
        if parsed is not None:
            assert parsed.line == number
    # every byte was consumed, and chunking did not matter
    assert last_end == len(data)
    assert read_all(data, size) == read_all(data, max(1, len(data)))
