"""SES bounces and complaints: SES events -> SesEventsTopic -> FeedbackQueue -> Feedback, on moto."""

from __future__ import annotations

import copy
import json
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from optout import wiring
from optout.core.identity import Identity
from optout.core.settings import get_settings
from optout.suppression.store import DynamoSuppressionStore
from optout_local.iam import in_process
from optout_local.provision import ACCOUNT_ID, Stack
from optout_local.runtime import load_handler
from tests.conftest import sample_event

BOUNCED = "bounce@simulator.amazonses.com"
COMPLAINED = "complaint@simulator.amazonses.com"


@pytest.fixture
def feedback(aws: Stack) -> Any:
    return load_handler(aws.function("Feedback"))


@pytest.fixture
def store(aws: Stack) -> DynamoSuppressionStore:
    return DynamoSuppressionStore(get_settings().suppression_table)


def key(address: str) -> str:
    return Identity.of(wiring.pepper(), "email", address).key


def ses_event(kind: str = "bounce", **changes: Any) -> dict[str, Any]:
    """The inner SES event of a sample (configuration-set format), with changes applied."""
    if kind == "bounce":
        envelope = json.loads(sample_event("feedback_bounce_sns_envelope")["Records"][0]["body"])
        event: dict[str, Any] = json.loads(envelope["Message"])
    else:
        event = json.loads(sample_event("feedback_complaint_raw")["Records"][0]["body"])
    for path, value in changes.items():
        target = event
        *parents, leaf = path.split(".")
        for part in parents:
            target = target[part]
        target[leaf] = value
    return event


def drain(aws: Stack) -> list[dict[str, Any]]:
    """A batch as the queue's event source mapping receives it, with its function's role; left on the queue."""
    return in_process.installed().poll("FeedbackQueue")


def test_a_permanent_bounce_published_to_the_topic_blocks_email(aws, feedback, lambda_context, store) -> None:
    # As SES publishes its events: from the configuration set, under the topic's policy
    source = f"arn:aws:ses:us-east-1:{ACCOUNT_ID}:configuration-set/{aws.ref('SesConfigurationSet')}"
    delivered = in_process.installed().deliver("ses.amazonaws.com", source, "SesEventsTopic", json.dumps(ses_event()))
    assert delivered["delivered"], delivered
    records = drain(aws)
    assert len(records) == 1
    assert feedback({"Records": records}, lambda_context) == {"batchItemFailures": []}
    state = store.get(key(BOUNCED))
    assert state is not None and state.blocked is not None
    assert state.blocked.reason == "bounce" and state.blocked.source == "bounce"
    evidence = state.blocked.evidence
    assert evidence["bounce_subtype"] == "General" and evidence["notice_id"].startswith("ntc_")
    assert evidence["diagnostic"] == "smtp; 550 5.1.1 user unknown <[redacted]>"  # no address in evidence


def test_a_complaint_stops_optional_mail_only(feedback, lambda_context, store) -> None:
    assert feedback(sample_event("feedback_complaint_raw"), lambda_context) == {"batchItemFailures": []}
    state = store.get(key(COMPLAINED))
    assert state is not None and state.all_optional and state.blocked is None
    (event,) = store.history(key(COMPLAINED))
    assert (event.action, event.scope, event.source) == ("opt_out", "optional", "complaint")
    assert event.evidence["complaint_type"] == "abuse"


def test_notification_format_and_duplicates(feedback, lambda_context, store) -> None:
    old_format = ses_event("bounce")
    old_format["notificationType"] = old_format.pop("eventType")
    record = sample_event("feedback_complaint_raw")["Records"][0]
    record = {**record, "body": json.dumps(old_format)}
    assert feedback({"Records": [record, record]}, lambda_context) == {"batchItemFailures": []}
    assert feedback({"Records": [record]}, lambda_context) == {"batchItemFailures": []}
    assert [e.action for e in store.history(key(BOUNCED))] == ["block"]


def test_transient_bounces_block_only_after_the_limit(feedback, lambda_context, store) -> None:
    limit = get_settings().transient_bounce_limit
    for n in range(limit):
        event = ses_event("bounce", **{"bounce.bounceType": "Transient", "bounce.bounceSubType": "MailboxFull",
                                       "bounce.feedbackId": f"soft-{n}"})  # fmt: skip
        record = {**sample_event("feedback_complaint_raw")["Records"][0], "body": json.dumps(event)}
        feedback({"Records": [record]}, lambda_context)
        state = store.get(key(BOUNCED))
        blocked = state is not None and state.blocked is not None
        assert blocked == (n == limit - 1)
    assert store.get(key(BOUNCED)).blocked.reason == "transient_bounces"  # type: ignore[union-attr]


def test_a_block_whose_write_failed_is_made_by_the_redelivery(feedback, lambda_context, store) -> None:
    from botocore.exceptions import ClientError

    from optout.core import clients

    limit = get_settings().transient_bounce_limit

    def record(n: int) -> dict[str, Any]:
        event = ses_event("bounce", **{"bounce.bounceType": "Transient", "bounce.bounceSubType": "MailboxFull",
                                       "bounce.feedbackId": f"soft-{n}"})  # fmt: skip
        return {**sample_event("feedback_complaint_raw")["Records"][0], "body": json.dumps(event)}

    for n in range(limit - 1):
        assert feedback({"Records": [record(n)]}, lambda_context) == {"batchItemFailures": []}
    # Given DynamoDB fails the next write of a state item (the block), once
    failures: list[str] = []

    def fail_state_write_once(params: dict[str, Any], **_: Any) -> None:
        items = [i.get("Put", {}).get("Item", {}) for i in params["TransactItems"]]
        if not failures and any(i["sk"]["S"] == "state" for i in items):
            failures.append("TransactWriteItems")
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "try again"}}, "TransactWriteItems")

    # The API's own parameters (before-call sees the serialized request)
    clients.dynamodb().meta.events.register("before-parameter-build.dynamodb.TransactWriteItems", fail_state_write_once)
    # When the bounce that reaches the limit fails, and SQS delivers it again
    with pytest.raises(BatchProcessingError):  # its only record failed: SQS delivers it again
        feedback({"Records": [record(limit - 1)]}, lambda_context)
    assert failures and store.get(key(BOUNCED)) is None
    assert feedback({"Records": [record(limit - 1)]}, lambda_context) == {"batchItemFailures": []}
    # Then the redelivery blocks (it was not taken for a duplicate), and the bounce counts once
    assert store.get(key(BOUNCED)).blocked.reason == "transient_bounces"  # type: ignore[union-attr]
    assert [e.action for e in store.history(key(BOUNCED))] == ["soft_bounce"] * limit + ["block"]


@pytest.mark.parametrize("event_type", ["Delivery", "Send", "Open", "Click", "DeliveryDelay", "Reject", "Subscription"])
def test_other_event_types_are_ignored_not_errors(feedback, lambda_context, store, event_type) -> None:
    event = {"eventType": event_type, "mail": ses_event()["mail"], event_type.lower(): {}}
    record = {**sample_event("feedback_complaint_raw")["Records"][0], "body": json.dumps(event)}
    assert feedback({"Records": [record]}, lambda_context) == {"batchItemFailures": []}
    assert store.history(key(BOUNCED)) == []


def test_a_poison_message_fails_alone_reaches_the_dlq_and_redrives(aws, feedback, lambda_context, store) -> None:
    from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

    from optout_local.dlq import dead_letter_queues, depth, redrive_locally, sample
    from optout_local.template import load_template

    sqs = boto3.client("sqs")
    url = aws.ref("FeedbackQueue")
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "0"})
    sqs.send_message(QueueUrl=url, MessageBody="{not json from bounce@simulator.amazonses.com")
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(ses_event("complaint")))
    # Each receive fails the poison record on its own (the whole invocation when it is alone),
    # the complaint is processed, and after maxReceiveCount receives the poison is in the DLQ
    for _ in range(10):
        records = drain(aws)
        if not records:
            break
        try:
            failed = {f["itemIdentifier"] for f in feedback({"Records": records}, lambda_context)["batchItemFailures"]}
        except BatchProcessingError:
            failed = {r["messageId"] for r in records}
        for record in records:
            if record["messageId"] not in failed:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=record["receiptHandle"])
    assert store.get(key(COMPLAINED)).all_optional  # type: ignore[union-attr]
    (queue,) = [
        q for q in dead_letter_queues(aws.resolver.refs, aws.resolver.attrs, load_template()) if q.source_url == url
    ]
    assert depth(sqs, queue.url) == 1
    assert sample(sqs, queue.url) == "{not json from [redacted]"  # what `optout dlq list` shows
    # Redrive puts it back on the source queue, once
    assert redrive_locally(sqs, queue) == 1
    assert depth(sqs, queue.url) == 0
    (back,) = drain(aws)
    assert back["body"].startswith("{not json")


def test_sample_bounce_event_runs(feedback, lambda_context, store) -> None:
    event = copy.deepcopy(sample_event("feedback_bounce_sns_envelope"))
    assert feedback(event, lambda_context) == {"batchItemFailures": []}
    assert store.get(key(BOUNCED)).blocked is not None  # type: ignore[union-attr]
