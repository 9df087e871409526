"""The admin use cases behind /admin/notices: create (idempotently), read, list deliveries."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from optout.core.dynamo import iso_lower_bound
from optout.core.errors import InvalidFields, OptoutError
from optout.core.page_token import BadPageToken, decode, encode
from optout.notices.model import TOPIC_OF, BreachAlertVariables, DeliveryRecord, Notice, NoticeRequest
from optout.notices.public import NotPublishable, PublicNotice, PublicNoticeNotFound, PublicNoticeStore, from_notice
from optout.notices.store import NoticeNotFound, NoticeStore

MAX_PAGE = 1000
MAX_LIST_PAGE = 100  # notices a page: one BatchGetItem
LISTED_KEY = ("pk", "sk", "listed", "created_at")  # a key of the by_created index
# Printable ASCII, short: it becomes part of a DynamoDB key (at most 2,048 bytes)
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
# The shape of new_notice_id's ids: nothing else is looked up (a key over 2,048 bytes is an error in DynamoDB)
NOTICE_ID = re.compile(r"^ntc_[0-9A-Za-z_-]{1,64}$")
# Where a page ends: a delivery's key after its prefix, <recipient id>#<channel>
PAGE_START = re.compile(r"^[^#]{1,128}#[a-z]{1,16}$")


def new_notice_id(now: datetime) -> str:
    # Sortable by creation time, unguessable after it.
    return f"ntc_{now.strftime('%Y%m%dT%H%M%S')}_{uuid.uuid4().hex[:12]}"


def request_hash(request: NoticeRequest) -> str:
    fields = request.model_dump(mode="json")
    if not request.publish:  # a request that publishes nothing hashes as it did before publishing existed
        del fields["publish"], fields["until"]
    if fields["variables"].get("publish_if_unreachable") is False:  # likewise for a breach alert
        del fields["variables"]["publish_if_unreachable"]
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _end(published: PublicNotice) -> str:
    return published.until.isoformat() if published.until else "it is withdrawn"


class PublicationConflict(OptoutError):
    code = "publication_conflict"


class NoticeAdmin:
    def __init__(
        self,
        store: NoticeStore,
        dispatch: Callable[[dict[str, Any]], None],
        manifest_bucket: str,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        public: PublicNoticeStore | None = None,
    ) -> None:
        self.store = store
        self.dispatch = dispatch
        self.manifest_bucket = manifest_bucket
        self.now = now
        self.public = public  # where published notices are kept (GET /notices)

    def create(self, request: NoticeRequest, idempotency_key: str | None, actor: str) -> tuple[Notice, bool]:
        """Store the notice and queue its dispatch; returns (notice, created_now).

        Refused with 422, before anything is stored: a manifest outside the stack's manifest bucket
        (the dispatcher may read no other), an Idempotency-Key that cannot be a key, and a notice too
        large for its item (NoticeStore.create).
        """
        problems = []
        if request.manifest.removeprefix("s3://").split("/", 1)[0] != self.manifest_bucket:
            problems.append(("manifest", f"must be in this stack's manifest bucket: s3://{self.manifest_bucket}/..."))
        if idempotency_key is not None and not IDEMPOTENCY_KEY.fullmatch(idempotency_key):
            problems.append(("headers.idempotency-key", "must be 1 to 255 printable ASCII characters, no spaces"))
        now = self.now()
        if request.until is not None and request.until <= now:
            problems.append(("until", "must be in the future: the notice is published from now until then"))
        if problems:
            raise InvalidFields(problems)
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
        if request.publish and not request.dry_run and self.public is not None:
            # Before dispatch, and again on a retried create (publishing keeps the first copy)
            self.public.publish(from_notice(stored, stored.created_at, request.until))
        if created or stored.status == "queued":
            # A retried create whose first dispatch message never left is dispatched now;
            # the dispatcher ignores a second message for a notice already under way.
            self.dispatch({"notice_id": stored.id})
        return stored, created

    def get(self, notice_id: str) -> Notice:
        if not NOTICE_ID.fullmatch(notice_id):
            raise NoticeNotFound("no notice with this id")
        return self.store.get(notice_id)

    def publication(self, notice_id: str) -> PublicNotice | None:
        """When the notice was published, until when, and when withdrawn; None if never published."""
        if self.public is None:
            return None
        try:
            return self.public.get(notice_id)
        except PublicNoticeNotFound:
            return None

    def publish(self, notice_id: str, until: datetime | None) -> PublicNotice:
        """Publish a notice after it was sent (a breach alert's public communication, Art. 34(3)(c),
        once its report shows whom it could not reach); publishing it again keeps the first copy."""
        notice = self.get(notice_id)
        if notice.dry_run:
            raise NotPublishable("a dry run is never published: send the notice itself")
        if self.public is None:
            raise NotPublishable("this stack has no public notices")
        now = self.now()
        if until is not None and until <= now:
            raise InvalidFields([("until", "must be in the future: the notice is published from now until then")])
        published = self.public.publish(from_notice(notice, now, until))
        if published.withdrawn_at is not None:
            raise PublicationConflict(
                f"this notice was withdrawn {published.withdrawn_at.isoformat()}: a withdrawn notice stays"
                " withdrawn (send a new notice to publish again)"
            )
        if until is not None and published.until != until:
            raise PublicationConflict(
                f"this notice is published already, until {_end(published)}: a publication's end is set once"
                " (withdraw it to end it sooner)"
            )
        return published

    def withdraw(self, notice_id: str) -> PublicNotice:
        """Take the notice off the public page (404 if it was never published); again: no change."""
        self.get(notice_id)
        if self.public is None:
            raise PublicNoticeNotFound("this notice was never published")
        return self.public.withdraw(notice_id, self.now())

    def deliveries(self, notice_id: str, limit: int, next_token: str | None) -> tuple[list[DeliveryRecord], str | None]:
        self.get(notice_id)  # 404 for an unknown notice rather than an empty page
        start = None
        if next_token:
            try:
                start = bytes.fromhex(next_token).decode("utf-8")
            except ValueError as exc:
                raise BadPageToken("next_token is not one this API gave out") from exc
            if not PAGE_START.fullmatch(start):  # DynamoDB refuses a start key it could never have given
                raise BadPageToken("next_token is not one this API gave out")
        records, last = self.store.deliveries(notice_id, max(1, min(limit, MAX_PAGE)), start)
        return records, (last.encode().hex() if last else None)

    def list(self, since: datetime | None, limit: int, next_token: str | None) -> tuple[list[Notice], str | None]:
        """Notices created since ``since`` (all if None), newest first, ``limit`` a page."""
        start = decode(next_token, LISTED_KEY) if next_token else None
        if start is not None and (
            start["listed"]["S"] != "notice"
            or (since is not None and start["created_at"]["S"] < iso_lower_bound(since))
        ):  # outside the query's key condition: DynamoDB would refuse it
            raise BadPageToken("next_token is not one this API gave out for this query")
        notices, last = self.store.listed(since, max(1, min(limit, MAX_LIST_PAGE)), start)
        return notices, encode(last)
