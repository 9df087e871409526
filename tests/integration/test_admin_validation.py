"""The admin API refuses bad input at the door with a 4xx in its one error format, never a 5xx, and
stores and dispatches nothing for it (issue 13, item 7)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from optout.notices.store import NOTICE_CREATE_LIMIT
from optout.web.http import MAX_JSON_BYTES, MAX_JSON_DEPTH
from optout_local.gateway import build_event, compile_route
from optout_local.provision import Route
from tests.integration.notice_pipeline import BREACH, POLICY, Pipeline

FREE = {"subject": "New: shared workspaces", "body": "You can now share a workspace."}


def post_raw(
    pipeline: Pipeline, raw: bytes, path: str = "/admin/notices", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    """POST bytes as they are, through the handler as API Gateway invokes it."""
    compiled = compile_route(Route("POST", path, "AdminApiFunction", "AWS_IAM"))
    header_list = [("Host", "x"), ("Content-Type", "application/json"), *(headers or {}).items()]
    event = build_event(compiled, {}, "POST", path, "", header_list, raw, "10.0.0.1", "us-east-1", "testing")
    response = pipeline.admin(event, pipeline.ctx)
    body = json.loads(response["body"])
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body  # one error format
    return response["statusCode"], body


def field_paths(body: dict[str, Any]) -> list[str]:
    return [f["path"] for f in body["error"]["fields"]]


def nothing_dispatched(pipeline: Pipeline) -> bool:
    return pipeline.receive("DispatchQueue") == []


def test_deep_nesting_is_a_422_before_parsing_on_every_admin_route(pipeline: Pipeline) -> None:
    # Given bodies nested far past what json.loads can recurse into (a RecursionError, a 500, today)
    deep_list = b"[" * 100_000 + b"]" * 100_000
    deep_object = b'{"kind":' * 5_000 + b"1" + b"}" * 5_000
    for path in ("/admin/notices", "/admin/suppressions", "/admin/suppressions/lookup"):
        for raw in (deep_list, deep_object):
            # When each is posted
            status, body = post_raw(pipeline, raw, path)
            # Then it is refused as a validation error of the body
            assert status == 422, body
            assert body["error"]["code"] == "validation_error" and field_paths(body) == ["body"]
            assert "nested deeper" in body["error"]["message"]
    assert nothing_dispatched(pipeline)


def test_nesting_up_to_the_limit_and_brackets_in_strings_reach_the_model(pipeline: Pipeline) -> None:
    # Given a request at the nesting limit, and one whose strings hold many brackets
    at_limit = {
        "kind": "product",
        "manifest": "x",
        "variables": json.loads("[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1)),
    }
    brackets: dict[str, Any] = {"kind": "product", "manifest": pipeline.manifest(["u1,ana@example.com,,en,,Ana"])}
    brackets["variables"] = {"subject": "[[[{{{", "body": '"[' * 5_000 + "\\" + "{" * 5_000}
    # When they are posted
    status, limit_body = post_raw(pipeline, json.dumps(at_limit).encode())
    created = pipeline.api("POST", "/admin/notices", brackets)
    # Then the model, not the depth guard, answers the first; the second is accepted
    assert status == 422 and "nested deeper" not in limit_body["error"]["message"], limit_body
    assert "variables" in field_paths(limit_body)
    assert created[0] == 202, created


def test_a_body_over_the_limit_is_a_413(pipeline: Pipeline) -> None:
    # Given a body one byte over the limit, sent plain and base64-encoded
    request: dict[str, Any] = {"kind": "product", "manifest": "s3://b/k", "variables": {"subject": "s", "body": ""}}
    padding = MAX_JSON_BYTES + 1 - len(json.dumps(request))
    request["variables"]["body"] = "a" * padding
    raw = json.dumps(request).encode()
    assert len(raw) == MAX_JSON_BYTES + 1
    # When each is posted
    status, body = post_raw(pipeline, raw)
    compiled = compile_route(Route("POST", "/admin/notices", "AdminApiFunction", "AWS_IAM"))
    event = build_event(
        compiled, {}, "POST", "/admin/notices", "", [("Content-Type", "application/json")], raw, "10.0.0.1",
        "us-east-1", "testing",
    )  # fmt: skip
    event["body"], event["isBase64Encoded"] = base64.b64encode(raw).decode(), True
    encoded = pipeline.admin(event, pipeline.ctx)
    # Then both are 413, in the error format
    assert status == 413 and body["error"]["code"] == "payload_too_large", body
    assert encoded["statusCode"] == 413 and json.loads(encoded["body"])["error"]["code"] == "payload_too_large"
    # And a body that is not base64 at all is a 400
    event["body"] = "not base64 !"
    assert pipeline.admin(event, pipeline.ctx)["statusCode"] == 400


def test_a_number_too_long_to_convert_is_a_422(pipeline: Pipeline) -> None:
    # Given a number of 5,000 digits (json.loads raises ValueError past 4,300: a 500 today)
    raw = b'{"kind": "product", "dry_run": ' + b"1" * 5_000 + b"}"
    status, body = post_raw(pipeline, raw)
    assert status == 422 and field_paths(body) == ["body"], body


def test_invalid_json_is_a_422_of_the_body(pipeline: Pipeline) -> None:
    status, body = post_raw(pipeline, b'{"kind": ')
    assert status == 422 and field_paths(body) == ["body"], body


def test_a_field_too_large_in_utf8_is_a_422_naming_it_and_stores_nothing(pipeline: Pipeline) -> None:
    # Given a 99,000-character CJK body: within the character limit, but 297 KB stored in UTF-8
    manifest = pipeline.manifest(["u1,ana@example.com,,en,,Ana"])
    request: dict[str, Any] = {"kind": "marketing", "manifest": manifest, "variables": {**FREE, "body": "漢" * 99_000}}
    # When it is posted
    status, body = pipeline.api("POST", "/admin/notices", request, {"Idempotency-Key": "cjk-1"})
    # Then it is refused with 422 naming that field (a 500 from DynamoDB today), without its text
    assert status == 422, body
    assert body["error"]["code"] == "validation_error" and field_paths(body) == ["variables.body"]
    assert "漢" not in json.dumps(body, ensure_ascii=False)
    assert nothing_dispatched(pipeline)
    # And the key was not spent: the request made smaller is accepted under it
    request["variables"]["body"] = "漢" * 1_000
    status, created = pipeline.api("POST", "/admin/notices", request, {"Idempotency-Key": "cjk-1"})
    assert status == 202, created
    assert pipeline.get(created["id"])["variables"]["body"] == "漢" * 1_000


def test_a_notice_at_its_size_limit_survives_a_dry_run_with_every_bad_row_sampled(pipeline: Pipeline) -> None:
    # Given a dry run whose notice starts just under its limit (a CJK body) and a manifest of one
    # reachable recipient and more bad rows (with the longest reason) than a notice keeps samples of
    rows = ["u0,ana@example.com,,en,,Ana"] + [f"u{i},,+1 800 FLOWERS{i % 10},en,," for i in range(1, 1_200)]
    manifest = pipeline.manifest(rows)
    request: dict[str, Any] = {"kind": "product", "manifest": manifest, "dry_run": True}
    request["variables"] = {**FREE, "body": "漢" * ((NOTICE_CREATE_LIMIT - 2_000) // 3)}
    status, created = pipeline.api("POST", "/admin/notices", request)
    assert status == 202, created
    # When it is dispatched (a checkpoint adds the samples and the dry run's rendered mail)
    pipeline.run(created["id"])
    # Then the notice item held it all: the dry run's result is there, with its sample mail
    notice = pipeline.get(created["id"])
    assert notice["status"] == "complete", notice["error"]
    assert notice["bad_rows"] == 1_199 and len(notice["bad_row_samples"]) == 1_000
    assert "漢" in notice["dry_run_result"]["samples"]["email"]["mime"]
    assert notice["dry_run_result"]["recipients"] == {"sent": 1}


@pytest.mark.parametrize(
    "contact",
    ["call Bob in IT", "privacy at example.com", "a@b", "+1 800 FLOWERS", "+1 415 555 0100 ext. 7", "ftp://x.example",
     "https://exa mple.com", "12345", "privacy@example.com\nBcc: x"],
)  # fmt: skip
def test_a_contact_that_is_no_email_url_or_phone_is_a_422(pipeline: Pipeline, contact: str) -> None:
    manifest = pipeline.manifest(["u1,ana@example.com,,en,,Ana"])
    request = {"kind": "breach_alert", "manifest": manifest, "variables": {**BREACH, "contact": contact}}
    status, body = pipeline.api("POST", "/admin/notices", request)
    assert status == 422, body
    assert field_paths(body) == ["variables.contact"]
    assert nothing_dispatched(pipeline)


@pytest.mark.parametrize(
    "contact", ["privacy@example.com", "https://example.com/security", "+1 415 555 0132", "+44 20 7946 0958"]
)
def test_an_email_url_or_phone_contact_is_accepted_as_written(pipeline: Pipeline, contact: str) -> None:
    manifest = pipeline.manifest(["u1,ana@example.com,,en,,Ana"])
    created = pipeline.create("breach_alert", {**BREACH, "contact": contact}, manifest)
    assert created["variables"]["contact"] == contact


def test_a_breach_discovered_in_the_future_is_a_422(pipeline: Pipeline) -> None:
    # Given a breach alert discovered an hour from now (today: negative hours to notify, "within 72 h")
    manifest = pipeline.manifest(["u1,ana@example.com,,en,,Ana"])
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    status, body = pipeline.api(
        "POST",
        "/admin/notices",
        {"kind": "breach_alert", "manifest": manifest, "variables": {**BREACH, "discovered_at": later}},
    )
    assert status == 422 and field_paths(body) == ["variables.discovered_at"], body
    assert "future" in body["error"]["message"]
    # And one without a zone is refused naming the same field
    naive = {**BREACH, "discovered_at": "2026-11-20T09:30:00"}
    status, body = pipeline.api(
        "POST", "/admin/notices", {"kind": "breach_alert", "manifest": manifest, "variables": naive}
    )
    assert status == 422 and field_paths(body) == ["variables.discovered_at"], body
    # And one just past is accepted
    just_now = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    assert pipeline.create("breach_alert", {**BREACH, "discovered_at": just_now}, manifest)["kind"] == "breach_alert"


@pytest.mark.parametrize(
    "manifest",
    ["s3://someone-elses-bucket/users.csv", "s3://{bucket}-evil/users.csv", "s3://evil{bucket}/users.csv"],
)
def test_a_manifest_outside_the_stacks_bucket_is_a_422(pipeline: Pipeline, manifest: str) -> None:
    # Given a manifest the dispatcher's role may not read (today accepted, then denied s3:GetObject)
    request = {"kind": "policy_change", "manifest": manifest.format(bucket=pipeline.bucket), "variables": POLICY}
    # When it is posted
    status, body = pipeline.api("POST", "/admin/notices", request, {"Idempotency-Key": "elsewhere"})
    # Then it is refused naming the manifest, and nothing is stored or dispatched
    assert status == 422 and field_paths(body) == ["manifest"], body
    assert nothing_dispatched(pipeline)
    request["manifest"] = pipeline.manifest(["u1,ana@example.com,,en,,Ana"])
    status, created = pipeline.api("POST", "/admin/notices", request, {"Idempotency-Key": "elsewhere"})
    assert status == 202, created


@pytest.mark.parametrize("key", ["k" * 256, "with space", "tab\tkey", "ключ"])
def test_an_idempotency_key_that_cannot_be_a_key_is_a_422(pipeline: Pipeline, key: str) -> None:
    manifest = pipeline.manifest(["u1,ana@example.com,,en,,Ana"])
    request = {"kind": "policy_change", "manifest": manifest, "variables": POLICY}
    status, body = pipeline.api("POST", "/admin/notices", request, {"Idempotency-Key": key})
    assert status == 422 and field_paths(body) == ["headers.idempotency-key"], body
    assert nothing_dispatched(pipeline)


def test_ids_and_page_tokens_no_api_gave_out_are_4xx(pipeline: Pipeline) -> None:
    created = pipeline.create("policy_change", POLICY, pipeline.manifest(["u1,ana@example.com,,en,,Ana"]))

    def get(path: str, route: str, notice_id: str, query: str = "") -> tuple[int, Any]:
        return pipeline.api("GET", path, route=route, params={"notice_id": notice_id}, query=query)

    # A notice id longer than a DynamoDB key may be (a ValidationException there): 404
    long_id = "ntc_" + "9" * 3_000
    assert get(f"/admin/notices/{long_id}", "/admin/notices/{notice_id}", long_id)[0] == 404
    # A path the route's pattern refuses: 404 in the error format
    status, body = get("/admin/notices/\u2028", "/admin/notices/{notice_id}", "\u2028")
    assert status == 404 and body["error"]["code"] == "not_found", body
    # A page token for a start key longer than a sort key may be: 400
    token = ("r" * 1_000 + "#email").encode().hex()
    status, body = get(
        f"/admin/notices/{created['id']}/deliveries", "/admin/notices/{notice_id}/deliveries", created["id"],
        f"next_token={token}",
    )  # fmt: skip
    assert status == 400 and body["error"]["code"] == "bad_page_token", body
