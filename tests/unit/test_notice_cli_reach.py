"""`optout notice status` shows the rows kept with a warning and the reach in people."""

from __future__ import annotations

import click
from click.testing import CliRunner

from optout_local.notice_cli import _print

KEPT = "kept for email only; invalid phone: not a valid phone number"


def test_status_prints_warnings_and_reach_in_people() -> None:
    # Given a breach alert with a row kept for its email and a person listed only on a bad row
    document = {
        "id": "ntc_1", "kind": "breach_alert", "topic": "security", "status": "complete", "channels": ["email", "sms"],
        "mode": "all", "total": 2, "bad_rows": 1,
        "bad_row_samples": [{"line": 3, "reason": "no email and no phone"}],
        "warnings": 1, "warning_samples": [{"line": 2, "reason": KEPT}],
        "reach": {"people": 2, "reached": 1, "unreachable": 1, "shared_address": 0, "suppressed": 0, "failed": 0,
                  "unknown": 0, "pending": 0},
        "counts": {"recipients": {"sent": 1}, "by_channel": {"email": {"sent": 1}}},
    }  # fmt: skip

    @click.command()
    def show() -> None:
        _print(document, as_json=False)

    # When the status is printed
    out = CliRunner().invoke(show).output
    # Then the warning is listed on its row, and reach counts people
    assert "warnings    1 rows kept for their usable channels" in out
    assert "  line 2: kept for email only; invalid phone: not a valid phone number" in out
    assert "reach       2 people: reached 1, unreachable 1" in out
