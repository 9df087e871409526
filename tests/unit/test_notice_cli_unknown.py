"""`optout notice status` and `report` show the sends whose outcome is unknown, for follow-up by hand."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from optout_local import notice_cli
from optout_local.notice_cli import _progress_line, _unknown_line

ROWS = [
    {"recipient_id": "u1", "channel": "email", "decision": "sent", "provider_message_id": "m1", "at": "t"},
    {"recipient_id": "u2", "channel": "email", "decision": "unknown", "reason": "outcome unknown", "at": "t"},
    {"recipient_id": "u3", "channel": "email", "decision": "failed", "reason": "rejected by provider", "at": "t"},
    # stored before "unknown" was a decision of its own
    {"recipient_id": "u4", "channel": "sms", "decision": "failed", "reason": "interrupted; outcome unknown", "at": "t"},
]


class _Admin:
    def ok(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        if path.endswith("/deliveries"):  # two pages, as the API pages them
            start = 0 if "next_token" not in kwargs["query"] else 2
            return {"items": ROWS[start : start + 2], "next_token": None if start else "2"}
        return {"id": "ntc_1", "status": "complete_with_failures", "counts": {}}


class _Target:
    def admin(self) -> _Admin:
        return _Admin()


def test_unknown_sends_are_summed_by_recipient_and_channel() -> None:
    # Given a notice where one bulk call of three and one text had their answers lost
    counts = {
        "recipients": {"sent": 10, "unknown": 4},
        "by_channel": {"email": {"sent": 10, "unknown": 3}, "sms": {"unknown": 1}},
    }
    # When the status is printed
    line = _unknown_line(counts, "ntc_1")
    # Then they are shown by channel, with how to list them
    assert line is not None and line.startswith(
        "unknown     4 recipients may or may not have been sent (email 3, sms 1)"
    )
    assert "optout notice report ntc_1 --decision unknown" in line


def test_no_unknown_no_line() -> None:
    assert _unknown_line({"recipients": {"sent": 3}, "by_channel": {"email": {"sent": 3}}}, "ntc_1") is None


def test_the_progress_line_counts_unknown_as_settled() -> None:
    document = {"counts": {"recipients": {"sent": 3, "unknown": 1}}, "total": 4, "status": "complete_with_failures"}
    line = _progress_line(document)
    assert line.startswith("[" + "#" * 24 + "] 4/4") and "unknown 1" in line


def test_the_report_lists_only_the_unknown_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a notice with one sent, one unknown, one failed and one unknown stored as failed before
    monkeypatch.setattr(notice_cli, "_target", lambda *args: _Target())
    out = tmp_path / "unknown.csv"
    # When the report is asked for the unknown only
    result = CliRunner().invoke(notice_cli.notice, ["report", "ntc_1", "--decision", "unknown", "--out", str(out)])
    # Then it lists both unknown rows (the old one as it was stored) and nothing else
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [(r["recipient_id"], r["decision"]) for r in rows] == [("u2", "unknown"), ("u4", "failed")]
    assert "2 delivery rows (unknown) written" in result.output
    # And without the option every row is written
    result = CliRunner().invoke(notice_cli.notice, ["report", "ntc_1", "--out", str(out)])
    assert result.exit_code == 0 and len(list(csv.DictReader(out.open(encoding="utf-8")))) == 4
