"""The local stack's own machinery: provisioning from a template, SQS pollers and redrive."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from optout_local.provision import Provisioner
from optout_local.stack import LocalConfig, LocalStack, free_port
from optout_local.template import TEMPLATE_PATH, load_template

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "queue_stack" / "template.yaml"


def wait_for(condition, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_every_template_resource_with_a_local_equivalent_is_created(aws) -> None:
    template = load_template(TEMPLATE_PATH)
    ddb = boto3.client("dynamodb")
    table = ddb.describe_table(TableName=aws.ref("SuppressionTable"))["Table"]
    assert {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]} == {"pk": "HASH", "sk": "RANGE"}
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = ddb.describe_time_to_live(TableName=aws.ref("SuppressionTable"))["TimeToLiveDescription"]
    assert (
        ttl["AttributeName"]
        == template["Resources"]["SuppressionTable"]["Properties"]["TimeToLiveSpecification"]["AttributeName"]
    )
    backups = ddb.describe_continuous_backups(TableName=aws.ref("SuppressionTable"))["ContinuousBackupsDescription"]
    assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"

    secrets = boto3.client("secretsmanager")
    ring = json.loads(secrets.get_secret_value(SecretId=aws.ref("SigningKeysSecret"))["SecretString"])
    assert ring["active"] == "k1" and len(ring["k1"]) == 64 and ring["k1"].isalnum()
    pepper = secrets.get_secret_value(SecretId=aws.ref("PepperSecret"))["SecretString"]
    assert len(pepper) == 64
    assert pepper not in TEMPLATE_PATH.read_text() and ring["k1"] not in TEMPLATE_PATH.read_text()


def test_function_environment_and_routes_come_from_the_template(aws) -> None:
    spec = aws.function("unsubscribe")
    assert spec.environment["OPTOUT_SUPPRESSION_TABLE"] == aws.ref("SuppressionTable")
    assert spec.environment["OPTOUT_SIGNING_KEYS_SECRET"].startswith("arn:aws:secretsmanager:")
    assert spec.environment["POWERTOOLS_SERVICE_NAME"] == "optout"
    # Memory and timeout: the function's own, else the template's Globals
    assert (spec.memory_mb, spec.timeout) == (512, 10)
    assert (aws.function("Dispatcher").memory_mb, aws.function("Dispatcher").timeout) == (1024, 900)
    routes = {(r.method, r.path, r.auth, r.function) for r in aws.routes}
    assert ("ANY", "/unsubscribe", "NONE", "UnsubscribeFunction") in routes
    assert ("POST", "/sms/twilio", "NONE", "SmsWebhookFunction") in routes
    (inbound,) = [q for q in aws.queue_sources if q.function == "SmsInboundFunction"]
    assert inbound.queue_arn.endswith("InboundSmsQueue") and inbound.report_failures and inbound.batch_size == 10
    assert aws.output("PublicBaseUrl").startswith("https://local.execute-api.us-east-1.amazonaws.com")


def test_locate_finds_what_provision_made(aws) -> None:
    located = Provisioner(boto3.session.Session(), None, "us-east-1", locate=True).provision()
    for logical_id in ("SuppressionTable", "SigningKeysSecret", "PepperSecret"):
        assert located.ref(logical_id) == aws.ref(logical_id)


def _email_subscriptions(topic_arn: str) -> list[str]:
    subs = boto3.client("sns").list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
    return [s["Endpoint"] for s in subs if s["Protocol"] == "email"]


def test_the_alarm_topic_is_encrypted_and_mails_alarm_email_only_when_one_is_given(aws) -> None:
    # Given the stack provisioned without AlarmEmail (the default)
    sns = boto3.client("sns")
    topic = aws.ref("AlarmTopic")
    # Then its alarm topic exists under the messages key, with nobody subscribed by mail
    assert sns.get_topic_attributes(TopicArn=topic)["Attributes"]["KmsMasterKeyId"] == aws.ref("MessagesKey")
    assert _email_subscriptions(topic) == []
    # When a second stack is provisioned from the same template with AlarmEmail set
    session = boto3.session.Session()
    email = {"AlarmEmail": "ops@example.com"}
    alarmed = Provisioner(session, None, "us-east-1", stack_name="alarmed", parameters=email, roles=False).provision()
    # Then its alarm topic mails that address (SNS asks it to confirm)
    assert _email_subscriptions(alarmed.ref("AlarmTopic")) == ["ops@example.com"]
    assert _email_subscriptions(topic) == []


def test_cloudwatch_may_publish_this_accounts_alarms_into_the_alarm_topic_and_no_one_elses(aws) -> None:
    from optout_local.iam.deliveries import check_delivery
    from optout_local.iam.enforce import Usage
    from optout_local.provision import ACCOUNT_ID

    topic, usage = aws.ref("AlarmTopic"), Usage(None)
    ours = f"arn:aws:cloudwatch:us-east-1:{ACCOUNT_ID}:alarm:optout-SendDeadLetterQueueAlarm"
    theirs = "arn:aws:cloudwatch:us-east-1:999999999999:alarm:anything"
    # The topic policy lets this account's alarms publish, and the key policy lets CloudWatch use the key
    assert check_delivery("cloudwatch.amazonaws.com", ours, "sns", topic, "us-east-1", ACCOUNT_ID, usage) is None
    granted = {(u.action, u.allowed) for u in usage.seen}
    assert granted == {("sns:Publish", True), ("kms:GenerateDataKey", True), ("kms:Decrypt", True)}
    # Another account's alarm (the confused deputy) is refused
    assert check_delivery("cloudwatch.amazonaws.com", theirs, "sns", topic, "us-east-1", ACCOUNT_ID, usage)


@pytest.fixture
def queue_stack() -> Iterator[LocalStack]:
    config = LocalConfig(api_port=free_port(), aws_port=free_port(), template=FIXTURE, stack_name="pollers")
    stack = LocalStack(config)
    stack.start()
    yield stack
    stack.stop()


def drain(sqs, url: str) -> list[dict]:  # type: ignore[no-untyped-def, type-arg]
    reports = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            reports.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return reports


def test_pollers_deliver_batches_and_send_poison_to_the_dlq(queue_stack: LocalStack) -> None:
    # Given a queue with a DLQ after 2 receives and a function that fails "poison" messages
    assert queue_stack.stack is not None
    sqs = queue_stack.config.client("sqs")
    work = queue_stack.stack.ref("WorkQueue")
    dlq = queue_stack.stack.ref("WorkDeadLetterQueue")
    seen_queue = queue_stack.stack.ref("SeenQueue")
    # When good messages and one poison message arrive together
    bodies = [f"m{i}" for i in range(12)]
    for body in [*bodies[:6], "poison", *bodies[6:]]:
        sqs.send_message(QueueUrl=work, MessageBody=body)

    # Then every good message is handled once, in batches no larger than the template's BatchSize
    reports: list[dict] = []  # type: ignore[type-arg]

    def handled() -> bool:
        reports.extend(drain(sqs, seen_queue))
        return sorted(b for r in reports for b in r["seen"]) == sorted(bodies)

    wait_for(handled)
    assert max(r["batch"] for r in reports) <= 5

    # And the poison message ends in the DLQ after maxReceiveCount receives, not blocking the rest
    def in_dlq() -> bool:
        attrs = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])
        return attrs["Attributes"]["ApproximateNumberOfMessages"] == "1"

    wait_for(in_dlq, timeout=30)
    message = sqs.receive_message(QueueUrl=dlq)["Messages"][0]
    assert message["Body"] == "poison"
    reports.extend(drain(sqs, seen_queue))
    assert sorted(b for r in reports for b in r["seen"]) == sorted(bodies)  # nothing was handled twice
    # And the function ran in environments of its own, never in this process
    assert os.getpid() not in {r["pid"] for r in reports}


def test_patched_moto_transactions_still_roll_back_all_or_nothing(aws) -> None:
    # Given an existing item and a transaction that puts, updates and deletes, then fails a condition
    ddb = boto3.client("dynamodb")
    table = aws.ref("SuppressionTable")
    ddb.put_item(TableName=table, Item={"pk": {"S": "a"}, "sk": {"S": "s"}, "v": {"N": "1"}})
    ddb.put_item(TableName=table, Item={"pk": {"S": "b"}, "sk": {"S": "s"}, "v": {"N": "1"}})
    items = [
        {"Put": {"TableName": table, "Item": {"pk": {"S": "new"}, "sk": {"S": "s"}}}},
        {"Update": {"TableName": table, "Key": {"pk": {"S": "a"}, "sk": {"S": "s"}}, "UpdateExpression": "SET v = :two",
                    "ExpressionAttributeValues": {":two": {"N": "2"}}}},
        {"Delete": {"TableName": table, "Key": {"pk": {"S": "b"}, "sk": {"S": "s"}}}},
        {"Put": {"TableName": table, "Item": {"pk": {"S": "a2"}, "sk": {"S": "s"}},
                 "ConditionExpression": "attribute_exists(pk)"}},
    ]  # fmt: skip
    # When it is cancelled
    with pytest.raises(ddb.exceptions.TransactionCanceledException):
        ddb.transact_write_items(TransactItems=items)
    # Then nothing of it happened
    get = lambda pk: ddb.get_item(TableName=table, Key={"pk": {"S": pk}, "sk": {"S": "s"}}).get("Item")  # noqa: E731
    assert get("new") is None
    assert get("a") == {"pk": {"S": "a"}, "sk": {"S": "s"}, "v": {"N": "1"}}
    assert get("b") is not None
    # And without the failing item it all happens
    ddb.transact_write_items(TransactItems=items[:3])
    assert get("new") is not None and get("a")["v"] == {"N": "2"} and get("b") is None  # type: ignore[index]


def test_patched_moto_still_refuses_an_item_over_400_kb(aws) -> None:
    # Given a table, and items just under and just over DynamoDB's item size limit
    ddb = boto3.client("dynamodb")
    table = aws.ref("SuppressionTable")
    fits = {"pk": {"S": "fits"}, "sk": {"S": "s"}, "a": {"S": "x" * 200_000}, "b": {"S": "y" * 200_000}}
    too_big = {"pk": {"S": "big"}, "sk": {"S": "s"}, "a": {"S": "x" * 200_000}, "b": {"S": "y" * 206_000}}
    # When both are put, Then the one over the limit is refused with DynamoDB's error and not stored
    ddb.put_item(TableName=table, Item=fits)
    with pytest.raises(ddb.exceptions.ClientError, match="Item size has exceeded the maximum allowed size"):
        ddb.put_item(TableName=table, Item=too_big)
    assert ddb.get_item(TableName=table, Key={"pk": {"S": "big"}, "sk": {"S": "s"}}).get("Item") is None
    assert ddb.get_item(TableName=table, Key={"pk": {"S": "fits"}, "sk": {"S": "s"}})["Item"]["b"] == fits["b"]


def test_the_moto_process_serves_the_outbox_and_dies_with_its_parent() -> None:
    import signal
    import socket
    import subprocess  # nosec B404
    import urllib.request

    # Given a parent process that starts the moto process and then is killed without warning
    port = free_port()
    parent = subprocess.Popen(  # nosec B603
        [sys.executable, "-c", (
            "import os, subprocess, sys, time; "
            f"subprocess.Popen([sys.executable, '-m', 'optout_local.moto_process', '--port', '{port}', "
            "'--parent', str(os.getpid())]); time.sleep(120)"
        )]
    )  # fmt: skip

    def listening() -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(listening, timeout=60)
        # When it serves, its outbox answers (empty) beside moto's own API
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_local/outbox/email", timeout=10) as response:  # nosec B310
            assert json.load(response) == []
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        # Then the orphaned moto process notices and lets its port go
        wait_for(lambda: not listening(), timeout=15)
    finally:
        if parent.poll() is None:
            parent.kill()


def test_a_mapping_polls_with_as_many_pollers_as_the_function_may_have_environments() -> None:
    from optout_local.pollers import QueuePoller
    from optout_local.provision import QueueSource

    source = QueueSource("Fn", "arn:aws:sqs:us-east-1:123456789012:q", 10, 0, True, True)
    assert len(QueuePoller(source, "url", None, lambda *_: None, "us-east-1", concurrency=4).threads) == 4
    # ScalingConfig.MaximumConcurrency caps them where the template sets it
    capped = QueueSource("Fn", "arn:aws:sqs:us-east-1:123456789012:q", 10, 0, True, True, maximum_concurrency=2)
    assert len(QueuePoller(capped, "url", None, lambda *_: None, "us-east-1", concurrency=4).threads) == 2


def test_a_queue_whose_visibility_timeout_is_below_the_function_timeout_stops_the_start(tmp_path: Path) -> None:
    # Given a copy of the poller fixture whose queue hides a batch for less time than the function may run
    copy = tmp_path / "template.yaml"
    copy.write_text(FIXTURE.read_text().replace("VisibilityTimeout: 6", "VisibilityTimeout: 2"))
    (tmp_path / "echo").symlink_to(FIXTURE.parent / "echo")
    config = LocalConfig(api_port=free_port(), aws_port=free_port(), template=copy, stack_name="refused")
    stack = LocalStack(config)
    # When the stack starts, Then it refuses the mapping as Lambda's CreateEventSourceMapping does
    from optout_local.pollers import MappingRefused

    try:
        with pytest.raises(
            MappingRefused, match="Queue visibility timeout: 2 seconds is less than Function timeout: 6"
        ):
            stack.start()
    finally:
        stack.stop()


def _raw_exchange(sock, request: bytes) -> bytes:  # type: ignore[no-untyped-def]
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    length = int(next(line.split(b":")[1] for line in lines if line.startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(65536)
    return head


def test_the_local_aws_keeps_connections_open_and_drains_unread_bodies() -> None:
    # Why in process: the handler class is the unit; the whole moto process is covered by every e2e test.
    import socket
    import threading

    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import make_server

    from optout_local.moto_process import keep_alive

    seen: list[bytes] = []

    def app(environ, start_response):  # type: ignore[no-untyped-def]
        if environ["PATH_INFO"] == "/read":  # an application that reads the body; "/skip" does not
            seen.append(environ["wsgi.input"].read())
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    # Given the local AWS's request handler and one client connection
    server = make_server("127.0.0.1", 0, app, True, request_handler=keep_alive(MotoRequestHandler))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=5) as sock:
            # When a request's body is left unread, and two more requests follow on the same connection
            heads = [
                _raw_exchange(sock, b"POST /%s HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\nGET /evil 12" % path)
                for path in (b"skip", b"read", b"read")
            ]
        # Then every request is answered on that one connection, none asks to close it, and the unread
        # body was never taken for a request of its own
        assert all(h.startswith(b"HTTP/1.1 200") and b"connection: close" not in h.lower() for h in heads)
        assert seen == [b"GET /evil 12", b"GET /evil 12"]
    finally:
        server.shutdown()


def test_concurrent_dynamodb_updates_to_one_item_are_all_applied() -> None:
    # Given the local AWS, and 8 clients adding to one counter at once (as 6 senders add to a
    # notice's counts)
    from concurrent.futures import ThreadPoolExecutor

    config = LocalConfig(api_port=free_port(), aws_port=free_port(), state_dir=None)
    stack = LocalStack(config)
    aws = stack.start_aws()
    try:
        table = aws.ref("NoticesTable")
        key = {"pk": {"S": "notice#race"}, "sk": {"S": "counts"}}

        def add(_: int) -> None:
            ddb = config.client("dynamodb")
            for _ in range(40):
                ddb.update_item(
                    TableName=table, Key=key, UpdateExpression="ADD sent :one",
                    ExpressionAttributeValues={":one": {"N": "1"}},
                )  # fmt: skip

        # When each adds 40
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(add, range(8)))
        # Then none of the 320 was lost
        item = config.client("dynamodb").get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]
        assert item["sent"] == {"N": "320"}
    finally:
        stack.stop()
