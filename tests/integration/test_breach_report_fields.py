"""The admin API's optional Art. 33(3) fields of a breach alert: validated at the door, then kept."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.notice_pipeline import BREACH, Pipeline

ART33 = {
    "subject_categories": ["customers", "trial users"],
    "subjects_concerned": 1200,
    "records_concerned": 45000,
    "measures_proposed": "An external audit of the backup system.",
}


def test_the_art33_fields_are_stored_with_the_notice(pipeline: Pipeline) -> None:
    manifest = pipeline.manifest(["u1,ana@example.com,,en,,Ana"])
    created = pipeline.create("breach_alert", {**BREACH, **ART33}, manifest)
    stored = pipeline.get(created["id"])
    assert {k: stored["variables"][k] for k in ART33} == ART33


def test_a_breach_alert_without_them_is_still_accepted(pipeline: Pipeline) -> None:
    manifest = pipeline.manifest(["u1,ana@example.com,,en,,Ana"])
    created = pipeline.create("breach_alert", BREACH, manifest)
    assert all(created["variables"][k] is None for k in ART33)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("subjects_concerned", 0),
        ("subjects_concerned", "1200"),  # a number, not text that looks like one
        ("records_concerned", True),
        ("records_concerned", -5),
        ("records_concerned", 10**14),
        ("subject_categories", []),
        ("subject_categories", ["x" * 201]),
        ("measures_proposed", ""),
        ("measures_proposed", "audit\x07"),
    ],
)
def test_a_bad_art33_field_is_a_422_naming_it_and_nothing_is_dispatched(
    pipeline: Pipeline, name: str, value: Any
) -> None:
    manifest = pipeline.manifest(["u1,ana@example.com,,en,,Ana"])
    request = {"kind": "breach_alert", "manifest": manifest, "variables": {**BREACH, **ART33, name: value}}
    status, body = pipeline.api("POST", "/admin/notices", request)
    assert status == 422, body
    assert [f["path"].split(".")[:2] for f in body["error"]["fields"]] == [["variables", name]]
    assert pipeline.receive("DispatchQueue") == []
