"""Suppression administration on moto: the admin API routes, import (with resume) and export through them."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from optout import wiring
from optout.core.identity import Identity
from optout.core.settings import get_settings
from optout.suppression.bulk import ImportRequest, SuppressionBulk
from optout.suppression.consent import change_consent
from optout.suppression.model import ConsentChange
from optout.suppression.store import DynamoSuppressionStore
from optout_local.gateway import build_event, compile_route
from optout_local.iam.in_process import run_as
from optout_local.importer import Importer
from optout_local.provision import Route, Stack
from optout_local.runtime import LambdaContext, load_handler


@pytest.fixture
def admin(aws: Stack, lambda_context: LambdaContext) -> Any:
    """Any admin route, through the AdminApi handler as the gateway invokes it (signed by local-admin)."""
    handler = load_handler(aws.function("AdminApi"))

    def call(method: str, path: str, body: dict[str, Any] | None = None, query: str = "") -> tuple[int, Any]:
        compiled = compile_route(Route(method, path, "AdminApiFunction", "AWS_IAM"))
        raw = json.dumps(body).encode() if body is not None else b""
        event = build_event(compiled, {}, method, path, query, [("Host", "x"), ("Content-Type", "application/json")],
                            raw, "10.0.0.1", "us-east-1", "testing")  # fmt: skip
        response = handler(event, lambda_context)
        return response["statusCode"], json.loads(response["body"])

    return call


@pytest.fixture
def api(admin: Any) -> Any:
    return lambda path, body: admin("POST", path, body)


def importer_of(admin: Any) -> Importer:
    """The CLI's importer, its batches sent to POST /admin/suppressions/import."""

    def send(rows: list[dict[str, Any]]) -> dict[str, Any]:
        status, answer = admin("POST", "/admin/suppressions/import", {"rows": rows})
        assert status == 200, answer
        return dict(answer)

    return Importer(send)


def export_all(admin: Any, limit: int = 1000) -> list[dict[str, str]]:
    """Every page of GET /admin/suppressions/export."""
    rows: list[dict[str, str]] = []
    query = f"limit={limit}"
    while True:
        status, page = admin("GET", "/admin/suppressions/export", query=query)
        assert status == 200, page
        rows += page["items"]
        if not page["next_token"]:
            return rows
        query = f"limit={limit}&next_token={page['next_token']}"


def test_add_lookup_and_remove_are_consent_events_with_who_and_why(api) -> None:
    body = {"channel": "email", "address": "Carol@Example.com ", "scope": "channel", "reason": "asked by phone"}
    status, added = api("/admin/suppressions", body)
    assert status == 201 and added["blocked"]["reason"] == "admin"
    status, again = api("/admin/suppressions", body)
    assert status == 200 and len(again["events"]) == 1  # nothing more changed
    status, lifted = api("/admin/suppressions/remove", {**body, "reason": "added by mistake"})
    assert status == 200 and lifted["blocked"] is None
    status, found = api("/admin/suppressions/lookup", {"channel": "email", "address": "carol@example.com"})
    assert status == 200
    assert [(e["action"], e["source"], e["evidence"]["reason"]) for e in found["events"]] == [
        ("block", "admin", "asked by phone"), ("unblock", "admin", "added by mistake"),
    ]  # fmt: skip
    assert all(e["actor"].endswith(":user/local-admin") for e in found["events"])
    assert "carol" not in json.dumps(found)


def test_topic_scopes_and_their_limits(api) -> None:
    base = {"channel": "email", "address": "dan@example.com", "reason": "request"}
    assert api("/admin/suppressions", {**base, "scope": "product"})[1]["topics"] == ["product"]
    assert api("/admin/suppressions", {**base, "scope": "optional"})[1]["all_optional"] is True
    status, error = api("/admin/suppressions", {**base, "scope": "security"})
    assert status == 422 and error["error"]["code"] == "required_topic"
    status, error = api("/admin/suppressions", {**base, "scope": "weather"})
    assert status == 422 and error["error"]["code"] == "unknown_topic"
    status, error = api("/admin/suppressions", {**base, "scope": "channel", "address": "nope"})
    assert status == 422 and "nope" not in json.dumps(error)
    status, error = api("/admin/suppressions", {"channel": "fax", "address": "x@example.com", "scope": "channel"})
    assert status == 422 and {f["path"] for f in error["error"]["fields"]} == {"channel", "reason"}


def test_an_sms_stop_can_only_be_lifted_by_start(api, aws) -> None:
    from optout.sms.inbound import InboundSms

    sms = InboundSms(provider="twilio", message_id="SM1", from_number="+14155550101", to_number="+14155550100",
                     body="STOP", sent_at="2026-11-26T10:00:00Z")  # fmt: skip
    run_as("SmsInboundFunction", wiring.sms_inbound().handle, sms)
    body = {"channel": "sms", "address": "+1 415 555 0101", "scope": "channel", "reason": "customer called"}
    status, error = api("/admin/suppressions/remove", body)
    assert status == 409 and error["error"]["code"] == "keyword_block"
    status, found = api("/admin/suppressions/lookup", {"channel": "sms", "address": "+14155550101"})
    assert status == 200 and found["blocked"]["source"] == "sms_keyword"


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def test_import_hashes_everything_reports_bad_rows_and_resumes(admin, tmp_path: Path) -> None:
    rows = [["channel", "address", "scope", "reason"]]
    rows += [["email", f"user{i}@example.com", "channel" if i % 2 else "optional", "bounce"] for i in range(250)]
    rows.insert(10, ["email", "not-an-address", "channel", "x"])
    rows.insert(20, ["sms", "+14155550101", "security", "x"])
    path = write_csv(tmp_path / "suppressions.csv", rows)
    settings = get_settings()
    importer = importer_of(admin)
    # Given an import stopped halfway (after its first chunk of 100)
    seen: list[int] = []

    def stop_after_first_chunk(n: int) -> None:
        seen.append(n)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        importer.run(path, "csv", stop_after_first_chunk)
    # When it runs again, it resumes after the last saved chunk: the first batch's 100 rows (lines 2 to
    # 101) held both bad rows, so 98 were imported before the stop
    report = importer.run(path, "csv", lambda n: None)
    assert seen == [100] and report.resumed_from == 101
    total_imported = 98 + report.imported
    assert total_imported == 250 and report.read == 252 - 100
    # Both bad rows (lines 11 and 21) sit in the chunk read before the stop: reported then, not again
    assert report.resumed_from > 21
    assert [line for line, _ in report.invalid] == [] or all(line > report.resumed_from for line, _ in report.invalid)
    assert report.invalid == []
    # Then every address is stored under its key, and the table holds no plain address
    store = DynamoSuppressionStore(settings.suppression_table)
    state = store.get(Identity.of(wiring.pepper(), "email", "user1@example.com").key)
    assert state is not None and state.blocked is not None and state.blocked.source == "import"
    # each event records the IAM principal that imported it
    assert [e.actor for e in store.history(state.address_key)] == ["arn:aws:iam::123456789012:user/local-admin"]
    scan = json.dumps(boto3.client("dynamodb").scan(TableName=settings.suppression_table)["Items"])
    assert "@example.com" not in scan
    # And the export, a page of 7 items read at a time, lists each suppression once
    exported = export_all(admin, limit=7)
    assert len(exported) == 250 and len({r["address_key"] for r in exported}) == 250
    assert all(len(r["address_key"]) == 64 for r in exported)
    assert {r["scopes"] for r in exported} == {"channel", "optional"}


def test_an_opt_out_that_lands_during_an_import_is_kept(aws, tmp_path: Path) -> None:
    settings = get_settings()
    pepper = wiring.pepper()
    fresh, known = (Identity.of(pepper, "email", a).key for a in ("fresh@example.com", "known@example.com"))
    others = [["email", f"other{i}@example.com", "channel", "bounce"] for i in range(3)]
    rows = [["channel", "address", "scope", "reason"], ["email", "fresh@example.com", "channel", "bounce"],
            ["email", "known@example.com", "optional", "unsubscribe"], *others]  # fmt: skip
    path = write_csv(tmp_path / "suppressions.csv", rows)
    rival = DynamoSuppressionStore(settings.suppression_table)  # another client: the one-click function
    change_consent(rival, known, "email", [ConsentChange("block", "channel", "admin")], settings.optional_topics,
                   "admin")  # fmt: skip
    # Given one-click opt-outs of marketing that land after the importer read the states it merges into
    client = boto3.client("dynamodb")
    raced: list[str] = []

    def opt_out_meanwhile(**_: Any) -> None:
        if not raced:
            for key in (fresh, known):
                raced.append(key)
                change_consent(rival, key, "email", [ConsentChange("opt_out", "marketing")],
                               settings.optional_topics, "one_click")  # fmt: skip

    client.meta.events.register("after-call.dynamodb.BatchGetItem", opt_out_meanwhile)
    # When the import writes
    bulk = SuppressionBulk(settings, DynamoSuppressionStore(settings.suppression_table, client), lambda: pepper)
    answer = Importer(lambda batch: bulk.import_rows(ImportRequest(rows=batch), "admin-arn")).run(
        path, "csv", lambda n: None
    )
    # Then its writes failed on the versions, were re-read and re-applied: both opt-outs are still there
    assert raced == [fresh, known]
    assert (answer.imported, answer.unchanged, answer.invalid) == (5, 0, [])
    fresh_state, known_state = rival.get(fresh), rival.get(known)
    assert fresh_state is not None and known_state is not None
    assert fresh_state.blocked is not None and fresh_state.blocked.source == "import"
    assert known_state.all_optional and known_state.blocked is not None and known_state.blocked.source == "admin"
    assert "marketing" in fresh_state.topics and "marketing" in known_state.topics
    assert [(e.action, e.source) for e in rival.history(fresh)] == [("opt_out", "one_click"), ("block", "import")]
    assert [(e.action, e.source) for e in rival.history(known)] == [
        ("block", "admin"), ("opt_out", "one_click"), ("opt_out", "import"),
    ]  # fmt: skip


def test_import_reports_invalid_rows_with_line_numbers(admin, tmp_path: Path) -> None:
    rows = [
        ["channel", "address", "scope", "reason"],
        ["email", "ok@example.com", "product", "m"],
        ["email", "nope", "channel", "x"],
        ["fax", "1", "channel", "x"],
        ["sms", "+14155550101", "security", "x"],
    ]
    path = write_csv(tmp_path / "small.csv", rows)
    report = importer_of(admin).run(path, "csv", lambda n: None)
    assert report.imported == 1
    assert report.invalid == [
        (3, "an email address needs exactly one @"), (4, "channel must be email or sms"),
        (5, "scope must be channel, optional or an optional topic"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("fmt", "content", "expected"),
    [
        ("ses", json.dumps({"SuppressedDestinationSummaries": [
            {"EmailAddress": "b@example.com", "Reason": "BOUNCE", "LastUpdateTime": "2026-01-01T00:00:00Z"},
            {"EmailAddress": "c@example.com", "Reason": "COMPLAINT", "LastUpdateTime": "2026-01-01T00:00:00Z"}]}),
         {"b@example.com": "channel", "c@example.com": "optional"}),
        ("ses", "EmailAddress,Reason,LastUpdateTime\nb@example.com,BOUNCE,2026-01-01\n", {"b@example.com": "channel"}),
        ("sendgrid", "email,created,reason,status\nb@example.com,1700000000,550 no such user,5.1.1\n",
         {"b@example.com": "channel"}),
        ("sendgrid", "email,created\nu@example.com,1700000000\n", {"u@example.com": "optional"}),
        ("sendgrid", "email,created,ip\ns@example.com,1700000000,10.0.0.1\n", {"s@example.com": "optional"}),
    ],
    ids=["ses-json", "ses-csv", "sendgrid-bounces", "sendgrid-unsubscribes", "sendgrid-spam-reports"],
)  # fmt: skip
def test_provider_formats(admin, tmp_path: Path, fmt: str, content: str, expected: dict[str, str]) -> None:
    path = tmp_path / f"export.{fmt}"
    path.write_text(content)
    settings = get_settings()
    report = importer_of(admin).run(path, fmt, lambda n: None)
    assert report.imported == len(expected) and report.invalid == []
    store = DynamoSuppressionStore(settings.suppression_table)
    for address, scope in expected.items():
        state = store.get(Identity.of(wiring.pepper(), "email", address).key)
        assert state is not None
        assert (state.blocked is not None) if scope == "channel" else state.all_optional


def test_an_import_batch_answers_each_row_is_bounded_and_changes_nothing_when_sent_again(admin) -> None:
    rows = [
        {"line": 2, "channel": "email", "address": "Erin@Example.com", "scope": "channel", "reason": "bounce"},
        {"line": 3, "channel": "email", "address": "erin@example.com", "scope": "product", "reason": "asked"},
        {"line": 4, "channel": "email", "address": "frank@", "scope": "channel", "reason": "x"},
        {"line": 5, "channel": "sms", "address": "+14155550102", "scope": "security", "reason": "x"},
    ]
    status, answer = admin("POST", "/admin/suppressions/import", {"rows": rows})
    assert status == 200
    assert [(r["line"], r["outcome"]) for r in answer["results"]] == [
        (2, "imported"), (3, "imported"), (4, "invalid"), (5, "invalid"),
    ]  # fmt: skip
    assert answer["results"][3]["message"] == "scope must be channel, optional or an optional topic"
    assert (answer["imported"], answer["unchanged"], answer["invalid"]) == (2, 0, 2)
    assert "frank" not in json.dumps(answer) and "erin" not in json.dumps(answer).lower()
    # Sent again (a resumed import), every row is unchanged
    status, again = admin("POST", "/admin/suppressions/import", {"rows": rows})
    assert status == 200 and (again["imported"], again["unchanged"], again["invalid"]) == (0, 2, 2)
    status, found = admin("POST", "/admin/suppressions/lookup", {"channel": "email", "address": "erin@example.com"})
    # (both rows were imported in the same millisecond: the history's order between them is not kept)
    assert sorted((e["action"], e["source"], e["actor"]) for e in found["events"]) == [
        ("block", "import", "arn:aws:iam::123456789012:user/local-admin"),
        ("opt_out", "import", "arn:aws:iam::123456789012:user/local-admin"),
    ]  # fmt: skip
    # A batch over 500 rows, or none, is refused whole
    status, error = admin("POST", "/admin/suppressions/import", {"rows": [rows[0]] * 501})
    assert status == 422 and {f["path"] for f in error["error"]["fields"]} == {"rows"}
    status, error = admin("POST", "/admin/suppressions/import", {"rows": []})
    assert status == 422


def test_export_refuses_a_made_up_page_token(admin) -> None:
    status, error = admin("GET", "/admin/suppressions/export", query="next_token=bm9wZQ")
    assert status == 400 and error["error"]["code"] == "bad_page_token"


def test_a_link_is_signed_for_an_optional_topic_and_refused_for_a_required_one(admin) -> None:
    from datetime import timedelta

    from optout.unsubscribe.token import verify

    status, issued = admin("POST", "/admin/links", {"channel": "email", "address": "Gina@Example.com",
                                                     "topic": "product"})  # fmt: skip
    assert status == 200 and issued["topic"] == "product" and "gina" not in json.dumps(issued).lower()
    claims = verify(wiring.key_ring(), issued["token"], timedelta(days=get_settings().token_ttl_days))
    assert claims.address_key == Identity.of(wiring.pepper(), "email", "gina@example.com").key
    assert (claims.channel, claims.topic) == ("email", "product")
    status, error = admin("POST", "/admin/links", {"channel": "email", "address": "gina@example.com",
                                                    "topic": "policy"})  # fmt: skip
    assert status == 422 and error["error"]["code"] == "required_topic"
    assert error["error"]["message"].startswith("policy is a required topic")
    assert "optional topics: marketing, product" in error["error"]["message"]
    status, error = admin("POST", "/admin/links", {"channel": "email", "address": "gina@example.com",
                                                    "topic": "weather"})  # fmt: skip
    assert status == 422 and error["error"]["code"] == "unknown_topic" and "gina" not in json.dumps(error)
    status, error = admin("POST", "/admin/links", {"channel": "email", "address": "gina.example.com",
                                                    "topic": "product"})  # fmt: skip
    assert status == 422 and "gina" not in json.dumps(error)
