"""One notice reaches an address once, and a continuation reads no manifest row twice."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from optout import wiring
from optout.notices import dispatch as dispatch_module
from optout.notices.dispatch import SeenKeys
from optout.notices.manifest import SeenSegment
from optout_local.iam.in_process import run_as
from optout_local.runtime import LambdaContext
from tests.conftest import sent_sms
from tests.integration.notice_pipeline import BREACH, POLICY, Pipeline, sent_mail, users


def _deliveries(pipeline: Pipeline, notice_id: str) -> list[dict[str, Any]]:
    route = "/admin/notices/{notice_id}/deliveries"
    status, body = pipeline.api(
        "GET", f"/admin/notices/{notice_id}/deliveries", route=route, params={"notice_id": notice_id}
    )
    assert status == 200, body
    return list(body["items"])


class RangeLog:
    """Wraps the dispatcher's S3 client: the Range of every manifest read."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.ranges: list[str] = []

    def get_object(self, **kwargs: Any) -> Any:
        self.ranges.append(kwargs.get("Range", ""))
        return self.real.get_object(**kwargs)


def test_two_ids_with_one_email_are_sent_once_and_the_second_is_listed(pipeline: Pipeline, capsys) -> None:
    # Given two recipient ids with the same email (one person listed twice under two ids)
    rows = [*users(3), "u9,user1@example.com,,en,,Same person"]
    notice = pipeline.create("policy_change", POLICY, pipeline.manifest(rows))
    # When the notice is sent
    pipeline.run(notice["id"])
    # Then the address got one mail, and the second id is a duplicate recipient, counted and listed
    final = pipeline.get(notice["id"])
    assert final["status"] == "complete" and final["total"] == 4
    assert final["counts"]["recipients"] == {"sent": 3, "duplicate": 1}
    assert final["counts"]["by_channel"]["email"] == {"sent": 3, "duplicate": 1}
    assert [m["To"] for m in sent_mail()].count("user1@example.com") == 1
    records = {(r["recipient_id"], r["channel"]): r for r in _deliveries(pipeline, notice["id"])}
    duplicate = records[("u9", "email")]
    assert duplicate["decision"] == "duplicate" and duplicate["address_key"] == records[("u1", "email")]["address_key"]
    # And no address is in the report or any log line
    assert "@" not in json.dumps(list(records.values()))
    output = capsys.readouterr()
    assert "user1@example.com" not in output.out + output.err


def test_an_email_differing_only_in_case_and_spaces_is_a_duplicate(pipeline: Pipeline) -> None:
    # Given the same email written with other case and surrounding spaces, under another id
    rows = [*users(2), 'u7," USER0@Example.COM ",,en,,Shouting']
    notice = pipeline.create("policy_change", POLICY, pipeline.manifest(rows))
    # When the notice is sent
    pipeline.run(notice["id"])
    # Then the normalised address is the same: one mail, one duplicate
    assert pipeline.get(notice["id"])["counts"]["recipients"] == {"sent": 2, "duplicate": 1}
    assert sorted(m["To"] for m in sent_mail()) == ["user0@example.com", "user1@example.com"]
    decisions = {(r["recipient_id"], r["channel"]): r["decision"] for r in _deliveries(pipeline, notice["id"])}
    assert decisions[("u7", "email")] == "duplicate"


def test_a_shared_email_with_distinct_phones_keeps_the_new_phone(pipeline: Pipeline) -> None:
    # Given a breach alert (email and SMS) to two ids sharing an email, each with their own phone,
    # and a third id whose email and phone were both listed before
    rows = [
        "u1,user1@example.com,+14155550101,en,America/New_York,A",
        "u2,user1@example.com,+14155550102,en,America/New_York,B",
        "u3,user1@example.com,+14155550101,en,America/New_York,C",
    ]
    notice = pipeline.create("breach_alert", BREACH, pipeline.manifest(rows))
    # When it is sent
    pipeline.run(notice["id"])
    # Then the email went out once, each phone once: u2 keeps its phone, u3 is a duplicate
    final = pipeline.get(notice["id"])
    assert final["status"] == "complete" and final["total"] == 3
    assert final["counts"]["recipients"] == {"sent": 2, "duplicate": 1}
    assert final["counts"]["by_channel"]["email"] == {"sent": 1, "duplicate": 2}
    assert final["counts"]["by_channel"]["sms"] == {"sent": 2, "duplicate": 1}
    assert [m["To"] for m in sent_mail()] == ["user1@example.com"]
    assert sorted(number for number, _ in sent_sms()) == ["+14155550101", "+14155550102"]
    # And every recipient has one final decision; each duplicate channel is listed
    decisions = {(r["recipient_id"], r["channel"]): r["decision"] for r in _deliveries(pipeline, notice["id"])}
    assert decisions == {
        ("u1", "email"): "sent",
        ("u1", "sms"): "sent",
        ("u2", "email"): "duplicate",
        ("u2", "sms"): "sent",
        ("u3", "email"): "duplicate",
        ("u3", "sms"): "duplicate",
    }


def test_a_continuation_reads_no_row_twice_and_still_drops_earlier_addresses(pipeline: Pipeline, monkeypatch) -> None:
    # Given 600 recipients, then an id and an address listed before the first checkpoint
    rows = [*users(600), "u3,user3@example.com,,en,,", "u9000,User499@example.com,,en,,"]
    notice = pipeline.create("policy_change", POLICY, pipeline.manifest(rows))
    dispatcher = wiring.dispatcher()
    log = RangeLog(dispatcher.s3())
    monkeypatch.setattr(dispatcher, "s3", lambda: log)
    parsed: list[int] = []
    real_parse = dispatch_module.parse_line
    monkeypatch.setattr(dispatch_module, "parse_line", lambda raw, n, c: parsed.append(n) or real_parse(raw, n, c))
    (record,) = pipeline.receive("DispatchQueue")
    # When the first invocation is out of time at its first checkpoint, and a new one continues
    assert run_as("DispatcherFunction", dispatcher.handle, json.loads(record["body"]), lambda: 1) == "continued"
    checkpoint, _ = dispatcher.notices.cursor(notice["id"])
    assert checkpoint.saved.offset == checkpoint.offset and checkpoint.saved.segments  # saved as it stopped
    (continuation,) = pipeline.receive("DispatchQueue")
    continued = json.loads(continuation["body"])
    assert run_as("DispatcherFunction", dispatcher.handle, continued, lambda: 900_000) == "dispatched"
    # Then the continuation read the manifest from its checkpoint only, and no row twice
    assert log.ranges == ["bytes=0-", f"bytes={checkpoint.offset}-"]
    assert sorted(parsed) == list(range(1, 604))
    # And it still knew the id and the address read before the checkpoint
    pipeline.run(notice["id"])
    final = pipeline.get(notice["id"])
    assert final["status"] == "complete" and final["total"] == 602
    assert final["counts"]["recipients"] == {"sent": 600, "duplicate": 2}
    assert len(sent_mail()) == 600 and len({m["To"] for m in sent_mail()}) == 600
    decisions = {(r["recipient_id"], r["channel"]): r["decision"] for r in _deliveries_all(pipeline, notice["id"])}
    assert decisions[("u9000", "email")] == "duplicate"


def _deliveries_all(pipeline: Pipeline, notice_id: str) -> list[Any]:
    return [r.model_dump(mode="json") for r in wiring.notice_admin().store.all_deliveries(notice_id)]


def test_a_dispatch_that_died_between_saves_reads_again_only_the_rows_since_the_last_save(
    pipeline: Pipeline, monkeypatch
) -> None:
    # Given 1,800 recipients with repeats of addresses read long before, and a seen set saved
    # every 1,500 digests (each row has two: its id and its email)
    rows = [*users(1800), "u9001,user1200@example.com,,en,,", "u9002,user10@example.com,,en,,"]
    monkeypatch.setattr(dispatch_module, "SNAPSHOT_KEYS", 1500)
    notice = pipeline.create("policy_change", POLICY, pipeline.manifest(rows))
    dispatcher = wiring.dispatcher()
    real_send = dispatcher.send_batches
    calls = {"n": 0}

    def dies_on_the_fourth_call(messages: list[dict[str, Any]]) -> None:
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("the function died")
        real_send(messages)

    monkeypatch.setattr(dispatcher, "send_batches", dies_on_the_fourth_call)
    (record,) = pipeline.receive("DispatchQueue")
    message = json.loads(record["body"])
    # When the dispatch dies after three checkpoints, the seen set saved at the second only
    with pytest.raises(RuntimeError):
        run_as("DispatcherFunction", dispatcher.handle, message, lambda: 900_000)
    checkpoint, _ = dispatcher.notices.cursor(notice["id"])
    assert 0 < checkpoint.saved.offset < checkpoint.offset and checkpoint.saved.line == 1001
    log = RangeLog(dispatcher.s3())
    monkeypatch.setattr(dispatcher, "s3", lambda: log)
    # And SQS delivers the message again
    assert run_as("DispatcherFunction", dispatcher.handle, message, lambda: 900_000) == "dispatched"
    # Then the retry read again only the rows between the save and the checkpoint
    assert log.ranges == [f"bytes={checkpoint.offset}-", f"bytes={checkpoint.saved.offset}-{checkpoint.offset - 1}"]
    # And both repeats are dropped: one from the replayed rows, one from the saved set
    pipeline.run(notice["id"])
    final = pipeline.get(notice["id"])
    assert final["counts"]["recipients"] == {"sent": 1800, "duplicate": 2}
    assert len(sent_mail()) == 1800 and len({m["To"] for m in sent_mail()}) == 1800


def test_a_dry_run_counts_duplicates_as_sending_does(pipeline: Pipeline) -> None:
    # Given a breach alert manifest with a partial, a whole and an id duplicate
    rows = [
        "u1,user1@example.com,+14155550101,en,America/New_York,A",
        "u2,USER1@example.com,+14155550102,en,America/New_York,email repeated",
        "u3,user3@example.com,+14155550101,en,America/New_York,phone repeated",
        "u4,user1@example.com,+14155550101,en,America/New_York,both repeated",
        "u1,user9@example.com,+14155550109,en,America/New_York,id repeated",
    ]
    manifest = pipeline.manifest(rows)
    dry = pipeline.create("breach_alert", BREACH, manifest, dry_run=True)
    # When it is dry-run, then sent
    pipeline.run(dry["id"])
    result = pipeline.get(dry["id"])
    assert sent_mail() == [] and sent_sms() == [] and _deliveries(pipeline, dry["id"]) == []
    real = pipeline.create("breach_alert", BREACH, manifest)
    pipeline.run(real["id"])
    sent = pipeline.get(real["id"])
    # Then the dry run counted the duplicates as the real notice did
    would = result["dry_run_result"]
    assert would["recipients"] == {"sent": 3, "duplicate": 2} == sent["counts"]["recipients"]
    assert would["channels"]["email"] == {"sent": 2, "duplicate": 2} == sent["counts"]["by_channel"]["email"]
    assert would["channels"]["sms"] == {"sent": 2, "duplicate": 2} == sent["counts"]["by_channel"]["sms"]


def test_the_seen_set_survives_being_saved_and_loaded(pipeline: Pipeline) -> None:
    # Given a seen set of 120,000 digests (three chunk items; bucketed by bisection when loaded)
    # and a small one (loaded digest by digest)
    store = wiring.dispatcher().notices
    for count in (120_000, 100):
        seen = SeenKeys.for_notice(b"pepper", "ntc_x")
        digests = [seen.digest("id", f"r{i}") for i in range(count)]
        for digest in digests:
            seen.add(digest)
        # When it is saved as a segment and loaded into a new set
        segment = store.save_seen_segment("ntc_x", seen.take_pending(), offset=count)
        assert segment is not None and segment.keys == count and seen.pending == 0
        assert segment.chunks == -(-count // 48_000)
        again = SeenKeys.for_notice(b"pepper", "ntc_x")
        again.load(store.load_seen_segment("ntc_x", SeenSegment.decode(segment.encode())))
        # Then it holds exactly the same digests
        assert len(again) == count and all(d in again for d in digests)
        assert not any(again.digest("id", f"other{i}") in again for i in range(1000))
        assert not any(os.urandom(8) in again for _ in range(1000))


def test_a_digest_matched_across_two_stored_digests_is_not_seen() -> None:
    # Given two digests in one bucket whose bytes, side by side, contain a third digest
    seen = SeenKeys(b"k" * 32)
    first, second = bytes([1, 2, 3, 4, 0, 0, 0, 0]), bytes([0, 0, 0, 0, 5, 6, 0, 0])
    seen.add(first)
    seen.add(second)
    straddling = (first + second)[4:12]
    assert int.from_bytes(straddling, "little") >> 47 == 0  # the same bucket as the others
    # Then the straddling bytes are not taken for a digest of the set
    assert straddling == bytes(8)
    assert straddling not in seen and first in seen and second in seen


def test_the_local_runtime_dispatcher_reaches_one_address_once(pipeline: Pipeline) -> None:
    # Given two ids with one email, dispatched through the handler with a Lambda context
    notice = pipeline.create("policy_change", POLICY, pipeline.manifest([*users(1), "u2,user0@example.com,,en,,"]))
    (record,) = pipeline.receive("DispatchQueue")
    # When the handler dispatches it
    assert pipeline.dispatcher({"Records": [record]}, LambdaContext()) == {"batchItemFailures": []}
    # Then the send batch carries only the first
    (batch,) = pipeline.receive("SendQueue")
    assert [e["recipient"]["recipient_id"] for e in json.loads(batch["body"])["entries"]] == ["u0"]
    assert pipeline.sender({"Records": [batch]}, pipeline.ctx) == {"batchItemFailures": []}
    pipeline.run(notice["id"])
    counts = pipeline.get(notice["id"])["counts"]["recipients"]
    assert {k: v for k, v in counts.items() if v} == {"sent": 1, "duplicate": 1}
