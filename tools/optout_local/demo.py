"""``make demo``: a scripted scenario on a fresh local stack, with both reports at the end.

1,000 users; 100 unsubscribe from product mail with the one-click link, 30 addresses bounce,
50 people text STOP. Then a policy-change notice to everyone and a breach alert to the 200
users the breach touched, each followed to completion and reported.
"""

from __future__ import annotations

import csv
import json
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import requests

from optout.core.identity import Identity
from optout.suppression.consent import change_consent
from optout.suppression.model import ConsentChange
from optout.unsubscribe.token import issue
from optout_local.simulate import via_twilio
from optout_local.stack import LocalConfig, LocalStack, free_port
from optout_local.target import Target, local_target

LOCALES = ["en", "en", "en", "es"]
ZONES = ["America/New_York", "America/Los_Angeles", "Europe/Madrid", "Europe/London"]


def users(n: int, seed: int = 7) -> list[dict[str, str]]:
    rng = random.Random(seed)  # noqa: S311 - a reproducible demo population, not a secret  # nosec B311
    people = []
    for i in range(1, n + 1):
        phone = f"+1415555{i:04d}" if rng.random() < 0.4 else ""
        people.append({
            "recipient_id": f"user-{i:04d}", "email": f"user{i:04d}@example.com", "phone": phone,
            "locale": rng.choice(LOCALES), "timezone": rng.choice(ZONES), "name": f"User {i}",
        })  # fmt: skip
    return people


def write_manifest(path: Path, people: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(people[0]))
        writer.writeheader()
        writer.writerows(people)
    return path


def prepare(target: Target, people: list[dict[str, str]], echo: Any) -> dict[str, int]:
    ring, pepper = target.key_ring(), target.pepper()
    session = requests.Session()
    for person in people[:100]:  # one-click unsubscribes from product mail, through the gateway
        key = Identity.of(pepper, "email", person["email"]).key
        url = f"{target.base_url}/unsubscribe?token={issue(ring, 'email', key, 'product')}"
        session.post(url, data={"List-Unsubscribe": "One-Click"}, timeout=10).raise_for_status()
    echo("  100 users unsubscribed from product mail (one-click POSTs to the local gateway)")
    for person in people[100:130]:  # hard bounces, recorded as the Feedback function records them
        key = Identity.of(pepper, "email", person["email"]).key
        change_consent(target.store, key, "email", [ConsentChange("block", "channel", "bounce")],
                       target.settings.optional_topics, "bounce", evidence={"bounce_type": "Permanent"})  # fmt: skip
    echo("  30 addresses hard-bounced (email blocked)")
    texters = [p for p in people if p["phone"]][:50]
    for person in texters:  # STOP through the signed Twilio-style webhook
        via_twilio(target, person["phone"], "+14155550100", "STOP")
    echo(f"  {len(texters)} users texted STOP (signed webhooks)")
    return {"product_opt_outs": 100, "bounced": 30, "stopped": len(texters)}


def follow(target: Target, notice_id: str, echo: Any) -> dict[str, Any]:
    while True:
        document: dict[str, Any] = target.admin().ok("GET", f"/admin/notices/{notice_id}")
        if document["status"] in ("complete", "complete_with_failures", "failed"):
            return document
        time.sleep(0.5)


def report(document: dict[str, Any]) -> list[str]:
    counts = document["counts"]
    lines = [
        f"{document['kind']} {document['id']}: {document['status']}, {document['total']} recipients",
        "  by recipient: " + ", ".join(f"{k} {v}" for k, v in sorted(counts["recipients"].items()) if v),
    ]
    for channel, by in sorted(counts["by_channel"].items()):
        lines.append(f"  {channel}: " + ", ".join(f"{k} {v}" for k, v in sorted(by.items()) if v))
    if document.get("breach"):
        b = document["breach"]
        lines.append(
            f"  breach discovered {b['discovered_at']}, first sent {b.get('first_sent_at')}, "
            f"{b.get('hours_to_notify')} h to notify, within 72 h: {b.get('all_reachable_notified_within_72h')}"
        )
    return lines


def run(echo: Any = click.echo, n: int = 1000) -> dict[str, Any]:
    # A fresh stack of its own (free ports, state in memory); the functions' logs go to stderr
    config = LocalConfig(api_port=free_port(), aws_port=free_port(), state_dir=None)
    stack = LocalStack(config, logs=sys.stderr)
    started = time.perf_counter()
    stack.start()
    try:
        echo(f"local stack: api={config.api_url} aws={config.aws_url}")
        target = local_target(config)
        people = users(n)
        prepared = prepare(target, people, echo)
        with tempfile.TemporaryDirectory() as tmp:
            everyone = write_manifest(Path(tmp) / "users.csv", people)
            affected = write_manifest(Path(tmp) / "affected.csv", people[::5])
            bucket = target.bucket
            target.clients("s3").upload_file(str(everyone), bucket, "demo/users.csv")
            target.clients("s3").upload_file(str(affected), bucket, "demo/affected.csv")
        today = datetime.now(UTC).date()  # the policy dated today, in force in 30 days
        effective = (today + timedelta(days=30)).isoformat()
        policy = target.admin().ok("POST", "/admin/notices", body={
            "kind": "policy_change", "manifest": f"s3://{bucket}/demo/users.csv",
            "variables": {"policy_version": today.isoformat(), "effective_date": effective,
                          "summary": "We now keep access logs for 30 days instead of 90.",
                          "policy_url": "https://example.com/privacy"},
        })  # fmt: skip
        echo(f"policy-change notice {policy['id']} queued")
        # The breach came to light 30 hours ago: the report says whether everyone was told within 72 h
        discovered = (datetime.now(UTC) - timedelta(hours=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
        breach = target.admin().ok("POST", "/admin/notices", body={
            "kind": "breach_alert", "manifest": f"s3://{bucket}/demo/affected.csv",
            "variables": {"discovered_at": discovered,
                          "nature": "An unauthorised party read a backup of our support database.",
                          "data_categories": ["email address", "support messages"],
                          "likely_consequences": "Phishing emails that quote your support requests.",
                          "measures_taken": "We revoked the credentials and rotated every key.",
                          "contact": "privacy@example.com"},
        })  # fmt: skip
        echo(f"breach alert {breach['id']} queued")
        results = {"policy": follow(target, policy["id"], echo), "breach": follow(target, breach["id"], echo)}
        echo("")
        for document in results.values():
            for line in report(document):
                echo(line)
        echo(f"\nelapsed {time.perf_counter() - started:.1f} s; prepared {json.dumps(prepared)}")
        return results
    finally:
        stack.stop()
