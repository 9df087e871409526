"""Settings: one model per function, composed from parts, read from the environment at init.

Every variable is ``OPTOUT_`` and the field's name in capitals (``OPTOUT_SUPPRESSION_TABLE``),
except the region, which Lambda sets as ``AWS_REGION``. Each part holds what one concern needs,
and requires what it cannot work without: a function that keeps suppressions cannot start
without ``OPTOUT_SUPPRESSION_TABLE``. A function's model lists the parts the code it calls reads,
so a missing or bad variable fails its cold start with a message that names the variable,
instead of failing at the first AWS call. ``optout.wiring`` reads them once per cold start.

``Settings`` is every part in one model with nothing required, for tools and tests that run
beside a stack and belong to no function.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import cache
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

TopicKind = Literal["optional", "required"]
ResourceName = Annotated[str, Field(min_length=1)]  # a table, queue URL or secret id: required where declared


class Topic(BaseModel, frozen=True):
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    kind: TopicKind

    @property
    def optional(self) -> bool:
        return self.kind == "optional"


DEFAULT_TOPICS: tuple[Topic, ...] = (
    Topic(name="marketing", kind="optional"),
    Topic(name="product", kind="optional"),
    Topic(name="policy", kind="required"),
    Topic(name="security", kind="required"),
)


class SettingsError(RuntimeError):
    """The environment lacks a variable the function needs, or holds a bad value: it cannot start."""


_ENVIRON = "optout.core.settings.environ"  # the validation context key from_env passes its mapping under


class OptoutSettings(BaseModel):
    """The base of every part and model: ``OPTOUT_`` variables, an empty one counting as unset.

    A field is read from ``OPTOUT_`` and its name (its validation aliases instead, in order, if it
    has them), whatever the case of the variable's name. A value given to the constructor wins over
    the environment, which ``Model()`` reads as it validates; ``from_env`` reads a given mapping
    instead. A field whose value is JSON (a list of topics) decodes it in a ``before`` validator.
    """

    model_config = ConfigDict(
        extra="ignore",
        frozen=True,
        validate_by_name=True,
        validate_default=True,
        defer_build=True,  # a part's schema is built only if it is read on its own: cheap imports
    )
    env_prefix: ClassVar[str] = "OPTOUT_"

    @model_validator(mode="before")
    @classmethod
    def _read_environment(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, Mapping):
            return data
        context = info.context
        environ = context.get(_ENVIRON) if isinstance(context, Mapping) else None
        return _values(cls, data, os.environ if environ is None else environ)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Read this model from ``environ`` (this process's environment if None), or raise SettingsError."""
        try:
            return cls.model_validate({}, context={_ENVIRON: os.environ if environ is None else environ})
        except ValidationError as exc:
            problems = "; ".join(_problem(cls, error) for error in exc.errors())
            raise SettingsError(f"{cls.__name__}: {problems}") from None

    @classmethod
    def variable(cls, field: str) -> str:
        """The environment variable (or variables, in order) a field is read from."""
        info = cls.model_fields[field]
        if isinstance(info.validation_alias, AliasChoices):
            return " or ".join(str(choice) for choice in info.validation_alias.choices)
        return f"{cls.env_prefix}{field}".upper()


_Lookup = tuple[str, tuple[str, ...], tuple[tuple[str, str], ...]]  # a field, its keys, its variables


@cache
def _lookups(model: type[OptoutSettings]) -> tuple[_Lookup, ...]:
    """For each field: its name, the keys a value given in code may use, and the variables to read, in order.

    All in lower case but the key a variable's value is validated under: the alias it matched, so
    that an error names the variable the value came from, else the field's name. An aliased field
    is read from its aliases, then from the prefix and its name, as pydantic-settings read it.
    """
    lookups: list[_Lookup] = []
    for name, info in model.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            aliases = [choice for choice in alias.choices if isinstance(choice, str)]
        else:
            aliases = [alias] if isinstance(alias, str) else []
        variables = {a.lower(): a for a in aliases}
        variables.setdefault(f"{model.env_prefix}{name}".lower(), name)
        keys = tuple(dict.fromkeys([*(a.lower() for a in aliases), name.lower()]))
        lookups.append((name, keys, tuple(variables.items())))
    return tuple(lookups)


def _values(model: type[OptoutSettings], given: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """What to validate: for each field, a value ``given`` in code, else the first of its variables that is set."""
    env = {k.lower(): v for k, v in environ.items() if v != ""}  # an empty variable counts as unset
    given_by_key: dict[str, str] = {}
    for key in given:
        given_by_key.setdefault(key.lower(), key)
    values: dict[str, Any] = {}
    taken: set[str] = set()
    for name, keys, variables in _lookups(model):
        matched = [given_by_key[k] for k in keys if k in given_by_key and given_by_key[k] not in taken]
        if matched:
            taken.update(matched)
            values[name] = given[matched[0]]
            continue
        for variable, key in variables:
            if variable in env:
                values[key] = env[variable]
                break
    values.update((k, v) for k, v in given.items() if k not in taken)  # the rest: extra, so ignored
    return values


def _problem(model: type[OptoutSettings], error: Any) -> str:
    loc = error.get("loc") or ()
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if not loc:  # a rule across variables: its message names them
        return message
    head = str(loc[0])
    name = model.variable(head) if head in model.model_fields else head.upper()
    path = name + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[1:])
    if error.get("type") == "missing":
        return f"{path} is not set"
    value = error.get("input")
    shown = f"={str(value)[:80]!r}" if len(loc) == 1 and isinstance(value, str | int | float) else ""
    return f"{path}{shown}: {message}"


# --- parts ----------------------------------------------------------------------------------


class BrandSettings(OptoutSettings):
    brand_name: str = "Example Co"


class TopicSettings(OptoutSettings):
    topics: tuple[Topic, ...] = DEFAULT_TOPICS  # OPTOUT_TOPICS: a JSON list

    @field_validator("topics", mode="before")
    @classmethod
    def _json(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    @field_validator("topics")
    @classmethod
    def _unique_topics(cls, topics: tuple[Topic, ...]) -> tuple[Topic, ...]:
        names = [t.name for t in topics]
        if len(set(names)) != len(names):
            raise ValueError("topic names must be unique")
        return topics

    def topic(self, name: str) -> Topic | None:
        return next((t for t in self.topics if t.name == name), None)

    @property
    def optional_topics(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.topics if t.optional)

    @property
    def required_topics(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.topics if not t.optional)


class SecretSettings(OptoutSettings):
    """Secrets are cached this long, so a rotated key ring reaches every function within it."""

    secrets_max_age_seconds: int = Field(default=300, ge=0)


class SuppressionStoreSettings(OptoutSettings):
    suppression_table: ResourceName


class AddressKeySettings(SecretSettings):
    """The pepper of the keyed hash that turns an address into its suppression key."""

    pepper_secret: ResourceName


class TokenSettings(SecretSettings):
    """The key ring that signs and verifies unsubscribe tokens, and how long they hold."""

    signing_keys_secret: ResourceName
    token_ttl_days: int = Field(default=365, ge=60)
    key_grace_days: int = Field(default=365, ge=60)


class FormSettings(OptoutSettings):
    max_form_bytes: int = Field(default=8192, ge=256)


class PublicUrlSettings(OptoutSettings):
    """The public base URL (a custom domain); empty means the HTTP API's own URL."""

    public_base_url: str = ""


class LinkSettings(PublicUrlSettings):
    api_id: str = ""
    region: str = Field(default="", validation_alias=AliasChoices("OPTOUT_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"))

    @property
    def links_base_url(self) -> str:
        """Where links point: PublicBaseUrl, else the HTTP API's own execute-api URL."""
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        if self.api_id and self.region:
            return f"https://{self.api_id}.execute-api.{self.region}.amazonaws.com"
        return ""


class LinkRequestSettings(LinkSettings):
    """The "email me a new link" form (POST /preferences): who mails it, and how often each address and IP may ask.

    Counted per fixed window of ``link_request_window_seconds``; a request over either limit gets
    the same answer as any other and sends nothing.
    """

    sender_address: str = "notices@example.com"
    ses_configuration_set: str = ""
    link_requests_per_address: int = Field(default=3, ge=1)
    link_requests_per_ip: int = Field(default=20, ge=1)
    link_request_window_seconds: int = Field(default=3600, ge=60)


class SmsSettings(OptoutSettings):
    """Outbound SMS: SNS Publish, or End User Messaging from an origination identity."""

    sms_provider: Literal["sns", "end-user-messaging"] = "sns"
    sms_origination_identity: str = ""
    sms_configuration_set: str = ""
    sms_opt_out_list: str = ""
    sms_sender_id: str = ""

    @model_validator(mode="after")
    def _origination_for_end_user_messaging(self) -> Self:
        if self.sms_provider == "end-user-messaging" and not self.sms_origination_identity:
            raise ValueError(
                "OPTOUT_SMS_ORIGINATION_IDENTITY is required when OPTOUT_SMS_PROVIDER is end-user-messaging"
            )
        return self


class KeywordBookSettings(OptoutSettings):
    """The SMS keywords and replies: the packaged file unless OPTOUT_SMS_KEYWORDS_FILE names another."""

    support_contact: str = "support@example.com"
    sms_keywords_file: str = ""


class TwilioSettings(SecretSettings):
    twilio_auth_token_secret: ResourceName


class NoticeStoreSettings(OptoutSettings):
    notices_table: ResourceName


class ManifestBucketSettings(OptoutSettings):
    """The stack's own manifest bucket: the only one the dispatcher may read manifests from."""

    manifest_bucket: ResourceName


class DispatchQueueSettings(OptoutSettings):
    dispatch_queue_url: ResourceName


class SendQueueSettings(OptoutSettings):
    send_queue_url: ResourceName


class InboundSmsQueueSettings(OptoutSettings):
    """InboundSmsQueue: where a webhook that cannot record its message inline hands it off."""

    inbound_sms_queue_url: ResourceName


class EvidenceSettings(OptoutSettings):
    """How long delivery evidence is kept (EvidenceRetentionDays): DynamoDB's TTL deletes it then."""

    evidence_retention_days: int = Field(default=1095, ge=1)


class NoticeSettings(BrandSettings, LinkSettings):
    """What a notice says and where its links point, for the sender and the dispatcher's dry runs."""

    sender_address: str = "notices@example.com"
    default_timezone: str = "America/New_York"


class DeliverySettings(OptoutSettings):
    """How the sender paces and retries.

    ``email_rate_per_second``: recipients a second per sender instance, or ``auto``: the account's
    SES quota (GetAccount) spread over ``sender_concurrency`` instances, the sender's reserved
    concurrency (``channels.pacing.SesPace``).
    """

    ses_configuration_set: str = ""
    email_rate_per_second: Literal["auto"] | float = "auto"
    sender_concurrency: int = Field(default=1, ge=1)

    @field_validator("email_rate_per_second", mode="before")
    @classmethod
    def _auto_or_positive(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        try:
            rate = float(value)
        except (TypeError, ValueError):
            raise ValueError("must be auto or a number of recipients a second") from None
        if not rate > 0:  # NaN too
            raise ValueError("must be auto or greater than 0")
        return rate

    sms_rate_per_second: float = Field(default=20.0, gt=0)
    send_retry_limit: int = Field(default=5, ge=0)


class BounceSettings(OptoutSettings):
    """Transient bounces block an address once this many arrive within the window."""

    transient_bounce_limit: int = Field(default=3, ge=1)
    transient_bounce_window_days: int = Field(default=7, ge=1)


# --- one model per function -----------------------------------------------------------------


class PublicNoticeSettings(OptoutSettings):
    """GET /notices and /notices.json (read from the NoticesTable): how long browsers and CDNs may keep them."""

    public_notices_max_age: int = Field(default=300, ge=0, le=86400)


class UnsubscribeSettings(
    SuppressionStoreSettings, TokenSettings, TopicSettings, BrandSettings, FormSettings, AddressKeySettings,
    LinkRequestSettings, NoticeStoreSettings, PublicNoticeSettings,
):  # fmt: skip
    """Unsubscribe: verifies the link's token and changes consent; the token carries the address key.

    It also mails a fresh link to an address typed into /preferences, so it keys addresses (the
    pepper) and needs a base for the links it mails; and it serves the public notices.
    """

    @model_validator(mode="after")
    def _links_have_a_base(self) -> Self:
        if not self.links_base_url:
            raise ValueError(
                "OPTOUT_PUBLIC_BASE_URL, or OPTOUT_API_ID with AWS_REGION, is required: /preferences mails links"
            )
        return self


class SmsKeywordSettings(
    SuppressionStoreSettings, AddressKeySettings, TopicSettings, BrandSettings, KeywordBookSettings, SmsSettings,
    FormSettings,
):  # fmt: skip
    """The keyword engine behind both inbound SMS paths: STOP, START and HELP, and their replies."""


class SmsWebhookSettings(SmsKeywordSettings, TwilioSettings, PublicUrlSettings, InboundSmsQueueSettings):
    """SmsWebhook: Twilio-style webhooks, verified against the auth token and the public URL; handed
    to InboundSmsQueue when they cannot be recorded inline."""


class SmsInboundSettings(SmsKeywordSettings):
    """SmsInbound: End User Messaging two-way SMS from the queue, replied to by SMS."""


class FeedbackSettings(SuppressionStoreSettings, AddressKeySettings, TopicSettings, BounceSettings):
    """Feedback: SES bounces and complaints."""


class AdminApiSettings(
    SuppressionStoreSettings, AddressKeySettings, TopicSettings, NoticeStoreSettings, DispatchQueueSettings,
    ManifestBucketSettings, TokenSettings,
):  # fmt: skip
    """AdminApi: creates notices (queued for the dispatcher), administers suppressions and issues links."""


class DispatcherSettings(
    SuppressionStoreSettings, AddressKeySettings, TopicSettings, NoticeStoreSettings, DispatchQueueSettings,
    SendQueueSettings, NoticeSettings, EvidenceSettings,
):  # fmt: skip
    """Dispatcher: streams a manifest into send batches, or decides a dry run."""


class SenderSettings(
    SuppressionStoreSettings, AddressKeySettings, TokenSettings, TopicSettings, NoticeStoreSettings,
    SendQueueSettings, NoticeSettings, DeliverySettings, SmsSettings, EvidenceSettings,
):  # fmt: skip
    """Sender: sends each batch by email and SMS, every mail with its unsubscribe link."""

    @model_validator(mode="after")
    def _links_have_a_base(self) -> Self:
        if not self.links_base_url:
            raise ValueError(
                "OPTOUT_PUBLIC_BASE_URL, or OPTOUT_API_ID with AWS_REGION, is required: mails link to /unsubscribe"
            )
        return self


class Settings(
    SuppressionStoreSettings, AddressKeySettings, TokenSettings, TopicSettings, NoticeStoreSettings,
    DispatchQueueSettings, SendQueueSettings, TwilioSettings, NoticeSettings, DeliverySettings, SmsSettings,
    KeywordBookSettings, FormSettings, BounceSettings, ManifestBucketSettings, LinkRequestSettings,
    EvidenceSettings, PublicNoticeSettings,
):  # fmt: skip
    """Every part with nothing required: for tools and tests beside a stack. Functions never read it."""

    suppression_table: str = ""
    pepper_secret: str = ""
    signing_keys_secret: str = ""
    twilio_auth_token_secret: str = ""
    notices_table: str = ""
    dispatch_queue_url: str = ""
    send_queue_url: str = ""
    manifest_bucket: str = ""
    # In the template's Globals; no function reads it yet.
    environment: str = "dev"


def get_settings() -> Settings:
    """Every setting as the environment holds it now, for tools and tests beside a stack."""
    return Settings.from_env()
