"""A data subject's export, and an unsubscribe link for one address: the admin API's side.

``POST /admin/subjects/export`` (``optout subject export``): the subject's suppression state and
consent history, its erasures, and a page of its delivery records (by the hashed key, through the
NoticesTable's by_address index). The answer names the address by its key only: the CLI adds the
address it was given.

``POST /admin/links`` (``optout link``): a signed unsubscribe token for an address and an optional
topic. A required topic is refused (nobody can unsubscribe from it, so the link would fail).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, StringConstraints

from optout.core import page_token
from optout.core.errors import RequiredTopic, UnknownTopic
from optout.core.identity import Channel, Identity
from optout.core.settings import TopicSettings
from optout.notices.store import NoticeStore
from optout.privacy.erasure import ErasureLog
from optout.suppression.admin import Address, report
from optout.suppression.model import SuppressionState
from optout.suppression.store import DynamoSuppressionStore
from optout.unsubscribe.token import KeyRing, issue

DELIVERIES_PAGE = 500  # delivery records an answer holds at most
Topic = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[a-z][a-z0-9_-]{0,31}$")]


class SubjectExportRequest(BaseModel, extra="forbid"):
    channel: Channel
    address: Address
    next_token: Annotated[str, StringConstraints(max_length=4096)] | None = None


class LinkRequest(BaseModel, extra="forbid"):
    channel: Channel
    address: Address
    topic: Topic


@dataclass
class SubjectExport:
    suppressions: DynamoSuppressionStore
    notices: NoticeStore
    pepper: Callable[[], bytes]

    def export(self, request: SubjectExportRequest) -> dict[str, Any]:
        """State, history and erasures, with one page of deliveries and the token of the next."""
        identity = Identity.of(self.pepper(), request.channel, request.address)
        key = identity.key
        start = page_token.decode(request.next_token, ("address_key", "pk", "sk")) if request.next_token else None
        deliveries, last = self.notices.delivery_page(key, start, DELIVERIES_PAGE)
        state = self.suppressions.get(key) or SuppressionState(address_key=key, channel=identity.channel)
        return {
            "subject": {"channel": identity.channel, "address_key": key},
            "suppression": report(state, self.suppressions.history(key)),
            "deliveries": [record.model_dump(mode="json", exclude={"address_key"}) for record in deliveries],
            "erasures": ErasureLog(self.suppressions.table, self.suppressions.client).history(key),
            "next_token": page_token.encode(last),
        }


@dataclass
class LinkIssuer:
    settings: TopicSettings
    pepper: Callable[[], bytes]
    key_ring: Callable[[], KeyRing]

    def issue(self, request: LinkRequest) -> dict[str, Any]:
        topics = self.settings.topics
        found = self.settings.topic(request.topic)
        if found is None:
            raise UnknownTopic(f"unknown topic; configured: {', '.join(t.name for t in topics)}")
        if not found.optional:
            optional = ", ".join(t.name for t in topics if t.optional)
            raise RequiredTopic(
                f"{request.topic} is a required topic: the law requires its notices, so nobody can unsubscribe "
                f"from it and a link would fail; optional topics: {optional}"
            )
        identity = Identity.of(self.pepper(), request.channel, request.address)
        token = issue(self.key_ring(), identity.channel, identity.key, request.topic)
        return {"channel": identity.channel, "address_key": identity.key, "topic": request.topic, "token": token}
