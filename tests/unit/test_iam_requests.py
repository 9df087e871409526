"""optout_local.wire and optout_local.iam.requests: from what botocore really sends to the IAM checks AWS makes.

Every request here is serialised by botocore itself: a client whose ``before-send`` handler keeps
the prepared request and answers with an empty success (as botocore's Stubber short-circuits the
network), so the parser reads what the SDK puts on the wire, not what a test imagines it does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import botocore.session
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError

from optout_local import faults, wire
from optout_local.iam.requests import (
    Check,
    KeyFacts,
    NoResources,
    QueueFacts,
    SecretFacts,
    TopicFacts,
    access_denied,
    call_checks,
    checks,
    delivery_checks,
    denial_message,
)

REGION = "us-east-1"
ACCOUNT = "123456789012"
ENDPOINT = "http://127.0.0.1:4566"
AKID = "ASIAFUNCTIONROLE0001"
QUEUE_URL = f"{ENDPOINT}/{ACCOUNT}/optout-send"
QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:optout-send"
TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT}:optout-events"
KEY_ID = "0d4f2a7e-9c1b-4f55-8a3e-6f7b8c9d0e1f"
KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{KEY_ID}"
TABLE = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/"
SES = f"arn:aws:ses:{REGION}:{ACCOUNT}:"
SMS = f"arn:aws:sms-voice:{REGION}:{ACCOUNT}:"
SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:optout/pepper-AbCdEf"

_session = botocore.session.get_session()


class _Raw:
    """The little of urllib3's response botocore reads."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body

    def read(self, *_: Any, **__: Any) -> bytes:
        return self.body


def _client(service: str, answer: Any) -> Any:
    client = _session.create_client(
        service, region_name=REGION, endpoint_url=ENDPOINT, aws_access_key_id=AKID,
        aws_secret_access_key="secret", aws_session_token="token",
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
    )  # fmt: skip
    client.meta.events.register("before-send", answer)
    return client


def sent(service: str, method: str, **params: Any) -> wire.Call:
    """The request botocore sends for ``client.method(**params)``, read back by the wire parser."""
    kept: list[AWSPreparedRequest] = []

    def answer(request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        kept.append(request)
        name = client.meta.method_to_api_mapping[method]
        body = b"{}" if "json" in client.meta.service_model.protocol else f"<{name}Response/>".encode()
        if client.meta.service_model.protocol == "query":
            body = f"<{name}Response><{name}Result/></{name}Response>".encode()
        return AWSResponse(request.url, 200, {}, _Raw(body))

    client = _client(service, answer)
    getattr(client, method)(**params)
    request = kept[0]
    body = request.body.read() if hasattr(request.body, "read") else request.body
    body = body.encode() if isinstance(body, str) else body or b""
    return wire.classify(request.method, request.url.removeprefix(ENDPOINT), request.headers, body)


def mapped(call: wire.Call, resources: Any = None) -> list[tuple[str, str]]:
    return [(c.action, c.resource) for c in call_checks(call, account=ACCOUNT, resources=resources or NoResources())]


@dataclass
class Facts:
    """A Resources lookup that knows what a test tells it."""

    queues: dict[str, QueueFacts] = field(default_factory=dict)
    topics: dict[str, TopicFacts] = field(default_factory=dict)
    keys: dict[str, KeyFacts] = field(default_factory=dict)
    secrets: dict[str, SecretFacts] = field(default_factory=dict)
    identities: dict[str, str] = field(default_factory=dict)
    objects: dict[tuple[str, str], str] = field(default_factory=dict)
    buckets: dict[str, str] = field(default_factory=dict)

    def queue(self, queue: str) -> QueueFacts | None:
        return self.queues.get(queue)

    def topic(self, topic_arn: str) -> TopicFacts | None:
        return self.topics.get(topic_arn)

    def key(self, key_id: str) -> KeyFacts | None:
        return self.keys.get(key_id)

    def secret(self, secret_id: str) -> SecretFacts | None:
        return self.secrets.get(secret_id)

    def table_arn(self, table: str) -> str | None:
        return None

    def table_partition_key(self, table: str) -> str | None:
        return "pk" if table == "keyed" else None

    def email_identity(self, address: str) -> str | None:
        return self.identities.get(address)

    def object_kms_key(self, bucket: str, key: str) -> str | None:
        return self.objects.get((bucket, key))

    def bucket_kms_key(self, bucket: str) -> str | None:
        return self.buckets.get(bucket)

    def ciphertext_key(self, blob: bytes) -> str | None:
        return KEY_ID if blob.startswith(KEY_ID.encode()) else None

    def resource_policy(self, arn: str) -> tuple[dict[str, Any] | None, bool]:
        return None, False


CUSTOMER_KEY = Facts(keys={KEY_ID: KeyFacts(KEY_ARN)}, queues={QUEUE_URL: QueueFacts(QUEUE_ARN, KEY_ID)})


# --- the wire ---------------------------------------------------------------------------------


def test_a_json_request_gives_its_service_operation_input_caller_and_region() -> None:
    # Given botocore's DynamoDB GetItem
    call = sent("dynamodb", "get_item", TableName="optout-suppression", Key={"pk": {"S": "a"}})
    # Then the wire gives what SigV4 and X-Amz-Target say, and the JSON body as the input
    assert (call.service, call.operation, call.protocol) == ("dynamodb", "GetItem", "json")
    assert (call.access_key, call.region) == (AKID, REGION)
    assert call.params == {"TableName": "optout-suppression", "Key": {"pk": {"S": "a"}}}


def test_a_query_request_gives_its_form_flattened() -> None:
    # Given botocore's SNS Publish to a phone number (query protocol)
    call = sent("sns", "publish", PhoneNumber="+15555550100", Message="hi",
                MessageAttributes={"AWS.SNS.SMS.SMSType": {"DataType": "String",
                                                           "StringValue": "Transactional"}})  # fmt: skip
    # Then the form's members come back under their wire names, one value each
    assert (call.service, call.operation, call.protocol) == ("sns", "Publish", "query")
    assert call.params["PhoneNumber"] == "+15555550100"
    assert call.params["MessageAttributes.entry.1.Name"] == "AWS.SNS.SMS.SMSType"


def test_a_query_sqs_request_from_an_old_sdk_is_read_too() -> None:
    # Given SQS's query protocol, as SDKs sent it before SQS spoke JSON
    auth = f"AWS4-HMAC-SHA256 Credential={AKID}/20260101/{REGION}/sqs/aws4_request, SignedHeaders=host, Signature=x"
    headers = {"Authorization": auth, "Content-Type": "application/x-www-form-urlencoded"}
    body = f"Action=SendMessage&QueueUrl={QUEUE_URL}&MessageBody=x".encode()
    # When it is read
    call = wire.classify("POST", "/", headers, body)
    # Then it is SendMessage to that queue, authorized as sqs:SendMessage
    assert (call.operation, call.protocol, call.params["QueueUrl"]) == ("SendMessage", "query", QUEUE_URL)
    assert mapped(call) == [("sqs:SendMessage", QUEUE_ARN)]


def test_an_s3_request_gives_its_uri_labels_and_query_members() -> None:
    # Given GetObject of a key with a slash and a space, and ListObjectsV2 with a prefix
    get = sent("s3", "get_object", Bucket="optout-manifests", Key="notices/2026 01.csv", Range="bytes=0-")
    listing = sent("s3", "list_objects_v2", Bucket="optout-manifests", Prefix="notices/")
    # Then the labels are URL-decoded and the query and header members carry their model names
    assert (get.operation, get.params["Bucket"], get.params["Key"]) == (
        "GetObject",
        "optout-manifests",
        "notices/2026 01.csv",
    )
    assert get.params["Range"] == "bytes=0-"
    assert (listing.operation, listing.params["Prefix"]) == ("ListObjectsV2", "notices/")


def test_a_virtual_hosted_s3_request_names_its_bucket_in_the_host() -> None:
    # Given a GET for bucket.localhost/key (virtual-hosted style)
    auth = f"AWS4-HMAC-SHA256 Credential={AKID}/20260101/{REGION}/s3/aws4_request, SignedHeaders=host, Signature=x"
    call = wire.classify(
        "GET", "/notices/a.csv", {"Authorization": auth, "Host": "optout-manifests.localhost:4566"}, b""
    )
    # Then it is the same GetObject as path style
    assert (call.operation, call.params["Bucket"], call.params["Key"]) == (
        "GetObject",
        "optout-manifests",
        "notices/a.csv",
    )


def test_a_presigned_url_gives_its_caller_from_the_query() -> None:
    # Given a presigned GetObject (credential in the query, no Authorization header)
    target = f"/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={AKID}%2F20260101%2F{REGION}%2Fs3%2Faws4_request"
    # When it is read
    call = wire.classify("GET", target, {}, b"")
    # Then the caller, region and service come from X-Amz-Credential
    assert (call.access_key, call.region, call.service, call.operation) == (AKID, REGION, "s3", "GetObject")


def test_ses_v2_gives_its_labels_and_json_body() -> None:
    # Given SES v2 calls with a label (the identity) and a JSON body (the send)
    identity = sent("sesv2", "get_email_identity", EmailIdentity="noreply@example.com")
    send = sent("sesv2", "send_email", FromEmailAddress="noreply@example.com", ConfigurationSetName="optout",
                Destination={"ToAddresses": ["a@example.org"]}, Content={"Raw": {"Data": b"x"}})  # fmt: skip
    # Then SES's signing name "ses" with a /v2/ path is sesv2, the label decoded, the body the input
    assert (identity.service, identity.operation, identity.params) == (
        "sesv2", "GetEmailIdentity", {"EmailIdentity": "noreply@example.com"})  # fmt: skip
    assert (send.operation, send.params["ConfigurationSetName"]) == ("SendEmail", "optout")


def test_end_user_messaging_is_read_under_its_signing_name_and_botocores() -> None:
    # Given a pinpoint-sms-voice-v2 call (signed as sms-voice)
    call = sent("pinpoint-sms-voice-v2", "send_text_message", DestinationPhoneNumber="+15555550100",
                OriginationIdentity="pool-0123", MessageBody="hi")  # fmt: skip
    # Then the ledger's name stays the signing name, and botocore's name is known
    assert (call.name, call.model_name) == ("sms-voice:SendTextMessage", "pinpoint-sms-voice-v2")


def test_the_fault_proxy_classifies_through_the_shared_parser() -> None:
    # Given the fault proxy's names for requests of each protocol
    calls = [
        sent("sqs", "send_message", QueueUrl=QUEUE_URL, MessageBody="x"),
        sent("sesv2", "send_email", FromEmailAddress="a@example.com", Destination={"ToAddresses": ["b@example.com"]},
             Content={"Raw": {"Data": b"x"}}),
        sent("s3", "head_object", Bucket="b", Key="k"),
        sent("sns", "publish", TopicArn=TOPIC_ARN, Message="x"),
    ]  # fmt: skip
    # Then faults uses wire's classifier and Call, and names them as before
    assert faults.classify is wire.classify and faults.Call is wire.Call
    assert [c.name for c in calls] == ["sqs:SendMessage", "sesv2:SendEmail", "s3:HeadObject", "sns:Publish"]
    assert faults.classify("GET", "/", {}, b"").service == "unknown"


# --- the mappings -----------------------------------------------------------------------------

CASES: list[tuple[str, str, dict[str, Any], list[tuple[str, str]]]] = [
    # DynamoDB (SAR: Amazon DynamoDB)
    ("dynamodb", "get_item", {"TableName": "s", "Key": {"pk": {"S": "a"}}}, [("dynamodb:GetItem", TABLE + "s")]),
    ("dynamodb", "put_item", {"TableName": "s", "Item": {"pk": {"S": "a"}}}, [("dynamodb:PutItem", TABLE + "s")]),
    ("dynamodb", "update_item", {"TableName": "s", "Key": {"pk": {"S": "a"}}}, [("dynamodb:UpdateItem", TABLE + "s")]),
    ("dynamodb", "delete_item", {"TableName": "s", "Key": {"pk": {"S": "a"}}}, [("dynamodb:DeleteItem", TABLE + "s")]),
    ("dynamodb", "query", {"TableName": "s", "KeyConditionExpression": "pk = :p",
                           "ExpressionAttributeValues": {":p": {"S": "a"}}}, [("dynamodb:Query", TABLE + "s")]),
    ("dynamodb", "query", {"TableName": "n", "IndexName": "by-status", "KeyConditionExpression": "st = :s",
                           "ExpressionAttributeValues": {":s": {"S": "a"}}},
     [("dynamodb:Query", TABLE + "n/index/by-status")]),
    ("dynamodb", "batch_get_item", {"RequestItems": {"s": {"Keys": [{"pk": {"S": "a"}}]},
                                                     "n": {"Keys": [{"pk": {"S": "b"}}]}}},
     [("dynamodb:BatchGetItem", TABLE + "s"), ("dynamodb:BatchGetItem", TABLE + "n")]),
    ("dynamodb", "batch_write_item", {"RequestItems": {"s": [{"PutRequest": {"Item": {"pk": {"S": "a"}}}},
                                                            {"DeleteRequest": {"Key": {"pk": {"S": "b"}}}}]}},
     [("dynamodb:BatchWriteItem", TABLE + "s")]),
    ("dynamodb", "transact_write_items", {"TransactItems": [
        {"Put": {"TableName": "s", "Item": {"pk": {"S": "a"}}}},
        {"Update": {"TableName": "n", "Key": {"pk": {"S": "b"}}, "UpdateExpression": "SET x = :x",
                    "ExpressionAttributeValues": {":x": {"S": "1"}}}},
        {"Delete": {"TableName": "n", "Key": {"pk": {"S": "c"}}}},
        {"ConditionCheck": {"TableName": "s", "Key": {"pk": {"S": "d"}},
                            "ConditionExpression": "attribute_exists(pk)"}},
        {"Put": {"TableName": "s", "Item": {"pk": {"S": "e"}}}},
    ]}, [("dynamodb:PutItem", TABLE + "s"), ("dynamodb:UpdateItem", TABLE + "n"), ("dynamodb:DeleteItem", TABLE + "n"),
         ("dynamodb:ConditionCheckItem", TABLE + "s")]),
    ("dynamodb", "transact_get_items", {"TransactItems": [{"Get": {"TableName": "s", "Key": {"pk": {"S": "a"}}}},
                                                          {"Get": {"TableName": "n", "Key": {"pk": {"S": "b"}}}}]},
     [("dynamodb:GetItem", TABLE + "s"), ("dynamodb:GetItem", TABLE + "n")]),
    # SQS (SAR: Amazon SQS; batches: SQS developer guide, Amazon SQS batch actions)
    ("sqs", "send_message", {"QueueUrl": QUEUE_URL, "MessageBody": "x"}, [("sqs:SendMessage", QUEUE_ARN)]),
    ("sqs", "send_message_batch", {"QueueUrl": QUEUE_URL, "Entries": [{"Id": "1", "MessageBody": "x"}]},
     [("sqs:SendMessage", QUEUE_ARN)]),
    ("sqs", "receive_message", {"QueueUrl": QUEUE_URL, "WaitTimeSeconds": 1}, [("sqs:ReceiveMessage", QUEUE_ARN)]),
    ("sqs", "delete_message", {"QueueUrl": QUEUE_URL, "ReceiptHandle": "r"}, [("sqs:DeleteMessage", QUEUE_ARN)]),
    ("sqs", "delete_message_batch", {"QueueUrl": QUEUE_URL, "Entries": [{"Id": "1", "ReceiptHandle": "r"}]},
     [("sqs:DeleteMessage", QUEUE_ARN)]),
    ("sqs", "change_message_visibility", {"QueueUrl": QUEUE_URL, "ReceiptHandle": "r", "VisibilityTimeout": 5},
     [("sqs:ChangeMessageVisibility", QUEUE_ARN)]),
    ("sqs", "change_message_visibility_batch",
     {"QueueUrl": QUEUE_URL, "Entries": [{"Id": "1", "ReceiptHandle": "r", "VisibilityTimeout": 5}]},
     [("sqs:ChangeMessageVisibility", QUEUE_ARN)]),
    ("sqs", "get_queue_attributes", {"QueueUrl": QUEUE_URL, "AttributeNames": ["All"]},
     [("sqs:GetQueueAttributes", QUEUE_ARN)]),
    ("sqs", "get_queue_url", {"QueueName": "optout-send"}, [("sqs:GetQueueUrl", QUEUE_ARN)]),
    ("sqs", "get_queue_url", {"QueueName": "theirs", "QueueOwnerAWSAccountId": "210987654321"},
     [("sqs:GetQueueUrl", f"arn:aws:sqs:{REGION}:210987654321:theirs")]),
    # SNS (SAR: Amazon SNS)
    ("sns", "publish", {"TopicArn": TOPIC_ARN, "Message": "x"}, [("sns:Publish", TOPIC_ARN)]),
    ("sns", "publish", {"PhoneNumber": "+15555550100", "Message": "x"}, [("sns:Publish", "+15555550100")]),
    ("sns", "publish", {"TargetArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:endpoint/GCM/app/e1", "Message": "x"},
     [("sns:Publish", f"arn:aws:sns:{REGION}:{ACCOUNT}:endpoint/GCM/app/e1")]),
    ("sns", "publish_batch", {"TopicArn": TOPIC_ARN, "PublishBatchRequestEntries": [{"Id": "1", "Message": "x"}]},
     [("sns:Publish", TOPIC_ARN)]),
    # SES v2 (SAR: Amazon Simple Email Service v2)
    ("sesv2", "send_email", {"FromEmailAddress": "Optout <noreply@example.com>", "ConfigurationSetName": "optout",
                             "Destination": {"ToAddresses": ["a@example.org"]}, "Content": {"Raw": {"Data": b"x"}}},
     [("ses:SendEmail", SES + "identity/noreply@example.com"), ("ses:SendEmail", SES + "configuration-set/optout")]),
    ("sesv2", "send_email", {"FromEmailAddress": "noreply@example.com",
                             "Destination": {"ToAddresses": ["a@example.org"]},
                             "Content": {"Template": {"TemplateName": "notice", "TemplateData": "{}"}}},
     [("ses:SendEmail", SES + "identity/noreply@example.com"), ("ses:SendEmail", SES + "template/notice")]),
    ("sesv2", "send_email", {"FromEmailAddress": "noreply@example.com",
                             "FromEmailAddressIdentityArn": "arn:aws:ses:us-east-1:210987654321:identity/example.com",
                             "Destination": {"ToAddresses": ["a@example.org"]}, "Content": {"Raw": {"Data": b"x"}}},
     [("ses:SendEmail", "arn:aws:ses:us-east-1:210987654321:identity/example.com")]),
    ("sesv2", "send_email", {"Destination": {"ToAddresses": ["a@example.org"]},
                             "Content": {"Raw": {"Data": b"From: Optout <raw@example.com>\r\nSubject: x\r\n\r\nhi"}}},
     [("ses:SendEmail", SES + "identity/raw@example.com")]),
    ("sesv2", "send_bulk_email", {"FromEmailAddress": "noreply@example.com", "ConfigurationSetName": "optout",
                                  "DefaultContent": {"Template": {"TemplateName": "notice", "TemplateData": "{}"}},
                                  "BulkEmailEntries": [{"Destination": {"ToAddresses": ["a@example.org"]}}]},
     [("ses:SendBulkEmail", SES + "identity/noreply@example.com"),
      ("ses:SendBulkEmail", SES + "configuration-set/optout"),
      ("ses:SendBulkEmail", SES + "template/notice")]),
    ("sesv2", "get_account", {}, [("ses:GetAccount", "*")]),
    ("sesv2", "create_email_template", {"TemplateName": "notice", "TemplateContent": {"Subject": "x", "Text": "y"}},
     [("ses:CreateEmailTemplate", SES + "template/notice")]),
    ("sesv2", "get_email_template", {"TemplateName": "notice"}, [("ses:GetEmailTemplate", SES + "template/notice")]),
    # S3 (SAR: Amazon S3)
    ("s3", "get_object", {"Bucket": "m", "Key": "a/b.csv"}, [("s3:GetObject", "arn:aws:s3:::m/a/b.csv")]),
    ("s3", "get_object", {"Bucket": "m", "Key": "a", "VersionId": "v1"}, [("s3:GetObjectVersion", "arn:aws:s3:::m/a")]),
    ("s3", "head_object", {"Bucket": "m", "Key": "a"}, [("s3:GetObject", "arn:aws:s3:::m/a")]),
    ("s3", "put_object", {"Bucket": "m", "Key": "a", "Body": b"x"}, [("s3:PutObject", "arn:aws:s3:::m/a")]),
    ("s3", "delete_object", {"Bucket": "m", "Key": "a"}, [("s3:DeleteObject", "arn:aws:s3:::m/a")]),
    ("s3", "list_objects_v2", {"Bucket": "m", "Prefix": "a/"}, [("s3:ListBucket", "arn:aws:s3:::m")]),
    ("s3", "head_bucket", {"Bucket": "m"}, [("s3:ListBucket", "arn:aws:s3:::m")]),
    # Secrets Manager (SAR: AWS Secrets Manager), the ARN as given when the lookup knows nothing
    ("secretsmanager", "get_secret_value", {"SecretId": SECRET_ARN}, [("secretsmanager:GetSecretValue", SECRET_ARN)]),
    ("secretsmanager", "describe_secret", {"SecretId": "optout/pepper"},
     [("secretsmanager:DescribeSecret", f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:optout/pepper")]),
    ("secretsmanager", "put_secret_value", {"SecretId": SECRET_ARN, "SecretString": "x"},
     [("secretsmanager:PutSecretValue", SECRET_ARN)]),
    # KMS (SAR: AWS Key Management Service)
    ("kms", "decrypt", {"CiphertextBlob": KEY_ID.encode() + b"\0" * 40}, [("kms:Decrypt", KEY_ARN)]),
    ("kms", "encrypt", {"KeyId": KEY_ARN, "Plaintext": b"x"}, [("kms:Encrypt", KEY_ARN)]),
    ("kms", "generate_data_key", {"KeyId": KEY_ID, "KeySpec": "AES_256"}, [("kms:GenerateDataKey", KEY_ARN)]),
    # End User Messaging SMS (SAR: AWS End User Messaging SMS and Voice V2)
    ("pinpoint-sms-voice-v2", "send_text_message", {"DestinationPhoneNumber": "+15555550100", "MessageBody": "x",
                                                    "OriginationIdentity": "pool-0123",
                                                    "ConfigurationSetName": "optout"},
     [("sms-voice:SendTextMessage", SMS + "pool/pool-0123"),
      ("sms-voice:SendTextMessage", SMS + "configuration-set/optout")]),
    ("pinpoint-sms-voice-v2", "send_text_message", {"DestinationPhoneNumber": "+15555550100", "MessageBody": "x",
                                                    "OriginationIdentity": SMS + "phone-number/phone-0a1b"},
     [("sms-voice:SendTextMessage", SMS + "phone-number/phone-0a1b")]),
    ("pinpoint-sms-voice-v2", "put_opted_out_number", {"OptOutListName": "optout", "OptedOutNumber": "+15555550100"},
     [("sms-voice:PutOptedOutNumber", SMS + "opt-out-list/optout")]),
    ("pinpoint-sms-voice-v2", "delete_opted_out_number", {"OptOutListName": "optout", "OptedOutNumber": "+15555550100"},
     [("sms-voice:DeleteOptedOutNumber", SMS + "opt-out-list/optout")]),
    # STS GetCallerIdentity: no permission is needed
    ("sts", "get_caller_identity", {}, []),
]  # fmt: skip


@pytest.mark.parametrize(("service", "method", "params", "expected"), CASES,
                         ids=[f"{s}.{m}-{i}" for i, (s, m, _, _) in enumerate(CASES)])  # fmt: skip
def test_each_operation_is_authorized_as_its_iam_actions(
    service: str, method: str, params: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    # Given the request botocore sends for the call
    call = sent(service, method, **params)
    # When it is mapped to IAM checks (with a lookup that only knows the test's KMS key)
    got = mapped(call, Facts(keys={KEY_ID: KeyFacts(KEY_ARN)}))
    # Then the checks are the IAM actions on the resources the SAR names, each once
    assert got == expected


def test_a_transaction_item_carries_its_enclosing_operation() -> None:
    # Given a TransactWriteItems and a TransactGetItems
    write = sent(
        "dynamodb", "transact_write_items", TransactItems=[{"Put": {"TableName": "s", "Item": {"pk": {"S": "a"}}}}]
    )
    read = sent(
        "dynamodb", "transact_get_items", TransactItems=[{"Get": {"TableName": "s", "Key": {"pk": {"S": "a"}}}}]
    )
    # Then each item's check says which transaction it came in (dynamodb:EnclosingOperation)
    [put] = call_checks(write, account=ACCOUNT, resources=NoResources())
    [get] = call_checks(read, account=ACCOUNT, resources=NoResources())
    assert put.context == {"dynamodb:EnclosingOperation": "TransactWriteItems"}
    assert get.context == {"dynamodb:EnclosingOperation": "TransactGetItems"}


def test_an_item_operation_carries_its_partition_key_as_leading_keys() -> None:
    # Given item operations on a table whose key schema is known (pk, sk) and on one whose is not
    facts = Facts()
    update = sent("dynamodb", "update_item", TableName="keyed", Key={"pk": {"S": "rate#x"}, "sk": {"S": "w"}})
    put = sent("dynamodb", "put_item", TableName="keyed", Item={"sk": {"S": "state"}, "pk": {"S": "abc"}})
    unknown = sent("dynamodb", "get_item", TableName="other", Key={"pk": {"S": "abc"}})
    write = sent(
        "dynamodb", "transact_write_items", TransactItems=[{"Put": {"TableName": "keyed", "Item": {"pk": {"S": "a"}}}}]
    )
    # Then each names the item's partition key value (dynamodb:LeadingKeys), and only where it is known
    [u] = call_checks(update, account=ACCOUNT, resources=facts)
    [p] = call_checks(put, account=ACCOUNT, resources=facts)
    [g] = call_checks(unknown, account=ACCOUNT, resources=facts)
    [t] = call_checks(write, account=ACCOUNT, resources=facts)
    assert u.context == {"dynamodb:LeadingKeys": ["rate#x"]}
    assert p.context == {"dynamodb:LeadingKeys": ["abc"]}
    assert g.context == {}
    assert t.context == {"dynamodb:EnclosingOperation": "TransactWriteItems", "dynamodb:LeadingKeys": ["a"]}
    # And a Query names the partition key value of its key condition, on the table (not an index)
    query = sent(
        "dynamodb", "query", TableName="keyed", KeyConditionExpression="#k = :v AND begins_with(sk, :s)",
        ExpressionAttributeNames={"#k": "pk"}, ExpressionAttributeValues={":v": {"S": "public#x"}, ":s": {"S": "a"}},
    )  # fmt: skip
    on_index = sent(
        "dynamodb", "query", TableName="keyed", IndexName="by_address", KeyConditionExpression="address_key = :v",
        ExpressionAttributeValues={":v": {"S": "k"}},
    )  # fmt: skip
    [q] = call_checks(query, account=ACCOUNT, resources=facts)
    [i] = call_checks(on_index, account=ACCOUNT, resources=facts)
    assert q.context == {"dynamodb:LeadingKeys": ["public#x"]} and i.context == {}


def test_an_ses_send_uses_the_verified_identity_and_its_condition_keys() -> None:
    # Given SES knows the sender's domain, not the address, as a verified identity
    call = sent("sesv2", "send_email", FromEmailAddress="Optout <noreply@example.com>",
                Destination={"ToAddresses": ["A <a@example.org>"], "BccAddresses": ["b@example.org"]},
                Content={"Raw": {"Data": b"x"}})  # fmt: skip
    facts = Facts(identities={"noreply@example.com": SES + "identity/example.com"})
    # When it is mapped
    [send] = call_checks(call, account=ACCOUNT, resources=facts)
    # Then the domain identity is the resource; the From address, its name and the recipients are condition keys
    assert send.resource == SES + "identity/example.com"
    assert send.context == {"ses:ApiVersion": "2", "ses:FromAddress": "noreply@example.com",
                            "ses:FromDisplayName": "Optout",
                            "ses:Recipients": ["a@example.org", "b@example.org"]}  # fmt: skip


def test_a_bulk_send_names_every_entrys_recipients_in_ses_recipients() -> None:
    # Given a bulk send to two entries, with inline content
    call = sent("sesv2", "send_bulk_email", FromEmailAddress="noreply@example.com",
                DefaultContent={"Template": {"TemplateContent": {"Subject": "s", "Text": "t"}}},
                BulkEmailEntries=[
                    {"Destination": {"ToAddresses": ["a@example.org"]}},
                    {"Destination": {"ToAddresses": ["b@example.org"], "CcAddresses": ["c@example.org"]}},
                ])  # fmt: skip
    # When it is mapped
    [send] = call_checks(call, account=ACCOUNT, resources=NoResources())
    # Then one check on the identity (no stored template), with every destination's recipients
    assert send.action == "ses:SendBulkEmail" and send.resource == SES + "identity/noreply@example.com"
    assert send.context["ses:Recipients"] == ["a@example.org", "b@example.org", "c@example.org"]


def test_a_secret_named_by_name_is_checked_on_its_full_arn() -> None:
    # Given a lookup that resolves the name to the secret's full ARN
    call = sent("secretsmanager", "get_secret_value", SecretId="optout/pepper", VersionStage="AWSCURRENT")
    facts = Facts(secrets={"optout/pepper": SecretFacts(SECRET_ARN)})
    # When it is mapped
    [check] = call_checks(call, account=ACCOUNT, resources=facts)
    # Then the full ARN is the resource; the id and stage as given are condition keys
    assert (check.action, check.resource) == ("secretsmanager:GetSecretValue", SECRET_ARN)
    assert check.context == {"secretsmanager:SecretId": "optout/pepper", "secretsmanager:VersionStage": "AWSCURRENT"}


def test_kms_by_alias_is_checked_on_the_key_with_the_alias_as_a_condition() -> None:
    # Given a GenerateDataKey by alias, with an encryption context
    call = sent("kms", "generate_data_key", KeyId="alias/optout-messages", KeySpec="AES_256",
                EncryptionContext={"purpose": "test"})  # fmt: skip
    # When the alias is known to name the key
    [check] = call_checks(call, account=ACCOUNT, resources=Facts(keys={"alias/optout-messages": KeyFacts(KEY_ARN)}))
    # Then the key is the resource and the alias and context are condition keys
    assert check.resource == KEY_ARN
    assert check.context == {"kms:RequestAlias": "alias/optout-messages", "kms:EncryptionContext:purpose": "test",
                             "kms:EncryptionContextKeys": ["purpose"]}  # fmt: skip


def test_an_operation_without_a_mapping_is_checked_by_name_and_flagged() -> None:
    # Given operations this module does not map
    purge = sent("sqs", "purge_queue", QueueUrl=QUEUE_URL)
    pool = sent("pinpoint-sms-voice-v2", "describe_pools")
    # Then each is its own action on "*", flagged unknown; mapped ones are not flagged
    assert call_checks(purge, account=ACCOUNT, resources=NoResources()) == [Check("sqs:PurgeQueue", "*", unknown=True)]
    assert [(c.action, c.unknown) for c in call_checks(pool, account=ACCOUNT, resources=NoResources())] == [
        ("sms-voice:DescribePools", True)
    ]
    assert not any(c.unknown for c in call_checks(sent("sqs", "send_message", QueueUrl=QUEUE_URL, MessageBody="x"),
                                                    account=ACCOUNT, resources=NoResources()))  # fmt: skip


# --- what a customer key implies --------------------------------------------------------------


def kms_checks(call: wire.Call, facts: Any) -> list[tuple[str, str, dict[str, Any]]]:
    return [(c.action, c.resource, c.context) for c in call_checks(call, account=ACCOUNT, resources=facts)
            if c.action.startswith("kms:")]  # fmt: skip


def test_sending_to_a_customer_key_queue_needs_generate_data_key_and_decrypt() -> None:
    # Given a queue encrypted under a customer key
    via = {"kms:ViaService": f"sqs.{REGION}.amazonaws.com"}
    # When a producer sends to it, one message or a batch
    single = sent("sqs", "send_message", QueueUrl=QUEUE_URL, MessageBody="x")
    batch = sent("sqs", "send_message_batch", QueueUrl=QUEUE_URL, Entries=[{"Id": "1", "MessageBody": "x"}])
    # Then both KMS actions are checked on the key, through SQS (SQS developer guide, Key management)
    expected = [("kms:GenerateDataKey", KEY_ARN, via), ("kms:Decrypt", KEY_ARN, via)]
    assert kms_checks(single, CUSTOMER_KEY) == expected
    assert kms_checks(batch, CUSTOMER_KEY) == expected


def test_receiving_from_a_customer_key_queue_needs_decrypt() -> None:
    # Given the same queue, when a consumer receives from it
    call = sent("sqs", "receive_message", QueueUrl=QUEUE_URL, MaxNumberOfMessages=10)
    # Then kms:Decrypt is checked on its key
    assert kms_checks(call, CUSTOMER_KEY) == [
        ("kms:Decrypt", KEY_ARN, {"kms:ViaService": "sqs.us-east-1.amazonaws.com"})
    ]


def test_the_aws_managed_sqs_key_needs_nothing() -> None:
    # Given queues under alias/aws/sqs (by alias, and by a key the lookup knows is AWS managed)
    by_alias = Facts(queues={QUEUE_URL: QueueFacts(QUEUE_ARN, "alias/aws/sqs")})
    by_key = Facts(
        queues={QUEUE_URL: QueueFacts(QUEUE_ARN, KEY_ID)}, keys={KEY_ID: KeyFacts(KEY_ARN, aws_managed=True)}
    )
    call = sent("sqs", "send_message", QueueUrl=QUEUE_URL, MessageBody="x")
    # Then no KMS check is made
    assert kms_checks(call, by_alias) == [] and kms_checks(call, by_key) == []


def test_a_customer_key_the_lookup_does_not_know_is_checked_on_its_arn() -> None:
    # Given a queue whose KmsMasterKeyId is a key id the lookup cannot resolve
    facts = Facts(queues={QUEUE_URL: QueueFacts(QUEUE_ARN, KEY_ID)})
    call = sent("sqs", "receive_message", QueueUrl=QUEUE_URL)
    # Then the key's ARN is built from the id
    assert [c[:2] for c in kms_checks(call, facts)] == [("kms:Decrypt", KEY_ARN)]


def test_an_event_source_mapping_needs_what_the_sqs_guide_lists() -> None:
    # Given the calls the local event source mapping makes (pollers.py): receive, delete a batch, read attributes
    calls = [
        sent("sqs", "receive_message", QueueUrl=QUEUE_URL, MaxNumberOfMessages=10, WaitTimeSeconds=1,
             AttributeNames=["All"], MessageAttributeNames=["All"]),
        sent("sqs", "delete_message_batch", QueueUrl=QUEUE_URL, Entries=[{"Id": "0", "ReceiptHandle": "r"}]),
        sent("sqs", "get_queue_attributes", QueueUrl=QUEUE_URL, AttributeNames=["All"]),
    ]  # fmt: skip
    # Then, on a customer-key queue, they need exactly sqs:ReceiveMessage, DeleteMessage, GetQueueAttributes
    # and kms:Decrypt ("Configuring a queue to trigger an AWS Lambda function")
    actions = {c.action for call in calls for c in call_checks(call, account=ACCOUNT, resources=CUSTOMER_KEY)}
    assert actions == {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "kms:Decrypt"}


def test_publishing_to_an_encrypted_topic_needs_its_key() -> None:
    # Given a topic under a customer key, and one without
    facts = Facts(keys={KEY_ID: KeyFacts(KEY_ARN)}, topics={TOPIC_ARN: TopicFacts(TOPIC_ARN, KEY_ID)})
    plain = Facts(topics={TOPIC_ARN: TopicFacts(TOPIC_ARN)})
    call = sent("sns", "publish", TopicArn=TOPIC_ARN, Message="x")
    # Then publishing to the first needs kms:GenerateDataKey and kms:Decrypt through SNS; the second nothing
    via = {"kms:ViaService": "sns.us-east-1.amazonaws.com"}
    assert kms_checks(call, facts) == [("kms:GenerateDataKey", KEY_ARN, via), ("kms:Decrypt", KEY_ARN, via)]
    assert kms_checks(call, plain) == []


def test_a_customer_key_secret_needs_decrypt_to_read_and_generate_data_key_to_write() -> None:
    # Given a secret under a customer key, and one under aws/secretsmanager
    facts = Facts(
        keys={KEY_ID: KeyFacts(KEY_ARN)},
        secrets={
            SECRET_ARN: SecretFacts(SECRET_ARN, KEY_ID),
            "plain": SecretFacts(SECRET_ARN.replace("pepper", "plain")),
        },
    )
    context = {
        "kms:ViaService": "secretsmanager.us-east-1.amazonaws.com",
        "kms:EncryptionContext:SecretARN": SECRET_ARN,
    }
    # Then reading needs kms:Decrypt with the secret in the encryption context, writing kms:GenerateDataKey
    assert kms_checks(sent("secretsmanager", "get_secret_value", SecretId=SECRET_ARN), facts) == [
        ("kms:Decrypt", KEY_ARN, context)
    ]
    assert kms_checks(sent("secretsmanager", "put_secret_value", SecretId=SECRET_ARN, SecretString="x"), facts) == [
        ("kms:GenerateDataKey", KEY_ARN, context)
    ]
    assert kms_checks(sent("secretsmanager", "get_secret_value", SecretId="plain"), facts) == []


def test_sse_kms_objects_need_decrypt_to_get_and_generate_data_key_to_put() -> None:
    # Given an SSE-KMS object, and a bucket whose default encryption is SSE-KMS
    facts = Facts(keys={KEY_ID: KeyFacts(KEY_ARN)}, objects={("m", "a"): KEY_ID}, buckets={"m": KEY_ID})
    via = {"kms:ViaService": "s3.us-east-1.amazonaws.com"}
    # Then GetObject needs kms:Decrypt, PutObject kms:GenerateDataKey; HeadObject reads no content
    assert kms_checks(sent("s3", "get_object", Bucket="m", Key="a"), facts) == [("kms:Decrypt", KEY_ARN, via)]
    assert kms_checks(sent("s3", "put_object", Bucket="m", Key="b", Body=b"x"), facts) == [
        ("kms:GenerateDataKey", KEY_ARN, via)
    ]
    assert kms_checks(sent("s3", "head_object", Bucket="m", Key="a"), facts) == []
    # And a PutObject that asks for SSE-S3 needs no key
    assert (
        kms_checks(sent("s3", "put_object", Bucket="m", Key="c", Body=b"x", ServerSideEncryption="AES256"), facts) == []
    )


# --- deliveries between services --------------------------------------------------------------


def test_sns_delivering_to_a_customer_key_queue_needs_the_queue_and_its_key() -> None:
    # Given SNS delivers a topic's message to a queue under a customer key
    got = delivery_checks("sns.amazonaws.com", TOPIC_ARN, "sqs", QUEUE_ARN, region=REGION, account=ACCOUNT,
                          resources=Facts(keys={KEY_ID: KeyFacts(KEY_ARN)},
                                          queues={QUEUE_ARN: QueueFacts(QUEUE_ARN, KEY_ID)}))  # fmt: skip
    # Then SNS itself needs sqs:SendMessage on the queue and both KMS actions on the key, the topic as source
    source = {"aws:SourceArn": TOPIC_ARN, "aws:SourceAccount": ACCOUNT}
    assert [(c.principal, c.action, c.resource, c.context) for c in got] == [
        ("sns.amazonaws.com", "sqs:SendMessage", QUEUE_ARN, source),
        ("sns.amazonaws.com", "kms:GenerateDataKey", KEY_ARN, source),
        ("sns.amazonaws.com", "kms:Decrypt", KEY_ARN, source),
    ]


def test_ses_and_end_user_messaging_publishing_to_topics() -> None:
    # Given SES publishes events to an encrypted topic, and End User Messaging an inbound SMS to a plain one
    facts = Facts(keys={KEY_ID: KeyFacts(KEY_ARN)}, topics={TOPIC_ARN: TopicFacts(TOPIC_ARN, KEY_ID)})
    config_set = SES + "configuration-set/optout"
    ses = delivery_checks("ses.amazonaws.com", config_set, "sns", TOPIC_ARN, region=REGION, account=ACCOUNT,
                          resources=facts)  # fmt: skip
    plain = f"arn:aws:sns:{REGION}:{ACCOUNT}:inbound-sms"
    sms = delivery_checks("sms-voice.amazonaws.com", SMS + "phone-number/phone-0a1b", "sns", plain, region=REGION,
                          account=ACCOUNT, resources=facts)  # fmt: skip
    # Then SES needs sns:Publish and the topic's key; End User Messaging needs sns:Publish only
    assert [(c.principal, c.action, c.resource) for c in ses] == [
        ("ses.amazonaws.com", "sns:Publish", TOPIC_ARN),
        ("ses.amazonaws.com", "kms:GenerateDataKey", KEY_ARN),
        ("ses.amazonaws.com", "kms:Decrypt", KEY_ARN),
    ]
    assert [(c.principal, c.action, c.resource) for c in sms] == [("sms-voice.amazonaws.com", "sns:Publish", plain)]
    assert ses[0].context == {"aws:SourceArn": config_set, "aws:SourceAccount": ACCOUNT}
    # And a delivery to a service this module does not know is refused as a programming error
    with pytest.raises(ValueError, match="lambda"):
        delivery_checks("sns.amazonaws.com", TOPIC_ARN, "lambda", "arn:x", region=REGION, account=ACCOUNT,
                        resources=facts)  # fmt: skip


# --- the denial -------------------------------------------------------------------------------

DENIALS: list[tuple[str, str, dict[str, Any], bool, str, int]] = [
    ("dynamodb", "get_item", {"TableName": "s", "Key": {"pk": {"S": "a"}}}, False, "AccessDeniedException", 400),
    ("sqs", "send_message", {"QueueUrl": QUEUE_URL, "MessageBody": "x"}, False, "AccessDenied", 403),
    ("sqs", "receive_message", {"QueueUrl": QUEUE_URL}, True, "KMS.AccessDeniedException", 400),
    ("sns", "publish", {"TopicArn": TOPIC_ARN, "Message": "x"}, False, "AuthorizationError", 403),
    ("sns", "publish", {"TopicArn": TOPIC_ARN, "Message": "x"}, True, "KMSAccessDenied", 400),
    ("s3", "get_object", {"Bucket": "m", "Key": "a"}, False, "AccessDenied", 403),
    ("secretsmanager", "get_secret_value", {"SecretId": "s"}, False, "AccessDeniedException", 400),
    ("kms", "decrypt", {"CiphertextBlob": b"x"}, False, "AccessDeniedException", 400),
    ("sesv2", "send_email", {"FromEmailAddress": "a@example.com", "Destination": {"ToAddresses": ["b@example.com"]},
                             "Content": {"Raw": {"Data": b"x"}}}, False, "AccessDeniedException", 403),
    ("pinpoint-sms-voice-v2", "send_text_message", {"DestinationPhoneNumber": "+15555550100", "MessageBody": "x"},
     False, "AccessDeniedException", 400),
    ("sts", "get_caller_identity", {}, False, "AccessDenied", 403),
]  # fmt: skip


@pytest.mark.parametrize(("service", "method", "params", "kms", "code", "status"), DENIALS,
                         ids=[f"{d[0]}.{d[1]}{'-kms' if d[3] else ''}" for d in DENIALS])  # fmt: skip
def test_botocore_parses_each_denial_back_to_its_code(
    service: str, method: str, params: dict[str, Any], kms: bool, code: str, status: int
) -> None:
    # Given the denial for the request, in that service's wire format
    message = "User: arn:aws:sts::123456789012:assumed-role/r/s is not authorized to perform: x:Y on resource: z"

    def answer(request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        operation = client.meta.method_to_api_mapping[method]
        status_code, headers, body = access_denied(service, operation, message, kms=kms)
        return AWSResponse(request.url, status_code, dict(headers), _Raw(body))

    client = _client(service, answer)
    # When botocore's own client receives it
    with pytest.raises(ClientError) as denied:
        getattr(client, method)(**params)
    # Then it parses to the service's AccessDenied code, status and message
    error, meta = denied.value.response["Error"], denied.value.response["ResponseMetadata"]
    assert (error["Code"], meta["HTTPStatusCode"], error["Message"]) == (code, status, message)


def test_a_denied_head_has_no_body_as_s3_sends_it() -> None:
    # Given a denied HeadObject
    def answer(request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        status, headers, body = access_denied("s3", "HeadObject", "User: x is not authorized")
        assert body == b""
        return AWSResponse(request.url, status, dict(headers), _Raw(body))

    # When botocore receives it, then it is the bare 403 S3 sends for a HEAD
    with pytest.raises(ClientError) as denied:
        _client("s3", answer).head_object(Bucket="m", Key="a")
    response = denied.value.response
    assert (response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]) == ("403", 403)


def test_a_query_protocol_sqs_request_gets_the_query_error() -> None:
    # Given a denial for SQS spoken in the query protocol (an old SDK)
    from botocore.parsers import QueryParser

    status, headers, body = access_denied("sqs", "SendMessage", "User: x & y is not authorized", protocol="query")
    # When botocore's query parser reads it
    parsed = QueryParser().parse({"status_code": status, "headers": dict(headers), "body": body}, None)
    # Then it is SQS's AccessDenied, the message escaped and read back whole
    assert status == 403
    assert (parsed["Error"]["Code"], parsed["Error"]["Message"]) == ("AccessDenied", "User: x & y is not authorized")


def test_the_denial_message_is_in_each_services_wording() -> None:
    # Given a role session denied an action
    principal = "arn:aws:sts::123456789012:assumed-role/optout-sender/fn"
    because = "because no identity-based policy allows the {} action"
    # Then SQS writes the action in lower case, SNS as SNS:Publish, the others as IAM does
    assert denial_message("sqs", principal, "sqs:SendMessage", QUEUE_ARN, because.format("sqs:SendMessage")) == (
        f"User: {principal} is not authorized to perform: sqs:sendmessage on resource: {QUEUE_ARN} "
        "because no identity-based policy allows the sqs:sendmessage action"
    )
    assert denial_message("sns", principal, "sns:Publish", "+15555550100") == (
        f"User: {principal} is not authorized to perform: SNS:Publish on resource: +15555550100"
    )
    assert denial_message(
        "dynamodb", principal, "dynamodb:GetItem", TABLE + "s", because.format("dynamodb:GetItem")
    ) == (
        f"User: {principal} is not authorized to perform: dynamodb:GetItem on resource: {TABLE}s "
        "because no identity-based policy allows the dynamodb:GetItem action"
    )


def test_checks_accept_the_signing_name_as_the_service() -> None:
    # Given an opt-out named by End User Messaging's signing name and by botocore's name
    params = {"OptOutListName": "optout", "OptedOutNumber": "+15555550100"}
    by_signing = checks(
        "sms-voice", "PutOptedOutNumber", params, region=REGION, account=ACCOUNT, resources=NoResources()
    )
    by_botocore = checks("pinpoint-sms-voice-v2", "PutOptedOutNumber", params, region=REGION, account=ACCOUNT,
                         resources=NoResources())  # fmt: skip
    # Then both name the same check
    assert by_signing == by_botocore == [Check("sms-voice:PutOptedOutNumber", SMS + "opt-out-list/optout")]
