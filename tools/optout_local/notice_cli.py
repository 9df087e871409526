"""``optout notice``: send policy-change, change-of-control, breach-alert, product and marketing notices."""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from optout.notices.manifest import Cursor, format_of, lines, parse_line
from optout.notices.model import DECISIONS, FINAL_STATUSES, BadRow
from optout_local import notice_reports
from optout_local.csv_export import ExportWriter
from optout_local.target import Target, resolve_target

KINDS = {
    "policy-change": "policy_change",
    "change-of-control": "change_of_control",
    "breach-alert": "breach_alert",
    "product": "product",
    "marketing": "marketing",
}


@click.group()
def notice() -> None:
    """Admin notices: send (or dry-run), follow, export evidence."""


def _target(stack_name: str | None, config_env: str | None) -> Target:
    return resolve_target(stack_name, config_env)


target_options = [
    click.option("--stack", "stack_name", help="A deployed stack's name (default: the local stack)."),
    click.option("--config-env", help="A samconfig.toml environment (dev, staging, prod) naming the deployed stack."),
    click.option("--json", "as_json", is_flag=True, help="Print the notice as one JSON object."),
]


def with_target(func: Any) -> Any:
    for option in reversed(target_options):
        func = option(func)
    return func


@notice.command("send")
@click.argument("kind", type=click.Choice(list(KINDS)))
@click.option(
    "--manifest",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="CSV or JSON Lines: recipient_id, email, phone, locale, timezone, name.",
)
@click.option("--channels", help="email, sms or email,sms (default per kind).")
@click.option("--mode", type=click.Choice(["all", "first_available"]), help="Use every usable channel, or the first.")
@click.option(
    "--dry-run", is_flag=True, help="Decide everything, send nothing, and (unless --no-wait) print what would happen."
)
@click.option(
    "--wait/--no-wait", default=None, help="Show progress until the notice completes (default: only for --dry-run)."
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=3600,
    show_default=True,
    help="With --wait: give up waiting after this many seconds (exit 3); the notice goes on.",
)
@click.option("--idempotency-key", help="Retrying with the same key returns the same notice.")
@click.option("--publish", is_flag=True, help="Also show it on the public page (GET /notices) from now on.")
@click.option("--until", help="With --publish: when it leaves the public page, ISO 8601 with a zone.")
@click.option("--policy-version", help="policy-change: the new policy's version, e.g. 2026-12.")
@click.option("--effective-date", help="policy-change, change-of-control: when it takes effect, YYYY-MM-DD.")
@click.option("--summary", help="policy-change, change-of-control: what changes, in plain language.")
@click.option("--policy-url", help="policy-change: where the full policy is published.")
@click.option("--new-controller", help="change-of-control: who takes control (the merged or acquiring company).")
@click.option("--choices-url", help="change-of-control: where users export or delete their data before it.")
@click.option("--discovered-at", help="When the breach was discovered, ISO 8601 with a zone.")
@click.option("--nature", help="breach-alert: what happened, in plain language.")
@click.option("--data-categories", help="Comma-separated.")
@click.option("--likely-consequences", help="breach-alert: what it may mean for the people affected.")
@click.option("--measures-taken", help="breach-alert: what was done, and what people can do.")
@click.option("--contact", help="breach-alert: who to ask: an email, an http(s) URL or a +phone number.")
@click.option("--subject-categories", help="breach-alert, for the authority report: whose data, comma-separated.")
@click.option("--subjects-concerned", type=int, help="breach-alert: about how many people (default: the recipients).")
@click.option("--records-concerned", type=int, help="breach-alert: about how many personal data records.")
@click.option("--measures-proposed", help="breach-alert: the measures proposed, beyond those taken.")
@click.option(
    "--publish-if-unreachable",
    is_flag=True,
    help="breach-alert: when it completes with anyone unreachable, publish it on GET /notices (Art. 34(3)(c)).",
)
@click.option("--subject", help="product, marketing: the mail's subject (one line).")
@click.option(
    "--body-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="product, marketing: the body, in Markdown; {{ name }} is the manifest's name.",
)
@click.option("--sms-text", help="product, marketing: the text message (default: the subject).")
@with_target
def send(kind: str, manifest: Path, channels: str | None, mode: str | None, dry_run: bool, wait: bool | None,
         timeout: float, idempotency_key: str | None, stack_name: str | None, config_env: str | None, as_json: bool,
         **variables: Any) -> None:  # fmt: skip
    """Upload MANIFEST, create the notice through the signed admin API, and (with --wait) follow it.

    Exit status with --wait: 0 when the notice completes, 1 when it ends failed, 3 when --timeout
    runs out first (the notice goes on: follow it with `optout notice status ID --wait`).
    """
    check_manifest(manifest)
    target = _target(stack_name, config_env)
    # Content-addressed, so a retried send (same file, same Idempotency-Key) makes the same request
    digest = hashlib.sha256(manifest.read_bytes()).hexdigest()[:24]
    key = f"manifests/{digest}/{manifest.name}"
    target.clients("s3").upload_file(str(manifest), target.bucket, key)
    request: dict[str, Any] = {
        "kind": KINDS[kind],
        "manifest": f"s3://{target.bucket}/{key}",
        "dry_run": dry_run,
    }
    publish, until = variables.pop("publish"), variables.pop("until")
    if variables.get("publish_if_unreachable") and kind != "breach-alert":
        raise click.UsageError("--publish-if-unreachable is for breach alerts only")
    if publish or until:
        request.update({"publish": publish, **({"until": until} if until else {})})
    request["variables"] = _variables(KINDS[kind], variables)
    if channels or mode:
        request["channels"] = {"channels": [c.strip() for c in (channels or "email").split(",") if c.strip()]}
        if mode:
            request["channels"]["mode"] = mode
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    created = target.admin().ok("POST", "/admin/notices", body=request, headers=headers)
    label = "(dry run) " if dry_run else ""
    # the id before any wait; with --json on stderr, so stdout stays one JSON document
    click.echo(f"notice {created['id']} {label}queued: {created['kind']} to {', '.join(created['channels'])}",
               err=as_json)  # fmt: skip
    waiting = dry_run if wait is None else wait
    result = _follow(target, created["id"], quiet=False, timeout=timeout) if waiting else created
    _print(result, as_json)
    _exit_for(result, waiting, timeout)


def _exit_for(document: dict[str, Any], waited: bool, timeout: float) -> None:
    if not waited:
        return
    if document["status"] == "failed":
        sys.exit(1)
    if document["status"] not in FINAL_STATUSES:
        click.echo(f"still {document['status']} after {timeout:g} s: follow it with"
                   f" `optout notice status {document['id']} --wait`", err=True)  # fmt: skip
        sys.exit(3)


def check_manifest(path: Path) -> None:
    """Refuse, before any notice exists, a manifest the dispatcher could make nothing of: empty, a CSV
    header without recipient_id, or no row that is a usable recipient (read up to the first that is)."""
    with path.open("rb") as head:
        cursor = Cursor(fmt=format_of(path.name, head.read(64)))
    first_problem: BadRow | None = None
    with path.open("rb") as handle:
        for raw, number, _ in lines(iter(lambda: handle.read(256 * 1024), b""), cursor):
            parsed = parse_line(raw, number, cursor)
            if isinstance(parsed, BadRow):
                if cursor.header == []:
                    raise click.UsageError(f"{path.name}: {parsed.reason} (line {parsed.line})")
                first_problem = first_problem or parsed
            elif parsed is not None:
                return
    detail = f" (line {first_problem.line}: {first_problem.reason})" if first_problem else ""
    raise click.UsageError(f"{path.name} lists no usable recipient{detail}: nothing was created")


def _variables(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    names: tuple[str, ...]
    if kind == "policy_change":
        names = ("policy_version", "effective_date", "summary", "policy_url")
    elif kind == "change_of_control":
        names = ("new_controller", "effective_date", "summary", "choices_url")
    elif kind == "breach_alert":
        names = ("discovered_at", "nature", "data_categories", "likely_consequences", "measures_taken", "contact",
                 "subject_categories", "subjects_concerned", "records_concerned", "measures_proposed",
                 "publish_if_unreachable")  # fmt: skip
    else:
        names = ("subject", "body_file", "sms_text")
    variables: dict[str, Any] = {}
    for name in names:
        value = options.get(name)
        if value is None or value is False:  # an unset flag: the API's default
            continue
        if name in ("data_categories", "subject_categories"):
            value = [v.strip() for v in str(value).split(",") if v.strip()]
        if name == "body_file":
            name, value = "body", Path(str(value)).read_text(encoding="utf-8")
        variables[name] = value
    return variables


def _progress_line(document: dict[str, Any]) -> str:
    recipients = document.get("counts", {}).get("recipients", {})
    total = document.get("total")
    done = sum(v for k, v in recipients.items() if k != "deferred")
    parts = " ".join(f"{d} {recipients.get(d, 0)}" for d in DECISIONS)
    of = f"{done}/{total}" if total is not None else f"{done}/{document.get('rows_read', 0)}+"
    width = 24
    filled = int(width * done / total) if total else 0
    line = f"[{'#' * filled}{'.' * (width - filled)}] {of} {document['status']:<22} {parts}"
    due = _deferred_until(document)
    return f"{line}; deferred until {due:%Y-%m-%d %H:%M} UTC" if due is not None else line


def _deferred_until(document: dict[str, Any], now: datetime | None = None) -> datetime | None:
    """While texts are held for quiet hours: when the last of them is due (None if none is held)."""
    if not document.get("counts", {}).get("recipients", {}).get("deferred"):
        return None
    moment = now or datetime.now(UTC)
    due = [t for t in (datetime.fromisoformat(v) for v in document.get("deferred_until") or []) if t > moment]
    return max(due).astimezone(UTC) if due else None


def _follow(target: Target, notice_id: str, quiet: bool, timeout: float = 3600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    interactive = sys.stderr.isatty()
    last = ""
    while True:
        document: dict[str, Any] = target.admin().ok("GET", f"/admin/notices/{notice_id}")
        line = _progress_line(document)
        if not quiet and line != last:
            click.echo(("\r" if interactive else "") + line, err=True, nl=not interactive)
            last = line
        if document["status"] in FINAL_STATUSES or time.monotonic() > deadline:
            if not quiet and interactive:
                click.echo(err=True)
            return document
        time.sleep(0.5)


def _print(document: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(document, indent=2))
        return
    click.echo(f"notice      {document['id']} ({document['kind']}, topic {document['topic']})")
    click.echo(f"status      {document['status']}{'  [dry run]' if document.get('dry_run') else ''}")
    click.echo(f"channels    {', '.join(document['channels'])} ({document['mode']})")
    publication = document.get("publication")
    if publication:  # on the public page (GET /notices): since when, until when, withdrawn when
        click.echo(_publication_line(publication))
    _print_rows(document)
    reach = document.get("reach")
    if reach:  # in people (recipient ids), not rows
        figures = ", ".join(f"{k} {v}" for k, v in reach.items() if k != "people" and v)
        click.echo(f"reach       {reach['people']} people: {figures}")
    _print_counts(document.get("counts", {}), document["id"])
    due = _deferred_until(document)
    if due is not None:
        click.echo(f"deferred    texts held for quiet hours (08:00-21:00 local) until {due:%Y-%m-%d %H:%M} UTC")
    dry = document.get("dry_run_result")
    if dry:
        _print_dry_run(dry)
    breach = document.get("breach")
    if breach:
        click.echo("breach      " + ", ".join(f"{k} {v}" for k, v in breach.items()))


def _publication_line(publication: dict[str, Any]) -> str:
    until = f", until {publication['until']}" if publication.get("until") else ""
    withdrawn = f", withdrawn {publication['withdrawn_at']}" if publication.get("withdrawn_at") else ""
    return f"published   {publication['published_at']}{until}{withdrawn}"


def _print_rows(document: dict[str, Any]) -> None:
    """The manifest's rows: how many were dispatched, and samples of the refused and the kept with a warning."""
    click.echo(f"recipients  {document.get('total')} dispatched, {document.get('bad_rows', 0)} bad rows")
    for sample in document.get("bad_row_samples", [])[:10]:
        click.echo(f"  line {sample['line']}: {sample['reason']}")
    if document.get("warnings"):
        click.echo(f"warnings    {document['warnings']} rows kept for their usable channels")
        for sample in document.get("warning_samples", [])[:10]:
            click.echo(f"  line {sample['line']}: {sample['reason']}")


def _print_counts(counts: dict[str, Any], notice_id: str) -> None:
    if counts.get("recipients"):
        click.echo("by recipient " + ", ".join(f"{k} {v}" for k, v in sorted(counts["recipients"].items()) if v))
    for channel, by in sorted(counts.get("by_channel", {}).items()):
        click.echo(f"  {channel:<6} " + ", ".join(f"{k} {v}" for k, v in sorted(by.items()) if v))
    for line in (_duplicates_line(counts), _unknown_line(counts, notice_id)):
        if line:
            click.echo(line)


def _print_dry_run(dry: dict[str, Any]) -> None:
    """What a dry run would have done, by channel and reason, with a sample of each channel's message."""
    click.echo("would: " + ", ".join(f"{k} {v}" for k, v in sorted(dry.get("recipients", {}).items())))
    for channel, by in sorted(dry.get("channels", {}).items()):
        click.echo(f"  {channel:<6} " + ", ".join(f"{k} {v}" for k, v in sorted(by.items())))
        for reason, n in sorted(dry.get("reasons", {}).get(channel, {}).items()):
            click.echo(f"         {reason}: {n}")
    sms = dry.get("samples", {}).get("sms")
    if sms:
        click.echo(f"sms sample ({sms['encoding']}, {sms['segments']} segment(s)): {sms['text']}")
    if dry.get("samples", {}).get("email"):
        subject = next((ln for ln in dry["samples"]["email"]["mime"].splitlines() if ln.startswith("Subject:")), "")
        click.echo(f"email sample {subject}")


def _duplicates_line(counts: dict[str, Any]) -> str | None:
    """What the dispatcher dropped: recipients listed again (by id or every address) and channels
    whose address an earlier recipient had; the latter are rows of ``optout notice report``."""
    recipients = counts.get("recipients", {}).get("duplicate", 0)
    channels = {c: by.get("duplicate", 0) for c, by in sorted(counts.get("by_channel", {}).items())}
    if not recipients and not any(channels.values()):
        return None
    parts = ", ".join(f"{c} {n}" for c, n in channels.items() if n)
    line = f"duplicates  {recipients} recipients dropped"
    return line + (f"; addresses listed before: {parts} (decision duplicate in the report)" if parts else "")


def _decision_of(row: dict[str, Any]) -> str:
    """A delivery row's decision; a row stored before ``unknown`` was a decision of its own says
    failed, with a reason that says the outcome is unknown: it is one of the unknown."""
    decision = str(row.get("decision"))
    if decision == "failed" and "outcome unknown" in (row.get("reason") or ""):
        return "unknown"
    return decision


def _unknown_line(counts: dict[str, Any], notice_id: str) -> str | None:
    """Sends whose outcome is unknown: a provider call that may or may not have delivered (its
    answer lost, a 5xx, or the sender died while it was in flight). Never sent again, so a person
    must follow them up: the report lists them."""
    recipients = counts.get("recipients", {}).get("unknown", 0)
    channels = {c: by.get("unknown", 0) for c, by in sorted(counts.get("by_channel", {}).items())}
    if not recipients and not any(channels.values()):
        return None
    parts = ", ".join(f"{c} {n}" for c, n in channels.items() if n)
    return (
        f"unknown     {recipients} recipients may or may not have been sent ({parts}); never sent again: "
        f"list them with optout notice report {notice_id} --decision unknown --out unknown.csv"
    )


@notice.command("status")
@click.argument("notice_id")
@click.option("--wait", is_flag=True, help="Show progress until the notice completes.")
@click.option("--timeout", type=click.FloatRange(min=1), default=3600, show_default=True,
              help="With --wait: give up waiting after this many seconds (exit 3).")  # fmt: skip
@with_target
def status(notice_id: str, wait: bool, timeout: float, stack_name: str | None, config_env: str | None,
           as_json: bool) -> None:  # fmt: skip
    """Status and counts of a notice. With --wait, exits 1 if it ends failed, 3 at --timeout."""
    target = _target(stack_name, config_env)
    document = (
        _follow(target, notice_id, quiet=False, timeout=timeout)
        if wait
        else target.admin().ok("GET", f"/admin/notices/{notice_id}")
    )
    _print(document, as_json)
    _exit_for(document, wait, timeout)


@notice.command("list")
@click.option("--since", type=click.DateTime(), help="Only notices created at or after this date (UTC).")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True, help="How many notices at most.")
@with_target
def list_notices(since: datetime | None, limit: int, stack_name: str | None, config_env: str | None,
                 as_json: bool) -> None:  # fmt: skip
    """The notices, newest first: kind, status and reach."""
    target = _target(stack_name, config_env)
    found = list_all(target, since, limit)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    if not found:
        click.echo("no notices" + (f" since {since:%Y-%m-%d %H:%M}" if since else ""))
        return
    click.echo(f"{'notice':<34} {'kind':<18} {'status':<22} {'created (UTC)':<17} reach")
    for item in found:
        reach = item.get("reach") or {}
        people = f"{reach.get('reached', 0)}/{reach.get('people', 0)} reached" if reach else "not dispatched yet"
        if reach.get("unreachable"):
            people += f", {reach['unreachable']} unreachable"
        kind = item["kind"] + (" (dry run)" if item.get("dry_run") else "")
        created = datetime.fromisoformat(item["created_at"]).astimezone(UTC).strftime("%Y-%m-%d %H:%M")
        click.echo(f"{item['id']:<34} {kind:<18} {item['status']:<22} {created:<17} {people}")


def list_all(target: Target, since: datetime | None, limit: int | None = None) -> list[dict[str, Any]]:
    """Every notice created since ``since`` (up to ``limit``), newest first, through GET /admin/notices."""
    found: list[dict[str, Any]] = []
    token: str | None = None
    while limit is None or len(found) < limit:
        query: dict[str, Any] = {"limit": 100 if limit is None else min(100, limit - len(found))}
        if since is not None:
            query["since"] = (since if since.tzinfo else since.replace(tzinfo=UTC)).isoformat()
        if token:
            query["next_token"] = token
        page = target.admin().ok("GET", "/admin/notices", query=query)
        found += page["items"]
        token = page.get("next_token")
        if not token:
            break
    return found if limit is None else found[:limit]


@notice.command("publish")
@click.argument("notice_id")
@click.option("--until", help="When it leaves the public page, ISO 8601 with a zone (default: until withdrawn).")
@with_target
def publish(notice_id: str, until: str | None, stack_name: str | None, config_env: str | None, as_json: bool) -> None:
    """Show a sent notice on the public page (GET /notices): a breach alert's public communication for
    the people it could not reach (Art. 34(3)(c)), a policy change or a change of control."""
    target = _target(stack_name, config_env)
    published = target.admin().ok("POST", f"/admin/notices/{notice_id}/publish", body={"until": until})
    if as_json:
        click.echo(json.dumps(published, indent=2))
        return
    shown = f" until {published['until']}" if published.get("until") else " until withdrawn"
    click.echo(f"notice {notice_id} published {published['published_at']}{shown}")


@notice.command("withdraw")
@click.argument("notice_id")
@with_target
def withdraw(notice_id: str, stack_name: str | None, config_env: str | None, as_json: bool) -> None:
    """Take a published notice off the public page (GET /notices); its dates stay in its status."""
    target = _target(stack_name, config_env)
    withdrawn = target.admin().ok("POST", f"/admin/notices/{notice_id}/withdraw")
    if as_json:
        click.echo(json.dumps(withdrawn, indent=2))
        return
    click.echo(f"notice {notice_id} withdrawn {withdrawn['withdrawn_at']} (published {withdrawn['published_at']})")


@notice.command("report")
@click.argument("notice_id")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where the report --format names goes: the CSV file, or the art33 report's (absent: stdout).",
)
@click.option(
    "--format",
    "report_format",
    type=click.Choice(["csv", "art33"]),
    default="csv",
    show_default=True,
    help="csv: the evidence, one row per recipient and channel. art33: a breach alert's report to the"
    " supervisory authority (GDPR Art. 33(3): nature, subjects and records concerned, contact point,"
    " consequences, measures; the timeline against 72 hours; the counts by decision), in Markdown.",
)
@click.option(
    "--html",
    is_flag=False,
    flag_value="-",
    default=None,
    metavar="[FILE]",
    help="HTML. With --format art33: the authority report in HTML instead of Markdown, to FILE (else --out,"
    " else stdout). Otherwise: the visual report, one self-contained file (counts by decision and channel,"
    " notifications over time against the deadline, unreachable recipients, bad rows), written to FILE"
    " (with --out too, the CSV as well).",
)
@click.option(
    "--decision",
    "decisions",
    type=click.Choice(list(DECISIONS)),
    multiple=True,
    help="Only CSV rows with this decision (repeatable), e.g. unknown: the sends to follow up by hand.",
)
@with_target
def report(notice_id: str, out: Path | None, report_format: str, html: str | None, decisions: tuple[str, ...],
           stack_name: str | None, config_env: str | None, as_json: bool) -> None:  # fmt: skip
    """Export the evidence (CSV), the authority report (--format art33) or the visual report (--html FILE).

    \b
      report ID --out deliveries.csv               the evidence, one row per recipient and channel
      report ID --html report.html [--out f.csv]   the visual report (and the evidence)
      report ID --format art33 [--out art33.md]    a breach alert's Art. 33 report, Markdown
      report ID --format art33 --html [FILE]       the same in HTML
    """
    if report_format == "art33":
        _art33(notice_id, out, html, decisions, lambda: _target(stack_name, config_env), as_json)
        return
    if html == "-":
        raise click.UsageError("--html needs a FILE for the visual report (--format art33 --html: the art33 report)")
    if out is None and html is None:
        raise click.UsageError("give --out FILE for the CSV evidence, --html FILE for the visual report, or both")
    target = _target(stack_name, config_env)
    document = target.admin().ok("GET", f"/admin/notices/{notice_id}")
    deliveries = notice_reports.Deliveries()
    rows = _export_deliveries(target, notice_id, out, decisions, deliveries if html is not None else None)
    if html is not None:
        page_text = notice_reports.visual_html(document, deliveries.finish(), datetime.now(UTC))
        Path(html).write_text(page_text, encoding="utf-8")
    if as_json:
        written: dict[str, Any] = {}
        if out is not None:
            written = {"path": str(out), "rows": rows, **({"decisions": list(decisions)} if decisions else {})}
        if html is not None:
            written["html"] = html
        click.echo(json.dumps({**document, "report": written}, indent=2))
    else:
        which = f" ({', '.join(decisions)})" if decisions else ""
        if out is not None:
            click.echo(f"{rows} delivery rows{which} written to {out} (notice {notice_id}, {document['status']})")
        if html is not None:
            click.echo(f"visual report written to {html} (notice {notice_id}, {document['status']})")


_EVIDENCE_COLUMNS = ["recipient_id", "address_key", "channel", "decision", "reason", "provider_message_id", "at"]


def _export_deliveries(
    target: Target,
    notice_id: str,
    out: Path | None,
    decisions: tuple[str, ...],
    deliveries: notice_reports.Deliveries | None,
) -> int:
    """Read every page of the notice's delivery rows once: each row into ``deliveries`` (for the visual
    report), and those with one of ``decisions`` (all if none) as CSV into ``out``. The CSV rows written."""
    rows = 0
    token: str | None = None
    with contextlib.ExitStack() as files:
        writer = None
        if out is not None:
            handle = files.enter_context(out.open("w", newline="", encoding="utf-8"))
            writer = ExportWriter(handle, fieldnames=_EVIDENCE_COLUMNS)  # cells are neutralised against formulas
            writer.writeheader()
        while True:
            query = {"limit": 1000, **({"next_token": token} if token else {})}
            page = target.admin().ok("GET", f"/admin/notices/{notice_id}/deliveries", query=query)
            for item in page["items"]:
                if deliveries is not None:
                    deliveries.add(item)
                if writer is None or (decisions and _decision_of(item) not in decisions):
                    continue
                writer.writerow({c: item.get(c) or "" for c in _EVIDENCE_COLUMNS})
                rows += 1
            token = page.get("next_token")
            if not token:
                break
    return rows


def _art33(notice_id: str, out: Path | None, html: str | None, decisions: tuple[str, ...], target: Callable[[], Target],
           as_json: bool) -> None:  # fmt: skip
    """The authority report of a breach alert: Markdown, or HTML with --html, to a file or stdout."""
    if decisions:
        raise click.UsageError("--decision filters the CSV evidence; the art33 report covers every decision")
    destination = out
    if html not in (None, "-"):
        if out is not None and out != Path(str(html)):
            raise click.UsageError("--html FILE and --out name two files for one report: give one of them")
        destination = Path(str(html))
    if as_json and destination is None:
        raise click.UsageError("--json prints the notice: write the art33 report to a file with --out")
    document = target().admin().ok("GET", f"/admin/notices/{notice_id}")
    render = notice_reports.art33_html if html is not None else notice_reports.art33_markdown
    try:
        text = render(document, datetime.now(UTC))
    except notice_reports.NotABreachAlert as exc:
        raise click.ClickException(str(exc)) from None
    if destination is None:
        click.echo(text, nl=False)
        return
    destination.write_text(text, encoding="utf-8")
    if as_json:
        written = {"path": str(destination), "format": "art33", "html": html is not None}
        click.echo(json.dumps({**document, "report": written}, indent=2))
    else:
        kind = "HTML" if html is not None else "Markdown"
        click.echo(f"art33 report ({kind}) written to {destination} (notice {notice_id}, {document['status']})")
