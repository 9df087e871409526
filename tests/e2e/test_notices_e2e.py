"""Notices on the real local stack: signed admin API, the pipeline, the mail it sends, and its links."""

from __future__ import annotations

import json
from email import message_from_string
from email.policy import default as email_policy
from pathlib import Path

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e


def mails_to(stack: RunningStack, address: str) -> list:  # type: ignore[type-arg]
    sent = json.loads(stack.cli("outbox", "--json").stdout)["email"]
    parsed = [message_from_string(m["raw"], policy=email_policy) for m in sent]
    return [m for m in parsed if m["To"] == address]


def test_product_notice_end_to_end_with_one_click_from_the_mail(local_stack, tmp_path: Path) -> None:
    manifest = tmp_path / "users.csv"
    manifest.write_text(
        "recipient_id,email,phone,locale,timezone,name\n"
        "e2e-n1,e2e-n1@example.com,,en,Europe/London,One\n"
        "e2e-n2,e2e-n2@example.com,,es,Europe/Madrid,Two\n"
        "e2e-n3,not-an-address,,en,,Three\n"
    )
    body = tmp_path / "body.md"
    body.write_text("Dark mode is here.\n\nTurn it on in settings.")
    # An opted-out user gets nothing
    link = local_stack.cli("link", "email", "e2e-n2@example.com", "--topic", "product").stdout.strip()
    assert requests.post(link, data={"List-Unsubscribe": "One-Click"}, timeout=10).status_code == 200
    result = local_stack.cli(
        "notice", "send", "product", "--manifest", str(manifest), "--subject", "New: dark mode",
        "--body-file", str(body), "--wait", "--json",
    )  # fmt: skip
    notice = json.loads(result.stdout)
    assert notice["status"] == "complete"
    assert notice["counts"]["recipients"] == {"sent": 1, "suppressed": 1}
    assert notice["bad_rows"] == 1 and notice["bad_row_samples"][0]["line"] == 4
    assert "[" in result.stderr and "complete" in result.stderr  # the progress bar
    assert mails_to(local_stack, "e2e-n2@example.com") == []
    (mail,) = mails_to(local_stack, "e2e-n1@example.com")
    assert mail["Subject"] == "New: dark mode"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = mail["List-Unsubscribe"].strip("<>")
    assert url.startswith(local_stack.api_url + "/unsubscribe?token=")
    assert "Dark mode is here." in mail.get_body(("plain",)).get_content()
    # The mail client's one-click POST to the List-Unsubscribe URL works, with no redirect
    response = requests.post(url, data={"List-Unsubscribe": "One-Click"}, allow_redirects=False, timeout=10)
    assert response.status_code == 200
    state = json.loads(local_stack.cli("suppression", "show", "email", "e2e-n1@example.com", "--json").stdout)
    assert state["topics"] == ["product"]
    # The evidence export
    report = tmp_path / "deliveries.csv"
    local_stack.cli("notice", "report", notice["id"], "--out", str(report))
    lines = report.read_text().splitlines()
    assert lines[0] == "recipient_id,address_key,channel,decision,reason,provider_message_id,at"
    assert len(lines) == 3 and any(",suppressed,opted out of product," in line for line in lines)


def test_text_that_ses_would_substitute_goes_out_as_written(local_stack, tmp_path: Path) -> None:
    # Given a notice whose own text holds SES's template braces
    manifest = tmp_path / "braces.csv"
    manifest.write_text("recipient_id,email\ne2e-b1,e2e-braces@example.com\n")
    body = tmp_path / "braces.md"
    body.write_text("Write \\{{name}} in your template to greet people.")  # \{{: the braces, not a variable
    # When it is sent (by SendEmail: a bulk template would substitute it)
    result = local_stack.cli(
        "notice", "send", "product", "--manifest", str(manifest), "--subject", "Templates {{101}}",
        "--body-file", str(body), "--wait", "--json",
    )  # fmt: skip
    assert json.loads(result.stdout)["counts"]["recipients"] == {"sent": 1}
    # Then the mail reads exactly as written, and still carries its own one-click headers
    (mail,) = mails_to(local_stack, "e2e-braces@example.com")
    assert mail["Subject"] == "Templates {{101}}"
    assert "Write \\{{name}} in your template" in mail.get_body(("plain",)).get_content()  # the Markdown source
    assert "Write {{name}} in your template" in mail.get_body(("html",)).get_content()
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_policy_change_dry_run_then_send(local_stack, tmp_path: Path) -> None:
    manifest = tmp_path / "policy.jsonl"
    manifest.write_text(
        '{"recipient_id": "e2e-p1", "email": "e2e-p1@example.com"}\n'
        '{"recipient_id": "e2e-p2", "phone": "+14155550299"}\n'
    )
    args = [
        "notice", "send", "policy-change", "--manifest", str(manifest), "--policy-version", "2026-12-01",
        "--effective-date", "2026-12-31", "--summary", "We keep logs for 30 days.",
        "--policy-url", "https://example.com/privacy", "--wait",
    ]  # fmt: skip
    dry = local_stack.cli(*args, "--dry-run")
    assert "would: sent 1, unreachable 1" in dry.stdout
    assert mails_to(local_stack, "e2e-p1@example.com") == []
    sent = local_stack.cli(*args, "--idempotency-key", "e2e-policy-1")
    assert "status      complete" in sent.stdout and "by recipient sent 1, unreachable 1" in sent.stdout
    again = local_stack.cli(*args, "--idempotency-key", "e2e-policy-1", "--json")
    assert json.loads(again.stdout)["id"] in sent.stdout
    (mail,) = mails_to(local_stack, "e2e-p1@example.com")
    assert "List-Unsubscribe" not in mail
    assert "/unsubscribe?token=" in mail.get_body(("plain",)).get_content()


def test_unsigned_and_wrongly_signed_admin_requests_get_403(local_stack) -> None:
    url = local_stack.api_url + "/admin/notices"
    body = json.dumps({"kind": "product"}).encode()
    assert requests.post(url, data=body, timeout=10).status_code == 403
    for key, secret, region in [("testing", "wrong", "us-east-1"), ("other", "testing", "us-east-1"),
                                ("testing", "testing", "eu-west-1")]:  # fmt: skip
        request = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
        SigV4Auth(Credentials(key, secret), "execute-api", region).add_auth(request)
        assert requests.post(url, data=body, headers=dict(request.headers.items()), timeout=10).status_code == 403
    assert requests.get(local_stack.api_url + "/admin/notices/x", timeout=10).status_code == 403
    # Correctly signed, the same route answers (here: 422 for an incomplete request)
    request = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials("testing", "testing"), "execute-api", "us-east-1").add_auth(request)
    assert requests.post(url, data=body, headers=dict(request.headers.items()), timeout=10).status_code == 422
