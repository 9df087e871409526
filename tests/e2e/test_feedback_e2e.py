"""Bounces, complaints and suppression admin on the real local stack."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e


def publish_ses_event(stack: RunningStack, event: dict) -> None:  # type: ignore[type-arg]
    stack.ses_event(event)


def show(stack: RunningStack, channel: str, address: str) -> dict:  # type: ignore[type-arg]
    return json.loads(stack.cli("suppression", "show", channel, address, "--json").stdout)


def wait_for(check, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the local stack did not process the event in time"
        time.sleep(0.2)


def send(stack: RunningStack, kind: str, manifest: Path, *args: str) -> dict:  # type: ignore[type-arg]
    return json.loads(stack.cli("notice", "send", kind, "--manifest", str(manifest), *args, "--wait", "--json").stdout)


BREACH = [
    "--discovered-at", "2026-11-26T06:00:00Z", "--nature", "A support backup was read.", "--data-categories",
    "email address", "--likely-consequences", "Phishing.", "--measures-taken", "Keys rotated.", "--contact",
    "privacy@example.com",
]  # fmt: skip
POLICY = [
    "--policy-version", "2026-12-01", "--effective-date", "2026-12-31", "--summary", "Logs kept 30 days.",
    "--policy-url", "https://example.com/privacy",
]  # fmt: skip


def test_a_bounce_makes_email_unreachable_and_sms_takes_over(local_stack, tmp_path: Path) -> None:
    bounce = {
        "eventType": "Bounce",
        "bounce": {"feedbackId": "e2e-bounce-1", "bounceType": "Permanent", "bounceSubType": "NoEmail",
                   "bouncedRecipients": [{"emailAddress": "e2e-bounce@example.com", "diagnosticCode": "smtp; 550"}],
                   "timestamp": "2026-11-26T10:00:00Z"},
        "mail": {"messageId": "ses-1", "headers": []},
    }  # fmt: skip
    publish_ses_event(local_stack, bounce)
    wait_for(lambda: show(local_stack, "email", "e2e-bounce@example.com")["blocked"] is not None)
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "recipient_id,email,phone\nb1,e2e-bounce@example.com,\nb2,e2e-bounce@example.com,+14155550301\n"
    )
    notice = send(
        local_stack, "policy-change", manifest, *POLICY, "--channels", "email,sms", "--mode", "first_available"
    )
    assert notice["counts"]["recipients"] == {"sent": 1, "unreachable": 1}
    # b2's email is b1's: a duplicate, dropped by the dispatcher; b2 is reached by text
    assert notice["counts"]["by_channel"]["email"] == {"duplicate": 1, "unreachable": 1}
    assert notice["counts"]["by_channel"]["sms"] == {"sent": 1, "unreachable": 1}  # b1 has no phone


def test_three_soft_bounces_in_a_week_block_the_address(local_stack) -> None:
    # Given an address whose mail bounces transiently, three times (the default limit) in the window
    for n in range(3):
        soft = {
            "eventType": "Bounce",
            "bounce": {"feedbackId": f"e2e-soft-{n}", "bounceType": "Transient", "bounceSubType": "MailboxFull",
                       "bouncedRecipients": [{"emailAddress": "e2e-soft@example.com"}],
                       "timestamp": "2026-11-26T10:00:00Z"},
            "mail": {"messageId": f"ses-soft-{n}", "headers": []},
        }  # fmt: skip
        publish_ses_event(local_stack, soft)
        if n < 2:  # each is read against the address's recent history before it counts
            wait_for(lambda n=n: len(show(local_stack, "email", "e2e-soft@example.com")["events"]) == n + 1)
    # Then the third blocks the channel, for transient bounces
    wait_for(lambda: show(local_stack, "email", "e2e-soft@example.com")["blocked"] is not None)
    assert show(local_stack, "email", "e2e-soft@example.com")["blocked"]["reason"] == "transient_bounces"


def test_a_complaint_stops_product_mail_but_not_a_breach_alert(local_stack, tmp_path: Path) -> None:
    complaint = {
        "notificationType": "Complaint",
        "complaint": {"feedbackId": "e2e-complaint-1", "complaintFeedbackType": "abuse",
                      "complainedRecipients": [{"emailAddress": "e2e-complaint@example.com"}]},
        "mail": {"messageId": "ses-2"},
    }  # fmt: skip
    publish_ses_event(local_stack, complaint)
    wait_for(lambda: show(local_stack, "email", "e2e-complaint@example.com")["all_optional"])
    manifest = tmp_path / "c.csv"
    manifest.write_text("recipient_id,email\nc1,e2e-complaint@example.com\n")
    body = tmp_path / "b.md"
    body.write_text("News.")
    product = send(local_stack, "product", manifest, "--subject", "News", "--body-file", str(body))
    assert product["counts"]["recipients"] == {"suppressed": 1}
    breach = send(local_stack, "breach-alert", manifest, *BREACH, "--channels", "email")
    assert breach["counts"]["recipients"] == {"sent": 1}


def test_admin_suppression_routes_reject_unsigned_requests(local_stack) -> None:
    for path in ("/admin/suppressions/lookup", "/admin/suppressions", "/admin/suppressions/remove"):
        response = requests.post(
            local_stack.api_url + path, json={"channel": "email", "address": "x@example.com"}, timeout=10
        )
        assert response.status_code == 403


def test_suppression_cli_add_remove_import_export_and_subject_export(local_stack, tmp_path: Path) -> None:
    added = json.loads(local_stack.cli("suppression", "add", "email", "e2e-admin@example.com", "--scope", "product",
                                       "--reason", "asked", "--json").stdout)  # fmt: skip
    assert added["topics"] == ["product"]
    local_stack.cli("suppression", "remove", "email", "e2e-admin@example.com", "--scope", "product", "--reason", "oops")
    assert show(local_stack, "email", "e2e-admin@example.com")["topics"] == []
    rows = tmp_path / "import.csv"
    rows.write_text("channel,address,scope,reason\nemail,e2e-imp@example.com,channel,bounce\nemail,bad,channel,x\n")
    imported = local_stack.cli("suppression", "import", str(rows), "--format", "csv")
    assert "2 rows read, 1 imported" in imported.stdout and "line 3:" in imported.stdout
    out = tmp_path / "export.csv"
    local_stack.cli("suppression", "export", "--out", str(out))
    text = out.read_text()
    assert text.startswith("address_key,channel,scopes") and "@" not in text
    subject = json.loads(local_stack.cli("subject", "export", "email", "e2e-admin@example.com").stdout)
    assert [e["action"] for e in subject["suppression"]["events"]] == ["opt_out", "opt_in"]
    assert subject["deliveries"] == []
