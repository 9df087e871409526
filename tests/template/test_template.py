"""template.yaml: linted by cfn-lint and `sam validate --lint`, and holding the properties we rely on."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from optout_local.template import TEMPLATE_PATH, Resolver, load_template

ROOT = TEMPLATE_PATH.parent
SAM = os.environ.get("OPTOUT_SAM") or str(ROOT / ".venv-sam" / "bin" / "sam")


@pytest.fixture(scope="module")
def template() -> dict:
    return load_template()


def test_cfn_lint_reports_no_error_or_warning() -> None:
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    result = subprocess.run(
        [str(cfn_lint), str(TEMPLATE_PATH)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_sam_validate_lint_passes() -> None:
    if not Path(SAM).exists():
        pytest.fail(f"SAM CLI not found at {SAM}: `make test` installs it into .venv-sam")
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1"}
    result = subprocess.run(
        [SAM, "validate", "--lint", "--template", str(TEMPLATE_PATH), "--region", "us-east-1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


def test_intrinsic_tags_survive_loading(template) -> None:
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["OPTOUT_SUPPRESSION_TABLE"] == {"Ref": "SuppressionTable"}
    access_logs = template["Resources"]["HttpApi"]["Properties"]["AccessLogSettings"]["DestinationArn"]
    assert access_logs == {"Fn::GetAtt": ["ApiAccessLogs", "Arn"]}
    assert "Fn::If" in template["Outputs"]["PublicBaseUrl"]["Value"]


def test_resolver_evaluates_sub_if_and_conditions(template) -> None:
    resolver = Resolver(template, "eu-west-1", "111122223333", "s", {"PublicBaseUrl": ""})
    resolver.refs["HttpApi"] = "abc123"
    assert resolver.resolve(template["Outputs"]["PublicBaseUrl"]["Value"]) == (
        "https://abc123.execute-api.eu-west-1.amazonaws.com"
    )
    custom = Resolver(template, "eu-west-1", "111122223333", "s", {"PublicBaseUrl": "https://n.example"})
    assert custom.resolve(template["Outputs"]["PublicBaseUrl"]["Value"]) == "https://n.example"


def test_functions_run_python313_on_arm64_with_tracing_and_the_layer(template) -> None:
    function_globals = template["Globals"]["Function"]
    assert function_globals["Runtime"] == "python3.13"
    assert function_globals["Architectures"] == ["arm64"]
    assert function_globals["Tracing"] == "Active"
    assert function_globals["Layers"] == [{"Ref": "OptoutLayer"}]
    layer = template["Resources"]["OptoutLayer"]
    assert layer["Metadata"]["BuildMethod"] == "makefile"  # layers/optout/Makefile: pinned wheels and bytecode
    assert "build-OptoutLayer:" in (ROOT / layer["Properties"]["ContentUri"] / "Makefile").read_text()
    assert (ROOT / layer["Properties"]["ContentUri"] / "requirements.txt").exists()
    for name, resource in template["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            assert (ROOT / resource["Properties"]["CodeUri"] / "app.py").exists(), name


def test_suppression_table_is_durable_and_encrypted(template) -> None:
    table = template["Resources"]["SuppressionTable"]
    assert table["DeletionPolicy"] == "Retain" and table["UpdateReplacePolicy"] == "Retain"
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"]["SSEEnabled"] is True


def test_secrets_are_generated_never_written_down(template) -> None:
    for name in ("SigningKeysSecret", "PepperSecret"):
        props = template["Resources"][name]["Properties"]
        assert "SecretString" not in props
        assert props["GenerateSecretString"]["PasswordLength"] >= 64


UNSCOPED_ACTIONS = {"ses:GetAccount"}  # the sender reads its SES quota (EmailRatePerSecond auto)


def test_policies_are_scoped_to_the_stack_resources(template) -> None:
    """No managed policy by name, no wildcard action or resource: every grant names a resource."""
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        for policy in resource["Properties"].get("Policies", []):
            assert isinstance(policy, dict), f"{name} uses a managed policy by name: {policy}"
            if "Statement" in policy:
                for statement in policy["Statement"]:
                    actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                    assert all(not a.endswith("*") for a in actions), name
                    if statement.get("Resource") == "*":
                        # Actions IAM authorizes on no resource type (Service Authorization Reference)
                        assert set(actions) <= UNSCOPED_ACTIONS, f"{name} grants {actions} on *"
                        continue
                    if "NotResource" in statement:
                        # SNS publishes to a phone number only with Resource "*" or a NotResource; the
                        # NotResource must leave out every topic, so no function publishes into one
                        assert actions == ["sns:Publish"], f"{name} grants {actions} by NotResource"
                        assert statement["NotResource"] == {"Fn::Sub": "arn:${AWS::Partition}:sns:*:*:*"}, name
                        continue
                    resources = (
                        statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
                    )
                    assert all(isinstance(r, dict) for r in resources), f"{name} grants on a literal resource"
                continue
            ((template_name, args),) = policy.items()
            assert template_name.endswith("Policy")
            assert all(isinstance(v, dict) and ("Ref" in v or "Fn::GetAtt" in v) for v in args.values()), name


def test_unsubscribe_cannot_scan_or_delete_suppressions(template) -> None:
    policies = template["Resources"]["UnsubscribeFunction"]["Properties"]["Policies"]
    statements = [s for p in policies for s in p.get("Statement", [])]
    granted = lambda s: {s["Action"]} if isinstance(s["Action"], str) else set(s["Action"])  # noqa: E731
    actions = {a for s in statements for a in granted(s)}
    assert "dynamodb:GetItem" in actions and "dynamodb:PutItem" in actions
    assert not actions & {"dynamodb:Scan", "dynamodb:DeleteItem", "dynamodb:*"}
    # UpdateItem only on the new-link counters (rate# partition keys), never on a state or an event
    for statement in statements:
        if "dynamodb:UpdateItem" in granted(statement):
            assert granted(statement) == {"dynamodb:UpdateItem"}
            assert statement["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["rate#*"]}}


def test_token_lifetime_cannot_be_configured_under_60_days(template) -> None:
    assert template["Parameters"]["TokenTtlDays"]["MinValue"] == 60
    assert template["Parameters"]["TokenTtlDays"]["Default"] == 365


def test_every_checkov_skip_gives_its_reason(template) -> None:
    skips = [
        (name, skip)
        for name, resource in template["Resources"].items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips, "checkov skips are declared in the template's metadata"
    for name, skip in skips:
        assert skip["id"].startswith("CKV_"), name
        assert len(skip.get("comment", "")) > 30, f"{name} skips {skip['id']} without a reason"


def test_links_fall_back_to_the_api_url_without_a_public_base_url() -> None:
    from optout.core.settings import Settings

    assert (
        Settings(api_id="abc123", region="eu-west-1").links_base_url
        == "https://abc123.execute-api.eu-west-1.amazonaws.com"
    )
    assert (
        Settings(public_base_url="https://notify.example.com/", api_id="abc").links_base_url
        == "https://notify.example.com"
    )


# --- alarms reach someone ------------------------------------------------------------------


def _of_type(template: dict, kind: str) -> dict[str, dict]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def test_every_alarm_notifies_the_alarm_topic_when_it_fires_and_when_it_clears(template) -> None:
    alarms = _of_type(template, "AWS::CloudWatch::Alarm")
    assert alarms
    for name, alarm in alarms.items():
        props = alarm["Properties"]
        assert props.get("ActionsEnabled", True) is True, name
        assert {"Ref": "AlarmTopic"} in props.get("AlarmActions", []), f"{name} pages nobody"
        assert {"Ref": "AlarmTopic"} in props.get("OKActions", []), f"{name} never says it cleared"


def test_every_dead_letter_queue_keeps_messages_14_days_and_has_an_alarm(template) -> None:
    queues = _of_type(template, "AWS::SQS::Queue")
    dead_letter = {
        q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        for q in queues.values()
        if "RedrivePolicy" in q["Properties"]
    }
    assert dead_letter == {name for name in queues if name.endswith("DeadLetterQueue")}
    watched = {
        d["Value"]["Fn::GetAtt"][0]
        for alarm in _of_type(template, "AWS::CloudWatch::Alarm").values()
        for d in alarm["Properties"].get("Dimensions", [])
        if d["Name"] == "QueueName"
    }
    for name in dead_letter:
        # SQS's maximum: a STOP or a bounce waiting for a fix is never dropped before then
        assert queues[name]["Properties"]["MessageRetentionPeriod"] == 1209600, name
        assert name in watched, f"{name} has no alarm"


def test_api_server_errors_raise_an_alarm(template) -> None:
    (alarm,) = [
        a["Properties"]
        for a in _of_type(template, "AWS::CloudWatch::Alarm").values()
        if a["Properties"]["Namespace"] == "AWS/ApiGateway"
    ]
    assert alarm["MetricName"] == "5xx"
    assert alarm["Dimensions"] == [{"Name": "ApiId", "Value": {"Ref": "HttpApi"}}]
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")


def test_the_alarm_topic_is_encrypted_with_a_key_cloudwatch_may_use(template) -> None:
    topics = _of_type(template, "AWS::SNS::Topic")
    key = topics["AlarmTopic"]["Properties"]["KmsMasterKeyId"]
    assert {t["Properties"]["KmsMasterKeyId"]["Ref"] for t in topics.values()} == {key["Ref"]}
    statements = template["Resources"][key["Ref"]]["Properties"]["KeyPolicy"]["Statement"]
    (grant,) = [s for s in statements if "cloudwatch.amazonaws.com" in s["Principal"].get("Service", [])]
    assert {"kms:GenerateDataKey*", "kms:Decrypt"} <= set(grant["Action"])
    assert grant["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    (policy,) = [
        p["Properties"]
        for p in _of_type(template, "AWS::SNS::TopicPolicy").values()
        if p["Properties"]["Topics"] == [{"Ref": "AlarmTopic"}]
    ]
    (publish,) = policy["PolicyDocument"]["Statement"]
    assert publish["Principal"] == {"Service": "cloudwatch.amazonaws.com"} and publish["Action"] == "sns:Publish"
    assert publish["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}


def test_alarm_email_is_optional_and_subscribed_only_when_set(template) -> None:
    parameter = template["Parameters"]["AlarmEmail"]
    assert parameter["Default"] == ""
    subscriptions = [
        s
        for s in _of_type(template, "AWS::SNS::Subscription").values()
        if s["Properties"]["TopicArn"] == {"Ref": "AlarmTopic"}
    ]
    (subscription,) = subscriptions
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}
    condition = subscription["Condition"]
    unset = Resolver(template, "us-east-1", "111122223333", "s", {})
    given = Resolver(template, "us-east-1", "111122223333", "s", {"AlarmEmail": "ops@example.com"})
    assert unset.condition(condition) is False
    assert given.condition(condition) is True
    assert re.fullmatch(parameter["AllowedPattern"], "") and re.fullmatch(
        parameter["AllowedPattern"], "ops@example.com"
    )
    assert not re.fullmatch(parameter["AllowedPattern"], "ops at example")
    assert "AlarmTopicArn" in template["Outputs"]
