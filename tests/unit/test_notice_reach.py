"""Notice.reach and the breach report: people, not rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from optout.notices.dispatch import MAX_REASON, Tally
from optout.notices.model import BadRow, Counts, Notice, People

DISCOVERED = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def _notice(recipients: dict[str, int], people: People | None, **extra: object) -> Notice:
    return Notice(
        id="ntc_1", kind="breach_alert", topic="security", channels=["email", "sms"], mode="all", variables={},
        manifest="s3://bucket/m.csv", created_by="admin", created_at=DISCOVERED, updated_at=DISCOVERED,
        status="complete", discovered_at=DISCOVERED, last_sent_at=DISCOVERED + timedelta(hours=5),
        counts=Counts(recipients=recipients), people=people, **extra,  # type: ignore[arg-type]
    )  # fmt: skip


def test_reach_counts_people_and_adds_those_without_an_address_to_the_unreachable() -> None:
    # Given 10 persons: 6 sent, 1 blocked everywhere, 2 only on bad rows, 1 sharing another's address
    notice = _notice({"sent": 6, "unreachable": 1, "duplicate": 3}, People(listed=10, without_address=2, shared=1))
    # Then reach is in people (the 2 duplicate rows of listed ids are not people)
    assert notice.reach() == {
        "people": 10, "reached": 6, "unreachable": 3, "shared_address": 1,
        "suppressed": 0, "failed": 0, "unknown": 0, "pending": 0,
    }  # fmt: skip
    breach = notice.breach_report()
    assert breach is not None and breach["all_reachable_notified_within_72h"] is True
    assert (breach["people"], breach["reached"], breach["unreachable"]) == (10, 6, 3)


def test_a_reachable_person_not_told_means_not_everyone_reachable_was_notified() -> None:
    for left in ({"failed": 1}, {"unknown": 1}, {"deferred": 1}):
        notice = _notice({"sent": 4, **left}, People(listed=5))
        breach = notice.breach_report()
        assert breach is not None and breach["all_reachable_notified_within_72h"] is False, left


def test_a_notice_from_before_people_were_counted_reports_as_before() -> None:
    notice = _notice({"sent": 4, "failed": 1}, None)
    assert notice.reach() is None and notice.public()["reach"] is None
    breach = notice.breach_report()
    assert breach is not None and breach["all_reachable_notified_within_72h"] is True and "people" not in breach


def test_bad_rows_and_warnings_share_the_sample_budget_and_long_reasons_are_cut() -> None:
    # Given a tally that may keep three more samples
    tally = Tally(since=0, samples_left=3)
    tally.bad_row(BadRow(line=2, reason="no email and no phone"))
    tally.warning(3, "kept for email only; " + "x" * 200)
    tally.warning(4, "unknown timezone ignored")
    tally.bad_row(BadRow(line=5, reason="not valid JSON"))
    # Then all four are counted, three sampled, and the long reason cut to fit the notice item
    assert (tally.bad_rows, tally.warnings) == (2, 2)
    assert [b.line for b in tally.bad] == [2] and [w.line for w in tally.warned] == [3, 4]
    assert len(tally.warned[0].reason) == MAX_REASON and tally.warned[0].reason.startswith("kept for email only; ")
