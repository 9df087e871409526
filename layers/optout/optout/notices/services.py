"""Wire the notice use cases to AWS: SQS queues, S3, SES, stores. Built lazily, once per instance.

Each function imports only its own use case, so the admin API's cold start does not load the
sender's renderer (Jinja) or the dispatcher.
"""

from __future__ import annotations

import json
from functools import cache
from typing import TYPE_CHECKING, Any

from optout import clients, secret_store
from optout.notices.admin import NoticeAdmin
from optout.notices.store import NoticeStore
from optout.settings import get_settings
from optout.suppression_store import DynamoSuppressionStore

if TYPE_CHECKING:
    from optout.notices.dispatch import Dispatcher
    from optout.notices.send import Sender


def _body(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


def send_message(queue_url: str, message: dict[str, Any], delay: int = 0) -> None:
    clients.client("sqs").send_message(
        QueueUrl=queue_url, MessageBody=_body(message), DelaySeconds=max(0, min(900, delay))
    )


def send_message_batch(queue_url: str, messages: list[dict[str, Any]]) -> None:
    """SendMessageBatch, 10 a call; entries SQS reports as failed are sent again, then it raises."""
    sqs = clients.client("sqs")
    for start in range(0, len(messages), 10):
        entries = [{"Id": str(i), "MessageBody": _body(m)} for i, m in enumerate(messages[start : start + 10])]
        for _ in range(5):
            failed = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries).get("Failed", [])
            if not failed:
                break
            ids = {f["Id"] for f in failed}
            entries = [e for e in entries if e["Id"] in ids]
        else:
            raise RuntimeError(f"SQS kept refusing {len(entries)} send batches")


@cache
def notice_store() -> NoticeStore:
    return NoticeStore(get_settings().notices_table)


@cache
def admin() -> NoticeAdmin:
    settings = get_settings()
    return NoticeAdmin(notice_store(), lambda m: send_message(settings.dispatch_queue_url, m))


@cache
def dispatcher() -> Dispatcher:
    from optout.notices.dispatch import Dispatcher

    settings = get_settings()
    return Dispatcher(
        settings,
        notice_store(),
        DynamoSuppressionStore(settings.suppression_table),
        s3=lambda: clients.client("s3"),
        send_batches=lambda ms: send_message_batch(settings.send_queue_url, ms),
        requeue=lambda m, delay: send_message(settings.dispatch_queue_url, m, delay),
        pepper=secret_store.pepper,
    )


@cache
def sender() -> Sender:
    from optout.channels.email import SesEmail
    from optout.channels.sms import sms_channel
    from optout.notices.send import Sender

    settings = get_settings()
    email = cache(
        lambda: SesEmail(clients.client("sesv2"), settings.sender_address, settings.ses_configuration_set or None)
    )
    sms = cache(lambda: sms_channel(settings.sms_provider, clients.client, settings))
    return Sender(
        settings,
        notice_store(),
        DynamoSuppressionStore(settings.suppression_table),
        pepper=secret_store.pepper,
        key_ring=secret_store.key_ring,
        email=email,
        sms=sms,
        enqueue=lambda m, delay: send_message(settings.send_queue_url, m, delay),
    )


def reset() -> None:
    for built in (notice_store, admin, dispatcher, sender):
        built.cache_clear()
