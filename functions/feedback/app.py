"""Feedback: SES bounce and complaint events from FeedbackQueue (SNS envelope or raw).

Thin by design: each record goes to the layer; an unparseable one is reported on its own and
reaches the DLQ after the queue's maxReceiveCount, without holding back the others.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from optout import wiring
from optout.core.observability import logger, metrics, traced
from optout.feedback.ses_events import parse

wiring.feedback_settings()  # at init: a missing or bad variable fails the cold start, naming it

processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> None:
    try:
        event = parse(record.body)
    except Exception:
        logger.warning("unparseable SES feedback; it will go to the DLQ", extra={"message_id": record.message_id})
        raise
    outcome = wiring.feedback().handle(event)
    metrics.add_metric(name=f"Feedback_{outcome.kind}", unit=MetricUnit.Count, value=1)
    logger.info(
        "SES feedback",
        extra={
            "type": event.event_type,
            "changed": outcome.changed,
            "duplicates": outcome.duplicates,
            "ignored": outcome.ignored,
        },
    )


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
@traced
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return dict(
        process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
    )
