"""From a request on the wire to the IAM checks AWS makes for it, the facts they need, and the denial.

The local AWS refuses what AWS would refuse: a middleware in the moto process reads each request
(:mod:`optout_local.wire`), asks :func:`checks` which IAM requests AWS evaluates for it, has the
evaluator (:mod:`optout_local.iam.policy`) decide each, and answers the first denial with
:func:`access_denied`, the error that service sends, in its own wire format.

Authorized is the IAM action, not the API name. Each mapping below is the Service Authorization
Reference's (SAR): "Actions, resources, and condition keys for <service>", whose Actions table
gives each action's resource types. Where an operation is authorized as other actions, the
service's own guide says so, and is named at the mapping:

- DynamoDB (SAR: Amazon DynamoDB): GetItem, PutItem, UpdateItem, DeleteItem, DescribeTable on the
  table; Query and Scan on the index when ``IndexName`` is given, else the table; BatchGetItem and
  BatchWriteItem are actions of their own (``dynamodb:BatchGetItem``, ``dynamodb:BatchWriteItem``,
  resource type table), checked once per table; TransactWriteItems and TransactGetItems are not
  actions: each item is checked as the underlying operation (Put: PutItem, Update: UpdateItem,
  Delete: DeleteItem, ConditionCheck: ConditionCheckItem, Get: GetItem) on its table, with
  ``dynamodb:EnclosingOperation`` set (DynamoDB developer guide, "Using IAM with DynamoDB
  transactions"). A single-item operation, each item of a transaction and a Query on the table
  carry ``dynamodb:LeadingKeys``: the partition key value (BatchGetItem and BatchWriteItem, which
  AWS gives every key's, do not carry it here).
- SQS (SAR: Amazon SQS; resource type queue): SendMessage, ReceiveMessage, DeleteMessage,
  ChangeMessageVisibility, GetQueueAttributes, GetQueueUrl. The batch operations have no actions
  of their own: SendMessageBatch is ``sqs:SendMessage``, DeleteMessageBatch ``sqs:DeleteMessage``,
  ChangeMessageVisibilityBatch ``sqs:ChangeMessageVisibility`` (SQS developer guide, "Amazon SQS
  batch actions": "setting permissions for SendMessage, DeleteMessage, or ChangeMessageVisibility
  sets permissions for the corresponding batch versions").
- SNS (SAR: Amazon SNS): Publish and PublishBatch are ``sns:Publish`` on the topic (``TopicArn``)
  or the endpoint (``TargetArn``). A publish to a ``PhoneNumber`` has no topic: AWS authorizes it
  on the phone number itself (its AuthorizationError reads "... SNS:Publish on resource:
  +15555550100"), which only a ``Resource: "*"`` statement matches.
- SES v2 (SAR: Amazon Simple Email Service v2, prefix ``ses``): SendEmail on the identity
  (required), the configuration set and the template when the request names them; SendBulkEmail
  likewise (template required); the identity is ``FromEmailAddressIdentityArn`` when given, else
  the verified identity the From address is sent as: the address's own, else its domain's (SES
  developer guide, "Creating a sending authorization policy": address identities take precedence
  over their domains). Template operations on the template, GetAccount on ``*``.
- Secrets Manager (SAR: AWS Secrets Manager; resource type secret): GetSecretValue, DescribeSecret,
  PutSecretValue, UpdateSecret on the secret's full ARN, resolved from a name or partial ARN.
- KMS (SAR: AWS Key Management Service; resource type key): Decrypt, Encrypt, GenerateDataKey,
  GenerateDataKeyWithoutPlaintext, DescribeKey on the key an alias names (``kms:RequestAlias``
  then carries the alias); Decrypt without ``KeyId`` on the key the ciphertext names.
- S3 (SAR: Amazon S3): GetObject (with ``VersionId``: GetObjectVersion), PutObject, DeleteObject
  (DeleteObjectVersion) on ``arn:aws:s3:::bucket/key``; HeadObject is ``s3:GetObject`` (S3 API
  reference, HeadObject: "you must have the s3:GetObject permission"); ListObjectsV2, ListObjects
  and HeadBucket are ``s3:ListBucket`` on the bucket (S3 API reference, ListObjectsV2 and
  HeadBucket).
- End User Messaging SMS (SAR: AWS End User Messaging SMS and Voice V2, prefix ``sms-voice``):
  SendTextMessage on each resource the request names (origination identity: phone number, pool
  or sender ID; configuration set; protect configuration), all optional; PutOptedOutNumber and
  DeleteOptedOutNumber on the opt-out list.
- STS GetCallerIdentity: no check ("No permissions are required to perform this operation", STS
  API reference).

Implied KMS checks, made with the caller as principal and ``kms:ViaService`` set to the service:

- SQS (SQS developer guide, "Key management"): a producer's SendMessage(Batch) to a queue whose
  ``KmsMasterKeyId`` is a customer key needs ``kms:GenerateDataKey`` and ``kms:Decrypt``; a
  consumer's ReceiveMessage needs ``kms:Decrypt``. The AWS managed key (``alias/aws/sqs``) needs
  nothing: its policy lets every principal in the account that may use SQS use it. A Lambda event
  source mapping's role needs ``sqs:ReceiveMessage``, ``sqs:DeleteMessage``,
  ``sqs:GetQueueAttributes`` and ``kms:Decrypt`` (SQS developer guide, "Configuring a queue to
  trigger an AWS Lambda function"): the pollers' calls map to exactly those.
- SNS (SNS developer guide, "Key management", "Allow a user to send messages to a topic with
  SSE"): Publish to a topic with a customer ``KmsMasterKeyId`` needs ``kms:GenerateDataKey`` and
  ``kms:Decrypt``.
- Secrets Manager (user guide, "Secret encryption and decryption"): GetSecretValue of a secret
  with a customer ``KmsKeyId`` needs ``kms:Decrypt``, PutSecretValue ``kms:GenerateDataKey``; the
  encryption context carries ``SecretARN``.
- S3 (user guide, "Using server-side encryption with AWS KMS keys (SSE-KMS)"): GetObject of an
  SSE-KMS object needs ``kms:Decrypt``, PutObject with SSE-KMS (asked for, or the bucket's default)
  ``kms:GenerateDataKey``. DynamoDB tables with a customer key need no caller permission on the
  key for item operations (DynamoDB uses grants it made at table creation), so none is checked.

Deliveries between services (:func:`delivery_checks`) are made by a service principal, with
``aws:SourceArn`` and ``aws:SourceAccount`` naming what caused them: SNS to SQS (``sqs:SendMessage``
on the queue; ``kms:GenerateDataKey`` and ``kms:Decrypt`` on the queue's customer key, SQS
developer guide "Configure KMS permissions for AWS services"); SES event publishing and End User
Messaging's inbound SMS to SNS (``sns:Publish`` on the topic; ``kms:GenerateDataKey`` and
``kms:Decrypt`` on an encrypted topic's key: SNS developer guide, "Enable compatibility between
event sources from AWS services and encrypted topics"; End User Messaging SMS user guide, "Topic
policies for Amazon SNS topics").

An operation not mapped here is checked as ``<prefix>:<Operation>`` on ``*``, flagged
``unknown``, so a report can list what still needs a mapping.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import html
import json
import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.utils import getaddresses, parseaddr
from typing import Any, Protocol
from urllib.parse import urlsplit

from optout_local.wire import Call

# --- where each mapping comes from --------------------------------------------------------

_SAR = "Service Authorization Reference, Actions, resources, and condition keys for "
SOURCES = {
    "dynamodb": _SAR + "Amazon DynamoDB",
    "dynamodb-transactions": "DynamoDB developer guide, Using IAM with DynamoDB transactions",
    "sqs": _SAR + "Amazon SQS",
    "sqs-batch": "SQS developer guide, Amazon SQS batch actions",
    "sqs-kms": "SQS developer guide, Key management (Configure KMS permissions for producers / consumers)",
    "sqs-kms-services": "SQS developer guide, Key management (Configure KMS permissions for AWS services)",
    "sns": _SAR + "Amazon SNS",
    "sns-kms": "SNS developer guide, Key management (Allow a user to send messages to a topic with SSE)",
    "sns-kms-services": "SNS developer guide, Enable compatibility between event sources from AWS services "
    "and encrypted topics",
    "ses": _SAR + "Amazon Simple Email Service v2",
    "secretsmanager": _SAR + "AWS Secrets Manager",
    "secretsmanager-kms": "Secrets Manager user guide, Secret encryption and decryption",
    "kms": _SAR + "AWS Key Management Service",
    "s3": _SAR + "Amazon S3",
    "s3-kms": "S3 user guide, Using server-side encryption with AWS KMS keys (SSE-KMS)",
    "sms-voice": _SAR + "AWS End User Messaging SMS and Voice V2",
    "sms-voice-sns": "End User Messaging SMS user guide, Topic policies for Amazon SNS topics",
    "sts": "STS API reference, GetCallerIdentity (no permissions are required)",
}

# the IAM prefix of a botocore service name (or signing name)
PREFIX = {"sesv2": "ses", "pinpoint-sms-voice-v2": "sms-voice", "sms-voice": "sms-voice"}
_CANONICAL = {"sms-voice": "pinpoint-sms-voice-v2"}  # signing name -> botocore's name


# --- what this module gives ---------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One IAM request AWS evaluates: ``action`` on ``resource`` with the ``context`` condition keys.

    ``principal`` is None for the caller, or a service principal (``sns.amazonaws.com``) for a
    delivery. ``unknown``: an operation without a mapping here, checked by its name on ``*``.
    """

    action: str
    resource: str
    context: dict[str, Any] = field(default_factory=dict)
    principal: str | None = None
    unknown: bool = False
    source: str = field(default="", compare=False)

    @property
    def key(self) -> tuple[str, str, str, str | None]:
        return self.action, self.resource, json.dumps(self.context, sort_keys=True), self.principal


@dataclass(frozen=True)
class QueueFacts:
    arn: str
    kms_key_id: str | None = None  # the KmsMasterKeyId attribute, as set (key id, ARN or alias)


@dataclass(frozen=True)
class TopicFacts:
    arn: str
    kms_key_id: str | None = None


@dataclass(frozen=True)
class KeyFacts:
    arn: str
    aws_managed: bool = False  # an AWS managed key (alias/aws/...): its policy is the service's


@dataclass(frozen=True)
class SecretFacts:
    arn: str
    kms_key_id: str | None = None  # None: the AWS managed aws/secretsmanager


class Resources(Protocol):
    """What :func:`checks` needs to know of the resources a request names. None: not known."""

    def queue(self, queue: str) -> QueueFacts | None:
        """By queue URL, name or ARN."""

    def topic(self, topic_arn: str) -> TopicFacts | None: ...

    def key(self, key_id: str) -> KeyFacts | None:
        """By key id, key ARN, alias name or alias ARN."""

    def secret(self, secret_id: str) -> SecretFacts | None:
        """By name, full ARN or partial ARN (without the random suffix)."""

    def table_arn(self, table: str) -> str | None: ...

    def table_partition_key(self, table: str) -> str | None:
        """The name of the table's partition (HASH) key attribute."""

    def email_identity(self, address: str) -> str | None:
        """The ARN of the verified SES identity ``address`` is sent as: its own, else its domain's."""

    def object_kms_key(self, bucket: str, key: str) -> str | None:
        """The SSE-KMS key an S3 object is encrypted under, if it is."""

    def bucket_kms_key(self, bucket: str) -> str | None:
        """The key of a bucket's default SSE-KMS encryption, if it has one."""

    def ciphertext_key(self, blob: bytes) -> str | None:
        """The key a KMS ciphertext blob names."""

    def resource_policy(self, arn: str) -> tuple[dict[str, Any] | None, bool]:
        """The resource's policy (None: none) and whether it is a KMS key policy."""


class NoResources:
    """Knows nothing: every ARN is built from the request alone (and no key is a customer key)."""

    def queue(self, queue: str) -> QueueFacts | None:
        return None

    def topic(self, topic_arn: str) -> TopicFacts | None:
        return None

    def key(self, key_id: str) -> KeyFacts | None:
        return None

    def secret(self, secret_id: str) -> SecretFacts | None:
        return None

    def table_arn(self, table: str) -> str | None:
        return None

    def table_partition_key(self, table: str) -> str | None:
        return None

    def email_identity(self, address: str) -> str | None:
        return None

    def object_kms_key(self, bucket: str, key: str) -> str | None:
        return None

    def bucket_kms_key(self, bucket: str) -> str | None:
        return None

    def ciphertext_key(self, blob: bytes) -> str | None:
        return None

    def resource_policy(self, arn: str) -> tuple[dict[str, Any] | None, bool]:
        return None, False


# --- ARNs -------------------------------------------------------------------------------------


def partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def arn_account(arn: str) -> str | None:
    parts = arn.split(":", 5)
    return (parts[4] or None) if len(parts) == 6 and parts[0] == "arn" else None


def arn_region(arn: str) -> str | None:
    parts = arn.split(":", 5)
    return (parts[3] or None) if len(parts) == 6 and parts[0] == "arn" else None


@dataclass(frozen=True)
class _Context:
    region: str
    account: str
    resources: Resources

    def arn(self, service: str, resource: str, *, region: str | None = None, account: str | None = None) -> str:
        region = self.region if region is None else region
        account = self.account if account is None else account
        return f"arn:{partition(self.region)}:{service}:{region}:{account}:{resource}"

    def via(self, service: str) -> dict[str, Any]:
        return {"kms:ViaService": f"{service}.{self.region}.amazonaws.com"}

    def customer_key(self, key_id: str | None) -> str | None:
        """The ARN of the customer managed key ``key_id`` names; None for none or an AWS managed key."""
        if not key_id:
            return None
        facts = self.resources.key(key_id)
        if facts is not None:
            return None if facts.aws_managed else facts.arn
        alias = key_id.split(":", 5)[-1] if key_id.startswith("arn:") else key_id
        if alias.startswith("alias/aws/"):
            return None
        if key_id.startswith("arn:"):
            return key_id
        return self.arn("kms", key_id if key_id.startswith("alias/") else f"key/{key_id}")

    def key_arn(self, key_id: str) -> str:
        """The key ARN any key identifier resolves to (an unknown alias: the alias's ARN)."""
        facts = self.resources.key(key_id)
        if facts is not None:
            return facts.arn
        if key_id.startswith("arn:"):
            return key_id
        return self.arn("kms", key_id if key_id.startswith("alias/") else f"key/{key_id}")

    def kms(
        self,
        actions: Iterable[str],
        key_arn: str | None,
        via: str,
        source: str,
        context: dict[str, Any] | None = None,
        principal: str | None = None,
    ) -> list[Check]:
        if key_arn is None:
            return []
        extra = {**(self.via(via) if principal is None else {}), **(context or {})}
        return [Check(f"kms:{a}", key_arn, dict(extra), principal, source=SOURCES[source]) for a in actions]


_Mapping = Callable[[dict[str, Any], _Context], list[Check]]


def _check(action: str, resource: str, source: str, context: dict[str, Any] | None = None) -> Check:
    return Check(action, resource, dict(context or {}), source=SOURCES[source])


# --- DynamoDB ---------------------------------------------------------------------------------


def _table(ctx: _Context, name: str) -> str:
    if name.startswith("arn:"):
        return name
    return ctx.resources.table_arn(name) or ctx.arn("dynamodb", f"table/{name}")


def _leading_keys(item: Any, table: str, ctx: _Context) -> dict[str, Any]:
    """``dynamodb:LeadingKeys``: the partition key value of the item a request reads or writes (SAR,
    Amazon DynamoDB, condition keys: "the partition key values of the table"), set when the table's
    key schema is known."""
    name = ctx.resources.table_partition_key(table)
    value = item.get(name) if isinstance(item, dict) and name else None
    if not isinstance(value, dict) or len(value) != 1:
        return {}
    (scalar,) = value.values()
    return {"dynamodb:LeadingKeys": [str(scalar)]}


def _ddb_item(action: str) -> _Mapping:
    """GetItem, PutItem, UpdateItem, DeleteItem on the table, with the item's ``dynamodb:LeadingKeys``."""

    def build(params: dict[str, Any], ctx: _Context) -> list[Check]:
        name = str(params.get("TableName", ""))
        item = params.get("Item") if action == "PutItem" else params.get("Key")
        return [_check(f"dynamodb:{action}", _table(ctx, name), "dynamodb", _leading_keys(item, name, ctx))]

    return build


_KEY_EQUALS = re.compile(r"(?:^|\band\b)\s*\(?\s*([#\w.]+)\s*=\s*(:\w+)", re.IGNORECASE)


def _query_leading_keys(params: dict[str, Any], table: str, ctx: _Context) -> dict[str, Any]:
    """A Query's ``dynamodb:LeadingKeys``: the partition key value its key condition names
    (``pk = :v``), when the table's partition key is known and the query is on the table itself."""
    name = ctx.resources.table_partition_key(table)
    condition = params.get("KeyConditionExpression")
    if not name or params.get("IndexName") or not isinstance(condition, str):
        return {}
    names = params.get("ExpressionAttributeNames") or {}
    values = params.get("ExpressionAttributeValues") or {}
    for attribute, placeholder in _KEY_EQUALS.findall(condition):
        if names.get(attribute, attribute) == name and isinstance(values.get(placeholder), dict):
            return _leading_keys({name: values[placeholder]}, table, ctx)
    return {}


def _ddb_read(action: str) -> _Mapping:
    """Query and Scan: on the index when the request names one (resource type index), else the table;
    a Query on the table carries the partition key value it names as ``dynamodb:LeadingKeys``."""

    def build(params: dict[str, Any], ctx: _Context) -> list[Check]:
        name = str(params.get("TableName", ""))
        table = _table(ctx, name)
        index = params.get("IndexName")
        context = _query_leading_keys(params, name, ctx) if action == "Query" else {}
        return [_check(f"dynamodb:{action}", f"{table}/index/{index}" if index else table, "dynamodb", context)]

    return build


def _ddb_batch(action: str) -> _Mapping:
    """BatchGetItem and BatchWriteItem: actions of their own, once per table."""

    def build(params: dict[str, Any], ctx: _Context) -> list[Check]:
        tables = params.get("RequestItems") or {}
        return [_check(f"dynamodb:{action}", _table(ctx, str(name)), "dynamodb") for name in tables]

    return build


_TRANSACT_WRITE = (("ConditionCheck", "ConditionCheckItem"), ("Put", "PutItem"), ("Update", "UpdateItem"),
                   ("Delete", "DeleteItem"))  # fmt: skip


def _ddb_transact(operation: str, kinds: tuple[tuple[str, str], ...]) -> _Mapping:
    def build(params: dict[str, Any], ctx: _Context) -> list[Check]:
        found = []
        for item in params.get("TransactItems") or []:
            for kind, action in kinds:
                if isinstance(item, dict) and kind in item:
                    name = str(item[kind].get("TableName", ""))
                    table = _table(ctx, name)
                    keyed = item[kind].get("Item") if kind == "Put" else item[kind].get("Key")
                    context = {"dynamodb:EnclosingOperation": operation, **_leading_keys(keyed, name, ctx)}
                    found.append(_check(f"dynamodb:{action}", table, "dynamodb-transactions", context))
        return found

    return build


# --- SQS --------------------------------------------------------------------------------------


def _queue(ctx: _Context, queue: str) -> tuple[str, QueueFacts | None]:
    facts = ctx.resources.queue(queue)
    if facts is not None:
        return facts.arn, facts
    if queue.startswith("arn:"):
        return queue, None
    if "://" in queue:
        segments = [s for s in urlsplit(queue).path.split("/") if s]
        if len(segments) >= 2:
            return ctx.arn("sqs", segments[-1], account=segments[-2]), None
        queue = segments[-1] if segments else ""
    return ctx.arn("sqs", queue), None


def _sqs(action: str, kms: tuple[str, ...] = (), source: str = "sqs") -> _Mapping:
    def build(params: dict[str, Any], ctx: _Context) -> list[Check]:
        arn, facts = _queue(ctx, str(params.get("QueueUrl", "")))
        found = [_check(f"sqs:{action}", arn, source)]
        if kms and facts is not None:
            found += ctx.kms(kms, ctx.customer_key(facts.kms_key_id), "sqs", "sqs-kms")
        return found

    return build


def _sqs_get_queue_url(params: dict[str, Any], ctx: _Context) -> list[Check]:
    owner = params.get("QueueOwnerAWSAccountId") or None
    return [_check("sqs:GetQueueUrl", ctx.arn("sqs", str(params.get("QueueName", "")), account=owner), "sqs")]


# --- SNS --------------------------------------------------------------------------------------


def _sns_publish(params: dict[str, Any], ctx: _Context) -> list[Check]:
    topic = params.get("TopicArn")
    if topic:
        found = [_check("sns:Publish", str(topic), "sns")]
        facts = ctx.resources.topic(str(topic))
        if facts is not None:
            key = ctx.customer_key(facts.kms_key_id)
            found += ctx.kms(("GenerateDataKey", "Decrypt"), key, "sns", "sns-kms")
        return found
    if params.get("TargetArn"):
        return [_check("sns:Publish", str(params["TargetArn"]), "sns")]
    # An SMS to a number: AWS names the number as the resource, which only "*" matches
    return [_check("sns:Publish", str(params.get("PhoneNumber", "*")) or "*", "sns")]


def _sns_topic(action: str) -> _Mapping:
    def build(params: dict[str, Any], ctx: _Context) -> list[Check]:
        return [_check(f"sns:{action}", str(params.get("TopicArn", "*")), "sns")]

    return build


# --- SES v2 -----------------------------------------------------------------------------------


def _raw_from(params: dict[str, Any]) -> str:
    """The From address of a raw message (SendEmail with Content.Raw and no FromEmailAddress)."""
    data = ((params.get("Content") or {}).get("Raw") or {}).get("Data")
    if not data:
        return ""
    with contextlib.suppress(binascii.Error, ValueError, TypeError):
        message = BytesHeaderParser().parsebytes(base64.b64decode(data))
        return parseaddr(str(message.get("From", "")))[1]
    return ""


def _identity(ctx: _Context, params: dict[str, Any]) -> tuple[str, str]:
    """(identity ARN, From address) of a send."""
    address = parseaddr(str(params.get("FromEmailAddress") or ""))[1] or _raw_from(params)
    if params.get("FromEmailAddressIdentityArn"):
        return str(params["FromEmailAddressIdentityArn"]), address
    return ctx.resources.email_identity(address) or ctx.arn("ses", f"identity/{address}"), address


def _template(ctx: _Context, template: dict[str, Any]) -> str | None:
    if template.get("TemplateArn"):
        return str(template["TemplateArn"])
    if template.get("TemplateName"):
        return ctx.arn("ses", f"template/{template['TemplateName']}")
    return None


def _configuration_set(ctx: _Context, params: dict[str, Any]) -> list[str]:
    name = params.get("ConfigurationSetName")
    return [ctx.arn("ses", f"configuration-set/{name}")] if name else []


def _ses_send(action: str, content: str) -> _Mapping:
    """SendEmail (content ``Content``) and SendBulkEmail (``DefaultContent``)."""

    def build(params: dict[str, Any], ctx: _Context) -> list[Check]:
        identity, address = _identity(ctx, params)
        resources = [identity, *_configuration_set(ctx, params)]
        template = _template(ctx, (params.get(content) or {}).get("Template") or {})
        if template:
            resources.append(template)
        context: dict[str, Any] = {"ses:ApiVersion": "2"}
        if address:
            context["ses:FromAddress"] = address
        display = parseaddr(str(params.get("FromEmailAddress") or ""))[0]
        if display:
            context["ses:FromDisplayName"] = display
        # SendEmail names one Destination; SendBulkEmail one per entry: ses:Recipients holds them all
        destinations = [params.get("Destination") or {}] + [
            entry.get("Destination") or {} for entry in params.get("BulkEmailEntries") or []
        ]
        kinds = ("ToAddresses", "CcAddresses", "BccAddresses")
        recipients = [a for d in destinations for kind in kinds for a in d.get(kind) or []]
        if recipients:
            context["ses:Recipients"] = [address for _, address in getaddresses(recipients)]
        if params.get("FeedbackForwardingEmailAddress"):
            context["ses:FeedbackAddress"] = str(params["FeedbackForwardingEmailAddress"])
        return [_check(f"ses:{action}", arn, "ses", context) for arn in resources]

    return build


def _ses_named(action: str, member: str, kind: str) -> _Mapping:
    def build(params: dict[str, Any], ctx: _Context) -> list[Check]:
        return [_check(f"ses:{action}", ctx.arn("ses", f"{kind}/{params.get(member, '')}"), "ses")]

    return build


# --- Secrets Manager --------------------------------------------------------------------------


def _secret(action: str, kms: tuple[str, ...] = ()) -> _Mapping:
    def build(params: dict[str, Any], ctx: _Context) -> list[Check]:
        secret_id = str(params.get("SecretId", ""))
        facts = ctx.resources.secret(secret_id)
        arn = (
            facts.arn
            if facts
            else secret_id
            if secret_id.startswith("arn:")
            else ctx.arn("secretsmanager", f"secret:{secret_id}")
        )
        context: dict[str, Any] = {"secretsmanager:SecretId": secret_id}
        for member in ("VersionId", "VersionStage"):
            if params.get(member):
                context[f"secretsmanager:{member}"] = str(params[member])
        found = [_check(f"secretsmanager:{action}", arn, "secretsmanager", context)]
        if kms and facts is not None:
            encryption = {"kms:EncryptionContext:SecretARN": arn}
            found += ctx.kms(
                kms, ctx.customer_key(facts.kms_key_id), "secretsmanager", "secretsmanager-kms", encryption
            )
        return found

    return build


# --- KMS --------------------------------------------------------------------------------------


def _kms_use(action: str) -> _Mapping:
    def build(params: dict[str, Any], ctx: _Context) -> list[Check]:
        key_id = params.get("KeyId")
        if not key_id and params.get("CiphertextBlob"):
            with contextlib.suppress(binascii.Error, ValueError, TypeError):
                key_id = ctx.resources.ciphertext_key(base64.b64decode(str(params["CiphertextBlob"])))
        if not key_id:
            return [_check(f"kms:{action}", "*", "kms")]
        context: dict[str, Any] = {}
        alias = str(key_id).split(":", 5)[-1]
        if alias.startswith("alias/"):
            context["kms:RequestAlias"] = alias
        encryption = params.get("EncryptionContext") or {}
        for name, value in encryption.items():
            context[f"kms:EncryptionContext:{name}"] = str(value)
        if encryption:
            context["kms:EncryptionContextKeys"] = sorted(encryption)
        if params.get("EncryptionAlgorithm"):
            context["kms:EncryptionAlgorithm"] = str(params["EncryptionAlgorithm"])
        return [_check(f"kms:{action}", ctx.key_arn(str(key_id)), "kms", context)]

    return build


# --- S3 ---------------------------------------------------------------------------------------


def _s3_object(action: str, versioned: str | None = None, decrypts: bool = False) -> _Mapping:
    """An object operation; ``decrypts``: it returns the object (GetObject), so SSE-KMS needs kms:Decrypt."""

    def build(params: dict[str, Any], ctx: _Context) -> list[Check]:
        bucket, key = str(params.get("Bucket", "")), str(params.get("Key", ""))
        name = versioned if versioned and params.get("VersionId") else action
        arn = f"arn:{partition(ctx.region)}:s3:::{bucket}/{key}"
        found = [_check(f"s3:{name}", arn, "s3")]
        if decrypts:
            found += ctx.kms(("Decrypt",), ctx.customer_key(ctx.resources.object_kms_key(bucket, key)), "s3", "s3-kms")
        if action == "PutObject":
            key_id = params.get("SSEKMSKeyId")
            if not key_id and params.get("ServerSideEncryption") in (None, "aws:kms", "aws:kms:dsse"):
                key_id = ctx.resources.bucket_kms_key(bucket)
            found += ctx.kms(("GenerateDataKey",), ctx.customer_key(key_id), "s3", "s3-kms")
        return found

    return build


def _s3_list(params: dict[str, Any], ctx: _Context) -> list[Check]:
    context = {
        f"s3:{condition}": str(params[member])
        for member, condition in (("Prefix", "prefix"), ("Delimiter", "delimiter"), ("MaxKeys", "max-keys"))
        if params.get(member) is not None
    }
    return [_check("s3:ListBucket", f"arn:{partition(ctx.region)}:s3:::{params.get('Bucket', '')}", "s3", context)]


# --- End User Messaging SMS -------------------------------------------------------------------


def _origination(ctx: _Context, identity: str) -> str:
    """The ARN of an origination identity given as an ARN, a phone number or pool id, or a sender ID.

    A phone number in E.164 and a sender ID are named by the request only in part (AWS resolves the
    number to its phone-number id, and a sender ID's ARN carries its country): both stay as given.
    """
    if identity.startswith("arn:"):
        return identity
    if identity.startswith("pool-"):
        return ctx.arn("sms-voice", f"pool/{identity}")
    if identity.startswith(("phone-", "+")):
        return ctx.arn("sms-voice", f"phone-number/{identity}")
    return ctx.arn("sms-voice", f"sender-id/{identity}")


def _sms_send(params: dict[str, Any], ctx: _Context) -> list[Check]:
    resources = []
    if params.get("OriginationIdentity"):
        resources.append(_origination(ctx, str(params["OriginationIdentity"])))
    for member, kind in (
        ("ConfigurationSetName", "configuration-set"),
        ("ProtectConfigurationId", "protect-configuration"),
    ):
        value = str(params.get(member) or "")
        if value:
            resources.append(value if value.startswith("arn:") else ctx.arn("sms-voice", f"{kind}/{value}"))
    return [_check("sms-voice:SendTextMessage", arn, "sms-voice") for arn in resources or ["*"]]


def _sms_opt_out(action: str) -> _Mapping:
    def build(params: dict[str, Any], ctx: _Context) -> list[Check]:
        name = str(params.get("OptOutListName", ""))
        arn = name if name.startswith("arn:") else ctx.arn("sms-voice", f"opt-out-list/{name}")
        return [_check(f"sms-voice:{action}", arn, "sms-voice")]

    return build


# --- the table --------------------------------------------------------------------------------


def _none(params: dict[str, Any], ctx: _Context) -> list[Check]:
    return []


def _star(action: str, source: str) -> _Mapping:
    def build(params: dict[str, Any], ctx: _Context) -> list[Check]:
        return [_check(action, "*", source)]

    return build


MAPPINGS: dict[tuple[str, str], _Mapping] = {
    ("dynamodb", "GetItem"): _ddb_item("GetItem"),
    ("dynamodb", "PutItem"): _ddb_item("PutItem"),
    ("dynamodb", "UpdateItem"): _ddb_item("UpdateItem"),
    ("dynamodb", "DeleteItem"): _ddb_item("DeleteItem"),
    ("dynamodb", "DescribeTable"): _ddb_item("DescribeTable"),
    ("dynamodb", "Query"): _ddb_read("Query"),
    ("dynamodb", "Scan"): _ddb_read("Scan"),
    ("dynamodb", "BatchGetItem"): _ddb_batch("BatchGetItem"),
    ("dynamodb", "BatchWriteItem"): _ddb_batch("BatchWriteItem"),
    ("dynamodb", "TransactWriteItems"): _ddb_transact("TransactWriteItems", _TRANSACT_WRITE),
    ("dynamodb", "TransactGetItems"): _ddb_transact("TransactGetItems", (("Get", "GetItem"),)),
    ("sqs", "SendMessage"): _sqs("SendMessage", ("GenerateDataKey", "Decrypt")),
    ("sqs", "SendMessageBatch"): _sqs("SendMessage", ("GenerateDataKey", "Decrypt"), "sqs-batch"),
    ("sqs", "ReceiveMessage"): _sqs("ReceiveMessage", ("Decrypt",)),
    ("sqs", "DeleteMessage"): _sqs("DeleteMessage"),
    ("sqs", "DeleteMessageBatch"): _sqs("DeleteMessage", source="sqs-batch"),
    ("sqs", "ChangeMessageVisibility"): _sqs("ChangeMessageVisibility"),
    ("sqs", "ChangeMessageVisibilityBatch"): _sqs("ChangeMessageVisibility", source="sqs-batch"),
    ("sqs", "GetQueueAttributes"): _sqs("GetQueueAttributes"),
    ("sqs", "GetQueueUrl"): _sqs_get_queue_url,
    ("sqs", "ListQueues"): _star("sqs:ListQueues", "sqs"),
    ("sns", "Publish"): _sns_publish,
    ("sns", "PublishBatch"): _sns_publish,
    ("sns", "GetTopicAttributes"): _sns_topic("GetTopicAttributes"),
    ("sns", "ListSubscriptionsByTopic"): _sns_topic("ListSubscriptionsByTopic"),
    ("sns", "ListTopics"): _star("sns:ListTopics", "sns"),
    ("sesv2", "SendEmail"): _ses_send("SendEmail", "Content"),
    ("sesv2", "SendBulkEmail"): _ses_send("SendBulkEmail", "DefaultContent"),
    ("sesv2", "GetAccount"): _star("ses:GetAccount", "ses"),
    ("sesv2", "ListEmailTemplates"): _star("ses:ListEmailTemplates", "ses"),
    ("sesv2", "ListEmailIdentities"): _star("ses:ListEmailIdentities", "ses"),
    ("sesv2", "CreateEmailTemplate"): _ses_named("CreateEmailTemplate", "TemplateName", "template"),
    ("sesv2", "GetEmailTemplate"): _ses_named("GetEmailTemplate", "TemplateName", "template"),
    ("sesv2", "UpdateEmailTemplate"): _ses_named("UpdateEmailTemplate", "TemplateName", "template"),
    ("sesv2", "DeleteEmailTemplate"): _ses_named("DeleteEmailTemplate", "TemplateName", "template"),
    ("sesv2", "CreateEmailIdentity"): _ses_named("CreateEmailIdentity", "EmailIdentity", "identity"),
    ("sesv2", "GetEmailIdentity"): _ses_named("GetEmailIdentity", "EmailIdentity", "identity"),
    ("sesv2", "GetConfigurationSet"): _ses_named("GetConfigurationSet", "ConfigurationSetName", "configuration-set"),
    ("secretsmanager", "GetSecretValue"): _secret("GetSecretValue", ("Decrypt",)),
    ("secretsmanager", "DescribeSecret"): _secret("DescribeSecret"),
    ("secretsmanager", "PutSecretValue"): _secret("PutSecretValue", ("GenerateDataKey",)),
    ("secretsmanager", "UpdateSecret"): _secret("UpdateSecret"),
    ("kms", "Decrypt"): _kms_use("Decrypt"),
    ("kms", "Encrypt"): _kms_use("Encrypt"),
    ("kms", "GenerateDataKey"): _kms_use("GenerateDataKey"),
    ("kms", "GenerateDataKeyWithoutPlaintext"): _kms_use("GenerateDataKeyWithoutPlaintext"),
    ("kms", "DescribeKey"): _kms_use("DescribeKey"),
    ("s3", "GetObject"): _s3_object("GetObject", "GetObjectVersion", decrypts=True),
    ("s3", "HeadObject"): _s3_object("GetObject", "GetObjectVersion"),
    ("s3", "PutObject"): _s3_object("PutObject"),
    ("s3", "DeleteObject"): _s3_object("DeleteObject", "DeleteObjectVersion"),
    ("s3", "ListObjectsV2"): _s3_list,
    ("s3", "ListObjects"): _s3_list,
    ("s3", "HeadBucket"): _s3_list,
    ("pinpoint-sms-voice-v2", "SendTextMessage"): _sms_send,
    ("pinpoint-sms-voice-v2", "PutOptedOutNumber"): _sms_opt_out("PutOptedOutNumber"),
    ("pinpoint-sms-voice-v2", "DeleteOptedOutNumber"): _sms_opt_out("DeleteOptedOutNumber"),
    ("pinpoint-sms-voice-v2", "DescribeOptedOutNumbers"): _sms_opt_out("DescribeOptedOutNumbers"),
    ("sts", "GetCallerIdentity"): _none,
}


def checks(
    service: str, operation: str, params: dict[str, Any], *, region: str, account: str, resources: Resources
) -> list[Check]:
    """The IAM requests AWS evaluates for ``operation`` of ``service`` with input ``params``.

    ``service`` is botocore's name (``sesv2``, ``pinpoint-sms-voice-v2``) or the signing name
    (``sms-voice``); ``account`` owns the resources the request names by name only. Each check
    must be allowed; the same check comes once.
    """
    service = _CANONICAL.get(service, service)
    mapping = MAPPINGS.get((service, operation))
    if mapping is None:
        prefix = PREFIX.get(service, service)
        return [Check(f"{prefix}:{operation}", "*", unknown=True, source="no mapping")]
    found: dict[tuple[str, str, str, str | None], Check] = {}
    for check in mapping(params, _Context(region, account, resources)):
        found.setdefault(check.key, check)
    return list(found.values())


def call_checks(call: Call, *, account: str, resources: Resources, region: str = "us-east-1") -> list[Check]:
    """:func:`checks` for a request read off the wire (its signed region, else ``region``)."""
    return checks(
        call.model_name, call.operation, call.params, region=call.region or region, account=account, resources=resources
    )


def delivery_checks(
    service_principal: str,
    source_arn: str,
    target_service: str,
    target_arn: str,
    *,
    region: str,
    account: str,
    resources: Resources,
) -> list[Check]:
    """What a service's delivery to a queue or topic needs, made by ``service_principal``.

    SNS to SQS: ``delivery_checks("sns.amazonaws.com", topic_arn, "sqs", queue_arn, ...)``; SES
    event publishing: ``("ses.amazonaws.com", configuration_set_arn, "sns", topic_arn, ...)``; an
    inbound SMS: ``("sms-voice.amazonaws.com", phone_number_or_pool_arn, "sns", topic_arn, ...)``.
    Each check carries ``aws:SourceArn`` and ``aws:SourceAccount`` (the source's account).
    """
    ctx = _Context(region, account, resources)
    context = {"aws:SourceArn": source_arn, "aws:SourceAccount": arn_account(source_arn) or account}
    if target_service == "sqs":
        arn, facts = _queue(ctx, target_arn)
        found = [Check("sqs:SendMessage", arn, dict(context), service_principal, source=SOURCES["sqs"])]
        key = ctx.customer_key(facts.kms_key_id) if facts else None
        found += ctx.kms(("GenerateDataKey", "Decrypt"), key, "sqs", "sqs-kms-services", context, service_principal)
        return found
    if target_service == "sns":
        found = [Check("sns:Publish", target_arn, dict(context), service_principal, source=SOURCES["sns"])]
        topic = resources.topic(target_arn)
        key = ctx.customer_key(topic.kms_key_id) if topic else None
        found += ctx.kms(("GenerateDataKey", "Decrypt"), key, "sns", "sns-kms-services", context, service_principal)
        return found
    raise ValueError(f"no delivery to {target_service} is known here")


# --- the denial, as each service sends it -------------------------------------------------


def _display_action(service: str, action: str) -> str:
    """The action as the service writes it in its message: SQS in lower case, SNS as ``SNS:Publish``."""
    prefix, _, name = action.partition(":")
    if service == "sqs" and prefix == "sqs":
        return action.lower()
    if service == "sns" and prefix == "sns":
        return f"SNS:{name}"
    return action


def denial_message(service: str, principal: str, action: str, resource: str, because: str = "") -> str:
    """AWS's wording: ``User: <principal> is not authorized to perform: <action> on resource: <arn> because ...``.

    ``because`` is the evaluator's reason, e.g. "because no identity-based policy allows the
    sqs:SendMessage action"; the action in it is written the way ``service`` writes it too.
    """
    shown = _display_action(_CANONICAL.get(service, service), action)
    reason = because.replace(action, shown) if because else ""
    return f"User: {principal} is not authorized to perform: {shown} on resource: {resource}" + (
        f" {reason}" if reason else ""
    )


_JSON_VERSION = {"dynamodb": "1.0", "sqs": "1.0", "pinpoint-sms-voice-v2": "1.0"}
_QUERY_NAMESPACE = {
    "sns": "http://sns.amazonaws.com/doc/2010-03-31/",
    "sqs": "http://queue.amazonaws.com/doc/2012-11-05/",
    "sts": "https://sts.amazonaws.com/doc/2011-06-15/",
    "ses": "http://ses.amazonaws.com/doc/2010-12-01/",
}
_HEAD_OPERATIONS = frozenset({"HeadObject", "HeadBucket"})


def _protocol(service: str) -> str:
    with contextlib.suppress(Exception):
        from optout_local.wire import model

        return str(model(service).metadata.get("protocol", "json"))
    return "json"


def access_denied(
    service: str, operation: str, message: str, *, protocol: str | None = None, kms: bool = False
) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) of the AccessDenied error ``service`` answers ``operation`` with.

    ``protocol`` is the request's (:attr:`Call.protocol`: an old SDK may talk query to SQS); by
    default the service's own. ``kms``: the denial was of an implied KMS check, which SQS
    (``KMS.AccessDeniedException``, 400) and SNS (``KMSAccessDenied``, 400) report as errors of their
    own; the other services report it as their usual AccessDenied.

    - DynamoDB, AWS JSON 1.0: 400 ``com.amazon.coral.service#AccessDeniedException``.
    - SQS, AWS JSON 1.0: 403 with ``x-amzn-query-error: AccessDenied;Sender``; query XML 403
      ``AccessDenied``.
    - SNS, query XML: 403 ``AuthorizationError``.
    - S3, REST-XML: 403 ``AccessDenied`` (HEAD: no body, as S3 sends it).
    - Secrets Manager and KMS, AWS JSON 1.1: 400 ``AccessDeniedException``.
    - SES v2, REST-JSON: 403, ``x-amzn-ErrorType: AccessDeniedException``.
    - End User Messaging SMS, AWS JSON 1.0: 400 ``AccessDeniedException``.
    - anything else: ``AccessDeniedException`` (JSON, REST-JSON) or ``AccessDenied`` (query, REST-XML).
    """
    service = _CANONICAL.get(service, service)
    protocol = protocol or _protocol(service)
    text = html.escape(message, quote=False)  # for XML: &, < and >
    request_id = str(uuid.uuid4())
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())
    if protocol == "query":
        code, status = "AccessDenied", 403
        if service == "sns":
            code, status = ("KMSAccessDenied", 400) if kms else ("AuthorizationError", 403)
        elif service == "sqs" and kms:
            code, status = "KMS.AccessDeniedException", 400
        namespace = _QUERY_NAMESPACE.get(service)
        opening = f'<ErrorResponse xmlns="{namespace}">' if namespace else "<ErrorResponse>"
        body = (
            f"{opening}<Error><Type>Sender</Type><Code>{code}</Code><Message>{text}</Message>"
            f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
        headers = [("x-amzn-RequestId", request_id), ("Content-Type", "text/xml"), ("Date", date)]
    elif protocol == "rest-xml":
        status, short = 403, request_id.replace("-", "")[:16].upper()
        body = (
            b""
            if operation in _HEAD_OPERATIONS
            else (
                f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>{text}'
                f"</Message><RequestId>{short}</RequestId><HostId>{request_id}</HostId></Error>"
            ).encode()
        )
        headers = [("x-amz-request-id", short), ("x-amz-id-2", request_id), ("Content-Type", "application/xml"),
                   ("Date", date)]  # fmt: skip
    elif protocol == "rest-json":
        status = 403
        body = json.dumps({"message": message}).encode()
        headers = [("x-amzn-RequestId", request_id), ("Content-Type", "application/json"),
                   ("x-amzn-ErrorType", "AccessDeniedException"), ("Date", date)]  # fmt: skip
    else:  # AWS JSON 1.0 / 1.1
        version = _JSON_VERSION.get(service, "1.1")
        headers = [("x-amzn-RequestId", request_id), ("Content-Type", f"application/x-amz-json-{version}"),
                   ("Date", date)]  # fmt: skip
        if service == "dynamodb":
            status, payload = 400, {"__type": "com.amazon.coral.service#AccessDeniedException", "Message": message}
        elif service == "sqs":  # awsQueryCompatible: botocore takes the code from the header
            query_code, status, wire = (
                ("KMS.AccessDeniedException", 400, "com.amazonaws.sqs#KmsAccessDenied")
                if kms
                else ("AccessDenied", 403, "com.amazon.coral.service#AccessDeniedException")
            )
            headers.append(("x-amzn-query-error", f"{query_code};Sender"))
            payload = {"__type": wire, "message": message}
        else:
            status, payload = 400, {"__type": "AccessDeniedException", "Message": message}
        body = json.dumps(payload).encode()
    return status, [*headers, ("Content-Length", str(len(body)))], body


# --- the lookup, from moto's backends ---------------------------------------------------------


def _policy(text: Any) -> dict[str, Any] | None:
    if not text:
        return None
    with contextlib.suppress(ValueError, TypeError):
        parsed = json.loads(text.decode() if isinstance(text, bytes) else text)
        return parsed if isinstance(parsed, dict) else None
    return None


class MotoResources:
    """:class:`Resources` read from moto's backends in this process (the moto process's own).

    ``region`` and ``account`` are where a resource named by name alone lives; a URL or ARN says
    its own.
    """

    def __init__(self, region: str, account: str) -> None:
        self.region = region
        self.account = account

    # moto's models, by service

    def _sqs_queue(self, queue: str) -> Any:
        from moto.sqs.models import sqs_backends

        account, region, name = self.account, self.region, queue
        if queue.startswith("arn:"):
            account, region, name = arn_account(queue) or account, arn_region(queue) or region, queue.rsplit(":", 1)[-1]
        elif "://" in queue:
            segments = [s for s in urlsplit(queue).path.split("/") if s]
            name = segments[-1] if segments else ""
            if len(segments) >= 2 and segments[-2].isdigit():
                account = segments[-2]
        return sqs_backends[account][region].queues.get(name)

    def _sns_topic(self, arn: str) -> Any:
        from moto.sns.models import sns_backends

        account, region = arn_account(arn) or self.account, arn_region(arn) or self.region
        return sns_backends[account][region].topics.get(arn)

    def _kms_key(self, key_id: str) -> Any:
        from moto.kms.models import kms_backends

        account, region = self.account, self.region
        if key_id.startswith("arn:"):
            account, region = arn_account(key_id) or account, arn_region(key_id) or region
            key_id = key_id.split(":", 5)[-1]
        keys = kms_backends[account][region].keys
        if key_id.startswith("key/"):
            key_id = key_id[len("key/") :]
        if key_id in keys:
            return keys[key_id]
        # an alias: looked up without moto's get_key_id_from_alias, which creates alias/aws/* keys
        return next((k for k in keys.values() if key_id in k.aliases), None)

    def _secret(self, secret_id: str) -> Any:
        from moto.secretsmanager.models import secretsmanager_backends

        account, region = self.account, self.region
        if secret_id.startswith("arn:"):
            account, region = arn_account(secret_id) or account, arn_region(secret_id) or region
        with contextlib.suppress(Exception):
            return secretsmanager_backends[account][region].secrets.get(secret_id)
        return None

    def _bucket(self, bucket: str) -> Any:
        from moto.s3.models import s3_backends

        partition_name, account = s3_backends.bucket_accounts.get(bucket, (partition(self.region), self.account))
        return s3_backends[account][partition_name].buckets.get(bucket)

    # the Resources protocol

    def queue(self, queue: str) -> QueueFacts | None:
        found = self._sqs_queue(queue)
        if found is None:
            return None
        return QueueFacts(found.queue_arn, getattr(found, "kms_master_key_id", None) or None)

    def topic(self, topic_arn: str) -> TopicFacts | None:
        found = self._sns_topic(topic_arn)
        return None if found is None else TopicFacts(found.arn, found.kms_master_key_id or None)

    def key(self, key_id: str) -> KeyFacts | None:
        found = self._kms_key(key_id)
        if found is None:
            return None
        managed = found.key_manager == "AWS" or any(a.startswith("alias/aws/") for a in found.aliases)
        return KeyFacts(found.arn, managed)

    def secret(self, secret_id: str) -> SecretFacts | None:
        from moto.secretsmanager.models import SecretsManagerBackend

        found = self._secret(secret_id)
        if found is None:
            return None
        key = found.kms_key_id if found.kms_key_id != SecretsManagerBackend.DEFAULT_KMS_KEY_ALIAS else None
        return SecretFacts(found.arn, key or None)

    def table_arn(self, table: str) -> str | None:
        from moto.dynamodb.models import dynamodb_backends

        found = dynamodb_backends[self.account][self.region].tables.get(table)
        return None if found is None else str(found.table_arn)

    def table_partition_key(self, table: str) -> str | None:
        from moto.dynamodb.models import dynamodb_backends

        found = dynamodb_backends[self.account][self.region].tables.get(table.rpartition("/")[2])
        return None if found is None else str(found.hash_key_attr)

    def email_identity(self, address: str) -> str | None:
        from moto.ses.models import ses_backends

        identities = ses_backends[self.account][self.region].email_identities
        domain = address.rpartition("@")[2].lower()
        candidates = [address, *(".".join(domain.split(".")[i:]) for i in range(domain.count(".")))]
        for name in candidates:
            if name and name in identities:
                return f"arn:{partition(self.region)}:ses:{self.region}:{self.account}:identity/{name}"
        return None

    def object_kms_key(self, bucket: str, key: str) -> str | None:
        found = self._bucket(bucket)
        obj = found.keys.get(key) if found is not None else None
        if obj is None or getattr(obj, "encryption", None) not in ("aws:kms", "aws:kms:dsse"):
            return None
        return str(obj.kms_key_id or "alias/aws/s3")

    def bucket_kms_key(self, bucket: str) -> str | None:
        found = self._bucket(bucket)
        rules = (found.encryption or {}).get("Rule") if found is not None else None
        for rule in rules if isinstance(rules, list) else [rules] if rules else []:
            default = rule.get("ApplyServerSideEncryptionByDefault") or {}
            if default.get("SSEAlgorithm") in ("aws:kms", "aws:kms:dsse"):
                return str(default.get("KMSMasterKeyID") or "alias/aws/s3")
        return None

    def ciphertext_key(self, blob: bytes) -> str | None:
        """moto's ciphertext starts with the key id (36 characters): not AWS's format, but moto's."""
        with contextlib.suppress(UnicodeDecodeError):
            key_id = blob[:36].decode()
            return key_id if self._kms_key(key_id) is not None else None
        return None

    def resource_policy(self, arn: str) -> tuple[dict[str, Any] | None, bool]:
        """The policy on ``arn`` (a queue, topic, key, bucket or object, secret, table or index, SES identity)."""
        service = arn.split(":")[2] if arn.count(":") >= 5 else ""
        resource = arn.split(":", 5)[-1]
        found: Any = None
        if service == "sqs":
            found = self._sqs_queue(arn)
            return (_policy(found.policy) if found is not None else None), False
        if service == "sns":
            found = self._sns_topic(arn)
            return (_policy(found.policy) if found is not None else None), False
        if service == "kms":
            found = self._kms_key(arn)
            return (_policy(found.policy) if found is not None else None), True
        if service == "s3":
            found = self._bucket(resource.split("/", 1)[0])
            return (_policy(found.policy) if found is not None else None), False
        if service == "secretsmanager":
            found = self._secret(arn)
            return (_policy(found.policy) if found is not None else None), False
        if service == "dynamodb":
            from moto.dynamodb.models import dynamodb_backends

            table_arn = arn.split("/index/", 1)[0].split("/stream/", 1)[0]
            backend = dynamodb_backends[arn_account(arn) or self.account][arn_region(arn) or self.region]
            found = backend.resource_policies.get(table_arn)
            return (_policy(found.policy_doc) if found is not None else None), False
        if service == "ses" and resource.startswith("identity/"):
            from moto.ses.models import ses_backends

            ses = ses_backends[arn_account(arn) or self.account][arn_region(arn) or self.region]
            identity = ses.email_identities.get(resource[len("identity/") :])
            statements = [
                statement
                for text in (identity.policies.values() if identity is not None else [])
                for statement in (_policy(text) or {}).get("Statement", [])
            ]
            return ({"Version": "2012-10-17", "Statement": statements} if statements else None), False
        return None, False
