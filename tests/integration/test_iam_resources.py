"""MotoResources: the facts the IAM checks need, read from moto's backends as the moto process holds them."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from optout_local.iam.requests import (
    KeyFacts,
    MotoResources,
    QueueFacts,
    SecretFacts,
    TopicFacts,
    checks,
    delivery_checks,
)
from optout_local.provision import ACCOUNT_ID, Stack

REGION = "us-east-1"
POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"},
                                                  "Action": "sqs:SendMessage", "Resource": "*"}]}  # fmt: skip


@pytest.fixture
def moto() -> Iterator[MotoResources]:
    with mock_aws():
        yield MotoResources(REGION, ACCOUNT_ID)


def client(service: str) -> Any:
    return boto3.client(service, region_name=REGION)


def test_a_queue_is_found_by_url_name_or_arn_with_its_key(moto: MotoResources) -> None:
    # Given a queue under a customer key, and one without encryption
    key = client("kms").create_key()["KeyMetadata"]
    sqs = client("sqs")
    url = sqs.create_queue(QueueName="inbound", Attributes={"KmsMasterKeyId": key["KeyId"]})["QueueUrl"]
    plain = sqs.create_queue(QueueName="plain")["QueueUrl"]
    arn = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:inbound"
    # Then the lookup finds it however it is named, with KmsMasterKeyId as set
    assert moto.queue(url) == moto.queue("inbound") == moto.queue(arn) == QueueFacts(arn, key["KeyId"])
    assert moto.queue(plain) == QueueFacts(f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:plain", None)
    # And a queue that does not exist is not known
    assert moto.queue(f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT_ID}/missing") is None


def test_a_topic_is_found_with_its_key(moto: MotoResources) -> None:
    # Given an encrypted topic
    arn = client("sns").create_topic(Name="events", Attributes={"KmsMasterKeyId": "alias/optout"})["TopicArn"]
    # Then its KmsMasterKeyId is known; an unknown topic is not
    assert moto.topic(arn) == TopicFacts(arn, "alias/optout")
    assert moto.topic(arn + "-missing") is None


def test_a_key_is_found_by_id_arn_alias_and_alias_arn(moto: MotoResources) -> None:
    # Given a customer key with an alias
    kms = client("kms")
    key = kms.create_key()["KeyMetadata"]
    kms.create_alias(AliasName="alias/optout-messages", TargetKeyId=key["KeyId"])
    alias_arn = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:alias/optout-messages"
    # Then each way of naming it gives the key's ARN, and it is a customer key
    found = {moto.key(name) for name in (key["KeyId"], key["Arn"], "alias/optout-messages", alias_arn)}
    assert found == {KeyFacts(key["Arn"], aws_managed=False)}
    assert moto.key("alias/nothing") is None


def test_the_aws_managed_key_is_known_as_such_and_never_made_by_looking(moto: MotoResources) -> None:
    # Given no AWS managed key yet
    kms = client("kms")
    # When one is looked up, then it is not known, and looking did not create it (moto would, on its alias)
    assert moto.key("alias/aws/sqs") is None
    assert kms.list_keys()["Keys"] == []
    # And once a service has made its own (DynamoDB does, for a table encrypted without a key), it is AWS managed
    client("dynamodb").create_table(TableName="t", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                                    AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                                    BillingMode="PAY_PER_REQUEST",
                                    SSESpecification={"Enabled": True, "SSEType": "KMS"})  # fmt: skip
    [managed] = kms.list_keys()["Keys"]
    assert moto.key("alias/aws/dynamodb") == KeyFacts(managed["KeyArn"], aws_managed=True)


def test_a_secret_is_found_by_name_and_partial_arn_with_its_key(moto: MotoResources) -> None:
    # Given a secret under a customer key and one under aws/secretsmanager
    key = client("kms").create_key()["KeyMetadata"]
    secrets = client("secretsmanager")
    arn = secrets.create_secret(Name="optout/pepper", SecretString="x", KmsKeyId=key["Arn"])["ARN"]
    plain = secrets.create_secret(Name="optout/signing", SecretString="y")["ARN"]
    partial = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:optout/pepper"
    # Then a name, a partial ARN and the full ARN all give the full ARN (with its suffix)
    assert moto.secret("optout/pepper") == moto.secret(partial) == moto.secret(arn) == SecretFacts(arn, key["Arn"])
    assert arn.startswith(partial + "-")
    # And the AWS managed key is no customer key
    assert moto.secret("optout/signing") == SecretFacts(plain, None)
    assert moto.secret("optout/none") is None


def test_a_table_and_its_resource_policy(moto: MotoResources) -> None:
    # Given a table with a resource policy
    ddb = client("dynamodb")
    arn = ddb.create_table(TableName="s", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                           AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                           BillingMode="PAY_PER_REQUEST")["TableDescription"]["TableArn"]  # fmt: skip
    ddb.put_resource_policy(ResourceArn=arn, Policy=json.dumps(POLICY))
    # Then its ARN is moto's, and the policy applies to it and its indexes
    assert moto.table_arn("s") == arn and moto.table_arn("missing") is None
    assert moto.resource_policy(arn) == moto.resource_policy(arn + "/index/by-status") == (POLICY, False)


def test_an_address_is_sent_as_its_own_identity_else_its_domains(moto: MotoResources) -> None:
    # Given a verified domain, and one address verified on its own
    ses = client("sesv2")
    ses.create_email_identity(EmailIdentity="example.com")
    ses.create_email_identity(EmailIdentity="owner@example.org")
    identity = f"arn:aws:ses:{REGION}:{ACCOUNT_ID}:identity/"
    # Then an address of the domain (or of a subdomain) is sent as the domain, the other as itself
    assert moto.email_identity("noreply@example.com") == identity + "example.com"
    assert moto.email_identity("noreply@mail.example.com") == identity + "example.com"
    assert moto.email_identity("owner@example.org") == identity + "owner@example.org"
    assert moto.email_identity("other@example.org") is None


def test_sse_kms_objects_and_buckets(moto: MotoResources) -> None:
    # Given a bucket with SSE-KMS by default, an object under it, and an SSE-S3 object
    key = client("kms").create_key()["KeyMetadata"]
    s3 = client("s3")
    s3.create_bucket(Bucket="manifests")
    s3.put_object(Bucket="manifests", Key="plain.csv", Body=b"x", ServerSideEncryption="AES256")
    s3.put_bucket_encryption(Bucket="manifests", ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key["Arn"]}},
    ]})  # fmt: skip
    s3.put_object(
        Bucket="manifests", Key="secret.csv", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId=key["Arn"]
    )
    # Then the encrypted object's key and the bucket's default key are known; the SSE-S3 object has none
    assert moto.object_kms_key("manifests", "secret.csv") == key["Arn"]
    assert moto.object_kms_key("manifests", "plain.csv") is None
    assert moto.bucket_kms_key("manifests") == key["Arn"]
    assert moto.bucket_kms_key("missing") is None


def test_each_resource_policy_and_whether_it_is_a_key_policy(moto: MotoResources) -> None:
    # Given a queue, a topic, a key, a bucket, a secret and an SES identity, each with a policy
    sqs, s3, secrets = client("sqs"), client("s3"), client("secretsmanager")
    sqs.create_queue(QueueName="q", Attributes={"Policy": json.dumps(POLICY)})
    topic = client("sns").create_topic(Name="t")["TopicArn"]
    key = client("kms").create_key(Policy=json.dumps(POLICY))["KeyMetadata"]
    s3.create_bucket(Bucket="optout-policy")
    s3.put_bucket_policy(Bucket="optout-policy", Policy=json.dumps(POLICY))
    secret = secrets.create_secret(Name="s", SecretString="x")["ARN"]
    secrets.put_resource_policy(SecretId=secret, ResourcePolicy=json.dumps(POLICY))
    client("sesv2").create_email_identity(EmailIdentity="example.com")
    client("sesv2").create_email_identity_policy(EmailIdentity="example.com", PolicyName="p", Policy=json.dumps(POLICY))
    # Then each policy comes back as a document, the key's as a key policy
    assert moto.resource_policy(f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:q") == (POLICY, False)
    assert moto.resource_policy(key["Arn"]) == (POLICY, True)
    bucket = "arn:aws:s3:::optout-policy"
    assert moto.resource_policy(bucket) == moto.resource_policy(bucket + "/any/key") == (POLICY, False)
    assert moto.resource_policy(secret) == (POLICY, False)
    assert moto.resource_policy(f"arn:aws:ses:{REGION}:{ACCOUNT_ID}:identity/example.com") == (POLICY, False)
    # And a topic has SNS's default policy; what has none, or is unknown, gives none
    policy, is_key = moto.resource_policy(topic)
    assert policy is not None and policy["Statement"] and not is_key
    assert moto.resource_policy(f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:missing") == (None, False)
    assert moto.resource_policy(f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:f") == (None, False)


def test_a_ciphertext_names_its_key(moto: MotoResources) -> None:
    # Given data encrypted under a key
    kms = client("kms")
    key = kms.create_key()["KeyMetadata"]
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    # Then the ciphertext's key is known, and Decrypt without KeyId is checked on it
    assert moto.ciphertext_key(blob) == key["KeyId"]
    assert moto.ciphertext_key(b"not a ciphertext") is None
    got = checks("kms", "Decrypt", {"CiphertextBlob": base64.b64encode(blob).decode()},
                 region=REGION, account=ACCOUNT_ID, resources=moto)  # fmt: skip
    assert [(c.action, c.resource) for c in got] == [("kms:Decrypt", key["Arn"])]


def test_checks_read_through_moto_resolve_full_arns_and_keys(moto: MotoResources) -> None:
    # Given a customer-key queue and a secret named by name
    key = client("kms").create_key()["KeyMetadata"]
    url = client("sqs").create_queue(QueueName="feedback", Attributes={"KmsMasterKeyId": key["KeyId"]})["QueueUrl"]
    secret = client("secretsmanager").create_secret(Name="optout/pepper", SecretString="x")["ARN"]
    # When their operations are mapped with the moto lookup
    send = checks("sqs", "SendMessage", {"QueueUrl": url, "MessageBody": "x"}, region=REGION, account=ACCOUNT_ID,
                  resources=moto)  # fmt: skip
    read = checks("secretsmanager", "GetSecretValue", {"SecretId": "optout/pepper"}, region=REGION,
                  account=ACCOUNT_ID, resources=moto)  # fmt: skip
    # Then the queue's key is checked by its ARN, and the secret by its full ARN
    queue = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:feedback"
    assert [(c.action, c.resource) for c in send] == [
        ("sqs:SendMessage", queue), ("kms:GenerateDataKey", key["Arn"]), ("kms:Decrypt", key["Arn"])]  # fmt: skip
    assert [(c.action, c.resource) for c in read] == [("secretsmanager:GetSecretValue", secret)]


def test_the_stacks_own_queues_and_topics(aws: Stack) -> None:
    # Given the stack of template.yaml, provisioned in moto
    moto = MotoResources(REGION, ACCOUNT_ID)
    key_arn = aws.resolver.attrs[("MessagesKey", "Arn")]
    inbound = aws.resolver.attrs[("InboundSmsQueue", "Arn")]
    dispatch = aws.ref("DispatchQueue")
    topic = aws.ref("SesEventsTopic")
    # Then the queue policy the template sets is the queue's resource policy
    policy, is_key = moto.resource_policy(inbound)
    assert not is_key and policy is not None
    assert [s.get("Sid") for s in policy["Statement"]] == ["InboundSmsTopicOnly"]
    # (each queue's KmsMasterKeyId as the template declares it: the provisioner does not pass it yet, and
    # moto's SetQueueAttributes drops a Policy it is not given, so this comes after the policy's check)
    for logical_id, resource in aws.resolver.template["Resources"].items():
        declared = resource.get("Properties", {}).get("KmsMasterKeyId")
        if resource["Type"] == "AWS::SQS::Queue" and declared is not None:
            attributes = {"KmsMasterKeyId": str(aws.resolver.resolve(declared))}
            client("sqs").set_queue_attributes(QueueUrl=aws.ref(logical_id), Attributes=attributes)
    # And a consumer of the inbound SMS queue (customer key) needs kms:Decrypt on the stack's key...
    receive = checks("sqs", "ReceiveMessage", {"QueueUrl": aws.ref("InboundSmsQueue")}, region=REGION,
                     account=ACCOUNT_ID, resources=moto)  # fmt: skip
    assert [(c.action, c.resource) for c in receive] == [("sqs:ReceiveMessage", inbound), ("kms:Decrypt", key_arn)]
    # ...a producer to the dispatch queue (alias/aws/sqs) needs nothing of KMS
    send = checks("sqs", "SendMessage", {"QueueUrl": dispatch, "MessageBody": "x"}, region=REGION, account=ACCOUNT_ID,
                  resources=moto)  # fmt: skip
    assert [c.action for c in send] == ["sqs:SendMessage"]
    # ...SES publishing events needs the encrypted topic's key, SNS delivering to the feedback queue its key
    ses = delivery_checks("ses.amazonaws.com", f"arn:aws:ses:{REGION}:{ACCOUNT_ID}:configuration-set/x", "sns", topic,
                          region=REGION, account=ACCOUNT_ID, resources=moto)  # fmt: skip
    assert [(c.action, c.resource) for c in ses] == [("sns:Publish", topic), ("kms:GenerateDataKey", key_arn),
                                                     ("kms:Decrypt", key_arn)]  # fmt: skip
    feedback = aws.resolver.attrs[("FeedbackQueue", "Arn")]
    sns = delivery_checks("sns.amazonaws.com", topic, "sqs", feedback, region=REGION, account=ACCOUNT_ID,
                          resources=moto)  # fmt: skip
    assert [(c.action, c.resource) for c in sns] == [("sqs:SendMessage", feedback), ("kms:GenerateDataKey", key_arn),
                                                     ("kms:Decrypt", key_arn)]  # fmt: skip
