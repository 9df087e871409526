"""SES feedback: bounces and complaints from the configuration set's event destination.

- A permanent bounce blocks the email channel (reason ``bounce``, with the bounce subtype and
  the diagnostic, addresses redacted, as evidence).
- Transient bounces are recorded; ``transient_bounce_limit`` of them within
  ``transient_bounce_window_days`` block the channel (reason ``transient_bounces``).
- A complaint opts the address out of every optional topic (reason ``complaint``); required
  notices keep flowing.
- Deliveries, opens, sends and every other event type are ignored, never an error.

Both the configuration-set event format (``eventType``) and the older notification format
(``notificationType``) are read, inside the SNS envelope or delivered raw. Each (feedback id,
recipient) is processed once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from optout.consent import change_consent
from optout.errors import AlreadyProcessed, InvalidAddress, OptoutError
from optout.identity import address_key, normalise_email
from optout.settings import FeedbackSettings
from optout.suppression import CHANNEL_SCOPE, OPTIONAL_SCOPE, ConsentChange, ConsentEvent
from optout.suppression_store import OnceMarker, SuppressionStore

Kind = Literal["bounce", "complaint", "other"]
# Apostrophes are legal in a local part (mary.o'neil@...): they are part of what is redacted.
_EMAIL = re.compile(r"(?:[^\s<>\"'@;,][^\s<>\"@;,]*|'+)@[^\s<>\"'@;,]+")


class InvalidFeedback(OptoutError):
    code = "invalid_feedback"
    status = 400


@dataclass(frozen=True)
class FeedbackEvent:
    kind: Kind
    event_type: str
    feedback_id: str
    addresses: tuple[str, ...]
    bounce_type: str | None = None
    bounce_subtype: str | None = None
    diagnostics: tuple[str, ...] = ()
    complaint_type: str | None = None
    ses_message_id: str | None = None
    notice_id: str | None = None
    at: datetime | None = None


@dataclass(frozen=True)
class FeedbackOutcome:
    kind: Kind
    changed: int
    duplicates: int
    ignored: bool = False


def redact(text: str) -> str:
    """Diagnostic codes quote the address; the evidence keeps the reason, not the address."""
    return _EMAIL.sub("[redacted]", text)[:300]


def parse(body: str) -> FeedbackEvent:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidFeedback("the message is not JSON") from exc
    if (
        isinstance(document, dict)
        and document.get("Type") == "Notification"
        and isinstance(document.get("Message"), str)
    ):
        try:
            document = json.loads(document["Message"])
        except (ValueError, RecursionError) as exc:
            raise InvalidFeedback("the SNS message is not JSON") from exc
    if not isinstance(document, dict):
        raise InvalidFeedback("the message is not a JSON object")
    event_type = str(document.get("eventType") or document.get("notificationType") or "")
    mail = _dict(document.get("mail"))
    ses_message_id = mail.get("messageId") if isinstance(mail.get("messageId"), str) else None
    notice_id = _notice_header(mail)
    if event_type == "Bounce":
        bounce = _dict(document.get("bounce"))
        recipients = [r for r in _list(bounce.get("bouncedRecipients"), "bouncedRecipients") if isinstance(r, dict)]
        return FeedbackEvent(
            kind="bounce", event_type=event_type,
            feedback_id=str(bounce.get("feedbackId") or f"{ses_message_id}:bounce"),
            addresses=tuple(str(r.get("emailAddress", "")) for r in recipients),
            bounce_type=str(bounce.get("bounceType") or "Undetermined"),
            bounce_subtype=str(bounce.get("bounceSubType") or ""),
            diagnostics=tuple(redact(str(r.get("diagnosticCode") or r.get("status") or "")) for r in recipients),
            ses_message_id=ses_message_id, notice_id=notice_id, at=_time(bounce.get("timestamp")),
        )  # fmt: skip
    if event_type == "Complaint":
        complaint = _dict(document.get("complaint"))
        recipients = [
            r for r in _list(complaint.get("complainedRecipients"), "complainedRecipients") if isinstance(r, dict)
        ]
        return FeedbackEvent(
            kind="complaint", event_type=event_type,
            feedback_id=str(complaint.get("feedbackId") or f"{ses_message_id}:complaint"),
            addresses=tuple(str(r.get("emailAddress", "")) for r in recipients),
            complaint_type=str(complaint.get("complaintFeedbackType") or ""),
            ses_message_id=ses_message_id, notice_id=notice_id, at=_time(complaint.get("timestamp")),
        )  # fmt: skip
    if not event_type:
        raise InvalidFeedback("neither eventType nor notificationType")
    return FeedbackEvent(kind="other", event_type=event_type, feedback_id=str(ses_message_id or ""), addresses=())


def _list(value: Any, name: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidFeedback(f"{name} is not a list")
    return value


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _notice_header(mail: dict[str, Any]) -> str | None:
    for header in mail.get("headers", []) if isinstance(mail.get("headers"), list) else []:
        if isinstance(header, dict) and str(header.get("name", "")).lower() == "x-optout-notice":
            return str(header.get("value"))[:128]
    return None


class Feedback:
    def __init__(
        self,
        settings: FeedbackSettings,
        store: SuppressionStore,
        pepper: Callable[[], bytes],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.store = store
        self.pepper = pepper
        self.now = now

    def handle(self, event: FeedbackEvent) -> FeedbackOutcome:
        if event.kind == "other":
            return FeedbackOutcome("other", 0, 0, ignored=True)
        changed = duplicates = 0
        for index, raw in enumerate(event.addresses):
            try:
                normalised = normalise_email(raw)
            except InvalidAddress:
                continue
            key = address_key(self.pepper(), "email", normalised)
            once = OnceMarker(f"ses#{event.feedback_id}#{key[:32]}")
            evidence = {
                "feedback_id": event.feedback_id[:200],
                "ses_message_id": event.ses_message_id or "",
                "notice_id": event.notice_id or "",
            }
            try:
                if event.kind == "complaint":
                    evidence["complaint_type"] = event.complaint_type or ""
                    outcome = change_consent(
                        self.store, key, "email", [ConsentChange("opt_out", OPTIONAL_SCOPE)],
                        self.settings.optional_topics, "complaint", evidence=evidence, now=self.now, once=once,
                    )  # fmt: skip
                    changed += outcome.changed
                    if not outcome.changed:
                        self._record_ignored(key, evidence, "already opted out of optional topics", once, "complaint")
                    continue
                evidence["bounce_type"] = event.bounce_type or ""
                evidence["bounce_subtype"] = event.bounce_subtype or ""
                evidence["diagnostic"] = event.diagnostics[index] if index < len(event.diagnostics) else ""
                changed += self._bounce(key, event, evidence, once)
            except AlreadyProcessed:
                duplicates += 1
        return FeedbackOutcome(event.kind, changed, duplicates)

    def _bounce(self, key: str, event: FeedbackEvent, evidence: dict[str, str], once: OnceMarker | None) -> int:
        reason = "bounce" if event.bounce_type == "Permanent" else None
        if reason is None:
            # A transient (or undetermined) bounce: recorded; enough of them in the window block.
            at = self.now()
            window = at - timedelta(days=self.settings.transient_bounce_window_days)
            recent = [e for e in self.store.history(key) if e.action == "soft_bounce" and e.at >= window]
            soft = ConsentEvent(action="soft_bounce", scope=CHANNEL_SCOPE, source="bounce", at=at, evidence=evidence)
            # The soft bounce claims this event once: a redelivery counts nothing twice.
            self.store.record(key, [soft], once)
            if len(recent) + 1 < self.settings.transient_bounce_limit:
                return 0
            reason = "transient_bounces"
            once = None  # already claimed by the soft bounce above
        outcome = change_consent(
            self.store, key, "email", [ConsentChange("block", CHANNEL_SCOPE, reason)],
            self.settings.optional_topics, "bounce", evidence=evidence, now=self.now, once=once,
        )  # fmt: skip
        if not outcome.changed:
            self._record_ignored(key, evidence, "already blocked", once, "bounce")
        return int(outcome.changed)

    def _record_ignored(
        self,
        key: str,
        evidence: dict[str, str],
        why: str,
        once: OnceMarker | None,
        source: Literal["bounce", "complaint"],
    ) -> None:
        event = ConsentEvent(
            action="ignored", scope=CHANNEL_SCOPE, source=source, at=self.now(), evidence={**evidence, "reason": why}
        )
        self.store.record(key, [event], once)
