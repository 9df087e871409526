"""Inbound SMS: STOP / START / HELP from Twilio-style webhooks and AWS End User Messaging.

Every inbound message is processed once (keyed by the carrier's message id, claimed in the same
transaction as its effect), settles out-of-order delivery by the time it was *sent* (every STOP and
START records that time, even one that changes nothing, and loses to a later one), and yields
at most one reply: a confirmation when it changed the block, the help text for HELP, and for a
message that might revoke but does not clearly do so, a clarification (at most one per number a
day, never a block).

Durable intake on both paths. End User Messaging's texts reach us through SNS and InboundSmsQueue.
A Twilio webhook is recorded inline, within a budget; when that fails for any reason but bad
input (an error, throttling, a timeout), the message goes as it came, its signature checked, to
the same queue (``HandedOffTwilio``), and the webhook answers 200 with an empty TwiML: a 2xx
means the message is recorded or queued. The queue then records it and sends its reply by SMS.
The webhook answers 5xx only when the hand-off fails too.

Each side effect that must happen once is tracked on its own once-marker (``OnceMarker``): the
reply, claimed before it is sent and never sent twice, and the mirror into the provider's
opt-out list, pending until it is done. A redelivery finishes what an attempt left undone.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError, field_validator

from optout.channels.pacing import OutcomeUnknown, Transient, refused_for_good, send_at_most_once
from optout.channels.sms import OptedOutAtProvider, SmsChannel
from optout.core.deadline import within
from optout.core.errors import Forbidden, InvalidAddress, OptoutError
from optout.core.identity import address_key, normalise_phone
from optout.core.settings import SmsKeywordSettings
from optout.sms import twilio
from optout.sms.keywords import Intent, KeywordBook
from optout.suppression.consent import Unchanged, change_consent
from optout.suppression.model import CHANNEL_SCOPE, ConsentChange, ConsentEvent, SuppressionState
from optout.suppression.store import OnceMarker, SuppressionStore

log = logging.getLogger(__name__)

T = TypeVar("T")
Provider = Literal["twilio", "end_user_messaging"]
KEYWORD_BLOCK_REASON = "keyword"
_MESSAGE_ID = r"^[A-Za-z0-9_.:-]{1,128}$"
HANDED_OFF_KIND = "optout.twilio-webhook"  # a message kind on InboundSmsQueue (not a module path): never renamed
HANDED_OFF_VERSION = 1
QUEUE_CLAIM = "queue"  # ``claimed_by`` of a reply the queue path sent by SMS (a webhook attempt is 32 hex digits)
INLINE_SECONDS = 3.0  # the webhook's inline write gets this long at most (its p99 is far under 0.3 s) ...
HAND_OFF_RESERVE = 0.5  # ... and the hand-off what is left of the invocation, but this much


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


class HandedOffTwilio(BaseModel, frozen=True):
    """A Twilio webhook SmsWebhook could not record inline, on InboundSmsQueue as it came (version 1).

    ``params`` is the POSTed form, every pair as signed, in order; the signature was checked before
    the hand-off (the queue takes messages only from SmsWebhook's role and End User Messaging's
    topic). ``attempt`` names the webhook attempt that handed it off: it sent no reply, so a reply
    it claimed may be taken over. A consumer refuses a version it does not know, so the message is
    retried and in the end kept in the DLQ, never dropped.
    """

    kind: Literal["optout.twilio-webhook"] = "optout.twilio-webhook"  # HANDED_OFF_KIND
    version: Literal[1] = 1  # HANDED_OFF_VERSION
    params: list[tuple[str, str]] = Field(max_length=100)
    received_at: datetime
    attempt: str = Field(pattern=r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class InboundResult:
    intent: Intent
    language: str
    reply: str | None
    changed: bool
    duplicate: bool
    once_key: str
    address_key: str
    mirror: Intent | None = None  # the opt-out list still to be told of this change (``opt_out``/``opt_in``)
    released: str | None = None  # a webhook attempt known to have sent nothing: its reply claim may be taken over


@dataclass(frozen=True)
class WebhookAnswer:
    twiml: str
    handed_off: bool = False  # recorded by the queue, not inline


class InvalidInbound(OptoutError):
    code = "invalid_inbound_sms"


class IntakeUnavailable(OptoutError):
    """Neither the inline write nor the hand-off to the queue worked: the carrier should try again."""

    code = "intake_unavailable"


class UnknownHandOff(RuntimeError):
    """A handed-off message of a version this code does not know: retried, then kept in the DLQ."""


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


def parse_queued(body: str, sqs_sent_at: datetime) -> tuple[InboundSms, str | None]:
    """An InboundSmsQueue message: a handed-off Twilio webhook (and its attempt), or End User Messaging's."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidInbound("the message is not JSON") from exc
    if isinstance(document, dict) and document.get("kind") == HANDED_OFF_KIND:
        if document.get("version") != HANDED_OFF_VERSION:
            version = str(document.get("version"))[:16]
            raise UnknownHandOff(f"a handed-off Twilio webhook of unknown version {version!r}")
        try:
            handed = HandedOffTwilio.model_validate(document)
        except ValidationError as exc:
            raise _fields_error(exc) from exc
        return from_twilio(dict(handed.params), handed.received_at), handed.attempt
    return from_sqs_body(body, sqs_sent_at), None


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
        hand_off: Callable[[dict[str, Any]], None] | None = None,  # puts a message on InboundSmsQueue
        inline_seconds: float = INLINE_SECONDS,
    ) -> None:
        self.settings = settings
        self.store = store
        self.pepper = pepper
        self.book = book
        self.sms = sms
        self.twilio_auth_token = twilio_auth_token
        self.now = now
        self.mirror = mirror or sms
        self.hand_off = hand_off
        self.inline_seconds = inline_seconds
        self._mirrors = settings.sms_provider == "end-user-messaging"
        # Two pools: inline calls abandoned at their budget may run on for a while (the SDK's own
        # retries), and must never hold up the hand-off that backs them up
        self._pools: dict[str, ThreadPoolExecutor] = {}

    def handle(
        self,
        sms: InboundSms,
        reply_in_response: bool = False,
        claimant: str | None = None,
        released: str | None = None,
    ) -> InboundResult:
        """Record one inbound message and its effect, once.

        A redelivery is recognised by the once marker that every write here carries, so the
        first delivery costs no read of the marker. With ``reply_in_response`` (the webhook,
        whose HTTP answer carries the reply) the reply is claimed in the same write, by
        ``claimant`` (the webhook's attempt). ``released``: an attempt known to have sent nothing
        (it handed the message off), whose claims a redelivery takes over.
        """
        key = address_key(self.pepper(), "sms", _number(sms))
        once_key = f"sms#{sms.provider}#{sms.message_id}"
        match = self.book.match(sms.body)
        evidence = {
            "inbound_message_id": sms.message_id,
            "provider": sms.provider,
            "keyword": match.keyword or "",
            "sent_at": sms.sent_at.isoformat(),
        }
        reply = self.book.reply(match.intent, match.language, self.settings.brand_name, self.settings.support_contact)
        claimed = reply_in_response and reply is not None
        once = OnceMarker(once_key, reply, self.now() if claimed else None, claimant if claimed else None)
        if match.intent in ("opt_out", "opt_in"):
            result = self._keyword(match.intent, match.language, sms, key, once, evidence)
        elif match.intent == "clarify":
            return self._clarify(
                match.language, sms, key, once_key, evidence, reply, reply_in_response, claimant, released
            )
        else:
            action: Literal["help", "ignored"] = "help" if match.intent == "help" else "ignored"
            if action == "ignored":
                evidence["reason"] = "not a keyword"
            event = ConsentEvent(
                action=action, scope=CHANNEL_SCOPE, source="sms_keyword", at=self.now(), evidence=evidence
            )
            claimed_now = self.store.record(key, [event], once)
            result = (
                InboundResult(match.intent, match.language, reply, False, False, once_key, key) if claimed_now else None
            )
        if result is None:  # processed before: no second effect
            marker = self.store.once_get(once_key)
            return self._duplicate(marker or OnceMarker(once_key), match.intent, match.language, key, released)
        return result

    def _keyword(
        self,
        intent: Intent,
        language: str,
        sms: InboundSms,
        key: str,
        once: OnceMarker,
        evidence: dict[str, str],
    ) -> InboundResult | None:
        """An opt-out or opt-in keyword; None if this message was processed before."""

        def unchanged(state: SuppressionState) -> Unchanged:
            ignored = ConsentEvent(
                action="ignored", scope=CHANNEL_SCOPE, source="sms_keyword", at=self.now(),
                evidence={**evidence, "reason": keyword_changes(state, intent, sms.sent_at)[1]},
            )  # fmt: skip
            return Unchanged([ignored], OnceMarker(once.key, None))  # nothing changed: nothing to confirm

        # One read and one transaction, whatever the outcome: the change (or why there is none),
        # the keyword's send time and the once marker (with the mirror still to do) are written together.
        mirror = intent if self._mirrors else None
        outcome = change_consent(
            self.store, key, "sms", lambda state: keyword_changes(state, intent, sms.sent_at)[0],
            self.settings.optional_topics, "sms_keyword", evidence=evidence, now=self.now,
            once=replace(once, mirror=mirror), keyword_at=sms.sent_at, unchanged=unchanged,
        )  # fmt: skip
        if outcome.already_processed:
            return None
        if outcome.changed:
            return InboundResult(intent, language, once.reply, True, False, once.key, key, mirror)
        return InboundResult(intent, language, None, False, False, once.key, key)

    def _clarify(
        self,
        language: str,
        sms: InboundSms,
        key: str,
        once_key: str,
        evidence: dict[str, str],
        reply: str | None,
        reply_in_response: bool,
        claimant: str | None = None,
        released: str | None = None,
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
            claimed = reply_in_response and reply is not None
            day = OnceMarker(day_key, reply, self.now() if claimed else None, claimant if claimed else None)
            if self.store.record(key, [], day):
                pending, created, reason = reply, True, "unclear; clarification asked"
            else:
                marker = self.store.once_get(day_key)
                reason = "unclear; clarification already asked today"
                if marker is not None and _unsent(marker, released):  # the delivery that claimed it did not send it
                    pending = marker.reply
        event = ConsentEvent(
            action="ignored", scope=CHANNEL_SCOPE, source="sms_keyword", at=self.now(),
            evidence={**evidence, "reason": reason},
        )  # fmt: skip
        duplicate = not self.store.record(key, [event], OnceMarker(once_key, None))
        if pending is not None and reply_in_response and not created and not duplicate:
            # The webhook sends a first delivery's reply as it stands: claim this one here.
            claimed = self.store.once_mark_replied(day_key, self.now(), by=claimant, over=released)
            pending = pending if claimed else None
        return InboundResult("clarify", language, pending, False, duplicate, day_key, key, released=released)

    def _duplicate(
        self, marker: OnceMarker, intent: Intent, language: str, key: str, released: str | None = None
    ) -> InboundResult:
        """A redelivery: no second effect; what an earlier attempt left undone (its reply, if no
        delivery sent it; its mirror, if not done) is still to do."""
        pending = marker.reply if _unsent(marker, released) else None
        mirror: Intent | None = "opt_out" if marker.mirror == "opt_out" else "opt_in" if marker.mirror else None
        return InboundResult(intent, language, pending, False, True, marker.key, key, mirror, released)

    def claim_reply(self, result: InboundResult, by: str | None = None) -> str | None:
        """The reply to send now, claimed (by ``by``) so that no other delivery of the message sends it too."""
        if result.reply is None:
            return None
        if not self.store.once_mark_replied(result.once_key, self.now(), by=by, over=result.released):
            return None
        return result.reply

    def release_reply(self, result: InboundResult) -> None:
        self.store.once_unmark_replied(result.once_key)

    def receive_twilio(
        self,
        public_url: str,
        signature: str | None,
        body: bytes,
        content_type: str | None,
        seconds_left: float | None = None,
    ) -> WebhookAnswer:
        """Verify and process one Twilio webhook; return the TwiML to answer with.

        Bad input is refused (4xx) before anything is written. The message is then recorded
        inline within a budget; if that fails in any way, it is handed to InboundSmsQueue as it
        came and the answer is an empty TwiML (the queue sends the reply by SMS). Only if the
        hand-off fails too does this raise ``IntakeUnavailable`` (503). ``seconds_left``: what
        is left of the invocation, shared between the two.
        """
        if self.twilio_auth_token is None:
            raise RuntimeError("this function takes no Twilio webhooks: it has no auth token")
        params = twilio.form_params(body, content_type, self.settings.max_form_bytes)
        if not twilio.valid_signature(self.twilio_auth_token(), public_url, params, signature):
            raise Forbidden("missing or invalid X-Twilio-Signature")
        sms = from_twilio(dict(params), self.now())
        _number(sms)  # a bad From is a 400 now, never a hand-off
        attempt = uuid.uuid4().hex
        left = 10.0 if seconds_left is None else seconds_left
        inline = max(0.2, min(self.inline_seconds, (left - HAND_OFF_RESERVE) / 2))
        try:
            return WebhookAnswer(self._within("inline", inline, lambda: self._inline(sms, attempt)))
        except InvalidInbound:
            raise
        except Exception as exc:
            if self.hand_off is None:
                raise
            log.warning(
                "inline write failed; handing the webhook to the queue",
                extra={"error": type(exc).__name__, "message_sid": sms.message_id},
            )
        handed = HandedOffTwilio(params=params, received_at=sms.sent_at, attempt=attempt)
        hand_off = self.hand_off
        try:
            budget = max(0.2, left - inline - HAND_OFF_RESERVE)
            self._within("hand-off", budget, lambda: hand_off(handed.model_dump(mode="json")))
        except Exception as exc:
            log.error("hand-off to the queue failed too", extra={"error": type(exc).__name__})
            raise IntakeUnavailable("the message could not be recorded; try again") from exc
        # This attempt sends nothing from here on: the queue takes over any reply it claimed.
        return WebhookAnswer(twilio.twiml(None), handed_off=True)

    def _inline(self, sms: InboundSms, attempt: str) -> str:
        result = self.handle(sms, reply_in_response=True, claimant=attempt)
        self._mirror(result, sms)
        # A first delivery claimed its reply in its own write; a redelivery answers only a reply
        # that no delivery has claimed yet.
        return twilio.twiml(self.claim_reply(result, by=attempt) if result.duplicate else result.reply)

    def _within(self, pool: Literal["inline", "hand-off"], seconds: float, call: Callable[[], T]) -> T:
        """``call``'s result if it comes within ``seconds`` (``core.deadline.within``), on ``pool``'s threads.

        On time out a started call runs on, unawaited: whatever it writes is keyed by the message's
        once marker, so it is harmless, and it sends nothing (replies travel in the answer). The
        inline calls have threads of their own, so however many of them hang in a DynamoDB
        brownout (each until the SDK gives up), a webhook is still handed off in time.
        """
        if pool not in self._pools:
            workers = 16 if pool == "inline" else 4
            self._pools[pool] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"sms-{pool}")
        return within(self._pools[pool], seconds, call)

    def receive_queued(self, body: str, sqs_sent_at: datetime) -> InboundResult | None:
        """Process one InboundSmsQueue message (End User Messaging's, or a handed-off webhook); None when unusable.

        Unusable messages (not JSON, missing fields, not a phone number) are ignored, not failed:
        no retry could ever make them valid. Anything else that fails raises, so the record is
        retried and, in the end, waits in the DLQ; the retry finishes what this attempt left undone.
        """
        try:
            sms, released = parse_queued(body, sqs_sent_at)
            result = self.handle(sms, released=released)
        except InvalidInbound:
            return None
        # End User Messaging refuses to text a number on the opt-out list: a STOP is confirmed
        # before its number goes on the list, a START's number comes off it before it is confirmed.
        confirm_first = result.mirror == "opt_out"
        if not confirm_first:
            self._mirror(result, sms)
        self._reply_by_sms(result, sms)
        if confirm_first:
            self._mirror(result, sms)
        return result

    def _reply_by_sms(self, result: InboundResult, sms: InboundSms) -> None:
        """Send the message's one reply, unless another delivery has claimed it."""
        reply = self.claim_reply(result, by=QUEUE_CLAIM)
        if reply is not None:
            number = normalise_phone(sms.from_number)
            # A Twilio number is not ours to send from through AWS: the channel's own identity replies.
            origination = sms.to_number if sms.provider == "end_user_messaging" else None
            try:
                send_at_most_once(lambda: self.sms().send(number, reply, origination=origination))
            except OptedOutAtProvider:
                # The number is on the provider's own opt-out list (AWS manages the identity's
                # opt-outs, or a webhook attempt mirrored this STOP before it handed off): no
                # delivery could ever send it. The claim stays, and the message is recorded.
                log.warning(
                    "reply not sent: the number is opted out at the provider", extra={"once_key": result.once_key}
                )
            except Transient:
                self.release_reply(result)  # throttled, surely not sent: a redelivery sends it (and mirrors)
                raise
            except OutcomeUnknown:
                # It may have gone out: the claim stays, so no redelivery texts it again (at most
                # one confirmation, never two); the message itself is recorded.
                log.warning("reply outcome unknown; not sent again", extra={"once_key": result.once_key})
                try:
                    self.store.once_reply_unknown(result.once_key)
                except Exception as exc:  # the log line above holds it; the claim holds either way
                    log.warning("reply outcome not recorded", extra={"error": type(exc).__name__})
            except Exception as exc:
                if not refused_for_good(exc):
                    self.release_reply(result)  # surely not sent: a redelivery sends it
                    raise
                # The provider refused this request (a 4xx that is no throttle): no redelivery could
                # send it, so the message is recorded and its mirror done, not failed to the DLQ.
                code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code") or type(exc).__name__
                log.error("reply refused by the provider; not sent", extra={"once_key": result.once_key, "error": code})

    def _mirror(self, result: InboundResult, sms: InboundSms) -> None:
        """Tell the provider's opt-out list what the message changed, then mark it done.

        A redelivery finishing a mirror an earlier attempt left undone mirrors only if the number
        still stands as that message left it; a later keyword since then mirrors itself.
        """
        if result.mirror is None or not self._mirrors:
            return
        if not result.changed:
            state = self.store.get(result.address_key)
            blocked = state is not None and state.blocked is not None
            if blocked != (result.mirror == "opt_out"):
                self.store.once_mirrored(result.once_key)
                return
        number = normalise_phone(sms.from_number)
        if result.mirror == "opt_out":
            self.mirror().mirror_opt_out(number)
        else:
            self.mirror().mirror_opt_in(number)
        self.store.once_mirrored(result.once_key)


def _unsent(marker: OnceMarker, released: str | None) -> bool:
    """The marker's reply went out from no delivery: unclaimed, or claimed by an attempt that sent nothing."""
    return marker.replied_at is None or (released is not None and marker.claimed_by == released)


def _number(sms: InboundSms) -> str:
    try:
        return normalise_phone(sms.from_number)
    except InvalidAddress as exc:
        raise InvalidInbound("From is not a valid phone number in international form") from exc
