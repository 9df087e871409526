"""Render a notice for one recipient: a raw MIME email (text + HTML) and an SMS text.

Templates are Jinja2 (autoescaped HTML), wording per kind and locale (en, es; anything else
falls back to en). Optional-topic mail carries the recipient's own RFC 8058 List-Unsubscribe
headers; every mail, required ones included, links to the recipient's preference page.
"""

from __future__ import annotations

import html
import json
import math
import re
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from functools import cache, lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from optout.channels.email import RenderedEmail
from optout.notices import markdown
from optout.notices.model import Notice, Recipient

if TYPE_CHECKING:
    from jinja2 import Environment

NOTICE_LANGUAGES = ("en", "es")
MAIL_POLICY = SMTP.clone(max_line_length=998)
GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡"
    "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = set("^{}\\[~]|€\f")


@cache
def _environment() -> Environment:
    # Jinja is imported on the first render, not with the module: the sender's cold start
    # stays within reach of boto3's own (DESIGN §7)
    from jinja2 import Environment, PackageLoader, select_autoescape

    return Environment(
        loader=PackageLoader("optout", "templates/email"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


@cache
def wording(language: str) -> dict[str, Any]:
    lang = language if language in NOTICE_LANGUAGES else "en"
    text = resources.files("optout").joinpath(f"locales/notices/{lang}.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _topic_label(topic: str, language: str) -> str:
    from optout.web.pages import messages

    lang = language if language in ("en", "es", "fr", "de") else "en"
    label: str = messages(lang)["topics"].get(topic, [topic])[0]
    return label


def _content(notice: Notice, language: str, brand: str) -> tuple[str, str, list[dict[str, Any]], str | None, str]:
    """Subject, heading, blocks, call-to-action URL and its label."""
    v = notice.variables
    w = wording(language)
    if notice.kind == "policy_change":
        k = w["policy_change"]
        fields = {"brand": brand, "policy_version": v["policy_version"], "effective_date": v["effective_date"]}
        blocks = [{"paragraphs": [k["intro"].format(**fields), v["summary"]]}]
        return k["subject"].format(**fields), k["heading"], blocks, str(v["policy_url"]), k["cta"]
    if notice.kind == "change_of_control":
        k = w["change_of_control"]
        fields = {"brand": brand, "new_controller": v["new_controller"], "effective_date": v["effective_date"]}
        blocks = [
            {"paragraphs": [k["intro"].format(**fields), v["summary"]]},
            {"title": k["choices"], "paragraphs": [k["choices_text"].format(**fields)]},
        ]
        return k["subject"].format(**fields), k["heading"].format(**fields), blocks, str(v["choices_url"]), k["cta"]
    if notice.kind == "breach_alert":
        k = w["breach_alert"]
        discovered = datetime.fromisoformat(str(v["discovered_at"]).replace("Z", "+00:00")).strftime(
            "%Y-%m-%d %H:%M %Z"
        )
        blocks = [
            {"paragraphs": [k["intro"]]},
            {"title": k["nature"], "paragraphs": [v["nature"], k["discovered"].format(discovered_at=discovered)]},
            {"title": k["data_categories"], "bullets": list(v["data_categories"])},
            {"title": k["likely_consequences"], "paragraphs": [v["likely_consequences"]]},
            {"title": k["measures_taken"], "paragraphs": [v["measures_taken"]]},
            {"title": k["contact"], "paragraphs": [v["contact"]]},
        ]
        return k["subject"].format(brand=brand), k["heading"], blocks, None, ""
    from markupsafe import Markup

    body = str(v["body"]).replace("\r\n", "\n")
    # markdown-it escapes what it does not render itself (module docstring): safe as markup
    rendered = Markup(markdown.render_html(body))  # noqa: S704  # nosec B704
    return str(v["subject"]), str(v["subject"]), [{"markdown": markdown.text(body), "html": rendered}], None, ""


def _personal(notice: Notice) -> bool:
    """Whether the body says ``{{ name }}``: each recipient's copy then differs by more than the link."""
    return notice.kind in ("product", "marketing") and markdown.uses_variables(str(notice.variables.get("body", "")))


_PLACEHOLDERS = {
    "to": "optout-to@placeholder.invalid",
    "url": "https://optout.placeholder.invalid/__OPTOUT_URL__",
    "date": "Thu, 01 Jan 2026 00:00:00 +0000",
    "id": "<optout-message-id@placeholder.invalid>",
}
_SLOTS = {_PLACEHOLDERS[name].encode(): name for name in ("to", "url", "date", "id")}
_SLOTS[markdown.PLACEHOLDER["name"].encode()] = "name"
_SLOT = re.compile(b"|".join(re.escape(placeholder) for placeholder in _SLOTS))
_rendered: dict[tuple[str, ...], list[bytes | str]] = {}  # the message cut at its placeholders


def _language(recipient: Recipient) -> str:
    return recipient.locale if recipient.locale in NOTICE_LANGUAGES else "en"


def _message_id(sender: str) -> str:
    return make_msgid(domain=sender.rsplit("@", 1)[-1].strip("> "))


@lru_cache(maxsize=4)
def _date_header(second: int) -> bytes:
    """The Date header for a second: the same for every message sent in it (formatting costs ~10 µs)."""
    return format_datetime(datetime.fromtimestamp(second, UTC)).encode()


def _cut(template: bytes) -> list[bytes | str]:
    parts: list[bytes | str] = []
    last = 0
    for found in _SLOT.finditer(template):
        parts += [template[last : found.start()], _SLOTS[found.group()]]
        last = found.end()
    return [*parts, template[last:]]


def render_email(
    notice: Notice,
    recipient: Recipient,
    brand: str,
    sender: str,
    preferences_url: str,
    unsubscribe_url: str | None,
    now: datetime,
) -> bytes:
    """The complete raw MIME message for one recipient, ready for SES SendEmail (Raw).

    A notice reads the same for everyone who shares a language: it is rendered once per
    (notice, language) with placeholders, and each recipient's copy is that message with their
    address, link, date and message id put in. Addresses that are not plain ASCII are rendered
    in full, so header encoding stays the email package's job.
    """
    address = recipient.email or ""
    url = unsubscribe_url or preferences_url
    name = recipient.name or ""
    if (
        not address.isascii()
        or (unsubscribe_url is not None and unsubscribe_url != preferences_url)
        or html.escape(url) != url  # the HTML part would need it escaped: render in full
        or (_personal(notice) and (not name.isascii() or html.escape(name) != name))  # the same for the name
    ):
        return _render(notice, recipient, brand, sender, preferences_url, unsubscribe_url, now)
    language = _language(recipient)
    content = notice.model_dump_json(include={"id", "kind", "topic", "variables"})
    key = (content, language, brand, sender, "optional" if unsubscribe_url else "required")
    parts = _rendered.get(key)
    if parts is None:
        if len(_rendered) > 256:
            _rendered.clear()
        placeholder = recipient.model_copy(update={"email": _PLACEHOLDERS["to"], "locale": language})
        template = _render(
            notice, placeholder, brand, sender, _PLACEHOLDERS["url"],
            _PLACEHOLDERS["url"] if unsubscribe_url else None, datetime(2026, 1, 1, tzinfo=now.tzinfo),
            message_id=_PLACEHOLDERS["id"], fill=False,
        )  # fmt: skip
        parts = _rendered[key] = _cut(template)
    values = {
        "to": address.encode(),
        "url": url.encode(),  # header, text and HTML alike: it has nothing HTML would escape
        "date": _date_header(int(now.timestamp())),
        "id": _message_id(sender).encode(),
        "name": name.encode(),  # plain ASCII with nothing HTML escapes (above): the same in both parts
    }
    return b"".join(part if isinstance(part, bytes) else values[part] for part in parts)


BULK_URL = "{{url}}"  # SES's substitution: each recipient's own link (ReplacementTemplateData)


def bulk_template(notice: Notice, language: str, brand: str, optional: bool) -> RenderedEmail | None:
    """The notice in ``language`` as an SES template (subject, text, HTML) with ``{{url}}`` for each
    recipient's link, for SendBulkEmail; None where SES's substitution would change the content
    (the notice's own text holds ``{{`` or ``}}``), which then goes one SendEmail per recipient."""
    language = language if language in NOTICE_LANGUAGES else "en"
    key = (notice.model_dump_json(include={"id", "kind", "topic", "variables"}), language, brand, str(optional))
    if key in _templates:
        return _templates[key]
    subject, text, html_body = _parts(notice, language, brand, BULK_URL, BULK_URL if optional else None)
    found = None
    if all(part.replace(BULK_URL, "").count("{{") == 0 and "}}" not in part.replace(BULK_URL, "")
           for part in (subject, text, html_body)):  # fmt: skip
        # SES puts values in as they are, so the HTML part takes the name escaped (channels.email)
        found = RenderedEmail(
            subject,
            text.replace(markdown.PLACEHOLDER["name"], "{{name}}"),
            html_body.replace(markdown.PLACEHOLDER["name"], "{{name_html}}"),
            personal=_personal(notice),
        )
    if len(_templates) > 256:
        _templates.clear()
    _templates[key] = found
    return found


_templates: dict[tuple[str, ...], RenderedEmail | None] = {}


def _parts(
    notice: Notice, language: str, brand: str, preferences_url: str, unsubscribe_url: str | None
) -> tuple[str, str, str]:
    """Subject, text and HTML of the notice in ``language``."""
    w = wording(language)
    subject, heading, blocks, cta_url, cta = _content(notice, language, brand)
    required = unsubscribe_url is None
    footer = (
        w["footer_required"] if required else w["footer_optional"].format(topic=_topic_label(notice.topic, language))
    )
    context = {
        "lang": language, "brand": brand, "subject": subject, "heading": heading, "blocks": blocks,
        "cta_url": cta_url, "cta": cta, "footer": footer, "manage": w["manage"], "unsubscribe": w["unsubscribe"],
        "preferences_url": preferences_url, "unsubscribe_url": unsubscribe_url,
    }  # fmt: skip
    env = _environment()
    return subject, env.get_template("notice.txt").render(**context), env.get_template("notice.html").render(**context)


def _render(
    notice: Notice,
    recipient: Recipient,
    brand: str,
    sender: str,
    preferences_url: str,
    unsubscribe_url: str | None,
    now: datetime,
    message_id: str | None = None,
    fill: bool = True,
) -> bytes:
    """``fill``: put the recipient's manifest values in for the body's variables (else left as placeholders)."""
    language = _language(recipient)
    subject, text, html_body = _parts(notice, language, brand, preferences_url, unsubscribe_url)
    if fill:
        values = {"name": recipient.name or ""}
        text, html_body = markdown.fill(text, values, escape=False), markdown.fill(html_body, values, escape=True)
    message = EmailMessage(policy=MAIL_POLICY)
    # Headers are not folded below 998 characters: a folded List-Unsubscribe URL is written as
    # RFC 2047 encoded-words, which mail clients do not follow for one-click unsubscribe.
    message["From"] = sender
    message["To"] = recipient.email or ""
    message["Subject"] = subject
    message["Date"] = _PLACEHOLDERS["date"] if message_id else format_datetime(now)
    message["Message-ID"] = message_id or _message_id(sender)
    message["X-Optout-Notice"] = notice.id
    if unsubscribe_url is not None:
        message["List-Unsubscribe"] = f"<{unsubscribe_url}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    # 8bit keeps every line as written (our templates stay far under 998 characters), so the
    # link is never split by quoted-printable soft breaks.
    message.set_content(text, cte="8bit")
    message.add_alternative(html_body, subtype="html", cte="8bit")
    return message.as_bytes()


def render_sms(notice: Notice, recipient: Recipient, brand: str, optional: bool) -> str:
    language = _language(recipient)
    w = wording(language)
    v = notice.variables
    if notice.kind == "policy_change":
        text = w["policy_change"]["sms"].format(
            brand=brand, effective_date=v["effective_date"], policy_url=v["policy_url"]
        )
    elif notice.kind == "change_of_control":
        text = w["change_of_control"]["sms"].format(
            brand=brand, new_controller=v["new_controller"], effective_date=v["effective_date"],
            choices_url=v["choices_url"],
        )  # fmt: skip
    elif notice.kind == "breach_alert":
        text = w["breach_alert"]["sms"].format(brand=brand, contact=v["contact"])
    elif v.get("sms_text"):
        text = f"{brand}: {v['sms_text']}"
    else:  # the mail's subject, framed in the recipient's language so that the text reads as one
        text = w["free"]["sms_from_subject"].format(brand=brand, subject=v["subject"])
    if optional:
        text = f"{_sentence(text)} {w['free']['sms_suffix']}"
    return str(text)


def _sentence(text: str) -> str:
    """End with a full stop unless it ends a sentence already: the suffix that follows is one."""
    return text if text.rstrip().endswith((".", "!", "?", "…", "。", "！", "？")) else f"{text.rstrip()}."


def sms_segments(text: str) -> dict[str, Any]:
    """GSM-7 when every character fits (extension characters count twice), else UCS-2."""
    if all(c in GSM7_BASIC or c in GSM7_EXTENDED for c in text):
        units = sum(2 if c in GSM7_EXTENDED else 1 for c in text)
        return {"encoding": "GSM-7", "characters": units, "segments": 1 if units <= 160 else math.ceil(units / 153)}
    units = len(text.encode("utf-16-le")) // 2
    return {"encoding": "UCS-2", "characters": units, "segments": 1 if units <= 70 else math.ceil(units / 67)}
