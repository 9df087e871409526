"""`optout notice status` and `report` print every part of a notice, in order, as they always have."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from optout_local import notice_cli
from optout_local.notice_cli import _print

MIME = "From: a@example.com\nSubject: Our privacy policy changes\n\nBody"

EVERYTHING = {
    "id": "ntc_1", "kind": "breach_alert", "topic": "security", "status": "complete_with_failures", "dry_run": True,
    "channels": ["email", "sms"], "mode": "all",
    "publication": {"published_at": "2026-12-01T10:00:00+00:00", "until": "2026-12-31T00:00:00+00:00",
                    "withdrawn_at": "2026-12-02T10:00:00+00:00"},
    "total": 5, "bad_rows": 1, "bad_row_samples": [{"line": 4, "reason": "no email and no phone"}],
    "warnings": 1, "warning_samples": [{"line": 2, "reason": "kept for email only"}],
    "reach": {"people": 6, "reached": 3, "unreachable": 2, "failed": 0},
    "counts": {
        "recipients": {"sent": 3, "duplicate": 1, "unknown": 1, "failed": 0},
        "by_channel": {"sms": {"unknown": 1}, "email": {"sent": 3, "duplicate": 1}},
    },
    "dry_run_result": {
        "recipients": {"would_send": 4, "suppressed": 1},
        "channels": {"email": {"would_send": 3}, "sms": {"would_send": 1, "suppressed": 1}},
        "reasons": {"sms": {"quiet hours": 1, "opted out": 1}},
        "samples": {"sms": {"encoding": "GSM-7", "segments": 1, "text": "Hi"}, "email": {"mime": MIME}},
    },
    "breach": {"discovered_at": "2026-11-30", "records": 12},
}  # fmt: skip

EVERYTHING_PRINTED = """\
notice      ntc_1 (breach_alert, topic security)
status      complete_with_failures  [dry run]
channels    email, sms (all)
published   2026-12-01T10:00:00+00:00, until 2026-12-31T00:00:00+00:00, withdrawn 2026-12-02T10:00:00+00:00
recipients  5 dispatched, 1 bad rows
  line 4: no email and no phone
warnings    1 rows kept for their usable channels
  line 2: kept for email only
reach       6 people: reached 3, unreachable 2
by recipient duplicate 1, sent 3, unknown 1
  email  duplicate 1, sent 3
  sms    unknown 1
duplicates  1 recipients dropped; addresses listed before: email 1 (decision duplicate in the report)
unknown     1 recipients may or may not have been sent (sms 1); never sent again: \
list them with optout notice report ntc_1 --decision unknown --out unknown.csv
would: suppressed 1, would_send 4
  email  would_send 3
  sms    suppressed 1, would_send 1
         opted out: 1
         quiet hours: 1
sms sample (GSM-7, 1 segment(s)): Hi
email sample Subject: Our privacy policy changes
breach      discovered_at 2026-11-30, records 12
"""


def printed(document: dict[str, Any]) -> str:
    @click.command()
    def show() -> None:
        _print(document, as_json=False)

    return CliRunner().invoke(show).output


def test_status_prints_every_part_of_a_notice_in_order() -> None:
    assert printed(EVERYTHING) == EVERYTHING_PRINTED


def test_status_of_a_bare_notice_prints_only_what_it_has() -> None:
    # Given a notice not yet dispatched: no publication, samples, reach, counts, dry run or breach
    bare = {"id": "ntc_2", "kind": "product", "topic": "product", "status": "pending", "channels": ["email"],
            "mode": "any"}  # fmt: skip
    assert printed(bare) == (
        "notice      ntc_2 (product, topic product)\n"
        "status      pending\n"
        "channels    email (any)\n"
        "recipients  None dispatched, 0 bad rows\n"
    )


def test_status_as_json_is_the_document() -> None:
    @click.command()
    def show() -> None:
        _print(EVERYTHING, as_json=True)

    assert CliRunner().invoke(show).output.startswith('{\n  "id": "ntc_1",\n')


AT = "2026-12-01T10:00:00+00:00"
ROWS = [
    {"recipient_id": "u1", "channel": "email", "decision": "sent", "provider_message_id": "m1", "at": AT},
    {"recipient_id": "u2", "channel": "email", "decision": "failed", "reason": "rejected", "at": AT},
    {"recipient_id": "u3", "channel": "sms", "decision": "sent", "provider_message_id": "m3", "at": AT},
]  # fmt: skip


class _Admin:
    def ok(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        if path.endswith("/deliveries"):  # two pages
            start = 0 if "next_token" not in kwargs["query"] else 2
            return {"items": ROWS[start : start + 2], "next_token": None if start else "2"}
        return {"id": "ntc_1", "kind": "product", "status": "complete_with_failures", "counts": {}}


class _Target:
    def admin(self) -> _Admin:
        return _Admin()


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notice_cli, "_target", lambda *args: _Target())
    # the page itself is notice_reports' (tested there): here, which rows reached it
    monkeypatch.setattr(notice_cli.notice_reports, "visual_html", lambda notice, d, now: f"<!doctype html>{d.rows}")


@pytest.mark.usefixtures("stack")
def test_the_report_says_what_it_wrote_for_the_csv_and_the_visual_report(tmp_path: Path) -> None:
    out, page = tmp_path / "d.csv", tmp_path / "r.html"
    result = CliRunner().invoke(notice_cli.notice, ["report", "ntc_1", "--out", str(out), "--html", str(page)])
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"3 delivery rows written to {out} (notice ntc_1, complete_with_failures)\n"
        f"visual report written to {page} (notice ntc_1, complete_with_failures)\n"
    )
    assert [r["recipient_id"] for r in csv.DictReader(out.open(encoding="utf-8"))] == ["u1", "u2", "u3"]
    assert page.read_text(encoding="utf-8") == "<!doctype html>3"


@pytest.mark.usefixtures("stack")
def test_the_visual_report_alone_writes_no_csv(tmp_path: Path) -> None:
    page = tmp_path / "r.html"
    result = CliRunner().invoke(notice_cli.notice, ["report", "ntc_1", "--html", str(page), "--json"])
    assert result.exit_code == 0, result.output
    assert '"report": {\n    "html": "' + str(page) + '"\n  }' in result.output
    assert list(tmp_path.iterdir()) == [page]
    assert page.read_text(encoding="utf-8") == "<!doctype html>3"
