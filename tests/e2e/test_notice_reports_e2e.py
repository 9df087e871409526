"""The authority report and the visual report of a breach alert sent on the real local stack.

The visual report is opened in headless Chromium (the fixture of test_browser.py): its chart is
drawn, and the numbers it shows are those of ``notice report --json``.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import RunningStack
from tests.e2e.test_browser import browser  # noqa: F401 - the Chromium fixture, shared

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def breach(local_stack: RunningStack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A small breach alert: two reached (one by both channels), two unreachable, one bad row."""
    for channel, address in (("sms", "+14155550381"), ("email", "e2e-art33-r4@example.com")):
        local_stack.cli("suppression", "add", channel, address, "--scope", "channel", "--reason", "e2e: blocked")
    manifest = tmp_path_factory.mktemp("art33") / "affected.csv"
    manifest.write_text(
        "recipient_id,email,phone,locale,timezone,name\n"
        "e2e-art33-r1,e2e-art33-r1@example.com,+14155550380,en,,One\n"
        "e2e-art33-r2,e2e-art33-r2@example.com,,en,,Two\n"
        "e2e-art33-r3,,+14155550381,en,,Three\n"
        "e2e-art33-r4,e2e-art33-r4@example.com,,en,,Four\n"
        "e2e-art33-r5,not-an-address,,en,,Five\n"
    )
    discovered = (datetime.now(UTC) - timedelta(hours=6)).replace(microsecond=0).isoformat()
    result = local_stack.cli(
        "notice", "send", "breach-alert", "--manifest", str(manifest), "--discovered-at", discovered,
        "--nature", "A support backup was read by an unauthorised party.",
        "--data-categories", "email address,support messages", "--likely-consequences", "Targeted phishing.",
        "--measures-taken", "Credentials revoked.", "--contact", "privacy@example.com",
        "--subject-categories", "customers,trial users", "--subjects-concerned", "1200",
        "--records-concerned", "45000", "--measures-proposed", "An external audit.", "--wait", "--json",
    )  # fmt: skip
    notice: dict[str, Any] = json.loads(result.stdout)
    assert notice["status"] == "complete", notice
    assert notice["counts"]["recipients"] == {"sent": 2, "unreachable": 2}
    assert notice["variables"]["records_concerned"] == 45000
    return notice


def sections(markdown: str) -> dict[str, str]:
    parts = re.split(r"^## \d+\. (.+)$", markdown, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_the_art33_report_of_a_breach_alert_has_each_section_with_its_numbers(
    local_stack: RunningStack, breach: dict[str, Any], tmp_path: Path
) -> None:
    # When the authority report is asked for, to stdout
    markdown = local_stack.cli("notice", "report", breach["id"], "--format", "art33").stdout
    found = sections(markdown)
    # Then it has each element of Art. 33(3), then the timeline and the counts
    assert list(found) == [
        "Nature of the breach", "Data subjects concerned", "Personal data records concerned", "Contact point",
        "Likely consequences", "Measures taken and proposed", "Timeline", "Notifications by decision",
    ]  # fmt: skip
    assert "A support backup was read by an unauthorised party." in found["Nature of the breach"]
    subjects = found["Data subjects concerned"]
    assert (
        "- **Categories:** customers, trial users" in subjects and "- **Approximate number:** about 1,200" in subjects
    )
    assert "- **Recipients of this notice:** 4" in subjects and "- **Rows of the manifest refused:** 1" in subjects
    records = found["Personal data records concerned"]
    assert "- **Approximate number:** about 45,000" in records and "- email address\n- support messages" in records
    assert "- **Contact:** privacy@example.com" in found["Contact point"]
    assert "Targeted phishing." in found["Likely consequences"]
    assert "Credentials revoked." in found["Measures taken and proposed"]
    assert "An external audit." in found["Measures taken and proposed"]
    # The timeline's hours are the JSON's: discovered 6 hours ago, notified since
    report = breach["breach"]
    discovered = datetime.fromisoformat(report["discovered_at"])
    first = datetime.fromisoformat(report["first_sent_at"])
    timeline = found["Timeline"]
    assert (
        f"| First notification | {first:%Y-%m-%d %H:%M:%S} UTC | {(first - discovered).total_seconds() / 3600:.2f} |"
        in timeline
    )
    last = datetime.fromisoformat(report["last_sent_at"])
    assert f"| Last notification | {last:%Y-%m-%d %H:%M:%S} UTC | {report['hours_to_notify']:.2f} |" in timeline
    assert f"| 72-hour deadline | {discovered + timedelta(hours=72):%Y-%m-%d %H:%M:%S} UTC | 72.00 |" in timeline
    assert 5.9 < report["hours_to_notify"] < 6.5
    assert "Everyone reachable was notified within 72 hours" in timeline
    # The counts by decision, per recipient and channel, as the JSON has them
    counts = found["Notifications by decision"]
    email, sms = breach["counts"]["by_channel"]["email"], breach["counts"]["by_channel"]["sms"]
    assert (email, sms) == ({"sent": 2, "unreachable": 2}, {"sent": 1, "unreachable": 2})
    assert "| sent | 2 | 2 | 1 | notified" in counts and "| unreachable | 2 | 2 | 2 | no usable channel" in counts
    assert "| total | 4 | 4 | 3 |" in counts
    # The people: five listed, the fifth only on a refused row, so unreachable too
    assert breach["reach"]["people"] == 5 and breach["reach"]["unreachable"] == 3
    assert "- **People listed:** 5\n- **Reached:** 2\n- **Unreachable:** 3" in subjects
    assert "3 of the people listed could not be reached on any channel" in counts
    # And in HTML, to a file
    page = tmp_path / "art33.html"
    written = local_stack.cli("notice", "report", breach["id"], "--format", "art33", "--html", "--out", str(page))
    assert f"art33 report (HTML) written to {page}" in written.stdout
    html = page.read_text()
    assert html.startswith("<!doctype html>") and html.count("<h2>") == 8 and "about 45,000" in html


def test_the_art33_report_of_another_kind_of_notice_is_refused(local_stack: RunningStack, tmp_path: Path) -> None:
    manifest = tmp_path / "one.csv"
    manifest.write_text("recipient_id,email\ne2e-art33-p1,e2e-art33-p1@example.com\n")
    body = tmp_path / "body.md"
    body.write_text("Hello.")
    sent = local_stack.cli(
        "notice", "send", "product", "--manifest", str(manifest), "--subject", "Hi", "--body-file", str(body),
        "--wait", "--json",
    )  # fmt: skip
    notice_id = json.loads(sent.stdout)["id"]
    refused = local_stack.cli("notice", "report", notice_id, "--format", "art33", check=False)
    assert refused.returncode == 1 and refused.stdout == ""
    assert f"notice {notice_id} is a product: --format art33 is for breach alerts only" in refused.stderr


@pytest.mark.browser
def test_the_visual_report_draws_its_chart_in_chromium_with_the_json_numbers(
    local_stack: RunningStack,
    breach: dict[str, Any],
    browser,  # noqa: F811
    tmp_path: Path,
) -> None:
    # Given the visual report and the CSV evidence, written with the JSON in one run
    page_path, csv_path = tmp_path / "report.html", tmp_path / "deliveries.csv"
    result = local_stack.cli(
        "notice", "report", breach["id"], "--html", str(page_path), "--out", str(csv_path), "--json"
    )  # fmt: skip
    document = json.loads(result.stdout)
    assert document["report"] == {"path": str(csv_path), "rows": 7, "html": str(page_path)}
    counts = document["counts"]
    # When Chromium opens it, with no script and no network
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(page_path.as_uri())
    # Then nothing but the file itself was loaded
    assert requested == [page_path.as_uri()]
    # The counts shown are the JSON's, per decision, for recipients and each channel
    for decision in ("sent", "suppressed", "unreachable", "failed", "unknown"):
        row = page.locator(f'#counts tr[data-decision="{decision}"]')
        assert row.locator('[data-scope="recipients"]').inner_text() == str(counts["recipients"].get(decision, 0))
        for channel in ("email", "sms"):
            shown = row.locator(f'[data-scope="{channel}"]').inner_text()
            assert shown == str(counts["by_channel"][channel].get(decision, 0))
    # The chart is drawn: the SVG and its series take room, and end at the JSON's numbers
    chart = page.locator("svg#chart")
    box = chart.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 150
    finals = {}
    for series in page.locator("svg#chart polyline").all():
        line_box = series.bounding_box()
        assert line_box is not None and line_box["width"] > 0 and line_box["height"] > 0
        finals[series.get_attribute("data-series")] = int(series.get_attribute("data-final") or -1)
    assert finals == {"recipients": counts["recipients"]["sent"], "email": 2, "sms": 1}
    legend = page.locator('.legend [data-series="recipients"] strong').inner_text()
    assert legend == str(counts["recipients"]["sent"])
    deadline = page.locator("svg#chart #deadline").bounding_box()
    assert deadline is not None and deadline["height"] > 100  # the 72-hour line, across the plot
    recipients_box = page.locator('svg#chart polyline[data-series="recipients"]').bounding_box()
    assert recipients_box is not None and recipients_box["x"] < deadline["x"]  # notified before the deadline
    # The unreachable recipients and the bad row are listed
    assert (
        page.locator("#unreachable-total").inner_text().startswith(f"{counts['recipients']['unreachable']} recipients")
    )
    assert page.locator("#unreachable tbody tr td:first-child").all_inner_texts() == ["e2e-art33-r3", "e2e-art33-r4"]
    assert "sms: blocked" in page.locator("#unreachable").inner_text()
    assert page.locator("#unreachable-without-address").inner_text().startswith("And 1 listed only on refused rows")
    assert page.locator("#bad-rows-total").inner_text().startswith(f"{document['bad_rows']} row of the manifest")
    assert page.locator("#bad-rows tbody td").first.inner_text() == "6"
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    context.close()
