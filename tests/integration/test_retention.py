"""Retention (README, "What is kept"): evidence expires by TTL, manifests go when their notice completes,
and SendQueue messages carry only what the sender reads. On moto, with the functions' roles."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import boto3
import pytest

from optout.core.settings import get_settings
from optout_local.provision import Stack
from optout_local.template import load_template
from tests.integration.notice_pipeline import POLICY, Pipeline

ROWS = [
    "u1,alice@example.com,,en,America/New_York,Alice",
    "u2,bob@example.com,,en,,Bob",
    "u3,ALICE@example.com,,en,,Alice again",  # a duplicate address: the dispatcher writes its record
]


def _items(prefix: str) -> list[dict]:  # type: ignore[type-arg]
    table = get_settings().notices_table
    items = boto3.client("dynamodb").scan(TableName=table)["Items"]
    return [i for i in items if i["sk"]["S"].startswith(prefix)]


def test_every_delivery_record_and_batch_mark_expires_after_the_retention_period(pipeline: Pipeline) -> None:
    notice = pipeline.create("policy_change", POLICY, pipeline.manifest(ROWS))
    pipeline.run(notice["id"])
    records = _items("delivery#")
    assert {r["decision"]["S"] for r in records} == {"sent", "duplicate"}  # sender's and dispatcher's
    for item in [*records, *_items("batch#")]:
        at = datetime.fromisoformat(item["at"]["S"])
        expires = int(item["expires_at"]["N"])
        assert abs(expires - (at + timedelta(days=1095)).timestamp()) < 2, item
    description = boto3.client("dynamodb").describe_time_to_live(TableName=get_settings().notices_table)
    assert description["TimeToLiveDescription"]["AttributeName"] == "expires_at"


def test_the_manifest_is_deleted_when_its_notice_completes_and_a_dry_run_keeps_it(pipeline: Pipeline) -> None:
    s3 = boto3.client("s3")
    dry = pipeline.create("policy_change", POLICY, pipeline.manifest(ROWS, "dry.csv"), dry_run=True)
    pipeline.run(dry["id"])
    assert pipeline.get(dry["id"])["status"] == "complete"
    assert s3.head_object(Bucket=pipeline.bucket, Key="dry.csv")["ContentLength"] > 0
    # uploaded twice: both versions go, and no older one comes back as current
    pipeline.manifest(ROWS[:1], "users.csv")
    notice = pipeline.create("policy_change", POLICY, pipeline.manifest(ROWS, "users.csv"))
    pipeline.run(notice["id"])
    assert pipeline.get(notice["id"])["status"] == "complete"
    listing = s3.list_object_versions(Bucket=pipeline.bucket, Prefix="users.csv")
    assert listing.get("Versions", []) == [] and listing.get("DeleteMarkers", []) == []


def test_send_queue_messages_carry_only_what_the_sender_reads(pipeline: Pipeline) -> None:
    notice = pipeline.create("policy_change", POLICY, pipeline.manifest(ROWS[:2]))
    for record in pipeline.receive("DispatchQueue"):
        pipeline.dispatcher({"Records": [record]}, pipeline.ctx)
    (message,) = [json.loads(r["body"]) for r in pipeline.receive("SendQueue")]
    recipients = [e["recipient"] for e in message["entries"]]
    assert recipients == [
        {"recipient_id": "u1", "email": "alice@example.com", "timezone": "America/New_York"},
        {"recipient_id": "u2", "email": "bob@example.com"},
    ]
    assert message["notice_id"] == notice["id"]


@pytest.mark.parametrize("function", ["SenderFunction", "DispatcherFunction"])
def test_the_functions_that_write_delivery_records_get_the_retention_period(function: str, aws: Stack) -> None:
    template = load_template()
    assert template["Parameters"]["EvidenceRetentionDays"]["Default"] == 1095
    variables = template["Resources"][function]["Properties"]["Environment"]["Variables"]
    assert variables["OPTOUT_EVIDENCE_RETENTION_DAYS"] == {"Ref": "EvidenceRetentionDays"}
    assert aws.function(function.removesuffix("Function")).environment["OPTOUT_EVIDENCE_RETENTION_DAYS"] == "1095"


def test_the_bucket_lifecycle_is_the_backstop_and_cleans_up_abandoned_uploads(aws: Stack) -> None:
    rules = boto3.client("s3").get_bucket_lifecycle_configuration(Bucket=aws.ref("ManifestBucket"))["Rules"]
    (rule,) = rules
    assert rule["Expiration"] == {"Days": 90} and rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == 7
