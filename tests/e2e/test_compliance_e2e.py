"""`optout compliance report` and `optout notice list` on the real local stack: a one-click opt-out,
then a product notice it stops, read back through SigV4, the gateway and the admin API's own role."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e
ADDRESS = "e2e-honour@example.com"


def test_the_report_shows_each_opt_out_its_clock_and_the_sends_it_stopped(
    local_stack: RunningStack, tmp_path: Path
) -> None:
    # Given a one-click opt-out of product mail, then a product notice to that address and another
    since = (datetime.now(UTC) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S")
    url = local_stack.cli("link", "email", ADDRESS, "--topic", "product").stdout.strip()
    assert requests.post(url, data={"List-Unsubscribe": "One-Click"}, timeout=10).status_code == 200
    manifest = tmp_path / "honour.csv"
    manifest.write_text(f"recipient_id,email\nh1,{ADDRESS}\nh2,e2e-honour-other@example.com\n")
    body = tmp_path / "body.md"
    body.write_text("Dark mode is **here**.")
    notice = json.loads(local_stack.cli(
        "notice", "send", "product", "--manifest", str(manifest), "--subject", "New", "--body-file", str(body),
        "--wait", "--json",
    ).stdout)  # fmt: skip
    assert notice["counts"]["recipients"] == {"sent": 1, "suppressed": 1}
    key = json.loads(local_stack.cli("suppression", "show", "email", ADDRESS, "--json").stdout)["address_key"]

    # When the compliance report is made, as JSON, as Markdown and as an HTML file
    report = json.loads(local_stack.cli("compliance", "report", "--since", since, "--json").stdout)
    html = tmp_path / "compliance.html"
    text = local_stack.cli("compliance", "report", "--since", since, "--html", str(html)).stdout

    # Then her opt-out is there: one click, in force at once, the product mail it stopped, nothing sent after
    (entry,) = [e for e in report["entries"] if e["subject"] == key[:16]]
    assert (entry["source"], entry["scope"], entry["honour_seconds"]) == ("one_click", "product", 0)
    assert entry["sends_after"] == [] and entry["suppressed_after"] == 1
    assert report["sends_after_in_force"] == 0 and report["breaches"] == 0
    clocks = {c["clock"]: c for c in report["clocks"]}
    assert clocks["gmail_yahoo"]["opt_outs"] >= 1 and clocks["gmail_yahoo"]["max_seconds"] == 0
    assert set(clocks) == {"gmail_yahoo", "can_spam", "fcc_tcpa"}
    # the product notice is optional: the required notices' reach lists none of it
    assert notice["id"] not in [n["id"] for n in report["required_notices"]]
    assert "# Time to honour opt-outs" in text and "| gmail\\_yahoo |" in text and key[:16] in text
    page = html.read_text()
    assert page.startswith("<!doctype html>") and key[:16] in page and "<script" not in page
    for document in (json.dumps(report), text, page):
        assert ADDRESS not in document and "e2e-honour" not in document

    # And the notice list shows the notice, newest first, with its reach
    listed = json.loads(local_stack.cli("notice", "list", "--since", since, "--json").stdout)
    assert listed[0]["id"] == notice["id"] and listed[0]["reach"]["reached"] == 1
    table = local_stack.cli("notice", "list", "--since", since).stdout
    assert notice["id"] in table and "1/2 reached" in table
