"""Shared fixtures: moto provisioned from template.yaml, sample events, one fake Lambda context."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

# Before any test module is collected: one that imports optout.core.observability at its top builds the
# process's one Metrics object then, and Powertools reads the namespace only when it is built (a
# Metrics without one fails every handler that adds a metric, in every later test)
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "OptoutTest")

from optout_local.iam import in_process
from optout_local.lambda_runtime import trace_header
from optout_local.provision import Stack
from optout_local.runtime import LOCAL_PUBLIC_URL, LambdaContext, in_process_stack
from optout_local.xray import XRayDaemon

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"
REGION = "us-east-1"
PUBLIC_BASE_URL = LOCAL_PUBLIC_URL


@pytest.fixture(scope="session")
def xray_daemon() -> Iterator[XRayDaemon]:
    """Where the in-process handlers' X-Ray SDK sends its segments, as a Lambda's sends them."""
    daemon = XRayDaemon()
    daemon.start()
    yield daemon
    daemon.stop()


@pytest.fixture(autouse=True)
def _aws_credentials(monkeypatch: pytest.MonkeyPatch, xray_daemon: XRayDaemon) -> None:
    """No test may reach real AWS: fake credentials, no endpoint override from the shell.

    Tracing is on, as deployed (``Tracing: Active``): the X-Ray SDK runs in Lambda mode with a
    sampled trace header for each test, and its segments go to a daemon stand-in.
    """
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.delenv("POWERTOOLS_TRACE_DISABLED", raising=False)
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(ROOT / "functions"))
    monkeypatch.setenv("AWS_XRAY_DAEMON_ADDRESS", xray_daemon.address)
    monkeypatch.setenv("_X_AMZN_TRACE_ID", trace_header()[0])
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "OptoutTest")


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """moto in this process with every resource of template.yaml, and the functions' environment set.

    In-process for speed: the integration tests call handlers directly (traced, as above). That is
    not how a function runs in AWS, so it never stands in for it: tests/integration/
    test_lambda_runtime.py and the e2e tests run functions on the local Lambda runtime. What it
    does keep: a handler from ``load_handler`` calls AWS with its function's role, authorized by
    the local IAM as the local stack authorizes it; the test's own calls are the administrator's.
    """
    with in_process_stack({"OPTOUT_EMAIL_RATE_PER_SECOND": "1000"}, REGION) as stack:
        yield stack
        # a handler's call signed with other keys than its role's went unauthorized: fail for it
        assert not in_process.installed().stray, in_process.installed().stray


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext(function_name="optout-test")


def sample_event(name: str, token: str | None = None, **overrides: Any) -> dict[str, Any]:
    """An events/ sample, with the token swapped in and any top-level keys overridden."""
    event: dict[str, Any] = copy.deepcopy(json.loads((EVENTS / f"{name}.json").read_text()))
    if token is not None:
        event["queryStringParameters"] = {"token": token}
        event["rawQueryString"] = urlencode({"token": token})
    event.update(overrides)
    return event


def sent_sms() -> list[tuple[str, str]]:
    """(number, text) of every SMS moto received in this process, oldest first."""
    from moto.sns.models import sns_backends

    from optout_local.provision import ACCOUNT_ID

    return list(sns_backends[ACCOUNT_ID][REGION].sms_messages.values())
