"""optout.notices.render: the raw MIME email and the SMS text of each notice kind, and SMS segments."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

from optout.notices.model import (
    TOPIC_OF,
    BreachAlertVariables,
    FreeContentVariables,
    Kind,
    Notice,
    PolicyChangeVariables,
    Recipient,
)
from optout.notices.render import render_email, render_sms, sms_segments

BRAND = "Example Co"
SENDER = "Example Co <notices@example.com>"
NOW = datetime(2026, 11, 21, 14, 5, tzinfo=UTC)
PREFERENCES_URL = "https://optout.example.test/unsubscribe?token=v1.k1.e.abc.marketing.t1.mac"
UNSUBSCRIBE_URL = "https://optout.example.test/unsubscribe?token=v1.k1.e.abc.marketing.t1.mac"
# A token as optout.unsubscribe.token.issue makes one: version.kid.channel.64-hex key.topic.base36 time.43-char MAC
REAL_URL = "https://optout.example.test/unsubscribe?token=v1.k2026a.e." + "ab" * 32 + ".marketing.tbq2k1c." + "M" * 43

VARIABLES: dict[Kind, dict[str, Any]] = {
    "policy_change": PolicyChangeVariables(
        policy_version="2026.2",
        effective_date="2026-12-15",
        summary="We will keep support chats for 12 months instead of 6.",
        policy_url="https://example.com/privacy/2026-2",
    ).model_dump(mode="json"),
    "breach_alert": BreachAlertVariables(
        discovered_at="2026-11-20T09:30:00Z",
        nature="An attacker copied a database backup from a misconfigured storage bucket.",
        data_categories=["Email addresses", "Hashed passwords", "Billing postcodes"],
        likely_consequences="You may receive phishing emails that look like they come from us.",
        measures_taken="We closed the bucket, rotated all keys and reset every password.",
        contact="security@example.com",
    ).model_dump(mode="json"),
    "product": FreeContentVariables(
        subject="New: shared workspaces",
        body="You can now share a workspace with your team.\n\nOpen Settings to try it.",
        sms_text="Shared workspaces are here",
    ).model_dump(mode="json"),
    "marketing": FreeContentVariables(
        subject="Winter sale: 30% off",
        body="Our winter sale starts today.\r\n\r\nIt ends on Sunday.",
    ).model_dump(mode="json"),
}
OPTIONAL_KINDS: tuple[Kind, ...] = ("product", "marketing")
REQUIRED_KINDS: tuple[Kind, ...] = ("policy_change", "breach_alert")
ALL_KINDS = REQUIRED_KINDS + OPTIONAL_KINDS


def make_notice(kind: Kind, **variables: Any) -> Notice:
    return Notice(
        id=f"ntc-{kind}",
        kind=kind,
        topic=TOPIC_OF[kind],
        channels=["email"],
        mode="all",
        variables={**VARIABLES[kind], **variables},
        manifest="s3://optout-manifests/2026/list.csv",
        created_by="admin@example.com",
        created_at=NOW,
        updated_at=NOW,
    )


def reader(locale: str = "en") -> Recipient:
    return Recipient(recipient_id="u1", email="ana@example.com", phone="+14155550100", locale=locale)


def render(kind: Kind, locale: str = "en", unsubscribe: str | None = None, **variables: Any) -> bytes:
    optional = kind in OPTIONAL_KINDS
    return render_email(
        make_notice(kind, **variables),
        reader(locale),
        BRAND,
        SENDER,
        PREFERENCES_URL,
        (unsubscribe or UNSUBSCRIBE_URL) if optional else None,
        NOW,
    )


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


def raw_header(raw: bytes, name: str) -> bytes | None:
    """The header's value exactly as written on the wire, unfolded."""
    head = raw.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b" ").replace(b"\r\n\t", b" ")
    prefix = name.encode() + b": "
    return next((line[len(prefix) :] for line in head.split(b"\r\n") if line.startswith(prefix)), None)


# --- structure, every kind ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_email_is_a_complete_multipart_alternative_message(kind: Kind) -> None:
    raw = render(kind)
    message = parse(raw)

    assert message["From"] == SENDER
    assert message["To"] == "ana@example.com"
    assert message["Subject"]
    assert parsedate_to_datetime(message["Date"]) == NOW
    assert message["Message-ID"].startswith("<") and message["Message-ID"].endswith("@example.com>")
    assert message["X-Optout-Notice"] == f"ntc-{kind}"
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")  # SMTP line endings throughout


def test_each_message_gets_its_own_message_id() -> None:
    assert parse(render("product"))["Message-ID"] != parse(render("product"))["Message-ID"]


@pytest.mark.parametrize(
    ("kind", "subject"),
    [
        ("policy_change", "Example Co: we are updating our privacy policy"),
        ("breach_alert", "Example Co: important notice about your data"),
        ("product", "New: shared workspaces"),
        ("marketing", "Winter sale: 30% off"),
    ],
)
def test_english_subjects(kind: Kind, subject: str) -> None:
    assert parse(render(kind))["Subject"] == subject


# --- unsubscribe headers --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", OPTIONAL_KINDS)
def test_optional_topics_carry_one_click_unsubscribe(kind: Kind) -> None:
    message = parse(render(kind))
    # (the header may be folded before its value; a parser keeps the fold's leading space)
    assert message["List-Unsubscribe"].strip() == f"<{UNSUBSCRIBE_URL}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text, html = parts(message)
    assert PREFERENCES_URL in text
    assert f'href="{UNSUBSCRIBE_URL}"' in html


@pytest.mark.parametrize("kind", OPTIONAL_KINDS)
def test_short_unsubscribe_url_is_written_verbatim_on_the_wire(kind: Kind) -> None:
    raw = render(kind)
    assert raw_header(raw, "List-Unsubscribe") == f"<{UNSUBSCRIBE_URL}>".encode()
    assert raw_header(raw, "List-Unsubscribe-Post") == b"List-Unsubscribe=One-Click"


def test_real_length_unsubscribe_url_survives_a_parser() -> None:
    # Python's own parser decodes whatever the header became: the value round-trips
    assert parse(render("marketing", unsubscribe=REAL_URL))["List-Unsubscribe"].strip() == f"<{REAL_URL}>"


def test_real_length_unsubscribe_url_is_written_verbatim_on_the_wire() -> None:
    raw = render("marketing", unsubscribe=REAL_URL)
    assert raw_header(raw, "List-Unsubscribe") == f"<{REAL_URL}>".encode()


@pytest.mark.parametrize("kind", REQUIRED_KINDS)
def test_required_topics_have_no_unsubscribe_header_but_link_preferences(kind: Kind) -> None:
    raw = render(kind)
    message = parse(raw)
    assert "List-Unsubscribe" not in message
    assert "List-Unsubscribe-Post" not in message
    text, html = parts(message)
    assert PREFERENCES_URL in text
    assert f'href="{PREFERENCES_URL}"' in html
    assert "the law requires us to tell you" in text


# --- content per kind -----------------------------------------------------------------------------


def test_breach_alert_carries_every_article_34_element() -> None:
    variables = VARIABLES["breach_alert"]
    text, html = parts(parse(render("breach_alert")))
    for body in (text, html):
        assert variables["nature"] in body
        for category in variables["data_categories"]:
            assert category in body
        assert variables["likely_consequences"] in body
        assert variables["measures_taken"] in body
        assert variables["contact"] in body
        assert "We discovered it on 2026-11-20 09:30 UTC." in body
    assert "  - Hashed passwords" in text
    assert "<li>Billing postcodes</li>" in html


def test_breach_alert_discovery_time_keeps_its_offset() -> None:
    text, _ = parts(parse(render("breach_alert", discovered_at="2026-11-20T10:30:00+01:00")))
    assert "We discovered it on 2026-11-20 10:30 UTC+01:00." in text


def test_policy_change_content() -> None:
    text, html = parts(parse(render("policy_change")))
    assert "Our privacy policy (version 2026.2) takes effect on 2026-12-15." in text
    assert "We will keep support chats for 12 months instead of 6." in text
    assert "Read the full policy: https://example.com/privacy/2026-2" in text
    assert 'href="https://example.com/privacy/2026-2"' in html


def test_free_content_body_is_markdown_whose_blank_lines_make_paragraphs() -> None:
    _, html = parts(parse(render("marketing")))
    assert "<p>Our winter sale starts today.</p>" in html
    assert "<p>It ends on Sunday.</p>" in html
    text, _ = parts(parse(render("product")))
    assert "You receive this because you are subscribed to Product updates." in text


def test_html_part_escapes_variables() -> None:
    # Given a summary with markup in it
    attack = "<script>alert('x')</script> & more"
    # When the policy notice is rendered
    text, html = parts(parse(render("policy_change", summary=attack)))
    # Then HTML shows it escaped, and the plain text keeps it as written
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more" in html
    assert attack in text


def test_html_escapes_free_content_subject_and_body() -> None:
    _, html = parts(parse(render("product", subject="<b>Bold</b> move", body='<img src="x" onerror="y">')))
    assert "<b>Bold</b>" not in html and "&lt;b&gt;Bold&lt;/b&gt; move" in html
    # raw HTML in a Markdown body is shown as text (markdown-it, html off)
    assert "<img" not in html and "&lt;img src=&quot;x&quot; onerror=&quot;y&quot;&gt;" in html


# --- locales --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "subject"),
    [
        ("policy_change", "Example Co: actualizamos nuestra política de privacidad"),
        ("breach_alert", "Example Co: aviso importante sobre sus datos"),
    ],
)
def test_spanish_locale(kind: Kind, subject: str) -> None:
    message = parse(render(kind, locale="es"))
    assert message["Subject"] == subject
    text, html = parts(message)
    assert "Gestionar sus preferencias de correo" in text
    assert '<html lang="es">' in html


def test_spanish_breach_alert_body() -> None:
    text, _ = parts(parse(render("breach_alert", locale="es")))
    assert "Qué ocurrió" in text
    assert "Lo descubrimos el 2026-11-20 09:30 UTC." in text


@pytest.mark.parametrize("locale", ["de", "fr", "zz"])
def test_unknown_locale_falls_back_to_english(locale: str) -> None:
    message = parse(render("policy_change", locale=locale))
    assert message["Subject"] == "Example Co: we are updating our privacy policy"
    _, html = parts(message)
    assert '<html lang="en">' in html


# --- SMS ------------------------------------------------------------------------------------------


def test_policy_sms_mentions_effective_date_and_url() -> None:
    text = render_sms(make_notice("policy_change"), reader(), BRAND, optional=False)
    assert text == "Example Co: our privacy policy changes on 2026-12-15. Details: https://example.com/privacy/2026-2"


def test_breach_sms_mentions_contact_and_no_opt_out_line() -> None:
    text = render_sms(make_notice("breach_alert"), reader(), BRAND, optional=False)
    assert text == (
        "Example Co security notice: an incident affected your data. "
        "We have emailed details; questions: security@example.com"
    )


def test_spanish_breach_sms() -> None:
    text = render_sms(make_notice("breach_alert"), reader("es"), BRAND, optional=False)
    assert text.startswith("Aviso de seguridad de Example Co")
    assert text.endswith("preguntas: security@example.com")


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("product", "Example Co: Shared workspaces are here. Reply STOP to opt out."),
        ("marketing", "News from Example Co: Winter sale: 30% off. Reply STOP to opt out."),  # no sms_text: the subject
    ],
)
def test_optional_sms_end_with_opt_out_instruction(kind: Kind, expected: str) -> None:
    text = render_sms(make_notice(kind), reader(), BRAND, optional=True)
    assert text == expected
    assert text.endswith("Reply STOP to opt out.")


def test_spanish_optional_sms_suffix() -> None:
    text = render_sms(make_notice("marketing"), reader("es"), BRAND, optional=True)
    assert text == "Novedades de Example Co: Winter sale: 30% off. Responda PARAR para darse de baja."


def test_a_text_that_ends_a_sentence_gets_no_second_full_stop() -> None:
    notice = make_notice("product", sms_text="Shared workspaces are here!")
    assert render_sms(notice, reader(), BRAND, optional=True) == (
        "Example Co: Shared workspaces are here! Reply STOP to opt out."
    )


# --- SMS segments ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "encoding", "characters", "segments"),
    [
        pytest.param("a" * 160, "GSM-7", 160, 1, id="160-ascii-one-segment"),
        pytest.param("a" * 161, "GSM-7", 161, 2, id="161-ascii-two-segments"),
        pytest.param("a" * 306, "GSM-7", 306, 2, id="306-ascii-two-full-segments"),
        pytest.param("a" * 307, "GSM-7", 307, 3, id="307-ascii-three-segments"),
        pytest.param("Añö é@£$\n", "GSM-7", 9, 1, id="gsm-basic-accents"),
        pytest.param("€" * 80, "GSM-7", 160, 1, id="80-euros-160-units"),
        pytest.param("a" * 159 + "€", "GSM-7", 161, 2, id="extension-char-counts-twice"),
        pytest.param("{}[]~^|\\", "GSM-7", 16, 1, id="all-brackets-extended"),
        pytest.param("", "GSM-7", 0, 1, id="empty"),
        pytest.param("a" * 69 + "😀", "UCS-2", 71, 2, id="emoji-two-utf16-units-tips-over"),
        pytest.param("a" * 68 + "😀", "UCS-2", 70, 1, id="emoji-70-units-one-segment"),
        pytest.param("ü" * 69 + "á", "UCS-2", 70, 1, id="non-gsm-letter-70-one-segment"),
        pytest.param("ü" * 70 + "á", "UCS-2", 71, 2, id="non-gsm-letter-71-two-segments"),
        pytest.param("a" * 133 + "✓", "UCS-2", 134, 2, id="ucs2-134-two-full-segments"),
        pytest.param("a" * 134 + "✓", "UCS-2", 135, 3, id="ucs2-135-three-segments"),
    ],
)
def test_sms_segments(text: str, encoding: str, characters: int, segments: int) -> None:
    assert sms_segments(text) == {"encoding": encoding, "characters": characters, "segments": segments}


def test_rendered_sms_fit_expected_segments() -> None:
    # The English breach SMS is plain GSM-7 and fits one segment
    breach = render_sms(make_notice("breach_alert"), reader(), BRAND, optional=False)
    assert sms_segments(breach)["encoding"] == "GSM-7"
    assert sms_segments(breach)["segments"] == 1
