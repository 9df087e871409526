"""Deliveries AWS services make on their own behalf, authorized as AWS authorizes them.

Three services deliver into this stack's resources, each as its service principal, with
``aws:SourceArn`` and ``aws:SourceAccount`` in the request context (``requests.delivery_checks``):

- **SNS to SQS** (``sns.amazonaws.com``): the queue's policy must let the topic send, and a
  customer-key queue's key policy must let SNS use the key. moto delivers a topic's messages to
  its SQS subscriptions inside this process; ``patch_sns_to_sqs`` puts the check in front of it.
  A denied delivery is dropped: SNS does not retry client-side errors such as a denied queue
  (SNS developer guide, "Amazon SNS message delivery retries": "client-side errors ... are not
  retried"; the message is lost unless the subscription has a dead-letter queue, which ours do not).
- **SES event publishing** (``ses.amazonaws.com``, source: the configuration set) to
  ``SesEventsTopic``, and
- **End User Messaging inbound SMS** (``sms-voice.amazonaws.com``, source: the phone number or
  pool) to ``InboundSmsTopic``: the topic's policy must let the service publish, and a
  customer-key topic's key policy must let it use the key. The local paths that play those
  services (``optout sms simulate --via sns``, ``optout ses simulate``) post to
  ``/_local/deliver``, which checks and then publishes. A denied event is dropped, as SES drops
  events it cannot publish (SES developer guide, "Set up an Amazon SNS event destination": the
  topic policy must allow SES, or SES cannot publish to it) and End User Messaging drops an
  inbound message it cannot publish.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from optout_local.iam.enforce import Usage, Used

_patched: list[bool] = []


def check_delivery(
    principal: str, source_arn: str, target_service: str, target_arn: str, region: str, account: str, usage: Usage
) -> str | None:
    """None if ``principal`` may deliver from ``source_arn`` to ``target_arn``; else AWS's denial message."""
    from optout_local.iam.policy import Request, evaluate
    from optout_local.iam.requests import MotoResources, delivery_checks, denial_message

    resources = MotoResources(region, account)
    for check in delivery_checks(
        principal, source_arn, target_service, target_arn, region=region, account=account, resources=resources
    ):
        policy, is_key = resources.resource_policy(check.resource)
        decision = evaluate(
            Request(check.principal or principal, check.action, check.resource, dict(check.context)),
            [], policy, account, key_policy=is_key,
        )  # fmt: skip
        by = "resource policy" if decision.allowed else ""
        usage.record(Used(principal, "", "", check.action, check.resource, decision.allowed, by, -1), dict)
        if not decision.allowed:
            return denial_message(target_service, principal, check.action, check.resource, decision.reason)
    return None


def patch_sns_to_sqs(region: str, account: str, usage: Usage, active: Callable[[], bool] | None = None) -> None:
    """Check SNS's permission on each SQS subscription's queue (and key) before moto delivers to it.

    ``active``: whether to check now (moto in a test's process checks while its local IAM is in).
    """
    if _patched:
        return
    from moto.sns.models import Subscription

    original = Subscription.publish

    def publish(self: Any, *args: Any, **kwargs: Any) -> None:
        if self.protocol == "sqs" and (active is None or active()):
            denied = check_delivery("sns.amazonaws.com", self.topic.arn, "sqs", self.endpoint, region, account, usage)
            if denied is not None:
                sys.stderr.write(f"optout local: SNS dropped a message for {self.endpoint}: {denied}\n")
                return
        original(self, *args, **kwargs)

    Subscription.publish = publish  # type: ignore[method-assign]
    _patched.append(True)


def deliver(
    principal: str, source_arn: str, topic_arn: str, message: str, region: str, account: str, usage: Usage
) -> dict[str, Any]:
    """Publish ``message`` to ``topic_arn`` as ``principal`` would: if the topic (and its key) let it."""
    from moto.sns.models import sns_backends

    denied = check_delivery(principal, source_arn, "sns", topic_arn, region, account, usage)
    if denied is not None:
        sys.stderr.write(f"optout local: {principal} could not publish to {topic_arn}: {denied}\n")
        return {"delivered": False, "reason": denied}
    message_id = sns_backends[account][region].publish(message, arn=topic_arn)
    return {"delivered": True, "message_id": message_id}


def deliver_from_request(environ: dict[str, Any], region: str, account: str, usage: Usage) -> dict[str, Any]:
    """``POST /_local/deliver`` with ``{"principal", "source_arn", "topic_arn", "message"}``."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    try:
        body = json.loads(environ["wsgi.input"].read(length) or b"{}")
        fields = [str(body[k]) for k in ("principal", "source_arn", "topic_arn", "message")]
    except (ValueError, KeyError, TypeError) as exc:
        reason = f"a delivery needs principal, source_arn, topic_arn and message: {exc}"
        return {"delivered": False, "invalid": True, "reason": reason}
    principal, source_arn, topic_arn, message = fields
    return deliver(principal, source_arn, topic_arn, message, region, account, usage)
