"""The local stack's state survives a restart: snapshots, --fresh, SIGKILL, one stack per folder, imports.

The tests marked e2e start the real `optout local` (as `make run` does) on free ports and a
temporary state folder; the others check the pieces in this process.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from optout_local.moto_process import Gate, changes_state
from optout_local.provision import Provisioner, Stack
from optout_local.stack import LocalConfig, free_port
from optout_local.state import SNAPSHOT, StateBusy, StateDir, capture

OPTOUT = str(Path(sys.executable).parent / "optout")
e2e = pytest.mark.e2e


@dataclass
class Running:
    process: subprocess.Popen[str]
    config: LocalConfig
    env: dict[str, str]
    stderr: Path
    state_dir: Path
    clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        if service not in self.clients:
            self.clients[service] = boto3.client(
                service, endpoint_url=self.config.aws_url, region_name="us-east-1",
                aws_access_key_id="testing", aws_secret_access_key="testing",
                config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=30),
            )  # fmt: skip
        return self.clients[service]

    def stack(self) -> Stack:
        return self.config.locate()

    def state(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.config.aws_url}/_local/state", timeout=10) as response:
            document: dict[str, Any] = json.load(response)
            return document

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    def kill(self) -> None:
        """SIGKILL the whole stack at once: `optout local` and its moto process (no last snapshot)."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _listening(self.config.aws_port):
            time.sleep(0.05)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _env(api_port: int, aws_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OPTOUT_"))}
    env.update(OPTOUT_API_PORT=str(api_port), OPTOUT_AWS_PORT=str(aws_port))
    return env


def launch(state_dir: Path, *args: str, wait: bool = True) -> Running:
    """Start `optout local --state-dir state_dir` on free ports, in a session of its own."""
    api_port, aws_port = free_port(), free_port()
    env = _env(api_port, aws_port)
    stderr = state_dir.parent / f"stderr-{uuid.uuid4().hex[:8]}.log"
    with stderr.open("w") as sink:
        process = subprocess.Popen(
            [OPTOUT, "local", "--state-dir", str(state_dir), *args],
            env=env, stdout=subprocess.PIPE, stderr=sink, text=True, start_new_session=True,
        )  # fmt: skip
    running = Running(process, LocalConfig(api_port=api_port, aws_port=aws_port), env, stderr, state_dir)
    if wait:
        assert process.stdout is not None
        line = process.stdout.readline()  # "ready: ..." or "" when it exits
        if not line.startswith("ready:"):
            process.kill()
            raise AssertionError(f"the stack did not start: {line!r}\n{stderr.read_text()[-3000:]}")
        threading.Thread(target=lambda: process.stdout and process.stdout.read(), daemon=True).start()
    return running


@pytest.fixture
def stacks() -> Iterator[list[Running]]:
    """Every stack a test starts, stopped at the end whatever happened."""
    started: list[Running] = []
    yield started
    for running in started:
        if running.process.poll() is None:
            with_group = running.process.pid
            os.killpg(with_group, signal.SIGKILL)
            running.process.wait(timeout=10)


def start(stacks: list[Running], state_dir: Path, *args: str) -> Running:
    running = launch(state_dir, *args)
    stacks.append(running)
    return running


def write_everything(running: Running) -> dict[str, Any]:
    """A DynamoDB item, an S3 object, an SQS message, an email sent; and the secrets as they are."""
    stack = running.stack()
    table, bucket = stack.ref("SuppressionTable"), stack.ref("ManifestBucket")
    running.client("dynamodb").put_item(
        TableName=table, Item={"pk": {"S": "state-test"}, "sk": {"S": "state"}, "note": {"S": "kept"}}
    )
    running.client("s3").put_object(Bucket=bucket, Key="manifests/kept.csv", Body=b"recipient_id,email\n")
    queue = running.client("sqs").create_queue(QueueName="state-test")["QueueUrl"]  # no poller reads it
    running.client("sqs").send_message(QueueUrl=queue, MessageBody="kept")
    sender = stack.resolver.parameter("SenderAddress")
    running.client("sesv2").send_email(
        FromEmailAddress=sender, Destination={"ToAddresses": ["someone@example.com"]},
        Content={"Raw": {"Data": f"From: {sender}\r\nTo: someone@example.com\r\nSubject: kept\r\n\r\nkept".encode()}},
    )  # fmt: skip
    return {"table": table, "bucket": bucket, "queue": "state-test", "secrets": secrets(running)}


def secrets(running: Running) -> dict[str, str]:
    stack = running.stack()
    client = running.client("secretsmanager")
    return {
        name: client.get_secret_value(SecretId=stack.ref(name))["SecretString"]
        for name in ("PepperSecret", "SigningKeysSecret")
    }


def item(running: Running, table: str) -> dict[str, Any] | None:
    key = {"pk": {"S": "state-test"}, "sk": {"S": "state"}}
    found: dict[str, Any] | None = running.client("dynamodb").get_item(TableName=table, Key=key).get("Item")
    return found


def assert_everything_kept(running: Running, written: dict[str, Any]) -> None:
    assert item(running, written["table"]) == {"pk": {"S": "state-test"}, "sk": {"S": "state"}, "note": {"S": "kept"}}
    body = running.client("s3").get_object(Bucket=written["bucket"], Key="manifests/kept.csv")["Body"].read()
    assert body == b"recipient_id,email\n"
    sqs = running.client("sqs")
    queue = sqs.get_queue_url(QueueName=written["queue"])["QueueUrl"]
    messages = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1).get("Messages", [])
    assert [m["Body"] for m in messages] == ["kept"]
    assert secrets(running) == written["secrets"]
    with urllib.request.urlopen(f"{running.config.aws_url}/_local/outbox/email", timeout=10) as response:
        assert any("kept" in mail["raw"] for mail in json.load(response))


@e2e
def test_state_survives_a_restart_and_links_keep_their_keys(stacks: list[Running], tmp_path: Path) -> None:
    # Given a stack with data in every kind of store, stopped cleanly
    state_dir = tmp_path / "state"
    first = start(stacks, state_dir)
    assert "state: kept in" in first.stderr.read_text()
    written = write_everything(first)
    assert first.stop() == 0
    assert (state_dir / SNAPSHOT).exists()
    # When it starts again on the same folder
    second = start(stacks, state_dir)
    # Then all of it is there, the secrets unchanged (links signed before still verify)
    assert "state: restored from" in second.stderr.read_text()
    assert second.state()["restored"] is True
    assert_everything_kept(second, written)
    # and the restored stack's own resources were found, not made again (one of each)
    tables = second.client("dynamodb").list_tables()["TableNames"]
    assert tables.count(written["table"]) == 1
    assert second.stop() == 0


@e2e
def test_fresh_starts_empty_with_new_secrets(stacks: list[Running], tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    first = start(stacks, state_dir)
    written = write_everything(first)
    (state_dir / "imports").mkdir(exist_ok=True)
    (state_dir / "imports" / "old.csv.0123.import-progress.json").write_text('{"line": 7}')
    assert first.stop() == 0

    fresh = start(stacks, state_dir, "--fresh")
    assert fresh.state()["restored"] is False
    assert item(fresh, written["table"]) is None
    assert "state-test" not in json.dumps(fresh.client("sqs").list_queues())
    assert secrets(fresh) != written["secrets"]
    assert not (state_dir / "imports").exists(), "--fresh discards import progress with the data"
    assert fresh.stop() == 0


@e2e
def test_sigkill_loses_at_most_the_last_second_and_never_half_a_transaction(
    stacks: list[Running], tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    first = start(stacks, state_dir)
    written = write_everything(first)
    table = written["table"]
    # Transactions of two items each run on while snapshots are taken and until the kill
    stop_writing = threading.Event()
    committed = threading.Event()
    ddb = first.client("dynamodb")

    def transactions(worker: int) -> None:
        n = 0
        while not stop_writing.is_set():
            if n:
                committed.set()
            items = [
                {"Put": {"TableName": table, "Item": {"pk": {"S": f"tx#{worker}#{n}"}, "sk": {"S": part}}}}
                for part in ("a", "b")
            ]
            try:
                ddb.transact_write_items(TransactItems=items)
            except Exception:  # the kill cuts the last ones off
                return
            n += 1

    workers = [threading.Thread(target=transactions, args=(w,)) for w in range(4)]
    for worker in workers:
        worker.start()
    # Once transactions have committed, wait for two more snapshots: the second began after them
    # (a fixed sleep was not enough on a loaded machine, where the first commits came late)
    assert committed.wait(timeout=30)
    taken = first.state()["snapshots"]
    deadline = time.monotonic() + 30
    while (state := first.state())["snapshots"] < taken + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert state["snapshots"] >= taken + 2 and state["forked"] is True  # taken off the request path
    first.kill()
    stop_writing.set()
    for worker in workers:
        worker.join(timeout=10)

    second = start(stacks, state_dir)
    assert_everything_kept(second, written)
    pages = second.client("dynamodb").get_paginator("scan").paginate(TableName=table)
    parts: dict[str, set[str]] = {}
    for page in pages:
        for found in page["Items"]:
            if found["pk"]["S"].startswith("tx#"):
                parts.setdefault(found["pk"]["S"], set()).add(found["sk"]["S"])
    assert parts, "transactions from before the last second are kept"
    assert all(sides == {"a", "b"} for sides in parts.values()), "a snapshot held half a transaction"
    assert second.stop() == 0


@e2e
def test_the_stack_says_so_and_stops_when_its_local_aws_dies(stacks: list[Running], tmp_path: Path) -> None:
    running = start(stacks, tmp_path / "state")
    moto = running.state()["pid"]
    assert moto != running.process.pid
    os.kill(moto, signal.SIGKILL)
    assert running.process.wait(timeout=60) == 1
    said = running.stderr.read_text()
    assert f"the local AWS (moto, pid {moto}) exited with code -9; stopping the stack" in said
    assert said.rstrip().endswith("stopped")


@e2e
def test_a_second_stack_on_the_same_folder_says_so_and_leaves_the_first_alone(
    stacks: list[Running], tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    first = start(stacks, state_dir)
    # When another `optout local` starts on the same folder (other ports)
    second = launch(state_dir, wait=False)
    stacks.append(second)
    assert second.process.wait(timeout=30) != 0
    message = second.stderr.read_text()
    assert "already" in message and str(state_dir.resolve()) in message
    assert f"pid {first.process.pid}" in message
    assert not _listening(second.config.aws_port) and not _listening(second.config.api_port)
    # Then the first still serves, and keeps its state
    written = write_everything(first)
    assert first.stop() == 0
    again = start(stacks, state_dir)
    assert_everything_kept(again, written)
    assert again.stop() == 0


@e2e
def test_two_stacks_started_at_the_same_instant_one_runs_one_says_already(
    stacks: list[Running], tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    both = [launch(state_dir, wait=False), launch(state_dir, wait=False)]
    stacks.extend(both)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and all(r.process.poll() is None for r in both):
        time.sleep(0.05)
    (loser,) = [r for r in both if r.process.poll() is not None]
    (winner,) = [r for r in both if r is not loser]
    assert loser.process.returncode != 0
    assert "already starting or running" in loser.stderr.read_text()
    assert winner.process.stdout is not None
    assert winner.process.stdout.readline().startswith("ready:")
    assert winner.stop() == 0


@e2e
def test_import_progress_lives_in_the_state_folder(stacks: list[Running], tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    running = start(stacks, state_dir)
    source = tmp_path / "input" / "suppressions.csv"
    source.parent.mkdir()
    source.write_text("channel,address,scope,reason\nemail,bounced@example.com,channel,bounce\n")
    result = subprocess.run(
        [OPTOUT, "suppression", "import", str(source), "--format", "csv"],
        env=running.env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "1 imported" in result.stdout
    progress = list((state_dir / "imports").glob("suppressions.csv.*.import-progress.json"))
    assert len(progress) == 1 and json.loads(progress[0].read_text())["complete"] is True
    assert list(source.parent.iterdir()) == [source], "nothing is written next to the input any more"
    assert running.stop() == 0


# --- the pieces, in this process ------------------------------------------------------------------


def test_a_snapshot_waits_for_requests_inside_and_holds_new_ones() -> None:
    gate = Gate()
    inside, release, order = threading.Event(), threading.Event(), []

    def slow_request() -> None:
        with gate.request(changes=True):
            inside.set()
            release.wait(5)
            order.append("request done")

    worker = threading.Thread(target=slow_request)
    worker.start()
    inside.wait(5)

    def snapshot() -> None:
        with gate.closed(timeout=5) as generation:
            order.append(f"snapshot at {generation}")

    snapshotter = threading.Thread(target=snapshot)
    snapshotter.start()
    time.sleep(0.1)

    def late_request() -> None:
        with gate.request(changes=False):
            order.append("late request")

    late = threading.Thread(target=late_request)
    late.start()
    time.sleep(0.1)
    assert order == []  # the snapshot waits for the request inside; the late request waits for the snapshot
    release.set()
    for thread in (worker, snapshotter, late):
        thread.join(5)
    assert order == ["request done", "snapshot at 1", "late request"]


def test_a_long_poll_steps_out_of_the_gate_while_it_waits() -> None:
    gate = Gate()
    waiting, done = threading.Event(), threading.Event()

    def long_poll() -> None:
        with gate.request(changes=False), gate.released():
            waiting.set()
            done.wait(5)

    poller = threading.Thread(target=long_poll)
    poller.start()
    waiting.wait(5)
    started = time.monotonic()
    with gate.closed(timeout=2) as generation:
        assert generation == 0
    assert time.monotonic() - started < 0.5
    done.set()
    poller.join(5)


def test_gate_times_out_rather_than_stall_everything() -> None:
    gate = Gate()
    entered, release = threading.Event(), threading.Event()

    def stuck() -> None:
        with gate.request(changes=False):
            entered.set()
            release.wait(5)

    worker = threading.Thread(target=stuck)
    worker.start()
    entered.wait(5)
    with pytest.raises(TimeoutError), gate.closed(timeout=0.2):
        pass
    with gate.request(changes=False):  # and the gate is open again
        pass
    release.set()
    worker.join(5)


@pytest.mark.parametrize(
    ("environ", "changes"),
    [
        ({"HTTP_X_AMZ_TARGET": "DynamoDB_20120810.GetItem", "REQUEST_METHOD": "POST"}, False),
        ({"HTTP_X_AMZ_TARGET": "DynamoDB_20120810.TransactWriteItems", "REQUEST_METHOD": "POST"}, True),
        ({"HTTP_X_AMZ_TARGET": "AmazonSQS.ReceiveMessage", "REQUEST_METHOD": "POST"}, False),
        ({"HTTP_X_AMZ_TARGET": "AmazonSQS.SendMessage", "REQUEST_METHOD": "POST"}, True),
        ({"HTTP_X_AMZ_TARGET": "secretsmanager.GetSecretValue", "REQUEST_METHOD": "POST"}, False),
        ({"REQUEST_METHOD": "GET", "PATH_INFO": "/bucket/key"}, False),
        ({"REQUEST_METHOD": "PUT", "PATH_INFO": "/bucket/key"}, True),
        ({"REQUEST_METHOD": "POST", "QUERY_STRING": "Action=ListTopics"}, False),
    ],
)
def test_which_requests_count_as_changes(environ: dict[str, str], changes: bool) -> None:
    assert changes_state(dict(environ)) is changes


def test_a_query_protocol_action_is_read_from_the_form_body_and_the_body_put_back() -> None:
    import io

    body = b"Action=Publish&TopicArn=arn&Message=hi"
    environ = {
        "REQUEST_METHOD": "POST", "CONTENT_TYPE": "application/x-www-form-urlencoded; charset=utf-8",
        "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
    }  # fmt: skip
    assert changes_state(environ) is True
    assert environ["wsgi.input"].read() == body


def test_every_backend_the_stack_uses_pickles(aws: Stack) -> None:
    """moto's SQS conditions, KMS keys and DynamoDB items survive pickling (and unpickle fast)."""
    sqs = boto3.client("sqs")
    url = next(iter(aws.queue_urls.values()))
    sqs.send_message(QueueUrl=url, MessageBody="m")
    kms = boto3.client("kms")
    key = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    signature = kms.sign(KeyId=key, Message=b"x", SigningAlgorithm="RSASSA_PSS_SHA_256")["Signature"]
    data, services = capture()
    assert {"dynamodb", "kms", "s3", "secretsmanager", "sns", "sqs", "sesv2"} <= set(services)
    payload = pickle.loads(data)  # noqa: S301 - our own bytes
    restored_kms = payload["kms"]["123456789012"]["us-east-1"]
    restored_key = restored_kms.keys[key]
    assert restored_key.private_key.verify(b"x", signature, "RSASSA_PSS_SHA_256")


def test_ensure_finds_what_exists_and_creates_only_what_is_missing(aws: Stack) -> None:
    secrets_client = boto3.client("secretsmanager")
    pepper = secrets_client.get_secret_value(SecretId=aws.ref("PepperSecret"))["SecretString"]
    boto3.client("sqs").delete_queue(QueueUrl=aws.ref("FeedbackQueue"))  # as if the template gained it since
    subscriptions = boto3.client("sns").list_subscriptions()["Subscriptions"]

    ensured = Provisioner(boto3.session.Session(), None, "us-east-1", ensure=True, roles=False).provision()

    assert ensured.ref("PepperSecret") == aws.ref("PepperSecret")
    assert secrets_client.get_secret_value(SecretId=ensured.ref("PepperSecret"))["SecretString"] == pepper
    assert boto3.client("sqs").get_queue_url(QueueName="optout-local-FeedbackQueue")["QueueUrl"]
    assert len(boto3.client("sns").list_subscriptions()["Subscriptions"]) == len(subscriptions)
    with pytest.raises(ValueError, match="exclude"):
        Provisioner(boto3.session.Session(), None, "us-east-1", locate=True, ensure=True)


def test_the_state_folder_is_locked_once(tmp_path: Path) -> None:
    state = StateDir.open(tmp_path / "state", {"api": "http://127.0.0.1:1"})
    try:
        assert StateDir.open(tmp_path / "state") is state  # this process holds it already
        probe = subprocess.run(
            [sys.executable, "-c", "from pathlib import Path; import sys; from optout_local.state import StateDir;"
             f"StateDir.open(Path({str(tmp_path / 'state')!r}))"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert probe.returncode != 0 and StateBusy.__name__ in probe.stderr and "already" in probe.stderr
        assert f"pid {os.getpid()}" in probe.stderr
    finally:
        StateDir.release(tmp_path / "state")
    assert StateDir.open(tmp_path / "state") is not state
    StateDir.release(tmp_path / "state")


def test_a_snapshot_that_cannot_be_read_stops_the_start_and_stays(tmp_path: Path) -> None:
    (tmp_path / SNAPSHOT).write_bytes(b"optout-local-state 1\n{}\nnot zlib")
    result = subprocess.run(
        [sys.executable, "-m", "optout_local.moto_process", "--port", str(free_port()), "--state-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "cannot restore the local state" in result.stderr and "--fresh" in result.stderr
    assert (tmp_path / SNAPSHOT).read_bytes().endswith(b"not zlib"), "never thrown away without being asked"


def test_import_progress_never_gets_ahead_of_the_last_snapshot(tmp_path: Path) -> None:
    from optout_local.importer import _Progress

    counts = {"changes": 0, "saved": 0}

    def durable() -> tuple[int, int]:
        return counts["changes"], counts["saved"]

    path = tmp_path / "rows.csv.import-progress.json"
    progress = _Progress(path, durable)
    counts["changes"] = 5  # a chunk ending at line 101 was written: the stack counts 5 changes
    progress.written(101)
    assert not path.exists(), "the snapshot does not hold that chunk yet"
    counts["changes"] = 9
    counts["saved"] = 6  # a snapshot now holds the first chunk, not the second
    progress.written(201)
    assert json.loads(path.read_text()) == {"line": 101}
    counts["saved"] = 9
    progress.complete(230)
    assert json.loads(path.read_text()) == {"line": 230, "complete": True}
