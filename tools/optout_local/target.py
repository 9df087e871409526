"""Which stack an optout command talks to: the running local stack, or a deployed one.

Local (the default) is found through OPTOUT_API_PORT / OPTOUT_AWS_PORT / OPTOUT_REGION; a
deployed stack through ``--stack NAME`` (or OPTOUT_STACK) and its CloudFormation outputs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import boto3
import click
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from optout.settings import Settings
from optout.suppression_store import DynamoSuppressionStore
from optout.token import KeyRing
from optout_local.stack import LocalConfig


@dataclass
class Target:
    base_url: str
    table: str
    signing_secret: str
    pepper_secret: str
    settings: Settings
    clients: Any  # callable(service) -> boto3 client
    twilio_secret: str = ""
    inbound_topic: str = ""
    local: bool = False

    @cached_property
    def store(self) -> DynamoSuppressionStore:
        return DynamoSuppressionStore(self.table, self.clients("dynamodb"))

    def _secret(self, secret_id: str) -> str:
        value: str = self.clients("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]
        return value

    def twilio_auth_token(self) -> str:
        return self._secret(self.twilio_secret)

    def pepper(self) -> bytes:
        return self._secret(self.pepper_secret).encode()

    def key_ring(self) -> KeyRing:
        return KeyRing.from_secret(json.loads(self._secret(self.signing_secret)), self.settings.key_grace_days)


def local_target(config: LocalConfig | None = None) -> Target:
    config = config or LocalConfig()
    try:
        stack = config.locate()
    except (EndpointConnectionError, BotoCoreError, ClientError) as exc:
        raise click.ClickException(
            f"no local stack answers at {config.aws_url} ({type(exc).__name__}); start one with `make run` "
            "or set OPTOUT_AWS_PORT / OPTOUT_API_PORT to where it runs"
        ) from exc
    env = next(iter(stack.functions.values())).environment
    return Target(
        base_url=config.api_url,
        table=stack.ref("SuppressionTable"),
        signing_secret=stack.ref("SigningKeysSecret"),
        pepper_secret=stack.ref("PepperSecret"),
        settings=Settings.from_env(env),
        clients=config.client,
        twilio_secret=stack.ref("TwilioAuthTokenSecret"),
        inbound_topic=stack.ref("InboundSmsTopic"),
        local=True,
    )


def deployed_target(stack_name: str, region: str | None) -> Target:
    session = boto3.session.Session(region_name=region)
    try:
        described = session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"][0]
    except (BotoCoreError, ClientError) as exc:
        raise click.ClickException(f"cannot read stack {stack_name}: {exc}") from exc
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    return Target(
        base_url=outputs["PublicBaseUrl"].rstrip("/"),
        table=outputs["SuppressionTableName"],
        signing_secret=outputs["SigningKeysSecretArn"],
        pepper_secret=outputs["PepperSecretArn"],
        settings=Settings(),
        clients=session.client,
        twilio_secret=outputs.get("TwilioAuthTokenSecretArn", ""),
        inbound_topic=outputs.get("InboundSmsTopicArn", ""),
    )


def resolve_target(stack_name: str | None) -> Target:
    name = stack_name or os.environ.get("OPTOUT_STACK")
    if name:
        return deployed_target(name, os.environ.get("OPTOUT_REGION") or os.environ.get("AWS_REGION"))
    return local_target()
