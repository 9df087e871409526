"""``optout compliance``: prove the opt-out clocks were kept."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from optout_local import compliance_report, notice_reports
from optout_local.admin_client import refusal
from optout_local.notice_cli import list_all
from optout_local.target import resolve_target

BREACHES_FOUND = 4  # apart from 1, which says the report could not be made
PAGE_ATTEMPTS = 4  # a page the admin API could not serve (5xx, throttled) is asked again


@click.group()
def compliance() -> None:
    """Compliance evidence: time to honour every opt-out, against each rule's clock."""


@compliance.command("report")
@click.option(
    "--since", type=click.DateTime(), help="Opt-outs received at or after this date (UTC); default 30 days ago."
)
@click.option("--json", "as_json", is_flag=True, help="Print the whole report, every opt-out included, as JSON.")
@click.option("--html", type=click.Path(dir_okay=False, path_type=Path), help="Also write the report as one HTML file.")
@click.option("--stack", "stack_name", help="A deployed stack's name (default: the local stack).")
@click.option("--config-env", help="A samconfig.toml environment (dev, staging, prod) naming the deployed stack.")
def report(since: datetime | None, as_json: bool, html: Path | None, stack_name: str | None,
           config_env: str | None) -> None:  # fmt: skip
    """For every opt-out since a date: its source, when it was received and in force, and every send to
    that address after it; the time to honour as p50, p99 and max against Gmail/Yahoo's 2 days and
    CAN-SPAM's and the FCC's 10 business days, with every breach; the reach of required notices.

    Exits 4 when any clock was broken or anything was sent after an opt-out was in force (1: the
    report could not be made).
    """
    now = datetime.now(UTC)
    start = (since.replace(tzinfo=UTC) if since and since.tzinfo is None else since) or now - timedelta(days=30)
    target = resolve_target(stack_name, config_env)
    admin = target.admin()

    def page(token: str | None) -> dict[str, Any]:
        query = {"since": start.isoformat(), **({"next_token": token} if token else {})}
        failure = click.ClickException("the admin API could not serve this page")
        for attempt in range(PAGE_ATTEMPTS):
            if attempt:
                time.sleep(min(8.0, 0.5 * 2**attempt))  # the same page again: nothing read so far is lost
            try:
                status, answer = admin.request("GET", "/admin/compliance/opt-outs", query=query)
            except click.ClickException as exc:  # unreachable, or no answer in time: try again
                failure = exc
                continue
            if status < 400:
                return dict(answer)
            failure = refusal(status, answer)
            if status < 500 and status != 429:
                break  # refused: asking again changes nothing
        raise failure

    def progress(addresses: int, found: int) -> None:
        if sys.stderr.isatty():
            click.echo(f"\r{addresses:,} addresses read, {found:,} opt-outs", nl=False, err=True)

    entries, _ = compliance_report.gather(page, progress)
    if sys.stderr.isatty():
        click.echo("", err=True)
    document = compliance_report.build(entries, list_all(target, start), start, now)
    sections = compliance_report.document(document)
    if html is not None:
        html.write_text(notice_reports.report_html(sections), encoding="utf-8")
    if as_json:
        click.echo(json.dumps(document, indent=2))
    else:
        click.echo(notice_reports.report_markdown(sections), nl=False)
        if html is not None:
            click.echo(f"\nHTML report written to {html}")
    if document["breaches"] or document["sends_after_in_force"]:
        sys.exit(BREACHES_FOUND)
