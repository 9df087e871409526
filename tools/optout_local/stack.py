"""The whole stack on one machine: embedded moto, resources from the template, gateway, pollers."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from optout_local.gateway import Gateway
from optout_local.pollers import QueuePoller
from optout_local.provision import ACCOUNT_ID, DEFAULT_STACK, Provisioner, Stack
from optout_local.runtime import apply_environment, invoke

log = logging.getLogger(__name__)
LOCAL_KEY = "testing"


def free_port() -> int:
    """A port nothing on 127.0.0.1 listens on now (for stacks started by tests, demo and bench)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _port(env: str, default: int) -> int:
    return int(os.environ.get(env) or default)


@dataclass(frozen=True)
class LocalConfig:
    """Where the local stack listens. Every optout command reads the same variables."""

    api_port: int = field(default_factory=lambda: _port("OPTOUT_API_PORT", 3000))
    aws_port: int = field(default_factory=lambda: _port("OPTOUT_AWS_PORT", 5000))
    region: str = field(default_factory=lambda: os.environ.get("OPTOUT_REGION") or "us-east-1")
    host: str = "127.0.0.1"
    stack_name: str = DEFAULT_STACK
    template: Path | None = None

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

    def client(self, service: str) -> Any:
        config = Config(retries={"max_attempts": 2}, connect_timeout=2, read_timeout=30)
        return self.session().client(service, endpoint_url=self.aws_url, config=config)  # type: ignore[call-overload]

    def function_environment(self) -> dict[str, str]:
        """What the functions see besides their template variables: the local AWS endpoint."""
        return {
            "AWS_ENDPOINT_URL": self.aws_url,
            "AWS_ACCESS_KEY_ID": LOCAL_KEY,
            "AWS_SECRET_ACCESS_KEY": LOCAL_KEY,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "POWERTOOLS_TRACE_DISABLED": "true",
            "OPTOUT_PUBLIC_BASE_URL": self.api_url,
            # moto has no SES quota: pace at what a production account gets after a quota increase
            "OPTOUT_EMAIL_RATE_PER_SECOND": "200",
            "OPTOUT_SMS_RATE_PER_SECOND": "200",
        }

    def locate(self) -> Stack:
        """Find the resources of the local stack that is running on these ports."""
        return Provisioner(
            self.session(), self.aws_url, self.region, self.stack_name, self.template, locate=True
        ).provision()


class LocalStack:
    def __init__(self, config: LocalConfig) -> None:
        self.config = config
        self.stack: Stack | None = None
        self.gateway: Gateway | None = None
        self.pollers: list[QueuePoller] = []
        self._moto: Any = None

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        from optout_local import moto_patches

        moto_patches.apply()
        config = self.config
        self._moto = ThreadedMotoServer(ip_address=config.host, port=config.aws_port, verbose=False)
        self._moto.start()
        self.stack = Provisioner(
            config.session(), config.aws_url, config.region, config.stack_name, config.template
        ).provision()
        apply_environment(self.stack, config.function_environment())
        stack = self.stack

        def call(function: str, event: dict[str, Any]) -> Any:
            return invoke(stack, function, event)

        self.gateway = Gateway(
            stack.routes,
            call,
            config.region,
            config.host,
            config.api_port,
            local_routes={"outbox/sms": self.sent_sms, "outbox/email": self.sent_email},
        )
        locks = self.gateway.locks
        sqs = config.client("sqs")
        for source in stack.queue_sources:
            if source.enabled:
                lock = locks.setdefault(source.function, threading.Lock())
                queue_url = stack.queue_urls[source.queue_arn]
                self.pollers.append(QueuePoller(source, queue_url, sqs, call, lock, config.region))
        self.gateway.start()
        for poller in self.pollers:
            poller.start()

    def sent_sms(self) -> list[dict[str, str]]:
        """Every SMS the stack sent through SNS, oldest first (moto keeps them in this process)."""
        from moto.sns.models import sns_backends

        backend = sns_backends[ACCOUNT_ID][self.config.region]
        return [{"message_id": mid, "to": to, "body": body} for mid, (to, body) in backend.sms_messages.items()]

    def sent_email(self) -> list[dict[str, Any]]:
        """Every raw email the stack sent through SES, oldest first."""
        from moto.ses.models import ses_backends

        backend = ses_backends[ACCOUNT_ID][self.config.region]
        return [
            {"message_id": m.id, "source": m.source, "destinations": list(m.destinations), "raw": m.raw_data}
            for m in backend.sent_messages
            if hasattr(m, "raw_data")
        ]

    def stop(self) -> None:
        for poller in self.pollers:
            poller.stopping.set()
        for poller in self.pollers:
            poller.stop()
        if self.gateway is not None:
            self.gateway.stop()
        if self._moto is not None:
            self._moto.stop()
