"""Create what template.yaml declares in an AWS endpoint (the embedded moto), in dependency order.

Nothing here repeats a resource definition: tables, queues with their redrive, topics and
subscriptions, buckets and secrets are all read from the template's properties.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from optout_local.iam.roles import FunctionRole
from optout_local.template import ROOT, Resolver, load_template

log = logging.getLogger(__name__)

ACCOUNT_ID = "123456789012"
DEFAULT_STACK = "optout-local"


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    function: str
    auth: str  # "NONE" or "AWS_IAM"


@dataclass(frozen=True)
class QueueSource:
    function: str
    queue_arn: str
    batch_size: int
    batching_window: int
    report_failures: bool
    enabled: bool
    maximum_concurrency: int | None = None  # ScalingConfig.MaximumConcurrency


@dataclass
class FunctionSpec:
    logical_id: str
    name: str
    code_dir: Path
    handler: str
    timeout: int
    memory_mb: int = 128
    environment: dict[str, str] = field(default_factory=dict)
    runtime: str = "python3.13"
    tracing: bool = False  # Tracing: Active
    reserved_concurrency: int | None = None
    layers: list[Path] = field(default_factory=list)  # each layer's ContentUri


@dataclass
class Stack:
    """What the provisioner made: resolved names, functions, routes and event sources."""

    resolver: Resolver
    functions: dict[str, FunctionSpec] = field(default_factory=dict)
    routes: list[Route] = field(default_factory=list)
    queue_sources: list[QueueSource] = field(default_factory=list)
    queue_urls: dict[str, str] = field(default_factory=dict)  # arn -> url
    roles: dict[str, FunctionRole] = field(default_factory=dict)  # function logical id -> its role, as SAM makes it

    def ref(self, logical_id: str) -> Any:
        return self.resolver.ref(logical_id)

    def output(self, name: str) -> Any:
        return self.resolver.resolve(self.resolver.template["Outputs"][name]["Value"])

    def function(self, name: str) -> FunctionSpec:
        """Find a function by logical id (``UnsubscribeFunction``), short name or code folder."""
        wanted = name.lower().removesuffix("function")
        for spec in self.functions.values():
            if wanted in (spec.logical_id.lower().removesuffix("function"), spec.code_dir.name.lower()):
                return spec
        raise KeyError(f"no function {name!r} in the template (have: {', '.join(self.functions)})")


def _dependencies(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, arg in value.items():
            if key == "Ref" and isinstance(arg, str):
                yield arg
            elif key == "Fn::GetAtt":
                yield (arg.split(".")[0] if isinstance(arg, str) else arg[0])
            elif key == "Fn::Sub":
                text = arg if isinstance(arg, str) else arg[0]
                yield from re.findall(r"\$\{([^}!.]+)", text)
                yield from _dependencies(arg)
            else:
                yield from _dependencies(arg)
    elif isinstance(value, list):
        for item in value:
            yield from _dependencies(item)


def _order(resources: dict[str, Any]) -> list[str]:
    done: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            raise ValueError(f"circular dependency at {name}")
        visiting.add(name)
        spec = resources[name]
        for dep in _dependencies(spec.get("Properties", {})):
            if dep in resources and dep != name:
                visit(dep)
        for dep in [spec.get("DependsOn", [])] if isinstance(spec.get("DependsOn"), str) else spec.get("DependsOn", []):
            visit(dep)
        visiting.discard(name)
        done.append(name)

    for name in resources:
        visit(name)
    return done


def _generate_secret(spec: dict[str, Any]) -> str:
    length = int(spec.get("PasswordLength", 32))
    alphabet = string.ascii_letters + string.digits
    if not spec.get("ExcludePunctuation"):
        alphabet += "!#$%&()*+,-.:;<=>?@[]^_{|}~"
    value = "".join(secrets.choice(alphabet) for _ in range(length))
    if "GenerateStringKey" in spec:
        document = json.loads(spec.get("SecretStringTemplate", "{}"))
        document[spec["GenerateStringKey"]] = value
        return json.dumps(document)
    return value


class Provisioner:
    def __init__(
        self,
        session: boto3.session.Session,
        endpoint_url: str | None,
        region: str,
        stack_name: str = DEFAULT_STACK,
        template_path: Path | None = None,
        parameters: dict[str, str] | None = None,
        locate: bool = False,
        ensure: bool = False,
        roles: bool = True,
    ) -> None:
        """``locate=True`` creates nothing: it finds the resources a running local stack made.

        ``ensure=True`` finds what exists and creates only what is missing (a stack restored from
        its saved state, whose template may have gained a resource since); existing resources,
        and secret values above all, stay as they are. Roles and resource policies are brought up
        to date with the template.

        ``roles=False`` leaves out the functions' IAM roles, for a caller that creates them itself
        (``runtime.in_process_stack``, whose moto holds only the managed policies they attach).
        """
        if locate and ensure:
            raise ValueError("locate and ensure exclude each other")
        self.template_path = template_path or ROOT / "template.yaml"
        self.template = load_template(self.template_path)
        self.session = session
        self.endpoint_url = endpoint_url
        self.region = region
        self.resolver = Resolver(self.template, region, ACCOUNT_ID, stack_name, parameters or {})
        self.stack = Stack(self.resolver)
        self.locate = locate
        self.ensure = ensure
        self.roles = roles

    def client(self, service: str) -> Any:
        return self.session.client(service, region_name=self.region, endpoint_url=self.endpoint_url)  # type: ignore[call-overload]

    def physical_name(self, logical_id: str) -> str:
        return f"{self.resolver.stack_name}-{logical_id}"

    def _existing(self, lookup: Callable[[], Any], *missing: str) -> Any:
        """What ``lookup`` finds: always when locating; when ensuring, None if it fails with a code
        in ``missing`` (the resource is not there yet); when creating, None without asking."""
        if self.locate:
            return lookup()
        if not self.ensure:
            return None
        try:
            return lookup()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in missing:
                return None
            raise

    def provision(self) -> Stack:
        resources: dict[str, Any] = self.template.get("Resources", {})
        for logical_id in _order(resources):
            spec = resources[logical_id]
            if "Condition" in spec and not self.resolver.condition(spec["Condition"]):
                continue
            kind = spec["Type"]
            method = getattr(self, "_" + kind.replace("::", "_").lower(), None)
            props = spec.get("Properties", {})
            if method is None:
                self.resolver.refs[logical_id] = self.physical_name(logical_id)
                self.resolver.attrs[(logical_id, "Arn")] = f"arn:aws:local:{self.region}:{ACCOUNT_ID}:{logical_id}"
                continue
            method(logical_id, props)
        for spec in self.stack.functions.values():
            self._function_environment(spec, resources[spec.logical_id].get("Properties", {}))
        if self.roles:
            self._function_roles()
        if not self.locate:
            self._verify_sender()
        return self.stack

    def _function_roles(self) -> None:
        """Each function's role as SAM expands it (aws-sam-translator), created in the local IAM."""
        from optout_local.iam import roles

        self.stack.roles = roles.expand(
            self.template, dict(self.resolver.parameters), self.resolver, self.region, ACCOUNT_ID
        )
        if not self.locate:
            roles.create(self.client("iam"), self.stack.roles)

    # --- one method per resource type -------------------------------------------------

    def _aws_dynamodb_table(self, logical_id: str, raw: dict[str, Any]) -> None:
        props = self.resolver.resolve(raw)
        name = props.get("TableName") or self.physical_name(logical_id)
        kwargs: dict[str, Any] = {
            "TableName": name,
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": props.get("BillingMode", "PROVISIONED"),
        }
        for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            if key in props:
                kwargs[key] = props[key]
        if "StreamSpecification" in props:  # CloudFormation omits the API's StreamEnabled flag
            kwargs["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
        if "SSESpecification" in props:  # CloudFormation says SSEEnabled where the API says Enabled
            sse = dict(props["SSESpecification"])
            kwargs["SSESpecification"] = {"Enabled": bool(sse.pop("SSEEnabled", True)), **sse}
        if "ProvisionedThroughput" in props:
            kwargs["ProvisionedThroughput"] = props["ProvisionedThroughput"]
        ddb = self.client("dynamodb")
        description = self._existing(lambda: ddb.describe_table(TableName=name)["Table"], "ResourceNotFoundException")
        if description is None:
            description = ddb.create_table(**kwargs)["TableDescription"]
            if "TimeToLiveSpecification" in props:
                ddb.update_time_to_live(TableName=name, TimeToLiveSpecification=props["TimeToLiveSpecification"])
            if props.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled"):
                ddb.update_continuous_backups(
                    TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
                )
        self.resolver.refs[logical_id] = name
        self.resolver.attrs[(logical_id, "Arn")] = description["TableArn"]
        if "LatestStreamArn" in description:
            self.resolver.attrs[(logical_id, "StreamArn")] = description["LatestStreamArn"]

    def _aws_sqs_queue(self, logical_id: str, raw: dict[str, Any]) -> None:
        props = self.resolver.resolve(raw)
        fifo = str(props.get("FifoQueue", "false")).lower() == "true"
        name = props.get("QueueName") or self.physical_name(logical_id) + (".fifo" if fifo else "")
        attributes: dict[str, str] = {}
        for key in (
            "VisibilityTimeout",
            "MessageRetentionPeriod",
            "DelaySeconds",
            "MaximumMessageSize",
            "ReceiveMessageWaitTimeSeconds",
            "FifoQueue",
            "ContentBasedDeduplication",
            "SqsManagedSseEnabled",
            "KmsMasterKeyId",  # a customer key: who sends and receives needs it (local IAM checks it)
            "KmsDataKeyReusePeriodSeconds",
        ):
            if key in props:
                attributes[key] = str(props[key]).lower() if isinstance(props[key], bool) else str(props[key])
        for key in ("RedrivePolicy", "RedriveAllowPolicy"):
            if key in props:
                attributes[key] = json.dumps(props[key])
        sqs = self.client("sqs")
        url = self._existing(
            lambda: sqs.get_queue_url(QueueName=name)["QueueUrl"],
            "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist",
        )  # fmt: skip
        if url is None:
            url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        elif not self.locate and "KmsMasterKeyId" in attributes:  # restored: a key the template since added
            sqs.set_queue_attributes(QueueUrl=url, Attributes={"KmsMasterKeyId": attributes["KmsMasterKeyId"]})
        arn = f"arn:aws:sqs:{self.region}:{ACCOUNT_ID}:{name}"
        self.resolver.refs[logical_id] = url
        self.resolver.attrs.update(
            {(logical_id, "Arn"): arn, (logical_id, "QueueName"): name, (logical_id, "QueueUrl"): url}
        )
        self.stack.queue_urls[arn] = url

    def _aws_sns_topic(self, logical_id: str, raw: dict[str, Any]) -> None:
        props = self.resolver.resolve(raw)
        name = props.get("TopicName") or self.physical_name(logical_id)
        sns = self.client("sns")
        attributes = {k: str(props[k]) for k in ("DisplayName", "KmsMasterKeyId", "FifoTopic") if k in props}
        # create_topic is idempotent: it is also how a running stack's topic is located
        arn = sns.create_topic(Name=name, Attributes=attributes)["TopicArn"]
        for sub in [] if self.locate else props.get("Subscription", []):
            if self._subscription(arn, sub["Protocol"], sub["Endpoint"]) is None:
                sns.subscribe(TopicArn=arn, Protocol=sub["Protocol"], Endpoint=sub["Endpoint"])
        self.resolver.refs[logical_id] = arn
        self.resolver.attrs.update({(logical_id, "TopicArn"): arn, (logical_id, "TopicName"): name})

    def _aws_sns_subscription(self, logical_id: str, raw: dict[str, Any]) -> None:
        props = self.resolver.resolve(raw)
        attributes = {
            key: (json.dumps(props[key]) if isinstance(props[key], dict) else str(props[key]).lower())
            for key in ("RawMessageDelivery", "FilterPolicy", "RedrivePolicy")
            if key in props
        }
        if self.locate:
            return
        arn = self._subscription(props["TopicArn"], props["Protocol"], props["Endpoint"])
        if arn is None:
            arn = self.client("sns").subscribe(
                TopicArn=props["TopicArn"],
                Protocol=props["Protocol"],
                Endpoint=props["Endpoint"],
                Attributes=attributes,
                ReturnSubscriptionArn=True,
            )["SubscriptionArn"]
        self.resolver.refs[logical_id] = arn

    def _subscription(self, topic_arn: str, protocol: str, endpoint: str) -> str | None:
        """When ensuring: the ARN of the topic's subscription to ``endpoint``, if it has one."""
        if not self.ensure:
            return None
        for page in self.client("sns").get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic_arn):
            for sub in page["Subscriptions"]:
                if (sub["Protocol"], sub["Endpoint"]) == (protocol, endpoint):
                    return str(sub["SubscriptionArn"])
        return None

    def _aws_sqs_queuepolicy(self, logical_id: str, raw: dict[str, Any]) -> None:
        props = self.resolver.resolve(raw)
        self.resolver.refs[logical_id] = logical_id
        if not self.locate:
            for url in props["Queues"]:
                self.client("sqs").set_queue_attributes(
                    QueueUrl=url, Attributes={"Policy": json.dumps(props["PolicyDocument"])}
                )

    def _aws_sns_topicpolicy(self, logical_id: str, raw: dict[str, Any]) -> None:
        props = self.resolver.resolve(raw)
        self.resolver.refs[logical_id] = logical_id
        if not self.locate:
            for arn in props["Topics"]:
                self.client("sns").set_topic_attributes(
                    TopicArn=arn, AttributeName="Policy", AttributeValue=json.dumps(props["PolicyDocument"])
                )

    def _aws_kms_key(self, logical_id: str, raw: dict[str, Any]) -> None:
        kms = self.client("kms")
        alias = f"alias/{self.physical_name(logical_id)}"
        key = self._existing(lambda: kms.describe_key(KeyId=alias)["KeyMetadata"], "NotFoundException")
        props = self.resolver.resolve(raw)
        policy = json.dumps(props["KeyPolicy"]) if "KeyPolicy" in props else None
        if key is None:
            extra = {"Policy": policy} if policy else {}
            key = kms.create_key(Description=props.get("Description", logical_id), **extra)["KeyMetadata"]
            kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
        elif policy and not self.locate:  # restored: the template's key policy may have changed
            kms.put_key_policy(KeyId=key["KeyId"], PolicyName="default", Policy=policy)
        self.resolver.refs[logical_id] = key["KeyId"]
        self.resolver.attrs[(logical_id, "Arn")] = key["Arn"]
        self.resolver.attrs[(logical_id, "KeyId")] = key["KeyId"]

    def _aws_ses_configurationset(self, logical_id: str, raw: dict[str, Any]) -> None:
        props = self.resolver.resolve(raw)
        name = props.get("Name") or self.physical_name(logical_id)
        sesv2 = self.client("sesv2")
        if not self.locate and not self._existing(
            lambda: sesv2.get_configuration_set(ConfigurationSetName=name), "NotFoundException"
        ):
            sesv2.create_configuration_set(ConfigurationSetName=name)
        self.resolver.refs[logical_id] = name

    def _verify_sender(self) -> None:
        """The local stack's SES may send from the template's SenderAddress (and nothing else)."""
        if "SenderAddress" in self.template.get("Parameters", {}):
            sesv2, sender = self.client("sesv2"), self.resolver.parameter("SenderAddress")
            if not self._existing(lambda: sesv2.get_email_identity(EmailIdentity=sender), "NotFoundException"):
                sesv2.create_email_identity(EmailIdentity=sender)

    def _aws_s3_bucket(self, logical_id: str, raw: dict[str, Any]) -> None:
        props = self.resolver.resolve(raw)
        name = props.get("BucketName") or self.physical_name(logical_id).lower()
        s3 = self.client("s3")
        if self._existing(lambda: s3.head_bucket(Bucket=name), "404", "NoSuchBucket"):
            pass
        elif self.region == "us-east-1":
            s3.create_bucket(Bucket=name)
        else:
            s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": self.region})
        if "VersioningConfiguration" in props:  # a delete then leaves versions, as in AWS
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration=props["VersioningConfiguration"])
        if "LifecycleConfiguration" in props:
            rules = [_lifecycle_rule(rule) for rule in props["LifecycleConfiguration"].get("Rules", [])]
            s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": rules})
        self.resolver.refs[logical_id] = name
        self.resolver.attrs[(logical_id, "Arn")] = f"arn:aws:s3:::{name}"

    def _aws_secretsmanager_secret(self, logical_id: str, raw: dict[str, Any]) -> None:
        props = self.resolver.resolve(raw)
        name = props.get("Name") or self.physical_name(logical_id)
        client = self.client("secretsmanager")
        arn = self._existing(lambda: client.describe_secret(SecretId=name)["ARN"], "ResourceNotFoundException")
        if arn is None:
            value = props.get("SecretString") or _generate_secret(props.get("GenerateSecretString", {}))
            arn = client.create_secret(Name=name, SecretString=value)["ARN"]
        self.resolver.refs[logical_id] = arn
        self.resolver.attrs[(logical_id, "Id")] = arn

    def _aws_serverless_function(self, logical_id: str, raw: dict[str, Any]) -> None:
        globals_ = self.template.get("Globals", {}).get("Function", {})
        name = raw.get("FunctionName") or self.physical_name(logical_id)
        self.resolver.refs[logical_id] = name
        self.resolver.attrs[(logical_id, "Arn")] = f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{name}"
        code_dir = (self.template_path.parent / raw["CodeUri"]).resolve()
        props = {**globals_, **raw}
        reserved = props.get("ReservedConcurrentExecutions")
        spec = FunctionSpec(
            logical_id,
            name,
            code_dir,
            raw["Handler"],
            int(self.resolver.resolve(props.get("Timeout", 3))),
            int(self.resolver.resolve(props.get("MemorySize", 128))),
            runtime=str(props.get("Runtime", "python3.13")),
            tracing=str(self.resolver.resolve(props.get("Tracing", "PassThrough"))) == "Active",
            reserved_concurrency=None if reserved is None else int(self.resolver.resolve(reserved)),
            layers=[self._layer_content(layer) for layer in props.get("Layers", [])],
        )
        self.stack.functions[logical_id] = spec

    def _layer_content(self, layer: Any) -> Path:
        """The folder a layer of this template is built from (its ContentUri)."""
        logical_id = layer.get("Ref") if isinstance(layer, dict) else None
        resource = self.template.get("Resources", {}).get(logical_id or "", {})
        if resource.get("Type") != "AWS::Serverless::LayerVersion":
            raise ValueError(f"layer {layer!r} is not a layer of this template; only those can be built locally")
        return (self.template_path.parent / str(resource["Properties"]["ContentUri"])).resolve()

    def _aws_serverless_httpapi(self, logical_id: str, raw: dict[str, Any]) -> None:
        self.resolver.refs[logical_id] = "local"

    def _function_environment(self, spec: FunctionSpec, raw: dict[str, Any]) -> None:
        globals_ = self.template.get("Globals", {}).get("Function", {})
        variables = {
            **globals_.get("Environment", {}).get("Variables", {}),
            **raw.get("Environment", {}).get("Variables", {}),
        }
        spec.environment = {k: str(v) for k, v in self.resolver.resolve(variables).items()}
        for event in raw.get("Events", {}).values():
            props = self.resolver.resolve(event.get("Properties", {}))
            if event["Type"] == "HttpApi":
                auth = (props.get("Auth") or {}).get("Authorizer") or self._default_authorizer(event)
                self.stack.routes.append(
                    Route(props.get("Method", "ANY").upper(), props["Path"], spec.logical_id, auth)
                )
            elif event["Type"] == "SQS":
                self.stack.queue_sources.append(
                    QueueSource(
                        function=spec.logical_id,
                        queue_arn=props["Queue"],
                        batch_size=int(props.get("BatchSize", 10)),
                        batching_window=int(props.get("MaximumBatchingWindowInSeconds", 0)),
                        report_failures="ReportBatchItemFailures" in props.get("FunctionResponseTypes", []),
                        enabled=bool(props.get("Enabled", True)),
                        maximum_concurrency=(props.get("ScalingConfig") or {}).get("MaximumConcurrency"),
                    )
                )

    def _default_authorizer(self, event: dict[str, Any]) -> str:
        api = event.get("Properties", {}).get("ApiId", {}).get("Ref")
        api_props = self.template.get("Resources", {}).get(api, {}).get("Properties", {}) if api else {}
        return str((api_props.get("Auth") or {}).get("DefaultAuthorizer", "NONE"))


def _lifecycle_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """A lifecycle rule as CloudFormation writes it, as the S3 API takes it."""
    out: dict[str, Any] = {
        "ID": rule.get("Id", ""),
        "Status": rule["Status"],
        "Filter": {"Prefix": rule.get("Prefix", "")},
    }
    if "ExpirationInDays" in rule:
        out["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    if "NoncurrentVersionExpiration" in rule:
        noncurrent = rule["NoncurrentVersionExpiration"]
        out["NoncurrentVersionExpiration"] = {"NoncurrentDays": int(noncurrent["NoncurrentDays"])}
    if "AbortIncompleteMultipartUpload" in rule:
        days = int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])
        out["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": days}
    return out
