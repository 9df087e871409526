"""Progress per provider call: `unknown` is at most the recipients of the one call in flight.

SES and SNS have no idempotency key, so a call that may have gone out is never made again. The
sender records on the batch's mark the call in flight before it goes out and its results after,
so an interrupted batch is recorded call by call: answered calls as answered, the call in flight
`unknown` (listed, never re-sent), calls never tried queued again. Counted from moto's outbox.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from botocore.exceptions import ClientError, ReadTimeoutError
from botocore.parsers import ResponseParserError

from optout import wiring
from optout.notices.model import DeliveryRecord
from optout.notices.send import (
    LOST_ANSWER_REASON,
    NOT_TRIED_REASON,
    UNEXPECTED_REASON,
    UNKNOWN_REASON,
    batch_from_message,
)
from optout_local.iam.in_process import run_as
from optout_local.provision import ACCOUNT_ID
from optout_local.runtime import LambdaContext
from tests.integration.notice_pipeline import BREACH, POLICY, Pipeline, sent_mail, users


class Killed(BaseException):
    """The sender's process dies here (SIGKILL): nothing after this line of it runs."""


def _records(notice_id: str) -> dict[str, DeliveryRecord]:
    return {r.recipient_id: r for r in wiring.notice_admin().store.all_deliveries(notice_id)}


def _mail_ids() -> dict[str, str]:
    """moto's outbox: message id -> recipient address, every mail SES took."""
    from moto.ses.models import ses_backends

    return {m.id: m.destinations[0] for m in ses_backends[ACCOUNT_ID]["us-east-1"].sent_messages}


def _texts() -> dict[str, str]:
    """moto's outbox: message id -> number, every text SNS took."""
    from moto.sns.models import sns_backends

    return {mid: to for mid, (to, _) in sns_backends[ACCOUNT_ID]["us-east-1"].sms_messages.items()}


def _address(recipient_id: str) -> str:
    return f"user{recipient_id.removeprefix('u')}@example.com"  # users(n) lists u<i>,user<i>@example.com


def _batches(pipeline: Pipeline) -> list[dict[str, Any]]:
    (dispatch,) = pipeline.receive("DispatchQueue")
    pipeline.dispatcher({"Records": [dispatch]}, LambdaContext())
    return pipeline.receive("SendQueue")


def _two_languages(n: int) -> list[str]:
    """One batch that takes two bulk calls: the first half in English, the second in Spanish."""
    return [f"u{i},user{i}@example.com,,{'en' if i < n // 2 else 'es'},Europe/Madrid,U{i}" for i in range(n)]


def _after_the_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    later = datetime.now(UTC) + timedelta(minutes=12)  # past the dead invocation's deadline and lease
    monkeypatch.setattr(wiring.sender(), "now", lambda: later)


def test_a_lost_bulk_answer_leaves_only_that_calls_recipients_unknown(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given one batch of six, two bulk calls (by language), and SES that takes the first call and
    # loses its answer
    notice = pipeline.create("policy_change", POLICY, pipeline.manifest(_two_languages(6)))
    client = wiring.sender().email().client
    real, calls = client.send_bulk_email, []

    def send_bulk_email(**request: Any) -> Any:
        calls.append([e["Destination"]["ToAddresses"][0] for e in request["BulkEmailEntries"]])
        answer = real(**request)
        if len(calls) == 1:
            raise ReadTimeoutError(endpoint_url="https://email.us-east-1.amazonaws.com")
        return answer

    monkeypatch.setattr(client, "send_bulk_email", send_bulk_email)
    # When the notice goes out, redeliveries and all
    pipeline.run(notice["id"])
    # Then each call was made once, and every address got one mail (the lost call's went out too)
    assert [len(c) for c in calls] == [3, 3]
    assert sorted(_mail_ids().values()) == sorted(_address(f"u{i}") for i in range(6))
    # And exactly the lost call's three recipients are unknown; the other call's are sent, each
    # record matching its message in the outbox
    records = _records(notice["id"])
    unknown = {_address(rid) for rid, r in records.items() if r.decision == "unknown"}
    assert unknown == set(calls[0])
    assert all((r.reason or "").startswith(LOST_ANSWER_REASON) for r in records.values() if r.decision == "unknown")
    sent = {rid: r for rid, r in records.items() if r.decision == "sent"}
    assert {_address(rid) for rid in sent} == set(calls[1])
    assert {_mail_ids()[r.provider_message_id or ""] for r in sent.values()} == set(calls[1])
    # And the notice counts them apart, and needs a person: complete_with_failures
    final = pipeline.get(notice["id"])
    assert final["status"] == "complete_with_failures"
    assert final["counts"]["recipients"] == {"sent": 3, "unknown": 3}
    assert final["counts"]["by_channel"] == {"email": {"sent": 3, "unknown": 3}}


def test_a_crash_during_call_k_leaves_only_call_k_unknown_and_sends_the_rest_later(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a breach alert by SMS to five numbers: five calls, one batch
    rows = [f"u{i},,+1415555{100 + i:04d},en,America/New_York,U{i}" for i in range(5)]
    notice = pipeline.create("breach_alert", BREACH, pipeline.manifest(rows), channels={"channels": ["sms"]})
    (batch,) = _batches(pipeline)
    client = wiring.sender().sms().client  # type: ignore[attr-defined]  # SnsSms, locally
    real, made = client.publish, []

    def publish(**request: Any) -> Any:
        made.append(request["PhoneNumber"])
        answer = real(**request)
        if len(made) == 3:  # the 3rd text reached SNS; the process dies before hearing back
            raise Killed
        return answer

    monkeypatch.setattr(client, "publish", publish)
    # When the sender dies during its 3rd call
    with pytest.raises(Killed):
        pipeline.sender({"Records": [batch]}, pipeline.sender_context())
    assert len(_texts()) == 3 and pipeline.get(notice["id"])["counts"]["recipients"] == {}
    # And SQS delivers the batch again once the dead invocation's lease is over
    _after_the_lease(monkeypatch)
    assert pipeline.sender({"Records": [batch]}, pipeline.sender_context()) == {"batchItemFailures": []}
    # Then that redelivery sent nothing itself: calls 1-2 are recorded from the mark, with their
    # message ids; call 3 is unknown; the two never tried are deferred, queued again
    assert len(_texts()) == 3
    records = _records(notice["id"])
    texts = _texts()
    assert [records[f"u{i}"].decision for i in range(5)] == ["sent", "sent", "unknown", "deferred", "deferred"]
    assert [texts[records[f"u{i}"].provider_message_id or ""] for i in range(2)] == made[:2]
    assert records["u2"].reason == UNKNOWN_REASON and records["u3"].reason == NOT_TRIED_REASON
    # When the queued batch is sent
    pipeline.run(notice["id"])
    # Then the last two got their text, every number exactly once, and only call 3 is unknown
    assert sorted(_texts().values()) == sorted(f"+1415555{100 + i:04d}" for i in range(5))
    assert len(made) == 5
    records = _records(notice["id"])
    assert [records[f"u{i}"].decision for i in range(5)] == ["sent", "sent", "unknown", "sent", "sent"]
    final = pipeline.get(notice["id"])
    assert final["status"] == "complete_with_failures"
    assert {k: v for k, v in final["counts"]["recipients"].items() if v} == {"sent": 4, "unknown": 1}
    # And a delivery of the first batch after all that sends and changes nothing
    assert pipeline.sender({"Records": [batch]}, pipeline.sender_context()) == {"batchItemFailures": []}
    assert len(_texts()) == 5 and pipeline.get(notice["id"])["counts"] == final["counts"]


def test_a_crash_during_the_second_bulk_call_keeps_the_first_calls_results(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given one batch of six that takes two bulk calls, and a sender that dies during the second
    notice = pipeline.create("policy_change", POLICY, pipeline.manifest(_two_languages(6)))
    (batch,) = _batches(pipeline)
    client = wiring.sender().email().client
    real, calls = client.send_bulk_email, []

    def send_bulk_email(**request: Any) -> Any:
        calls.append([e["Destination"]["ToAddresses"][0] for e in request["BulkEmailEntries"]])
        answer = real(**request)
        if len(calls) == 2:
            raise Killed
        return answer

    monkeypatch.setattr(client, "send_bulk_email", send_bulk_email)
    with pytest.raises(Killed):
        pipeline.sender({"Records": [batch]}, pipeline.sender_context())
    # When the batch comes back after the lease
    _after_the_lease(monkeypatch)
    pipeline.sender({"Records": [batch]}, pipeline.sender_context())
    pipeline.run(notice["id"])
    # Then the first call's three are sent (message ids from the mark), the second call's unknown
    assert len(calls) == 2 and len(sent_mail()) == 6
    records = _records(notice["id"])
    mail = _mail_ids()
    sent = [r for r in records.values() if r.decision == "sent"]
    assert sorted(mail[r.provider_message_id or ""] for r in sent) == sorted(calls[0])
    assert {_address(rid) for rid, r in records.items() if r.decision == "unknown"} == set(calls[1])
    assert pipeline.get(notice["id"])["counts"]["recipients"] == {"sent": 3, "unknown": 3}


def test_a_mark_from_before_progress_per_call_makes_every_planned_send_unknown(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a batch taken by the sender of the last release (its mark has a plan and no progress)
    notice = pipeline.create("policy_change", POLICY, pipeline.manifest(users(3)))
    (batch,) = _batches(pipeline)
    store = wiring.sender().notices
    real = store.client.put_item

    def old_mark(**request: Any) -> Any:
        for name in ("claim", "step", "inflight"):
            request["Item"].pop(name, None)
        return real(**request)

    monkeypatch.setattr(store.client, "put_item", old_mark)

    def crash(*args: Any, **kwargs: Any) -> None:
        raise Killed

    monkeypatch.setattr(store, "complete_batch", crash)
    with pytest.raises(Killed):
        pipeline.sender({"Records": [batch]}, pipeline.sender_context())
    monkeypatch.undo()
    # When the new sender recovers it after the lease
    _after_the_lease(monkeypatch)
    assert pipeline.sender({"Records": [batch]}, pipeline.sender_context()) == {"batchItemFailures": []}
    # Then it cannot tell the calls apart: all three are unknown, none sent again
    assert len(sent_mail()) == 3
    assert {r.decision for r in _records(notice["id"]).values()} == {"unknown"}


def test_the_mark_whose_answer_was_lost_is_known_as_our_own(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given DynamoDB that applies the batch's mark and loses its answer, so the client writes it again
    notice = pipeline.create("policy_change", POLICY, pipeline.manifest(users(3)))
    store = wiring.sender().notices
    real, marks = store.client.put_item, []

    def put_item(**request: Any) -> Any:
        if request["Item"]["sk"]["S"].startswith("batch#"):
            marks.append(request)
            real(**request)  # applied; the retry finds it there
        return real(**request)

    monkeypatch.setattr(store.client, "put_item", put_item)
    # When the notice goes out
    pipeline.run(notice["id"])
    # Then the sender knew its own mark and sent at once, once each
    assert len(marks) == 1 and len(sent_mail()) == 3
    assert pipeline.get(notice["id"])["counts"]["recipients"] == {"sent": 3}


def test_when_progress_cannot_be_recorded_no_call_starts_and_the_rest_is_queued(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an SMS batch of three, and progress writes that DynamoDB keeps refusing
    rows = [f"u{i},,+1415555{100 + i:04d},en,America/New_York,U{i}" for i in range(3)]
    notice = pipeline.create("breach_alert", BREACH, pipeline.manifest(rows), channels={"channels": ["sms"]})
    (batch,) = _batches(pipeline)
    store = wiring.sender().notices
    refused = ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "UpdateItem")

    def record_call(*args: Any) -> None:
        raise refused

    with monkeypatch.context() as patch:
        patch.setattr(store, "record_call", record_call)
        # When the sender takes it
        assert pipeline.sender({"Records": [batch]}, pipeline.sender_context()) == {"batchItemFailures": []}
    # Then only the first text (in flight on the mark itself) went out; the rest wait, never unknown
    assert len(_texts()) == 1
    pipeline.run(notice["id"])
    assert sorted(_texts().values()) == sorted(f"+1415555{100 + i:04d}" for i in range(3))
    final = pipeline.get(notice["id"])
    assert final["status"] == "complete"
    assert {k: v for k, v in final["counts"]["recipients"].items() if v} == {"sent": 3}


def test_progress_costs_one_write_per_call_after_the_first(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given two notices: 50 recipients in one language (one bulk call), 6 in two (two calls)
    client = wiring.sender().notices.client
    writes: list[str] = []
    for name in ("put_item", "update_item", "transact_write_items"):
        real = getattr(client, name)

        def counted(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            if "batch#" in str(kwargs.get("Key") or kwargs.get("Item") or kwargs.get("TransactItems")):
                writes.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(client, name, counted)
    one = pipeline.create("policy_change", POLICY, pipeline.manifest(users(50), "one.csv"))
    pipeline.run(one["id"])
    # Then the batch of one call wrote its mark and its transaction, and no progress at all
    assert writes == ["put_item", "transact_write_items"]
    writes.clear()
    two = pipeline.create("policy_change", POLICY, pipeline.manifest(_two_languages(6), "two.csv"))
    pipeline.run(two["id"])
    # And the batch of two calls one UpdateItem more, before its second call
    assert writes == ["put_item", "update_item", "transact_write_items"]
    assert len(sent_mail()) == 56


# --- the fences: what keeps the mark true when DynamoDB or SES misbehave ------------------------


def _numbers(n: int) -> list[str]:
    return [f"+1415555{100 + i:04d}" for i in range(n)]


def _sms_notice(pipeline: Pipeline, n: int) -> dict[str, Any]:
    rows = [f"u{i},,{number},en,America/New_York,U{i}" for i, number in enumerate(_numbers(n))]
    return pipeline.create("breach_alert", BREACH, pipeline.manifest(rows), channels={"channels": ["sms"]})


def _error(code: str, status: int, operation: str, **extra: Any) -> ClientError:
    response: Any = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}, **extra}
    return ClientError(response, operation)


def _conflict() -> ClientError:
    """Another transaction on one of its items (the notice's counts) cancelled it: nothing applied."""
    reasons = [{"Code": "None"}, {"Code": "TransactionConflict"}]
    return _error("TransactionCanceledException", 400, "TransactWriteItems", CancellationReasons=reasons)


def _failures(response: dict[str, Any]) -> int:
    return len(response["batchItemFailures"])


def _fails(pipeline: Pipeline, batch: dict[str, Any]) -> None:
    """The sender fails the batch (all its records): SQS delivers it again."""
    with pytest.raises(BatchProcessingError):
        pipeline.sender({"Records": [batch]}, pipeline.sender_context())


def test_a_transaction_cancelled_by_a_conflict_is_tried_again(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a batch whose transaction the first two times meets another batch's on the counts item
    notice = pipeline.create("policy_change", POLICY, pipeline.manifest(users(3)))
    (batch,) = _batches(pipeline)
    client = wiring.sender().notices.client
    real, tries = client.transact_write_items, []

    def transact_write_items(**request: Any) -> Any:
        tries.append(1)
        if len(tries) <= 2:
            raise _conflict()
        return real(**request)

    monkeypatch.setattr(client, "transact_write_items", transact_write_items)
    # When the sender takes it, the batch is recorded by that invocation, as SES answered
    assert _failures(pipeline.sender({"Records": [batch]}, pipeline.sender_context())) == 0
    assert len(tries) == 3 and len(sent_mail()) == 3
    assert {r.decision for r in _records(notice["id"]).values()} == {"sent"}


def test_a_batch_that_cannot_be_recorded_leaves_its_answers_on_the_mark(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a batch of one bulk call whose transaction keeps being cancelled
    notice = pipeline.create("policy_change", POLICY, pipeline.manifest(users(3)))
    (batch,) = _batches(pipeline)
    client = wiring.sender().notices.client

    def transact_write_items(**request: Any) -> Any:
        raise _conflict()

    with monkeypatch.context() as patch:
        patch.setattr(client, "transact_write_items", transact_write_items)
        # When the sender takes it: SES took all three, the batch fails and comes back
        _fails(pipeline, batch)
    assert len(sent_mail()) == 3
    # Then its redelivery (at once: the failed invocation gave up its lease) records the three
    # sent, with SES's message ids, as SES answered; nothing is unknown and nothing sent again
    assert _failures(pipeline.sender({"Records": [batch]}, pipeline.sender_context())) == 0
    records = _records(notice["id"])
    assert {r.decision for r in records.values()} == {"sent"}
    assert sorted(_mail_ids()[r.provider_message_id or ""] for r in records.values()) == sorted(
        _address(f"u{i}") for i in range(3)
    )
    assert len(sent_mail()) == 3


def test_an_unrecorded_step_then_an_unrecorded_batch_leaves_no_call_in_flight(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an SMS batch of three calls; the write putting call 2 in flight is applied and its
    # answer is a 500 (so the mark shows call 2 in flight, never sent); the transaction keeps failing
    notice = _sms_notice(pipeline, 3)
    (batch,) = _batches(pipeline)
    client = wiring.sender().notices.client
    real, updates = client.update_item, []

    def update_item(**request: Any) -> Any:
        updates.append(request)
        answer = real(**request)
        if len(updates) == 1:
            raise _error("InternalServerError", 500, "UpdateItem")
        return answer

    def transact_write_items(**request: Any) -> Any:
        raise _conflict()

    with monkeypatch.context() as patch:
        patch.setattr(client, "update_item", update_item)
        patch.setattr(client, "transact_write_items", transact_write_items)
        _fails(pipeline, batch)
    assert list(_texts().values()) == _numbers(1)  # call 1 only: no call was started unrecorded
    # When the batch comes back and the notice goes out
    _after_the_lease(monkeypatch)
    assert _failures(pipeline.sender({"Records": [batch]}, pipeline.sender_context())) == 0
    pipeline.run(notice["id"])
    # Then call 1 is sent as SNS answered, the two never tried were sent later: once each
    assert sorted(_texts().values()) == _numbers(3)
    assert [_records(notice["id"])[f"u{i}"].decision for i in range(3)] == ["sent"] * 3


def test_a_claim_applied_and_then_failed_leaves_nothing_in_flight(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given DynamoDB that applies the batch's mark (with its first call in flight) and answers 500
    notice = pipeline.create("policy_change", POLICY, pipeline.manifest(users(3)))
    (batch,) = _batches(pipeline)
    client = wiring.sender().notices.client
    real = client.put_item

    def put_item(**request: Any) -> Any:
        real(**request)
        raise _error("InternalServerError", 500, "PutItem")

    with monkeypatch.context() as patch:
        patch.setattr(client, "put_item", put_item)
        _fails(pipeline, batch)
    assert sent_mail() == []
    # When the batch comes back (even after the lease) and the notice goes out
    _after_the_lease(monkeypatch)
    assert _failures(pipeline.sender({"Records": [batch]}, pipeline.sender_context())) == 0
    pipeline.run(notice["id"])
    # Then nobody is unknown: the call never went out, so it was made later, once
    assert len(sent_mail()) == 3
    assert {r.decision for r in _records(notice["id"]).values()} == {"sent"}


def test_a_late_duplicate_of_a_progress_write_cannot_move_the_mark_back(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an SMS batch of three calls, and DynamoDB that applies the write putting call 2 in
    # flight a second time after the one putting call 3 in flight (a delayed duplicate)
    notice = _sms_notice(pipeline, 3)
    (batch,) = _batches(pipeline)
    client = wiring.sender().notices.client
    real_update, updates, replays = client.update_item, [], []

    def update_item(**request: Any) -> Any:
        updates.append(request)
        answer = real_update(**request)
        if len(updates) == 2:
            try:
                real_update(**updates[0])
                replays.append("applied")
            except client.exceptions.ConditionalCheckFailedException:
                replays.append("refused")
        return answer

    sms = wiring.sender().sms().client  # type: ignore[attr-defined]  # SnsSms, locally
    real_publish, made = sms.publish, []

    def publish(**request: Any) -> Any:
        made.append(request["PhoneNumber"])
        answer = real_publish(**request)
        if len(made) == 3:
            raise Killed
        return answer

    with monkeypatch.context() as patch:
        patch.setattr(client, "update_item", update_item)
        patch.setattr(sms, "publish", publish)
        with pytest.raises(Killed):
            pipeline.sender({"Records": [batch]}, pipeline.sender_context())
    # Then the duplicate was refused, so the mark still shows call 3 in flight
    assert replays == ["refused"]
    _after_the_lease(monkeypatch)
    assert _failures(pipeline.sender({"Records": [batch]}, pipeline.sender_context())) == 0
    pipeline.run(notice["id"])
    # And no number got the alert twice: calls 1-2 sent, call 3 unknown, nothing made again
    assert sorted(_texts().values()) == _numbers(3) and len(made) == 3
    assert [_records(notice["id"])[f"u{i}"].decision for i in range(3)] == ["sent", "sent", "unknown"]


def test_an_owner_late_after_its_recovery_starts_no_call(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an SMS batch of two calls whose invocation stalls after call 1 went out, past its lease
    notice = _sms_notice(pipeline, 2)
    (batch,) = _batches(pipeline)
    sender = wiring.sender()
    sms = sender.sms().client  # type: ignore[attr-defined]  # SnsSms, locally
    real_publish, made = sms.publish, []
    real_now = sender.now

    def publish(**request: Any) -> Any:
        made.append(request["PhoneNumber"])
        answer = real_publish(**request)
        if len(made) == 1:  # meanwhile SQS delivers the batch again and that delivery recovers it
            later = datetime.now(UTC) + timedelta(minutes=12)
            sender.now = lambda: later
            result = run_as(
                "SenderFunction", sender.process, batch_from_message(batch["body"]), owner="b", remaining_ms=60_000
            )
            assert result.redelivered and result.unknown == 1 and result.deferred == 1
            sender.now = real_now
        return answer

    monkeypatch.setattr(sms, "publish", publish)
    # When the stalled invocation goes on: its progress write is refused (the batch is recorded)
    _fails(pipeline, batch)
    # Then it started no second call; the recovery's queued batch made it, once
    assert made == _numbers(1)
    monkeypatch.undo()
    pipeline.run(notice["id"])
    assert sorted(_texts().values()) == _numbers(2)
    assert [_records(notice["id"])[f"u{i}"].decision for i in range(2)] == ["unknown", "sent"]


def test_a_recovery_racing_its_late_owner_records_nothing(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an SMS batch of two calls: its owner stalls after call 1 went out; a redelivery past
    # the lease reads the mark (call 1 in flight); then the owner wakes and puts call 2 in flight
    notice = _sms_notice(pipeline, 2)
    (batch,) = _batches(pipeline)
    sender = wiring.sender()
    store = sender.notices
    sms = sender.sms().client  # type: ignore[attr-defined]  # SnsSms, locally
    real_publish, real_record, real_complete = sms.publish, store.record_call, store.complete_batch
    real_now = sender.now
    owner_sent, recovery_read, owner_recorded, recovery_done = (threading.Event() for _ in range(4))
    owner: dict[str, Any] = {}
    later = datetime.now(UTC) + timedelta(minutes=12)

    def in_owner() -> bool:
        return threading.current_thread().name == "owner"

    def publish(**request: Any) -> Any:
        answer = real_publish(**request)
        if in_owner() and not owner_sent.is_set():
            owner_sent.set()
            assert recovery_read.wait(10)
        return answer

    def record_call(*args: Any, **kwargs: Any) -> None:
        real_record(*args, **kwargs)
        if in_owner():
            owner_recorded.set()
            assert recovery_done.wait(10)

    def complete_batch(*args: Any, **kwargs: Any) -> None:
        if in_owner():
            return real_complete(*args, **kwargs)
        recovery_read.set()
        assert owner_recorded.wait(10)
        try:
            return real_complete(*args, **kwargs)
        finally:
            recovery_done.set()

    monkeypatch.setattr(sms, "publish", publish)
    monkeypatch.setattr(store, "record_call", record_call)
    monkeypatch.setattr(store, "complete_batch", complete_batch)
    monkeypatch.setattr(sender, "now", lambda: real_now() if in_owner() else later)

    def run_owner() -> None:
        owner["result"] = run_as(
            "SenderFunction", sender.process, batch_from_message(batch["body"]), owner="a", remaining_ms=60_000
        )

    thread = threading.Thread(target=run_owner, name="owner")
    thread.start()
    assert owner_sent.wait(10)
    # When the recovery records the batch after the owner moved the mark on: it is refused
    with pytest.raises(ClientError, match="ConditionalCheckFailed"):
        run_as("SenderFunction", sender.process, batch_from_message(batch["body"]), owner="b", remaining_ms=60_000)
    thread.join(20)
    # Then the owner made its second call and recorded both as SNS answered; nothing is queued
    # again, and no number got the alert twice
    assert owner["result"].sent == 2
    monkeypatch.undo()
    pipeline.run(notice["id"])
    assert sorted(_texts().values()) == _numbers(2)
    assert {r.decision for r in _records(notice["id"]).values()} == {"sent"}


def _bulk_fault(name: str) -> Any:
    """SES applies the call (but for a 4xx refusal), and the sender hears this instead of its answer."""

    def fault(real: Any, request: dict[str, Any]) -> Any:
        if name == "403":
            raise _error("AccessDeniedException", 403, "SendBulkEmail")
        answer = real(**request)
        if name == "500":
            raise _error("InternalFailure", 500, "SendBulkEmail")
        if name == "short answer":  # a 200 with fewer results than entries
            short: dict[str, Any] = dict(answer)
            return {**short, "BulkEmailEntryResults": short["BulkEmailEntryResults"][:1]}
        if name == "unparsable":  # a 200 whose body botocore cannot read
            raise ResponseParserError("Unable to parse response (not well-formed)")
        raise ValueError("an after-call hook failed")  # anything raised after the request went out

    return fault


@pytest.mark.parametrize(
    ("fault", "decision", "reason"),
    [
        ("500", "unknown", f"{LOST_ANSWER_REASON} (InternalFailure)"),
        ("short answer", "unknown", f"{LOST_ANSWER_REASON} (SES answered 1 results for 3 entries)"),
        ("unparsable", "unknown", f"{LOST_ANSWER_REASON} (ResponseParserError)"),
        ("after sending", "unknown", f"{UNEXPECTED_REASON} (ValueError)"),
        ("403", "failed", "send error: AccessDeniedException"),
    ],
)
def test_a_send_that_may_have_gone_out_is_unknown_and_one_refused_is_failed(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, fault: str, decision: str, reason: str
) -> None:
    # Given a bulk call of three that SES answers with the fault
    notice = pipeline.create("policy_change", POLICY, pipeline.manifest(users(3)))
    client = wiring.sender().email().client
    real, calls = client.send_bulk_email, []

    def send_bulk_email(**request: Any) -> Any:
        calls.append(request)
        return _bulk_fault(fault)(real, request)

    monkeypatch.setattr(client, "send_bulk_email", send_bulk_email)
    # When the notice goes out, redeliveries and all
    pipeline.run(notice["id"])
    # Then the call was made once, and its three recipients are all recorded so: a call that may
    # have gone out is unknown (never made again), one SES refused is failed
    assert len(calls) == 1
    assert len(sent_mail()) == (0 if fault == "403" else 3)
    records = _records(notice["id"]).values()
    assert [(r.decision, r.reason) for r in records] == [(decision, reason)] * 3
    assert pipeline.get(notice["id"])["counts"]["recipients"] == {decision: 3}


def test_a_text_answered_without_a_message_id_is_unknown(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given SNS that takes a text and answers 200 without its message id
    notice = _sms_notice(pipeline, 1)
    sms = wiring.sender().sms().client  # type: ignore[attr-defined]  # SnsSms, locally
    real = sms.publish

    def publish(**request: Any) -> Any:
        answer = dict(real(**request))
        answer.pop("MessageId")
        return answer

    monkeypatch.setattr(sms, "publish", publish)
    pipeline.run(notice["id"])
    # Then it went out once and is unknown, not failed
    assert list(_texts().values()) == _numbers(1)
    (record,) = _records(notice["id"]).values()
    assert (record.decision, record.reason) == ("unknown", f"{LOST_ANSWER_REASON} (no message id in the answer)")
