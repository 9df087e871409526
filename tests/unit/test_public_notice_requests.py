"""publish / until on POST /admin/notices: where they apply, and an unchanged idempotency hash without them."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from pydantic import ValidationError

from optout.notices.admin import request_hash
from optout.notices.model import NOTICE_REQUEST

POLICY: dict[str, Any] = {
    "kind": "policy_change",
    "manifest": "s3://bucket/m.csv",
    "variables": {
        "policy_version": "2027-01", "effective_date": "2027-01-31", "summary": "S.",
        "policy_url": "https://example.com/privacy",
    },
}  # fmt: skip
PRODUCT: dict[str, Any] = {
    "kind": "product",
    "manifest": "s3://bucket/m.csv",
    "variables": {"subject": "New", "body": "Dark mode."},
}


def test_publish_applies_to_the_kinds_posted_publicly_and_until_needs_it() -> None:
    assert NOTICE_REQUEST.validate_python({**POLICY, "publish": True}).publish is True
    until = NOTICE_REQUEST.validate_python({**POLICY, "publish": True, "until": "2027-03-01T00:00:00Z"}).until
    assert until is not None and until.tzinfo is not None
    for bad in (
        {**PRODUCT, "publish": True},
        {**POLICY, "until": "2027-03-01T00:00:00Z"},
        {**POLICY, "publish": True, "until": "2027-03-01T00:00:00"},  # no zone
    ):
        with pytest.raises(ValidationError):
            NOTICE_REQUEST.validate_python(bad)


def test_a_request_that_publishes_nothing_hashes_as_before_publish_existed() -> None:
    request = NOTICE_REQUEST.validate_python(POLICY)
    before = request.model_dump(mode="json", exclude={"publish", "until"})
    expected = hashlib.sha256(json.dumps(before, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert request_hash(request) == expected
    assert request_hash(NOTICE_REQUEST.validate_python({**POLICY, "publish": True})) != expected
