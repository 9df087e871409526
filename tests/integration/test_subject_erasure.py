"""Erasure that keeps the opt-out, on moto with the functions' roles: POST /admin/subjects/erase."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import boto3

from optout import wiring
from optout.core.identity import Identity
from optout.core.settings import get_settings
from optout.notices.manifest import Cursor, lines, parse_line
from optout.notices.send import Sender, batch_from_message
from optout.privacy.erasure import ErasureLog, blank_rows
from optout.suppression.model import ConsentChange
from optout.suppression.store import DynamoSuppressionStore
from optout_local.iam.in_process import run_as
from tests.integration.notice_pipeline import POLICY, Pipeline, sent_mail, suppress

ALICE = "alice@example.com"
NIGHT = datetime(2026, 11, 26, 11, 0, tzinfo=UTC)  # 03:00 in Los Angeles
ROWS = ["u1,Alice@Example.com,+14155550101,en,America/New_York,Alice Liddell", "u2,bob@example.com,,en,,Bob"]


def _key(channel: str, address: str) -> str:
    return Identity.of(wiring.pepper(), channel, address).key  # type: ignore[arg-type]


def _by_address(key: str) -> list[dict[str, Any]]:
    table = get_settings().notices_table
    return boto3.client("dynamodb").query(
        TableName=table, IndexName="by_address", KeyConditionExpression="address_key = :k",
        ExpressionAttributeValues={":k": {"S": key}},
    )["Items"]  # fmt: skip


def _erase(pipeline: Pipeline, address: str = ALICE) -> dict[str, Any]:
    status, body = pipeline.api("POST", "/admin/subjects/erase", {"channel": "email", "address": address})
    assert status == 200, body
    return body


def test_erasure_pseudonymises_deliveries_blanks_manifests_and_keeps_the_opt_out(pipeline: Pipeline) -> None:
    # Given alice opted out of product mail, was sent a policy change, and sits in a manifest not used yet
    suppress("email", ALICE, [ConsentChange("opt_out", "product")])
    notice = pipeline.create("policy_change", POLICY, pipeline.manifest(ROWS, "sent.csv"))
    pipeline.run(notice["id"])
    pipeline.manifest([*ROWS, "u3,carol@example.com,,en,,Carol"], "waiting.csv")
    s3 = boto3.client("s3")
    before = s3.get_object(Bucket=pipeline.bucket, Key="waiting.csv")
    key = _key("email", ALICE)
    assert len(_by_address(key)) == 1

    # When she is erased
    result = _erase(pipeline)

    # Then her delivery record carries a pseudonym and no address key; bob's is untouched
    assert result["erasure"]["removed"]["deliveries_pseudonymised"] == 1
    assert result["erasure"]["actor"].endswith(":user/local-admin")
    assert _by_address(key) == []
    records = {(r["recipient_id"], r["channel"]): r for r in _deliveries(pipeline, notice["id"])}
    assert ("u1", "email") not in records and ("u2", "email") in records
    erased = [r for (rid, _), r in records.items() if rid.startswith("erased.")]
    assert [(r["decision"], r["address_key"], r["provider_message_id"]) for r in erased] == [("sent", None, None)]
    # the manifest still waiting: her row blanked in place (same length, offsets kept), the old version gone
    body = s3.get_object(Bucket=pipeline.bucket, Key="waiting.csv")["Body"].read()
    assert b"lice" not in body.lower() and b"+14155550101" not in body
    assert len(body) == before["ContentLength"] and b"bob@example.com" in body and b"carol" in body
    versions = s3.list_object_versions(Bucket=pipeline.bucket, Prefix="waiting.csv").get("Versions", [])
    assert before["VersionId"] not in [v["VersionId"] for v in versions]
    assert result["erasure"]["removed"]["manifest_rows_blanked"] == 1
    # her hashed opt-out and its consent event are kept, and the erasure is recorded beside them
    state = DynamoSuppressionStore(get_settings().suppression_table).get(key)
    assert state is not None and state.topics == frozenset({"product"}) and state.erased_at is not None
    assert [e["action"] for e in result["kept"]["events"]] == ["opt_out"]
    log = ErasureLog(get_settings().suppression_table).history(key)
    assert [entry["removed"]["deliveries_pseudonymised"] for entry in log] == [1]
    assert "alice" not in json.dumps(result).lower()

    # And erasing again finds nothing more, and records that too
    again = _erase(pipeline)["erasure"]["removed"]
    assert again["deliveries_pseudonymised"] == 0 and again["manifest_rows_blanked"] == 0


def test_a_batch_queued_before_the_erasure_skips_the_subject_at_send_time(pipeline: Pipeline) -> None:
    # Given a notice dispatched (its batch waiting in SendQueue, alice's address in it)
    notice = pipeline.create("policy_change", POLICY, pipeline.manifest(ROWS, "queued.csv"))
    for record in pipeline.receive("DispatchQueue"):
        pipeline.dispatcher({"Records": [record]}, pipeline.ctx)
    # When alice is erased, then the batch is sent
    _erase(pipeline)
    pipeline.run(notice["id"])
    # Then no mail went to her, bob got his, and her record is pseudonymised
    recipients = [m["To"] for m in sent_mail()]
    assert recipients == ["bob@example.com"]
    records = _deliveries(pipeline, notice["id"])
    mine = [r for r in records if r["recipient_id"].startswith("erased.")]
    assert len(mine) == 1 and mine[0]["decision"] in ("suppressed", "unreachable") and mine[0]["address_key"] is None
    assert "u1" not in [r["recipient_id"] for r in records if r["channel"] == "email"]
    # And a notice created after the erasure is sent to her as usual: she is a user again
    later = pipeline.create("policy_change", POLICY, pipeline.manifest(ROWS[:1], "again.csv"))
    pipeline.run(later["id"])
    assert [m["To"] for m in sent_mail()].count("alice@example.com") == 1


def test_a_text_held_for_quiet_hours_is_queued_again_without_the_erased_address(pipeline: Pipeline) -> None:
    # Given a product notice by mail and text to alice, dispatched at 03:00 in her zone, then her email erased
    rows = ["u1,alice@example.com,+14155550101,en,America/Los_Angeles,Alice"]
    variables = {"subject": "New", "body": "b", "sms_text": "Dark mode is here"}
    pipeline.create("product", variables, pipeline.manifest(rows, "night.csv"), channels={"channels": ["email", "sms"]})
    for record in pipeline.receive("DispatchQueue"):
        pipeline.dispatcher({"Records": [record]}, pipeline.ctx)
    (record,) = pipeline.receive("SendQueue")
    _erase(pipeline)
    # When the batch is sent at night
    base = wiring.sender()
    queued: list[dict[str, Any]] = []
    night = Sender(base.settings, base.notices, base.suppressions, base.pepper, base.key_ring, base.email, base.sms,
                   lambda m, d: queued.append(m), now=lambda: NIGHT)  # fmt: skip
    run_as("SenderFunction", night.process, batch_from_message(record["body"]))
    # Then no mail went out, and the text waits for the morning in a message that no longer holds her email
    assert sent_mail() == []
    (later,) = queued
    assert later["entries"][0]["recipient"] == {"recipient_id": "u1", "phone": "+14155550101",
                                                "timezone": "America/Los_Angeles", "name": "Alice"}  # fmt: skip
    assert "alice" not in json.dumps(later)


def test_bad_input_gets_a_422_that_names_no_address(pipeline: Pipeline) -> None:
    status, body = pipeline.api("POST", "/admin/subjects/erase", {"channel": "email", "address": "not-an-address"})
    assert status == 422 and "not-an-address" not in json.dumps(body)
    status, body = pipeline.api("POST", "/admin/subjects/erase", {"channel": "fax", "address": ALICE, "x": 1})
    assert status == 422 and {f["path"] for f in body["error"]["fields"]} == {"channel", "x"}


def test_blank_rows_keeps_offsets_and_line_numbers() -> None:
    data = b"recipient_id,email\r\nu1,a@example.com\r\nu2,alice@example.com\r\nu3,b@example.com"
    blanked, found = blank_rows(data, "csv", "email", ALICE)
    assert found == 1 and len(blanked) == len(data)
    cursor = Cursor(fmt="csv")
    rows = [parse_line(raw, n, cursor) for raw, n, _ in lines([blanked], Cursor(fmt="csv"))]
    assert [getattr(r, "recipient_id", None) for r in rows] == [None, "u1", None, "u3"]
    assert [r.line for r in rows if r is not None] == [2, 4]
    jsonl = b'{"recipient_id": "u1", "email": "ALICE@example.com"}\n{"recipient_id": "u2", "email": "x@example.com"}\n'
    out, found = blank_rows(jsonl, "jsonl", "email", ALICE)
    assert found == 1 and out.splitlines()[0].strip() == b"" and len(out) == len(jsonl)


def _deliveries(pipeline: Pipeline, notice_id: str) -> list[dict[str, Any]]:
    path = f"/admin/notices/{notice_id}/deliveries"
    status, body = pipeline.api(
        "GET", path, route="/admin/notices/{notice_id}/deliveries", params={"notice_id": notice_id}
    )
    assert status == 200, body
    return list(body["items"])


def test_blank_rows_blanks_a_row_kept_for_its_other_channel_that_holds_the_address_as_written() -> None:
    # The email is not usable as written (a display name), so the row was kept for its phone
    data = b'recipient_id,email,phone\r\nu1,"Alice <alice@example.com>",+14155550101\r\nu2,b@example.com,\r\n'
    cursor = Cursor(fmt="csv")
    kept = [parse_line(raw, n, cursor) for raw, n, _ in lines([data], Cursor(fmt="csv"))][1]
    assert getattr(kept, "warning", None) and getattr(kept, "phone", None) == "+14155550101"
    blanked, found = blank_rows(data, "csv", "email", ALICE)
    assert found == 1 and len(blanked) == len(data) and b"alice" not in blanked and b"b@example.com" in blanked


def test_blank_rows_compares_whole_values_never_parts_of_another_address() -> None:
    # Rows with a warning (an unknown timezone) or none that parse, holding addresses that contain
    # the erased one: none of them is the subject's
    data = (
        b"recipient_id,email,phone,locale,timezone\r\n"
        b"u1,sal@example.com,+14155550101,en,Mars/Base\r\n"
        b"u2,al@example.com.au,,en,Mars/Base\r\n"
        b"u3,,,en,al@example.com-not-a-zone\r\n"
        b"u4,al@example.com,,en,Mars/Base\r\n"
    )
    blanked, found = blank_rows(data, "csv", "email", "al@example.com")
    assert found == 1 and len(blanked) == len(data)
    assert b"sal@example.com" in blanked and b"al@example.com.au" in blanked and b"u4," not in blanked


def _export(pipeline: Pipeline, body: dict[str, Any]) -> dict[str, Any]:
    status, answer = pipeline.api("POST", "/admin/subjects/export", body)
    assert status == 200, answer
    return dict(answer)


def test_subject_export_pages_the_deliveries_and_names_the_address_by_its_key_only(
    pipeline: Pipeline, monkeypatch
) -> None:
    from optout.privacy import subject

    # Given alice opted out of product mail and was sent two notices
    suppress("email", ALICE, [ConsentChange("opt_out", "product")])
    sent = [pipeline.create("policy_change", POLICY, pipeline.manifest(ROWS, f"n{i}.csv"))["id"] for i in (1, 2)]
    for notice_id in sent:
        pipeline.run(notice_id)
    monkeypatch.setattr(subject, "DELIVERIES_PAGE", 1)  # one delivery an answer: two pages
    # When her export is asked for, a page at a time
    body = {"channel": "email", "address": " Alice@Example.com"}
    first = _export(pipeline, body)
    assert first["next_token"] is not None and len(first["deliveries"]) == 1
    pages = [first]
    while pages[-1]["next_token"]:
        pages.append(_export(pipeline, {**body, "next_token": pages[-1]["next_token"]}))
    # Then every delivery came once, with her history, and nothing holds her address
    deliveries = [d for p in pages for d in p["deliveries"]]
    assert sorted(d["notice_id"] for d in deliveries) == sorted(sent)
    assert {(d["recipient_id"], d["channel"], d["decision"]) for d in deliveries} == {("u1", "email", "sent")}
    assert first["subject"] == {"channel": "email", "address_key": _key("email", ALICE)}
    assert [e["action"] for e in first["suppression"]["events"]] == ["opt_out"] and first["erasures"] == []
    assert "alice" not in json.dumps(pages).lower()
    # and after an erasure, the export shows it and no delivery of hers
    _erase(pipeline)
    after = _export(pipeline, body)
    assert after["deliveries"] == [] and after["next_token"] is None
    assert [e["actor"].endswith(":user/local-admin") for e in after["erasures"]] == [True]


def test_subject_export_refuses_a_made_up_page_token_and_a_bad_address(pipeline: Pipeline) -> None:
    status, answer = pipeline.api("POST", "/admin/subjects/export", {"channel": "email", "address": ALICE,
                                                                     "next_token": "bm9wZQ"})  # fmt: skip
    assert status == 400 and answer["error"]["code"] == "bad_page_token"
    status, answer = pipeline.api("POST", "/admin/subjects/export", {"channel": "email", "address": "al.example.com"})
    assert status == 422 and "al.example" not in json.dumps(answer)
