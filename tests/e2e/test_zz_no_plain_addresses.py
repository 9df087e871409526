"""Runs after the other e2e tests on the same stack: nothing they did left an address in the output.

Every flow above (unsubscribe, SMS keywords by webhook and queue, notices, bounces, complaints,
suppression admin) ran on this stack; its whole stdout and stderr (function logs, metrics,
gateway errors) and every trace segment its functions sent to the X-Ray daemon stand-in must
hold no plain email address and no phone number.
"""

from __future__ import annotations

import json
import re
import time

import pytest
import requests

pytestmark = pytest.mark.e2e

EMAIL = re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
PHONE = re.compile(r"\+1415555\d{4}")
ALLOWED = {"notices@example.com", "support@example.com", "privacy@example.com"}  # the stack's own senders/contacts


def test_no_plain_email_or_phone_in_any_output_of_the_run(local_stack) -> None:
    time.sleep(0.5)  # let the drain thread catch up
    output = local_stack.log_path.read_text() + local_stack.stdout_path.read_text()  # type: ignore[attr-defined]
    assert '"message":"consent submitted"' in output or "consent submitted" in output  # the logs are really here
    emails = set(EMAIL.findall(output)) - ALLOWED
    phones = set(PHONE.findall(output))
    assert emails == set(), sorted(emails)[:10]
    assert phones == set(), sorted(phones)[:10]


def test_no_plain_email_or_phone_in_any_trace_of_the_run(local_stack) -> None:
    segments = requests.get(f"{local_stack.api_url}/_local/traces", timeout=30).json()
    traced = {s.get("name") for s in segments if s.get("origin") == "AWS::Lambda::Function"}
    assert len(traced) == 7, traced  # every function ran, traced, on this stack
    assert any(s.get("name") == "## lambda_handler" for s in segments)  # and the SDK's own segments arrived
    dump = json.dumps(segments)
    emails = set(EMAIL.findall(dump)) - ALLOWED
    phones = set(PHONE.findall(dump))
    assert emails == set(), sorted(emails)[:10]
    assert phones == set(), sorted(phones)[:10]
