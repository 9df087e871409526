"""POST /admin/notices refuses header fields with control or line-separator characters: 422 naming the
field, before any notice exists (accepting it would make every recipient's send fail)."""

from __future__ import annotations

import json

import pytest

from tests.integration.notice_pipeline import POLICY, Pipeline


@pytest.mark.parametrize(
    ("kind", "variables", "field", "value"),
    [
        pytest.param("product", {"body": "Hello."}, "subject", "Hi\r\nBcc: everyone@example.com", id="subject-crlf"),
        pytest.param("marketing", {"body": "Hello."}, "subject", "Sale\u2028today", id="subject-line-separator"),
        pytest.param("marketing", {"body": "Hello."}, "subject", "Sale\x0btoday", id="subject-vt"),
        pytest.param("policy_change", POLICY, "policy_version", "2026\nBcc: x@example.com", id="policy-version-lf"),
    ],
)
def test_a_header_field_with_a_line_break_is_a_422_naming_it(
    pipeline: Pipeline, kind: str, variables: dict[str, str], field: str, value: str
) -> None:
    # Given a notice request whose header field holds a control or separator character
    manifest = pipeline.manifest(["u1,ana@example.com,,en,,Ana"])
    request = {"kind": kind, "variables": {**variables, field: value}, "manifest": manifest}
    # When it is posted
    status, body = pipeline.api("POST", "/admin/notices", request, {"Idempotency-Key": f"hdr-{kind}-{field}"})
    # Then it is refused with 422, naming that field and not echoing what it held
    assert status == 422, body
    assert body["error"]["code"] == "validation_error"
    assert [f["path"] for f in body["error"]["fields"]] == [f"variables.{field}"]
    assert "Bcc" not in json.dumps(body)
    # And the same request made one line is accepted under the same key: nothing was stored for it
    request["variables"][field] = value.splitlines()[0]
    status, created = pipeline.api("POST", "/admin/notices", request, {"Idempotency-Key": f"hdr-{kind}-{field}"})
    assert status == 202, created
