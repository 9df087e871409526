"""The ``optout`` command: run the local stack and administer a local or deployed stack."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import click

from optout.core.errors import InvalidAddress
from optout.core.identity import CHANNELS, Identity
from optout_local.admin_client import refusal
from optout_local.stack import LocalConfig, LocalStack
from optout_local.target import resolve_target

stack_option = click.option("--stack", "stack_name", help="A deployed stack's name (default: the local stack).")


@click.group(context_settings={"max_content_width": 120, "terminal_width": 120})  # help is never cut short
@click.version_option(package_name="optout", prog_name="optout", message="%(prog)s %(version)s")
def main() -> None:
    """optout: the notification and opt-out pipeline, locally and deployed."""


@main.command()
@click.option("--api-port", type=int, help="Gateway port (env OPTOUT_API_PORT, default 3000).")
@click.option("--aws-port", type=int, help="Embedded moto port (env OPTOUT_AWS_PORT, default 5000).")
@click.option("--region", help="AWS region (env OPTOUT_REGION, default us-east-1).")
@click.option("--template", type=click.Path(exists=True, path_type=Path), help="Template (default: template.yaml).")
@click.option("-v", "--verbose", is_flag=True, help="Log every request.")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="OPTOUT_STATE_DIR",
    help="Where the stack keeps its state between runs (env OPTOUT_STATE_DIR, default .optout-state/).",
)
@click.option("--fresh", is_flag=True, help="Start empty: discard the saved state and import progress.")
def local(
    api_port: int | None,
    aws_port: int | None,
    region: str | None,
    template: Path | None,
    verbose: bool,
    state_dir: Path | None,
    fresh: bool,
) -> None:
    """Run the whole stack on this machine until Ctrl-C or SIGTERM; its state survives a restart."""
    from optout_local.state import DEFAULT_STATE_DIR, StateBusy, StateDir

    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, stream=sys.stderr)
    defaults = LocalConfig()
    folder = state_dir or DEFAULT_STATE_DIR
    config = LocalConfig(
        api_port=api_port or defaults.api_port,
        aws_port=aws_port or defaults.aws_port,
        region=region or defaults.region,
        template=template,
        state_dir=folder,
        fresh=fresh,
    )
    try:  # before the port check: a second stack on this folder is told so, whichever started first
        state = StateDir.open(folder, {"api": config.api_url, "aws": config.aws_url})
    except StateBusy as exc:
        raise click.ClickException(str(exc)) from None
    for port in (config.api_port, config.aws_port):
        with socket.socket() as probe:
            if probe.connect_ex((config.host, port)) == 0:
                raise click.ClickException(f"port {port} is already in use (is another local stack running?)")

    # The handler raises rather than setting an Event: Event.set inside a signal handler
    # deadlocks when the main thread is waiting on the same Event.
    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    logging.getLogger("werkzeug").setLevel(logging.DEBUG if verbose else logging.WARNING)
    stack = LocalStack(config)
    try:
        try:
            stack.start()
        except RuntimeError as exc:  # the moto process did not start (its own message is above)
            raise click.ClickException(str(exc)) from None
        click.echo(f"state: {'restored from' if state.restoring else 'kept in'} {state.path}", err=True)
        click.echo(f"ready: api={config.api_url} aws={config.aws_url}")
        sys.stdout.flush()
        while (exited := stack.moto_exit()) is None:  # nothing works without the local AWS: say so, stop
            time.sleep(0.5)
        pid, code = exited
        click.echo(f"optout: the local AWS (moto, pid {pid}) exited with code {code}; stopping the stack", err=True)
        raise SystemExit(1)
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
        click.echo("stopped", err=True)


@main.command()
@click.argument("channel", type=click.Choice(CHANNELS))
@click.argument("address")
@click.option("--topic", required=True, help="The optional topic the link unsubscribes from (e.g. product).")
@stack_option
def link(channel: str, address: str, topic: str, stack_name: str | None) -> None:
    """Print an unsubscribe URL for ADDRESS carrying a signed token (POST /admin/links)."""
    _identity(b"x" * 32, channel, address)  # a clear error for a bad address, before any request
    target = resolve_target(stack_name)
    status, answer = target.admin().request(
        "POST", "/admin/links", body={"channel": channel, "address": address, "topic": topic}
    )
    error = answer.get("error") if isinstance(answer, dict) else None
    if status == 422 and isinstance(error, dict) and error.get("code") in ("unknown_topic", "required_topic"):
        raise click.BadParameter(str(error.get("message")))  # as before the API: a usage error, exit 2
    if status >= 400:
        raise refusal(status, answer)
    click.echo(f"{target.base_url}/unsubscribe?{urlencode({'token': answer['token']})}")


@main.group()
def keys() -> None:
    """The signing keys of unsubscribe links."""


@keys.command("rotate")
@stack_option
def keys_rotate(stack_name: str | None) -> None:
    """Sign new links with a new key; the old one retires now and verifies for KeyGraceDays."""
    import secrets
    import string

    target = resolve_target(stack_name)
    client = target.clients("secretsmanager")
    ring = target.key_ring()
    numbers = [int(kid[1:]) for kid in ring.keys if kid[:1] == "k" and kid[1:].isdigit()]
    kid = f"k{max(numbers, default=0) + 1}"
    # As Secrets Manager generates the first key: 64 letters and digits
    key = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(64))
    now = datetime.now(UTC).replace(microsecond=0)
    rotated = ring.rotated(kid, key.encode(), now)
    client.put_secret_value(SecretId=target.signing_secret, SecretString=json.dumps(rotated.to_secret()))
    click.echo(
        f"{kid} signs new links; {ring.active} retired {now.isoformat()} and verifies links until "
        f"{(now + rotated.grace).isoformat()} (KeyGraceDays). Functions read the new ring within 5 minutes."
    )
    for undated in ring.undated():
        click.echo(f"warning: {undated} was rotated out without a retired date and verifies nothing", err=True)


@main.group()
def suppression() -> None:
    """Look at and change suppression state."""


@suppression.command("show")
@click.argument("channel", type=click.Choice(CHANNELS))
@click.argument("address")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@stack_option
def suppression_show(channel: str, address: str, as_json: bool, stack_name: str | None) -> None:
    """Show the suppression state and consent history of ADDRESS (POST /admin/suppressions/lookup)."""
    _identity(b"x" * 32, channel, address)  # a clear error for a bad address, before any request
    target = resolve_target(stack_name)
    report = target.admin().ok("POST", "/admin/suppressions/lookup", body={"channel": channel, "address": address})
    _print_report(report, as_json)


def _print_report(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    blocked = report["blocked"]
    blocked_text = "no" if blocked is None else "{reason} ({source}, {at})".format(**blocked)
    click.echo(f"address key  {report['address_key']}")
    click.echo(f"blocked      {blocked_text}")
    click.echo(f"all optional {'opted out' if report['all_optional'] else 'no'}")
    click.echo(f"topics       {', '.join(report['topics']) or '-'}")
    for event in report["events"]:
        who = f" by {event['actor']}" if event.get("actor") else ""
        click.echo(f"  {event['at']}  {event['action']:<11} {event['scope']:<10} via {event['source']}{who}")


def _change(
    verb: str, channel: str, address: str, scope: str, reason: str, stack_name: str | None, as_json: bool
) -> None:
    _identity(b"x" * 32, channel, address)
    target = resolve_target(stack_name)
    path = "/admin/suppressions" if verb == "add" else "/admin/suppressions/remove"
    report = target.admin().ok(
        "POST", path, body={"channel": channel, "address": address, "scope": scope, "reason": reason}
    )
    _print_report(report, as_json)


scope_option = click.option("--scope", required=True, help="channel, optional, or an optional topic name.")
reason_option = click.option("--reason", required=True, help="Why: recorded with who did it.")


@suppression.command("add")
@click.argument("channel", type=click.Choice(CHANNELS))
@click.argument("address")
@scope_option
@reason_option
@click.option("--json", "as_json", is_flag=True, help="Print the new state as JSON.")
@stack_option
def suppression_add(channel: str, address: str, scope: str, reason: str, as_json: bool, stack_name: str | None) -> None:
    """Suppress ADDRESS: block the channel, or opt it out of optional topics or one topic."""
    _change("add", channel, address, scope, reason, stack_name, as_json)


@suppression.command("remove")
@click.argument("channel", type=click.Choice(CHANNELS))
@click.argument("address")
@scope_option
@reason_option
@click.option("--json", "as_json", is_flag=True, help="Print the new state as JSON.")
@stack_option
def suppression_remove(
    channel: str, address: str, scope: str, reason: str, as_json: bool, stack_name: str | None
) -> None:
    """Lift a suppression (a consent event with who and why). A STOP can only be lifted by START."""
    _change("remove", channel, address, scope, reason, stack_name, as_json)


@suppression.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["ses", "sendgrid", "csv"]),
    required=True,
    help=(
        "ses: SES suppressed destinations (CSV or JSON); sendgrid: a bounce, spam or unsubscribe export; "
        "csv: channel,address,scope,reason."
    ),
)
@click.option("--restart", is_flag=True, help="Ignore saved progress and start from the first row.")
@stack_option
def suppression_import(file: Path, fmt: str, restart: bool, stack_name: str | None) -> None:
    """Import suppressions: an SES suppression list, SendGrid exports, or channel,address,scope,reason CSV.

    SendGrid bounces block the channel; its unsubscribes and spam reports opt out of optional mail.
    Rows go to POST /admin/suppressions/import in batches; a rerun resumes after the last one answered.
    """
    from optout_local.importer import Importer, progress_folder, snapshot_watch

    target = resolve_target(stack_name)
    total = max(0, sum(1 for _ in file.open(encoding="utf-8", errors="replace")) - (0 if fmt == "ses" else 1))
    admin = target.admin()
    importer = Importer(lambda rows: admin.ok("POST", "/admin/suppressions/import", body={"rows": rows}))
    with click.progressbar(length=total, label="importing", file=sys.stderr) as bar:
        report = importer.run(
            file, fmt, bar.update, resume=not restart, progress_dir=progress_folder(target),
            durable=snapshot_watch(target),
        )  # fmt: skip
    if report.resumed_from:
        click.echo(f"resumed after line {report.resumed_from}")
    click.echo(f"{report.read} rows read, {report.imported} imported, {report.unchanged} already suppressed, "
               f"{len(report.invalid)} invalid")  # fmt: skip
    for line, reason in report.invalid[:50]:
        click.echo(f"  line {line}: {reason}")
    if len(report.invalid) > 50:
        click.echo(f"  ... and {len(report.invalid) - 50} more")


@suppression.command("export")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="CSV file to write.")
@stack_option
def suppression_export(out: Path, stack_name: str | None) -> None:
    """Write every suppression: address keys (never addresses), scopes, reasons and times.

    Read a page at a time from GET /admin/suppressions/export.
    """
    from optout.suppression.bulk import EXPORT_COLUMNS
    from optout_local.csv_export import ExportWriter

    admin = resolve_target(stack_name).admin()
    count = 0
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = ExportWriter(handle, fieldnames=list(EXPORT_COLUMNS))  # cells are neutralised against formulas
        writer.writeheader()
        query: dict[str, Any] = {"limit": 500}
        while True:
            page = admin.ok("GET", "/admin/suppressions/export", query=query)
            for row in page["items"]:
                writer.writerow(row)
                count += 1
            if not page["next_token"]:
                break
            query["next_token"] = page["next_token"]
    click.echo(f"{count} suppressions written to {out}")


@main.group()
def subject() -> None:
    """Data subject requests."""


@subject.command("export")
@click.argument("channel", type=click.Choice(CHANNELS))
@click.argument("address")
@stack_option
def subject_export(channel: str, address: str, stack_name: str | None) -> None:
    """Every consent event and delivery record for ADDRESS, as JSON to hand to the person.

    Read from POST /admin/subjects/export (the deliveries a page at a time).
    """
    _identity(b"x" * 32, channel, address)  # a clear error for a bad address, before any request
    admin = resolve_target(stack_name).admin()
    body: dict[str, Any] = {"channel": channel, "address": address}
    first = page = admin.ok("POST", "/admin/subjects/export", body=body)
    deliveries: list[dict[str, Any]] = list(page["deliveries"])
    while page["next_token"]:  # the deliveries come a page at a time
        body["next_token"] = page["next_token"]
        page = admin.ok("POST", "/admin/subjects/export", body=body)
        deliveries += page["deliveries"]
    document = {
        "subject": {"channel": channel, "address": address, "address_key": first["subject"]["address_key"]},
        "suppression": first["suppression"],
        "deliveries": deliveries,
        "erasures": first["erasures"],
        "generated_at": datetime.now(UTC).isoformat(),
    }
    click.echo(json.dumps(document, indent=2))


@subject.command("erase")
@click.argument("channel", type=click.Choice(CHANNELS))
@click.argument("address")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@stack_option
def subject_erase(channel: str, address: str, as_json: bool, stack_name: str | None) -> None:
    """Erase ADDRESS's personal data, keeping its hashed opt-outs (POST /admin/subjects/erase)."""
    _identity(b"x" * 32, channel, address)  # a clear error for a bad address, before any request
    target = resolve_target(stack_name)
    admin = target.admin()
    removed: dict[str, int] = {}
    for _ in range(10_000):  # a call stops near its deadline (complete false): the next carries on
        result = admin.ok("POST", "/admin/subjects/erase", body={"channel": channel, "address": address})
        for name, count in result["erasure"]["removed"].items():
            removed[name] = removed.get(name, 0) + count
        if result["complete"]:
            break
    result["removed"] = removed  # over every call
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    erasure = result["erasure"]
    click.echo(f"address key  {result['address_key']}")
    click.echo(f"erased       {erasure['at']} by {erasure['actor']}")
    for name, count in removed.items():
        click.echo(f"  {name.replace('_', ' '):<26} {count}")
    kept = result["kept"]
    click.echo(f"kept         suppression state (version {kept['version']}) and {len(kept['events'])} consent events")


@main.command("invoke")
@click.argument("function")
@click.option("--event", "event_file", type=click.File("r", encoding="utf-8"), required=True, help="Event JSON file.")
@click.option("--token", help="Put this token in the event's query string.")
def invoke_command(function: str, event_file: Any, token: str | None) -> None:
    """Run FUNCTION once with an event, on the running local stack or a fresh embedded moto."""
    from optout_local.invoke import invoke_once

    event = json.load(event_file)
    if token is not None:
        event.setdefault("queryStringParameters", {})["token"] = token
        event["rawQueryString"] = urlencode(event["queryStringParameters"])
    try:
        result = invoke_once(function, event, LocalConfig())
    except KeyError as exc:
        raise click.ClickException(str(exc.args[0])) from exc
    click.echo(json.dumps(result, indent=2, default=str))


@main.group()
def sms() -> None:
    """Inbound SMS tools."""


@sms.command("simulate")
@click.option("--from", "from_number", required=True, help="The sender's number, E.164.")
@click.option("--body", required=True, help="The text of the message.")
@click.option("--to", "to_number", default="+14155550100", show_default=True, help="Our number it was sent to.")
@click.option(
    "--via",
    type=click.Choice(["twilio", "sns"]),
    default="twilio",
    show_default=True,
    help="The signed Twilio webhook, or End User Messaging's SNS topic.",
)
@click.option("--wait", default=15.0, show_default=True, help="Seconds to wait for the queue path.")
@stack_option
def sms_simulate(from_number: str, body: str, to_number: str, via: str, wait: float, stack_name: str | None) -> None:
    """Send an inbound SMS as a carrier would: a signed Twilio webhook, or End User Messaging via SNS."""
    from optout_local import simulate

    target = resolve_target(stack_name)
    if via == "twilio":
        outcome = simulate.via_twilio(target, from_number, to_number, body)
    else:
        outcome = simulate.via_sns(target, from_number, to_number, body, wait)
    for line in outcome:
        click.echo(line)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: {email: [...], sms: [...]}.")
@click.option("--last", type=int, default=20, show_default=True, help="Show only the last N of each (0: all).")
def outbox(as_json: bool, last: int) -> None:
    """Show what the local stack has sent (SES email and SNS SMS), oldest first."""
    from email import message_from_string
    from email.policy import default as email_policy

    from optout_local import simulate

    sms_sent = simulate.outbox(kind="sms")
    mail_sent = simulate.outbox(kind="email")
    if as_json:
        click.echo(json.dumps({"email": mail_sent, "sms": sms_sent}, indent=2))
        return
    for mail in mail_sent[-last:] if last else mail_sent:
        parsed = message_from_string(mail["raw"], policy=email_policy)
        click.echo(f"email {parsed['To']}  {parsed['Subject']}")
    for message in sms_sent[-last:] if last else sms_sent:
        click.echo(f"sms   {message['to']}  {message['body']}")
    click.echo(f"({len(mail_sent)} emails, {len(sms_sent)} texts sent in all)")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Every segment as JSON, as the X-Ray daemon received it.")
@click.option("--last", type=int, default=20, show_default=True, help="Show the last N traces (0: all).")
def traces(as_json: bool, last: int) -> None:
    """Show the X-Ray traces the local stack's functions recorded (tracing as the template sets it)."""
    from optout_local import simulate
    from optout_local.xray import render

    segments = simulate.local_view("traces")
    if last:
        kept = list(dict.fromkeys(str(s.get("trace_id")) for s in segments))[-last:]
        segments = [s for s in segments if str(s.get("trace_id")) in set(kept)]
    if as_json:
        click.echo(json.dumps(segments, indent=2))
        return
    for line in render(segments):
        click.echo(line)
    click.echo(f"({len({s.get('trace_id') for s in segments})} traces, {len(segments)} segments)")


@main.group()
def iam() -> None:
    """The functions' IAM roles, as the local AWS enforces them."""


@iam.command("report")
@click.option(
    "--usage", "folder", type=click.Path(path_type=Path, file_okay=False),
    help="A folder of usage records (OPTOUT_IAM_USAGE, as `make test` writes). Default: the running local stack.",
)  # fmt: skip
@click.option("--check", is_flag=True, help="Exit 1 if a grant went unused and the template's Metadata says not why.")
@click.option("--json", "as_json", is_flag=True, help="The grants and their use as JSON.")
def iam_report(folder: Path | None, check: bool, as_json: bool) -> None:
    """Per function: what its role grants, and which calls used each grant."""
    from dataclasses import asdict

    from optout_local.iam import report
    from optout_local.iam.enforce import Used, read_usage
    from optout_local.template import load_template

    if folder is not None:
        calls, roles = read_usage(folder)
    else:
        config = LocalConfig()
        try:
            view = requests_json(f"{config.aws_url}/_local/iam")
        except OSError as exc:
            raise click.ClickException(
                f"no local stack answers at {config.aws_url}; start one with `make run`"
            ) from exc
        calls = [Used(**{k: v for k, v in row.items() if k != "calls"}) for row in view["usage"]]
        roles = view["roles"]
    from optout_local.iam.roles import template_digest

    template = load_template()
    digest = template_digest(template)  # calls of roles from edited copies of the template (tests) are left out
    calls = [c for c in calls if c.template in (digest, "")]
    grants = report.build(roles, calls, template)
    if as_json:
        click.echo(json.dumps([{**asdict(g), "name": g.name, "used": g.used} for g in grants], indent=2, default=str))
    else:
        click.echo(report.render(grants, calls))
    unexplained = report.unexplained(grants)
    if not roles:
        click.echo("no calls recorded: run the stack (or the tests) first", err=True)
    if check and (unexplained or not roles):
        for grant in unexplained:
            click.echo(f"unused grant without a reason: {grant.function} {grant.name} [{grant.resource}]", err=True)
        raise SystemExit(1)


def requests_json(url: str) -> Any:
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as answer:  # noqa: S310 - the local stack's own endpoint  # nosec B310
        return json.loads(answer.read())


@main.command()
@click.option("--users", "n", default=1000, show_default=True, help="How many users the scenario has.")
def demo(n: int) -> None:
    """Run the scripted scenario on a fresh local stack and print both reports."""
    from optout_local import demo as scenario

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with contextlib.redirect_stdout(sys.stderr):  # function logs go to stderr; the reports to stdout
        results = scenario.run(echo=lambda line: click.echo(line, file=sys.__stdout__), n=n)
    if any(r["status"] != "complete" for r in results.values()):
        raise SystemExit(1)


@main.group()
def dlq() -> None:
    """Dead-letter queues: list what waits, redrive it once the cause is fixed."""


def _dead_letter_queues(stack_name: str | None) -> tuple[Any, list[Any], bool]:
    from optout_local.dlq import DeadLetterQueue, dead_letter_queues
    from optout_local.target import deployed_queues, locate_local
    from optout_local.template import load_template

    name = stack_name or os.environ.get("OPTOUT_STACK")
    if name:
        sqs, refs, attrs = deployed_queues(name)
        return sqs, dead_letter_queues(refs, attrs, load_template()), False
    config = LocalConfig()
    stack = locate_local(config)
    queues: list[DeadLetterQueue] = dead_letter_queues(
        stack.resolver.refs, stack.resolver.attrs, stack.resolver.template
    )
    return config.client("sqs"), queues, True


@dlq.command("list")
@stack_option
def dlq_list(stack_name: str | None) -> None:
    """Each DLQ's depth and a redacted sample message."""
    from optout_local.dlq import depth, sample

    sqs, queues, _ = _dead_letter_queues(stack_name)
    for queue in queues:
        count = depth(sqs, queue.url)
        peek = sample(sqs, queue.url) if count else None
        click.echo(f"{queue.name:<28} {count:>6}" + (f"  e.g. {peek}" if peek else ""))


@dlq.command("redrive")
@click.argument("queue")
@stack_option
def dlq_redrive(queue: str, stack_name: str | None) -> None:
    """Move QUEUE's messages (SendDeadLetterQueue, say) back to the queue they came from."""
    from optout_local.dlq import depth, redrive_in_aws, redrive_locally

    sqs, queues, local = _dead_letter_queues(stack_name)
    wanted = queue.lower().removesuffix("deadletterqueue").removesuffix("dlq")
    matches = [q for q in queues if q.name.lower().removesuffix("deadletterqueue") == wanted]
    if not matches:
        raise click.BadParameter(f"no such DLQ; have: {', '.join(q.name for q in queues)}", param_hint="QUEUE")
    (target,) = matches
    waiting = depth(sqs, target.url)
    if local:
        moved = redrive_locally(sqs, target)
        click.echo(f"moved {moved} message(s) from {target.name} back to their queue")
    else:
        handle = redrive_in_aws(sqs, target)
        click.echo(f"started a move task for about {waiting} message(s) from {target.name}: {handle}")


@main.command()
@click.option("--size", default=10_000, show_default=True, help="Recipients in the throughput notice.")
@click.option("--clients", default=20, show_default=True, help="Concurrent clients for the latency test.")
@click.option("--requests-per-client", default=50, show_default=True, help="Requests each latency client makes.")
@click.option("--runs", default=3, show_default=True, help="Throughput runs; the median is reported.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("bench/results.json"),
    show_default=True,
    help="Where the figures are written as JSON (the table goes to stdout).",
)
def bench(size: int, clients: int, requests_per_client: int, runs: int, out: Path) -> None:
    """Measure throughput, AWS calls per recipient, opt-out latency, cold start and cost."""
    from optout_local import bench as benchmarks

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    out.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.redirect_stdout(sys.stderr):
        benchmarks.run(
            size, clients, requests_per_client, out, echo=lambda line: click.echo(line, file=sys.__stdout__), runs=runs
        )


@main.command()
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("docs/openapi.json"),
    show_default=True,
    help="The file to write (make test fails when the committed one drifts).",
)
def openapi(out: Path) -> None:
    """Write the OpenAPI document Powertools generates from the functions' routes."""
    from optout_local.openapi import generate

    with contextlib.redirect_stdout(sys.stderr):
        text = generate()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    click.echo(f"wrote {out}")


@main.command()
@click.option("--recipients", default=5000, show_default=True, help="Recipients of the soak's notice.")
@click.option("--opt-outs", default=1000, show_default=True, help="One-clicks and STOPs, half before the notice.")
@click.option("--fault-rate", default=0.05, show_default=True, help="Share of AWS calls that fail.")
def soak(recipients: int, opt_outs: int, fault_rate: float) -> None:
    """Fault-injection soak: a notice and opt-outs under injected AWS faults, then the invariants."""
    from optout_local import soak as soak_test

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with contextlib.redirect_stdout(sys.stderr):
        result = soak_test.run(
            recipients, opt_outs, fault_rate, echo=lambda line: click.echo(line, file=sys.__stdout__)
        )
    broken = {k: v for k, v in result["invariants"].items() if v not in (0, True)}
    if broken:
        raise click.ClickException(f"invariants broken: {broken}")


def _register() -> None:
    from optout_local.compliance_cli import compliance
    from optout_local.notice_cli import notice

    main.add_command(notice)
    main.add_command(compliance)


_register()


def _identity(pepper: bytes, channel: str, address: str) -> Identity:
    try:
        return Identity.of(pepper, channel, address)  # type: ignore[arg-type]
    except InvalidAddress as exc:
        raise click.BadParameter(exc.message, param_hint="ADDRESS") from exc
