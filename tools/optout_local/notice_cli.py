"""``optout notice``: send policy-change, change-of-control, breach-alert, product and marketing notices."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from optout.notices.model import DECISIONS, FINAL_STATUSES
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
@click.option("--dry-run", is_flag=True, help="Decide everything, send nothing, report what would happen.")
@click.option("--wait", is_flag=True, help="Show progress until the notice completes.")
@click.option("--idempotency-key", help="Retrying with the same key returns the same notice.")
@click.option("--policy-version", help="policy-change: the new policy's version, e.g. 2026-12.")
@click.option("--effective-date", help="policy-change, change-of-control: when it takes effect, YYYY-MM-DD.")
@click.option("--summary", help="policy-change, change-of-control: what changes, in plain language.")
@click.option("--policy-url", help="policy-change: where the full policy is published.")
@click.option("--new-controller", help="change-of-control: who takes control (the merged or acquiring company).")
@click.option("--choices-url", help="change-of-control: where users export or delete their data before it.")
@click.option("--discovered-at", help="When the breach was discovered, ISO 8601 with a zone.")
@click.option("--nature")
@click.option("--data-categories", help="Comma-separated.")
@click.option("--likely-consequences")
@click.option("--measures-taken")
@click.option("--contact")
@click.option("--subject")
@click.option("--body-file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--sms-text")
@with_target
def send(kind: str, manifest: Path, channels: str | None, mode: str | None, dry_run: bool, wait: bool,
         idempotency_key: str | None, stack_name: str | None, config_env: str | None, as_json: bool,
         **variables: Any) -> None:  # fmt: skip
    """Upload MANIFEST, create the notice through the signed admin API, and (with --wait) follow it."""
    target = _target(stack_name, config_env)
    # Content-addressed, so a retried send (same file, same Idempotency-Key) makes the same request
    digest = hashlib.sha256(manifest.read_bytes()).hexdigest()[:24]
    key = f"manifests/{digest}/{manifest.name}"
    target.clients("s3").upload_file(str(manifest), target.bucket, key)
    request: dict[str, Any] = {
        "kind": KINDS[kind],
        "manifest": f"s3://{target.bucket}/{key}",
        "dry_run": dry_run,
        "variables": _variables(KINDS[kind], variables),
    }
    if channels or mode:
        request["channels"] = {"channels": [c.strip() for c in (channels or "email").split(",") if c.strip()]}
        if mode:
            request["channels"]["mode"] = mode
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    created = target.admin().ok("POST", "/admin/notices", body=request, headers=headers)
    if not as_json:
        label = "(dry run) " if dry_run else ""
        click.echo(f"notice {created['id']} {label}queued: {created['kind']} to {', '.join(created['channels'])}")
    result = _follow(target, created["id"], quiet=False) if wait else created
    _print(result, as_json)


def _variables(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    names: tuple[str, ...]
    if kind == "policy_change":
        names = ("policy_version", "effective_date", "summary", "policy_url")
    elif kind == "change_of_control":
        names = ("new_controller", "effective_date", "summary", "choices_url")
    elif kind == "breach_alert":
        names = ("discovered_at", "nature", "data_categories", "likely_consequences", "measures_taken", "contact")
    else:
        names = ("subject", "body_file", "sms_text")
    variables: dict[str, Any] = {}
    for name in names:
        value = options.get(name)
        if value is None:
            continue
        if name == "data_categories":
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
    return f"[{'#' * filled}{'.' * (width - filled)}] {of} {document['status']:<22} {parts}"


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
    click.echo(f"recipients  {document.get('total')} dispatched, {document.get('bad_rows', 0)} bad rows")
    for sample in document.get("bad_row_samples", [])[:10]:
        click.echo(f"  line {sample['line']}: {sample['reason']}")
    counts = document.get("counts", {})
    if counts.get("recipients"):
        click.echo("by recipient " + ", ".join(f"{k} {v}" for k, v in sorted(counts["recipients"].items()) if v))
    for channel, by in sorted(counts.get("by_channel", {}).items()):
        click.echo(f"  {channel:<6} " + ", ".join(f"{k} {v}" for k, v in sorted(by.items()) if v))
    for line in (_duplicates_line(counts), _unknown_line(counts, document["id"])):
        if line:
            click.echo(line)
    dry = document.get("dry_run_result")
    if dry:
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
    breach = document.get("breach")
    if breach:
        click.echo("breach      " + ", ".join(f"{k} {v}" for k, v in breach.items()))


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
@with_target
def status(notice_id: str, wait: bool, stack_name: str | None, config_env: str | None, as_json: bool) -> None:
    """Status and counts of a notice."""
    target = _target(stack_name, config_env)
    document = (
        _follow(target, notice_id, quiet=False) if wait else target.admin().ok("GET", f"/admin/notices/{notice_id}")
    )
    _print(document, as_json)


@notice.command("report")
@click.argument("notice_id")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="CSV file to write.")
@click.option(
    "--decision",
    "decisions",
    type=click.Choice(list(DECISIONS)),
    multiple=True,
    help="Only rows with this decision (repeatable), e.g. unknown: the sends to follow up by hand.",
)
@with_target
def report(notice_id: str, out: Path, decisions: tuple[str, ...], stack_name: str | None, config_env: str | None,
           as_json: bool) -> None:  # fmt: skip
    """Export the evidence: one row per recipient and channel."""
    target = _target(stack_name, config_env)
    document = target.admin().ok("GET", f"/admin/notices/{notice_id}")
    rows = 0
    token: str | None = None
    columns = ["recipient_id", "address_key", "channel", "decision", "reason", "provider_message_id", "at"]
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = ExportWriter(handle, fieldnames=columns)  # cells are neutralised against formulas
        writer.writeheader()
        while True:
            query = {"limit": 1000, **({"next_token": token} if token else {})}
            page = target.admin().ok("GET", f"/admin/notices/{notice_id}/deliveries", query=query)
            for item in page["items"]:
                if decisions and _decision_of(item) not in decisions:
                    continue
                writer.writerow({c: item.get(c) or "" for c in columns})
                rows += 1
            token = page.get("next_token")
            if not token:
                break
    if as_json:
        written = {"path": str(out), "rows": rows, **({"decisions": list(decisions)} if decisions else {})}
        click.echo(json.dumps({**document, "report": written}, indent=2))
    else:
        which = f" ({', '.join(decisions)})" if decisions else ""
        click.echo(f"{rows} delivery rows{which} written to {out} (notice {notice_id}, {document['status']})")
