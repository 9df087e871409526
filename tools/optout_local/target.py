"""Which stack an optout command talks to: the running local stack, or a deployed one.

Local (the default) is found through OPTOUT_API_PORT / OPTOUT_AWS_PORT / OPTOUT_REGION; a
deployed stack through ``--stack NAME`` (or OPTOUT_STACK) and its CloudFormation outputs.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import boto3
import click
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from optout.core.settings import Settings
from optout.suppression.store import DynamoSuppressionStore
from optout.unsubscribe.token import KeyRing
from optout_local.admin_client import AdminClient
from optout_local.provision import Stack
from optout_local.stack import LOCAL_KEY, LocalConfig
from optout_local.template import ROOT


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
    api_url: str = ""
    bucket: str = ""
    region: str = "us-east-1"
    notices_table: str = ""
    credentials: Any = None

    @cached_property
    def store(self) -> DynamoSuppressionStore:
        return DynamoSuppressionStore(self.table, self.clients("dynamodb"))

    def _secret(self, secret_id: str) -> str:
        value: str = self.clients("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]
        return value

    def admin(self) -> AdminClient:
        return AdminClient(self.api_url, self.region, self.credentials)

    def twilio_auth_token(self) -> str:
        return self._secret(self.twilio_secret)

    def pepper(self) -> bytes:
        return self._secret(self.pepper_secret).encode()

    def key_ring(self) -> KeyRing:
        return KeyRing.from_secret(json.loads(self._secret(self.signing_secret)), self.settings.key_grace_days)


def locate_local(config: LocalConfig) -> Stack:
    """The local stack running on ``config``'s ports, or a one-line error saying why there is none."""
    try:
        return config.locate()
    except (EndpointConnectionError, BotoCoreError, ClientError) as exc:
        answered = _local_region(config)
        if answered is not None and answered != config.region:
            raise click.ClickException(
                f"the local stack at {config.aws_url} runs in region {answered}, not {config.region}: "
                f"set OPTOUT_REGION={answered} (or unset it)"
            ) from exc
        raise click.ClickException(
            f"no local stack answers at {config.aws_url} ({type(exc).__name__}); start one with `make run` "
            "or set OPTOUT_AWS_PORT / OPTOUT_API_PORT to where it runs"
        ) from exc


def local_target(config: LocalConfig | None = None) -> Target:
    config = config or LocalConfig()
    stack = locate_local(config)
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
        api_url=config.api_url,
        bucket=stack.ref("ManifestBucket"),
        region=config.region,
        notices_table=stack.ref("NoticesTable"),
        credentials=Credentials(LOCAL_KEY, LOCAL_KEY),
    )


def _local_region(config: LocalConfig) -> str | None:
    """The region of the local stack answering at ``config``'s AWS port, if one answers."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"{config.aws_url}/_local/state", timeout=5) as response:  # noqa: S310  # nosec B310
            region = json.load(response).get("region")
    except (OSError, ValueError, AttributeError):
        return None
    return region if isinstance(region, str) else None


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
        api_url=outputs.get("ApiUrl", "").rstrip("/"),
        bucket=outputs.get("ManifestBucketName", ""),
        region=session.region_name or "us-east-1",
        notices_table=outputs.get("NoticesTableName", ""),
        credentials=session.get_credentials(),
    )


def samconfig_stack(config_env: str, path: Path = ROOT / "samconfig.toml") -> tuple[str, str | None]:
    """The stack name and region that samconfig.toml gives an environment (dev, staging, prod)."""
    with path.open("rb") as handle:
        config = tomllib.load(handle)
    env = config.get(config_env)
    if env is None:
        raise click.ClickException(f"samconfig.toml has no environment {config_env!r}")
    name = env.get("global", {}).get("parameters", {}).get("stack_name")
    region = env.get("deploy", {}).get("parameters", {}).get("region")
    if not name:
        raise click.ClickException(f"samconfig.toml gives {config_env!r} no stack_name")
    return name, region


def resolve_target(stack_name: str | None, config_env: str | None = None) -> Target:
    region = os.environ.get("OPTOUT_REGION") or os.environ.get("AWS_REGION")
    if config_env and not stack_name:
        stack_name, configured_region = samconfig_stack(config_env)
        region = region or configured_region
    name = stack_name or os.environ.get("OPTOUT_STACK")
    if name:
        return deployed_target(name, region)
    return local_target()


def deployed_queues(stack_name: str) -> tuple[Any, dict[str, Any], dict[tuple[str, str], Any]]:
    """The SQS client and the stack's queues by logical id (URL, and ARN for GetAtt)."""
    session = boto3.session.Session(region_name=os.environ.get("OPTOUT_REGION") or os.environ.get("AWS_REGION"))
    cloudformation = session.client("cloudformation")
    refs: dict[str, Any] = {}
    attrs: dict[tuple[str, str], Any] = {}
    paginator = cloudformation.get_paginator("list_stack_resources")
    for page in paginator.paginate(StackName=stack_name):
        for resource in page["StackResourceSummaries"]:
            if resource["ResourceType"] == "AWS::SQS::Queue":
                url = resource["PhysicalResourceId"]  # https://sqs.<region>.amazonaws.com/<account>/<name>
                account, name = url.rstrip("/").rsplit("/", 2)[-2:]
                refs[resource["LogicalResourceId"]] = url
                attrs[(resource["LogicalResourceId"], "Arn")] = f"arn:aws:sqs:{session.region_name}:{account}:{name}"
    return session.client("sqs"), refs, attrs
