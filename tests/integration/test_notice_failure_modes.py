"""Notices when things fail halfway: each test pins down a fault a review found, now fixed.

1. Hop batch ids were cut to their last 64 characters, so after about ten quiet-hour hops two
   batches of one notice shared an id and the second one's recipients were dropped.
2. The sender re-enqueued deferred entries only after its transaction marked the batch done; a
   failed enqueue lost them, as the redelivery saw "done". The done mark now keeps them.
3. A dry run saved its result before its checkpoint; a failed checkpoint made the retry count
   rows twice. They are one write now.
4. A failed finalize enqueue after the last checkpoint left the notice "sending" for ever.
5. Every bad-row sample was appended to the notice item, so ~10,000 bad rows broke DynamoDB's
   400 KB item limit. At most 1,000 are kept.
6. Two dispatches of one notice (SQS delivers at least once) both counted their rows.
7. In first_available mode a text held for the morning never fell back to email when the
   number was blocked overnight.
8. A SendEmail whose answer was lost (taken by SES, then the connection dropped) was retried by
   botocore and by the sender, so the recipient got the mail again. Found by the fault proxy of
   the soak on the local Lambda runtime. Provider sends are now made at most once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from optout import wiring
from optout.notices.send import Sender, batch_from_message
from optout.suppression.model import ConsentChange
from optout_local.iam.in_process import run_as
from optout_local.runtime import LambdaContext
from tests.conftest import sent_sms
from tests.integration.notice_pipeline import POLICY, Pipeline, suppress, users
from tests.integration.notice_pipeline import sent_mail as pipeline_mail

NIGHT = datetime(2026, 11, 26, 11, 0, tzinfo=UTC)  # 03:00 in Los Angeles
PRODUCT_SMS = {"subject": "New", "body": "b", "sms_text": "Dark mode is here"}


def _sender_at(moment: datetime, enqueue: Callable[[dict[str, Any], int], None]) -> Sender:
    base = wiring.sender()
    return Sender(base.settings, base.notices, base.suppressions, base.pepper, base.key_ring, base.email, base.sms,
                  enqueue, now=lambda: moment)  # fmt: skip


def _texters(n: int) -> list[str]:
    return [f"u{i},,+1415555{100 + i:04d},en,America/Los_Angeles,U{i}" for i in range(n)]


def _dispatch(pipeline: Pipeline) -> list[dict[str, Any]]:
    (dispatch,) = pipeline.receive("DispatchQueue")
    pipeline.dispatcher({"Records": [dispatch]}, LambdaContext())
    return pipeline.receive("SendQueue")


def test_quiet_hour_hops_of_two_batches_never_share_a_batch_id(pipeline: Pipeline) -> None:
    # Given an optional SMS notice to 51 people in Los Angeles (two send batches), at 03:00 there
    manifest = pipeline.manifest(_texters(51))
    notice = pipeline.create("product", PRODUCT_SMS, manifest, channels={"channels": ["sms"]})
    queue = [batch_from_message(r["body"]) for r in _dispatch(pipeline)]
    assert sorted(b.batch for b in queue) == ["L2", "L52"]
    # When the texts wait for 08:00 in 15-minute SQS hops until the morning
    moment = NIGHT
    collisions: list[list[str]] = []
    for _ in range(40):
        if not queue:
            break
        # (after ~10 hops "L2.1.0.0.2.0.0..."[-64:] == "L52.1.0.0.2.0.0..."[-64:]: the second
        # batch is taken for a redelivery of the first, already done, and sends nothing)
        if len({b.batch for b in queue}) < len(queue):
            collisions.append([b.batch for b in queue])
        queued: list[tuple[dict[str, Any], int]] = []
        sender = _sender_at(moment, lambda m, d, into=queued: into.append((m, d)))
        for batch in queue:
            run_as("SenderFunction", sender.process, batch)
        queue = [batch_from_message(json.dumps(m)) for m, _ in queued]
        moment += timedelta(seconds=900)
    # Then in the morning everyone got their text once and the notice completes
    assert len(sent_sms()) == 51, f"{len(sent_sms())} texts; hop batches sharing an id: {collisions[:1]}"
    assert len({number for number, _ in sent_sms()}) == 51
    wiring.dispatcher().finalize(notice["id"], 0)
    final = pipeline.get(notice["id"])
    assert final["counts"]["recipients"] == {"deferred": 0, "sent": 51}
    assert final["status"] == "complete"


def test_deferred_recipients_survive_a_failed_enqueue_after_the_batch_is_recorded(pipeline: Pipeline) -> None:
    # Given an optional text to someone in Los Angeles, processed at 03:00 their time
    manifest = pipeline.manifest(_texters(1))
    notice = pipeline.create("product", PRODUCT_SMS, manifest, channels={"channels": ["sms"]})
    (record,) = _dispatch(pipeline)
    batch = batch_from_message(record["body"])

    def sqs_down(message: dict[str, Any], delay: int) -> None:
        raise RuntimeError("SQS SendMessage failed")

    # When the batch's transaction commits but re-enqueueing the deferred text fails
    with pytest.raises(RuntimeError):
        run_as("SenderFunction", _sender_at(NIGHT, sqs_down).process, batch)
    assert pipeline.get(notice["id"])["counts"]["recipients"] == {"deferred": 1}
    # Then SQS's redelivery of the batch still schedules the deferred text
    queued: list[tuple[dict[str, Any], int]] = []
    run_as("SenderFunction", _sender_at(NIGHT, lambda m, d: queued.append((m, d))).process, batch)
    assert len(queued) == 1, "the deferred recipient was dropped: never texted, the notice never completes"


def test_a_dry_run_retried_after_a_failed_checkpoint_counts_each_recipient_once(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a dry run of 600 recipients (a checkpoint after the first 500)
    notice = pipeline.create("policy_change", POLICY, pipeline.manifest(users(600)), dry_run=True)
    (record,) = pipeline.receive("DispatchQueue")
    message = json.loads(record["body"])
    dispatcher = wiring.dispatcher()
    store = dispatcher.notices
    real = store.checkpoint
    calls = {"n": 0}

    def flaky(*args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("ProvisionedThroughputExceededException")
        real(*args, **kwargs)

    monkeypatch.setattr(store, "checkpoint", flaky)
    # When the first checkpoint write fails (after the dry-run result was saved) and SQS retries
    with pytest.raises(RuntimeError):
        dispatcher.handle(message, lambda: 900_000)
    assert dispatcher.handle(message, lambda: 900_000) == "dry run complete"
    # Then each recipient is reported once
    result = pipeline.get(notice["id"])
    assert result["rows_read"] == 600
    assert result["dry_run_result"]["recipients"] == {"sent": 600}


def test_a_dispatcher_retried_after_its_last_checkpoint_still_finalizes_the_notice(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a small policy notice
    notice = pipeline.create("policy_change", POLICY, pipeline.manifest(users(3)))
    (record,) = pipeline.receive("DispatchQueue")
    message = json.loads(record["body"])
    dispatcher = wiring.dispatcher()
    real = dispatcher.requeue
    failed = {"n": 0}

    def flaky(msg: dict[str, Any], delay: int) -> None:
        if msg.get("action") == "finalize" and not failed["n"]:
            failed["n"] += 1
            raise RuntimeError("SQS SendMessage failed")
        real(msg, delay)

    monkeypatch.setattr(dispatcher, "requeue", flaky)
    # When queueing the finalize message fails after the final checkpoint, and SQS retries
    with pytest.raises(RuntimeError):
        dispatcher.handle(message, lambda: 900_000)
    dispatcher.handle(message, lambda: 900_000)
    for send in pipeline.receive("SendQueue"):
        assert pipeline.sender({"Records": [send]}, pipeline.sender_context()) == {"batchItemFailures": []}
    # Then a finalize message is still on its way (queued with a 2 s delay; nothing else ever
    # completes the notice), and it completes the notice
    pending: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while not any(m.get("action") == "finalize" for m in pending) and time.monotonic() < deadline:
        pending += [json.loads(r["body"]) for r in pipeline.receive("DispatchQueue")]
        time.sleep(0.2)
    finalize = next(m for m in pending if m.get("action") == "finalize")
    assert run_as("DispatcherFunction", wiring.dispatcher().handle, finalize, lambda: 900_000) == "complete"
    assert pipeline.get(notice["id"])["status"] == "complete"


def test_a_manifest_with_many_bad_rows_is_still_dispatched(pipeline: Pipeline) -> None:
    # Given 120 good rows and 12,000 rows without any address (each a bad row, with a sample)
    rows = [*users(120), *(f"x{i},,,en,,Nobody {i}" for i in range(12_000))]
    notice = pipeline.create("policy_change", POLICY, pipeline.manifest(rows))
    # When it is dispatched and sent ("a bad row ... never stops the notice")
    (record,) = pipeline.receive("DispatchQueue")
    outcome = run_as("DispatcherFunction", wiring.dispatcher().handle, json.loads(record["body"]), lambda: 900_000)
    # Then the dispatcher got to the end: bad-row samples are capped when read (1,000), but every
    # one is appended to the notice item, which outgrows DynamoDB's 400 KB item limit
    assert outcome == "dispatched"
    final = pipeline.get(notice["id"])
    assert final["bad_rows"] == 12_000 and len(final["bad_row_samples"]) == 1000
    assert final["bad_row_samples"][0] == {"line": 122, "reason": "no email and no phone"}


def test_a_second_dispatch_of_the_same_notice_stands_down(pipeline: Pipeline) -> None:
    # Given a 600-recipient notice whose dispatch message SQS delivered twice
    notice = pipeline.create("policy_change", POLICY, pipeline.manifest(users(600)))
    (record,) = pipeline.receive("DispatchQueue")
    message = json.loads(record["body"])
    first, second = wiring.dispatcher(), wiring.dispatcher()
    # When the second starts from the same cursor, after the first has checkpointed past it
    reader = second.notices.cursor
    cursors = {"read": reader(notice["id"])}
    assert first.handle(message, lambda: 900_000) == "dispatched"
    second.notices.cursor = lambda _id: cursors["read"]  # type: ignore[method-assign]
    try:
        assert second.handle(message, lambda: 900_000) == "superseded"
    finally:
        second.notices.cursor = reader  # type: ignore[method-assign]
    # Then its repeated batches send nobody twice and the notice still adds up and completes
    pipeline.run(notice["id"])
    final = pipeline.get(notice["id"])
    assert final["status"] == "complete" and final["total"] == 600 and final["rows_read"] == 600
    assert final["counts"]["recipients"] == {"sent": 600}
    assert len(pipeline_mail()) == 600 and len({m["To"] for m in pipeline_mail()}) == 600


def test_a_batch_of_a_missing_notice_fails_alone(pipeline: Pipeline) -> None:
    # Given two send batches in one invocation, one of them for a notice that does not exist
    notice = pipeline.create("policy_change", POLICY, pipeline.manifest(users(3)))
    (good,) = _dispatch(pipeline)
    body = json.loads(good["body"])
    stray = {**good, "messageId": "stray", "body": json.dumps({**body, "notice_id": "ntc_missing"})}
    # When the sender takes both
    response = pipeline.sender({"Records": [good, stray]}, pipeline.sender_context())
    # Then only the stray batch fails (and will reach the DLQ); the good one is sent
    assert response == {"batchItemFailures": [{"itemIdentifier": "stray"}]}
    wiring.dispatcher().finalize(notice["id"], 0)
    assert pipeline.get(notice["id"])["counts"]["recipients"] == {"sent": 3}


def test_first_available_falls_back_when_a_held_text_is_blocked_by_morning(pipeline: Pipeline) -> None:
    # Given an optional notice, SMS first then email, to someone in Los Angeles at 03:00 their time
    manifest = pipeline.manifest(["u1,user1@example.com,+14155550101,en,America/Los_Angeles,A"])
    notice = pipeline.create(
        "product", PRODUCT_SMS, manifest, channels={"channels": ["sms", "email"], "mode": "first_available"}
    )
    (record,) = _dispatch(pipeline)
    queued: list[tuple[dict[str, Any], int]] = []
    run_as(
        "SenderFunction",
        _sender_at(NIGHT, lambda m, d: queued.append((m, d))).process,
        batch_from_message(record["body"]),
    )
    # (the text waits for the morning; the email, second in line, is not sent meanwhile)
    assert sent_sms() == [] and pipeline_mail() == []
    ((later, _),) = queued
    assert later["entries"][0]["only"] == ["sms", "email"] and later["entries"][0]["deferred"] == ["sms"]
    # When the number texts STOP overnight
    suppress("sms", "+14155550101", [ConsentChange("block", "channel", "keyword")], "sms_keyword")
    run_as(
        "SenderFunction",
        _sender_at(NIGHT + timedelta(hours=6), lambda m, d: None).process,
        batch_from_message(json.dumps(later)),
    )
    # Then the morning batch falls back to email, and every count moves on once
    assert sent_sms() == [] and len(pipeline_mail()) == 1
    wiring.dispatcher().finalize(notice["id"], 0)
    final = pipeline.get(notice["id"])
    assert final["status"] == "complete"
    assert final["counts"]["recipients"] == {"deferred": 0, "sent": 1}
    assert final["counts"]["by_channel"] == {"sms": {"deferred": 0, "suppressed": 1}, "email": {"sent": 1}}


def test_a_send_whose_answer_was_lost_is_never_made_again(pipeline: Pipeline, monkeypatch) -> None:
    # Given SES that takes the bulk call for the batch and then loses its answer (the connection drops)
    from botocore.exceptions import ReadTimeoutError

    manifest = pipeline.manifest(users(6))
    notice = pipeline.create("policy_change", POLICY, manifest)
    client = wiring.sender().email().client
    real, calls = client.send_bulk_email, []

    def send_bulk_email(**request: Any) -> Any:
        calls.append([e["Destination"]["ToAddresses"][0] for e in request["BulkEmailEntries"]])
        real(**request)  # SES has taken it: every destination was mailed
        raise ReadTimeoutError(endpoint_url="https://email.us-east-1.amazonaws.com")

    monkeypatch.setattr(client, "send_bulk_email", send_bulk_email)
    # When the notice goes out, redeliveries and all
    pipeline.run(notice["id"])
    # Then the one call carried all six, was never repeated, and each address got one mail
    assert len(calls) == 1 and sorted(calls[0]) == sorted(set(calls[0])) and len(calls[0]) == 6
    assert len(pipeline_mail()) == 6
    # And its six recipients, whose outcome the lost answer hides, are listed unknown, and counted so
    records = list(wiring.notice_admin().store.all_deliveries(notice["id"]))
    assert len(records) == 6 and all(r.decision == "unknown" and "outcome unknown" in (r.reason or "") for r in records)
    final = pipeline.get(notice["id"])
    assert final["status"] == "complete_with_failures" and final["counts"]["recipients"] == {"unknown": 6}


def test_a_checkpoint_whose_answer_was_lost_does_not_stop_the_notice(pipeline: Pipeline, monkeypatch) -> None:
    # Given DynamoDB that applies the dispatcher's checkpoint and loses its answer, so that the
    # client sends it again (the condition then fails: the offset has moved, by this very write)
    manifest = pipeline.manifest(users(3))
    notice = pipeline.create("policy_change", POLICY, manifest)
    client = wiring.dispatcher().notices.client
    real, retried = client.update_item, []

    def update_item(**request: Any) -> Any:
        if request.get("ConditionExpression") == "#o = :since" and not retried:
            real(**request)  # applied; the answer never arrives
            retried.append(request)
        return real(**request)

    monkeypatch.setattr(client, "update_item", update_item)
    # When the dispatcher reads the manifest
    batches = _dispatch(pipeline)
    # Then it knew its own write and carried on: the batches are queued, the notice is sending
    # and its finalize message is on the way (before, it stood down as "superseded" and the notice
    # stayed "dispatching" for ever, with nothing left to move it)
    assert retried and len(batches) == 1
    assert pipeline.get(notice["id"])["status"] == "sending"
    time.sleep(2.1)  # the finalize message is queued with a 2 s delay
    assert [json.loads(r["body"])["action"] for r in pipeline.receive("DispatchQueue")] == ["finalize"]


def test_each_bulk_entry_is_decided_by_its_own_result(pipeline: Pipeline, monkeypatch) -> None:
    # Given SES that takes the bulk call but throttles one destination and rejects another
    manifest = pipeline.manifest(users(4))
    notice = pipeline.create("product", {"subject": "News", "body": "Hello."}, manifest)
    client = wiring.sender().email().client
    real, calls = client.send_bulk_email, []

    def send_bulk_email(**request: Any) -> Any:
        calls.append(request)
        answer = real(**request)
        if len(calls) == 1:  # the first call: u1 throttled, u2 rejected, the rest sent
            answer["BulkEmailEntryResults"][0] = {"Status": "ACCOUNT_THROTTLED", "Error": "Maximum sending rate"}
            answer["BulkEmailEntryResults"][1] = {"Status": "MESSAGE_REJECTED", "Error": "Content rejected"}
        return answer

    monkeypatch.setattr(client, "send_bulk_email", send_bulk_email)
    # When the notice goes out
    pipeline.run(notice["id"])
    records = {r.recipient_id: r for r in wiring.notice_admin().store.all_deliveries(notice["id"])}
    # users(n) lists "u<i>,user<i>@example.com": the recipient of each entry of the first call
    order = ["u" + e["Destination"]["ToAddresses"][0].split("@")[0].removeprefix("user")
             for e in calls[0]["BulkEmailEntries"]]  # fmt: skip
    throttled, rejected, *others = order
    # Then the throttled one waits for a later try (queued with SQS's delay), the rejected one
    # failed, the rest were sent, all in one call for the four
    assert records[throttled].decision == "deferred" and records[throttled].reason == "provider throttled; will retry"
    assert records[rejected].decision == "failed" and "MESSAGE_REJECTED" in (records[rejected].reason or "")
    assert {records[rid].decision for rid in others} == {"sent"}
    assert [len(c["BulkEmailEntries"]) for c in calls] == [4]
    # And every entry carried its own link, in the header order Gmail reads (List-Unsubscribe first)
    for entry in calls[0]["BulkEmailEntries"]:
        names = [h["Name"] for h in entry["ReplacementHeaders"]]
        assert names.index("List-Unsubscribe") < names.index("List-Unsubscribe-Post")
        data = json.loads(entry["ReplacementEmailContent"]["ReplacementTemplate"]["ReplacementTemplateData"])
        assert f"<{data['url']}>" in [h["Value"] for h in entry["ReplacementHeaders"]]
