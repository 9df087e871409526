"""The opt-out ledger and the notice listing behind ``optout compliance report`` and ``optout notice
list``, on moto with the admin API's role: GET /admin/compliance/opt-outs and GET /admin/notices."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import boto3
import pytest

from optout import wiring
from optout.core import page_token
from optout.core.identity import Identity
from optout.core.settings import get_settings
from optout.privacy import compliance_admin
from optout.suppression.model import ConsentChange
from optout_local import compliance_report
from optout_local.runtime import LambdaContext
from tests.integration.notice_pipeline import POLICY, Pipeline, suppress

PRODUCT = {"subject": "Dark mode", "body": "It is here."}
ROWS = ["u1,alice@example.com,,en,America/New_York,Alice", "u2,bob@example.com,,en,America/New_York,Bob"]


def _opt_outs(pipeline: Pipeline, since: datetime, token: str | None = None) -> tuple[int, Any]:
    query = urlencode({"since": since.isoformat(), **({"next_token": token} if token else {})})
    return pipeline.api("GET", "/admin/compliance/opt-outs", query=query)


def _all_opt_outs(pipeline: Pipeline, since: datetime) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    token = None
    while True:
        status, page = _opt_outs(pipeline, since, token)
        assert status == 200, page
        items += page["items"]
        token = page["next_token"]
        if not token:
            return items


def _key(address: str) -> str:
    return Identity.of(wiring.pepper(), "email", address).key


def test_the_ledger_joins_each_opt_out_with_the_sends_to_its_address(pipeline: Pipeline) -> None:
    # Given alice opted out of product mail with one click, then a product and a policy notice went out
    since = datetime.now(UTC) - timedelta(minutes=1)
    suppress("email", "alice@example.com", [ConsentChange("opt_out", "product")], source="one_click")
    product = pipeline.create("product", PRODUCT, pipeline.manifest(ROWS, "p.csv"))
    pipeline.run(product["id"])
    policy = pipeline.create("policy_change", POLICY, pipeline.manifest(ROWS, "q.csv"))
    pipeline.run(policy["id"])

    # When the ledger is read
    (entry,) = _all_opt_outs(pipeline, since)

    # Then her opt-out shows the product mail it stopped, and no send after it (the policy mail is required)
    assert entry["subject"] == _key("alice@example.com")[:16] and entry["source"] == "one_click"
    assert entry["scope"] == "product" and entry["sends_after"] == [] and entry["suppressed_after"] == 1
    assert "alice" not in json.dumps(entry)
    # every send's record keeps when it was decided, no later than when it was recorded
    route = "/admin/notices/{notice_id}/deliveries"
    _, page = pipeline.api("GET", f"/admin/notices/{policy['id']}/deliveries", route=route,
                           params={"notice_id": policy["id"]})  # fmt: skip
    sent = [r for r in page["items"] if r["decision"] == "sent"]
    times = [(datetime.fromisoformat(r["decided_at"]), datetime.fromisoformat(r["at"])) for r in sent]
    assert len(sent) == 2 and all(decided <= at for decided, at in times)

    # And when a faulty sender had mailed her a product notice anyway, the ledger names that send
    table = get_settings().notices_table
    at = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    boto3.client("dynamodb").put_item(TableName=table, Item={
        "pk": {"S": f"notice#{product['id']}"}, "sk": {"S": "delivery#u9#email"}, "decision": {"S": "sent"},
        "at": {"S": at}, "address_key": {"S": _key("alice@example.com")},
    })  # fmt: skip
    (entry,) = _all_opt_outs(pipeline, since)
    assert [(s["notice_id"], s["topic"], s["in_force"]) for s in entry["sends_after"]] == [
        (product["id"], "product", True)
    ]
    report = compliance_report.build([compliance_report.OptOut.model_validate(entry)], [], since, datetime.now(UTC))
    assert report["sends_after_in_force"] == 1 and report["breaches"] == 2  # both email clocks


def test_pages_resume_where_they_stopped_and_a_made_up_token_is_a_400(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given seven addresses opted out, and pages of three items read
    since = datetime.now(UTC) - timedelta(minutes=1)
    for i in range(7):
        suppress("email", f"user{i}@example.com", [ConsentChange("opt_out", "optional")], source="preference_page")
    monkeypatch.setattr(compliance_admin, "SCAN_LIMIT", 3)

    # Then every opt-out comes back once, over several pages
    items = _all_opt_outs(pipeline, since)
    assert sorted(i["subject"] for i in items) == sorted(_key(f"user{i}@example.com")[:16] for i in range(7))

    # And a page that runs short of time stops after its first address, and the next goes on from there
    monkeypatch.setattr(compliance_admin, "SCAN_LIMIT", 100)
    pipeline.ctx = LambdaContext(timeout_seconds=4)  # under the 5 s a page keeps for its answer
    status, page = _opt_outs(pipeline, since)
    assert status == 200 and len(page["items"]) == 1 and page["next_token"]
    pipeline.ctx = LambdaContext(timeout_seconds=60)
    status, rest = _opt_outs(pipeline, since, page["next_token"])
    assert status == 200 and len(rest["items"]) == 6 and rest["next_token"] is None

    # And a token it never gave out is refused, as is a request without its date
    too_long = page_token.encode({"pk": {"S": "k"}, "sk": {"S": "s" * 1500}})
    for token in ("nonsense", "eyJ4IjoxfQ==", too_long):
        status, body = _opt_outs(pipeline, since, token)
        assert status == 400 and body["error"]["code"] == "bad_page_token"
    status, body = pipeline.api("GET", "/admin/compliance/opt-outs")
    assert status == 422 and body["error"]["fields"][0]["path"] == "query.since"


def test_notices_are_listed_newest_first_with_their_reach(pipeline: Pipeline) -> None:
    # Given a policy change and a dry-run product notice
    before = datetime.now(UTC) - timedelta(seconds=2)
    first = pipeline.create("policy_change", POLICY, pipeline.manifest(ROWS, "a.csv"))
    pipeline.run(first["id"])
    second = pipeline.create("product", PRODUCT, pipeline.manifest(ROWS, "b.csv"), dry_run=True)
    pipeline.run(second["id"])

    # When they are listed, a page of one at a time
    status, page = pipeline.api("GET", "/admin/notices", query="limit=1")
    assert status == 200 and [n["id"] for n in page["items"]] == [second["id"]]
    status, rest = pipeline.api(
        "GET", "/admin/notices", query=urlencode({"limit": 5, "next_token": page["next_token"]})
    )

    # Then the older follows, with its reach; a date after both lists none
    assert status == 200 and [n["id"] for n in rest["items"]] == [first["id"]] and rest["next_token"] is None
    assert rest["items"][0]["reach"]["reached"] == 2 and rest["items"][0]["status"] == "complete"
    assert page["items"][0]["dry_run"] is True and "variables" not in page["items"][0]
    status, none = pipeline.api("GET", "/admin/notices", query=urlencode({"since": datetime.now(UTC).isoformat()}))
    assert status == 200 and none["items"] == []
    status, some = pipeline.api("GET", "/admin/notices", query=urlencode({"since": before.isoformat()}))
    assert [n["id"] for n in some["items"]] == [second["id"], first["id"]]
    # a token from another query's range is refused, not a DynamoDB error
    status, body = pipeline.api(
        "GET", "/admin/notices",
        query=urlencode({"since": datetime.now(UTC).isoformat(), "next_token": page["next_token"]}),
    )  # fmt: skip
    assert status == 400 and body["error"]["code"] == "bad_page_token"
