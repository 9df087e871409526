"""`optout notice status` shows what the dispatcher dropped as duplicates."""

from __future__ import annotations

from optout_local.notice_cli import _duplicates_line, _progress_line


def test_duplicates_are_summed_by_recipient_and_channel() -> None:
    # Given a notice where one recipient was dropped whole and two channels had addresses listed before
    counts = {"recipients": {"sent": 3, "duplicate": 1}, "by_channel": {"email": {"sent": 2, "duplicate": 2}}}
    # When the status is printed
    line = _duplicates_line(counts)
    # Then both are shown, by channel
    assert line == (
        "duplicates  1 recipients dropped; addresses listed before: email 2 (decision duplicate in the report)"
    )


def test_no_duplicates_no_line() -> None:
    # Given a notice with no duplicate
    # Then no duplicates line is printed
    assert _duplicates_line({"recipients": {"sent": 3}, "by_channel": {"email": {"sent": 3}}}) is None


def test_the_progress_line_counts_duplicates_as_settled() -> None:
    # Given 4 recipients, 3 sent and 1 duplicate
    document = {"counts": {"recipients": {"sent": 3, "duplicate": 1}}, "total": 4, "status": "complete"}
    # Then the bar is full and shows the duplicate
    line = _progress_line(document)
    assert line.startswith("[" + "#" * 24 + "] 4/4") and "duplicate 1" in line
