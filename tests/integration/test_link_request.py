"""'Email me a new link' on moto: POST /preferences answers alike for every address and mails a link.

The Unsubscribe function runs in-process with its own role (the local IAM authorizes each call),
its mail lands in moto's SES outbox as raw MIME, and the link in it is followed back into the
same function.
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest

from optout import wiring
from optout.core.identity import Identity
from optout.core.settings import get_settings
from optout.suppression.model import ConsentChange
from optout.suppression.store import DynamoSuppressionStore
from optout.unsubscribe.link_request import ip_counter, mailbox
from optout.unsubscribe.token import issue
from optout_local.provision import Stack
from optout_local.runtime import LambdaContext, load_handler
from tests.conftest import sample_event
from tests.integration.notice_pipeline import sent_mail, suppress

SAME_ANSWER = "If we send email to that address, a new link is on its way."


@pytest.fixture
def handler(aws: Stack) -> Any:
    return load_handler(aws.function("unsubscribe"))


def ask(
    handler: Any,
    ctx: LambdaContext,
    body: str | bytes | None,
    *,
    ip: str = "203.0.113.10",
    content_type: str | None = "application/x-www-form-urlencoded",
    language: str = "en-GB,en;q=0.9",
    method: str = "POST",
) -> dict[str, Any]:
    event = sample_event("preferences_request_link")
    headers = {k: v for k, v in event["headers"].items() if k not in ("content-type", "content-length")}
    if content_type is not None:
        headers["content-type"] = content_type
    headers["accept-language"] = language
    event["headers"] = headers
    event["requestContext"]["http"]["sourceIp"] = ip
    event["requestContext"]["http"]["method"] = method
    if isinstance(body, bytes):
        event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    else:
        event["body"], event["isBase64Encoded"] = body, False
    response: dict[str, Any] = handler(event, ctx)
    return response


def email_field(address: str) -> str:
    return urlencode({"email": address})


def mail_to(address: str) -> list[Any]:
    return [m for m in sent_mail() if m["To"] == address]


def link_in(message: Any) -> str:
    text = message.get_body(preferencelist=("plain",)).get_content()
    found = re.findall(r"https?://\S+/unsubscribe\?token=\S+", text)
    assert len(found) == 1, text
    html = message.get_body(preferencelist=("html",)).get_content()
    assert f'href="{found[0]}"' in html  # the same link in both parts
    return str(found[0])


def test_get_preferences_shows_the_form_without_javascript(handler, lambda_context) -> None:
    response = ask(handler, lambda_context, None, method="GET", content_type=None, language="fr")
    assert response["statusCode"] == 200
    page = response["body"]
    assert '<form method="post" action="preferences"' in page and 'name="email"' in page and 'type="email"' in page
    assert "M’envoyer un nouveau lien" in page and "<script" not in page
    headers = response["headers"]
    assert headers["Content-Language"] == "fr" and headers["Cache-Control"] == "no-store"
    assert "form-action 'self'" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    head = ask(handler, lambda_context, None, method="HEAD", content_type=None)
    assert head["statusCode"] == 200 and head["body"] == ""


def test_the_same_answer_for_known_unknown_and_blocked_addresses(handler, lambda_context, capsys) -> None:
    # Given an address we hold a state for, one we have never seen, and one blocked by a bounce
    known, unknown, bounced = "known@example.com", "never-seen@example.org", "bounced@example.com"
    suppress("email", known, [ConsentChange("opt_out", "marketing")])
    suppress("email", bounced, [ConsentChange("block", "channel", reason="hard_bounce")], source="bounce")
    capsys.readouterr()
    # When each asks for a new link
    answers = [ask(handler, lambda_context, email_field(a)) for a in (known, unknown, bounced)]
    # Then every answer is the same, byte for byte, and names no address
    assert {a["statusCode"] for a in answers} == {200}
    assert len({a["body"] for a in answers}) == 1
    assert SAME_ANSWER in answers[0]["body"]
    assert all(a["headers"] == answers[0]["headers"] for a in answers)
    assert not any(name in answers[0]["body"] for name in ("known", "never-seen", "bounced"))
    # And the link went to the known and the unknown address, not to the bounced one
    assert len(mail_to(known)) == 1 and len(mail_to(unknown)) == 1 and mail_to(bounced) == []
    # And no log line holds an address
    output = capsys.readouterr()
    for address in (known, unknown, bounced):
        assert address not in output.out + output.err


def test_the_mailed_link_opens_the_preference_page_of_that_address(handler, lambda_context) -> None:
    address = "follow@example.com"
    assert ask(handler, lambda_context, email_field("  Follow@Example.COM "), language="de")["statusCode"] == 200
    (message,) = mail_to(address)  # sent to the normalised address
    assert message["From"] == get_settings().sender_address
    assert message["Subject"] == "Ihr Link zu Ihren E-Mail-Einstellungen bei Example Co"
    assert message["Auto-Submitted"] == "auto-generated" and message["List-Unsubscribe"] is None
    url = link_in(message)
    assert url.startswith(get_settings().links_base_url + "/unsubscribe?token=") and "example.com" not in url
    token = parse_qs(urlsplit(url).query)["token"][0]
    key = Identity.of(wiring.pepper(), "email", address).key
    assert token.split(".")[3] == key  # a token for this address's key
    # When the link is followed
    page = handler(sample_event("unsubscribe_get", token), lambda_context)
    # Then it is the preference page, every optional topic offered, no one-click button for a topic
    assert page["statusCode"] == 200
    assert 'value="marketing"' in page["body"] and 'value="product"' in page["body"]
    assert 'id="unsubscribe-topic"' not in page["body"]
    # And a choice made there is recorded for that address
    saved = handler(
        sample_event("unsubscribe_form_save", token, body="action=unsubscribe_all", isBase64Encoded=False),
        lambda_context,
    )
    assert saved["statusCode"] == 200
    state = DynamoSuppressionStore(get_settings().suppression_table).get(key)
    assert state is not None and state.all_optional is True


def test_over_the_address_limit_the_answer_is_the_same_and_nothing_is_mailed(handler, lambda_context) -> None:
    address = "limited@example.com"
    limit = get_settings().link_requests_per_address
    answers = [ask(handler, lambda_context, email_field(address)) for _ in range(limit + 2)]
    assert len({(a["statusCode"], a["body"]) for a in answers}) == 1
    assert len(mail_to(address)) == limit
    # Another address from the same IP is still served
    ask(handler, lambda_context, email_field("other@example.com"))
    assert len(mail_to("other@example.com")) == 1


def test_over_the_ip_limit_the_answer_is_the_same_and_nothing_is_mailed(handler, lambda_context) -> None:
    limit = get_settings().link_requests_per_ip
    ip = "198.51.100.7"
    answers = [ask(handler, lambda_context, email_field(f"ip-{i}@example.com"), ip=ip) for i in range(limit + 1)]
    assert len({(a["statusCode"], a["body"]) for a in answers}) == 1
    assert len(sent_mail()) == limit and mail_to(f"ip-{limit}@example.com") == []
    # An IPv6 caller counts by its /64: another host of that /64 shares the count, another /64 does not
    assert ip_counter(b"p" * 32, "2001:db8:1:2::5") == ip_counter(b"p" * 32, "2001:db8:1:2:ffff::9")
    assert ip_counter(b"p" * 32, "2001:db8:1:2::5") != ip_counter(b"p" * 32, "2001:db8:1:3::5")
    # Another IP is still served
    ask(handler, lambda_context, email_field("from-elsewhere@example.com"), ip="198.51.100.8")
    assert len(mail_to("from-elsewhere@example.com")) == 1


@pytest.mark.parametrize(
    ("body", "content_type", "status", "text"),
    [
        ("", "application/x-www-form-urlencoded", 400, "Please enter your email address."),
        ("email=", "application/x-www-form-urlencoded", 400, "Please enter your email address."),
        ("other=x", "application/x-www-form-urlencoded", 400, "Please enter your email address."),
        ("email=not-an-address", "application/x-www-form-urlencoded", 400, "does not look like an email address"),
        ("email=a%40b%40example.com", "application/x-www-form-urlencoded", 400, "does not look like an email"),
        ("email=" + "a" * 10_000 + "%40example.com", "application/x-www-form-urlencoded", 413, "could not process"),
        ("email=x%40example.com", "text/plain", 415, "could not process"),
        ("email=x%40example.com", None, 415, "could not process"),
        ("%zz=%%", "application/x-www-form-urlencoded", 400, "Please enter your email address."),
        (b"email=\xff@example.com", "application/x-www-form-urlencoded", 400, "could not process"),
    ],
)
def test_bad_input_gets_the_form_again_with_a_4xx_and_sends_nothing(
    handler, lambda_context, body, content_type, status, text
) -> None:
    response = ask(handler, lambda_context, body, content_type=content_type)
    assert response["statusCode"] == status
    assert text in response["body"] and 'name="email"' in response["body"]
    assert sent_mail() == []


def test_a_body_that_is_not_base64_and_a_wrong_method_are_4xx_pages(handler, lambda_context) -> None:
    event = sample_event("preferences_request_link", isBase64Encoded=True, body="***")
    assert handler(event, lambda_context)["statusCode"] == 400
    response = ask(handler, lambda_context, None, method="DELETE", content_type=None)
    assert response["statusCode"] == 405 and "POST" in response["headers"]["Allow"]
    assert 'name="email"' in response["body"]
    assert sent_mail() == []


def test_multipart_is_read_like_a_form(handler, lambda_context) -> None:
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="email"\r\n\r\nmulti@example.com\r\n--{boundary}--\r\n'
    )
    response = ask(handler, lambda_context, body, content_type=f"multipart/form-data; boundary={boundary}")
    assert response["statusCode"] == 200 and SAME_ANSWER in response["body"]
    assert len(mail_to("multi@example.com")) == 1


@pytest.mark.parametrize("damage", ["forged", "expired", "malformed"])
def test_a_dead_link_offers_a_new_link_by_email(handler, lambda_context, damage) -> None:
    key = Identity.of(wiring.pepper(), "email", "dead@example.com").key
    if damage == "forged":
        token = issue(wiring.key_ring(), "email", key, "product")[:-4] + "AAAA"
    elif damage == "expired":
        token = issue(wiring.key_ring(), "email", key, "product", datetime.now(UTC) - timedelta(days=400))
    else:
        token = "1.k1.e.not-a-token"
    response = handler(sample_event("unsubscribe_get", token), lambda_context)
    assert response["statusCode"] in (400, 403)
    page = response["body"]
    assert "This link cannot be used" in page
    assert '<form method="post" action="preferences"' in page and 'name="email"' in page
    assert "Email me a new link" in page
    assert quote(token) not in page


def test_a_page_error_that_is_not_a_dead_link_offers_no_form(handler, lambda_context) -> None:
    key = Identity.of(wiring.pepper(), "email", "dead@example.com").key
    token = issue(wiring.key_ring(), "email", key, "product")
    event = sample_event("unsubscribe_form_save", token, body="action=nothing", isBase64Encoded=False)
    response = handler(event, lambda_context)
    assert response["statusCode"] == 400 and 'name="email"' not in response["body"]


def test_the_unsubscribe_role_updates_only_the_new_link_counters(aws: Stack) -> None:
    from botocore.exceptions import ClientError

    from optout.core import clients
    from optout.unsubscribe.link_request import DynamoRateLimits
    from optout_local.iam import in_process

    # Given the function's role, as the local IAM holds it from template.yaml
    table = aws.ref("SuppressionTable")
    key = Identity.of(wiring.pepper(), "email", "role@example.com").key
    with in_process.installed().running("UnsubscribeFunction"):
        # When it counts a request, it may (a rate# item)
        assert DynamoRateLimits(table).take(f"email#{key}", 3, 3600, datetime.now(UTC)) is True
        # But an UpdateItem on the address's state item is refused (dynamodb:LeadingKeys)
        with pytest.raises(ClientError) as caught:
            clients.dynamodb().update_item(
                TableName=table,
                Key={"pk": {"S": key}, "sk": {"S": "state"}},
                UpdateExpression="SET blocked = :b",
                ExpressionAttributeValues={":b": {"NULL": True}},
            )
    assert caught.value.response["Error"]["Code"] == "AccessDeniedException"
    assert DynamoSuppressionStore(table).get(key) is None


def test_the_address_limit_also_holds_per_mailbox_whatever_plus_tags_or_gmail_dots(handler, lambda_context) -> None:
    # Given variants of one Gmail inbox, each asked for from an IP of its own
    limit = get_settings().link_requests_per_address
    variants = [f"f.lood+{i}@gmail.com" if i % 2 else f"flo.od+{i}@googlemail.com" for i in range(limit + 3)]
    answers = [ask(handler, lambda_context, email_field(v), ip=f"203.0.113.{i + 1}") for i, v in enumerate(variants)]
    # Then the answers are the same, and the inbox got no more than the limit
    assert len({(a["statusCode"], a["body"]) for a in answers}) == 1
    assert len(sent_mail()) == limit
    assert mailbox("F.Lood+news@gmail.com".lower()) == mailbox("flood@googlemail.com") == "flood@gmail.com"
    assert mailbox("a.b+x@example.com") == "a.b@example.com"  # dots matter outside Gmail
