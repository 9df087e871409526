"""IDNA2008 email domains through the pipeline: faß.de is its own address, and an opt-out recorded
under its old (IDNA2003) key is still honoured, read in the same BatchGetItem."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from optout.suppression.model import ConsentChange
from optout.suppression.store import DynamoSuppressionStore
from tests.integration.notice_pipeline import Pipeline, sent_mail, suppress

MARKETING = {"subject": "Sale", "body": "Everything half price."}


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The keys of every suppression read (one list a get_many: one BatchGetItem per 100 keys)."""
    calls: list[list[str]] = []
    original = DynamoSuppressionStore.get_many

    def recording(self: DynamoSuppressionStore, keys: Sequence[str]) -> Any:
        calls.append(list(keys))
        return original(self, keys)

    monkeypatch.setattr(DynamoSuppressionStore, "get_many", recording)
    return calls


def test_an_opt_out_under_the_legacy_key_still_suppresses_the_send(pipeline: Pipeline, reads: list[list[str]]) -> None:
    # Given user@faß.de opted out of marketing before IDNA2008, when its key was user@fass.de's
    suppress("email", "user@fass.de", [ConsentChange("opt_out", "marketing")], "one_click")
    rows = [
        "u1,user@faß.de,,en,,Sharp s",
        "u2,ana@example.com,,en,,Ana",
        "u3,bob@bücher.example,,en,,Bob",
        "u4,cy@ς.gr,,en,,Sigma never opted out",
    ]
    notice = pipeline.create("marketing", MARKETING, pipeline.manifest(rows))
    # When the marketing mail is sent
    pipeline.run(notice["id"])
    # Then faß.de is not mailed, the others are (ς.gr keeps its own domain)
    mailed = sorted(str(m["To"]) for m in sent_mail())
    assert mailed == ["ana@example.com", "bob@xn--bcher-kva.example", "cy@xn--3xa.gr"]
    result = pipeline.get(notice["id"])
    assert result["counts"]["recipients"] == {"sent": 3, "suppressed": 1}
    # And the sender read every state of the batch in one BatchGetItem: one key per address, and
    # one more for each of the two whose normalisation changed
    (keys,) = reads
    assert len(keys) == len(set(keys)) == 6


def test_ordinary_addresses_cost_no_extra_key(pipeline: Pipeline, reads: list[list[str]]) -> None:
    rows = [f"u{i},user{i}@example.com,,en,,U" for i in range(10)] + ["u10,bob@bücher.example,,en,,Bob"]
    notice = pipeline.create("marketing", MARKETING, pipeline.manifest(rows))
    pipeline.run(notice["id"])
    assert len(sent_mail()) == 11
    (keys,) = reads
    assert len(keys) == 11


def test_an_opt_out_of_fass_de_is_not_faß_de_s_when_recorded_under_the_new_key(pipeline: Pipeline) -> None:
    # Given user@faß.de opted out now (its own key): fass.de's owner is another person
    suppress("email", "user@faß.de", [ConsentChange("opt_out", "marketing")], "one_click")
    notice = pipeline.create("marketing", MARKETING, pipeline.manifest(["u1,user@fass.de,,en,,Fass"]))
    pipeline.run(notice["id"])
    # Then fass.de is still mailed, at its own domain
    assert [str(m["To"]) for m in sent_mail()] == ["user@fass.de"]


def test_a_dry_run_honours_the_legacy_key_too(pipeline: Pipeline) -> None:
    suppress("email", "user@fass.de", [ConsentChange("opt_out", "marketing")], "one_click")
    notice = pipeline.create("marketing", MARKETING, pipeline.manifest(["u1,user@faß.de,,en,,S"]), dry_run=True)
    pipeline.run(notice["id"])
    assert pipeline.get(notice["id"])["dry_run_result"]["recipients"] == {"suppressed": 1}


def test_invalid_idna2008_domains_are_refused_with_a_reason(pipeline: Pipeline) -> None:
    # At the API: 422, naming what is wrong, never echoing the address
    status, body = pipeline.api("POST", "/admin/suppressions/lookup", {"channel": "email", "address": "x@☃.net"})
    assert status == 422, body
    assert "IDNA2008" in body["error"]["message"] and "☃" not in str(body)
    # In a manifest: a bad row with the reason (or a warning, when the row has a usable phone)
    rows = ["u1,x@☃.net,,en,,Snowman", "u2,y@xn--zz.com,+14155550102,en,,Phone too"]
    notice = pipeline.create("product", MARKETING, pipeline.manifest(rows), dry_run=True)
    pipeline.run(notice["id"])
    result = pipeline.get(notice["id"])
    snowman = "invalid email: the domain has a character (U+2603) IDNA2008 does not allow in a host name"
    assert result["bad_row_samples"] == [{"line": 2, "reason": snowman}]
    assert result["warning_samples"] == [
        {
            "line": 3,
            "reason": "kept for phone only; invalid email: the domain has a label that is not valid IDNA2008 (xn--)",
        }
    ]
