"""Inbound SMS: STOP / START / HELP from Twilio-style webhooks and AWS End User Messaging.

Every inbound message is processed once (keyed by the carrier's message id, claimed in the same
transaction as its effect), settles out-of-order delivery by the time it was *sent* (every STOP and
START records that time, even one that changes nothing, and loses to a later one), and yields
at most one reply: a confirmation when it changed the block, the help text for HELP, and for a
message that might revoke but does not clearly do so, a clarification (at most one per number a
day, never a block).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from optout import twilio
from optout.channels.pacing import OutcomeUnknown, send_at_most_once
from optout.channels.sms import SmsChannel
from optout.consent import Unchanged, change_consent
from optout.errors import AlreadyProcessed, Forbidden, InvalidAddress, OptoutError
from optout.identity import address_key, normalise_phone
from optout.keywords import Intent, KeywordBook
from optout.settings import SmsKeywordSettings
from optout.suppression import CHANNEL_SCOPE, ConsentChange, ConsentEvent, SuppressionState
from optout.suppression_store import OnceMarker, SuppressionStore

log = logging.getLogger(__name__)

Provider = Literal["twilio", "end_user_messaging"]
KEYWORD_BLOCK_REASON = "keyword"
_MESSAGE_ID = r"^[A-Za-z0-9_.:-]{1,128}$"


class InboundSms(BaseModel, frozen=True):
    provider: Provider
    message_id: str = Field(pattern=_MESSAGE_ID)
    from_number: str = Field(min_length=1, max_length=32)
    to_number: str = Field(min_length=1, max_length=32)
    body: str = Field(max_length=1600)
    sent_at: datetime

    @field_validator("body")
    @classmethod
    def _no_nul(cls, body: str) -> str:
        if "\x00" in body:
            raise ValueError("the body contains a NUL character")
        return body


@dataclass(frozen=True)
class InboundResult:
    intent: Intent
    language: str
    reply: str | None
    changed: bool
    duplicate: bool
    once_key: str
    address_key: str


class InvalidInbound(OptoutError):
    code = "invalid_inbound_sms"
    status = 400


def _fields_error(exc: ValidationError) -> InvalidInbound:
    fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
    return InvalidInbound(f"invalid or missing fields: {fields}")


def from_twilio(params: Mapping[str, str], received_at: datetime) -> InboundSms:
    """Twilio posts From, To, Body, MessageSid, AccountSid and more; it carries no sent time."""
    try:
        return InboundSms(
            provider="twilio",
            message_id=params.get("MessageSid", ""),
            from_number=params.get("From", ""),
            to_number=params.get("To", ""),
            body=params.get("Body", ""),
            sent_at=received_at,
        )
    except ValidationError as exc:
        raise _fields_error(exc) from exc


def from_sqs_body(body: str, sqs_sent_at: datetime) -> InboundSms:
    """An End User Messaging two-way SMS JSON, inside the SNS envelope or delivered raw."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidInbound("the message is not JSON") from exc
    sent_at = sqs_sent_at
    if (
        isinstance(document, dict)
        and document.get("Type") == "Notification"
        and isinstance(document.get("Message"), str)
    ):
        try:
            sent_at = datetime.fromisoformat(str(document.get("Timestamp")).replace("Z", "+00:00"))
        except ValueError:
            sent_at = sqs_sent_at
        try:
            document = json.loads(document["Message"])
        except (ValueError, RecursionError) as exc:
            raise InvalidInbound("the SNS message is not JSON") from exc
    if not isinstance(document, dict):
        raise InvalidInbound("the message is not a JSON object")
    try:
        return InboundSms(
            provider="end_user_messaging",
            message_id=document.get("inboundMessageId", ""),
            from_number=document.get("originationNumber", ""),
            to_number=document.get("destinationNumber", ""),
            body=document.get("messageBody", ""),
            sent_at=sent_at if sent_at.tzinfo else sent_at.replace(tzinfo=UTC),
        )
    except (ValidationError, TypeError) as exc:
        raise (_fields_error(exc) if isinstance(exc, ValidationError) else InvalidInbound(str(exc))) from exc


def keyword_changes(state: SuppressionState, intent: Intent, sent_at: datetime) -> tuple[list[ConsentChange], str]:
    """What a STOP (``opt_out``) or START (``opt_in``) sent at ``sent_at`` changes, or why nothing.

    A keyword loses to any keyword sent after it that is already recorded, whether or not that
    one changed anything: the state keeps the latest send time (``keyword_at``).
    """
    if state.keyword_at is not None and sent_at < state.keyword_at:
        return [], "superseded by a later keyword"
    if intent == "opt_out":
        if state.blocked is not None:
            return [], "already blocked"
        return [ConsentChange("block", CHANNEL_SCOPE, KEYWORD_BLOCK_REASON)], "blocked"
    if state.blocked is None:
        return [], "not blocked"
    if state.blocked.source != "sms_keyword":
        return [], f"blocked by {state.blocked.source}: only an admin can lift it"
    return [ConsentChange("unblock", CHANNEL_SCOPE)], "unblocked"


class SmsInbound:
    def __init__(
        self,
        settings: SmsKeywordSettings,
        store: SuppressionStore,
        pepper: Callable[[], bytes],
        book: KeywordBook,
        sms: Callable[[], SmsChannel],
        twilio_auth_token: Callable[[], str] | None = None,  # None: this instance takes no webhooks
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        mirror: Callable[[], SmsChannel] | None = None,  # for the opt-out mirror (default: ``sms``)
    ) -> None:
        self.settings = settings
        self.store = store
        self.pepper = pepper
        self.book = book
        self.sms = sms
        self.twilio_auth_token = twilio_auth_token
        self.now = now
        self.mirror = mirror or sms

    def handle(self, sms: InboundSms, reply_in_response: bool = False) -> InboundResult:
        """Record one inbound message and its effect, once.

        A redelivery is recognised by the once marker that every write here carries, so the
        first delivery costs no read of the marker. With ``reply_in_response`` (the webhook,
        whose HTTP answer carries the reply) the reply is claimed in the same write.
        """
        try:
            number = normalise_phone(sms.from_number)
        except InvalidAddress as exc:
            raise InvalidInbound("From is not a valid phone number in international form") from exc
        key = address_key(self.pepper(), "sms", number)
        once_key = f"sms#{sms.provider}#{sms.message_id}"
        match = self.book.match(sms.body)
        evidence = {
            "inbound_message_id": sms.message_id,
            "provider": sms.provider,
            "keyword": match.keyword or "",
            "sent_at": sms.sent_at.isoformat(),
        }
        reply = self.book.reply(match.intent, match.language, self.settings.brand_name, self.settings.support_contact)
        replied_at = self.now() if reply_in_response and reply is not None else None
        try:
            if match.intent in ("opt_out", "opt_in"):
                return self._keyword(match.intent, match.language, sms, key, once_key, evidence, reply, replied_at)
            if match.intent == "clarify":
                return self._clarify(match.language, sms, key, once_key, evidence, reply, reply_in_response)
            action: Literal["help", "ignored"] = "help" if match.intent == "help" else "ignored"
            if action == "ignored":
                evidence["reason"] = "not a keyword"
            event = ConsentEvent(
                action=action, scope=CHANNEL_SCOPE, source="sms_keyword", at=self.now(), evidence=evidence
            )
            self.store.record(key, [event], OnceMarker(once_key, reply, replied_at))
            return InboundResult(match.intent, match.language, reply, False, False, once_key, key)
        except AlreadyProcessed:
            marker = self.store.once_get(once_key)
            return self._duplicate(marker or OnceMarker(once_key), match.intent, match.language, key)

    def _keyword(
        self,
        intent: Intent,
        language: str,
        sms: InboundSms,
        key: str,
        once_key: str,
        evidence: dict[str, str],
        reply: str | None,
        replied_at: datetime | None,
    ) -> InboundResult:
        def unchanged(state: SuppressionState) -> Unchanged:
            ignored = ConsentEvent(
                action="ignored", scope=CHANNEL_SCOPE, source="sms_keyword", at=self.now(),
                evidence={**evidence, "reason": keyword_changes(state, intent, sms.sent_at)[1]},
            )  # fmt: skip
            return Unchanged([ignored], OnceMarker(once_key, None))  # nothing changed: nothing to confirm

        # One read and one transaction, whatever the outcome: the change (or why there is none),
        # the keyword's send time and the once marker are written together.
        outcome = change_consent(
            self.store, key, "sms", lambda state: keyword_changes(state, intent, sms.sent_at)[0],
            self.settings.optional_topics, "sms_keyword", evidence=evidence, now=self.now,
            once=OnceMarker(once_key, reply, replied_at), keyword_at=sms.sent_at, unchanged=unchanged,
        )  # fmt: skip
        if outcome.changed:
            return InboundResult(intent, language, reply, True, False, once_key, key)
        return InboundResult(intent, language, None, False, False, once_key, key)

    def _clarify(
        self,
        language: str,
        sms: InboundSms,
        key: str,
        once_key: str,
        evidence: dict[str, str],
        reply: str | None,
        reply_in_response: bool,
    ) -> InboundResult:
        """A message that might revoke: never a block, and at most one clarification per number a day.

        The day's clarification is a once marker of its own, keyed by the number and the day the
        message was sent (so a redelivery names the same day). Whichever message claims it carries
        the reply; a redelivery finishes a reply that no delivery sent yet. A blocked number is
        asked nothing: it gets no text but the one confirmation.
        """
        day_key = f"clarify#{key}#{sms.sent_at.astimezone(UTC).date().isoformat()}"
        state = self.store.get(key)
        pending: str | None = None
        created = False
        if state is not None and state.blocked is not None:
            reason = "unclear; already blocked"
        else:
            try:
                self.store.record(key, [], OnceMarker(day_key, reply, self.now() if reply_in_response else None))
                pending, created, reason = reply, True, "unclear; clarification asked"
            except AlreadyProcessed:
                marker = self.store.once_get(day_key)
                reason = "unclear; clarification already asked today"
                if marker is not None and marker.replied_at is None:  # the delivery that claimed it did not send it
                    pending = marker.reply
        event = ConsentEvent(
            action="ignored", scope=CHANNEL_SCOPE, source="sms_keyword", at=self.now(),
            evidence={**evidence, "reason": reason},
        )  # fmt: skip
        duplicate = False
        try:
            self.store.record(key, [event], OnceMarker(once_key, None))
        except AlreadyProcessed:
            duplicate = True
        if pending is not None and reply_in_response and not created and not duplicate:
            # The webhook sends a first delivery's reply as it stands: claim this one here.
            pending = pending if self.store.once_mark_replied(day_key, self.now()) else None
        return InboundResult("clarify", language, pending, False, duplicate, day_key, key)

    def _duplicate(self, marker: OnceMarker, intent: Intent, language: str, key: str) -> InboundResult:
        """A redelivery: no second effect; the reply only if the first delivery never sent it."""
        pending = marker.reply if marker.replied_at is None else None
        return InboundResult(intent, language, pending, False, True, marker.key, key)

    def claim_reply(self, result: InboundResult) -> str | None:
        """The reply to send now, claimed so that no other delivery of the message sends it too."""
        if result.reply is None or not self.store.once_mark_replied(result.once_key, self.now()):
            return None
        return result.reply

    def release_reply(self, result: InboundResult) -> None:
        self.store.once_unmark_replied(result.once_key)

    def receive_twilio(self, public_url: str, signature: str | None, body: bytes, content_type: str | None) -> str:
        """Verify and process one Twilio webhook; return the TwiML to answer with."""
        if self.twilio_auth_token is None:
            raise RuntimeError("this function takes no Twilio webhooks: it has no auth token")
        params = twilio.form_params(body, content_type, self.settings.max_form_bytes)
        if not twilio.valid_signature(self.twilio_auth_token(), public_url, params, signature):
            raise Forbidden("missing or invalid X-Twilio-Signature")
        sms = from_twilio(dict(params), self.now())
        result = self.handle(sms, reply_in_response=True)
        self._mirror(result, sms)
        # A first delivery claimed its reply in its own write; a redelivery answers only a reply
        # that no delivery has claimed yet.
        return twilio.twiml(self.claim_reply(result) if result.duplicate else result.reply)

    def receive_queued(self, body: str, sqs_sent_at: datetime) -> InboundResult | None:
        """Process one End User Messaging message from the queue; None when it is unusable.

        Unusable messages (not JSON, missing fields, not a phone number) are ignored, not failed:
        no retry could ever make them valid. Anything else that fails raises, so the record is
        retried and, in the end, waits in the DLQ.
        """
        try:
            sms = from_sqs_body(body, sqs_sent_at)
            result = self.handle(sms)
        except InvalidInbound:
            return None
        self._mirror(result, sms)
        reply = self.claim_reply(result)
        if reply is not None:
            number = normalise_phone(sms.from_number)
            try:
                send_at_most_once(lambda: self.sms().send(number, reply, origination=sms.to_number))
            except OutcomeUnknown:
                # It may have gone out: the claim stays, so no redelivery texts it again (at most
                # one confirmation, never two); the message itself is recorded.
                log.warning("reply outcome unknown; not sent again", extra={"once_key": result.once_key})
            except Exception:
                self.release_reply(result)  # surely not sent (refused, throttled): a redelivery sends it
                raise
        return result

    def _mirror(self, result: InboundResult, sms: InboundSms) -> None:
        if result.changed and self.settings.sms_provider == "end-user-messaging":
            number = normalise_phone(sms.from_number)
            if result.intent == "opt_out":
                self.mirror().mirror_opt_out(number)
            elif result.intent == "opt_in":
                self.mirror().mirror_opt_in(number)
