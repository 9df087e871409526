"""The fault proxy: each service's own throttling error as botocore parses it, and lost responses that were applied."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError

from optout_local.faults import FaultPlan, FaultProxy
from optout_local.stack import free_port


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "optout_local.moto_process", "--port", str(port), "--parent", str(os.getpid())],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=30)


def client(service: str, url: str) -> Any:
    config = Config(retries={"mode": "standard", "total_max_attempts": 1})  # no retries: each fault shows
    return boto3.client(service, endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing", config=config)  # fmt: skip


def test_each_service_gets_its_own_throttling_error_and_a_503(moto_url: str) -> None:
    ddb = client("dynamodb", moto_url)
    ddb.create_table(TableName="t", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")  # fmt: skip
    queue = client("sqs", moto_url).create_queue(QueueName="q")["QueueUrl"]
    client("s3", moto_url).create_bucket(Bucket="fault-proxy")
    client("s3", moto_url).put_object(Bucket="fault-proxy", Key="m.csv", Body=b"x")
    client("secretsmanager", moto_url).create_secret(Name="s", SecretString="v")
    client("sesv2", moto_url).create_email_identity(EmailIdentity="a@example.com")
    calls = {
        "dynamodb": lambda c: c.get_item(TableName="t", Key={"pk": {"S": "x"}}),
        "sqs": lambda c: c.send_message(QueueUrl=queue, MessageBody="x"),
        "s3": lambda c: c.get_object(Bucket="fault-proxy", Key="m.csv", Range="bytes=0-"),
        "secretsmanager": lambda c: c.get_secret_value(SecretId="s"),
        "sesv2": lambda c: c.send_email(FromEmailAddress="a@example.com",
                                        Destination={"ToAddresses": ["b@example.com"]},
                                        Content={"Raw": {"Data": b"Subject: x\r\n\r\nhi"}}),
    }  # fmt: skip
    expected = {
        "dynamodb": {("ProvisionedThroughputExceededException", 400), ("ThrottlingException", 400)},
        "sqs": {("RequestThrottled", 400)},
        "s3": {("SlowDown", 503)},
        "secretsmanager": {("ThrottlingException", 400)},
        "sesv2": {("TooManyRequestsException", 429)},
    }
    plan = FaultPlan(rate=1.0, kinds=("throttle",))
    proxy = FaultProxy(moto_url, plan=plan).start()
    try:
        for kind in ("throttle", "unavailable"):
            plan.kinds = (kind,)
            for service, call in calls.items():
                for _ in range(4 if service == "dynamodb" else 1):
                    with pytest.raises(ClientError) as failed:
                        call(client(service, proxy.url))
                    response = failed.value.response
                    seen = (response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"])
                    assert seen in (expected[service] if kind == "throttle" else {("ServiceUnavailable", 503)}), seen
        # Nothing reached moto
        assert sum(proxy.ledger.calls.values()) == 0
    finally:
        proxy.stop()


def test_a_lost_response_was_applied_and_a_reset_was_not(moto_url: str) -> None:
    sqs = client("sqs", moto_url)
    queue = sqs.create_queue(QueueName="lost")["QueueUrl"]
    plan = FaultPlan(rate=1.0, kinds=("lost",))
    proxy = FaultProxy(moto_url, plan=plan).start()
    try:
        with pytest.raises(ConnectionClosedError):
            client("sqs", proxy.url).send_message(QueueUrl=queue, MessageBody="applied")
        plan.kinds = ("reset",)
        with pytest.raises(ConnectionClosedError):
            client("sqs", proxy.url).send_message(QueueUrl=queue, MessageBody="never")
        plan.rate = 0.0
        got = client("sqs", proxy.url).receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
        assert [m["Body"] for m in got] == ["applied"]
        assert proxy.ledger.calls == {"sqs:SendMessage": 1, "sqs:ReceiveMessage": 1}
        assert [c.name for c in plan.lost] == ["sqs:SendMessage"]
        assert plan.injected == {"sqs:lost": 1, "sqs:reset": 1}
    finally:
        proxy.stop()
