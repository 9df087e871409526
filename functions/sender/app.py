"""Sender: one SendQueue message is one batch of at most 50 recipients; failures per record.

Thin by design: parse the batch, hand it to the layer's sender, count what happened.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from optout import wiring
from optout.notices.send import BatchLeased, batch_from_message
from optout.observability import logger, metrics, traced

wiring.sender_settings()  # at init: a missing or bad variable fails the cold start, naming it

processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord, lambda_context: LambdaContext) -> None:
    batch = batch_from_message(record.body)
    remaining = lambda_context.get_remaining_time_in_millis()
    try:
        result = wiring.sender().process(batch, owner=lambda_context.aws_request_id, remaining_ms=remaining)
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
    batches = []
    for record in event.get("Records", []):
        try:
            batches.append(batch_from_message(record["body"]))
        except Exception:  # noqa: S112 - a bad record fails on its own in record_handler  # nosec B112
            continue
    try:
        try:
            wiring.sender().prefetch(batches)  # one suppression read for the whole invocation
        except Exception:  # e.g. one batch of a deleted notice: each batch then reads (and fails) alone
            logger.warning("prefetch failed; batches read their own suppression states", exc_info=True)
        response = process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
    finally:
        wiring.sender().forget_prefetched()
    return dict(response)
