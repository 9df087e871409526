"""`sam build` builds a layer that holds everything the handlers import at run time, with tracing on.

Every function runs on the local stack (tracing on, as deployed), the stack reports which
top-level packages each one's environments imported from the built layer, and `sam build` for
the template's architecture (arm64) must have put each of them into the layer. The arm64 wheels
cannot be imported on this machine, but their presence can be checked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import boto3
import pytest
import requests

from optout_local.layer_build import lambda_python
from optout_local.template import ROOT
from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e
SAM = str(ROOT / (os.environ.get("OPTOUT_SAM") or ".venv-sam/bin/sam"))  # make test passes a relative path


def _client(stack: RunningStack, service: str):  # type: ignore[no-untyped-def]
    return boto3.client(
        service, endpoint_url=stack.aws_url, region_name="us-east-1", aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )  # fmt: skip


def exercise_every_function(stack: RunningStack, tmp_path: Path) -> None:
    """One real use of each function: a notice (admin API, dispatcher, sender), a one-click, a
    Twilio STOP, an End User Messaging STOP (SNS to SQS) and an SES bounce (SNS to SQS)."""
    manifest = tmp_path / "layer-users.csv"
    manifest.write_text("recipient_id,email,phone,locale,timezone,name\nl1,layer-1@example.com,,en,,L\n")
    stack.cli(
        "notice", "send", "policy-change", "--manifest", str(manifest), "--policy-version", "2026-12-01",
        "--effective-date", "2026-12-31", "--summary", "Logs kept 30 days.", "--policy-url",
        "https://example.com/privacy", "--wait", "--json",
    )  # fmt: skip
    link = stack.cli("link", "email", "layer-1@example.com", "--topic", "product").stdout.strip()
    assert requests.post(link, data={"List-Unsubscribe": "One-Click"}, timeout=30).status_code == 200
    for via in ("twilio", "sns"):
        stack.cli("sms", "simulate", "--from", "+14155550299", "--body", "STOP", "--via", via)
    bounce = json.loads((ROOT / "events" / "feedback_bounce_sns_envelope.json").read_text())
    stack.ses_event(json.loads(json.loads(bounce["Records"][0]["body"])["Message"]))


def test_the_built_layer_holds_every_package_the_handlers_import(local_stack: RunningStack, tmp_path: Path) -> None:
    # Given every function has run on the local stack, with tracing on
    exercise_every_function(local_stack, tmp_path)
    deadline = time.monotonic() + 60
    while True:
        imports = requests.get(f"{local_stack.api_url}/_local/layer-imports", timeout=30).json()
        if all(imports.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert all(imports.values()), {name: bool(found) for name, found in imports.items()}
    for name, found in imports.items():
        assert "aws_xray_sdk" in found, f"{name} ran without the X-Ray SDK: was tracing on?"
    # When sam builds the template as it deploys (arm64, python3.13)
    build = tmp_path / "sam-build"
    env = {**os.environ, "PATH": f"{lambda_python().parent}:{os.environ['PATH']}", "SAM_CLI_TELEMETRY": "0"}
    done = subprocess.run(
        [SAM, "build", "--template", str(ROOT / "template.yaml"), "--build-dir", str(build), "--region", "us-east-1"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    layer = build / "OptoutLayer" / "python"
    # Then every top-level package any handler imported from the layer is in the built layer
    shipped = {p.name.split(".")[0] for p in layer.iterdir()}
    needed = {package for found in imports.values() for package in found}
    assert needed - shipped == set(), sorted(needed - shipped)
    # And its compiled parts are built for the template's architecture, not this machine's
    extensions = [p.name for p in layer.rglob("*.so")]
    assert extensions and all("aarch64" in name for name in extensions), extensions[:5]
    shutil.rmtree(build, ignore_errors=True)
