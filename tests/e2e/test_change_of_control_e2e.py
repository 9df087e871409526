"""``optout notice send change-of-control`` on the real local stack, with the flags users script against."""

from __future__ import annotations

import json
from email import message_from_string
from email.policy import default as email_policy
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def test_change_of_control_from_the_cli_reaches_email_and_sms(local_stack, tmp_path: Path) -> None:
    manifest = tmp_path / "control.csv"
    manifest.write_text(
        "recipient_id,email,phone,locale,timezone,name\n"
        "e2e-c1,e2e-c1@example.com,+14155550311,en,America/New_York,One\n"
    )
    result = local_stack.cli(
        "notice", "send", "change-of-control", "--manifest", str(manifest), "--new-controller", "Acme Holdings Ltd",
        "--effective-date", "2027-02-01", "--summary", "Acme Holdings becomes the controller of your data.",
        "--choices-url", "https://example.com/account/data", "--wait", "--json",
    )  # fmt: skip
    notice = json.loads(result.stdout)
    assert notice["kind"] == "change_of_control" and notice["topic"] == "policy"
    assert notice["status"] == "complete"
    assert notice["counts"]["by_channel"] == {"email": {"sent": 1}, "sms": {"sent": 1}}
    outbox = json.loads(local_stack.cli("outbox", "--json").stdout)
    mails = [message_from_string(m["raw"], policy=email_policy) for m in outbox["email"]]
    (mail,) = [m for m in mails if m["To"] == "e2e-c1@example.com"]
    assert mail["Subject"] == "Example Co: Acme Holdings Ltd will be responsible for your data"
    assert "https://example.com/account/data" in mail.get_body(("plain",)).get_content()
    texts = [m["body"] for m in outbox["sms"] if m["to"] == "+14155550311"]
    assert texts == [
        "Example Co: from 2027-02-01, Acme Holdings Ltd controls Example Co and your data. "
        "Your choices (export, deletion): https://example.com/account/data"
    ]
