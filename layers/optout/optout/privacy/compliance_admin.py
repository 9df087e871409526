"""The admin API's side of ``optout compliance report``: opt-outs a page at a time, each joined with
the deliveries to its address (the NoticesTable's by_address index) and checked (optout.privacy.compliance).

A page is one Scan of the SuppressionTable's state items changed since the report's start or
suppressing anything now (an address has one state item, so it is listed once), then per such
address its deliveries (one Query of the index, paged) and, when there is anything to report, its
consent events (one Query). A page stops early, and says where
to go on from, when the invocation's time runs short, so any table can be reported on.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from optout.core.dynamo import from_item, to_item
from optout.core.page_token import decode, encode
from optout.notices.store import NoticeNotFound, NoticeStore
from optout.privacy.compliance import SENT_DECISIONS, OptOut, decided, entries_for
from optout.suppression.store import STATE_SK, DynamoSuppressionStore

SCAN_LIMIT = 1000  # items read by one Scan call of a page
RESERVE_MS = 5_000  # what a page leaves of the invocation for its answer
KEY = ("pk", "sk")  # the SuppressionTable's


class OptOutLedger:
    def __init__(self, suppressions: DynamoSuppressionStore, notices: NoticeStore, optional_topics: tuple[str, ...]):
        self.suppressions = suppressions
        self.notices = notices
        self.optional_topics = optional_topics

    def page(self, since: datetime, next_token: str | None, remaining_ms: Callable[[], int]) -> dict[str, Any]:
        """The opt-outs in force since ``since`` (and older ones a send since then went against) of the
        addresses on one page, and the next token."""
        start = decode(next_token, KEY) if next_token else None
        states, last = self.suppressions.reportable_since(since, SCAN_LIMIT, start)
        topics: dict[str, str | None] = {}
        items: list[OptOut] = []
        for index, state in enumerate(states):
            if index and remaining_ms() < RESERVE_MS:
                # go on after the last address done: the Scan resumes in the same order
                last = to_item({"pk": states[index - 1].address_key, "sk": STATE_SK})
                break
            deliveries = [_delivery(d) for d in self.notices.deliveries_to(state.address_key, page=1000)]
            changed = state.updated_at is not None and state.updated_at >= since
            if not changed and not any(d["decision"] in SENT_DECISIONS and decided(d) >= since for d in deliveries):
                continue  # an older opt-out, and nothing sent since: nothing to report of it
            items += entries_for(
                state.address_key,
                state.channel,
                self.suppressions.history(state.address_key),
                deliveries,
                lambda notice_id: self._topic(notice_id, topics),
                self.optional_topics,
                since,
                erased=state.erased_at is not None,
            )
        return {
            "items": [item.model_dump(mode="json") for item in items],
            "addresses": len(states),
            "next_token": encode(last),
        }

    def _topic(self, notice_id: str, cache: dict[str, str | None]) -> str | None:
        if notice_id not in cache:
            try:
                notice = self.notices.get(notice_id)
                cache[notice_id] = None if notice.dry_run else notice.topic
            except NoticeNotFound:
                cache[notice_id] = None
        return cache[notice_id]


def _delivery(item: dict[str, Any]) -> dict[str, Any]:
    """What optout.privacy.compliance reads of a delivery item, as the by_address index projects it."""
    plain = from_item(item)
    return {
        "notice_id": plain["pk"].removeprefix("notice#"),
        "decision": plain["decision"],
        "at": datetime.fromisoformat(plain["at"]),
        "decided_at": datetime.fromisoformat(plain["decided_at"]) if "decided_at" in plain else None,
    }
