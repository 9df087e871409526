"""Start the real local stack (the code `make run` starts) once for the e2e tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from optout_local.stack import free_port

OPTOUT = str(Path(sys.executable).parent / "optout")


@dataclass
class RunningStack:
    api_url: str
    aws_url: str
    env: dict[str, str]
    process: subprocess.Popen[str]

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([OPTOUT, *args], env=self.env, capture_output=True, text=True, check=check, timeout=120)

    def ses_event(self, event: dict[str, Any]) -> None:
        """Publish an SES event as SES does: ses.amazonaws.com, from the configuration set, under the topic's policy."""
        import boto3
        import requests

        client = lambda service: boto3.client(  # noqa: E731
            service, endpoint_url=self.aws_url, region_name="us-east-1", aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )  # fmt: skip
        topics = client("sns").list_topics()["Topics"]
        topic = next(t["TopicArn"] for t in topics if t["TopicArn"].endswith("SesEventsTopic"))
        configuration_set = client("sesv2").list_configuration_sets()["ConfigurationSets"][0]
        source = f"arn:aws:ses:us-east-1:123456789012:configuration-set/{configuration_set}"
        body = {
            "principal": "ses.amazonaws.com",
            "source_arn": source,
            "topic_arn": topic,
            "message": json.dumps(event),
        }
        answer = requests.post(f"{self.aws_url}/_local/deliver", json=body, timeout=30).json()
        assert answer["delivered"], answer


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    api_port, aws_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OPTOUT_")) or k == "OPTOUT_IAM_USAGE"}
    env.update(OPTOUT_API_PORT=str(api_port), OPTOUT_AWS_PORT=str(aws_port))
    log_path = tmp_path_factory.mktemp("local-stack") / "stderr.log"
    state_dir = tmp_path_factory.mktemp("local-state")  # never the checkout's .optout-state/
    with log_path.open("w") as stderr:
        process = subprocess.Popen(
            [OPTOUT, "local", "--state-dir", str(state_dir)], env=env, stdout=subprocess.PIPE, stderr=stderr, text=True
        )
    assert process.stdout is not None
    deadline = time.monotonic() + 90
    line = ""
    while time.monotonic() < deadline and process.poll() is None:
        line = process.stdout.readline()
        if line.startswith("ready:"):
            break
    if not line.startswith("ready:"):
        process.kill()
        raise RuntimeError(f"local stack did not start: {line!r}\n{log_path.read_text()[-3000:]}")
    expected = f"ready: api=http://127.0.0.1:{api_port} aws=http://127.0.0.1:{aws_port}"
    assert line.strip() == expected
    stack = RunningStack(f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{aws_port}", env, process)
    stack.log_path = log_path  # type: ignore[attr-defined]
    # Function logs go to the stack's stdout: keep draining it so the pipe never fills.
    stdout_path = log_path.with_name("stdout.log")
    stack.stdout_path = stdout_path  # type: ignore[attr-defined]

    def drain() -> None:
        with stdout_path.open("a") as sink:
            for out in process.stdout:  # type: ignore[union-attr]
                sink.write(out)
                sink.flush()

    threading.Thread(target=drain, daemon=True).start()
    yield stack
    process.send_signal(signal.SIGTERM)
    try:
        assert process.wait(timeout=20) == 0, "the local stack did not exit cleanly on SIGTERM"
    finally:
        if process.poll() is None:
            process.kill()
    for port in (api_port, aws_port):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open after stop"
