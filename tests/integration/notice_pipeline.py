"""A notice pipeline on moto for tests: the admin API, dispatcher and sender, driven through their handlers."""

from __future__ import annotations

import email
import json
from datetime import UTC, datetime, timedelta
from email.policy import default as email_policy
from typing import Any

import boto3

from optout import wiring
from optout.core.identity import Identity
from optout.core.settings import get_settings
from optout.suppression.consent import change_consent
from optout.suppression.model import ConsentChange
from optout.suppression.store import DynamoSuppressionStore
from optout_local.gateway import build_event, compile_route
from optout_local.iam import in_process
from optout_local.provision import ACCOUNT_ID, Route, Stack
from optout_local.runtime import LambdaContext, context_for, load_handler

POLICY = {
    "policy_version": "2026-12-01",
    "effective_date": "2026-12-31",
    "summary": "We now keep access logs for 30 days instead of 90.",
    "policy_url": "https://example.com/privacy",
}
BREACH = {
    "discovered_at": (datetime.now(UTC) - timedelta(hours=5)).isoformat(),
    "nature": "An unauthorised party read a backup of our support database.",
    "data_categories": ["email address", "support messages"],
    "likely_consequences": "You may receive phishing emails that quote your support requests.",
    "measures_taken": "We revoked the leaked credentials and rotated every key.",
    "contact": "privacy@example.com",
}


class Pipeline:
    def __init__(self, stack: Stack, ctx: LambdaContext) -> None:
        self.stack = stack
        self.ctx = ctx
        self.admin = load_handler(stack.function("AdminApi"))
        self.dispatcher = load_handler(stack.function("Dispatcher"))
        self.sender = load_handler(stack.function("Sender"))
        self.bucket = stack.ref("ManifestBucket")

    def sender_context(self) -> LambdaContext:
        """A context for one sender invocation: its own deadline, the function's Timeout from now."""
        return context_for(self.stack.function("Sender"), "us-east-1")

    def manifest(self, rows: list[str], name: str = "users.csv") -> str:
        body = "recipient_id,email,phone,locale,timezone,name\n" + "\n".join(rows) + "\n"
        boto3.client("s3").put_object(Bucket=self.bucket, Key=name, Body=body.encode())
        return f"s3://{self.bucket}/{name}"

    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        route: str | None = None,
        params: dict[str, str] | None = None,
        query: str = "",
    ) -> tuple[int, Any]:
        compiled = compile_route(Route(method, route or path, "AdminApiFunction", "AWS_IAM"))
        raw = json.dumps(body).encode() if body is not None else b""
        header_list = [("Host", "x"), ("Content-Type", "application/json"), *(headers or {}).items()]
        event = build_event(
            compiled, params or {}, method, path, query, header_list, raw, "10.0.0.1", "us-east-1", "testing"
        )
        response = self.admin(event, self.ctx)
        return response["statusCode"], json.loads(response["body"])

    def create(self, kind: str, variables: dict[str, Any], manifest: str, **extra: Any) -> dict[str, Any]:
        status, body = self.api(
            "POST", "/admin/notices", {"kind": kind, "variables": variables, "manifest": manifest, **extra}
        )
        assert status == 202, body
        return body

    def get(self, notice_id: str) -> dict[str, Any]:
        status, body = self.api(
            "GET", f"/admin/notices/{notice_id}", route="/admin/notices/{notice_id}", params={"notice_id": notice_id}
        )
        assert status == 200, body
        return body

    def receive(self, queue: str) -> list[dict[str, Any]]:
        """A batch as the queue's event source mapping receives it (with its function's role), deleted."""
        return in_process.installed().poll(queue, delete=True)

    def run(self, notice_id: str, remaining_ms: int = 900_000) -> None:
        """Play the event source mappings until both queues are empty, then finalize."""
        self.ctx.timeout_seconds = remaining_ms / 1000
        for _ in range(200):
            records = self.receive("DispatchQueue")
            records = [r for r in records if json.loads(r["body"]).get("action") != "finalize"]
            for record in records:
                assert self.dispatcher({"Records": [record]}, LambdaContext(timeout_seconds=remaining_ms / 1000)) == {
                    "batchItemFailures": []
                }
            sends = self.receive("SendQueue")
            for record in sends:
                assert self.sender({"Records": [record]}, self.sender_context()) == {"batchItemFailures": []}
            if not records and not sends:
                break
        with in_process.installed().running("DispatcherFunction"):  # finalizing is the dispatcher's, with its role
            wiring.dispatcher().finalize(notice_id, 0)


def sent_mail() -> list[email.message.EmailMessage]:
    from moto.ses.models import ses_backends

    messages = ses_backends[ACCOUNT_ID]["us-east-1"].sent_messages
    return [email.message_from_string(m.raw_data, policy=email_policy) for m in messages]  # type: ignore[misc]


def suppress(channel: str, address: str, changes: list[ConsentChange], source: str = "admin") -> None:
    key = Identity.of(wiring.pepper(), channel, address).key  # type: ignore[arg-type]
    store = DynamoSuppressionStore(get_settings().suppression_table)
    change_consent(store, key, channel, changes, get_settings().optional_topics, source)  # type: ignore[arg-type]


def users(n: int, start: int = 0) -> list[str]:
    return [f"u{i},user{i}@example.com,,en,America/New_York,User {i}" for i in range(start, start + n)]
