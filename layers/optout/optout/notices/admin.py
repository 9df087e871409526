"""The admin use cases behind /admin/notices: create (idempotently), read, list deliveries."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from optout.errors import OptoutError
from optout.notices.model import TOPIC_OF, BreachAlertVariables, DeliveryRecord, Notice, NoticeRequest
from optout.notices.store import NoticeStore

MAX_PAGE = 1000


class BadPageToken(OptoutError):
    code = "bad_page_token"
    status = 400


def new_notice_id(now: datetime) -> str:
    # Sortable by creation time, unguessable after it.
    return f"ntc_{now.strftime('%Y%m%dT%H%M%S')}_{uuid.uuid4().hex[:12]}"


def request_hash(request: NoticeRequest) -> str:
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class NoticeAdmin:
    def __init__(
        self,
        store: NoticeStore,
        dispatch: Callable[[dict[str, Any]], None],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.dispatch = dispatch
        self.now = now

    def create(self, request: NoticeRequest, idempotency_key: str | None, actor: str) -> tuple[Notice, bool]:
        """Store the notice and queue its dispatch; returns (notice, created_now)."""
        now = self.now()
        spec = request.channel_spec()
        variables = request.variables
        notice = Notice(
            id=new_notice_id(now),
            kind=request.kind,
            topic=TOPIC_OF[request.kind],
            channels=spec.channels,
            mode=spec.mode,
            variables=variables.model_dump(mode="json"),
            manifest=request.manifest,
            dry_run=request.dry_run,
            created_by=actor,
            created_at=now,
            updated_at=now,
            discovered_at=variables.discovered_at if isinstance(variables, BreachAlertVariables) else None,
        )
        stored = self.store.create(notice, idempotency_key, request_hash(request))
        created = stored.id == notice.id
        if created or stored.status == "queued":
            # A retried create whose first dispatch message never left is dispatched now;
            # the dispatcher ignores a second message for a notice already under way.
            self.dispatch({"notice_id": stored.id})
        return stored, created

    def get(self, notice_id: str) -> Notice:
        return self.store.get(notice_id)

    def deliveries(self, notice_id: str, limit: int, next_token: str | None) -> tuple[list[DeliveryRecord], str | None]:
        self.store.get(notice_id)  # 404 for an unknown notice rather than an empty page
        start = None
        if next_token:
            try:
                start = bytes.fromhex(next_token).decode("utf-8")
            except ValueError as exc:
                raise BadPageToken("next_token is not one this API gave out") from exc
        records, last = self.store.deliveries(notice_id, max(1, min(limit, MAX_PAGE)), start)
        return records, (last.encode().hex() if last else None)
