"""Public notices in the NoticesTable on moto: one well-known partition, one Query to list them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from optout.core.settings import get_settings
from optout.notices.model import Notice
from optout.notices.public import NotPublishable, PublicNoticeNotFound, PublicNoticeStore, from_notice
from optout_local.provision import Stack

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def notice(notice_id: str, kind: str = "policy_change", **variables: Any) -> Notice:
    defaults: dict[str, dict[str, Any]] = {
        "policy_change": {
            "policy_version": "2026-12-01", "effective_date": "2026-12-31", "summary": "We keep logs 30 days.",
            "policy_url": "https://example.com/privacy",
        },
        "breach_alert": {
            "discovered_at": "2026-11-25T08:00:00Z", "nature": "A support inbox was read by an outsider.",
            "data_categories": ["email address"], "likely_consequences": "Phishing mail.",
            "measures_taken": "Access revoked.", "contact": "privacy@example.com",
        },
        "product": {"subject": "New", "body": "Dark mode."},
    }  # fmt: skip
    return Notice(
        id=notice_id, kind=kind, topic="policy", channels=["email"], mode="all",  # type: ignore[arg-type]
        variables={**defaults[kind], **variables}, manifest="s3://b/m.csv", created_by="admin",
        created_at=NOW, updated_at=NOW,
    )  # fmt: skip


@pytest.fixture
def store(aws: Stack) -> PublicNoticeStore:
    return PublicNoticeStore(get_settings().notices_table)


def test_a_published_notice_shows_from_its_publication_until_its_date(store) -> None:
    store.publish(from_notice(notice("n1"), NOW, until=NOW + timedelta(days=30)))
    store.publish(from_notice(notice("n2", "breach_alert"), NOW + timedelta(hours=1)))
    assert store.current(NOW - timedelta(seconds=1)) == []
    assert [n.notice_id for n in store.current(NOW + timedelta(hours=2))] == ["n2", "n1"]  # newest first
    assert [n.notice_id for n in store.current(NOW + timedelta(days=31))] == ["n2"]
    shown = store.current(NOW + timedelta(hours=2))[0].public()
    assert shown["kind"] == "breach_alert" and shown["contact"] == "privacy@example.com"
    assert "until" not in shown and "withdrawn_at" not in shown and "v" not in shown


def test_a_withdrawn_notice_leaves_the_page_and_keeps_its_dates(store) -> None:
    store.publish(from_notice(notice("n1"), NOW))
    withdrawn = store.withdraw("n1", NOW + timedelta(days=2))
    assert store.current(NOW + timedelta(days=3)) == []
    assert store.get("n1").withdrawn_at == NOW + timedelta(days=2) == withdrawn.withdrawn_at
    assert store.get("n1").published_at == NOW
    # Withdrawing again, or publishing again, changes nothing
    assert store.withdraw("n1", NOW + timedelta(days=9)).withdrawn_at == NOW + timedelta(days=2)
    assert store.publish(from_notice(notice("n1"), NOW + timedelta(days=9))).withdrawn_at == NOW + timedelta(days=2)
    with pytest.raises(PublicNoticeNotFound):
        store.withdraw("never-published")


def test_listing_is_one_query_of_the_well_known_partition(store) -> None:
    for i in range(5):
        store.publish(from_notice(notice(f"n{i}"), NOW + timedelta(minutes=i)))
    calls: list[str] = []
    store.client.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))
    assert len(store.current(NOW + timedelta(hours=1))) == 5
    assert calls == ["Query"]


def test_only_the_kinds_a_policy_posts_publicly_are_published() -> None:
    with pytest.raises(NotPublishable):
        from_notice(notice("p", "product"), NOW)
    with pytest.raises(NotPublishable):
        from_notice(notice("n"), NOW, until=NOW)


def test_the_page_is_localised_cacheable_embeddable_and_has_no_script(store) -> None:
    from optout.notices.public import notices_json, notices_page

    store.publish(from_notice(notice("n1"), NOW))
    store.publish(from_notice(notice("n2", "breach_alert"), NOW + timedelta(hours=1)))
    shown = store.current(NOW + timedelta(hours=2))
    page = notices_page(shown, "fr", "Example Co", max_age=300)
    assert page.status == 200 and page.headers["Content-Language"] == "fr"
    assert page.headers["Cache-Control"] == "public, max-age=300" and page.headers["Vary"] == "Accept-Language"
    assert "frame-ancestors *" in page.headers["Content-Security-Policy"] and "X-Frame-Options" not in page.headers
    assert "default-src 'none'" in page.headers["Content-Security-Policy"] and "<script" not in page.body
    assert "Notre politique de confidentialité change" in page.body and "Ce qui s’est passé" in page.body
    assert page.body.index("notice-n2") < page.body.index("notice-n1")  # newest first
    assert 'href="https://example.com/privacy"' in page.body
    empty = notices_page([], "en", "Example Co")
    assert "There are no notices at the moment." in empty.body
    body, headers = notices_json(shown)
    assert headers["Access-Control-Allow-Origin"] == "*" and headers["Cache-Control"] == "public, max-age=300"
    listed = json.loads(json.dumps(body))["notices"]  # what the resolver serialises
    assert [n["notice_id"] for n in listed] == ["n2", "n1"]
    assert listed[1]["url"] == "https://example.com/privacy" and listed[1]["published_at"] == "2026-12-02T09:00:00Z"


def test_get_notices_serves_the_published_ones_with_the_functions_own_role(aws: Stack, store) -> None:
    from optout_local.runtime import LambdaContext, load_handler
    from tests.conftest import sample_event

    # Given one current notice, one withdrawn, one not yet due
    now = datetime.now(UTC)
    store.publish(from_notice(notice("shown"), now - timedelta(hours=1)))
    store.publish(from_notice(notice("gone"), now - timedelta(hours=2)))
    store.withdraw("gone", now - timedelta(minutes=5))
    store.publish(from_notice(notice("later"), now + timedelta(days=1)))
    handler = load_handler(aws.function("unsubscribe"))

    def get(path: str, language: str = "en") -> dict[str, Any]:
        event = sample_event("unsubscribe_get", rawPath=path, routeKey=f"GET {path}", rawQueryString="")
        event.pop("queryStringParameters", None)
        event["requestContext"] = {**event["requestContext"], "http": {**event["requestContext"]["http"], "path": path}}
        event["headers"] = {**event["headers"], "accept-language": language}
        response: dict[str, Any] = handler(event, LambdaContext(function_name="optout-test"))
        return response

    # When the public page and its JSON are read (the Unsubscribe role: one Query of the partition)
    page, listed = get("/notices", "de"), get("/notices.json")
    # Then only the current notice is there, cacheable
    assert page["statusCode"] == 200 and page["headers"]["Cache-Control"] == "public, max-age=300"
    assert "Unsere Datenschutzerklärung ändert sich" in page["body"] and "notice-shown" in page["body"]
    assert "notice-gone" not in page["body"] and "notice-later" not in page["body"]
    assert listed["statusCode"] == 200 and listed["headers"]["Access-Control-Allow-Origin"] == "*"
    assert [n["notice_id"] for n in json.loads(listed["body"])["notices"]] == ["shown"]


def test_the_unsubscribe_role_reads_no_other_partition_of_the_notices_table(aws: Stack) -> None:
    from botocore.exceptions import ClientError

    from optout.core import clients
    from optout_local.iam import in_process

    table = get_settings().notices_table
    with in_process.installed().running("UnsubscribeFunction"), pytest.raises(ClientError) as caught:
        clients.dynamodb().query(
            TableName=table, KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": "notice#n1"}}
        )
    assert caught.value.response["Error"]["Code"] == "AccessDeniedException"
