"""The authority report (Art. 33) and the visual report, rendered from notices built here."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from optout.notices.model import NOTICE_REQUEST, BadRow, Counts, DeliveryRecord, Notice, People
from optout_local import notice_reports
from optout_local.notice_cli import notice as notice_group

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
DISCOVERED = NOW - timedelta(hours=30)
EVIL = '<script>alert("x")</script>'


def breach_notice(**changes: Any) -> dict[str, Any]:
    variables = {
        "discovered_at": DISCOVERED.isoformat(),
        "nature": "An unauthorised party read a backup of our *support* database.\n\n# Not a heading",
        "data_categories": ["email address", "support messages"],
        "likely_consequences": "Phishing that quotes your requests.",
        "measures_taken": "We revoked the leaked credentials.",
        "contact": "privacy@example.com",
        "subject_categories": ["customers", "trial users"],
        "subjects_concerned": 1200,
        "records_concerned": 45000,
        "measures_proposed": "An external audit by 2027-01-31.",
    }
    variables.update(changes.pop("variables", {}))
    fields: dict[str, Any] = {
        "id": "ntc_20261126T090000_abcdef012345",
        "kind": "breach_alert",
        "topic": "security",
        "channels": ["email", "sms"],
        "mode": "all",
        "variables": variables,
        "manifest": "s3://bucket/key.csv",
        "status": "complete",
        "created_by": "arn:aws:iam::123456789012:user/admin",
        "created_at": DISCOVERED + timedelta(hours=4),
        "updated_at": DISCOVERED + timedelta(hours=5),
        "total": 6,
        "rows_read": 7,
        "bad_rows": 1,
        "bad_row_samples": [BadRow(line=8, reason=f"invalid email {EVIL}")],
        "counts": Counts(
            by_channel={"email": {"sent": 3, "unreachable": 2, "suppressed": 1}, "sms": {"sent": 2, "unreachable": 2}},
            recipients={"sent": 4, "unreachable": 2},
        ),
        "discovered_at": DISCOVERED,
        "first_sent_at": DISCOVERED + timedelta(hours=5),
        "last_sent_at": DISCOVERED + timedelta(hours=5, minutes=30),
    }
    notice = Notice(**{**fields, **changes})
    return notice.public()


def rows() -> list[dict[str, Any]]:
    """The notice's delivery rows, as /deliveries pages them: sorted by recipient, then channel."""
    at = DISCOVERED + timedelta(hours=5)
    made = [
        ("u1", "email", "sent", None, at),
        ("u1", "sms", "sent", None, at + timedelta(minutes=30)),  # u1 notified once, at its first send
        ("u2", "email", "sent", None, at + timedelta(minutes=10)),
        ("u3", "email", "suppressed", "blocked: bounce", at),
        ("u3", "sms", "sent", None, at + timedelta(minutes=20)),
        ("u4", "email", "sent", None, at + timedelta(minutes=5)),
        ("u4", "sms", "unreachable", "no address", at),  # not an unreachable recipient: email reached them
        ("u5", "email", "unreachable", "no address", at),
        ("u5", "sms", "unreachable", "blocked: STOP", at),
        (f"u6{EVIL}", "email", "unreachable", "no address", at),
    ]
    return [
        DeliveryRecord(
            notice_id="ntc_x", recipient_id=r, channel=c, decision=d, reason=why, address_key="k" * 8, at=when
        ).model_dump(mode="json")
        for r, c, d, why, when in made
    ]


def sections(markdown: str) -> dict[str, str]:
    parts = re.split(r"^## \d+\. (.+)$", markdown, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_the_art33_markdown_has_each_section_of_art_33_3_with_the_numbers() -> None:
    # Given a finished breach alert, reported 30 hours after discovery
    markdown = notice_reports.art33_markdown(breach_notice(), NOW)
    found = sections(markdown)
    # Then every element Art. 33(3) names has its section, in order, with what the notice stores
    assert list(found) == [
        "Nature of the breach",
        "Data subjects concerned",
        "Personal data records concerned",
        "Contact point",
        "Likely consequences",
        "Measures taken and proposed",
        "Timeline",
        "Notifications by decision",
    ]
    assert markdown.startswith("# Personal data breach notification (GDPR Art. 33)\n")
    assert "read a backup of our \\*support\\* database" in found["Nature of the breach"]
    assert "\n\\# Not a heading" in found["Nature of the breach"]  # admin text never becomes structure
    subjects = found["Data subjects concerned"]
    assert "- **Categories:** customers, trial users" in subjects
    assert "- **Approximate number:** about 1,200" in subjects
    assert "- **Recipients of this notice:** 6" in subjects and "refused:** 1" in subjects
    records = found["Personal data records concerned"]
    assert "- email address\n- support messages" in records and "- **Approximate number:** about 45,000" in records
    assert "privacy@example.com" in found["Contact point"]
    assert "Phishing that quotes your requests." in found["Likely consequences"]
    measures = found["Measures taken and proposed"]
    assert measures.index("### Taken") < measures.index("revoked") < measures.index("### Proposed")
    assert "An external audit by 2027-01-31." in measures
    # The timeline: hours after discovery, against 72
    timeline = found["Timeline"]
    assert "| Breach discovered | 2026-11-26 06:00:00 UTC | 0.00 |" in timeline
    assert "| First notification | 2026-11-26 11:00:00 UTC | 5.00 |" in timeline
    assert "| Last notification | 2026-11-26 11:30:00 UTC | 5.50 |" in timeline
    assert "| 72-hour deadline | 2026-11-29 06:00:00 UTC | 72.00 |" in timeline
    assert "| This report | 2026-11-27 12:00:00 UTC | 30.00 |" in timeline
    assert "Everyone reachable was notified within 72 hours: the last in 5.50 hours." in timeline
    # The counts by decision: recipients and each channel, with a total
    counts = found["Notifications by decision"]
    assert "| Decision | Recipients | email | sms | Meaning |" in counts
    assert "| sent | 4 | 3 | 2 | notified (accepted by the provider) |" in counts
    assert "| unreachable | 2 | 2 | 2 |" in counts and "| suppressed | 0 | 1 | 0 |" in counts
    assert "| total | 6 | 6 | 4 |" in counts
    assert "2 of the people listed could not be reached on any channel" in counts
    assert "past 72 hours" not in markdown  # reported in time: no delay to explain


def test_the_art33_report_defaults_to_the_recipients_and_says_what_is_not_stated() -> None:
    # Given a breach alert sent with only what Art. 34 needs, reported after 72 hours
    bare = breach_notice(variables={"subject_categories": None, "subjects_concerned": None,
                                    "records_concerned": None, "measures_proposed": None})  # fmt: skip
    markdown = notice_reports.art33_markdown(bare, DISCOVERED + timedelta(hours=80))
    found = sections(markdown)
    assert "- **Categories:** not stated" in found["Data subjects concerned"]
    assert "- **Approximate number:** 6 (the recipients of this notice)" in found["Data subjects concerned"]
    assert "- **Approximate number:** not stated" in found["Personal data records concerned"]
    assert "None stated beyond the measures taken." in found["Measures taken and proposed"]
    assert "80.00 hours after the breach was discovered, past 72 hours" in markdown


def test_an_unfinished_or_late_notification_says_so() -> None:
    late = breach_notice(status="sending", last_sent_at=DISCOVERED + timedelta(hours=75))
    markdown = notice_reports.art33_markdown(late, DISCOVERED + timedelta(hours=76))
    assert "The notice is still sending: the numbers below are not final." in markdown
    assert "Not everyone reachable was notified within 72 hours: the last in 75.00 hours." in markdown


def test_markdown_escaping_keeps_text_literal() -> None:
    assert notice_reports.md_escape("a*b_c [x](y) <b> & | `z` ~") == (
        "a\\*b\\_c \\[x\\](y) \\<b\\> \\& \\| \\`z\\` \\~"
    )
    assert notice_reports.md_escape("1. one\n- two\n  # three\n> four") == ("1\\. one\n\\- two\n  \\# three\n\\> four")


def test_the_art33_report_refuses_a_notice_that_is_no_breach_alert() -> None:
    policy = breach_notice()
    policy["kind"] = "policy_change"
    with pytest.raises(notice_reports.NotABreachAlert, match="policy_change: --format art33 is for breach alerts"):
        notice_reports.art33_markdown(policy, NOW)


class Collect(HTMLParser):
    """Every tag with its attributes, and whether anything would load from elsewhere or run."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def parsed(page: str) -> Collect:
    collect = Collect()
    collect.feed(page)
    return collect


def collected(rows: list[dict[str, Any]]) -> notice_reports.Deliveries:
    """The rows read as ``optout notice report --format visual`` reads its pages' items."""
    deliveries = notice_reports.Deliveries()
    for row in rows:
        deliveries.add(row)
    return deliveries.finish()


def test_the_art33_html_is_escaped_and_self_contained() -> None:
    page = notice_reports.art33_html(breach_notice(variables={"nature": f"Leak {EVIL}"}), NOW)
    assert "<script>" not in page and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    tags = parsed(page).tags
    assert [a for _, a in tags if a.get("src") or a.get("href")] == []
    assert sum(1 for t, _ in tags if t == "h2") == 8 and "<td>unreachable</td><td>2</td>" in page


def test_the_visual_report_shows_counts_chart_unreachable_and_bad_rows() -> None:
    # Given a breach alert and its delivery rows
    document = breach_notice()
    deliveries = collected(rows())
    # Then the rows give one notification per recipient sent on any channel (recipients.sent of the JSON)
    assert len(deliveries.notified) == document["counts"]["recipients"]["sent"] == 4
    assert deliveries.notified[0] == DISCOVERED + timedelta(hours=5)  # u1's first send, not its second
    assert {c: len(t) for c, t in deliveries.sent.items()} == {"email": 3, "sms": 2}
    assert deliveries.unreachable_total == document["counts"]["recipients"]["unreachable"] == 2
    assert [rid for rid, _ in deliveries.unreachable] == ["u5", f"u6{EVIL}"]
    page = notice_reports.visual_html(document, deliveries, NOW)
    collect = parsed(page)
    # Nothing is loaded from elsewhere and nothing runs: no script, no src, no link
    assert not [t for t, a in collect.tags if t in ("script", "link", "img", "iframe") or a.get("src")]
    assert "<script>" not in page and "u6&lt;script&gt;" in page and "invalid email &lt;script&gt;" in page
    # The counts table has each decision's number per scope, as in the JSON
    for decision in ("sent", "unreachable", "suppressed"):
        row = re.search(rf'<tr data-decision="{decision}">(.*?)</tr>', page, re.S)
        assert row is not None
        cells = dict(re.findall(r'data-scope="(\w+)">([\d,]+)<', row.group(1)))
        assert cells == {
            "recipients": str(document["counts"]["recipients"].get(decision, 0)),
            "email": str(document["counts"]["by_channel"]["email"].get(decision, 0)),
            "sms": str(document["counts"]["by_channel"]["sms"].get(decision, 0)),
        }
    # The chart: one series per recipients and channel, ending at their counts, and the deadline
    series = {a["data-series"]: a for t, a in collect.tags if t == "polyline"}
    assert {k: v["data-final"] for k, v in series.items()} == {"recipients": "4", "email": "3", "sms": "2"}
    points = [tuple(map(float, p.split(","))) for p in (series["recipients"]["points"] or "").split()]
    ys = [y for _, y in points]
    assert ys == sorted(ys, reverse=True)  # cumulative: never goes down (SVG's y grows downwards)
    assert min(ys) < max(ys)
    deadline = next(a for t, a in collect.tags if a.get("id") == "deadline")
    # The deadline (72 h) lies right of every notification (5 to 5.5 h after discovery)
    assert float(deadline["x1"] or 0) > max(x for x, _ in points)
    assert "72-hour deadline (2026-11-29 06:00:00 UTC)" in page and "hours after discovery" in page
    marker = next(a for t, a in collect.tags if a.get("id") == "last-notified")
    assert (float(marker["cx"] or 0), float(marker["cy"] or 0)) == next(p for p in points if p[1] == min(ys))
    assert "4 notified, the last at 5.33 hours" in page  # u3, first told at 5:20 (u1's text at 5:30 came second)
    assert re.search(r'id="unreachable-total">2 recipients could', page)
    assert re.search(r'id="bad-rows-total">1 row of', page) and '<td class="n">8</td>' in page


def test_a_large_notice_is_drawn_with_a_bounded_number_of_points() -> None:
    start = DISCOVERED + timedelta(hours=1)
    many = [
        {"recipient_id": f"r{i:06d}", "channel": "email", "decision": "sent", "at": f"{start + timedelta(seconds=i)}"}
        for i in range(20_000)
    ]
    document = breach_notice(
        total=20_000, counts=Counts(recipients={"sent": 20_000}, by_channel={"email": {"sent": 20_000}})
    )
    chart = notice_reports.chart(document, collected(many), NOW)
    recipients = chart.series[0]
    assert recipients.final == 20_000
    assert len(recipients.points.split()) <= 2 * notice_reports.CHART_STEPS + 2
    # and it still ends at the top: the last point's height is the 20,000th recipient's
    assert float(recipients.points.split()[-1].split(",")[1]) == chart.target_y


def test_a_notice_without_a_deadline_is_drawn_against_its_creation() -> None:
    document = breach_notice()
    document.update(kind="product", topic="product", breach=None, discovered_at=None)
    chart = notice_reports.chart(document, collected(rows()), NOW)
    assert chart.deadline_x is None and chart.x_label.startswith("minutes after the notice was created")


def test_the_new_breach_fields_are_validated() -> None:
    base = {"kind": "breach_alert", "manifest": "s3://bucket/k.csv", "variables": breach_notice()["variables"]}
    assert NOTICE_REQUEST.validate_python(base).variables.records_concerned == 45000  # type: ignore[union-attr]
    for name, value in [("subjects_concerned", 0), ("records_concerned", "many"), ("records_concerned", True),
                        ("subject_categories", []), ("measures_proposed", "")]:  # fmt: skip
        with pytest.raises(ValidationError) as error:
            NOTICE_REQUEST.validate_python({**base, "variables": {**base["variables"], name: value}})
        assert error.value.errors()[0]["loc"][-1] == name or name in str(error.value.errors()[0]["loc"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--html"], "--html needs a FILE for the visual report"),
        ([], "give --out FILE for the CSV evidence, --html FILE for the visual report, or both"),
        (["--format", "art33", "--decision", "sent"], "--decision filters the CSV evidence"),
        (["--format", "art33", "--html", "a.html", "--out", "b.html"], "--html FILE and --out name two files"),
        (["--format", "art33", "--json"], "--json prints the notice: write the art33 report to a file with --out"),
    ],
)
def test_report_refuses_options_that_do_not_go_together(args: list[str], message: str) -> None:
    # Refused before any request: no stack is needed to say so
    result = CliRunner().invoke(notice_group, ["report", "ntc_x", *args])
    assert result.exit_code == 2
    assert message in result.output


class _Admin:
    """The admin API as the CLI sees it: the notice, and its deliveries in two pages."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def ok(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        if path.endswith("/deliveries"):
            start = 0 if "next_token" not in kwargs["query"] else 5
            return {"items": rows()[start : start + 5], "next_token": None if start else "5"}
        return self.document


class _Target:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def admin(self) -> _Admin:
        return _Admin(self.document)


def test_the_cli_writes_the_art33_report_to_stdout_or_a_file(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("optout_local.notice_cli._target", lambda *args: _Target(breach_notice()))
    shown = CliRunner().invoke(notice_group, ["report", "ntc_x", "--format", "art33"])
    assert shown.exit_code == 0, shown.output
    assert len(sections(shown.stdout)) == 8 and "| sent | 4 | 3 | 2 |" in shown.stdout
    out = tmp_path / "art33.html"
    written = CliRunner().invoke(notice_group, ["report", "ntc_x", "--format", "art33", "--html", str(out)])
    assert written.exit_code == 0 and f"art33 report (HTML) written to {out}" in written.stdout
    assert out.read_text().startswith("<!doctype html>")
    md = tmp_path / "art33.md"
    quiet = CliRunner().invoke(notice_group, ["report", "ntc_x", "--format", "art33", "--out", str(md), "--json"])
    assert json.loads(quiet.stdout)["report"] == {"path": str(md), "format": "art33", "html": False}
    assert md.read_text().startswith("# Personal data breach notification (GDPR Art. 33)\n")


def test_the_cli_refuses_the_art33_report_of_another_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    product = breach_notice()
    product.update(kind="product", topic="product")
    monkeypatch.setattr("optout_local.notice_cli._target", lambda *args: _Target(product))
    refused = CliRunner().invoke(notice_group, ["report", product["id"], "--format", "art33"])
    assert refused.exit_code == 1 and refused.stdout == ""
    assert f"notice {product['id']} is a product: --format art33 is for breach alerts only" in refused.stderr


def test_the_cli_writes_the_visual_report_from_every_page_beside_the_csv(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("optout_local.notice_cli._target", lambda *args: _Target(breach_notice()))
    page, out = tmp_path / "report.html", tmp_path / "sent.csv"
    args = ["report", "ntc_x", "--html", str(page), "--out", str(out), "--decision", "sent", "--json"]
    result = CliRunner().invoke(notice_group, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["report"] == {
        "path": str(out),
        "rows": 5,
        "decisions": ["sent"],
        "html": str(page),
    }
    # The CSV keeps to --decision; the visual report reads every row of both pages
    html = page.read_text()
    assert 'data-series="recipients" data-final="4"' in html and "u6&lt;script&gt;" in html


def test_with_people_counted_the_reports_speak_of_people_and_those_without_an_address() -> None:
    # Given a notice whose manifest lists 7 people, one of them only on a refused row
    document = breach_notice(people=People(listed=7, without_address=1), variables={"subjects_concerned": None})
    assert document["reach"]["unreachable"] == 3
    # Then the authority report counts the people, and all three unreachable
    found = sections(notice_reports.art33_markdown(document, NOW))
    subjects = found["Data subjects concerned"]
    assert "- **Approximate number:** 7 (the people this notice lists)" in subjects
    assert "- **People listed:** 7\n- **Reached:** 4\n- **Unreachable:** 3" in subjects
    assert "3 of the people listed could not be reached on any channel" in found["Notifications by decision"]
    # And the visual report lists the two with delivery rows, and points to the bad rows for the third
    page = notice_reports.visual_html(document, collected(rows()), NOW)
    assert re.search(r'id="unreachable-without-address">And 1 listed only on refused rows', page)
