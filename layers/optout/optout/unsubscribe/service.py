"""The unsubscribe flow behind GET/POST /unsubscribe: preference page, one-click, form posts.

GET and HEAD only read (mail scanners prefetch every link). POST with
``List-Unsubscribe=One-Click`` (RFC 8058) opts out of the token's topic; the page's own form
applies the chosen preferences. Every change is durable before the page is returned.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from optout.core.errors import BadForm, InvalidToken, MalformedToken, OptoutError, RequiredTopic, UnknownTopic
from optout.core.settings import UnsubscribeSettings
from optout.suppression.consent import ConsentOutcome, change_consent, current_state
from optout.suppression.model import OPTIONAL_SCOPE, ConsentChange, Source, SuppressionState, changes_for_subscriptions
from optout.suppression.store import SuppressionStore
from optout.unsubscribe.token import KeyRing, TokenClaims, verify
from optout.web.forms import first, parse_form
from optout.web.http import body_bytes, http_status
from optout.web.pages import HtmlPage, error_page, messages, negotiate_language, render, topic_row

ONE_CLICK_FIELD = "List-Unsubscribe"
ONE_CLICK_VALUE = "One-Click"


@dataclass(frozen=True)
class UnsubscribeRequest:
    token: str | None
    accept_language: str | None = None
    body: bytes = b""
    content_type: str | None = None

    @property
    def language(self) -> str:
        return negotiate_language(self.accept_language)

    @classmethod
    def from_http(
        cls, query_token: str | None, headers: Mapping[str, str], body: str | None, is_base64: bool
    ) -> UnsubscribeRequest:
        """Build a request from an HTTP API event's parts; a body that is not valid base64 is a BadForm."""
        raw = body_bytes(body, is_base64)
        lower = {k.lower(): v for k, v in headers.items()}
        return cls(query_token, lower.get("accept-language"), raw, lower.get("content-type"))


class Unsubscribe:
    def __init__(
        self,
        settings: UnsubscribeSettings,
        store: SuppressionStore,
        key_ring: Callable[[], KeyRing],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.store = store
        self.key_ring = key_ring
        self.now = now

    def show(self, request: UnsubscribeRequest, result: str | None = None) -> HtmlPage:
        claims = self._claims(request.token)
        state = current_state(self.store, claims.address_key, claims.channel)
        return self._page(request, claims, state, result)

    def submit(self, request: UnsubscribeRequest) -> tuple[HtmlPage, ConsentOutcome]:
        claims = self._claims(request.token)
        form = parse_form(request.body, request.content_type, self.settings.max_form_bytes)
        source: Source = "preference_page"
        changes: Sequence[ConsentChange] | Callable[[SuppressionState], Sequence[ConsentChange]]
        if first(form, ONE_CLICK_FIELD) == ONE_CLICK_VALUE:
            source, result = "one_click", "result_unsubscribed_topic"
            changes = [ConsentChange("opt_out", self._optional_topic(claims.topic))]
        else:
            action = first(form, "action")
            if action == "unsubscribe_topic":
                result = "result_unsubscribed_topic"
                changes = [ConsentChange("opt_out", self._optional_topic(claims.topic))]
            elif action == "unsubscribe_all":
                result = "result_unsubscribed_all"
                changes = [ConsentChange("opt_out", OPTIONAL_SCOPE)]
            elif action == "save":
                result = "result_saved"
                wanted = [self._optional_topic(name) for name in form.get("subscribed", [])]
                optional = self.settings.optional_topics
                changes = lambda state: changes_for_subscriptions(state, wanted, optional)  # noqa: E731
            else:
                raise BadForm("the form has no recognised action")
        outcome = change_consent(
            self.store,
            claims.address_key,
            claims.channel,
            changes,
            self.settings.optional_topics,
            source,
            evidence={"token_topic": claims.topic, "token_issued_at": claims.issued_at.isoformat()},
            now=self.now,
        )
        if not outcome.changed:
            result = "result_unchanged"
        return self._page(request, claims, outcome.state, result), outcome

    def error(self, exc: OptoutError, request: UnsubscribeRequest) -> HtmlPage:
        dead_link = isinstance(exc, MalformedToken | InvalidToken)  # the page offers a new link by email
        language, brand = request.language, self.settings.brand_name
        return error_page(exc.code, http_status(exc), language, brand, offer_new_link=dead_link)

    def _claims(self, token: str | None) -> TokenClaims:
        claims = verify(self.key_ring(), token or "", timedelta(days=self.settings.token_ttl_days), self.now())
        if self.settings.topic(claims.topic) is None:
            raise UnknownTopic("the link names a topic that is not configured")
        return claims

    def _optional_topic(self, name: str) -> str:
        topic = self.settings.topic(name)
        if topic is None:
            raise UnknownTopic("unknown topic")
        if not topic.optional:
            raise RequiredTopic("required notices cannot be unsubscribed from")
        return name

    def _page(
        self, request: UnsubscribeRequest, claims: TokenClaims, state: SuppressionState, result: str | None
    ) -> HtmlPage:
        language = request.language
        optional = self.settings.optional_topics
        token_topic = self.settings.topic(claims.topic)
        topic_label = topic_row(language, claims.topic).label
        result_text = messages(language)[result].format(topic=topic_label) if result else None
        return render(
            "preferences.html",
            language,
            self.settings.brand_name,
            token=request.token,
            # The one-click button for the link's own topic, unless it is required or already off
            token_topic=topic_row(language, claims.topic)
            if token_topic and token_topic.optional and not state.opted_out(claims.topic, optional)
            else None,
            optional=[topic_row(language, t, not state.opted_out(t, optional)) for t in optional],
            required=[topic_row(language, t) for t in self.settings.required_topics],
            blocked=state.blocked is not None,
            result=result_text,
        )
