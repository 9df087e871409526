"""Change-of-control notices and Markdown bodies: what notices say, through the admin API, dispatcher and sender."""

from __future__ import annotations

import pytest

from optout import wiring
from optout.suppression.model import ConsentChange
from tests.conftest import sent_sms
from tests.integration.notice_pipeline import Pipeline, sent_mail, suppress

CHANGE = {
    "new_controller": "Acme Holdings Ltd",
    "effective_date": "2027-02-01",
    "summary": "Acme Holdings becomes the controller of your account data; the service stays the same.",
    "choices_url": "https://example.com/account/data",
}


def test_change_of_control_tells_everyone_by_email_and_sms_with_their_choices(pipeline: Pipeline) -> None:
    # Given three people: one who opted out of everything optional, one who reads Spanish
    suppress("email", "ana@example.com", [ConsentChange("opt_out", "optional")])
    manifest = pipeline.manifest(
        [
            "u1,ana@example.com,+14155550101,en,America/New_York,Ana",
            "u2,bea@example.com,,es,Europe/Madrid,Bea",
            "u3,,+14155550103,en,America/New_York,Cy",
        ]
    )
    # When the change of control is sent with its defaults
    notice = pipeline.create("change_of_control", CHANGE, manifest)
    assert notice["topic"] == "policy" and notice["channels"] == ["email", "sms"]
    pipeline.run(notice["id"])
    # Then everyone was told on every channel they have: an optional opt-out blocks no required notice
    result = pipeline.get(notice["id"])
    assert result["status"] == "complete"
    assert result["counts"]["by_channel"]["email"].get("sent") == 2
    assert result["counts"]["by_channel"]["sms"].get("sent") == 2
    mails = {m["To"]: m for m in sent_mail()}
    assert set(mails) == {"ana@example.com", "bea@example.com"}
    ana = mails["ana@example.com"]
    assert ana["Subject"] == "Example Co: Acme Holdings Ltd will be responsible for your data"
    assert "List-Unsubscribe" not in ana  # required: nothing to unsubscribe from
    text = ana.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    # who, when, what changes, and the choices: export and deletion, and the preference page
    assert "From 2027-02-01, Acme Holdings Ltd takes control of Example Co" in text
    assert CHANGE["summary"] in text
    assert "download a copy of your data, or ask us to delete it" in text
    assert "https://example.com/account/data" in text and "/unsubscribe?token=" in text
    bea = mails["bea@example.com"]
    assert bea["Subject"] == "Example Co: Acme Holdings Ltd será responsable de sus datos"
    texts = dict(sent_sms())
    assert set(texts) == {"+14155550101", "+14155550103"}
    assert texts["+14155550103"] == (
        "Example Co: from 2027-02-01, Acme Holdings Ltd controls Example Co and your data. "
        "Your choices (export, deletion): https://example.com/account/data"
    )


def test_a_change_of_control_needs_who_when_what_and_where_to_choose(pipeline: Pipeline) -> None:
    manifest = pipeline.manifest(["u1,ana@example.com,,en,,Ana"])
    for missing in CHANGE:
        variables = {k: v for k, v in CHANGE.items() if k != missing}
        status, body = pipeline.api(
            "POST", "/admin/notices", {"kind": "change_of_control", "variables": variables, "manifest": manifest}
        )
        assert status == 422, (missing, body)
        assert missing in str(body), body
    status, body = pipeline.api(
        "POST",
        "/admin/notices",
        {"kind": "change_of_control", "variables": {**CHANGE, "choices_url": "not a url"}, "manifest": manifest},
    )
    assert status == 422 and "choices_url" in str(body)
    status, body = pipeline.api(
        "POST",
        "/admin/notices",
        {"kind": "change_of_control", "variables": {**CHANGE, "new_controller": "Acme\nBcc: x@example.com"},
         "manifest": manifest},
    )  # fmt: skip
    assert status == 422 and "new_controller" in str(body)


def test_a_markdown_product_mail_greets_each_recipient_by_their_manifest_name(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given names that HTML must escape, and one that is not ASCII
    manifest = pipeline.manifest(
        ["u1,ana@example.com,,en,,Ana", "u2,bo@example.com,,en,,Bo <b>&</b>", "u3,zoe@example.com,,es,,Zoë"]
    )
    body = "Hi {{ name }},\n\n**Dark mode** is here. <script>alert(1)</script>"
    # When it is sent in bulk (one template per language, each name as SES replacement data)
    notice = pipeline.create("product", {"subject": "Dark mode", "body": body}, manifest)
    client = wiring.sender().email().client
    real, bulk = client.send_bulk_email, []
    monkeypatch.setattr(client, "send_bulk_email", lambda **r: bulk.append(r["BulkEmailEntries"]) or real(**r))
    pipeline.run(notice["id"])
    assert sorted(len(entries) for entries in bulk) == [1, 2]  # by language: en (2), es (1)
    assert pipeline.get(notice["id"])["counts"]["recipients"] == {"sent": 3}
    mails = {m["To"]: m for m in sent_mail()}
    parts = {
        to: (m.get_body(("plain",)).get_content(), m.get_body(("html",)).get_content())  # type: ignore[union-attr]
        for to, m in mails.items()
    }
    # Then each text part is the Markdown source with their name, each HTML part the rendered body
    assert "Hi Bo <b>&</b>,\r\n\r\n**Dark mode** is here." in parts["bo@example.com"][0]
    assert "<p>Hi Bo &lt;b&gt;&amp;&lt;/b&gt;,</p>" in parts["bo@example.com"][1]
    assert "<p>Hi Ana,</p>" in parts["ana@example.com"][1] and "Hi Zoë," in parts["zoe@example.com"][0]
    assert all("<strong>Dark mode</strong>" in h and "<script>" not in h for _, h in parts.values())
