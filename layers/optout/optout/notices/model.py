"""What a notice is: the admin's request, the stored notice, delivery decisions and counts."""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    Field,
    StringConstraints,
    TypeAdapter,
    model_validator,
)

Kind = Literal["policy_change", "change_of_control", "breach_alert", "product", "marketing"]
NOTICE_KINDS: tuple[str, ...] = get_args(Kind)  # the tag of NoticeRequest's union
# The kinds a privacy policy promises to post publicly (optout.notices.public)
PUBLISHABLE: tuple[Kind, ...] = ("policy_change", "change_of_control", "breach_alert")
ChannelName = Literal["email", "sms"]
Mode = Literal["all", "first_available"]
# "duplicate": the dispatcher dropped it, the recipient id or the address on that channel was
# listed before in the manifest (DESIGN §4); the sender never decides it.
# "unknown": the provider call that carried it may or may not have delivered (its answer was lost,
# a 5xx, or the sender died while it was in flight). SES and SNS have no idempotency key, so it is
# never sent again: it is final and listed for follow-up by hand. Records stored before "unknown"
# existed say "failed" with a reason that contains "outcome unknown".
Decision = Literal["sent", "suppressed", "deferred", "unreachable", "failed", "duplicate", "unknown"]
Status = Literal["queued", "dispatching", "sending", "complete", "complete_with_failures", "failed"]
DECISIONS: tuple[Decision, ...] = ("sent", "suppressed", "deferred", "unreachable", "failed", "duplicate", "unknown")
# A notice ends complete_with_failures when any recipient ended in one of these: each needs a person
NEEDS_FOLLOW_UP: tuple[Decision, ...] = ("failed", "unknown")
FINAL_STATUSES: tuple[Status, ...] = ("complete", "complete_with_failures", "failed")

TOPIC_OF: dict[Kind, str] = {
    "policy_change": "policy",
    "change_of_control": "policy",  # a required notice: the user must learn of it and of their choices
    "breach_alert": "security",
    "product": "product",
    "marketing": "marketing",
}
DEFAULT_CHANNELS: dict[Kind, tuple[list[ChannelName], Mode]] = {
    "policy_change": (["email"], "all"),
    "change_of_control": (["email", "sms"], "all"),
    "breach_alert": (["email", "sms"], "all"),
    "product": (["email"], "all"),
    "marketing": (["email"], "all"),
}


_UNPRINTABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # Unicode's Cc but tab, LF and CR


def _printable(value: Any) -> Any:
    """Refuse controls other than tab and line breaks: they say nothing to a reader, and each would
    be stored 6 bytes long (JSON escapes them) in the notice and its dry run's sample."""
    if isinstance(value, str) and (found := _UNPRINTABLE.search(value)):
        raise ValueError(
            f"control characters other than tab and line breaks are not allowed (found U+{ord(found.group()):04X})"
        )
    return value


Text = Annotated[
    str, BeforeValidator(_printable), StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)
]
ShortText = Annotated[
    str, BeforeValidator(_printable), StringConstraints(strip_whitespace=True, min_length=1, max_length=200)
]


def _single_line(value: Any) -> Any:
    """Refuse what would break or fold a mail header: every control (Cc: CR, LF, VT, FF, NEL, tab),
    the line and paragraph separators (U+2028, U+2029) and lone surrogates, wherever they sit.

    Checked before whitespace is stripped, so a trailing newline is refused too, not silently dropped.
    """
    if isinstance(value, str):
        for char in value:
            if unicodedata.category(char) in ("Cc", "Zl", "Zp", "Cs"):
                raise ValueError(
                    f"must be one line: control and line-separator characters are not allowed (found U+{ord(char):04X})"
                )
    return value


# A field that is, or may be formatted into, a mail header (Subject)
HeaderText = Annotated[ShortText, BeforeValidator(_single_line)]


def _discovered(value: datetime) -> datetime:
    """When the breach was discovered: the 72-hour clock runs from it, so it is never naive or ahead."""
    if value.tzinfo is None:
        raise ValueError("needs a time zone, e.g. 2026-11-20T09:30:00Z")
    if value > datetime.now(UTC):
        raise ValueError("must not lie in the future: give when the breach was discovered")
    return value


_URL: TypeAdapter[AnyHttpUrl] = TypeAdapter(AnyHttpUrl)
CONTACT_FORMS = "an email address, an http(s) web address or a phone number in international form (+...)"


def _contact_point(value: str) -> str:
    """GDPR Art. 34's contact point, sent to every recipient: it must be one they can use.

    Kept as written; the address normalisers only decide whether it is one.
    """
    from optout.core.errors import InvalidAddress
    from optout.core.identity import normalise_email, normalise_phone

    if value.lower().startswith(("http://", "https://")):
        if any(char.isspace() for char in value):
            raise ValueError("a web address has no spaces")
        _URL.validate_python(value)
        return value
    try:
        if "@" in value:
            normalise_email(value)
        elif value.startswith(("+", "00")):
            normalise_phone(value)
        else:
            raise ValueError(f"must be {CONTACT_FORMS}")
    except InvalidAddress as exc:
        raise ValueError(f"must be {CONTACT_FORMS}: {exc.message}") from None
    return value


S3Uri = Annotated[str, StringConstraints(pattern=r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]/.+$", max_length=1024)]


class PolicyChangeVariables(BaseModel, extra="forbid"):
    policy_version: HeaderText  # offered to the subject's wording
    effective_date: date
    summary: Text
    policy_url: AnyHttpUrl


class ChangeOfControlVariables(BaseModel, extra="forbid"):
    """A merger, an acquisition or a sale of assets: who takes control, from when, what changes,
    and where the user exercises their choices (export, deletion; the mail adds their preferences)."""

    new_controller: HeaderText  # set into the subject and the SMS as written
    effective_date: date
    summary: Text
    choices_url: AnyHttpUrl


class BreachAlertVariables(BaseModel, extra="forbid"):
    """GDPR Art. 34 asks for the nature, the contact point, likely consequences and measures."""

    discovered_at: Annotated[datetime, AfterValidator(_discovered)]
    nature: Text
    data_categories: list[ShortText] = Field(min_length=1, max_length=50)
    likely_consequences: Text
    measures_taken: Text
    # one line: it is set into the SMS and the mail as written
    contact: Annotated[ShortText, BeforeValidator(_single_line), AfterValidator(_contact_point)]
    # What Art. 33(3) adds for the supervisory authority (optout notice report --format art33); none
    # of it is sent to recipients. Without subjects_concerned the report gives the notice's recipients.
    subject_categories: list[ShortText] | None = Field(default=None, min_length=1, max_length=50)
    subjects_concerned: Annotated[int, Field(strict=True, ge=1, le=10_000_000_000)] | None = None
    records_concerned: Annotated[int, Field(strict=True, ge=1, le=10_000_000_000_000)] | None = None
    measures_proposed: Text | None = None
    # Art. 34(3)(c): when the alert completes with anyone unreachable (no usable channel), the
    # dispatcher publishes its public communication (GET /notices) by itself
    publish_if_unreachable: Annotated[bool, Field(strict=True)] = False


def _known_variables(value: str) -> str:
    """A body's ``{{ … }}`` name a manifest value, or are refused: a typo never goes out as written."""
    from optout.notices.markdown import VARIABLES, unknown_variables

    unknown = unknown_variables(value)
    if unknown:
        names = ", ".join("{{ " + name + " }}" for name in unknown)
        known = ", ".join("{{ " + name + " }}" for name in VARIABLES)
        raise ValueError(f"unknown variable {names}: a body may use {known}; write \\{{{{ for the braces themselves")
    return value


class FreeContentVariables(BaseModel, extra="forbid"):
    subject: HeaderText
    # Markdown (optout.notices.markdown). Characters bound the request; the notice's stored bytes are
    # checked where it is stored (NoticeStore.create)
    body: Annotated[
        str,
        BeforeValidator(_printable),
        StringConstraints(strip_whitespace=True, min_length=1, max_length=100_000),
        AfterValidator(_known_variables),
    ]
    sms_text: (
        Annotated[
            str, BeforeValidator(_printable), StringConstraints(strip_whitespace=True, min_length=1, max_length=600)
        ]
        | None
    ) = None


class ChannelSpec(BaseModel, extra="forbid"):
    channels: list[ChannelName] = Field(min_length=1, max_length=2)
    mode: Mode = "all"

    @model_validator(mode="after")
    def _unique(self) -> ChannelSpec:
        if len(set(self.channels)) != len(self.channels):
            raise ValueError("channels must not repeat")
        return self


class _NoticeRequest(BaseModel, extra="forbid"):
    """POST /admin/notices: what every kind shares."""

    channels: ChannelSpec | None = None
    manifest: S3Uri
    dry_run: bool = False
    # Shown on the public page (GET /notices) from its creation until ``until``, or until withdrawn:
    # a policy change, a change of control, a breach alert's public communication (Art. 34(3)(c))
    publish: bool = False
    until: AwareDatetime | None = None

    kind: Kind
    variables: BaseModel

    @model_validator(mode="after")
    def _publishable(self) -> _NoticeRequest:
        if self.until is not None and not self.publish:
            raise ValueError("until is the end of a publication: set publish too")
        if self.publish and self.kind not in PUBLISHABLE:
            raise ValueError(f"publish: a {self.kind} notice is not published; only {', '.join(PUBLISHABLE)}")
        return self

    def channel_spec(self) -> ChannelSpec:
        if self.channels is not None:
            return self.channels
        channels, mode = DEFAULT_CHANNELS[self.kind]
        return ChannelSpec(channels=list(channels), mode=mode)


class PolicyChangeRequest(_NoticeRequest):
    kind: Literal["policy_change"]
    variables: PolicyChangeVariables


class ChangeOfControlRequest(_NoticeRequest):
    kind: Literal["change_of_control"]
    variables: ChangeOfControlVariables


class BreachAlertRequest(_NoticeRequest):
    kind: Literal["breach_alert"]
    variables: BreachAlertVariables


class ProductRequest(_NoticeRequest):
    kind: Literal["product"]
    variables: FreeContentVariables


class MarketingRequest(_NoticeRequest):
    kind: Literal["marketing"]
    variables: FreeContentVariables


NoticeRequest = Annotated[
    PolicyChangeRequest | ChangeOfControlRequest | BreachAlertRequest | ProductRequest | MarketingRequest,
    Field(discriminator="kind"),
]
NOTICE_REQUEST: TypeAdapter[NoticeRequest] = TypeAdapter(NoticeRequest)


class Counts(BaseModel):
    """Per channel and decision (``email.sent``), plus per recipient (``recipients.sent``)."""

    by_channel: dict[str, dict[str, int]] = Field(default_factory=dict)
    recipients: dict[str, int] = Field(default_factory=dict)

    def recipient_total(self) -> int:
        return sum(v for k, v in self.recipients.items() if k != "deferred")


class People(BaseModel):
    """The persons a manifest lists, as the dispatcher counted them: a person is a recipient id,
    however many rows list it. Each listed person is decided once (``Counts.recipients``), unless
    none of their rows has a usable address, or every address they have was listed before."""

    listed: int = 0  # distinct valid recipient ids
    without_address: int = 0  # listed only on bad rows: no usable channel, so unreachable
    shared: int = 0  # every address listed before under another id: sent (or not) through that one


class BadRow(BaseModel):
    """A manifest row and what is wrong with it: refused (a bad row), or kept with a warning."""

    line: int
    reason: str
    # Its id, if valid: a person with no usable address is unreachable. Never stored with the sample.
    recipient_id: str | None = Field(default=None, exclude=True)


class Notice(BaseModel):
    id: str
    kind: Kind
    topic: str
    channels: list[ChannelName]
    mode: Mode
    variables: dict[str, Any]
    manifest: str
    dry_run: bool = False
    status: Status = "queued"
    created_by: str
    created_at: datetime
    updated_at: datetime
    total: int | None = None  # recipients dispatched, known once the manifest is read to its end
    rows_read: int = 0
    bad_rows: int = 0
    bad_row_samples: list[BadRow] = Field(default_factory=list)
    warnings: int = 0  # rows kept for their usable channels: what of them could not be used
    warning_samples: list[BadRow] = Field(default_factory=list)  # with the bad rows' samples, at most 1000
    people: People | None = None  # None: dispatched before people were counted
    counts: Counts = Field(default_factory=Counts)
    discovered_at: datetime | None = None
    first_sent_at: datetime | None = None
    last_sent_at: datetime | None = None
    dry_run_result: dict[str, Any] | None = None
    error: str | None = None
    # When the texts held back for quiet hours are due, one time per batch that held some: in the
    # past once they went. Whoever waits on the notice is told until when.
    deferred_until: list[datetime] = Field(default_factory=list)

    def reach(self) -> dict[str, int] | None:
        """Who the notice reached, in people (recipient ids), not rows; a dry run's, as it would.

        Reached: sent on at least one channel. Unreachable: no usable channel (blocked, no
        address, or only bad rows): they need substitute notice. Pending: not decided yet
        (dispatching, or deferred).
        """
        if self.people is None:
            return None
        decided = (self.dry_run_result or {}).get("recipients", {}) if self.dry_run else self.counts.recipients
        report = {
            "people": self.people.listed,
            "reached": decided.get("sent", 0),
            "unreachable": decided.get("unreachable", 0) + self.people.without_address,
            "shared_address": self.people.shared,
            **{d: decided.get(d, 0) for d in ("suppressed", "failed", "unknown")},
        }
        report["pending"] = max(0, self.people.listed - sum(v for k, v in report.items() if k != "people"))
        return report

    def breach_report(self) -> dict[str, Any] | None:
        """For breach alerts: time to notify, the reach in people, and whether every reachable
        person was notified within 72 hours (none failed, unknown or still pending)."""
        if self.kind != "breach_alert" or self.discovered_at is None:
            return None
        report: dict[str, Any] = {"discovered_at": self.discovered_at.isoformat()}
        reach = self.reach()
        if reach is not None:
            report |= {k: reach[k] for k in ("people", "reached", "unreachable")}
        if self.first_sent_at is not None:
            report["first_sent_at"] = self.first_sent_at.isoformat()
        if self.last_sent_at is not None:
            hours = (self.last_sent_at - self.discovered_at).total_seconds() / 3600
            report["last_sent_at"] = self.last_sent_at.isoformat()
            report["hours_to_notify"] = round(hours, 2)
            done = self.status in ("complete", "complete_with_failures")
            # A notice dispatched before people were counted (reach None) says what it said then
            told = reach is None or reach["failed"] == reach["unknown"] == reach["pending"] == 0
            report["all_reachable_notified_within_72h"] = done and hours <= 72 and told
        return report

    def summary(self) -> dict[str, Any]:
        """What a listing shows of a notice: what it is, where it stands, whom it reached."""
        return {
            **self.model_dump(mode="json", include={"id", "kind", "topic", "channels", "dry_run", "status",
                                                    "created_by", "created_at", "updated_at", "total"}),
            "recipients": dict(self.counts.recipients),
            "reach": self.reach(),
        }  # fmt: skip

    def public(self) -> dict[str, Any]:
        document = self.model_dump(mode="json")
        document["reach"] = self.reach()
        document["breach"] = self.breach_report()
        return document


class PublishRequest(BaseModel, extra="forbid"):
    """POST /admin/notices/{id}/publish: shown from now until ``until`` (or until withdrawn)."""

    until: AwareDatetime | None = None


class Recipient(BaseModel, frozen=True):
    """One manifest row, addresses normalised; travels in a send batch."""

    recipient_id: str
    email: str | None = None
    phone: str | None = None
    locale: str = "en"
    timezone: str | None = None
    name: str | None = None
    line: int = 0
    # What of the row could not be used (manifest.recipient): reported once by the dispatcher, never sent on
    warning: str | None = Field(default=None, exclude=True)


class DeliveryRecord(BaseModel):
    notice_id: str
    recipient_id: str
    channel: ChannelName | Literal["none"]
    address_key: str | None = None
    decision: Decision
    reason: str | None = None
    provider_message_id: str | None = None
    at: datetime
    # When the sender read the suppression state and decided (a batch's records are written after
    # its calls): what the compliance report judges a send by. None: recorded before it was kept.
    decided_at: datetime | None = None


class BatchEntry(BaseModel):
    recipient: Recipient
    only: list[ChannelName] | None = None  # a deferred or retried entry: just these channels
    previous: Literal["deferred"] | None = None  # counted as deferred before; move it on
    deferred: list[ChannelName] | None = None  # of ``only``, those counted deferred (None: all)
    attempt: int = 0
    settled: list[Decision] = Field(default_factory=list, max_length=2)  # the other channels' decisions


class SendBatch(BaseModel):
    """One SendQueue message: at most 50 recipients of one notice."""

    notice_id: str
    batch: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    entries: list[BatchEntry] = Field(min_length=1, max_length=50)
    hop: int = 0


def pseudonym(pepper: bytes, notice_id: str, recipient_id: str) -> str:
    """The recipient id an erased delivery record carries: the same for one recipient of one notice
    (so its channels stay together), and not computable without the pepper."""
    digest = hmac.new(pepper, f"erased:{notice_id}:{recipient_id}".encode(), hashlib.sha256).hexdigest()
    return f"erased.{digest[:24]}"
