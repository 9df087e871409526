"""The local AWS refuses what AWS would refuse: each kind of fault, on a copy of the template.

Each test starts the local AWS (moto in its own process, behind the local IAM) from template.yaml
or from a copy with one permission taken out, and makes the call a function would make with
that function's own role session, as its environments hold it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from optout_local.provision import ACCOUNT_ID, Stack
from optout_local.stack import LocalConfig, LocalStack, free_port, role_sessions
from optout_local.template import ROOT

TEMPLATE = ROOT / "template.yaml"


def edited(tmp_path: Path, old: str, new: str) -> Path:
    """A copy of template.yaml with ``old`` (which must occur once) replaced, its code paths absolute."""
    text = TEMPLATE.read_text()
    assert text.count(old) == 1, f"the template changed: {old!r} occurs {text.count(old)} times"
    text = text.replace(old, new)
    for key in ("CodeUri: ", "ContentUri: "):
        text = text.replace(key + "functions/", f"{key}{ROOT}/functions/").replace(
            key + "layers/", f"{key}{ROOT}/layers/"
        )
    path = tmp_path / "template.yaml"
    path.write_text(text)
    return path


@contextmanager
def local_aws(template: Path = TEMPLATE) -> Iterator[tuple[LocalConfig, Stack]]:
    config = LocalConfig(api_port=free_port(), aws_port=free_port(), template=template)
    aws = LocalStack(config, logs=None)
    try:
        yield config, aws.start_aws()
    finally:
        aws.stop()


def as_function(config: LocalConfig, stack: Stack, function: str, service: str) -> Any:
    """A client signed with ``function``'s role session, as its environments sign."""
    credentials = role_sessions(config, stack).credentials(function)
    return boto3.client(
        service, endpoint_url=config.aws_url, region_name=config.region,
        aws_access_key_id=credentials.access_key_id, aws_secret_access_key=credentials.secret_access_key,
        aws_session_token=credentials.session_token, config=Config(retries={"total_max_attempts": 1}),
    )  # fmt: skip


def error_of(call: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        call()
    error: dict[str, Any] = caught.value.response["Error"]
    return error


def key(pk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": "state"}}


UNSUBSCRIBE_GRANT = """                - dynamodb:GetItem
                - dynamodb:PutItem
              Resource: !GetAtt SuppressionTable.Arn
            # Count new-link requests"""


WITHOUT_PUT = UNSUBSCRIBE_GRANT.replace("                - dynamodb:PutItem\n", "")


def test_a_missing_action_is_refused_as_dynamodb_refuses_it(tmp_path: Path) -> None:
    # Given a template whose Unsubscribe role lost dynamodb:PutItem on the suppression table
    template = edited(tmp_path, UNSUBSCRIBE_GRANT, WITHOUT_PUT)
    with local_aws(template) as (config, stack):
        dynamodb = as_function(config, stack, "UnsubscribeFunction", "dynamodb")
        table = stack.ref("SuppressionTable")
        # When the function writes, Then DynamoDB's own AccessDeniedException comes back, in AWS's words
        error = error_of(lambda: dynamodb.put_item(TableName=table, Item={**key("k1"), "v": {"N": "1"}}))
        assert error["Code"] == "AccessDeniedException"
        assert "assumed-role/optout-local-UnsubscribeFunctionRole/" in error["Message"]
        assert "is not authorized to perform: dynamodb:PutItem on resource: " in error["Message"]
        assert "because no identity-based policy allows the dynamodb:PutItem action" in error["Message"]
        # And nothing was written, while what is still granted works
        assert "Item" not in dynamodb.get_item(TableName=table, Key=key("k1"))
        # And a transaction is authorized item by item, as the IAM action of each item: its Put is a PutItem
        put = {"Put": {"TableName": table, "Item": key("k3"), "ConditionExpression": "attribute_not_exists(pk)"}}
        error = error_of(lambda: dynamodb.transact_write_items(TransactItems=[put]))
        assert error["Code"] == "AccessDeniedException" and "dynamodb:PutItem" in error["Message"]


def test_the_function_itself_fails_as_deployed_when_its_role_lacks_an_action(tmp_path: Path) -> None:
    # Given the same template, with the whole stack and its functions on the local runtime
    template = edited(tmp_path, UNSUBSCRIBE_GRANT, WITHOUT_PUT)
    config = LocalConfig(api_port=free_port(), aws_port=free_port(), template=template)
    stack = LocalStack(config, logs=(tmp_path / "functions.log").open("w"))
    stack.start()
    try:
        from optout.core.identity import Identity
        from optout.unsubscribe.token import issue
        from optout_local.target import local_target

        target = local_target(config)
        address_key = Identity.of(target.pepper(), "email", "denied@example.com").key
        url = f"{config.api_url}/unsubscribe?token={issue(target.key_ring(), 'email', address_key, 'product')}"
        # When a recipient clicks one-click unsubscribe
        answer = requests.post(url, data={"List-Unsubscribe": "One-Click"}, timeout=30)
        # Then the function's write is refused, the click gets API Gateway's 500, and nothing is stored
        assert answer.status_code == 500
        assert target.store.get(address_key) is None
        assert "not authorized to perform: dynamodb:PutItem" in (tmp_path / "functions.log").read_text()
    finally:
        stack.stop()


def test_a_resource_outside_the_grant_is_refused() -> None:
    # Given the template as it lands
    with local_aws() as (config, stack):
        dynamodb = as_function(config, stack, "UnsubscribeFunction", "dynamodb")
        # When Unsubscribe reads the notices table, which its role does not name
        error = error_of(lambda: dynamodb.get_item(TableName=stack.ref("NoticesTable"), Key=key("n1")))
        # Then it is refused, naming that table; the suppression table it is granted answers
        assert error["Code"] == "AccessDeniedException"
        assert f"table/{stack.ref('NoticesTable')}" in error["Message"]
        dynamodb.get_item(TableName=stack.ref("SuppressionTable"), Key=key("n1"))
        # And a secret outside its grants is refused by Secrets Manager
        secrets = as_function(config, stack, "UnsubscribeFunction", "secretsmanager")
        error = error_of(lambda: secrets.get_secret_value(SecretId=stack.ref("TwilioAuthTokenSecret")))
        assert error["Code"] == "AccessDeniedException"


def test_no_function_may_publish_into_the_stacks_topics_but_sms_still_goes_out() -> None:
    with local_aws() as (config, stack):
        sns = as_function(config, stack, "SenderFunction", "sns")
        # When the sender publishes to InboundSmsTopic (a forged START) it is refused
        error = error_of(lambda: sns.publish(TopicArn=stack.ref("InboundSmsTopic"), Message="{}"))
        assert error["Code"] == "AuthorizationError"
        # And an SMS to a phone number, which its NotResource grant allows, goes out
        assert sns.publish(PhoneNumber="+14155550123", Message="Your code")["MessageId"]


def send_inbound(config: LocalConfig, stack: Stack) -> None:
    boto3.client(
        "sqs", endpoint_url=config.aws_url, region_name=config.region, aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).send_message(QueueUrl=stack.ref("InboundSmsQueue"), MessageBody="{}")  # fmt: skip


READ_ENCRYPTED = """            - Sid: ReadEncryptedQueue
              Effect: Allow
              Action: kms:Decrypt
              Resource: !GetAtt MessagesKey.Arn
            - Sid: SuppressionReadWrite
              Effect: Allow
              Action:
                - dynamodb:GetItem
                - dynamodb:PutItem
                - dynamodb:UpdateItem"""


def test_a_consumer_of_a_customer_key_queue_without_kms_decrypt_reads_nothing(tmp_path: Path) -> None:
    # Given a template whose SmsInbound role cannot decrypt with MessagesKey
    without = READ_ENCRYPTED.replace("Action: kms:Decrypt", "Action: kms:DescribeKey")
    template = edited(tmp_path, READ_ENCRYPTED, without)
    with local_aws(template) as (config, stack):
        send_inbound(config, stack)
        sqs = as_function(config, stack, "SmsInboundFunction", "sqs")
        # When its event source mapping polls the queue with the function's role
        error = error_of(lambda: sqs.receive_message(QueueUrl=stack.ref("InboundSmsQueue"), WaitTimeSeconds=0))
        # Then SQS answers as it does when the key refuses: KMS.AccessDeniedException, naming kms:Decrypt
        assert error["Code"] == "KMS.AccessDeniedException" and "kms:Decrypt" in error["Message"]


def test_the_consumer_as_the_template_lands_reads_its_encrypted_queue() -> None:
    with local_aws() as (config, stack):
        send_inbound(config, stack)
        sqs = as_function(config, stack, "SmsInboundFunction", "sqs")
        messages = sqs.receive_message(QueueUrl=stack.ref("InboundSmsQueue"), WaitTimeSeconds=1).get("Messages", [])
        assert len(messages) == 1


def deliver(config: LocalConfig, stack: Stack, source_account: str = ACCOUNT_ID) -> dict[str, Any]:
    number = f"arn:aws:sms-voice:{config.region}:{source_account}:phone-number/14155550100"
    body = {"principal": "sms-voice.amazonaws.com", "source_arn": number, "topic_arn": stack.ref("InboundSmsTopic"),
            "message": json.dumps({"messageBody": "STOP"})}  # fmt: skip
    outcome: dict[str, Any] = requests.post(f"{config.aws_url}/_local/deliver", json=body, timeout=30).json()
    return outcome


def queued(config: LocalConfig, stack: Stack, wait: float = 1.0) -> int:
    sqs = boto3.client(
        "sqs", endpoint_url=config.aws_url, region_name=config.region, aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )  # fmt: skip
    deadline = time.monotonic() + wait
    while True:
        attributes = sqs.get_queue_attributes(
            QueueUrl=stack.ref("InboundSmsQueue"), AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        count = int(attributes["ApproximateNumberOfMessages"])
        if count or time.monotonic() > deadline:
            return count
        time.sleep(0.1)


TOPIC_POLICY = TEMPLATE.read_text().split("  InboundSmsTopicPolicy:\n")[1].split("\n\n")[0]


def test_a_topic_whose_policy_does_not_let_the_service_in_gets_nothing(tmp_path: Path) -> None:
    # Given a template without InboundSmsTopic's topic policy
    template = edited(tmp_path, "  InboundSmsTopicPolicy:\n" + TOPIC_POLICY + "\n\n", "")
    with local_aws(template) as (config, stack):
        # When End User Messaging publishes an inbound SMS
        outcome = deliver(config, stack)
        # Then SNS refuses the service, and nothing reaches the queue
        assert outcome["delivered"] is False
        assert "sms-voice.amazonaws.com is not authorized to perform: SNS:Publish" in outcome["reason"]
        assert queued(config, stack, wait=0.5) == 0


def test_end_user_messaging_delivers_through_the_topic_only_for_this_account() -> None:
    with local_aws() as (config, stack):
        # When End User Messaging publishes for this account, the message reaches the encrypted queue
        # (topic policy, SNS's queue policy, and the key policy for both services, all allow it)
        assert deliver(config, stack)["delivered"] is True
        assert queued(config, stack) == 1
        # And on behalf of another account's number (a confused deputy) it is refused
        outcome = deliver(config, stack, source_account="999999999999")
        assert outcome["delivered"] is False


QUEUE_POLICY = TEMPLATE.read_text().split("  InboundSmsQueuePolicy:\n")[1].split("\n\n")[0]


def test_sns_cannot_deliver_into_a_queue_whose_policy_does_not_let_the_topic_in(tmp_path: Path) -> None:
    # Given a template without InboundSmsQueue's queue policy
    template = edited(tmp_path, "  InboundSmsQueuePolicy:\n" + QUEUE_POLICY + "\n\n", "")
    with local_aws(template) as (config, stack):
        # When End User Messaging publishes (the topic lets it), Then SNS drops the message for the queue
        assert deliver(config, stack)["delivered"] is True
        assert queued(config, stack, wait=0.5) == 0


def test_a_key_unknown_to_the_local_aws_is_refused() -> None:
    with local_aws() as (config, stack):
        forged = boto3.client(
            "dynamodb", endpoint_url=config.aws_url, region_name=config.region,
            aws_access_key_id="ASIAFORGED0000000000", aws_secret_access_key="x", aws_session_token="y",
            config=Config(retries={"total_max_attempts": 1}),
        )  # fmt: skip
        error = error_of(lambda: forged.get_item(TableName=stack.ref("SuppressionTable"), Key=key("k")))
        assert error["Code"] == "AccessDeniedException" and "security token" in error["Message"]
