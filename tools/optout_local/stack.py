"""The whole stack on one machine: moto in a child process, resources from the template, gateway, pollers."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess  # nosec B404 - runs our own moto process with our own interpreter
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import boto3
from botocore.config import Config

from optout_local.gateway import Gateway
from optout_local.iam.roles import Credentials, RoleClient, RoleSessions
from optout_local.lambda_runtime import LocalLambda
from optout_local.pollers import QueuePoller
from optout_local.provision import ACCOUNT_ID, DEFAULT_STACK, Provisioner, Stack

log = logging.getLogger(__name__)
LOCAL_KEY = "testing"


def free_port() -> int:
    """A port nothing on 127.0.0.1 listens on now (for stacks started by tests, demo and bench)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _port(env: str, default: int) -> int:
    value = os.environ.get(env) or ""
    if not value:
        return default
    if not value.isdigit() or not 0 < int(value) < 65536:
        from click import UsageError

        raise UsageError(f"{env} must be a port number from 1 to 65535, not {value!r}")
    return int(value)


@dataclass(frozen=True)
class LocalConfig:
    """Where the local stack listens. Every optout command reads the same variables."""

    api_port: int = field(default_factory=lambda: _port("OPTOUT_API_PORT", 3000))
    aws_port: int = field(default_factory=lambda: _port("OPTOUT_AWS_PORT", 5000))
    region: str = field(default_factory=lambda: os.environ.get("OPTOUT_REGION") or "us-east-1")
    host: str = "127.0.0.1"
    stack_name: str = DEFAULT_STACK
    template: Path | None = None
    state_dir: Path | None = None  # moto's state is saved here and restored from it (None: memory only)
    fresh: bool = False  # discard what state_dir holds before starting
    # Where the functions' AWS calls go, if not straight to moto: e.g. the soak's fault-injecting proxy
    function_endpoint: str | None = None

    @property
    def aws_url(self) -> str:
        return f"http://{self.host}:{self.aws_port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    def session(self) -> boto3.session.Session:
        return boto3.session.Session(
            aws_access_key_id=LOCAL_KEY, aws_secret_access_key=LOCAL_KEY, region_name=self.region
        )

    def client(self, service: str, credentials: Credentials | None = None) -> Any:
        """A client of the local AWS: with the stack's own (admin) keys, or with ``credentials``."""
        config = Config(retries={"max_attempts": 2}, connect_timeout=2, read_timeout=30)
        session = self.session()
        if credentials is not None:
            session = boto3.session.Session(
                aws_access_key_id=credentials.access_key_id, aws_secret_access_key=credentials.secret_access_key,
                aws_session_token=credentials.session_token, region_name=self.region,
            )  # fmt: skip
        return session.client(service, endpoint_url=self.aws_url, config=config)  # type: ignore[call-overload]

    def parameters(self) -> dict[str, str]:
        """Template parameters the local stack deploys with (as ``sam deploy --parameter-overrides``)."""
        return {
            "PublicBaseUrl": self.api_url,
            # EmailRatePerSecond stays auto: the sender reads the quota moto's SES emulation answers
            # (ses_emulation.DEFAULT_QUOTA); SNS has no quota to read, so SMS paces at a fixed rate
            "SmsRatePerSecond": "200",
        }

    def aws_environment(self) -> dict[str, str]:
        """Where the functions' AWS calls go locally: the local AWS, with its credentials.

        The only variables a function sees locally beyond the template's and Lambda's own.
        """
        return {
            "AWS_ENDPOINT_URL": self.function_endpoint or self.aws_url,
            "AWS_ACCESS_KEY_ID": LOCAL_KEY,
            "AWS_SECRET_ACCESS_KEY": LOCAL_KEY,
            "AWS_SESSION_TOKEN": LOCAL_KEY,
        }

    def locate(self) -> Stack:
        """Find the resources of the local stack that is running on these ports."""
        return Provisioner(
            self.session(), self.aws_url, self.region, self.stack_name, self.template, self.parameters(), locate=True
        ).provision()


def role_sessions(config: LocalConfig, stack: Stack) -> RoleSessions:
    """Sessions of each function's role in the local AWS, as Lambda assumes them."""
    return RoleSessions(config.client("sts"), stack.roles, {k: f.name for k, f in stack.functions.items()}, ACCOUNT_ID)


def moto_outbox(config: LocalConfig, kind: str) -> list[dict[str, Any]]:
    """What the local AWS itself sent (moto's outbox, served by its process): ``email`` or ``sms``."""
    url = f"{config.aws_url}/_local/outbox/{kind}"
    with urllib.request.urlopen(url, timeout=120) as response:  # noqa: S310 - our own local URL  # nosec B310
        items: list[dict[str, Any]] = json.load(response)
    return items


class LocalStack:
    def __init__(self, config: LocalConfig, logs: IO[str] | None = None) -> None:
        """``logs``: where the functions' output goes (CloudWatch Logs in AWS); default stdout."""
        self.config = config
        self.logs = logs
        self.stack: Stack | None = None
        self.gateway: Gateway | None = None
        self.pollers: list[QueuePoller] = []
        self.functions: LocalLambda | None = None
        self._moto: Any = None

    def start(self) -> None:
        """The whole stack: the local AWS, provisioned, then the functions, the gateway and the pollers."""
        config = self.config
        stack = self.start_aws()
        self._start_functions(stack, role_sessions(config, stack))

    def start_aws(self) -> Stack:
        """The local AWS alone (moto in a process of its own), with the template provisioned in it."""
        config = self.config
        from optout_local.state import StateDir

        # The state folder's lock comes before any port; the moto child inherits it (pass_fds), so
        # it is held until the last process of this stack (and its last snapshot) is gone.
        state = None if config.state_dir is None else StateDir.open(config.state_dir, {"api": config.api_url})
        restored = state is not None and state.prepare(config.fresh)
        self._moto = subprocess.Popen(  # noqa: S603 - our interpreter, our module  # nosec B603
            [sys.executable, "-m", "optout_local.moto_process", "--host", config.host,
             "--port", str(config.aws_port), "--region", config.region, "--parent", str(os.getpid()),
             *(["--state-dir", str(state.path)] if state else [])],
            stdout=subprocess.DEVNULL,
            pass_fds=(state.fileno(),) if state else (),
        )  # fmt: skip
        self._wait_for_moto()
        self.stack = Provisioner(  # restored: find what the snapshot holds, create only what it lacks
            config.session(), config.aws_url, config.region, config.stack_name, config.template, config.parameters(),
            ensure=restored,
        ).provision()  # fmt: skip
        return self.stack

    def _start_functions(self, stack: Stack, sessions: RoleSessions) -> None:
        config = self.config
        self.functions = functions = LocalLambda(
            stack.functions, config.region, config.aws_environment(), self.logs, sessions=sessions
        )
        self.gateway = Gateway(
            stack.routes,
            functions.invoke,
            config.region,
            config.host,
            config.api_port,
            local_routes={
                "outbox/sms": self.sent_sms,
                "outbox/email": self.sent_email,
                "traces": self.traces,
                "layer-imports": self.layer_imports,
            },
        )
        for source in stack.queue_sources:
            if source.enabled:
                queue_url = stack.queue_urls[source.queue_arn]
                concurrency = functions.concurrency(source.function)
                # An event source mapping reads its queue with the function's own role, as in AWS
                sqs = RoleClient(sessions, source.function, lambda c: config.client("sqs", c))
                timeout = stack.function(source.function).timeout
                poller = QueuePoller(source, queue_url, sqs, functions.invoke, config.region, concurrency, timeout)
                self.pollers.append(poller)
        self.gateway.start()
        for poller in self.pollers:
            poller.start()

    def _wait_for_moto(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._moto.poll() is not None:
                raise RuntimeError(
                    f"the moto process exited with {self._moto.returncode}; is port {self.config.aws_port} free?"
                )
            try:
                with socket.create_connection((self.config.host, self.config.aws_port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"moto did not listen on port {self.config.aws_port} within {timeout:.0f} s")

    def _outbox(self, kind: str) -> Any:
        return moto_outbox(self.config, kind)

    def sent_sms(self) -> list[dict[str, str]]:
        """Every SMS the stack sent through SNS, oldest first (moto keeps them in its process)."""
        return list(self._outbox("sms"))

    def sent_email(self) -> list[dict[str, Any]]:
        """Every raw email the stack sent through SES, oldest first."""
        return list(self._outbox("email"))

    def layer_imports(self) -> dict[str, dict[str, str]]:
        """Per function, the top-level packages its environments imported from the built layers."""
        return {} if self.functions is None else self.functions.layer_imports()

    def traces(self) -> list[dict[str, Any]]:
        """Every segment the functions' X-Ray SDK (and the local Lambda) recorded, oldest first."""
        return [] if self.functions is None else list(self.functions.xray.segments)

    def moto_exit(self) -> tuple[int, int] | None:
        """The moto child's pid and exit code once it has exited on its own (None while it runs)."""
        if self._moto is None or self._moto.poll() is None:
            return None
        return self._moto.pid, self._moto.returncode

    def stop(self) -> None:
        for poller in self.pollers:
            poller.stopping.set()
        for poller in self.pollers:
            poller.stop()
        if self.gateway is not None:
            self.gateway.stop()
        if self.functions is not None:
            self.functions.close()
        if self._moto is not None:
            self._moto.terminate()  # with a state folder, it saves its last snapshot before it exits
            try:
                self._moto.wait(timeout=10 if self.config.state_dir is None else 60)
            except subprocess.TimeoutExpired:
                self._moto.kill()
                self._moto.wait()
        if self.config.state_dir is not None:
            from optout_local.state import StateDir

            StateDir.release(self.config.state_dir)
