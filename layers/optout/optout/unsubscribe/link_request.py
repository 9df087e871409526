"""The "email me a new link" form: a fresh preference link for anyone who types their address, one answer for all.

``POST /preferences`` with the field ``email`` answers the same page, with the same status,
whatever the address: known or not, blocked or not, over its limit or not. So the page tells
nobody whether an address is ours. Behind that answer a link is mailed only when

- the address is well formed (a malformed one gets the form back with a 400: that says nothing
  about any address);
- the caller's IP and then the address are within their limits for the window (conditional
  UpdateItems on counters in the SuppressionTable, cleared by its TTL): the page can neither be
  used to flood a mailbox nor be driven from one machine through many addresses;
- the address is not blocked on email (a hard bounce or a complaint): mailing it again would
  bounce, or reach someone who reported our mail as unwanted.

The link is a preference link as ``optout link`` builds one: a token for the address's key,
on a required topic, so the page it opens offers every optional choice and no one-click button
for a topic the person never picked. Neither the address nor the IP is stored or logged: the
counters are keyed by the address key and by a peppered hash of the IP.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from functools import cache
from typing import Literal, Protocol
from urllib.parse import quote

from optout.core.deadline import within
from optout.core.dynamo import DynamoTable, to_item
from optout.core.errors import InvalidAddress
from optout.core.identity import address_key, normalise_email
from optout.core.settings import UnsubscribeSettings
from optout.suppression.store import SuppressionStore
from optout.unsubscribe.token import KeyRing, issue
from optout.web.forms import first, parse_form
from optout.web.pages import HtmlPage, messages, render

EMAIL_FIELD = "email"
RATE_PREFIX = "rate#"
Outcome = Literal["sent", "invalid", "ip_limited", "address_limited", "blocked", "failed", "unknown"]
ANSWER_RESERVE = 1.0  # seconds of the invocation kept for the answer after the send is given up
log = logging.getLogger(__name__)


_GMAIL = ("gmail.com", "googlemail.com")


def mailbox(address: str) -> str:
    """The inbox a normalised address reaches, as far as its form tells: the ``+tag`` dropped, and
    for Gmail the dots too (Gmail ignores both). Only for rate limits: never a suppression key."""
    local, _, domain = address.rpartition("@")
    local = local.split("+", 1)[0] or local
    if domain in _GMAIL:
        local, domain = local.replace(".", "") or local, "gmail.com"
    return f"{local}@{domain}"


class Mailer(Protocol):
    def send(self, to: str, raw_message: bytes) -> str: ...


class RateLimits(Protocol):
    def take(self, counter: str, limit: int, window_seconds: int, now: datetime) -> bool:
        """Count one use of ``counter`` in the window holding ``now``; False (and no count) at the limit."""
        ...


class DynamoRateLimits(DynamoTable):
    """One item per counter and window: ``pk = rate#<counter>``, ``sk = window#<start>``.

    One conditional UpdateItem counts and checks at once, so concurrent requests can never pass
    the limit together. ``expires_at`` lets the table's TTL delete the item after its window.
    """

    def take(self, counter: str, limit: int, window_seconds: int, now: datetime) -> bool:
        start = int(now.timestamp()) // window_seconds * window_seconds
        try:
            self.client.update_item(
                TableName=self.table,
                Key=to_item({"pk": RATE_PREFIX + counter, "sk": f"window#{start}"}),
                UpdateExpression="ADD #n :one SET expires_at = :expires",
                ConditionExpression="attribute_not_exists(#n) OR #n < :limit",
                ExpressionAttributeNames={"#n": "n"},
                ExpressionAttributeValues=to_item(
                    {":one": 1, ":limit": limit, ":expires": start + window_seconds + 60}
                ),
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True


def ip_counter(pepper: bytes, source_ip: str) -> str:
    """The IP's counter: a peppered hash, never the IP. An IPv6 caller counts by its /64, which one
    subscriber usually holds whole; an unreadable IP counts under one shared name."""
    try:
        address = ipaddress.ip_address(source_ip.strip())
        network = str(ipaddress.ip_network(f"{address}/64", strict=False)) if address.version == 6 else str(address)
    except ValueError:
        network = "unknown"
    return "ip#" + hmac.new(pepper, f"ip:{network}".encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class LinkRequest:
    body: bytes
    content_type: str | None
    source_ip: str
    language: str
    seconds_left: float | None = None  # what is left of the invocation as it starts (None: no limit)


@dataclass(frozen=True)
class LinkRequestResult:
    page: HtmlPage
    outcome: Outcome
    address_key: str | None = None


@cache
def _senders() -> ThreadPoolExecutor:
    """The threads link mails are sent on: the provider client waits up to 12 s (connect, then
    read), and after the rate-limit writes the function's Timeout may be shorter than that."""
    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="link-mail")


class LinkRequests:
    def __init__(
        self,
        settings: UnsubscribeSettings,
        store: SuppressionStore,
        limits: RateLimits,
        pepper: Callable[[], bytes],
        key_ring: Callable[[], KeyRing],
        mailer: Callable[[], Mailer],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.store = store
        self.limits = limits
        self.pepper = pepper
        self.key_ring = key_ring
        self.mailer = mailer
        self.now = now

    def form(self, language: str, status: int = 200, problem: str | None = None) -> HtmlPage:
        """The page that asks for an address (GET /preferences, and a malformed POST)."""
        return render("request_link.html", language, self.settings.brand_name, status=status, problem=problem)

    def answer(self, language: str) -> HtmlPage:
        """What every well-formed request gets, whatever happened behind it."""
        days = self.settings.token_ttl_days
        return render("request_link.html", language, self.settings.brand_name, sent=True, days=days)

    def request(self, request: LinkRequest) -> LinkRequestResult:
        """Mail a fresh link if the limits and the address allow; the page is the same either way.

        A body too large, of the wrong type or malformed raises (PayloadTooLarge, UnsupportedMediaType,
        BadForm); a missing or malformed address gets the form again with a 400, and nothing counts.
        """
        form = parse_form(request.body, request.content_type, self.settings.max_form_bytes)
        raw = first(form, EMAIL_FIELD)
        if raw is None or not raw.strip():
            return LinkRequestResult(self.form(request.language, 400, "problem_missing"), "invalid")
        try:
            address = normalise_email(raw)
        except InvalidAddress:
            return LinkRequestResult(self.form(request.language, 400, "problem_invalid"), "invalid")
        key = address_key(self.pepper(), "email", address)
        deadline = None if request.seconds_left is None else time.monotonic() + request.seconds_left - ANSWER_RESERVE
        outcome = self._deliver(address, key, request, deadline)
        return LinkRequestResult(self.answer(request.language), outcome, key)

    def _deliver(self, address: str, key: str, request: LinkRequest, deadline: float | None) -> Outcome:
        settings, now = self.settings, self.now()
        window = settings.link_request_window_seconds
        if not self.limits.take(
            ip_counter(self.pepper(), request.source_ip), settings.link_requests_per_ip, window, now
        ):
            return "ip_limited"
        if not self.limits.take(f"email#{key}", settings.link_requests_per_address, window, now):
            return "address_limited"
        # The same limit per mailbox: a+1@, a+2@ (and Gmail's dotted forms) are one inbox to flood
        box = address_key(self.pepper(), "email", mailbox(address))
        if box != key and not self.limits.take(f"mailbox#{box}", settings.link_requests_per_address, window, now):
            return "address_limited"
        state = self.store.get(key)
        if state is not None and state.blocked is not None:
            return "blocked"
        token = issue(self.key_ring(), "email", key, self._topic(), now)
        url = f"{settings.links_base_url}/unsubscribe?token={quote(token, safe='')}"
        message = self._message(address, url, request.language, now)
        mailer = self.mailer()
        try:
            if deadline is None:
                mailer.send(address, message)
            else:
                within(_senders(), deadline - time.monotonic(), lambda: mailer.send(address, message))
        except TimeoutError:
            # SES has not answered, and the invocation must: the mail may still go out, so the
            # answer is the same page (a 5xx would invite the person to ask again, and mail twice)
            log.warning("the new link's send did not answer in time; it may have gone out")
            return "unknown"
        except Exception as exc:  # a refused or failed send must not change the answer
            log.warning("the new link could not be mailed: %s", type(exc).__name__)
            return "failed"
        return "sent"

    def _topic(self) -> str:
        """A required topic: the page then offers every optional choice and no single-topic button."""
        required = self.settings.required_topics
        return required[0] if required else self.settings.topics[0].name

    def _message(self, to: str, url: str, language: str, now: datetime) -> bytes:
        t = messages(language)
        texts = {part: t[f"link_mail_{part}"] for part in ("subject", "intro", "action", "validity", "ignore")}
        brand, days = self.settings.brand_name, self.settings.token_ttl_days
        message = EmailMessage(policy=SMTP)
        message["From"] = self.settings.sender_address
        message["To"] = to
        message["Subject"] = texts["subject"].format(brand=brand)
        message["Date"] = format_datetime(now)
        message["Message-ID"] = make_msgid(domain=self.settings.sender_address.rsplit("@", 1)[-1])
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to it
        lines = [
            texts["intro"].format(brand=brand),
            "",
            f"{texts['action']}: {url}",
            "",
            texts["validity"].format(days=days),
        ]
        message.set_content("\n".join([*lines, "", texts["ignore"]]) + "\n")
        html = render("link_mail.html", language, brand, url=url, texts=texts, days=days).body
        message.add_alternative(html, subtype="html")
        return message.as_bytes()
