"""Product and marketing bodies: Markdown rendered safe, with the manifest's {{ name }}."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default as email_policy

import pytest
from pydantic import ValidationError

from optout.notices import markdown
from optout.notices.model import FreeContentVariables, Notice, Recipient
from optout.notices.render import bulk_template, render_email

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def notice(body: str) -> Notice:
    return Notice(
        id="ntc_md", kind="product", topic="product", channels=["email"], mode="all",
        variables={"subject": "News", "body": body}, manifest="s3://b/m.csv", created_by="t",
        created_at=NOW, updated_at=NOW,
    )  # fmt: skip


def mail(body: str, name: str | None, address: str = "ana@example.com") -> tuple[str, str]:
    raw = render_email(
        notice(body), Recipient(recipient_id="u1", email=address, name=name), "Example Co", "notices@example.com",
        "https://x.test/unsubscribe?token=p", "https://x.test/unsubscribe?token=u", NOW,
    )  # fmt: skip
    message = message_from_bytes(raw, policy=email_policy)
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    return text.replace("\r\n", "\n"), html.replace("\r\n", "\n")


def test_markdown_becomes_html_and_the_text_part_is_its_source() -> None:
    body = "Hi {{ name }},\n\n**Dark mode** is here: see [the guide](https://example.com/dark).\n\n- one\n- two"
    text, html = mail(body, "Ana")
    assert "Hi Ana,\n\n**Dark mode** is here: see [the guide](https://example.com/dark)." in text
    assert "<p>Hi Ana,</p>" in html and "<strong>Dark mode</strong>" in html
    assert '<a href="https://example.com/dark">the guide</a>' in html and "<li>two</li>" in html


def test_raw_html_and_script_links_never_become_markup() -> None:
    body = (
        'Hi <script>alert(1)</script> <img src=x onerror="alert(2)">\n\n'
        "[click](javascript:alert(3)) [d](data:text/html,x)"
    )
    _, html = mail(body, "Ana")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<img" not in html and "&lt;img src=x" in html  # shown as text, never an element
    assert 'href="javascript:' not in html and 'href="data:' not in html


@pytest.mark.parametrize("name", ["Zoë <b>&</b>", "O'Brien & <i>Co</i>", None])
def test_names_are_put_in_as_text_and_escaped_in_html(name: str | None) -> None:
    text, html = mail("Hello {{name}}!", name)
    assert f"Hello {name or ''}!" in text
    assert "<b>" not in html and "<i>" not in html
    if name:
        assert "Hello " + name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in html.replace(
            "&#x27;", "'"
        )


def test_the_bulk_template_carries_the_name_as_ses_variables_escaped_for_html() -> None:
    template = bulk_template(notice("Hi {{ name }}, *welcome*."), "en", "Example Co", optional=True)
    assert template is not None and template.personal
    assert "Hi {{name}}, *welcome*." in template.text
    assert "<p>Hi {{name_html}}, <em>welcome</em>.</p>" in template.html
    plain = bulk_template(notice("No variables here."), "en", "Example Co", optional=True)
    assert plain is not None and not plain.personal


def test_unknown_variables_are_refused_when_the_notice_is_created() -> None:
    with pytest.raises(ValidationError, match=r"unknown variable \{\{ nmae \}\}"):
        FreeContentVariables(subject="s", body="Hi {{ nmae }}")
    with pytest.raises(ValidationError, match=r"\{\{ 101 \}\}"):
        FreeContentVariables(subject="s", body="Price {{101}}")
    assert FreeContentVariables(subject="s", body="Write \\{{name}} literally, {{ name }}.").body
    assert markdown.unknown_variables("{{name}} {{x}} {{ y }} {{x}}") == ["x", "y"]
