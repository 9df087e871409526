"""Public notices: what ``GET /notices`` and ``GET /notices.json`` show, and where it is kept.

A notice published (``publish: true``) is copied, as a ``PublicNotice``, into one well-known
partition of the NoticesTable (``pk = public#notices``, ``sk = <notice id>``), so the public page
is one Query, never a Scan. It is shown from ``published_at`` until ``until`` (if set) or until it
is withdrawn (``withdrawn_at``); the item stays, so the notice's report can say when it was
published and withdrawn.

Only the notices a privacy policy promises to post publicly are published: a policy change, a
change of control, and a breach alert's public communication (GDPR Art. 34(3)(c)). What is shown
is the notice's own text as the admin wrote it; nothing about any recipient.

Published when created with ``publish: true`` (``NoticeAdmin.create``); served by the
Unsubscribe function (``GET /notices``, ``GET /notices.json``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel

from optout.core.dynamo import DynamoTable, from_item, pages, to_item
from optout.core.errors import OptoutError
from optout.notices.model import PUBLISHABLE, Kind, Notice
from optout.web.pages import HtmlPage, render

PARTITION = "public#notices"


class NotPublishable(OptoutError):
    code = "not_publishable"


class PublicNoticeNotFound(OptoutError):
    code = "not_found"


class PublicNotice(BaseModel, frozen=True):
    """One published notice as the public sees it; versioned, as it outlives a deploy."""

    v: Literal[1] = 1
    notice_id: str
    kind: Kind
    summary: str
    url: str | None = None
    effective_date: str | None = None
    new_controller: str | None = None
    # A breach alert's public communication (Art. 34(3)(c)): what Art. 34(2) asks of the notice
    nature: str | None = None
    likely_consequences: str | None = None
    measures_taken: str | None = None
    contact: str | None = None
    published_at: datetime
    until: datetime | None = None
    withdrawn_at: datetime | None = None

    def visible(self, now: datetime) -> bool:
        return (
            self.published_at <= now
            and (self.until is None or now < self.until)
            and (self.withdrawn_at is None or now < self.withdrawn_at)
        )

    def public(self) -> dict[str, Any]:
        """The JSON ``/notices.json`` gives for it: no empty fields, times in ISO 8601."""
        return self.model_dump(mode="json", exclude_none=True, exclude={"v"})


def from_notice(notice: Notice, published_at: datetime, until: datetime | None = None) -> PublicNotice:
    """The public copy of a notice, or NotPublishable for a kind that is not posted publicly."""
    if notice.kind not in PUBLISHABLE:
        raise NotPublishable(f"a {notice.kind} notice is not published; publish one of: {', '.join(PUBLISHABLE)}")
    if until is not None and until <= published_at:
        raise NotPublishable("until must be after the time of publication")
    v: Mapping[str, Any] = notice.variables
    common: dict[str, Any] = {"notice_id": notice.id, "kind": notice.kind, "published_at": published_at, "until": until}
    if notice.kind == "policy_change":
        return PublicNotice(
            **common, summary=v["summary"], url=str(v["policy_url"]), effective_date=str(v["effective_date"])
        )
    if notice.kind == "change_of_control":
        return PublicNotice(
            **common,
            summary=v["summary"],
            url=str(v["choices_url"]),
            effective_date=str(v["effective_date"]),
            new_controller=v["new_controller"],
        )
    return PublicNotice(
        **common,
        summary=v["nature"],
        nature=v["nature"],
        likely_consequences=v["likely_consequences"],
        measures_taken=v["measures_taken"],
        contact=v["contact"],
    )


class PublicNoticeStore(DynamoTable):
    def publish(self, notice: PublicNotice) -> PublicNotice:
        """Store the public copy once: publishing the same notice again keeps the first copy."""
        item = to_item({"pk": PARTITION, "sk": notice.notice_id, "doc": notice.model_dump_json()})
        try:
            self.client.put_item(TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(pk)")
        except self.client.exceptions.ConditionalCheckFailedException:
            return self.get(notice.notice_id)
        return notice

    def get(self, notice_id: str) -> PublicNotice:
        key = to_item({"pk": PARTITION, "sk": notice_id})
        item = self.client.get_item(TableName=self.table, Key=key, ConsistentRead=True).get("Item")
        if item is None:
            raise PublicNoticeNotFound("this notice was never published")
        return PublicNotice.model_validate_json(from_item(item)["doc"])

    def withdraw(self, notice_id: str, now: datetime | None = None) -> PublicNotice:
        """Take a published notice off the public page; withdrawing it again changes nothing."""
        current = self.get(notice_id)
        if current.withdrawn_at is not None:
            return current
        withdrawn = current.model_copy(update={"withdrawn_at": now or datetime.now(UTC)})
        try:
            self.client.put_item(
                TableName=self.table,
                Item=to_item({"pk": PARTITION, "sk": notice_id, "doc": withdrawn.model_dump_json()}),
                ConditionExpression="#doc = :read",  # nothing changed it since it was read
                ExpressionAttributeNames={"#doc": "doc"},
                ExpressionAttributeValues=to_item({":read": current.model_dump_json()}),
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return self.withdraw(notice_id, now)  # changed meanwhile: read it again
        return withdrawn

    def listed(self) -> Iterator[PublicNotice]:
        """Every notice ever published, withdrawn or not, in one Query of the well-known partition."""
        for page in pages(
            self.client,
            "query",
            TableName=self.table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues=to_item({":pk": PARTITION}),
        ):
            for item in page.get("Items", []):
                yield PublicNotice.model_validate_json(from_item(item)["doc"])

    def current(self, now: datetime | None = None) -> list[PublicNotice]:
        """What the public page shows now, newest first."""
        moment = now or datetime.now(UTC)
        return sorted((n for n in self.listed() if n.visible(moment)), key=lambda n: n.published_at, reverse=True)


def notices_page(notices: list[PublicNotice], language: str, brand: str, max_age: int = 300) -> HtmlPage:
    """GET /notices: the page a website may frame as its banner, cacheable by browsers and CDNs.

    The strict policy of every page, but embeddable (``frame-ancestors *``: the notices are public),
    and varying by language, which a cache must keep apart.
    """
    page = render("notices.html", language, brand, notices=notices)
    headers = {k: v for k, v in page.headers.items() if k != "X-Frame-Options"}
    headers["Content-Security-Policy"] = headers["Content-Security-Policy"].replace(
        "frame-ancestors 'none'", "frame-ancestors *"
    )
    headers["Cache-Control"] = f"public, max-age={max_age}"
    headers["Vary"] = "Accept-Language"
    return HtmlPage(status=200, body=page.body, headers=headers)


def notices_json(notices: list[PublicNotice], max_age: int = 300) -> tuple[dict[str, Any], dict[str, str]]:
    """GET /notices.json: the same notices for a website's own banner script (any origin may read it)."""
    body = {"notices": [n.public() for n in notices]}
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Cache-Control": f"public, max-age={max_age}",
        "Access-Control-Allow-Origin": "*",
        "X-Content-Type-Options": "nosniff",
    }
    return body, headers
