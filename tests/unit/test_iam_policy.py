"""optout_local.iam.policy: the local AWS's IAM decisions, case by case from AWS's documentation.

Every expectation here is taken from AWS's pages, not from the code:

* IAM User Guide, "Policy evaluation logic", "How AWS enforcement code logic evaluates requests to
  allow or deny access" and "Policy evaluation for requests within a single account"
  (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html):
  an explicit deny in any policy wins; within one account an allow in the identity-based *or*
  the resource-based policy is enough; a resource policy that grants the role session or role
  ARN grants it directly; "Cross-account policy evaluation logic": both sides must allow.
* "IAM JSON policy elements: Principal" (an account principal "delegates authority to the
  account"; "*" and {"AWS": "*"} are every principal), "NotPrincipal", "Action"/"NotAction",
  "Resource" ("If the * wildcard is the last character of a resource ARN segment, it can expand
  to match beyond the colon boundaries"; the user name part is case sensitive), "NotResource".
* "IAM JSON policy elements: Condition operators" ("If the key ... is not present in the request
  context, the values do not match and the condition is false. If the policy condition requires
  that the key is not matched, such as StringNotLike or ArnNotLike, and the right key is not
  present, the condition is true"; ...IfExists; Null), "Conditions with multiple context keys or
  values" (operators AND, keys AND, values OR, negated values NOR), "Single-valued vs. multivalued
  context keys" (ForAllValues is true for an absent key, ForAnyValue false), "IAM policy elements:
  Variables and tags" (${...} in Resource and in string/ARN condition values, defaults).
* KMS Developer Guide, "Key policies in AWS KMS": "Unless the key policy explicitly allows it, you
  cannot use IAM policies to allow access to a KMS key ... (You can use an IAM policy to deny a
  permission to a KMS key without permission from a key policy.)"; "Default key policy": the
  statement naming arn:aws:iam::<account>:root enables IAM policies.
* IAM User Guide, "Troubleshoot access denied error messages": the wording of the reasons.

The template's own policies (queue policies, topic policy, key policy, bucket policy) are copied
in as the resolved documents the local stack evaluates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from optout_local.iam.policy import (
    IDENTITY,
    RESOURCE,
    Decision,
    PolicyError,
    Request,
    access_denied_message,
    evaluate,
)

ACCOUNT = "123456789012"
OTHER_ACCOUNT = "210987654321"
REGION = "us-east-1"
ROLE_NAME = "optout-SmsInboundFunctionRole-1A2B3C"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/{ROLE_NAME}"
SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE_NAME}/optout-SmsInboundFunction"
OTHER_SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/optout-SenderFunctionRole-9Z/optout-SenderFunction"
TABLE = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/optout-suppression"
INBOUND_TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:optout-InboundSmsTopic-X1"
SES_TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:optout-SesEventsTopic-Y2"
INBOUND_QUEUE = f"arn:aws:sqs:{REGION}:{ACCOUNT}:optout-InboundSmsQueue-Z3"
FEEDBACK_QUEUE = f"arn:aws:sqs:{REGION}:{ACCOUNT}:optout-FeedbackQueue-W4"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
BUCKET = "arn:aws:s3:::optout-manifestbucket-v5"
SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:optout/pepper-AbCdEf"
SES_CONFIGURATION_SET = f"arn:aws:ses:{REGION}:{ACCOUNT}:configuration-set/optout-events"


def policy(*statements: Mapping[str, Any], version: str = "2012-10-17") -> dict[str, Any]:
    return {"Version": version, "Statement": [dict(s) for s in statements]}


def statement(effect: str, action: str | list[str], resource: str | list[str] = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": effect, "Action": action, "Resource": resource, **extra}


def check(
    action: str,
    resource: str,
    identity: Sequence[Mapping[str, Any]] = (),
    resource_policy: Mapping[str, Any] | None = None,
    *,
    principal: str = SESSION,
    context: Mapping[str, str | Sequence[str]] | None = None,
    key_policy: bool = False,
    account: str = ACCOUNT,
    role_arn: str | None = None,
) -> Decision:
    request = Request(principal, action, resource, dict(context or {}))
    return evaluate(request, identity, resource_policy, account, role_arn=role_arn, key_policy=key_policy)


# The template's resource policies, resolved.
INBOUND_QUEUE_POLICY = policy(
    {
        "Sid": "InboundSmsTopicOnly",
        "Effect": "Allow",
        "Principal": {"Service": "sns.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Resource": INBOUND_QUEUE,
        "Condition": {"ArnEquals": {"aws:SourceArn": INBOUND_TOPIC}},
    }
)
SES_TOPIC_POLICY = policy(
    {
        "Sid": "SesPublishes",
        "Effect": "Allow",
        "Principal": {"Service": "ses.amazonaws.com"},
        "Action": "sns:Publish",
        "Resource": SES_TOPIC,
        "Condition": {"StringEquals": {"AWS:SourceAccount": ACCOUNT}},
    }
)
MESSAGES_KEY_POLICY = policy(
    {
        "Sid": "AccountAdmin",
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
        "Action": "kms:*",
        "Resource": "*",
    },
    {
        "Sid": "EndUserMessagingAndSnsUse",
        "Effect": "Allow",
        "Principal": {"Service": ["sns.amazonaws.com", "sms-voice.amazonaws.com", "ses.amazonaws.com"]},
        "Action": ["kms:GenerateDataKey*", "kms:Decrypt"],
        "Resource": "*",
    },
)
MANIFEST_BUCKET_POLICY = policy(
    {
        "Sid": "TlsOnly",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [BUCKET, f"{BUCKET}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": False}},  # YAML's false, as the template writes it
    }
)
SUPPRESSION_READ_WRITE = policy(
    {
        "Sid": "SuppressionReadWrite",
        "Effect": "Allow",
        "Action": ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem"],
        "Resource": TABLE,
    }
)


# --- explicit and implicit deny ----------------------------------------------------------------


def test_an_explicit_deny_in_the_identity_policy_beats_an_allow_in_the_resource_policy() -> None:
    # Given a secret whose resource policy allows the role to read it
    resource_policy = policy(
        {
            "Sid": "RoleReads",
            "Effect": "Allow",
            "Principal": {"AWS": ROLE},
            "Action": "secretsmanager:GetSecretValue",
            "Resource": "*",
        }
    )
    # and an identity policy that allows it too but denies it in another statement
    identity = [
        policy(statement("Allow", "secretsmanager:GetSecretValue", SECRET)),
        policy({**statement("Deny", "secretsmanager:*", SECRET), "Sid": "NoSecrets"}),
    ]
    # When the role's session reads the secret
    decision = check("secretsmanager:GetSecretValue", SECRET, identity, resource_policy)
    # Then the deny wins, and the decision names the denying statement
    assert not decision.allowed
    assert decision.reason == "with an explicit deny in an identity-based policy"
    assert decision.statement is not None
    assert (decision.statement.policy_type, decision.statement.policy_index, decision.statement.sid) == (
        IDENTITY,
        1,
        "NoSecrets",
    )


def test_an_explicit_deny_in_the_resource_policy_beats_an_allow_in_the_identity_policy() -> None:
    # Given an identity policy that allows everything on the queue
    identity = [policy(statement("Allow", "sqs:*", INBOUND_QUEUE))]
    # and a queue policy that denies this role's sending
    resource_policy = policy(
        {
            "Sid": "NotThisRole",
            "Effect": "Deny",
            "Principal": {"AWS": ROLE},
            "Action": "sqs:SendMessage",
            "Resource": INBOUND_QUEUE,
        }
    )
    # When the role's session sends
    decision = check("sqs:SendMessage", INBOUND_QUEUE, identity, resource_policy)
    # Then it is denied by the resource-based policy, and receiving is still allowed
    assert not decision.allowed
    assert decision.reason == "with an explicit deny in a resource-based policy"
    assert decision.policy_type == RESOURCE
    assert check("sqs:ReceiveMessage", INBOUND_QUEUE, identity, resource_policy).allowed


def test_with_no_allow_anywhere_the_request_is_implicitly_denied() -> None:
    # Given a role allowed to read and write the suppression table only
    # When it deletes an item, or writes to another table
    delete = check("dynamodb:DeleteItem", TABLE, [SUPPRESSION_READ_WRITE])
    elsewhere = check("dynamodb:PutItem", TABLE + "-other", [SUPPRESSION_READ_WRITE])
    # Then both are implicit denies, worded as AWS words them
    for decision, action in ((delete, "dynamodb:DeleteItem"), (elsewhere, "dynamodb:PutItem")):
        assert not decision.allowed
        assert decision.reason == f"because no identity-based policy allows the {action} action"
        assert decision.statement is None
    # and the full message reads as AWS's AccessDenied message
    assert access_denied_message(Request(SESSION, "dynamodb:DeleteItem", TABLE), delete) == (
        f"User: {SESSION} is not authorized to perform: dynamodb:DeleteItem on resource: {TABLE} "
        "because no identity-based policy allows the dynamodb:DeleteItem action"
    )


def test_an_identity_policy_allow_is_enough_within_the_account() -> None:
    # Given the template's read-write statement and no resource policy
    # When the role writes an item
    decision = check("dynamodb:PutItem", TABLE, [SUPPRESSION_READ_WRITE])
    # Then it is allowed by that statement
    assert decision.allowed
    assert decision.reason == ""
    assert decision.statement is not None
    assert decision.statement.sid == "SuppressionReadWrite"
    assert str(decision.statement) == "Allow statement #0 (Sid SuppressionReadWrite) of the identity-based policy #0"


def test_an_empty_identity_policy_list_allows_nothing() -> None:
    # Given a role with no policies at all
    # When it calls anything
    decision = check("sqs:SendMessage", INBOUND_QUEUE)
    # Then it is denied
    assert not decision.allowed
    assert decision.reason == "because no identity-based policy allows the sqs:SendMessage action"


# --- resource-based policies within the account ------------------------------------------------


@pytest.mark.parametrize(
    "principal_element",
    [
        {"AWS": ROLE},
        {"AWS": [f"arn:aws:iam::{OTHER_ACCOUNT}:role/x", SESSION]},
        "*",
        {"AWS": "*"},
    ],
    ids=["role-arn", "session-arn", "star", "aws-star"],
)
def test_a_resource_policy_naming_the_session_role_or_everyone_allows_without_an_identity_allow(
    principal_element: Any,
) -> None:
    # Given a queue policy that allows sending to the role (or its session, or everyone)
    resource_policy = policy(
        {"Effect": "Allow", "Principal": principal_element, "Action": "sqs:SendMessage", "Resource": INBOUND_QUEUE}
    )
    # When the role's session sends without any identity-based allow
    decision = check("sqs:SendMessage", INBOUND_QUEUE, [], resource_policy)
    # Then the resource policy alone allows it
    assert decision.allowed
    assert decision.policy_type == RESOURCE
    # and another role's session is not covered unless the policy names everyone
    other = check("sqs:SendMessage", INBOUND_QUEUE, [], resource_policy, principal=OTHER_SESSION)
    assert other.allowed is (principal_element in ("*", {"AWS": "*"}))


def test_a_role_arn_with_a_path_is_matched_as_given() -> None:
    # Given a role with a path, named in a bucket policy by its full ARN
    role_with_path = f"arn:aws:iam::{ACCOUNT}:role/service/{ROLE_NAME}"
    resource_policy = policy(
        {"Effect": "Allow", "Principal": {"AWS": role_with_path}, "Action": "s3:GetObject", "Resource": f"{BUCKET}/*"}
    )
    # When its session reads, with and without being told the role's ARN
    told = check("s3:GetObject", f"{BUCKET}/m.csv", [], resource_policy, role_arn=role_with_path)
    untold = check("s3:GetObject", f"{BUCKET}/m.csv", [], resource_policy)
    # Then only the evaluator that knows the role's path matches it (sessions carry no path)
    assert told.allowed
    assert not untold.allowed


@pytest.mark.parametrize("account_principal", [ACCOUNT, f"arn:aws:iam::{ACCOUNT}:root"], ids=["id", "root-arn"])
def test_a_resource_policy_naming_the_account_delegates_to_iam_policies(account_principal: str) -> None:
    # Given a topic policy that allows the account (not the role) to publish
    resource_policy = policy(
        {"Effect": "Allow", "Principal": {"AWS": account_principal}, "Action": "sns:Publish", "Resource": SES_TOPIC}
    )
    # When the role publishes without, then with, an identity-based allow
    alone = check("sns:Publish", SES_TOPIC, [], resource_policy)
    with_iam = check("sns:Publish", SES_TOPIC, [policy(statement("Allow", "sns:Publish", SES_TOPIC))], resource_policy)
    # Then the account principal grants nothing by itself; the IAM policy does
    assert not alone.allowed
    assert alone.reason == "because no identity-based policy allows the sns:Publish action"
    assert with_iam.allowed
    assert with_iam.policy_type == IDENTITY


def test_a_deny_naming_the_account_denies_every_principal_in_it() -> None:
    # Given a bucket policy that denies deletes to the whole account
    resource_policy = policy(
        {"Effect": "Deny", "Principal": {"AWS": ACCOUNT}, "Action": "s3:DeleteObject", "Resource": f"{BUCKET}/*"}
    )
    # When a role allowed s3:* deletes
    decision = check("s3:DeleteObject", f"{BUCKET}/m.csv", [policy(statement("Allow", "s3:*"))], resource_policy)
    # Then it is explicitly denied
    assert not decision.allowed
    assert decision.reason == "with an explicit deny in a resource-based policy"


def test_across_accounts_both_the_identity_and_the_resource_policy_must_allow() -> None:
    # Given a queue in another account whose policy allows this account
    resource_policy = policy(
        {"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": "sqs:SendMessage", "Resource": "*"}
    )
    queue = f"arn:aws:sqs:{REGION}:{OTHER_ACCOUNT}:partner"
    identity = [policy(statement("Allow", "sqs:SendMessage", queue))]
    # When the role sends with both, with only the identity policy, with only the queue policy
    both = check("sqs:SendMessage", queue, identity, resource_policy, account=OTHER_ACCOUNT)
    identity_only = check("sqs:SendMessage", queue, identity, None, account=OTHER_ACCOUNT)
    resource_only = check("sqs:SendMessage", queue, [], resource_policy, account=OTHER_ACCOUNT)
    # Then only both together allow
    assert both.allowed
    assert identity_only.reason == "because no resource-based policy allows the sqs:SendMessage action"
    assert resource_only.reason == "because no identity-based policy allows the sqs:SendMessage action"


# --- NotAction, NotResource, NotPrincipal ------------------------------------------------------


def test_not_action_with_allow_allows_every_action_but_the_listed_ones() -> None:
    # Given an Allow with NotAction iam:* on every resource
    identity = [policy({"Effect": "Allow", "NotAction": ["iam:*", "kms:ScheduleKeyDeletion"], "Resource": "*"})]
    # When the role writes to DynamoDB, creates a role, schedules a key's deletion
    # Then the first is allowed, the listed ones are (implicitly) denied
    assert check("dynamodb:PutItem", TABLE, identity).allowed
    assert check("iam:CreateRole", f"arn:aws:iam::{ACCOUNT}:role/x", identity).reason == (
        "because no identity-based policy allows the iam:CreateRole action"
    )
    assert not check("kms:ScheduleKeyDeletion", KEY, identity).allowed


def test_not_action_with_deny_denies_every_action_but_the_listed_ones() -> None:
    # Given an allow of everything and a Deny with NotAction on the table's reads
    identity = [
        policy(
            statement("Allow", "*"),
            {"Sid": "ReadOnly", "Effect": "Deny", "NotAction": ["dynamodb:Get*", "dynamodb:Query"], "Resource": TABLE},
        )
    ]
    # When the role reads, queries and writes the table, and writes elsewhere
    # Then reads pass, the write to the table is explicitly denied, other resources are untouched
    assert check("dynamodb:GetItem", TABLE, identity).allowed
    assert check("dynamodb:Query", TABLE, identity).allowed
    denied = check("dynamodb:PutItem", TABLE, identity)
    assert denied.reason == "with an explicit deny in an identity-based policy"
    assert denied.statement is not None
    assert denied.statement.sid == "ReadOnly"
    assert check("dynamodb:PutItem", TABLE + "-other", identity).allowed


def test_not_resource_allows_a_phone_number_publish_but_not_a_topic_publish() -> None:
    # Given sns:Publish allowed on everything that is not a topic ARN (the phone-number grant)
    identity = [policy({"Effect": "Allow", "Action": "sns:Publish", "NotResource": "arn:aws:sns:*:*:*"})]
    # When the role publishes to a phone number (no resource type: the resource is "*") and to a topic
    to_phone = check("sns:Publish", "*", identity)
    to_topic = check("sns:Publish", SES_TOPIC, identity)
    # Then the phone-number publish is allowed and the topic publish is not
    assert to_phone.allowed
    assert not to_topic.allowed
    # and the template's own grant (Resource "*") covers both
    template_grant = [policy({"Sid": "SendSmsThroughSns", **statement("Allow", "sns:Publish", "*")})]
    assert check("sns:Publish", "*", template_grant).allowed
    assert check("sns:Publish", SES_TOPIC, template_grant).allowed


def test_not_resource_with_deny_denies_all_but_the_listed_resources() -> None:
    # Given the guide's example: deny s3:* except on one prefix, plus an allow of s3:*
    identity = [
        policy(
            statement("Allow", "s3:*"),
            {"Effect": "Deny", "Action": "s3:*", "NotResource": [f"{BUCKET}/payroll", f"{BUCKET}/payroll/*"]},
        )
    ]
    # When the role reads inside and outside the prefix
    # Then only inside is allowed
    assert check("s3:GetObject", f"{BUCKET}/payroll/2026.csv", identity).allowed
    assert not check("s3:GetObject", f"{BUCKET}/other/2026.csv", identity).allowed


def test_not_principal_with_deny_exempts_a_session_only_with_its_role_and_account() -> None:
    # Given deny-all-but statements: one naming the session, role and account, one naming the session only
    def bucket_policy(names: list[str]) -> dict[str, Any]:
        return policy(
            {"Effect": "Deny", "NotPrincipal": {"AWS": names}, "Action": "s3:*", "Resource": f"{BUCKET}/*"},
            {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"{BUCKET}/*"},
        )

    full = bucket_policy([SESSION, ROLE, f"arn:aws:iam::{ACCOUNT}:root"])
    session_only = bucket_policy([SESSION])
    # When the session, and another role's session, read an object
    # Then the fully named session is exempt, everyone else is denied
    assert check("s3:GetObject", f"{BUCKET}/m.csv", [], full).allowed
    assert not check("s3:GetObject", f"{BUCKET}/m.csv", [], full, principal=OTHER_SESSION).allowed
    assert not check("s3:GetObject", f"{BUCKET}/m.csv", [], session_only).allowed


# --- wildcards and case ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "resource", "allowed"),
    [
        (f"{BUCKET}/*", f"{BUCKET}/2026/03/manifest.csv", True),  # * takes "/" too
        (f"{BUCKET}/*/test/*", f"{BUCKET}/1/2/test/3/object.jpg", True),  # the guide's example
        (f"{BUCKET}/*/test/*", f"{BUCKET}/1-test/object.jpg", False),
        (f"arn:aws:sns:*:{ACCOUNT}:optout-*", SES_TOPIC, True),  # a whole segment
        (f"arn:aws:sns:{REGION}:{ACCOUNT}:optout-*", SES_TOPIC + ":8f0a-sub", True),  # last * crosses colons
        (f"arn:aws:sns:{REGION}:{ACCOUNT}:optout-*-Y2", f"arn:aws:sns:{REGION}:{ACCOUNT}:optout-a:b-Y2", False),
        (f"arn:aws:sqs:us-east-?:{ACCOUNT}:*", INBOUND_QUEUE, True),  # ? is one character
        (f"arn:aws:sqs:us-east-?:{ACCOUNT}:*", f"arn:aws:sqs:us-east-12:{ACCOUNT}:q", False),
        (f"arn:aws:sms-voice:{REGION}:{ACCOUNT}:*", f"arn:aws:sms-voice:{REGION}:{ACCOUNT}:opt-out-list/Default", True),
        ("arn:aws:s3:::Optout-ManifestBucket-V5/*", f"{BUCKET}/m.csv", False),  # case-sensitive
        (f"{BUCKET}/report (1)+[final].csv", f"{BUCKET}/report (1)+[final].csv", True),  # literal characters
        ("*", "*", True),
        ("arn:aws:sns:*:*:*", "*", False),
    ],
)
def test_resource_wildcards_match_as_iam_matches_them(pattern: str, resource: str, allowed: bool) -> None:
    # Given an allow of s3/sns/sqs/sms-voice actions on the pattern
    identity = [policy(statement("Allow", ["s3:GetObject", "sns:Publish", "sqs:SendMessage", "sms-voice:*"], pattern))]
    action = {"s3": "s3:GetObject", "sns": "sns:Publish", "sqs": "sqs:SendMessage"}.get(
        resource.split(":")[2] if resource != "*" else "sns", "sms-voice:PutOptedOutNumber"
    )
    # When the role acts on the resource
    decision = check(action, resource, identity)
    # Then it matches exactly where IAM's rules say
    assert decision.allowed is allowed


@pytest.mark.parametrize(
    ("pattern", "allowed"),
    [
        ("dynamodb:PutItem", True),
        ("DynamoDB:putitem", True),
        ("dynamodb:Put*", True),
        ("dynamodb:*Item", True),
        ("dynamodb:?utItem", True),
        ("*", True),
        ("dynamodb:Get*", False),
        ("dynamo:PutItem", False),
        ("dynamodb:PutItem*x", False),
    ],
)
def test_action_matching_is_case_insensitive_with_wildcards(pattern: str, allowed: bool) -> None:
    # Given an allow of the action pattern
    identity = [policy(statement("Allow", pattern, TABLE))]
    # When the role calls dynamodb:PutItem
    # Then the pattern matches regardless of case
    assert check("dynamodb:PutItem", TABLE, identity).allowed is allowed


# --- service principals ------------------------------------------------------------------------


def test_ses_may_publish_to_its_topic_only_from_this_account() -> None:
    # Given the template's topic policy: ses.amazonaws.com, StringEquals AWS:SourceAccount
    # When SES publishes with this account as source, with another account, with no source account
    ours = check(
        "sns:Publish",
        SES_TOPIC,
        [],
        SES_TOPIC_POLICY,
        principal="ses.amazonaws.com",
        context={"aws:SourceAccount": ACCOUNT, "aws:SourceArn": SES_CONFIGURATION_SET},
    )
    theirs = check(
        "sns:Publish",
        SES_TOPIC,
        [],
        SES_TOPIC_POLICY,
        principal="ses.amazonaws.com",
        context={"aws:SourceAccount": OTHER_ACCOUNT},
    )
    unknown = check("sns:Publish", SES_TOPIC, [], SES_TOPIC_POLICY, principal="ses.amazonaws.com")
    # Then only the first is allowed, by the statement that names SES
    assert ours.allowed
    assert ours.statement is not None
    assert ours.statement.sid == "SesPublishes"
    for denied in (theirs, unknown):
        assert not denied.allowed
        assert denied.reason == "because no resource-based policy allows the sns:Publish action"


def test_a_topic_policy_with_arn_like_source_arn_and_source_account_admits_only_that_source() -> None:
    # Given a topic policy for End User Messaging: ArnLike aws:SourceArn on the account's numbers, and
    # StringEquals aws:SourceAccount
    topic_policy = policy(
        {
            "Effect": "Allow",
            "Principal": {"Service": "sms-voice.amazonaws.com"},
            "Action": "sns:Publish",
            "Resource": INBOUND_TOPIC,
            "Condition": {
                "ArnLike": {"aws:SourceArn": f"arn:aws:sms-voice:{REGION}:{ACCOUNT}:phone-number/*"},
                "StringEquals": {"aws:SourceAccount": ACCOUNT},
            },
        }
    )
    number = f"arn:aws:sms-voice:{REGION}:{ACCOUNT}:phone-number/phone-0123456789abcdef"

    def deliver(principal: str = "sms-voice.amazonaws.com", **context: str) -> bool:
        return check("sns:Publish", INBOUND_TOPIC, [], topic_policy, principal=principal, context=context).allowed

    # When End User Messaging delivers from a number of the account
    # Then it is allowed; any other source, account, service or a missing key is denied
    assert deliver(**{"aws:SourceArn": number, "aws:SourceAccount": ACCOUNT})
    assert not deliver(**{"aws:SourceArn": number, "aws:SourceAccount": OTHER_ACCOUNT})
    assert not deliver(**{"aws:SourceArn": number.replace(ACCOUNT, OTHER_ACCOUNT), "aws:SourceAccount": ACCOUNT})
    assert not deliver(
        **{"aws:SourceArn": f"arn:aws:sms-voice:{REGION}:{ACCOUNT}:pool/pool-1", "aws:SourceAccount": ACCOUNT}
    )
    assert not deliver(**{"aws:SourceArn": number})
    assert not deliver(**{"aws:SourceAccount": ACCOUNT})
    assert not deliver("sns.amazonaws.com", **{"aws:SourceArn": number, "aws:SourceAccount": ACCOUNT})


def test_sns_may_deliver_to_the_inbound_queue_only_from_the_inbound_topic() -> None:
    # Given the template's queue policy (ArnEquals aws:SourceArn = the inbound topic)
    # When SNS delivers from the inbound topic, from the SES events topic, with no source
    def deliver(source: str | None, queue: str = INBOUND_QUEUE) -> Decision:
        context = {"aws:SourceArn": source} if source else {}
        return check("sqs:SendMessage", queue, [], INBOUND_QUEUE_POLICY, principal="sns.amazonaws.com", context=context)

    # Then only the inbound topic's delivery is allowed
    assert deliver(INBOUND_TOPIC).allowed
    assert not deliver(SES_TOPIC).allowed
    assert not deliver(None).allowed
    # and the policy's Resource keeps it to its own queue
    assert not deliver(INBOUND_TOPIC, FEEDBACK_QUEUE).allowed


def test_a_service_principal_gets_nothing_from_identity_policies_or_an_absent_resource_policy() -> None:
    # Given identity policies that would allow anything, and no queue policy
    identity = [policy(statement("Allow", "*"))]
    # When SNS delivers to the queue
    decision = check(
        "sqs:SendMessage",
        FEEDBACK_QUEUE,
        identity,
        None,
        principal="sns.amazonaws.com",
        context={"aws:SourceArn": SES_TOPIC},
    )
    # Then it is denied: only a resource policy can admit a service
    assert not decision.allowed
    assert decision.reason == "because no resource-based policy allows the sqs:SendMessage action"
    assert decision.matched == ()  # the identity policies were not consulted


# --- KMS key policies --------------------------------------------------------------------------

DECRYPT = [policy({"Sid": "UseKey", **statement("Allow", ["kms:Decrypt", "kms:GenerateDataKey"], KEY)})]


def test_kms_an_iam_allow_without_key_policy_delegation_is_denied() -> None:
    # Given a key policy that names only the services, not the account
    services_only = policy(MESSAGES_KEY_POLICY["Statement"][1])
    # When a role whose IAM policy allows kms:Decrypt decrypts
    decision = check("kms:Decrypt", KEY, DECRYPT, services_only, key_policy=True)
    # Then the key policy's silence denies it
    assert not decision.allowed
    assert decision.reason == "because no resource-based policy allows the kms:Decrypt action"
    # as it does when there is no key policy at all
    assert not check("kms:Decrypt", KEY, DECRYPT, None, key_policy=True).allowed


def test_kms_the_root_statement_enables_iam_policies() -> None:
    # Given the template's key policy, whose AccountAdmin statement names the account root
    # When a role with, and a role without, an IAM allow decrypts
    with_iam = check("kms:Decrypt", KEY, DECRYPT, MESSAGES_KEY_POLICY, key_policy=True)
    without = check("kms:Decrypt", KEY, [], MESSAGES_KEY_POLICY, key_policy=True)
    # Then the IAM policy decides
    assert with_iam.allowed
    assert with_iam.statement is not None
    assert with_iam.statement.sid == "UseKey"
    assert not without.allowed
    assert without.reason == "because no identity-based policy allows the kms:Decrypt action"


def test_kms_delegation_covers_only_the_actions_the_root_statement_allows() -> None:
    # Given a key policy whose account statement allows only kms:Describe* and kms:Decrypt
    key_policy = policy(
        {"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": ["kms:Describe*", "kms:Decrypt"], "Resource": "*"}
    )
    identity = [policy(statement("Allow", "kms:*", KEY))]
    # When a role allowed kms:* decrypts and encrypts
    # Then Decrypt is allowed and Encrypt is not: the key policy does not enable IAM for it
    assert check("kms:Decrypt", KEY, identity, key_policy, key_policy=True).allowed
    encrypt = check("kms:Encrypt", KEY, identity, key_policy, key_policy=True)
    assert not encrypt.allowed
    assert encrypt.reason == "because no resource-based policy allows the kms:Encrypt action"


def test_kms_a_key_policy_naming_the_role_allows_without_iam() -> None:
    # Given a key policy that names the role itself
    key_policy = policy({"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "kms:Decrypt", "Resource": "*"})
    # When the role, which has no IAM allow, decrypts
    # Then the key policy alone allows it, but not for another role
    assert check("kms:Decrypt", KEY, [], key_policy, key_policy=True).allowed
    assert not check("kms:Decrypt", KEY, [], key_policy, key_policy=True, principal=OTHER_SESSION).allowed


def test_kms_an_iam_deny_counts_without_the_key_policy() -> None:
    # Given the template's key policy and an IAM policy that denies kms:Decrypt
    identity = [policy(statement("Allow", "kms:*"), statement("Deny", "kms:Decrypt", KEY))]
    # When the role decrypts
    decision = check("kms:Decrypt", KEY, identity, MESSAGES_KEY_POLICY, key_policy=True)
    # Then the IAM deny applies
    assert not decision.allowed
    assert decision.reason == "with an explicit deny in an identity-based policy"


def test_kms_the_key_policy_grants_its_services_and_conditions_narrow_them() -> None:
    # Given the template's key policy (sns, sms-voice and ses may GenerateDataKey* and Decrypt)
    def service(principal: str, action: str, key_policy: Mapping[str, Any] = MESSAGES_KEY_POLICY, **ctx: str) -> bool:
        return check(action, KEY, [], key_policy, principal=principal, key_policy=True, context=ctx).allowed

    # When the services use the key
    # Then the listed services may, for the listed actions only
    assert service("sns.amazonaws.com", "kms:GenerateDataKey")
    assert service("sms-voice.amazonaws.com", "kms:Decrypt")
    assert not service("sns.amazonaws.com", "kms:Encrypt")
    assert not service("sqs.amazonaws.com", "kms:Decrypt")
    # and with a condition on the statement, only requests that meet it
    conditioned = policy(
        {
            "Effect": "Allow",
            "Principal": {"Service": "sns.amazonaws.com"},
            "Action": ["kms:GenerateDataKey*", "kms:Decrypt"],
            "Resource": "*",
            "Condition": {
                "StringEquals": {"aws:SourceAccount": ACCOUNT},
                "ArnLike": {"aws:SourceArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:optout-*"},
            },
        }
    )
    assert service(
        "sns.amazonaws.com",
        "kms:GenerateDataKey",
        conditioned,
        **{"aws:SourceAccount": ACCOUNT, "aws:SourceArn": SES_TOPIC},
    )
    assert not service("sns.amazonaws.com", "kms:GenerateDataKey", conditioned, **{"aws:SourceAccount": ACCOUNT})
    assert not service(
        "sns.amazonaws.com",
        "kms:GenerateDataKey",
        conditioned,
        **{"aws:SourceAccount": OTHER_ACCOUNT, "aws:SourceArn": SES_TOPIC},
    )


def test_kms_via_service_limits_a_role_to_use_through_sqs() -> None:
    # Given an IAM policy allowing Decrypt only via SQS, and the template's key policy
    identity = [
        policy(
            statement(
                "Allow",
                "kms:Decrypt",
                KEY,
                Condition={"StringEquals": {"kms:ViaService": "sqs.us-east-1.amazonaws.com"}},
            )
        )
    ]
    # When the role decrypts through SQS, and directly
    via_sqs = check(
        "kms:Decrypt",
        KEY,
        identity,
        MESSAGES_KEY_POLICY,
        key_policy=True,
        context={"kms:ViaService": "sqs.us-east-1.amazonaws.com"},
    )
    direct = check("kms:Decrypt", KEY, identity, MESSAGES_KEY_POLICY, key_policy=True)
    # Then only through SQS
    assert via_sqs.allowed
    assert not direct.allowed


# --- conditions --------------------------------------------------------------------------------


def condition_allows(condition: Mapping[str, Any], context: Mapping[str, str | Sequence[str]] | None = None) -> bool:
    """Whether an Allow of s3:GetObject with ``condition`` lets the session read an object."""
    identity = [policy(statement("Allow", "s3:GetObject", f"{BUCKET}/*", Condition=dict(condition)))]
    return check("s3:GetObject", f"{BUCKET}/m.csv", identity, context=context).allowed


@pytest.mark.parametrize(
    ("condition", "context", "allowed"),
    [
        ({"StringEquals": {"aws:PrincipalTag/team": "ops"}}, {"aws:PrincipalTag/team": "ops"}, True),
        ({"StringEquals": {"aws:PrincipalTag/team": "ops"}}, {"aws:PrincipalTag/team": "Ops"}, False),
        ({"StringEqualsIgnoreCase": {"aws:PrincipalTag/team": "ops"}}, {"aws:PrincipalTag/team": "OPS"}, True),
        ({"StringNotEqualsIgnoreCase": {"aws:PrincipalTag/team": "ops"}}, {"aws:PrincipalTag/team": "OPS"}, False),
        ({"StringLike": {"s3:prefix": "+1*"}}, {"s3:prefix": "+14155550101"}, True),  # a phone-number pattern
        ({"StringLike": {"s3:prefix": "home/?/*"}}, {"s3:prefix": "home/a/b"}, True),
        ({"StringLike": {"s3:prefix": "home/*"}}, {"s3:prefix": "Home/a"}, False),  # case-sensitive
        ({"StringNotLike": {"s3:prefix": "tmp/*"}}, {"s3:prefix": "tmp/x"}, False),
        ({"StringNotEquals": {"aws:SourceAccount": [ACCOUNT, OTHER_ACCOUNT]}}, {"aws:SourceAccount": ACCOUNT}, False),
        ({"StringNotEquals": {"aws:SourceAccount": [ACCOUNT, OTHER_ACCOUNT]}}, {"aws:SourceAccount": "1" * 12}, True),
        ({"StringEquals": {"aws:SourceAccount": [OTHER_ACCOUNT, ACCOUNT]}}, {"aws:SourceAccount": ACCOUNT}, True),
        ({"ArnEquals": {"aws:SourceArn": SES_TOPIC}}, {"aws:SourceArn": SES_TOPIC}, True),
        ({"ArnLike": {"aws:SourceArn": "arn:aws:sns:*:*:optout-*"}}, {"aws:SourceArn": SES_TOPIC}, True),
        ({"ArnLike": {"aws:SourceArn": "arn:aws:sns:*:*:OPTOUT-*"}}, {"aws:SourceArn": SES_TOPIC}, False),
        ({"ArnLike": {"aws:SourceArn": "arn:aws:sns:*"}}, {"aws:SourceArn": SES_TOPIC}, True),
        ({"ArnLike": {"aws:SourceArn": "arn:aws:sqs:*"}}, {"aws:SourceArn": SES_TOPIC}, False),
        ({"ArnNotEquals": {"aws:SourceArn": SES_TOPIC}}, {"aws:SourceArn": INBOUND_TOPIC}, True),
        ({"ArnNotLike": {"aws:SourceArn": "arn:aws:sns:*:*:optout-*"}}, {"aws:SourceArn": SES_TOPIC}, False),
        ({"Bool": {"aws:SecureTransport": "true"}}, {"aws:SecureTransport": "true"}, True),
        ({"Bool": {"aws:SecureTransport": True}}, {"aws:SecureTransport": "true"}, True),
        ({"Bool": {"aws:SecureTransport": False}}, {"aws:SecureTransport": "true"}, False),
        ({"NumericLessThan": {"s3:max-keys": "10"}}, {"s3:max-keys": "9"}, True),
        ({"NumericLessThan": {"s3:max-keys": 10}}, {"s3:max-keys": "10"}, False),
        ({"NumericLessThanEquals": {"s3:max-keys": "10"}}, {"s3:max-keys": "10"}, True),
        ({"NumericGreaterThanEquals": {"s3:max-keys": "10.5"}}, {"s3:max-keys": "11"}, True),
        ({"NumericEquals": {"s3:max-keys": "10"}}, {"s3:max-keys": "ten"}, False),
        ({"NumericNotEquals": {"s3:max-keys": "10"}}, {"s3:max-keys": "11"}, True),
        (
            {"DateGreaterThan": {"aws:CurrentTime": "2026-01-01T00:00:00Z"}},
            {"aws:CurrentTime": "2026-03-01T12:00:00Z"},
            True,
        ),
        (
            {"DateLessThan": {"aws:CurrentTime": "2026-01-01T00:00:00Z"}},
            {"aws:CurrentTime": "2026-03-01T12:00:00Z"},
            False,
        ),
        ({"DateLessThan": {"aws:CurrentTime": "2026-06-01"}}, {"aws:CurrentTime": "2026-03-01T12:00:00Z"}, True),
        ({"DateGreaterThanEquals": {"aws:EpochTime": "1767225600"}}, {"aws:EpochTime": "1772366400"}, True),
        (
            {"DateNotEquals": {"aws:CurrentTime": "2026-03-01T12:00:00Z"}},
            {"aws:CurrentTime": "2026-03-01T12:00:00+00:00"},
            False,
        ),
        ({"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}}, {"aws:SourceIp": "203.0.113.7"}, True),
        ({"NotIpAddress": {"aws:SourceIp": "203.0.113.0/24"}}, {"aws:SourceIp": "198.51.100.7"}, True),
        ({"BinaryEquals": {"s3:x-amz-meta": "QmluYXJ5"}}, {"s3:x-amz-meta": "QmluYXJ5"}, True),
    ],
)
def test_condition_operators_compare_as_documented(
    condition: Mapping[str, Any], context: Mapping[str, str], allowed: bool
) -> None:
    # Given an allow whose condition uses the operator
    # When the request carries the context key
    # Then the operator decides
    assert condition_allows(condition, context) is allowed


def test_multiple_operators_and_keys_are_anded_and_values_ored() -> None:
    # Given an allow with two operators, one of them with two keys
    condition = {
        "StringEquals": {"aws:SourceAccount": ACCOUNT, "aws:PrincipalTag/team": ["ops", "dev"]},
        "ArnLike": {"aws:SourceArn": "arn:aws:sns:*:*:optout-*"},
    }
    everything = {"aws:SourceAccount": ACCOUNT, "aws:PrincipalTag/team": "dev", "aws:SourceArn": SES_TOPIC}
    # When every key holds, then when any one does not
    # Then only the first is allowed
    assert condition_allows(condition, everything)
    for key, wrong in (
        ("aws:SourceAccount", OTHER_ACCOUNT),
        ("aws:PrincipalTag/team", "qa"),
        ("aws:SourceArn", INBOUND_QUEUE),
    ):
        assert not condition_allows(condition, {**everything, key: wrong}), key


def test_condition_key_names_are_case_insensitive_and_values_are_not() -> None:
    # Given the template's spelling "AWS:SourceAccount" and a context spelled "aws:sourceaccount"
    # When the values are equal, then differ only in case
    # Then the key matches either way; StringEquals is case-sensitive on the value
    assert condition_allows({"StringEquals": {"AWS:SourceAccount": ACCOUNT}}, {"aws:sourceaccount": ACCOUNT})
    assert not condition_allows({"StringEquals": {"aws:PrincipalTag/Team": "Ops"}}, {"AWS:PRINCIPALTAG/team": "ops"})


@pytest.mark.parametrize(
    ("operator", "allowed"),
    [
        ("StringEquals", False),
        ("StringLike", False),
        ("ArnEquals", False),
        ("ArnLike", False),
        ("NumericLessThan", False),
        ("DateLessThan", False),
        ("Bool", False),
        ("IpAddress", False),
        ("StringNotEquals", True),
        ("StringNotLike", True),
        ("ArnNotEquals", True),
        ("ArnNotLike", True),
        ("NumericNotEquals", True),
        ("DateNotEquals", True),
        ("NotIpAddress", True),
    ],
)
def test_a_missing_key_makes_a_condition_false_and_a_negated_one_true(operator: str, allowed: bool) -> None:
    # Given an allow whose condition tests a key the request does not carry
    # When the request comes
    # Then the condition is false, except for the negated operators, which are true
    assert condition_allows({operator: {"aws:SourceVpce": "vpce-1a2b3c"}}) is allowed


def test_if_exists_is_true_when_the_key_is_missing_and_tests_the_value_when_present() -> None:
    # Given an allow with StringEqualsIfExists and a deny with ArnNotLikeIfExists
    condition = {"StringEqualsIfExists": {"aws:SourceAccount": ACCOUNT}}
    deny_foreign = [
        policy(
            statement("Allow", "sqs:SendMessage", INBOUND_QUEUE),
            statement(
                "Deny",
                "sqs:SendMessage",
                INBOUND_QUEUE,
                Condition={"ArnNotLikeIfExists": {"aws:SourceArn": f"arn:aws:sns:*:{ACCOUNT}:*"}},
            ),
        )
    ]
    # When the key is missing, present and matching, present and not
    # Then IfExists passes the missing key and tests a present one
    assert condition_allows(condition, {})
    assert condition_allows(condition, {"aws:SourceAccount": ACCOUNT})
    assert not condition_allows(condition, {"aws:SourceAccount": OTHER_ACCOUNT})
    assert condition_allows({"NumericLessThanIfExists": {"s3:max-keys": "10"}}, {"s3:max-keys": "5"})
    assert not condition_allows({"NumericLessThanIfExists": {"s3:max-keys": "10"}}, {"s3:max-keys": "50"})
    # and a deny with IfExists applies when the key is missing ("If the key is not present ... true")
    assert not check("sqs:SendMessage", INBOUND_QUEUE, deny_foreign).allowed
    assert check("sqs:SendMessage", INBOUND_QUEUE, deny_foreign, context={"aws:SourceArn": SES_TOPIC}).allowed
    assert not check(
        "sqs:SendMessage",
        INBOUND_QUEUE,
        deny_foreign,
        context={"aws:SourceArn": f"arn:aws:sns:{REGION}:{OTHER_ACCOUNT}:t"},
    ).allowed


def test_null_checks_whether_the_key_is_present() -> None:
    # Given allows with Null true and Null false (as a YAML boolean) on aws:SourceArn
    # When the key is present, then absent
    # Then "true" holds only when absent and false only when present
    assert condition_allows({"Null": {"aws:SourceArn": "true"}}, {})
    assert not condition_allows({"Null": {"aws:SourceArn": "true"}}, {"aws:SourceArn": SES_TOPIC})
    assert condition_allows({"Null": {"aws:SourceArn": False}}, {"aws:SourceArn": SES_TOPIC})
    assert not condition_allows({"Null": {"aws:SourceArn": False}}, {})


def test_for_any_value_needs_one_request_value_to_match_and_is_false_without_the_key() -> None:
    # Given an allow with ForAnyValue:StringEquals on the multivalued aws:TagKeys
    condition = {"ForAnyValue:StringEquals": {"aws:TagKeys": ["environment", "cost-center"]}}
    # When the request has one of the keys, none of them, no keys at all, an empty list
    # Then only one matching value is enough, and an absent or empty key is false
    assert condition_allows(condition, {"aws:TagKeys": ["owner", "environment"]})
    assert not condition_allows(condition, {"aws:TagKeys": ["owner"]})
    assert not condition_allows(condition, {})
    assert not condition_allows(condition, {"aws:TagKeys": []})
    # and with a negated operator: some request value outside the list
    negated = {"ForAnyValue:StringNotEquals": {"aws:TagKeys": ["environment", "cost-center"]}}
    assert condition_allows(negated, {"aws:TagKeys": ["environment", "owner"]})
    assert not condition_allows(negated, {"aws:TagKeys": ["environment"]})
    # and two keys in one ForAnyValue operator must both hold
    both = {"ForAnyValue:StringLike": {"aws:TagKeys": "env*", "aws:CalledVia": "athena.*"}}
    assert condition_allows(both, {"aws:TagKeys": ["environment"], "aws:CalledVia": ["athena.amazonaws.com"]})
    assert not condition_allows(both, {"aws:TagKeys": ["environment"], "aws:CalledVia": ["dynamodb.amazonaws.com"]})


def test_for_all_values_needs_every_request_value_to_match_and_is_true_without_the_key() -> None:
    # Given an allow with ForAllValues:StringLike on aws:TagKeys
    condition = {"ForAllValues:StringLike": {"aws:TagKeys": ["env*", "cost-*"]}}
    # When every value matches, one does not, the key is absent
    # Then all must match, and an absent key passes ("also returns true if there are no context keys")
    assert condition_allows(condition, {"aws:TagKeys": ["environment", "cost-center"]})
    assert not condition_allows(condition, {"aws:TagKeys": ["environment", "owner"]})
    assert condition_allows(condition, {})


def test_the_template_bucket_policy_denies_requests_without_tls() -> None:
    # Given the template's TlsOnly deny (Bool aws:SecureTransport: false, a YAML boolean) and an IAM allow
    identity = [policy(statement("Allow", "s3:GetObject", f"{BUCKET}/*"))]
    # When the role reads over plain HTTP, over TLS, and with no transport key
    plain = check(
        "s3:GetObject", f"{BUCKET}/m.csv", identity, MANIFEST_BUCKET_POLICY, context={"aws:SecureTransport": "false"}
    )
    tls = check(
        "s3:GetObject", f"{BUCKET}/m.csv", identity, MANIFEST_BUCKET_POLICY, context={"aws:SecureTransport": "true"}
    )
    unknown = check("s3:GetObject", f"{BUCKET}/m.csv", identity, MANIFEST_BUCKET_POLICY)
    # Then plain HTTP is explicitly denied; TLS is allowed; a missing key does not trigger the deny
    assert not plain.allowed
    assert plain.reason == "with an explicit deny in a resource-based policy"
    assert plain.statement is not None
    assert plain.statement.sid == "TlsOnly"
    assert tls.allowed
    assert unknown.allowed


# --- policy variables and the principal's own keys ---------------------------------------------


def test_policy_variables_are_substituted_in_resources_and_string_and_arn_conditions() -> None:
    # Given policies using ${aws:PrincipalAccount} and ${aws:PrincipalTag/team}, the latter with a default
    identity = [
        policy(
            statement("Allow", "sqs:SendMessage", "arn:aws:sqs:*:*:${aws:PrincipalTag/team, 'shared'}-queue"),
            statement(
                "Allow",
                "sns:Publish",
                "*",
                Condition={"StringEquals": {"aws:ResourceAccount": "${aws:PrincipalAccount}"}},
            ),
        )
    ]
    # When the role sends to its team's queue, to the default queue, publishes in its own account
    # Then the variables take the request's values
    team = {"aws:PrincipalTag/team": "ops"}
    assert check("sqs:SendMessage", f"arn:aws:sqs:{REGION}:{ACCOUNT}:ops-queue", identity, context=team).allowed
    assert not check("sqs:SendMessage", f"arn:aws:sqs:{REGION}:{ACCOUNT}:dev-queue", identity, context=team).allowed
    assert check("sqs:SendMessage", f"arn:aws:sqs:{REGION}:{ACCOUNT}:shared-queue", identity).allowed
    assert check("sns:Publish", SES_TOPIC, identity).allowed  # aws:ResourceAccount is the resource's account
    foreign = f"arn:aws:sns:{REGION}:{OTHER_ACCOUNT}:t"
    assert not check("sns:Publish", foreign, identity, account=OTHER_ACCOUNT).allowed
    # and ${*} is a literal asterisk, not a wildcard
    literal = {"StringLike": {"s3:prefix": "reports/${*}/x"}}
    assert condition_allows(literal, {"s3:prefix": "reports/*/x"})
    assert not condition_allows(literal, {"s3:prefix": "reports/2026/x"})


def test_a_variable_without_a_value_voids_its_statement_and_2008_policies_take_it_literally() -> None:
    # Given a deny whose resource names ${aws:username} (no value for a role session)
    identity = [policy(statement("Allow", "s3:*"), statement("Deny", "s3:*", f"{BUCKET}/${{aws:username}}/*"))]
    # When the session reads under a folder
    # Then the deny statement does not apply
    assert check("s3:GetObject", f"{BUCKET}/alice/x", identity).allowed
    # and in a 2008-10-17 policy ${...} is plain text
    old = [policy(statement("Allow", "s3:GetObject", f"{BUCKET}/${{aws:username}}/*"), version="2008-10-17")]
    assert check("s3:GetObject", f"{BUCKET}/${{aws:username}}/x", old).allowed
    assert not check("s3:GetObject", f"{BUCKET}/alice/x", old, context={"aws:username": "alice"}).allowed


def test_the_principals_own_keys_are_filled_in() -> None:
    # Given a bucket policy for everyone, conditioned on aws:PrincipalArn (the role's ARN, not the session's)
    resource_policy = policy(
        {
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": f"{BUCKET}/*",
            "Condition": {
                "ArnEquals": {"aws:PrincipalArn": ROLE},
                "StringEquals": {"aws:PrincipalAccount": ACCOUNT, "aws:PrincipalType": "AssumedRole"},
                "Bool": {"aws:PrincipalIsAWSService": "false"},
            },
        }
    )
    service_policy = policy(
        {
            "Effect": "Allow",
            "Principal": "*",
            "Action": "sqs:SendMessage",
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:PrincipalServiceName": "sns.amazonaws.com"}},
        }
    )
    # When the role's session, another session, SNS and SES make requests
    # Then the filled-in keys decide
    assert check("s3:GetObject", f"{BUCKET}/m.csv", [], resource_policy).allowed
    assert not check("s3:GetObject", f"{BUCKET}/m.csv", [], resource_policy, principal=OTHER_SESSION).allowed
    assert check("sqs:SendMessage", FEEDBACK_QUEUE, [], service_policy, principal="sns.amazonaws.com").allowed
    assert not check("sqs:SendMessage", FEEDBACK_QUEUE, [], service_policy, principal="ses.amazonaws.com").allowed
    # and a context that already carries a key keeps its own value
    assert not check(
        "s3:GetObject",
        f"{BUCKET}/m.csv",
        [],
        resource_policy,
        context={"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:role/other"},
    ).allowed


# --- malformed policies and bookkeeping --------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        statement("Allow", "s3:GetObject", Condition={"StringEqualz": {"aws:SourceAccount": ACCOUNT}}),
        statement("Allow", "s3:GetObject", Condition={"ForSomeValues:StringEquals": {"aws:TagKeys": "a"}}),
        statement("Permit", "s3:GetObject"),
        {"Effect": "Allow", "Resource": "*"},
    ],
    ids=["unknown-operator", "unknown-set-operator", "bad-effect", "no-action"],
)
def test_a_policy_aws_would_refuse_raises_policy_error(bad: dict[str, Any]) -> None:
    # Given a statement IAM would not accept
    # When it is evaluated
    # Then PolicyError says so rather than deciding on a guess
    with pytest.raises(PolicyError):
        check("s3:GetObject", f"{BUCKET}/m.csv", [policy(bad)])


def test_a_decision_lists_every_statement_that_applied() -> None:
    # Given a role policy and a queue policy that both allow the send
    resource_policy = policy(
        {"Sid": "Role", "Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "sqs:*", "Resource": "*"}
    )
    identity = [policy(statement("Allow", "sqs:ReceiveMessage"), {"Sid": "Send", **statement("Allow", "sqs:Send*")})]
    # When the role sends
    decision = check("sqs:SendMessage", INBOUND_QUEUE, identity, resource_policy)
    # Then the decision names the identity statement and lists both that applied
    assert decision.allowed
    assert [(r.policy_type, r.index, r.sid) for r in decision.matched] == [(IDENTITY, 1, "Send"), (RESOURCE, 0, "Role")]
