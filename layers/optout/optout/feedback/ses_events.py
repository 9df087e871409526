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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from optout.core.errors import InvalidAddress, OptoutError
from optout.core.identity import EMAIL_IN_TEXT, address_key, normalise_email
from optout.core.settings import FeedbackSettings
from optout.suppression.consent import ConsentOutcome, Unchanged, change_consent
from optout.suppression.model import CHANNEL_SCOPE, OPTIONAL_SCOPE, ConsentChange, ConsentEvent, SuppressionState
from optout.suppression.store import OnceMarker, SuppressionStore

Kind = Literal["bounce", "complaint", "other"]


class InvalidFeedback(OptoutError):
    code = "invalid_feedback"


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
    return EMAIL_IN_TEXT.sub("[redacted]", text)[:300]


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
            if event.at is not None:  # when SES received it: the compliance report's clock starts there
                evidence["received_at"] = event.at.isoformat()
            if event.kind == "complaint":
                evidence["complaint_type"] = event.complaint_type or ""
                outcome = self._complaint(key, evidence, once)
            else:
                evidence["bounce_type"] = event.bounce_type or ""
                evidence["bounce_subtype"] = event.bounce_subtype or ""
                evidence["diagnostic"] = event.diagnostics[index] if index < len(event.diagnostics) else ""
                outcome = self._bounce(key, event, evidence, once)
            duplicates += outcome.already_processed
            changed += outcome.changed
        return FeedbackOutcome(event.kind, changed, duplicates)

    def _complaint(self, key: str, evidence: dict[str, str], once: OnceMarker) -> ConsentOutcome:
        why = self._ignored(evidence, "already opted out of optional topics", once, "complaint")
        outcome = change_consent(
            self.store, key, "email", [ConsentChange("opt_out", OPTIONAL_SCOPE)], self.settings.optional_topics,
            "complaint", evidence=evidence, now=self.now, once=once, unchanged=lambda _: why,
        )  # fmt: skip
        return outcome

    def _bounce(self, key: str, event: FeedbackEvent, evidence: dict[str, str], once: OnceMarker) -> ConsentOutcome:
        """Block on a permanent bounce, or on the transient one that reaches the limit in the window.

        A transient bounce's own event, the block it may cause and its once marker are one write:
        a failed write leaves nothing claimed, so the redelivery blocks (never a block that waits
        for the next bounce, nor a bounce counted twice).
        """
        permanent = event.bounce_type == "Permanent"
        at = self.now()
        window = at - timedelta(days=self.settings.transient_bounce_window_days)
        soft = [] if permanent else [
            ConsentEvent(action="soft_bounce", scope=CHANNEL_SCOPE, source="bounce", at=at, evidence=evidence)
        ]  # fmt: skip
        block = [ConsentChange("block", CHANNEL_SCOPE, "bounce" if permanent else "transient_bounces")]
        reached = permanent

        def changes(state: SuppressionState) -> list[ConsentChange]:
            nonlocal reached
            if not permanent:
                # Read after the state, so that every soft bounce recorded before that read counts.
                recent = [e for e in self.store.history(key) if e.action == "soft_bounce" and e.at >= window]
                reached = len(recent) + 1 >= self.settings.transient_bounce_limit
            return block if reached else []

        def unchanged(state: SuppressionState) -> Unchanged:
            # A soft bounce under the limit is said by its own event; one that would block says why not.
            return self._ignored(evidence, "already blocked", once, "bounce") if reached else Unchanged((), once)

        outcome = change_consent(
            self.store, key, "email", changes, self.settings.optional_topics, "bounce", evidence=evidence,
            now=self.now, once=once, also=soft, unchanged=unchanged,
        )  # fmt: skip
        return outcome

    def _ignored(
        self, evidence: dict[str, str], why: str, once: OnceMarker, source: Literal["bounce", "complaint"]
    ) -> Unchanged:
        """What a bounce or complaint that changes nothing records: why, with its once marker."""
        event = ConsentEvent(
            action="ignored", scope=CHANNEL_SCOPE, source=source, at=self.now(), evidence={**evidence, "reason": why}
        )
        return Unchanged([event], once)
