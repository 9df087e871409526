"""Notice fields that become mail headers refuse control and line-separator characters (422, never a
notice accepted whose every recipient then fails)."""

from __future__ import annotations

import email
import email.policy
import json
import unicodedata
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from optout.notices.model import NOTICE_KINDS, NOTICE_REQUEST, TOPIC_OF, Kind, Notice, Recipient
from optout.notices.render import render_email
from optout.web.http import validation_error_body

NOW = datetime(2026, 11, 21, 14, 5, tzinfo=UTC)
MANIFEST = "s3://optout-manifests/2026/list.csv"
FREE = {"subject": "New: shared workspaces", "body": "You can now share a workspace."}
POLICY = {
    "policy_version": "2026.2",
    "effective_date": "2026-12-15",
    "summary": "We keep support chats for 12 months.",
    "policy_url": "https://example.com/privacy/2026-2",
}
# (kind, variables, the field that is a header or is formatted into one)
HEADER_FIELDS = [
    pytest.param("product", FREE, "subject", id="product-subject"),
    pytest.param("marketing", FREE, "subject", id="marketing-subject"),
    pytest.param("policy_change", POLICY, "policy_version", id="policy-version"),
]
FORBIDDEN = [
    pytest.param("\r\n", id="CRLF"),
    pytest.param("\r", id="CR"),
    pytest.param("\n", id="LF"),
    pytest.param("\u2028", id="LINE-SEPARATOR"),
    pytest.param("\u2029", id="PARAGRAPH-SEPARATOR"),
    pytest.param("\x0b", id="VT"),
    pytest.param("\x0c", id="FF"),
    pytest.param("\x85", id="NEL"),
    pytest.param("\t", id="TAB"),
    pytest.param("\x00", id="NUL"),
    pytest.param("\x1b", id="ESC"),
    pytest.param("\x7f", id="DEL"),
]


def request(kind: str, variables: dict[str, Any], **changes: str) -> dict[str, Any]:
    return {"kind": kind, "manifest": MANIFEST, "variables": {**variables, **changes}}


@pytest.mark.parametrize("char", FORBIDDEN)
@pytest.mark.parametrize("where", ["middle", "end", "start"])
@pytest.mark.parametrize(("kind", "variables", "field"), HEADER_FIELDS)
def test_header_fields_refuse_control_and_line_separators(
    kind: str, variables: dict[str, Any], field: str, where: str, char: str
) -> None:
    # Given a header field with a control or separator character anywhere (an edge one too:
    # stripping it silently would hide what the admin sent)
    value = {"middle": f"Hello{char}Bcc: all@example.com", "end": f"Hello{char}", "start": f"{char}Hello"}[where]
    # When the request is validated
    with pytest.raises(ValidationError) as caught:
        NOTICE_REQUEST.validate_python(request(kind, variables, **{field: value}))
    # Then it is refused for that field alone, and the answer names it and the character, never the text
    body = json.loads(validation_error_body(caught.value.errors(), NOTICE_KINDS))
    assert [f["path"] for f in body["error"]["fields"]] == [f"variables.{field}"]
    assert f"U+{ord(char[0]):04X}" in body["error"]["message"]
    assert "Bcc" not in json.dumps(body)


@pytest.mark.parametrize(("kind", "variables", "field"), HEADER_FIELDS)
def test_header_fields_keep_ordinary_text(kind: str, variables: dict[str, Any], field: str) -> None:
    value = '  Ünïcode, emoji 🎉, quotes "\'", colons: fine — and RTL שלום  '
    parsed = NOTICE_REQUEST.validate_python(request(kind, variables, **{field: value}))
    assert getattr(parsed.variables, field) == value.strip()


def test_a_body_keeps_its_line_breaks() -> None:
    # Only header fields are one line: the body is paragraphs
    parsed = NOTICE_REQUEST.validate_python(request("product", FREE, body="First.\r\n\r\nSecond.\u2028Third."))
    assert "\r\n\r\n" in parsed.variables.body  # type: ignore[union-attr]


_any_text = st.text(st.characters(codec="utf-8"), min_size=1, max_size=80)


@settings(max_examples=200, deadline=None)
@given(_any_text)
def test_any_subject_accepted_renders_as_one_header_line(subject: str) -> None:
    # Given any subject text
    try:
        parsed = NOTICE_REQUEST.validate_python(request("product", FREE, subject=subject))
    except ValidationError:
        # Then it is refused only for a character that cannot sit in a header line (or for its length)
        assert any(unicodedata.category(c) in ("Cc", "Zl", "Zp", "Cs") for c in subject) or not subject.strip()
        return
    # Or it renders into a mail whose Subject reads back exactly, on one logical line
    kind: Kind = "product"
    notice = Notice(
        id="ntc-1", kind=kind, topic=TOPIC_OF[kind], channels=["email"], mode="all",
        variables=parsed.variables.model_dump(mode="json"), manifest=MANIFEST,
        created_by="admin@example.com", created_at=NOW, updated_at=NOW,
    )  # fmt: skip
    raw = render_email(
        notice, Recipient(recipient_id="u1", email="ana@example.com"), "Example Co",
        "Example Co <notices@example.com>", "https://optout.example.test/p", "https://optout.example.test/u", NOW,
    )  # fmt: skip
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["Subject"] == subject.strip()
    assert message["Bcc"] is None and message.defects == []
