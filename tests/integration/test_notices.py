"""Admin notices on moto: admin API, dispatcher and sender, driven through their handlers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from optout import wiring
from optout.core.identity import Identity
from optout.core.settings import get_settings
from optout.notices.send import UNKNOWN_REASON, Sender
from optout.suppression.model import ConsentChange
from optout.suppression.store import DynamoSuppressionStore
from optout_local.iam.in_process import run_as
from optout_local.runtime import LambdaContext, load_handler
from tests.conftest import sent_sms
from tests.integration.notice_pipeline import BREACH, POLICY, Pipeline, sent_mail, suppress, users


def test_policy_change_reaches_everyone_reachable_and_reports_the_rest(pipeline: Pipeline) -> None:
    # Given 120 users: one bounced (email blocked), one who opted out of everything optional
    suppress("email", "user3@example.com", [ConsentChange("block", "channel", "bounce")], "bounce")
    suppress("email", "user4@example.com", [ConsentChange("opt_out", "optional")])
    manifest = pipeline.manifest(users(120))
    # When the policy change is sent by email
    notice = pipeline.create("policy_change", POLICY, manifest)
    pipeline.run(notice["id"])
    # Then 119 were told (an optional opt-out does not block a required notice), 1 is unreachable
    result = pipeline.get(notice["id"])
    assert result["status"] == "complete"
    assert result["total"] == 120
    assert result["counts"]["recipients"] == {"sent": 119, "unreachable": 1}
    assert result["counts"]["by_channel"]["email"] == {"sent": 119, "unreachable": 1}
    mails = sent_mail()
    assert len(mails) == 119 and len({m["To"] for m in mails}) == 119
    assert "user3@example.com" not in {m["To"] for m in mails}
    mail = mails[0]
    assert mail["Subject"] == "Example Co: we are updating our privacy policy"
    assert "List-Unsubscribe" not in mail  # a required notice cannot be unsubscribed from
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "30 days instead of 90" in text and "/unsubscribe?token=" in text
    # And the evidence has one row per recipient and channel, with provider ids for the sent ones
    status, page = pipeline.api(
        "GET", f"/admin/notices/{notice['id']}/deliveries", route="/admin/notices/{notice_id}/deliveries",
        params={"notice_id": notice["id"]}, query="limit=1000",
    )  # fmt: skip
    assert status == 200 and len(page["items"]) == 120 and page["next_token"] is None
    unreachable = [i for i in page["items"] if i["decision"] == "unreachable"]
    assert unreachable == [dict(unreachable[0], recipient_id="u3", reason="blocked: bounce")]
    assert all(i["provider_message_id"] for i in page["items"] if i["decision"] == "sent")


def test_product_mail_honours_opt_outs_and_its_one_click_link_works(pipeline: Pipeline, lambda_context) -> None:
    suppress("email", "user1@example.com", [ConsentChange("opt_out", "product")])
    suppress("email", "user2@example.com", [ConsentChange("opt_out", "optional")])
    suppress("email", "user5@example.com", [ConsentChange("opt_out", "marketing")])
    manifest = pipeline.manifest(users(10))
    notice = pipeline.create("product", {"subject": "New: dark mode", "body": "Dark mode is here.\n\nEnjoy."}, manifest)
    pipeline.run(notice["id"])
    result = pipeline.get(notice["id"])
    assert result["counts"]["recipients"] == {"sent": 8, "suppressed": 2}
    mails = {m["To"]: m for m in sent_mail()}
    assert set(mails) == {f"user{i}@example.com" for i in (0, 3, 4, 5, 6, 7, 8, 9)}
    mail = mails["user0@example.com"]
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = mail["List-Unsubscribe"].strip("<>")
    assert url.startswith("https://optout.example.test/unsubscribe?token=")
    # The mail client's one-click POST opts user0 out of product mail
    token = parse_qs(urlsplit(url).query)["token"][0]
    unsubscribe = load_handler(pipeline.stack.function("Unsubscribe"))
    from tests.conftest import sample_event

    assert unsubscribe(sample_event("unsubscribe_one_click", token), lambda_context)["statusCode"] == 200
    key = Identity.of(wiring.pepper(), "email", "user0@example.com").key
    state = DynamoSuppressionStore(get_settings().suppression_table).get(key)
    assert state is not None and state.topics == {"product"}


def test_multi_chunk_manifest_continues_in_a_new_invocation(pipeline: Pipeline, monkeypatch) -> None:
    # Given 600 recipients (12 batches = 2 SendMessageBatch calls) and an invocation nearly out of time
    manifest = pipeline.manifest(users(600))
    notice = pipeline.create("policy_change", POLICY, manifest)
    calls = {"n": 0}
    dispatcher = wiring.dispatcher()
    real = dispatcher.send_batches

    def counting(messages: list[dict[str, Any]]) -> None:
        calls["n"] += 1
        real(messages)

    monkeypatch.setattr(dispatcher, "send_batches", counting)
    (record,) = pipeline.receive("DispatchQueue")
    # When the first invocation has less than a minute left after its first checkpoint
    outcome = dispatcher.handle(json.loads(record["body"]), lambda: 30_000)
    assert outcome == "continued" and calls["n"] == 1
    progress = pipeline.get(notice["id"])
    assert progress["status"] == "dispatching" and progress["rows_read"] == 500 and progress["total"] is None
    # Then the continuation picks up at the checkpoint and every recipient is notified exactly once
    pipeline.run(notice["id"])
    result = pipeline.get(notice["id"])
    assert result["status"] == "complete" and result["total"] == 600 and result["rows_read"] == 600
    assert result["counts"]["recipients"] == {"sent": 600}
    assert calls["n"] == 2
    assert len(sent_mail()) == 600 and len({m["To"] for m in sent_mail()}) == 600


def test_a_redelivered_batch_sends_nothing_twice(pipeline: Pipeline) -> None:
    manifest = pipeline.manifest(users(30))
    notice = pipeline.create("policy_change", POLICY, manifest)
    (dispatch,) = pipeline.receive("DispatchQueue")
    pipeline.dispatcher({"Records": [dispatch]}, LambdaContext())
    (batch,) = pipeline.receive("SendQueue")
    assert pipeline.sender({"Records": [batch]}, pipeline.sender_context()) == {"batchItemFailures": []}
    assert pipeline.sender({"Records": [batch]}, pipeline.sender_context()) == {"batchItemFailures": []}
    wiring.dispatcher().finalize(notice["id"], 0)
    assert len(sent_mail()) == 30
    assert pipeline.get(notice["id"])["counts"]["recipients"] == {"sent": 30}


def test_an_interrupted_batch_is_never_resent_and_is_reported(pipeline: Pipeline, monkeypatch) -> None:
    # Given five recipients, one of whom bounced before
    suppress("email", "user3@example.com", [ConsentChange("block", "channel", "bounce")], "bounce")
    manifest = pipeline.manifest(users(5))
    notice = pipeline.create("policy_change", POLICY, manifest)
    (dispatch,) = pipeline.receive("DispatchQueue")
    pipeline.dispatcher({"Records": [dispatch]}, LambdaContext())
    (batch,) = pipeline.receive("SendQueue")
    sender = wiring.sender()

    class Died(BaseException):
        """The process is killed here: no line of the sender after it runs (an error would be handled)."""

    def crash(*args: Any, **kwargs: Any) -> None:
        raise Died

    # When the sender dies after sending, before its records are written
    with monkeypatch.context() as patch:
        patch.setattr(sender.notices, "complete_batch", crash)
        with pytest.raises(Died):
            pipeline.sender({"Records": [batch]}, pipeline.sender_context())
    assert len(sent_mail()) == 4
    assert pipeline.get(notice["id"])["counts"]["recipients"] == {}  # nothing was recorded
    # And a second delivery while the dead invocation's lease still runs leaves the batch alone:
    # it fails (back to the queue), records nothing and sends nothing
    with pytest.raises(BatchProcessingError):
        pipeline.sender({"Records": [batch]}, pipeline.sender_context())
    assert pipeline.get(notice["id"])["counts"]["recipients"] == {} and len(sent_mail()) == 4
    # And the bounced address is cleared before the redelivery (the plan at the time still holds)
    suppress("email", "user3@example.com", [ConsentChange("unblock", "channel")], "admin")
    # Then the redelivery SQS makes after the visibility timeout (12 minutes, past the lease)
    # sends nothing: the one bulk call was in flight, so its four recipients are unknown (never
    # sent again, listed), and the bounced recipient stays as that attempt decided
    later = datetime.now(UTC) + timedelta(minutes=12)
    monkeypatch.setattr(sender, "now", lambda: later)
    assert pipeline.sender({"Records": [batch]}, pipeline.sender_context()) == {"batchItemFailures": []}
    assert len(sent_mail()) == 4
    wiring.dispatcher().finalize(notice["id"], 0)
    final = pipeline.get(notice["id"])
    assert final["status"] == "complete_with_failures"
    assert final["counts"]["by_channel"]["email"] == {"unknown": 4, "unreachable": 1}
    assert final["counts"]["recipients"] == {"unknown": 4, "unreachable": 1}
    records = {r.recipient_id: r for r in wiring.notice_admin().store.all_deliveries(notice["id"])}
    assert {(r.decision, r.reason) for rid, r in records.items() if rid != "u3"} == {("unknown", UNKNOWN_REASON)}
    assert records["u3"].decision == "unreachable" and records["u3"].reason == "blocked: bounce"
    # And a third delivery, after the batch was recorded, changes nothing
    assert pipeline.sender({"Records": [batch]}, pipeline.sender_context()) == {"batchItemFailures": []}
    assert pipeline.get(notice["id"])["counts"] == final["counts"] and len(sent_mail()) == 4


def test_a_recipient_listed_twice_is_notified_once(pipeline: Pipeline) -> None:
    # Given a manifest that lists u5 again in another batch and u7 again in the same batch
    rows = users(120)
    rows.insert(100, "u5,user5@example.com,,en,America/New_York,User 5")
    rows.insert(9, "u7,other7@example.com,,en,America/New_York,User 7 again")
    notice = pipeline.create("policy_change", POLICY, pipeline.manifest(rows))
    # When it is sent
    pipeline.run(notice["id"])
    # Then each recipient got one mail, the first listing's, and the repeats are counted
    final = pipeline.get(notice["id"])
    assert final["status"] == "complete" and final["total"] == 122 and final["rows_read"] == 122
    assert final["counts"]["recipients"] == {"sent": 120, "duplicate": 2}
    recipients = [m["To"] for m in sent_mail()]
    assert len(recipients) == 120 and len(set(recipients)) == 120 and "other7@example.com" not in recipients


def test_a_continuation_still_drops_recipients_seen_before_its_checkpoint(pipeline: Pipeline) -> None:
    # Given 600 recipients where rows after the first checkpoint repeat rows before it
    rows = [*users(600), "u3,user3@example.com,,en,,", "u499,user499@example.com,,en,,"]
    notice = pipeline.create("policy_change", POLICY, pipeline.manifest(rows))
    dispatcher = wiring.dispatcher()
    (record,) = pipeline.receive("DispatchQueue")
    # When the first invocation stops after its first checkpoint and a new one continues
    assert dispatcher.handle(json.loads(record["body"]), lambda: 30_000) == "continued"
    pipeline.run(notice["id"])
    # Then the continuation knew the rows before its checkpoint: nobody was sent twice
    final = pipeline.get(notice["id"])
    assert final["status"] == "complete" and final["total"] == 602
    assert final["counts"]["recipients"] == {"sent": 600, "duplicate": 2}
    assert len(sent_mail()) == 600 and len({m["To"] for m in sent_mail()}) == 600


def test_an_opt_out_between_two_batches_is_honoured(pipeline: Pipeline) -> None:
    manifest = pipeline.manifest(users(100))
    notice = pipeline.create("marketing", {"subject": "Sale", "body": "Everything half price."}, manifest)
    (dispatch,) = pipeline.receive("DispatchQueue")
    pipeline.dispatcher({"Records": [dispatch]}, LambdaContext())
    first, second = sorted(pipeline.receive("SendQueue"), key=lambda r: json.loads(r["body"])["batch"])
    assert json.loads(first["body"])["batch"] == "L2" and json.loads(second["body"])["batch"] == "L52"
    pipeline.sender({"Records": [first]}, pipeline.sender_context())
    # user75 (in the second batch) unsubscribes while the notice is going out
    suppress("email", "user75@example.com", [ConsentChange("opt_out", "marketing")], "one_click")
    pipeline.sender({"Records": [second]}, pipeline.sender_context())
    wiring.dispatcher().finalize(notice["id"], 0)
    assert "user75@example.com" not in {m["To"] for m in sent_mail()}
    assert pipeline.get(notice["id"])["counts"]["recipients"] == {"sent": 99, "suppressed": 1}


def test_a_dry_run_sends_nothing_and_says_what_would_happen(pipeline: Pipeline) -> None:
    suppress("email", "user1@example.com", [ConsentChange("block", "channel", "bounce")], "bounce")
    suppress("sms", "+14155550102", [ConsentChange("block", "channel", "keyword")], "sms_keyword")
    manifest = pipeline.manifest(
        [
            "u1,user1@example.com,+14155550101,en,America/New_York,A",
            "u2,user2@example.com,+14155550102,en,America/New_York,B",
            "u3,,,en,,C",
            "u4,user4@example.com,,es,Europe/Madrid,D",
            "u2,user2@example.com,+14155550102,en,America/New_York,B again",
        ]
    )
    notice = pipeline.create("breach_alert", BREACH, manifest, dry_run=True)
    pipeline.run(notice["id"])
    result = pipeline.get(notice["id"])
    assert result["status"] == "complete" and result["dry_run"] is True
    assert sent_mail() == [] and sent_sms() == []
    dry = result["dry_run_result"]
    assert dry["recipients"] == {"sent": 3, "duplicate": 1}
    assert dry["channels"]["email"] == {"suppressed": 1, "sent": 2}
    assert dry["channels"]["sms"] == {"sent": 1, "suppressed": 1}
    assert dry["reasons"]["email"] == {"blocked: bounce": 1}
    assert dry["reasons"]["sms"] == {"blocked: keyword": 1}
    assert result["bad_rows"] == 1 and result["bad_row_samples"] == [{"line": 4, "reason": "no email and no phone"}]
    assert dry["samples"]["sms"]["encoding"] == "GSM-7" and dry["samples"]["sms"]["segments"] == 1
    assert "Subject: Example Co: important notice about your data" in dry["samples"]["email"]["mime"]


def test_a_breach_alert_uses_both_channels_and_reports_time_to_notify(pipeline: Pipeline) -> None:
    manifest = pipeline.manifest(
        ["u1,user1@example.com,+14155550101,en,America/Los_Angeles,A", "u2,,+14155550102,en,,B"]
    )
    notice = pipeline.create("breach_alert", BREACH, manifest)
    pipeline.run(notice["id"])
    result = pipeline.get(notice["id"])
    assert result["counts"]["by_channel"] == {"email": {"sent": 1}, "sms": {"sent": 2}}
    assert len(sent_sms()) == 2  # breach alerts are never held for quiet hours
    breach = result["breach"]
    assert 4.9 < breach["hours_to_notify"] < 5.5 and breach["all_reachable_notified_within_72h"] is True
    body = sent_mail()[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    for part in ("read a backup", "support messages", "phishing", "rotated every key", "privacy@example.com"):
        assert part in body


def test_optional_texts_wait_for_daytime_and_are_then_sent(pipeline: Pipeline) -> None:
    manifest = pipeline.manifest(["u1,,+14155550101,en,America/Los_Angeles,A"])
    notice = pipeline.create(
        "product", {"subject": "New", "body": "b", "sms_text": "Dark mode is here"}, manifest,
        channels={"channels": ["sms"]},
    )  # fmt: skip
    (dispatch,) = pipeline.receive("DispatchQueue")
    pipeline.dispatcher({"Records": [dispatch]}, LambdaContext())
    (batch,) = pipeline.receive("SendQueue")
    night = datetime(2026, 11, 26, 11, 0, tzinfo=UTC)  # 03:00 in Los Angeles
    base = wiring.sender()
    queued: list[tuple[dict[str, Any], int]] = []
    at_night = Sender(base.settings, base.notices, base.suppressions, base.pepper, base.key_ring, base.email, base.sms,
                      lambda message, delay: queued.append((message, delay)), now=lambda: night)  # fmt: skip
    from optout.notices.send import batch_from_message

    run_as("SenderFunction", at_night.process, batch_from_message(batch["body"]))
    assert sent_sms() == []
    held = pipeline.get(notice["id"])
    assert held["counts"]["recipients"] == {"deferred": 1}
    # The notice says until when: 08:00 in Los Angeles
    assert [datetime.fromisoformat(t) for t in held["deferred_until"]] == [datetime(2026, 11, 26, 16, 0, tzinfo=UTC)]
    # Re-enqueued with a delay (SQS allows 15 minutes a hop), not dropped
    ((later, delay),) = queued
    assert delay == 900 and later["entries"][0]["only"] == ["sms"]
    morning = Sender(base.settings, base.notices, base.suppressions, base.pepper, base.key_ring, base.email, base.sms,
                     base.enqueue, now=lambda: night + timedelta(hours=6))  # fmt: skip
    run_as("SenderFunction", morning.process, batch_from_message(json.dumps(later)))
    assert [body for _, body in sent_sms()] == ["Example Co: Dark mode is here. Reply STOP to opt out."]
    wiring.dispatcher().finalize(notice["id"], 0)
    result = pipeline.get(notice["id"])
    assert result["status"] == "complete"
    assert result["counts"]["recipients"] == {"deferred": 0, "sent": 1}


def test_idempotency_keys_and_validation(pipeline: Pipeline) -> None:
    manifest = pipeline.manifest(users(2))
    request = {"kind": "policy_change", "variables": POLICY, "manifest": manifest}
    status, first = pipeline.api("POST", "/admin/notices", request, {"Idempotency-Key": "k-1"})
    status2, again = pipeline.api("POST", "/admin/notices", request, {"Idempotency-Key": "k-1"})
    assert status == status2 == 202 and first["id"] == again["id"]
    changed = {**request, "variables": {**POLICY, "summary": "Something else."}}
    status, conflict = pipeline.api("POST", "/admin/notices", changed, {"Idempotency-Key": "k-1"})
    assert status == 409 and conflict["error"]["code"] == "idempotency_conflict"
    status, invalid = pipeline.api(
        "POST", "/admin/notices", {"kind": "breach_alert", "variables": {"nature": "x"}, "manifest": manifest}
    )
    assert status == 422
    paths = {f["path"] for f in invalid["error"]["fields"]}
    assert {"variables.discovered_at", "variables.data_categories", "variables.contact"} <= paths
    status, unknown = pipeline.api(
        "POST", "/admin/notices", {"kind": "telegram", "variables": {}, "manifest": manifest}
    )
    assert status == 422 and unknown["error"]["code"] == "validation_error"
    status, missing = pipeline.api(
        "GET", "/admin/notices/ntc_nope", route="/admin/notices/{notice_id}", params={"notice_id": "ntc_nope"}
    )
    assert status == 404 and missing["error"]["code"] == "not_found"


def test_a_recipient_mailed_now_and_texted_in_the_morning_is_counted_once(pipeline: Pipeline) -> None:
    # Given a product notice by email and SMS to someone in Los Angeles, sent at 03:00 their time
    manifest = pipeline.manifest(["u1,user1@example.com,+14155550101,en,America/Los_Angeles,A"])
    notice = pipeline.create(
        "product", {"subject": "New", "body": "b", "sms_text": "Dark mode is here"}, manifest,
        channels={"channels": ["email", "sms"]},
    )  # fmt: skip
    (dispatch,) = pipeline.receive("DispatchQueue")
    pipeline.dispatcher({"Records": [dispatch]}, LambdaContext())
    (batch,) = pipeline.receive("SendQueue")
    night = datetime(2026, 11, 26, 11, 0, tzinfo=UTC)
    base = wiring.sender()
    queued: list[tuple[dict[str, Any], int]] = []

    def sender_at(moment: datetime) -> Sender:
        return Sender(base.settings, base.notices, base.suppressions, base.pepper, base.key_ring, base.email,
                      base.sms, lambda message, delay: queued.append((message, delay)), now=lambda: moment)  # fmt: skip

    # When the mail goes out at once and the text waits for the morning
    from optout.notices.send import batch_from_message

    run_as("SenderFunction", sender_at(night).process, batch_from_message(batch["body"]))
    assert len(sent_mail()) == 1 and sent_sms() == []
    counts = pipeline.get(notice["id"])["counts"]
    assert counts["recipients"] == {"sent": 1}
    assert counts["by_channel"] == {"email": {"sent": 1}, "sms": {"deferred": 1}}
    ((later, _),) = queued
    assert later["entries"][0]["only"] == ["sms"] and later["entries"][0]["settled"] == ["sent"]
    result = run_as(
        "SenderFunction", sender_at(night + timedelta(hours=6)).process, batch_from_message(json.dumps(later))
    )
    # Then the recipient is counted once, as sent, and each channel once, as sent
    assert len(sent_sms()) == 1 and result.sent == 0  # reported by the batch that first sent them
    wiring.dispatcher().finalize(notice["id"], 0)
    final = pipeline.get(notice["id"])
    assert final["status"] == "complete" and final["total"] == 1
    assert final["counts"]["recipients"] == {"sent": 1}
    assert final["counts"]["by_channel"] == {"email": {"sent": 1}, "sms": {"deferred": 0, "sent": 1}}


def test_near_its_deadline_the_sender_starts_no_send_and_queues_the_rest(pipeline: Pipeline) -> None:
    # Given a batch of three, and a sender invocation with less time left than a send may take
    notice = pipeline.create("policy_change", POLICY, pipeline.manifest(users(3)))
    (dispatch,) = pipeline.receive("DispatchQueue")
    pipeline.dispatcher({"Records": [dispatch]}, LambdaContext())
    (batch,) = pipeline.receive("SendQueue")
    short = pipeline.sender_context()
    short.timeout_seconds = 10
    short.__post_init__()  # its deadline: 10 s from now, inside the sender's 15 s margin
    # When it takes the batch
    assert pipeline.sender({"Records": [batch]}, short) == {"batchItemFailures": []}
    # Then nothing was sent, and all three wait in a later batch, their attempts not counted
    assert sent_mail() == []
    (again,) = pipeline.receive("SendQueue")
    entries = json.loads(again["body"])["entries"]
    assert len(entries) == 3 and all(e.get("attempt", 0) == 0 for e in entries)
    # And an invocation with its full time sends them, each once
    assert pipeline.sender({"Records": [again]}, pipeline.sender_context()) == {"batchItemFailures": []}
    assert len(sent_mail()) == 3
    wiring.dispatcher().finalize(notice["id"], 0)
    recipients = pipeline.get(notice["id"])["counts"]["recipients"]
    assert {decision: n for decision, n in recipients.items() if n} == {"sent": 3}
