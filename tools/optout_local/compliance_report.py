"""``optout compliance report``: time-to-honour for every opt-out since a date, against each rule's
clock, every send to an address after its opt-out (there must be none), and the reach of the
required notices.

Everything is read through the AWS_IAM admin API: the opt-outs a page at a time from
``GET /admin/compliance/opt-outs`` (the layer's ``optout.privacy.compliance`` joins each with the deliveries
to its address), the notices from ``GET /admin/notices``. The clocks are summed up here, with the
same ``optout.privacy.compliance.summarise`` the tests check.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from optout.privacy.compliance import OptOut, duration, summarise
from optout_local.notice_reports import AuthorityReport, Block, Section

SHOWN = 1000  # opt-outs listed in the Markdown and HTML reports; --json has them all
REQUIRED_TOPICS = ("policy", "security")


def gather(
    page: Callable[[str | None], Mapping[str, Any]], progress: Callable[[int, int], None] | None = None
) -> tuple[list[OptOut], int]:
    """Every page's opt-outs (``page(next_token)``), and how many addresses were read."""
    entries: list[OptOut] = []
    addresses = 0
    token: str | None = None
    while True:
        answer = page(token)
        entries += [OptOut.model_validate(item) for item in answer["items"]]
        addresses += int(answer.get("addresses", 0))
        if progress is not None:
            progress(addresses, len(entries))
        token = answer.get("next_token")
        if not token:
            return sorted(entries, key=lambda e: e.received_at), addresses


def build(
    entries: Sequence[OptOut], notices: Sequence[Mapping[str, Any]], since: datetime, now: datetime,
    required_topics: Sequence[str] = REQUIRED_TOPICS,
) -> dict[str, Any]:  # fmt: skip
    """The report as one JSON document (``--json``); the Markdown and HTML say the same."""
    required = [n for n in notices if n.get("topic") in required_topics and not n.get("dry_run")]
    clocks = summarise(entries)
    sends = [s for e in entries for s in e.sends_after]
    current = [e for e in entries if not e.before_window]
    return {
        "since": since.isoformat(),
        "generated_at": now.isoformat(),
        "opt_outs": len(current),
        "by_channel": {c: sum(e.channel == c for e in current) for c in ("email", "sms")},
        "older_opt_outs_sent_to": len(entries) - len(current),
        "sends_after_in_force": sum(s.in_force for s in sends),
        "sends_while_received": sum(not s.in_force for s in sends),
        "suppressed_after": sum(e.suppressed_after for e in entries),
        "clocks": clocks,
        "breaches": sum(len(c["breaches"]) for c in clocks),
        "required_notices": [
            {k: n.get(k) for k in ("id", "kind", "topic", "status", "created_at", "reach")} for n in required
        ],
        "entries": [e.model_dump(mode="json") for e in entries],
    }


def _utc(value: str | None) -> str:
    if not value:
        return "-"
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def document(report: Mapping[str, Any]) -> AuthorityReport:
    """The report as sections, for ``notice_reports.report_markdown`` and ``report_html``."""
    clocks: list[Mapping[str, Any]] = report["clocks"]
    preamble = [
        ("Since", _utc(report["since"]) + " UTC"),
        ("Generated", _utc(report["generated_at"]) + " UTC"),
        ("Opt-outs", f"{report['opt_outs']:,} ({report['by_channel']['email']:,} email, "
                     f"{report['by_channel']['sms']:,} SMS)"),
        ("Sends after an opt-out was in force", f"{report['sends_after_in_force']:,} (there must be none)"),
        ("Older opt-outs a send since then went against", f"{report['older_opt_outs_sent_to']:,}"),
        ("Sends while an opt-out was on its way", f"{report['sends_while_received']:,}"),
        ("Later sends the opt-outs stopped", f"{report['suppressed_after']:,}"),
        ("Clock breaches (an opt-out breaks each of its clocks)", f"{report['breaches']:,}"),
    ]  # fmt: skip
    warnings = []
    if report["sends_after_in_force"]:
        warnings.append(f"{report['sends_after_in_force']} send(s) went out after an opt-out was in force: see 3.")
    if any(e["erased"] for e in report["entries"]):
        warnings.append(
            "Some subjects were erased: their deliveries are pseudonymised and cannot be joined with their opt-out."
        )
    clock_rows = [
        [c["clock"], c["rule"], c["channel"], f"{c['opt_outs']:,}", duration(c["p50_seconds"]),
         duration(c["p99_seconds"]), duration(c["max_seconds"]), f"{len(c['breaches']):,}"]
        for c in clocks
    ]  # fmt: skip
    breach_rows = [
        [c["clock"], b["subject"], _utc(b["received_at"]), _utc(b["deadline"]), b["why"]]
        for c in clocks for b in c["breaches"]
    ]  # fmt: skip
    send_rows = [
        [e["subject"], e["channel"], s["notice_id"], s["topic"], s["decision"], _utc(s["at"]),
         "in force" if s["in_force"] else "on its way"]
        for e in report["entries"] for s in e["sends_after"]
    ]  # fmt: skip
    shown = report["entries"][:SHOWN]
    entry_rows = [
        [e["subject"], e["channel"], f"{e['action']} {e['scope']}", e["source"], _utc(e["received_at"]),
         _utc(e["in_force_at"]), duration(e["honour_seconds"]), str(len(e["sends_after"])),
         _utc(e["lifted_at"]) if e["lifted_at"] else "-"]
        for e in shown
    ]  # fmt: skip
    notice_rows = [
        [n["id"], n["kind"], n["status"], _utc(n["created_at"]),
         *(f"{(n.get('reach') or {}).get(k, 0):,}" for k in ("people", "reached", "unreachable", "pending"))]
        for n in report["required_notices"]
    ]  # fmt: skip
    listed = (
        f"the first {SHOWN:,} of {len(report['entries']):,} (--json has them all)"
        if len(report["entries"]) > SHOWN
        else f"all {len(report['entries']):,}"
    )
    return AuthorityReport(
        title="Time to honour opt-outs",
        preamble=preamble,
        warnings=warnings,
        sections=[
            Section("The clocks", [Block(
                text="Time to honour: from when the request reached us (an SMS: when the carrier says it was sent;"
                     " a complaint: when SES received it) to when it was in force (recorded, before any answer).",
                header=["clock", "rule", "channel", "opt-outs", "p50", "p99", "max", "breaches"], rows=clock_rows)]),
            Section("Breaches", [Block(header=["clock", "subject", "received (UTC)", "deadline (UTC)", "why"],
                                       rows=breach_rows)] if breach_rows else [Block(text="None.")]),
            Section("Sends after an opt-out", [Block(
                header=["subject", "channel", "notice", "topic", "decision", "at (UTC)", "the opt-out was"],
                rows=send_rows)] if send_rows else [Block(text="None.")]),
            Section("Required notices' reach", [Block(
                header=["notice", "kind", "status", "created (UTC)", "people", "reached", "unreachable", "pending"],
                rows=notice_rows)] if notice_rows else [Block(text="No required notice was sent in this period.")]),
            Section("Every opt-out", [Block(
                text=f"Subjects are the first characters of the hashed address key, never an address; {listed}.",
                header=["subject", "channel", "opt-out", "source", "received (UTC)", "in force (UTC)", "honoured in",
                        "sends after", "lifted (UTC)"], rows=entry_rows)] if entry_rows else [Block(text="None.")]),
        ],
    )  # fmt: skip
