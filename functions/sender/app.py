"""Sender: one SendQueue message is one batch of at most 50 recipients; failures per record.

Thin by design: the processor parses the records once (reading every batch's suppression state in
one call), the layer's sender sends each batch, and the handler counts what happened.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.typing import LambdaContext

from optout import wiring
from optout.core.observability import logger, metrics, traced
from optout.notices.send import BatchLeased
from optout.notices.send_queue import SendBatchProcessor, SendBatchRecord

wiring.sender_settings()  # at init: a missing or bad variable fails the cold start, naming it

processor = SendBatchProcessor(prefetch=lambda batches: wiring.sender().prefetch(batches))


def record_handler(record: SendBatchRecord, lambda_context: LambdaContext) -> None:
    batch = record.body
    remaining = lambda_context.get_remaining_time_in_millis()
    try:
        result = wiring.sender().process(
            batch, owner=lambda_context.aws_request_id, remaining_ms=remaining, prefetched=processor.prefetched
        )
    except BatchLeased:
        logger.info("batch leased by another invocation; left to it", extra={"batch": batch.batch})
        raise
    except Exception:
        logger.exception("batch failed; it will be retried", extra={"notice_id": batch.notice_id, "batch": batch.batch})
        raise
    for name in ("sent", "suppressed", "deferred", "unreachable", "failed", "unknown", "duplicates"):
        if getattr(result, name):
            metrics.add_metric(name=f"Recipients_{name}", unit=MetricUnit.Count, value=getattr(result, name))
    logger.info("batch processed", extra={"notice_id": batch.notice_id, "batch": batch.batch, **result.__dict__})


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
@traced
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return dict(
        process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
    )
