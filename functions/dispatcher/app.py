"""Dispatcher: DispatchQueue messages stream a notice's manifest into SendQueue batches.

Thin by design: each record goes to the layer's dispatcher with the time this invocation has left.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from optout import wiring
from optout.core.observability import logger, metrics, traced

wiring.dispatcher_settings()  # at init: a missing or bad variable fails the cold start, naming it

processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord, lambda_context: LambdaContext) -> None:
    try:
        outcome = wiring.dispatcher().handle(json.loads(record.body), lambda_context.get_remaining_time_in_millis)
    except Exception:
        logger.exception("dispatch step failed; the message will be retried", extra={"message_id": record.message_id})
        raise
    logger.info("dispatch step", extra={"outcome": outcome})


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
@traced
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return dict(
        process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
    )
