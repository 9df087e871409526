"""The mark's plan and later entries: versioned models, and a mark written by the release before
(positional JSON lists) still read, since a deploy replaces the sender while batches are in flight."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from optout.notices.mark import BatchPlan, LaterEntries
from optout.notices.model import BatchEntry, Recipient, SendBatch
from optout.notices.rules import ChannelOutcome, RecipientOutcome

UNTIL = datetime(2026, 12, 3, 16, 0, tzinfo=UTC)
OUTCOMES = {
    "u1": RecipientOutcome("sent", (ChannelOutcome("email", "sent"),)),
    "u2": RecipientOutcome(
        "deferred",
        (ChannelOutcome("email", "suppressed", "opted out of product"),
         ChannelOutcome("sms", "deferred", "quiet hours", UNTIL)),
    ),
}  # fmt: skip


def test_a_plan_round_trips_and_says_its_version() -> None:
    stored = BatchPlan.of(OUTCOMES).dump()
    assert json.loads(stored)["version"] == 2
    assert BatchPlan.load(stored).outcomes() == OUTCOMES


def test_a_plan_written_by_the_release_before_is_read() -> None:
    # Given the version 1 form: {recipient: [decision, [[channel, decision, reason, until]]]}
    v1 = json.dumps({
        "u1": ["sent", [["email", "sent", None, None]]],
        "u2": ["deferred", [["email", "suppressed", "opted out of product", None],
                            ["sms", "deferred", "quiet hours", UNTIL.isoformat()]]],
    })  # fmt: skip
    # Then it reads as the same outcomes
    assert BatchPlan.load(v1).outcomes() == OUTCOMES


def test_a_plan_with_a_field_it_does_not_know_is_refused_not_misread() -> None:
    stored = json.loads(BatchPlan.of(OUTCOMES).dump())
    stored["recipients"]["u1"]["decision"] = "maybe"
    with pytest.raises(ValidationError):
        BatchPlan.load(json.dumps(stored))


def test_later_entries_round_trip_and_read_the_release_before() -> None:
    # Given a batch, and two entries to queue again
    people = [Recipient(recipient_id=rid, email=f"{rid}@example.com") for rid in ("u1", "u2")]
    batch = SendBatch(notice_id="ntc_1", batch="b1", entries=[BatchEntry(recipient=r) for r in people])
    later = [
        (BatchEntry(recipient=people[0], only=["sms"], deferred=["sms"], previous="deferred", settled=["sent"]), 300),
        (BatchEntry(recipient=people[1], only=["email"], previous="deferred", attempt=2), 5),
    ]
    # When they are kept and read back, now and in the version 1 form
    stored = LaterEntries.of(later).dump()
    v1 = json.dumps([["u1", ["sms"], ["sms"], 0, ["sent"], 300], ["u2", ["email"], None, 2, [], 5]])
    # Then both give the same entries, rebuilt from the batch's own recipients
    assert json.loads(stored)["version"] == 2
    assert LaterEntries.load(stored).again(batch) == later
    assert LaterEntries.load(v1).again(batch) == later
    assert "@" not in stored  # ids only, never an address
