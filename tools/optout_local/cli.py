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
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import click

from optout.errors import InvalidAddress
from optout.identity import CHANNELS, Identity
from optout.suppression import SuppressionState
from optout.token import issue
from optout_local.stack import LocalConfig, LocalStack
from optout_local.target import resolve_target

stack_option = click.option("--stack", "stack_name", help="A deployed stack's name (default: the local stack).")


@click.group()
def main() -> None:
    """optout: the notification and opt-out pipeline, locally and deployed."""


@main.command()
@click.option("--api-port", type=int, help="Gateway port (env OPTOUT_API_PORT, default 3000).")
@click.option("--aws-port", type=int, help="Embedded moto port (env OPTOUT_AWS_PORT, default 5000).")
@click.option("--region", help="AWS region (env OPTOUT_REGION, default us-east-1).")
@click.option("--template", type=click.Path(exists=True, path_type=Path), help="Template (default: template.yaml).")
@click.option("-v", "--verbose", is_flag=True, help="Log every request.")
def local(api_port: int | None, aws_port: int | None, region: str | None, template: Path | None, verbose: bool) -> None:
    """Run the whole stack on this machine until Ctrl-C or SIGTERM."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, stream=sys.stderr)
    defaults = LocalConfig()
    config = LocalConfig(
        api_port=api_port or defaults.api_port,
        aws_port=aws_port or defaults.aws_port,
        region=region or defaults.region,
        template=template,
    )
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
        stack.start()
        click.echo(f"ready: api={config.api_url} aws={config.aws_url}")
        sys.stdout.flush()
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
        click.echo("stopped", err=True)


@main.command()
@click.argument("channel", type=click.Choice(CHANNELS))
@click.argument("address")
@click.option("--topic", required=True, help="The topic the link unsubscribes from.")
@stack_option
def link(channel: str, address: str, topic: str, stack_name: str | None) -> None:
    """Print an unsubscribe URL for ADDRESS carrying a signed token."""
    target = resolve_target(stack_name)
    if target.settings.topic(topic) is None:
        raise click.BadParameter(f"unknown topic; configured: {', '.join(t.name for t in target.settings.topics)}")
    identity = _identity(target.pepper(), channel, address)
    token = issue(target.key_ring(), identity.channel, identity.key, topic)
    click.echo(f"{target.base_url}/unsubscribe?{urlencode({'token': token})}")


@main.group()
def suppression() -> None:
    """Look at and change suppression state."""


@suppression.command("show")
@click.argument("channel", type=click.Choice(CHANNELS))
@click.argument("address")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@stack_option
def suppression_show(channel: str, address: str, as_json: bool, stack_name: str | None) -> None:
    """Show the suppression state and consent history of ADDRESS."""
    target = resolve_target(stack_name)
    identity = _identity(target.pepper(), channel, address)
    state = target.store.get(identity.key) or SuppressionState(address_key=identity.key, channel=identity.channel)
    report = suppression_report(state, target.store.history(identity.key))
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    blocked = report["blocked"]
    blocked_text = "no" if blocked is None else "{reason} ({source}, {at})".format(**blocked)
    click.echo(f"address key  {identity.key}")
    click.echo(f"blocked      {blocked_text}")
    click.echo(f"all optional {'opted out' if report['all_optional'] else 'no'}")
    click.echo(f"topics       {', '.join(report['topics']) or '-'}")
    for event in report["events"]:
        click.echo(f"  {event['at']}  {event['action']:<8} {event['scope']:<10} via {event['source']}")


def suppression_report(state: SuppressionState, events: list[Any]) -> dict[str, Any]:
    return {
        "channel": state.channel,
        "address_key": state.address_key,
        "blocked": state.blocked.model_dump(mode="json") if state.blocked else None,
        "all_optional": state.all_optional,
        "topics": sorted(state.topics),
        "version": state.version,
        "updated_at": state.updated_at.isoformat() if state.updated_at else None,
        "events": [e.model_dump(mode="json") for e in events],
    }


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
@click.option("--via", type=click.Choice(["twilio", "sns"]), default="twilio", show_default=True)
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
    from optout_local.target import deployed_queues
    from optout_local.template import load_template

    name = stack_name or os.environ.get("OPTOUT_STACK")
    if name:
        sqs, refs, attrs = deployed_queues(name)
        return sqs, dead_letter_queues(refs, attrs, load_template()), False
    config = LocalConfig()
    stack = config.locate()
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
    """Move QUEUE's messages (e.g. SendDeadLetterQueue) back to the queue they came from."""
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


def _register() -> None:
    from optout_local.notice_cli import notice

    main.add_command(notice)


_register()


def _identity(pepper: bytes, channel: str, address: str) -> Identity:
    try:
        return Identity.of(pepper, channel, address)  # type: ignore[arg-type]
    except InvalidAddress as exc:
        raise click.BadParameter(exc.message, param_hint="ADDRESS") from exc
