"""What ``optout notice report`` renders besides the CSV evidence.

- The authority report (``--format art33``): the content GDPR Art. 33(3) asks of a breach
  notification to the supervisory authority, with the timeline against 72 hours and the counts by
  decision, as Markdown or HTML.
- The visual report (``--html FILE``): one self-contained HTML file (inline CSS and SVG, no script,
  nothing loaded from elsewhere) with the counts by decision and channel, the notifications over
  time against the deadline, the unreachable recipients and the bad rows.

Both read what ``notice report --json`` reads: the notice as ``GET /admin/notices/{id}`` returns it
and its delivery rows as ``/deliveries`` pages them, so their numbers are the JSON's. Everything a
manifest or an admin wrote (ids, reasons, texts) is escaped: HTML by Jinja's autoescape, Markdown
by backslashes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

from optout.notices.model import DECISIONS

if TYPE_CHECKING:
    from jinja2 import Environment

BREACH_DEADLINE = timedelta(hours=72)
UNREACHABLE_SHOWN = 1000  # listed in the visual report; the CSV (--decision unreachable) has them all
CHART_STEPS = 400  # at most this many steps drawn per series: the file stays small for any notice
MEANING = {
    "sent": "notified (accepted by the provider)",
    "suppressed": "not notified: opted out or the channel is blocked",
    "deferred": "waiting for the recipient's daytime",
    "unreachable": "no usable channel: needs substitute notice (Art. 34(3)(c))",
    "failed": "surely not notified: refused by the provider",
    "duplicate": "listed again in the manifest: notified once",
    "unknown": "may or may not have been notified: to follow up by hand",
}


class NotABreachAlert(ValueError):
    """The authority report is for breach alerts only."""


def _when(value: Any) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _utc(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "not yet"


def _hours(moment: datetime | None, start: datetime) -> str:
    return f"{(moment - start).total_seconds() / 3600:.2f}" if moment else ""


# --- the authority report ------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """A piece of a section: text paragraphs, labelled fields, a bullet list or a table."""

    heading: str | None = None
    text: str | None = None
    fields: Sequence[tuple[str, str]] = ()
    bullets: Sequence[str] = ()
    header: Sequence[str] = ()
    rows: Sequence[Sequence[str]] = ()


@dataclass(frozen=True)
class Section:
    title: str
    blocks: Sequence[Block]


@dataclass(frozen=True)
class AuthorityReport:
    title: str
    preamble: Sequence[tuple[str, str]]
    warnings: Sequence[str]
    sections: Sequence[Section]


def authority_report(notice: Mapping[str, Any], now: datetime) -> AuthorityReport:
    """The Art. 33(3) content of a breach alert, from its notice document (GET /admin/notices/{id})."""
    if notice.get("kind") != "breach_alert":
        raise NotABreachAlert(
            f"notice {notice.get('id')} is a {notice.get('kind')}: --format art33 is for breach alerts only"
        )
    v: Mapping[str, Any] = notice.get("variables") or {}
    breach: Mapping[str, Any] = notice.get("breach") or {}
    discovered = _when(breach.get("discovered_at") or v.get("discovered_at") or notice.get("discovered_at"))
    if discovered is None:  # a breach alert is refused without it: this notice's document is not one
        raise NotABreachAlert(f"notice {notice.get('id')} says no discovery time: it cannot be reported as a breach")
    first, last = _when(breach.get("first_sent_at")), _when(breach.get("last_sent_at"))
    deadline = discovered + BREACH_DEADLINE
    counts: Mapping[str, Any] = notice.get("counts") or {}
    recipients: Mapping[str, int] = counts.get("recipients") or {}
    by_channel: Mapping[str, Mapping[str, int]] = counts.get("by_channel") or {}
    total = notice.get("total")

    warnings = []
    if notice.get("dry_run"):
        warnings.append("This notice is a dry run: nothing was sent to anyone.")
    if notice.get("status") not in ("complete", "complete_with_failures"):
        warnings.append(f"The notice is still {notice.get('status')}: the numbers below are not final.")
    if now > deadline:
        warnings.append(
            f"This report is made {_hours(now, discovered)} hours after the breach was discovered, past 72 hours:"
            " Art. 33(1) asks for the reasons for the delay to accompany it."
        )

    # The people (recipient ids) the manifest lists, as the dispatcher counted them; a notice
    # dispatched before people were counted has only its recipients
    reach: Mapping[str, int] | None = notice.get("reach")
    stated_subjects = v.get("subjects_concerned")
    if stated_subjects:
        subjects = f"about {stated_subjects:,}"
    elif reach is not None:
        subjects = f"{reach['people']:,} (the people this notice lists)"
    elif total is not None:
        subjects = f"{total:,} (the recipients of this notice)"
    else:
        subjects = "not known yet (the manifest is still being read)"
    listed = (
        [("People listed", f"{reach['people']:,}"), ("Reached", f"{reach['reached']:,}"),
         ("Unreachable", f"{reach['unreachable']:,}")]
        if reach is not None else []
    )  # fmt: skip
    records = v.get("records_concerned")
    subject_categories = v.get("subject_categories") or []
    decisions = [d for d in DECISIONS if recipients.get(d) or any(c.get(d) for c in by_channel.values())]
    channels = sorted(by_channel)
    table = [
        [d, f"{recipients.get(d, 0):,}", *(f"{by_channel[c].get(d, 0):,}" for c in channels), MEANING[d]]
        for d in decisions
    ]
    settled = [d for d in decisions if d != "deferred"]
    totals = [
        sum(recipients.get(d, 0) for d in settled),
        *(sum(by_channel[c].get(d, 0) for d in settled) for c in channels),
    ]
    note = "deferred are not in the total: they are still to be sent" if "deferred" in decisions else ""
    table.append(["total", *(f"{n:,}" for n in totals), note])
    if last is None:
        verdict = "No one has been notified yet."
    elif breach.get("all_reachable_notified_within_72h"):
        verdict = f"Everyone reachable was notified within 72 hours: the last in {_hours(last, discovered)} hours."
    elif last <= deadline:
        verdict = f"Notified so far within 72 hours (the last in {_hours(last, discovered)} hours); not finished yet."
    else:
        verdict = f"Not everyone reachable was notified within 72 hours: the last in {_hours(last, discovered)} hours."
    created = _when(notice.get("created_at"))
    timeline = [
        ["Breach discovered", _utc(discovered), "0.00"],
        ["Notice created", _utc(created), _hours(created, discovered)],
        ["First notification", _utc(first), _hours(first, discovered)],
        ["Last notification", _utc(last), _hours(last, discovered)],
        ["72-hour deadline", _utc(deadline), "72.00"],
        ["This report", _utc(now), _hours(now, discovered)],
    ]
    timeline[5:5] = publication_rows(notice, lambda moment: _hours(moment, discovered))
    # with reach, the people listed only on refused rows are unreachable too: they have no address
    unreachable = reach["unreachable"] if reach is not None else recipients.get("unreachable", 0)
    return AuthorityReport(
        title="Personal data breach notification (GDPR Art. 33)",
        preamble=[
            ("Notice", str(notice.get("id"))),
            ("Status", str(notice.get("status"))),
            ("Channels", ", ".join(notice.get("channels") or [])),
            ("Prepared", _utc(now)),
        ],
        warnings=warnings,
        sections=[
            Section(
                "Nature of the breach",
                [Block(text=str(v.get("nature", ""))), Block(fields=[("Discovered", _utc(discovered))])],
            ),
            Section(
                "Data subjects concerned",
                [
                    Block(
                        fields=[
                            ("Categories", ", ".join(subject_categories) if subject_categories else "not stated"),
                            ("Approximate number", subjects),
                            *listed,
                            ("Recipients of this notice", f"{total:,}" if total is not None else "not known yet"),
                            ("Rows of the manifest refused", f"{notice.get('bad_rows', 0):,}"),
                        ]
                    )
                ],
            ),
            Section(
                "Personal data records concerned",
                [
                    # the fields first: a list of fields right after the bullets would run on as one list
                    Block(fields=[("Approximate number", f"about {records:,}" if records else "not stated")]),
                    Block(heading="Categories of personal data"),
                    Block(bullets=[str(c) for c in v.get("data_categories") or []]),
                ],
            ),
            Section("Contact point", [Block(fields=[("Contact", str(v.get("contact", "")))])]),
            Section("Likely consequences", [Block(text=str(v.get("likely_consequences", "")))]),
            Section(
                "Measures taken and proposed",
                [
                    Block(heading="Taken"),
                    Block(text=str(v.get("measures_taken", ""))),
                    Block(heading="Proposed"),
                    Block(text=str(v.get("measures_proposed") or "None stated beyond the measures taken.")),
                ],
            ),
            Section(
                "Timeline",
                [Block(header=["Event", "Time", "Hours after discovery"], rows=timeline), Block(text=verdict)],
            ),
            Section(
                "Notifications by decision",
                [Block(header=["Decision", "Recipients", *channels, "Meaning"], rows=table)]
                + ([Block(text=UNREACHABLE_NOTE.format(unreachable))] if unreachable else []),
            ),
        ],
    )


def publication_rows(notice: Mapping[str, Any], hours: Callable[[datetime], str]) -> list[list[str]]:
    """When the notice was on the public page (GET /notices): published, shown until, withdrawn."""
    publication: Mapping[str, Any] = notice.get("publication") or {}
    rows = []
    for label, name in (("Published publicly (Art. 34(3)(c))", "published_at"), ("Shown until", "until"),
                        ("Withdrawn from the public page", "withdrawn_at")):  # fmt: skip
        moment = _when(publication.get(name))
        if moment is not None:
            rows.append([label, _utc(moment), hours(moment)])
    return rows


UNREACHABLE_NOTE = (
    "{:,} of the people listed could not be reached on any channel: they need substitute notice, such as a"
    " public communication (Art. 34(3)(c))."
)


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>&|~])")
_MD_LINE_START = re.compile(r"^([ \t]*)(?:([#>+=-])|(\d+)([.)]))", re.MULTILINE)


def md_escape(text: str) -> str:
    """Text as Markdown shows it literally: no emphasis, link, raw HTML, heading, list or table cell."""
    escaped = _MD_SPECIAL.sub(r"\\\1", text)
    return _MD_LINE_START.sub(
        lambda m: m.group(1) + (f"\\{m.group(2)}" if m.group(2) else f"{m.group(3)}\\{m.group(4)}"), escaped
    )


def _md_line(text: str, starts_block: bool = False) -> str:
    """One line of text inside a list item, a field or a table cell: line breaks become spaces; only
    a list item's text starts a block of its own (where "# x" would be a heading)."""
    line = " ".join(text.split())
    return md_escape(line) if starts_block else _MD_SPECIAL.sub(r"\\\1", line)


def _md_code(text: str) -> str:
    return f"`{text}`" if "`" not in text and "\n" not in text else _md_line(text)


def art33_markdown(notice: Mapping[str, Any], now: datetime) -> str:
    return report_markdown(authority_report(notice, now))


def report_markdown(report: AuthorityReport) -> str:
    """A report as Markdown: everything from its data escaped, ids as code."""
    out = [f"# {report.title}", ""]
    out += [
        f"- **{label}:** {_md_code(value) if label == 'Notice' else _md_line(value)}"
        for label, value in report.preamble
    ]
    out += [""] + [f"> **{_md_line(w)}**\n" for w in report.warnings]
    for number, section in enumerate(report.sections, 1):
        out += [f"## {number}. {section.title}", ""]
        for block in section.blocks:
            if block.heading is not None:
                out += [f"### {block.heading}", ""]
            if block.text is not None:
                out += [md_escape(p.strip()) + "\n" for p in re.split(r"\n\s*\n", block.text) if p.strip()]
            if block.fields:
                out += [f"- **{label}:** {_md_line(value)}" for label, value in block.fields] + [""]
            if block.bullets:
                out += [f"- {_md_line(b, starts_block=True)}" for b in block.bullets] + [""]
            if block.header:
                out.append("| " + " | ".join(block.header) + " |")
                out.append("|" + "|".join(" --- " for _ in block.header) + "|")
                out += ["| " + " | ".join(_md_line(c) for c in row) + " |" for row in block.rows]
                out.append("")
    return "\n".join(out).rstrip() + "\n"


def art33_html(notice: Mapping[str, Any], now: datetime) -> str:
    return report_html(authority_report(notice, now))


def report_html(report: AuthorityReport) -> str:
    """A report as one self-contained HTML page (inline CSS, no script), autoescaped."""
    return _environment().get_template("art33.html").render(report=report)


# --- the visual report ---------------------------------------------------------------------------


@dataclass
class Deliveries:
    """What the visual report takes from a notice's delivery rows, read once, in the API's order.

    The rows come sorted by recipient (their sort key), so a recipient's rows are consecutive and
    each recipient is counted once without holding every id: ``notified`` holds, per recipient
    sent on any channel, their first send; ``sent`` holds every sent row's time, per channel.
    """

    rows: int = 0
    notified: list[datetime] = field(default_factory=list)
    sent: dict[str, list[datetime]] = field(default_factory=dict)
    unreachable: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)
    unreachable_total: int = 0
    _current: str | None = None
    _first_sent: datetime | None = None
    _unreachable: list[tuple[str, str]] = field(default_factory=list)
    _other: bool = False

    def add(self, row: Mapping[str, Any]) -> None:
        recipient = str(row.get("recipient_id"))
        if recipient != self._current:
            self._settle()
            self._current = recipient
        self.rows += 1
        decision, channel = row.get("decision"), str(row.get("channel"))
        if decision == "sent":
            at = _when(row.get("at"))
            if at is None:  # every delivery record has its time; one without is not counted as notified
                return
            self.sent.setdefault(channel, []).append(at)
            self._first_sent = at if self._first_sent is None else min(self._first_sent, at)
        elif decision == "unreachable":
            self._unreachable.append((channel, str(row.get("reason") or "")))
        elif decision != "duplicate":  # a channel dropped as a duplicate leaves the recipient's decision to the rest
            self._other = True

    def _settle(self) -> None:
        if self._first_sent is not None:
            self.notified.append(self._first_sent)
        elif self._unreachable and not self._other:
            self.unreachable_total += 1
            if len(self.unreachable) < UNREACHABLE_SHOWN:
                self.unreachable.append((str(self._current), self._unreachable))
        self._first_sent, self._unreachable, self._other = None, [], False

    def finish(self) -> Deliveries:
        self._settle()
        self._current = None
        return self


def _nice_step(span: float, ticks: int = 6) -> float:
    raw = span / ticks
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)


@dataclass(frozen=True)
class Series:
    name: str
    label: str
    points: str  # SVG polyline points
    final: int
    css: str
    last: tuple[float, float] | None  # where the last notification is drawn, if any


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    top: int
    plot_width: int
    plot_height: int
    series: Sequence[Series]
    x_ticks: Sequence[tuple[float, str]]
    y_ticks: Sequence[tuple[float, str]]
    x_label: str
    start_label: str
    deadline_x: float | None
    deadline_label: str
    target_y: float | None
    target_label: str
    last_label: str  # when the last recipient was notified, in the x axis's unit


def chart(notice: Mapping[str, Any], deliveries: Deliveries, now: datetime) -> Chart:
    """Cumulative recipients notified (and sends per channel) over time, against the deadline."""
    width, height, left, right, top, bottom = 760, 340, 64, 24, 24, 48
    plot_w, plot_h = width - left - right, height - top - bottom
    discovered = _when(notice.get("discovered_at")) if notice.get("kind") == "breach_alert" else None
    start = discovered or _when(notice.get("created_at")) or now
    times = sorted(deliveries.notified)
    end = max([now if not times else times[-1], start + timedelta(seconds=1)])
    deadline = start + BREACH_DEADLINE if discovered else None
    horizon = max(end, deadline) if deadline else end
    span = (horizon - start).total_seconds() * 1.04
    unit, per = ("seconds", 1.0) if span <= 180 else ("minutes", 60.0) if span <= 3 * 3600 else ("hours", 3600.0)
    total = notice.get("total") or 0
    y_max = max(total, len(times), 1)

    def x(moment: datetime) -> float:
        return round(left + plot_w * max(0.0, (moment - start).total_seconds()) / span, 2)

    def y(count: float) -> float:
        return round(top + plot_h - plot_h * count / y_max, 2)

    def steps(moments: Sequence[datetime]) -> tuple[str, tuple[float, float] | None]:
        points = [(x(start), y(0))]
        n = len(moments)
        picks = (
            range(n)
            if n <= CHART_STEPS
            else sorted({round(i * (n - 1) / (CHART_STEPS - 1)) for i in range(CHART_STEPS)})
        )
        before = 0
        for i in picks:
            points += [(x(moments[i]), y(before)), (x(moments[i]), y(i + 1))]
            before = i + 1
        points.append((x(min(max(now, moments[-1] if moments else now), horizon)), y(before)))
        last = (x(moments[-1]), y(len(moments))) if moments else None
        return " ".join(f"{px},{py}" for px, py in points), last

    drawn, last = steps(times)
    series = [Series("recipients", "recipients notified", drawn, len(times), "notified", last)]
    for channel, moments in sorted(deliveries.sent.items()):
        drawn, last = steps(sorted(moments))
        series.append(Series(channel, f"{channel} sent", drawn, len(moments), f"channel-{channel}", last))
    x_step = _nice_step(span / per)
    x_ticks = [
        (left + plot_w * (k * x_step * per) / span, f"{k * x_step:g}") for k in range(int(span / per / x_step) + 1)
    ]
    y_step = max(1.0, float(math.ceil(_nice_step(y_max, 5))))
    y_ticks = [(y(k * y_step), f"{int(k * y_step):,}") for k in range(int(y_max / y_step) + 1)]
    since = "discovery" if discovered else "the notice was created"
    return Chart(
        width=width,
        height=height,
        left=left,
        top=top,
        plot_width=plot_w,
        plot_height=plot_h,
        series=series,
        x_ticks=x_ticks,
        y_ticks=y_ticks,
        x_label=f"{unit} after {since} ({_utc(start)})",
        start_label=_utc(start),
        deadline_x=x(deadline) if deadline else None,
        deadline_label=f"72-hour deadline ({_utc(deadline)})",
        target_y=y(total) if total else None,
        target_label=f"{total:,} recipients",
        last_label=f"{(times[-1] - start).total_seconds() / per:.2f} {unit}" if times else "",
    )


def visual_html(notice: Mapping[str, Any], deliveries: Deliveries, now: datetime) -> str:
    counts: Mapping[str, Any] = notice.get("counts") or {}
    recipients: Mapping[str, int] = counts.get("recipients") or {}
    by_channel: Mapping[str, Mapping[str, int]] = counts.get("by_channel") or {}
    return (
        _environment()
        .get_template("visual.html")
        .render(
            notice=notice,
            breach=notice.get("breach") or {},
            without_address=(notice.get("reach") or {}).get("unreachable", 0) - recipients.get("unreachable", 0),
            warnings=notice.get("warnings") or 0,
            warning_samples=notice.get("warning_samples") or [],
            decisions=DECISIONS,
            meaning=MEANING,
            recipients=recipients,
            channels=sorted(by_channel),
            by_channel=by_channel,
            chart=chart(notice, deliveries, now),
            deliveries=deliveries,
            created=_utc(_when(notice.get("created_at"))),
            discovered=_utc(_when(notice.get("discovered_at"))),
            prepared=_utc(now),
            published=[row[:2] for row in publication_rows(notice, lambda _: "")],
        )
    )


@cache
def _environment() -> Environment:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    # Autoescape everywhere, CSS included: every id, reason and text in a report came from someone else
    return Environment(
        loader=PackageLoader("optout_local", "report_templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
