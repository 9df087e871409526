"""A required notice reaches every person it can: rows kept for their usable channel, reach counted in people."""

from __future__ import annotations

import json

from optout import wiring
from tests.conftest import sent_sms
from tests.integration.notice_pipeline import BREACH, POLICY, Pipeline, sent_mail


def _report(pipeline: Pipeline, notice_id: str) -> list[dict[str, str]]:
    status, page = pipeline.api(
        "GET", f"/admin/notices/{notice_id}/deliveries", route="/admin/notices/{notice_id}/deliveries",
        params={"notice_id": notice_id}, query="limit=1000",
    )  # fmt: skip
    assert status == 200
    return page["items"]


def test_a_breach_alert_reaches_a_person_over_their_one_good_channel_and_counts_people(pipeline: Pipeline) -> None:
    # Given a breach-alert manifest where some rows have one bad channel or an unknown time zone,
    # one person is listed only on rows without a usable address, and some persons on several rows
    manifest = pipeline.manifest(
        [
            "u1,user1@example.com,+1 415 555 01,en,America/New_York,Bad phone",  # line 2
            "u2,user2@,+14155550102,en,,Bad email",  # line 3
            "u3,user3@example.com,,en,Mars/Olympus_Mons,Unknown zone",  # line 4
            "u4,,,en,,No address",  # line 5
            "u4,not-an-email,+1415,en,,Still no address",  # line 6: the same person, still unusable
            "u5,user5@example.com,,en,,Listed twice",  # line 7
            "u5,user5@example.com,,en,,Listed twice",  # line 8
            "u6,bad@@example.com,+1 800 FLOWERS,en,,Fixed below",  # line 9
            "u6,user6@example.com,,en,,Fixed",  # line 10: a later row gives u6 an address
        ]
    )
    # When the alert is sent
    notice = pipeline.create("breach_alert", BREACH, manifest)
    pipeline.run(notice["id"])
    result = pipeline.get(notice["id"])
    # Then each person with one usable address was told on it
    assert result["status"] == "complete"
    mailed = sorted(str(m["To"]) for m in sent_mail())
    assert mailed == ["user1@example.com", "user3@example.com", "user5@example.com", "user6@example.com"]
    assert [number for number, _ in sent_sms()] == ["+14155550102"]
    assert result["counts"]["by_channel"] == {"email": {"sent": 4}, "sms": {"sent": 1}}
    # And what could not be used of their rows is reported on the row, as a warning
    assert result["warnings"] == 3
    assert result["warning_samples"] == [
        {"line": 2, "reason": "kept for email only; invalid phone: not a valid phone number"},
        {"line": 3, "reason": "kept for phone only; invalid email: the domain is not a valid host name"},
        {"line": 4, "reason": "unknown timezone ignored"},
    ]
    assert [s["line"] for s in result["bad_row_samples"]] == [5, 6, 9] and result["bad_rows"] == 3
    # And reach counts people, not rows: 6 persons, 5 reached, u4 unreachable (substitute notice)
    assert result["reach"] == {
        "people": 6, "reached": 5, "unreachable": 1, "shared_address": 0,
        "suppressed": 0, "failed": 0, "unknown": 0, "pending": 0,
    }  # fmt: skip
    breach = result["breach"]
    assert (breach["people"], breach["reached"], breach["unreachable"]) == (6, 5, 1)
    assert breach["all_reachable_notified_within_72h"] is True
    # And the evidence has one row per person and channel that was tried
    rows = {(r["recipient_id"], r["channel"]): r["decision"] for r in _report(pipeline, notice["id"])}
    assert rows[("u1", "email")] == "sent" and rows[("u2", "sms")] == "sent" and rows[("u6", "email")] == "sent"


def test_reach_counts_a_person_with_no_usable_channel_as_unreachable(pipeline: Pipeline) -> None:
    # Given a policy change by email to a person with only a phone, one with nothing usable, and one
    # whose only address another recipient has
    manifest = pipeline.manifest(
        [
            "u1,user1@example.com,,en,,A",
            "u2,,+14155550102,en,,Phone only",
            "u3,user3@,,en,,Bad email only",
            "u4,USER1@example.com,,en,,Shares u1's address",
        ]
    )
    notice = pipeline.create("policy_change", POLICY, manifest)
    pipeline.run(notice["id"])
    result = pipeline.get(notice["id"])
    # Then the reach report counts four people: one reached, two unreachable, one told through u1
    assert result["reach"] == {
        "people": 4, "reached": 1, "unreachable": 2, "shared_address": 1,
        "suppressed": 0, "failed": 0, "unknown": 0, "pending": 0,
    }  # fmt: skip
    assert result["counts"]["recipients"] == {"sent": 1, "unreachable": 1, "duplicate": 1}


def test_a_dry_run_reports_its_reach_and_warnings(pipeline: Pipeline) -> None:
    manifest = pipeline.manifest(["u1,user1@example.com,12345,en,,A", "u2,,,en,,B", "u2,,,en,,B again"])
    notice = pipeline.create("breach_alert", BREACH, manifest, dry_run=True)
    pipeline.run(notice["id"])
    result = pipeline.get(notice["id"])
    assert sent_mail() == [] and sent_sms() == []
    assert result["warnings"] == 1 and result["bad_rows"] == 2
    assert result["reach"]["people"] == 2 and result["reach"]["reached"] == 1 and result["reach"]["unreachable"] == 1


def test_a_continuation_counts_each_person_once(pipeline: Pipeline) -> None:
    # Given persons listed before and after the first checkpoint, on bad rows and good ones
    rows = [f"u{i},user{i}@example.com,,en,,U" for i in range(600)]
    rows[1] = "b1,,,en,,Bad first"
    rows += ["b1,fixed1@example.com,,en,,Fixed after the checkpoint", "u3,user3@example.com,,en,,Again", "b2,,,en,,"]
    notice = pipeline.create("policy_change", POLICY, pipeline.manifest(rows))
    (record,) = pipeline.receive("DispatchQueue")
    # When the first invocation stops after a checkpoint and a new one continues
    assert wiring.dispatcher().handle(json.loads(record["body"]), lambda: 30_000) == "continued"
    pipeline.run(notice["id"])
    result = pipeline.get(notice["id"])
    # Then 601 persons: 600 reached (b1 by its later row), b2 unreachable
    assert result["reach"]["people"] == 601
    assert (result["reach"]["reached"], result["reach"]["unreachable"]) == (600, 1)
