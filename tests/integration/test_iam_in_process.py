"""In-process handlers call AWS with their own function's role, authorized as the local stack authorizes.

The integration tests call handlers in this process on ``mock_aws``; ``in_process_stack`` puts the
local IAM in front of it (``optout_local.iam.in_process``). These tests show that it holds: a
role without a grant is refused in AWS's words, the tests' own calls stay the administrator's,
and no handler call escapes the check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from optout import wiring
from optout.core import clients
from optout.core.identity import Identity
from optout.core.settings import get_settings
from optout.suppression.store import DynamoSuppressionStore
from optout.unsubscribe.token import issue
from optout_local.iam import in_process
from optout_local.iam.enforce import Used
from optout_local.provision import ACCOUNT_ID, Stack
from optout_local.runtime import LambdaContext, in_process_stack, load_handler
from tests.conftest import sample_event
from tests.integration.test_iam_enforcement import READ_ENCRYPTED, UNSUBSCRIBE_GRANT, WITHOUT_PUT, edited

ADDRESS = "denied@example.com"


def one_click(address: str = ADDRESS) -> tuple[str, dict[str, Any]]:
    """The suppression key of ``address`` and a one-click unsubscribe event for its product mail."""
    key = Identity.of(wiring.pepper(), "email", address).key
    return key, sample_event("unsubscribe_one_click", issue(wiring.key_ring(), "email", key, "product"))


def used_by(stack: Stack, function: str, since: dict[Used, int] | None = None) -> list[Used]:
    """What the function's role (as expanded from this stack's template) was recorded using; with
    ``since`` (the record's counts then), only what it used after (the record is the session's:
    earlier tests' refusals are in it too)."""
    role = stack.roles[function]
    seen = in_process.usage().seen
    return [
        u
        for u, count in seen.items()
        if (u.role, u.template) == (role.name, role.template) and count > (since or {}).get(u, 0)
    ]


def test_an_in_process_handler_whose_role_lacks_an_action_is_refused(tmp_path: Path) -> None:
    # Given a copy of the template whose Unsubscribe role lost dynamodb:PutItem on the suppression table
    template = edited(tmp_path, UNSUBSCRIBE_GRANT, WITHOUT_PUT)
    with in_process_stack(template=template) as stack:
        handler = load_handler(stack.function("Unsubscribe"))
        key, event = one_click()
        # When a recipient's one-click unsubscribe reaches the handler
        with pytest.raises(ClientError) as caught:
            handler(event, LambdaContext(function_name="optout-local-UnsubscribeFunction"))
        # Then its write is refused with DynamoDB's AccessDeniedException, in AWS's words, naming its role session
        error = caught.value.response["Error"]
        assert error["Code"] == "AccessDeniedException"
        assert f"User: arn:aws:sts::{ACCOUNT_ID}:assumed-role/optout-local-UnsubscribeFunctionRole/" in error["Message"]
        assert "is not authorized to perform: dynamodb:PutItem on resource: " in error["Message"]
        assert "because no identity-based policy allows the dynamodb:PutItem action" in error["Message"]
        # And nothing was stored (read back as the administrator, whom no role limits)
        store = DynamoSuppressionStore(get_settings().suppression_table)
        assert store.get(key) is None
        # And the refusal is recorded for `optout iam report`, as the local stack records it
        refused = [u for u in used_by(stack, "UnsubscribeFunction") if not u.allowed]
        assert [(u.action, u.resource) for u in refused] == [
            ("dynamodb:PutItem", stack.resolver.attrs[("SuppressionTable", "Arn")])
        ]
        assert not in_process.installed().stray


def test_the_same_handler_on_the_template_as_it_lands_opts_out(aws: Stack) -> None:
    # Given the template as it lands
    handler = load_handler(aws.function("Unsubscribe"))
    key, event = one_click()
    since = dict(in_process.usage().seen)
    # When the same click arrives, Then it is stored: the role's grants suffice
    assert handler(event, LambdaContext())["statusCode"] == 200
    state = DynamoSuppressionStore(get_settings().suppression_table).get(key)
    assert state is not None and "product" in state.topics
    # And every call it made was authorized as its role and allowed
    used = {(u.action, u.allowed) for u in used_by(aws, "UnsubscribeFunction", since)}
    assert ("dynamodb:PutItem", True) in used
    assert all(allowed for _, allowed in used)


def test_an_event_source_without_kms_decrypt_on_its_customer_key_queue_reads_nothing(tmp_path: Path) -> None:
    # Given a copy of the template whose SmsInbound role cannot decrypt with MessagesKey, and a message queued
    without = READ_ENCRYPTED.replace("Action: kms:Decrypt", "Action: kms:DescribeKey")
    with in_process_stack(template=edited(tmp_path, READ_ENCRYPTED, without)) as stack:
        boto3.client("sqs").send_message(QueueUrl=stack.ref("InboundSmsQueue"), MessageBody="{}")
        # When its event source mapping polls, with the function's role
        with pytest.raises(ClientError) as caught:
            in_process.installed().poll("InboundSmsQueue")
        # Then SQS answers as it does when the key refuses, and the message stays for a consumer that may read it
        error = caught.value.response["Error"]
        assert error["Code"] == "KMS.AccessDeniedException" and "kms:Decrypt" in error["Message"]
        attributes = boto3.client("sqs").get_queue_attributes(
            QueueUrl=stack.ref("InboundSmsQueue"), AttributeNames=["ApproximateNumberOfMessages"]
        )
        assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "1"


def test_a_handler_signs_with_its_role_and_the_test_as_the_administrator(aws: Stack) -> None:
    # Given the layer's STS client (GetCallerIdentity needs no permission)
    sts = clients.client("sts")
    # When it asks who it is inside a Sender invocation, and outside any
    with in_process.installed().running("SenderFunction"):
        inside = sts.get_caller_identity()["Arn"]
    outside = sts.get_caller_identity()["Arn"]
    # Then inside it is the Sender's role session, as Lambda names it, and outside the account itself
    session = aws.function("Sender").name
    assert inside == f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/optout-local-SenderFunctionRole/{session}"
    assert "assumed-role" not in outside
    # And a resource outside the Sender's grants is refused to the Sender but not to the administrator
    table = aws.ref("SuppressionTable")
    item = {"pk": {"S": "probe"}, "sk": {"S": "state"}}
    with in_process.installed().running("SenderFunction"), pytest.raises(ClientError) as caught:
        clients.dynamodb().put_item(TableName=table, Item=item)
    assert caught.value.response["Error"]["Code"] == "AccessDeniedException"
    clients.dynamodb().put_item(TableName=table, Item=item)


def test_a_call_from_a_client_built_outside_the_layer_is_refused_during_an_invocation(aws: Stack) -> None:
    # Given a client the test built itself (administrator's keys), used while a handler runs
    dynamodb = boto3.client("dynamodb")
    iam = in_process.installed()
    # When it calls, Then the call is refused and kept: no role would have authorized it
    with iam.running("UnsubscribeFunction"), pytest.raises(in_process.StrayCall):
        dynamodb.describe_table(TableName=aws.ref("SuppressionTable"))
    assert len(iam.stray) == 1 and "UnsubscribeFunction" in iam.stray[0]
    iam.stray.clear()  # the fixture fails a test that leaves one


def test_a_handler_called_outside_an_in_process_stack_is_refused() -> None:
    # Given a handler loaded while an in-process stack ran
    with in_process_stack() as stack:
        handler = load_handler(stack.function("Unsubscribe"))
    # When it is called after the stack is gone, Then it refuses to run unauthorized
    with pytest.raises(RuntimeError, match="nothing would authorize its calls"):
        handler(sample_event("unsubscribe_get"), LambdaContext())
