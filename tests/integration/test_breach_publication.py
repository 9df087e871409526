"""A breach alert's public communication for the people it could not reach (Art. 34(3)(c)): published
by the dispatcher when the alert completes (``publish_if_unreachable``), or afterwards through
POST /admin/notices/{id}/publish; on moto with the functions' roles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from optout.core.settings import get_settings
from optout.notices.public import PublicNoticeStore
from optout.suppression.model import ConsentChange
from optout_local import notice_reports
from tests.integration.notice_pipeline import BREACH, POLICY, Pipeline, suppress

# carol's mail is blocked and she has no phone: nobody can reach her
ROWS = ["u1,alice@example.com,,en,,Alice", "u2,carol@example.com,,en,,Carol"]


def _public() -> list[str]:
    return [n.notice_id for n in PublicNoticeStore(get_settings().notices_table).current(datetime.now(UTC))]


def _publish(pipeline: Pipeline, notice_id: str, body: dict[str, Any]) -> tuple[int, Any]:
    route = "/admin/notices/{notice_id}/publish"
    return pipeline.api(
        "POST", f"/admin/notices/{notice_id}/publish", body, route=route, params={"notice_id": notice_id}
    )


def test_an_alert_that_asked_for_it_is_published_when_it_completes_with_anyone_unreachable(
    pipeline: Pipeline,
) -> None:
    # Given carol's email is blocked by a hard bounce, and two breach alerts to her and alice: one
    # that asks to be published for the unreachable, one that does not
    suppress("email", "carol@example.com", [ConsentChange("block", "channel", "bounce")], source="bounce")
    asking = pipeline.create(
        "breach_alert", {**BREACH, "publish_if_unreachable": True}, pipeline.manifest(ROWS, "a.csv")
    )
    silent = pipeline.create("breach_alert", BREACH, pipeline.manifest(ROWS, "b.csv"))

    # When both are sent to the end
    pipeline.run(asking["id"])
    pipeline.run(silent["id"])

    # Then the one that asked is on the public page, from when it completed; the other is not
    asked, other = pipeline.get(asking["id"]), pipeline.get(silent["id"])
    assert asked["reach"]["unreachable"] == 1 and asked["status"] == "complete"
    assert _public() == [asking["id"]]
    assert asked["publication"]["published_at"] >= asked["created_at"] and other["publication"] is None
    # and the authority report's timeline says when it was published
    text = notice_reports.art33_markdown(asked, datetime.now(UTC))
    assert "| Published publicly (Art. 34(3)(c)) |" in text


def test_an_alert_that_reached_everyone_is_not_published(pipeline: Pipeline) -> None:
    notice = pipeline.create("breach_alert", {**BREACH, "publish_if_unreachable": True}, pipeline.manifest(ROWS[:1]))
    pipeline.run(notice["id"])
    assert pipeline.get(notice["id"])["reach"]["unreachable"] == 0 and _public() == []


def test_an_alert_is_published_after_the_fact_and_what_cannot_be_published_is_a_422(pipeline: Pipeline) -> None:
    # Given a breach alert sent without publishing, a dry run and a product notice
    alert = pipeline.create("breach_alert", BREACH, pipeline.manifest(ROWS, "c.csv"))
    pipeline.run(alert["id"])
    dry = pipeline.create("policy_change", POLICY, pipeline.manifest(ROWS, "d.csv"), dry_run=True)
    product = pipeline.create("product", {"subject": "New", "body": "b"}, pipeline.manifest(ROWS, "e.csv"))

    # When the alert is published until next month, and published again
    until = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    status, first = _publish(pipeline, alert["id"], {"until": until})
    status_again, again = _publish(pipeline, alert["id"], {})

    # Then it is shown until then, and publishing again keeps the first publication
    assert status == status_again == 200 and first == again and first["until"].startswith(until[:19])
    assert _public() == [alert["id"]] and pipeline.get(alert["id"])["publication"]["until"] == first["until"]
    # a different end is a 409 (it is set once), and so is publishing again once withdrawn
    later = (datetime.now(UTC) + timedelta(days=60)).isoformat()
    status, body = _publish(pipeline, alert["id"], {"until": later})
    assert status == 409 and body["error"]["code"] == "publication_conflict"
    route = "/admin/notices/{notice_id}/withdraw"
    pipeline.api("POST", f"/admin/notices/{alert['id']}/withdraw", route=route, params={"notice_id": alert["id"]})
    status, body = _publish(pipeline, alert["id"], {})
    assert status == 409 and "withdrawn" in body["error"]["message"] and _public() == []
    # And a dry run, a product notice, a past date and a bad body are refused
    assert _publish(pipeline, dry["id"], {})[1]["error"]["code"] == "not_publishable"
    assert _publish(pipeline, product["id"], {})[1]["error"]["code"] == "not_publishable"
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    status, body = _publish(pipeline, product["id"], {"until": past, "x": 1})
    assert status == 422 and {f["path"] for f in body["error"]["fields"]} == {"x"}
    fresh = pipeline.create("change_of_control", {
        "new_controller": "Acme Holdings", "effective_date": "2027-01-31", "summary": "Acme buys us.",
        "choices_url": "https://example.com/choices",
    }, pipeline.manifest(ROWS, "f.csv"))  # fmt: skip
    status, body = _publish(pipeline, fresh["id"], {"until": past})
    assert status == 422 and body["error"]["fields"][0]["path"] == "until"
    assert _public() == []
