"""The SendQueue's records as the sender takes them: each body parsed once, every batch's
suppression state read in one call before the first batch is sent.

Powertools' ``BatchProcessor(model=...)`` parses a record only when its turn comes, but the one
suppression read per 100 recipients (DESIGN §7) needs every batch of the invocation before the
first is sent. This processor parses them all up front, reads their states through ``prefetch``,
and hands each record handler the record it already parsed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from pydantic import BaseModel, ConfigDict, Json, ValidationError

from optout.core.observability import logger
from optout.notices.model import SendBatch
from optout.notices.send import Prefetched


class SendBatchRecord(BaseModel):
    """One SQS record of the SendQueue, its body a SendBatch (a model of our own: Powertools'
    parser models package builds every event model it knows at import, a cold-start cost)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    messageId: str  # noqa: N815 - SQS's own field name
    body: Json[SendBatch]


class SendBatchProcessor(BatchProcessor):
    """BatchProcessor(model=SendBatchRecord) that parses every record before the first is handled."""

    def __init__(self, prefetch: Callable[[Sequence[SendBatch]], Prefetched]) -> None:
        # typed as Powertools' own record models; at run time it takes any pydantic model
        super().__init__(event_type=EventType.SQS, model=SendBatchRecord)  # type: ignore[arg-type]
        self._prefetch = prefetch
        self._parsed: dict[str, SendBatchRecord] = {}
        self.prefetched: Prefetched = {}

    def _prepare(self) -> None:
        super()._prepare()  # type: ignore[no-untyped-call]
        self._parsed = {}
        for record in self.records:
            try:
                parsed = SendBatchRecord.model_validate(record)
            except ValidationError:
                continue  # the processor fails it on its own turn, as a poison pill
            self._parsed[parsed.messageId] = parsed
        try:
            self.prefetched = self._prefetch([r.body for r in self._parsed.values()])
        except Exception:  # e.g. one batch of a deleted notice: each batch then reads (and fails) alone
            logger.warning("prefetch failed; batches read their own suppression states", exc_info=True)
            self.prefetched = {}

    def _clean(self) -> None:
        self._parsed, self.prefetched = {}, {}  # the states belong to this invocation only
        super()._clean()  # type: ignore[no-untyped-call]

    def _to_batch_type(self, record: dict[str, Any], event_type: EventType, model: Any = None) -> Any:
        parsed = self._parsed.get(str(record.get("messageId"))) if model is not None else None
        return parsed if parsed is not None else super()._to_batch_type(record, event_type, model)
