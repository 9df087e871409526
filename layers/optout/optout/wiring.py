"""One place that wires: each function's settings, and the services its handler calls.

A handler reads its function's settings here at import, so a missing or bad variable fails the
cold start and names itself; it then asks for its service on every call. Everything is built on
first use and kept until ``reset()``, which tests call after changing the environment: nothing
else in the layer keeps anything built from it. Importing this module imports no use case, so
a function loads only its own (the admin API never loads the sender's Jinja), and boto3 clients
are built when a service first reaches AWS.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar, cast

from optout.core import clients
from optout.core.secrets import SecretStore
from optout.core.settings import (
    AdminApiSettings,
    DispatcherSettings,
    FeedbackSettings,
    OptoutSettings,
    SecretSettings,
    SenderSettings,
    Settings,
    SmsInboundSettings,
    SmsKeywordSettings,
    SmsWebhookSettings,
    TokenSettings,
    UnsubscribeSettings,
)

if TYPE_CHECKING:
    from optout.feedback.ses_events import Feedback
    from optout.notices.admin import NoticeAdmin
    from optout.notices.dispatch import Dispatcher
    from optout.notices.public import PublicNoticeStore
    from optout.notices.send import Sender
    from optout.notices.store import NoticeStore
    from optout.privacy.compliance_admin import OptOutLedger
    from optout.privacy.erasure import SubjectEraser
    from optout.privacy.subject import LinkIssuer, SubjectExport
    from optout.sms.inbound import SmsInbound
    from optout.sms.keywords import KeywordBook
    from optout.suppression.admin import SuppressionAdmin
    from optout.suppression.bulk import SuppressionBulk
    from optout.suppression.store import DynamoSuppressionStore
    from optout.unsubscribe.link_request import LinkRequests
    from optout.unsubscribe.service import Unsubscribe
    from optout.unsubscribe.token import KeyRing

T = TypeVar("T")
S = TypeVar("S", bound=OptoutSettings)

_built: dict[Hashable, Any] = {}
_lock = threading.RLock()  # re-entrant: a service's build asks for its settings


def _once(key: Hashable, build: Callable[[], T]) -> T:
    try:
        return cast(T, _built[key])
    except KeyError:
        pass
    with _lock:
        if key not in _built:
            _built[key] = build()
        return cast(T, _built[key])


def reset() -> None:
    """Forget every setting, service, cached secret and boto3 client (the environment changed)."""
    with _lock:
        _built.clear()
        clients.reset()


# --- each function's settings, read once per cold start ---------------------------------------


def _settings(model: type[S]) -> S:
    return _once(model, model.from_env)


def unsubscribe_settings() -> UnsubscribeSettings:
    return _settings(UnsubscribeSettings)


def sms_webhook_settings() -> SmsWebhookSettings:
    return _settings(SmsWebhookSettings)


def sms_inbound_settings() -> SmsInboundSettings:
    return _settings(SmsInboundSettings)


def feedback_settings() -> FeedbackSettings:
    return _settings(FeedbackSettings)


def admin_api_settings() -> AdminApiSettings:
    return _settings(AdminApiSettings)


def dispatcher_settings() -> DispatcherSettings:
    return _settings(DispatcherSettings)


def sender_settings() -> SenderSettings:
    return _settings(SenderSettings)


# --- what the services share ----------------------------------------------------------------


def _key_ring(secrets: SecretStore, settings: TokenSettings) -> KeyRing:
    import json

    from optout.unsubscribe.token import KeyRing

    grace = settings.key_grace_days
    return secrets.parsed(
        settings.signing_keys_secret,
        ("key_ring", grace),
        lambda value: KeyRing.from_secret(json.loads(value), grace_days=grace),
    )


def _secrets(settings: SecretSettings) -> SecretStore:
    max_age = settings.secrets_max_age_seconds
    return _once(("secrets", max_age), lambda: SecretStore(clients.secretsmanager, max_age))


def _suppressions(table: str) -> DynamoSuppressionStore:
    from optout.suppression.store import DynamoSuppressionStore

    return DynamoSuppressionStore(table)


def _notice_store(table: str, retention_days: int | None = None) -> NoticeStore:
    from optout.notices.store import NoticeStore

    return _once(("notice_store", table, retention_days), lambda: NoticeStore(table, retention_days=retention_days))


def _keyword_book(path: str) -> KeywordBook:
    from optout.sms.keywords import load_book

    return _once(("keyword_book", path), lambda: load_book(path or None))


# --- the services, one per use case ---------------------------------------------------------


def unsubscribe() -> Unsubscribe:
    def build() -> Unsubscribe:
        from optout.unsubscribe.service import Unsubscribe

        settings = unsubscribe_settings()
        secrets = _secrets(settings)
        return Unsubscribe(
            settings,
            _suppressions(settings.suppression_table),
            key_ring=lambda: _key_ring(secrets, settings),
        )

    return _once("unsubscribe", build)


def link_requests() -> LinkRequests:
    """The "email me a new link" form as Unsubscribe runs it: counters in the SuppressionTable, mail through SES."""

    def build() -> LinkRequests:
        from optout.channels.email import SesEmail
        from optout.unsubscribe.link_request import DynamoRateLimits, LinkRequests

        settings = unsubscribe_settings()
        secrets = _secrets(settings)
        return LinkRequests(
            settings,
            _suppressions(settings.suppression_table),
            DynamoRateLimits(settings.suppression_table),
            pepper=lambda: secrets.pepper(settings.pepper_secret),
            key_ring=lambda: _key_ring(secrets, settings),
            # A provider send: botocore never retries it (a lost answer would mail twice)
            mailer=cache(
                lambda: SesEmail(
                    clients.provider("sesv2"), settings.sender_address, settings.ses_configuration_set or None
                )
            ),
        )

    return _once("link_requests", build)


def public_notices() -> PublicNoticeStore:
    """The published notices GET /notices shows, as Unsubscribe reads them (one Query)."""
    from optout.notices.public import PublicNoticeStore

    settings = unsubscribe_settings()
    return _once(("public_notices", settings.notices_table), lambda: PublicNoticeStore(settings.notices_table))


def _sms_keywords(
    settings: SmsKeywordSettings,
    twilio_auth_token: Callable[[], str] | None = None,
    hand_off: Callable[[dict[str, Any]], None] | None = None,
) -> SmsInbound:
    from optout.channels.sms import sms_channel
    from optout.sms.inbound import SmsInbound

    secrets = _secrets(settings)
    return SmsInbound(
        settings,
        _suppressions(settings.suppression_table),
        pepper=lambda: secrets.pepper(settings.pepper_secret),
        book=_keyword_book(settings.sms_keywords_file),
        # Replies are provider sends: botocore never retries them (a lost answer would text twice);
        # mirroring an opt-out into End User Messaging is idempotent, so its client may retry
        sms=cache(lambda: sms_channel(settings.sms_provider, clients.provider, settings)),
        mirror=cache(lambda: sms_channel(settings.sms_provider, clients.client, settings)),
        twilio_auth_token=twilio_auth_token,
        hand_off=hand_off,
    )


def sms_webhook() -> SmsInbound:
    """The keyword engine as SmsWebhook runs it: Twilio-style webhooks, replies in TwiML; what it
    cannot record inline it hands to InboundSmsQueue (a redelivered SQS message is harmless)."""

    def build() -> SmsInbound:
        from optout.core.queues import send_message

        settings = sms_webhook_settings()
        secrets = _secrets(settings)
        return _sms_keywords(
            settings,
            lambda: secrets.string(settings.twilio_auth_token_secret),
            lambda m: send_message(settings.inbound_sms_queue_url, m),
        )

    return _once("sms_webhook", build)


def sms_inbound() -> SmsInbound:
    """The keyword engine as SmsInbound runs it: End User Messaging texts, replies by SMS."""
    return _once("sms_inbound", lambda: _sms_keywords(sms_inbound_settings()))


def feedback() -> Feedback:
    def build() -> Feedback:
        from optout.feedback.ses_events import Feedback

        settings = feedback_settings()
        secrets = _secrets(settings)
        return Feedback(
            settings, _suppressions(settings.suppression_table), lambda: secrets.pepper(settings.pepper_secret)
        )

    return _once("feedback", build)


def suppression_admin() -> SuppressionAdmin:
    def build() -> SuppressionAdmin:
        from optout.suppression.admin import SuppressionAdmin

        settings = admin_api_settings()
        secrets = _secrets(settings)
        return SuppressionAdmin(
            settings, _suppressions(settings.suppression_table), lambda: secrets.pepper(settings.pepper_secret)
        )

    return _once("suppression_admin", build)


def suppression_bulk() -> SuppressionBulk:
    def build() -> SuppressionBulk:
        from optout.suppression.bulk import SuppressionBulk

        settings = admin_api_settings()
        secrets = _secrets(settings)
        return SuppressionBulk(
            settings, _suppressions(settings.suppression_table), lambda: secrets.pepper(settings.pepper_secret)
        )

    return _once("suppression_bulk", build)


def subject_export() -> SubjectExport:
    def build() -> SubjectExport:
        from optout.privacy.subject import SubjectExport

        settings = admin_api_settings()
        secrets = _secrets(settings)
        return SubjectExport(
            _suppressions(settings.suppression_table),
            _notice_store(settings.notices_table),
            lambda: secrets.pepper(settings.pepper_secret),
        )

    return _once("subject_export", build)


def link_issuer() -> LinkIssuer:
    def build() -> LinkIssuer:
        from optout.privacy.subject import LinkIssuer

        settings = admin_api_settings()
        secrets = _secrets(settings)
        return LinkIssuer(
            settings,
            lambda: secrets.pepper(settings.pepper_secret),
            lambda: _key_ring(secrets, settings),
        )

    return _once("link_issuer", build)


def opt_out_ledger() -> OptOutLedger:
    def build() -> OptOutLedger:
        from optout.privacy.compliance_admin import OptOutLedger

        settings = admin_api_settings()
        return OptOutLedger(
            _suppressions(settings.suppression_table), _notice_store(settings.notices_table), settings.optional_topics
        )

    return _once("opt_out_ledger", build)


def subject_eraser() -> SubjectEraser:
    def build() -> SubjectEraser:
        from optout.privacy.erasure import SubjectEraser

        settings = admin_api_settings()
        secrets = _secrets(settings)
        return SubjectEraser(
            _suppressions(settings.suppression_table),
            _notice_store(settings.notices_table),
            s3=lambda: clients.client("s3"),
            bucket=settings.manifest_bucket,
            pepper=lambda: secrets.pepper(settings.pepper_secret),
        )

    return _once("subject_eraser", build)


def notice_admin() -> NoticeAdmin:
    def build() -> NoticeAdmin:
        from optout.core.queues import send_message
        from optout.notices.admin import NoticeAdmin
        from optout.notices.public import PublicNoticeStore

        settings = admin_api_settings()
        return NoticeAdmin(
            _notice_store(settings.notices_table),
            lambda m: send_message(settings.dispatch_queue_url, m),
            settings.manifest_bucket,
            public=PublicNoticeStore(settings.notices_table),
        )

    return _once("notice_admin", build)


def dispatcher() -> Dispatcher:
    def build() -> Dispatcher:
        from optout.core.queues import send_message, send_message_batch
        from optout.notices.dispatch import Dispatcher
        from optout.notices.public import PublicNoticeStore

        settings = dispatcher_settings()
        secrets = _secrets(settings)
        return Dispatcher(
            settings,
            _notice_store(settings.notices_table, settings.evidence_retention_days),
            _suppressions(settings.suppression_table),
            s3=lambda: clients.client("s3"),
            send_batches=lambda ms: send_message_batch(settings.send_queue_url, ms),
            requeue=lambda m, delay: send_message(settings.dispatch_queue_url, m, delay),
            pepper=lambda: secrets.pepper(settings.pepper_secret),
            public=PublicNoticeStore(settings.notices_table),
        )

    return _once("dispatcher", build)


def sender() -> Sender:
    def build() -> Sender:
        from optout.channels.email import SesEmail
        from optout.channels.sms import sms_channel
        from optout.core.queues import send_message
        from optout.notices.send import Sender

        settings = sender_settings()
        secrets = _secrets(settings)
        return Sender(
            settings,
            _notice_store(settings.notices_table, settings.evidence_retention_days),
            _suppressions(settings.suppression_table),
            pepper=lambda: secrets.pepper(settings.pepper_secret),
            key_ring=lambda: _key_ring(secrets, settings),
            email=cache(
                lambda: SesEmail(
                    clients.provider("sesv2"), settings.sender_address, settings.ses_configuration_set or None
                )
            ),
            sms=cache(lambda: sms_channel(settings.sms_provider, clients.provider, settings)),
            enqueue=lambda m, delay: send_message(settings.send_queue_url, m, delay),
        )

    return _once("sender", build)


# --- beside a stack: tools and tests, which belong to no function ----------------------------


def secret(secret_id: str) -> str:
    return _secrets(Settings.from_env()).string(secret_id)


def pepper() -> bytes:
    settings = Settings.from_env()
    if not settings.pepper_secret:
        raise RuntimeError("OPTOUT_PEPPER_SECRET is not set")
    return _secrets(settings).pepper(settings.pepper_secret)


def key_ring() -> KeyRing:
    settings = Settings.from_env()
    if not settings.signing_keys_secret:
        raise RuntimeError("OPTOUT_SIGNING_KEYS_SECRET is not set")
    return _key_ring(_secrets(settings), settings)
