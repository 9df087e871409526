"""SmsInbound: End User Messaging two-way SMS from InboundSmsQueue (SNS envelope or raw).

Thin by design: each SQS record goes to the optout layer; failures are reported per record.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from optout import wiring
from optout.core.observability import logger, metrics, traced

wiring.sms_inbound_settings()  # at init: a missing or bad variable fails the cold start, naming it

processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> None:
    sent_at = datetime.fromtimestamp(int(record.attributes.sent_timestamp) / 1000, UTC)
    result = wiring.sms_inbound().receive_queued(record.body, sent_at)
    if result is None:
        metrics.add_metric(name="InboundSmsIgnored", unit=MetricUnit.Count, value=1)
        logger.warning("unusable inbound SMS ignored", extra={"message_id": record.message_id})
        return
    metrics.add_metric(name="InboundSms", unit=MetricUnit.Count, value=1)
    logger.info(
        "inbound SMS",
        extra={
            "intent": result.intent,
            "changed": result.changed,
            "duplicate": result.duplicate,
            "key": result.address_key[:12],
        },
    )


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
@traced
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return dict(
        process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
    )
