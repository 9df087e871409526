"""Each function's role as SAM expands it, and its sessions as Lambda holds them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from optout_local.iam import roles
from optout_local.provision import ACCOUNT_ID, Stack
from optout_local.template import load_template


@pytest.fixture
def expanded(aws: Stack) -> dict[str, roles.FunctionRole]:
    return roles.expand(load_template(), {}, aws.resolver, "us-east-1", ACCOUNT_ID)


def statements(role: roles.FunctionRole) -> dict[str, dict[str, Any]]:
    return {s.get("Sid", ""): s for doc in role.inline.values() for s in doc["Statement"]}


def test_sam_adds_what_tracing_and_event_sources_need(expanded: dict[str, roles.FunctionRole]) -> None:
    # Given the template's seven functions, When SAM's translator expands their roles
    assert set(expanded) == {
        "UnsubscribeFunction", "SmsWebhookFunction", "SmsInboundFunction", "AdminApiFunction",
        "DispatcherFunction", "SenderFunction", "FeedbackFunction",
    }  # fmt: skip
    # Then every role may be assumed by Lambda, logs and traces; the SQS consumers get the event
    # source mapping's managed policy, the HTTP functions do not
    for name, role in expanded.items():
        assert role.trust["Statement"][0]["Principal"] == {"Service": ["lambda.amazonaws.com"]}
        assert "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess" in role.managed, name
        assert "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole" in role.managed, name
        sqs = "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole" in role.managed
        assert sqs == (name in {"SmsInboundFunction", "DispatcherFunction", "SenderFunction", "FeedbackFunction"})


def test_intrinsics_and_policy_templates_resolve_to_the_provisioned_resources(
    aws: Stack, expanded: dict[str, roles.FunctionRole]
) -> None:
    inbound = statements(expanded["SmsInboundFunction"])
    # The inline statement's GetAtt is the provisioned key's ARN, the Sub a phone-number-only publish
    assert inbound["ReadEncryptedQueue"]["Resource"] == aws.resolver.attrs[("MessagesKey", "Arn")]
    assert inbound["ReplyThroughSnsSms"]["NotResource"] == "arn:aws:sns:*:*:*"
    # And a SAM policy template (AWSSecretsManagerGetSecretValuePolicy) names the secret's real ARN
    secret_grants = [
        s["Resource"] for doc in expanded["UnsubscribeFunction"].inline.values() for s in doc["Statement"]
        if "secretsmanager:GetSecretValue" in s["Action"]
    ]  # fmt: skip
    assert secret_grants == [aws.ref("SigningKeysSecret"), aws.ref("PepperSecret")]
    assert all(doc["Version"] == "2012-10-17" for r in expanded.values() for doc in r.inline.values())


class FakeSts:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def assume_role(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        n = len(self.calls)
        expires = datetime.now(UTC) + timedelta(seconds=kwargs["DurationSeconds"])
        return {"Credentials": {"AccessKeyId": f"ASIA{n}", "SecretAccessKey": "s", "SessionToken": "t",
                                "Expiration": expires}}  # fmt: skip


def test_a_session_is_the_functions_own_and_is_renewed_at_half_life(
    expanded: dict[str, roles.FunctionRole], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the sessions of the sender's role
    sts = FakeSts()
    sessions = roles.RoleSessions(sts, expanded, {"SenderFunction": "optout-local-SenderFunction"}, ACCOUNT_ID)
    first = sessions.credentials("SenderFunction")
    # Then it is an AssumeRole of that role, named after the function, for an hour
    assert sts.calls[0]["RoleArn"] == f"arn:aws:iam::{ACCOUNT_ID}:role/{expanded['SenderFunction'].name}"
    assert sts.calls[0]["RoleSessionName"] == "optout-local-SenderFunction"
    assert sts.calls[0]["DurationSeconds"] == roles.SESSION_SECONDS
    # And it is reused until half its life is gone, then renewed
    assert sessions.credentials("SenderFunction") is first
    now = __import__("time").time()
    monkeypatch.setattr("time.time", lambda: now + roles.SESSION_SECONDS * 0.6)
    renewed = sessions.credentials("SenderFunction")
    assert renewed.access_key_id != first.access_key_id and len(sts.calls) == 2
