"""SES v2 SendBulkEmail and the email template operations, as tools/optout_local/ses_emulation.py emulates them."""

from __future__ import annotations

import email
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import default as email_policy
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto import mock_aws

from optout_local import moto_patches
from optout_local.provision import ACCOUNT_ID
from optout_local.ses_emulation import RenderingFailure, render, rendering_failures
from optout_local.stack import free_port

REGION = "us-east-1"
SENDER = "Notices <notices@example.org>"


@pytest.fixture
def sesv2() -> Iterator[Any]:
    """moto in this process, patched, with the sender verified as the provisioner verifies it."""
    moto_patches.apply()
    with mock_aws():
        client = boto3.client("sesv2", region_name=REGION)
        client.create_email_identity(EmailIdentity="notices@example.org")
        yield client


def outbox() -> list[Any]:
    from moto.ses.models import ses_backends

    return [m for m in ses_backends[ACCOUNT_ID][REGION].sent_messages if hasattr(m, "raw_data")]


def parsed(raw: str) -> EmailMessage:
    message = email.message_from_string(raw, policy=email_policy)
    assert isinstance(message, EmailMessage)
    return message


def body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    assert part is not None and part.get_content_subtype() == subtype
    return str(part.get_content())


def entry(to: str, data: dict[str, Any] | None = None, headers: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"Destination": {"ToAddresses": [to]}}
    if data is not None:
        item["ReplacementEmailContent"] = {"ReplacementTemplate": {"ReplacementTemplateData": json.dumps(data)}}
    if headers:
        item["ReplacementHeaders"] = [{"Name": n, "Value": v} for n, v in headers]
    return item


def inline(subject: str, text: str, html: str | None = None, **defaults: Any) -> dict[str, Any]:
    content = {"Subject": subject, "Text": text, **({"Html": html} if html else {})}
    return {"Template": {"TemplateContent": content, "TemplateData": json.dumps(defaults)}}


def unsubscribe(n: int) -> list[tuple[str, str]]:
    return [
        ("List-Unsubscribe", f"<https://optout.example.org/u?token=t{n}>, <mailto:unsub+{n}@example.org>"),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
    ]


def error(raised: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    response: Any = raised.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Message"]


def test_bulk_send_with_inline_content_stores_one_message_per_destination_with_its_own_headers(sesv2: Any) -> None:
    # Given an inline template with defaults, and three destinations with their own data and headers
    html = "<p>Dear {{name}}</p><a href='{{link}}'>x</a>"
    content = inline(
        "Notice for {{name}}", "Dear {{name}}, see {{link}}", html, name="customer", link="https://example.org/d"
    )
    entries = [entry(f"r{n}@example.com", {"name": f"R{n} <b>"}, unsubscribe(n)) for n in range(3)]
    # When they are sent in one call
    answer = sesv2.send_bulk_email(FromEmailAddress=SENDER, DefaultContent=content, BulkEmailEntries=entries)
    # Then each entry succeeded, in order, and moto's outbox holds one raw message per destination
    results = answer["BulkEmailEntryResults"]
    assert [r["Status"] for r in results] == ["SUCCESS"] * 3
    sent = outbox()
    assert [m.id for m in sent] == [r["MessageId"] for r in results]
    for n, (stored, result) in enumerate(zip(sent, results, strict=True)):
        message = parsed(stored.raw_data)
        assert message["To"] == f"r{n}@example.com" and message["From"] == SENDER
        assert stored.source == SENDER and f"r{n}@example.com" in stored.destinations
        assert message["Subject"] == f"Notice for R{n} <b>"
        assert message["Message-ID"] == f"<{result['MessageId']}@email.amazonses.com>"
        assert message["MIME-Version"] == "1.0" and message["Date"]
        # its own List-Unsubscribe, first, and List-Unsubscribe-Post after it
        names = [k for k in message if k.startswith("List-")]
        assert names == ["List-Unsubscribe", "List-Unsubscribe-Post"]
        assert message["List-Unsubscribe"] == unsubscribe(n)[0][1]
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        # per-destination data over the defaults, HTML inserted as it is (SES does not escape)
        assert message.get_content_type() == "multipart/alternative"
        assert body(message, "plain").strip() == f"Dear R{n} <b>, see https://example.org/d"
        assert body(message, "html").strip() == f"<p>Dear R{n} <b></p><a href='https://example.org/d'>x</a>"


def test_template_headers_are_replaced_by_the_entrys_and_kept_otherwise(sesv2: Any) -> None:
    # Given a template header, overridden by one entry and not by the other
    content = inline("s", "t")
    content["Template"]["Headers"] = [{"Name": "X-Campaign", "Value": "default"}]
    entries = [entry("a@example.com", headers=[("X-Campaign", "own"), ("X-Other", "1")]), entry("b@example.com")]
    # When sent
    sesv2.send_bulk_email(FromEmailAddress=SENDER, DefaultContent=content, BulkEmailEntries=entries)
    # Then the entry's value replaces the template's, and the other entry keeps the template's
    first, second = (parsed(m.raw_data) for m in outbox())
    assert (first.get_all("X-Campaign"), first["X-Other"]) == (["own"], "1")
    assert second.get_all("X-Campaign") == ["default"] and second["X-Other"] is None


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ([("From", "x@example.org")], "set by SES"),
        ([("List-Unsubscribe", "<a>"), ("List-Unsubscribe", "<b>")], "only once"),
        ([(f"X-H{i}", "v") for i in range(16)], "at most 15"),
        ([("Bad Name", "v")], "invalid header name"),
    ],
)  # fmt: skip
def test_headers_ses_does_not_take_are_a_bad_request(sesv2: Any, headers: list[tuple[str, str]], problem: str) -> None:
    # Given an entry with a header SES refuses
    # When it is sent
    with pytest.raises(ClientError) as raised:
        sesv2.send_bulk_email(FromEmailAddress=SENDER, DefaultContent=inline("s", "t"),
                              BulkEmailEntries=[entry("a@example.com", headers=headers)])  # fmt: skip
    # Then the call is refused, and nothing sent
    code, status, message = error(raised)
    assert (code, status) == ("BadRequestException", 400) and problem in message
    assert outbox() == []


def test_stored_template_crud_and_its_errors(sesv2: Any) -> None:
    # Given a stored template with tags
    content = {"Subject": "Hello {{name}}", "Text": "Hi {{name}}", "Html": "<b>{{name}}</b>"}
    sesv2.create_email_template(TemplateName="notice-v1", TemplateContent=content, Tags=[{"Key": "team", "Value": "x"}])
    # When it is read, listed, created again, updated and deleted
    got = sesv2.get_email_template(TemplateName="notice-v1")
    listed = sesv2.list_email_templates()["TemplatesMetadata"]
    with pytest.raises(ClientError) as again:
        sesv2.create_email_template(TemplateName="notice-v1", TemplateContent=content)
    sesv2.update_email_template(TemplateName="notice-v1", TemplateContent={"Subject": "New", "Text": "new"})
    updated = sesv2.get_email_template(TemplateName="notice-v1")["TemplateContent"]
    sesv2.delete_email_template(TemplateName="notice-v1")
    # Then each answers as SES does
    assert got["TemplateContent"] == content and got["Tags"] == [{"Key": "team", "Value": "x"}]
    assert [t["TemplateName"] for t in listed] == ["notice-v1"] and listed[0]["CreatedTimestamp"]
    assert error(again)[:2] == ("AlreadyExistsException", 400)
    assert updated == {"Subject": "New", "Text": "new"}
    assert sesv2.list_email_templates()["TemplatesMetadata"] == []
    for call in (sesv2.get_email_template, sesv2.delete_email_template):
        with pytest.raises(ClientError) as missing:
            call(TemplateName="notice-v1")
        assert error(missing)[:2] == ("NotFoundException", 404)
    with pytest.raises(ClientError) as gone:
        sesv2.update_email_template(TemplateName="notice-v1", TemplateContent=content)
    assert error(gone)[:2] == ("NotFoundException", 404)
    with pytest.raises(ClientError) as bad_name:
        sesv2.create_email_template(TemplateName="has space", TemplateContent=content)
    assert error(bad_name)[:2] == ("BadRequestException", 400)


def test_list_email_templates_pages(sesv2: Any) -> None:
    # Given 12 templates
    for n in range(12):
        sesv2.create_email_template(TemplateName=f"t{n:02}", TemplateContent={"Text": "x"})
    # When listed with SES's default page size, then the next page
    first = sesv2.list_email_templates()
    second = sesv2.list_email_templates(NextToken=first["NextToken"])
    # Then 10, then the 2 left, and no token after the last
    assert len(first["TemplatesMetadata"]) == 10
    assert [t["TemplateName"] for t in second["TemplatesMetadata"]] == ["t10", "t11"] and "NextToken" not in second
    with pytest.raises(ClientError) as too_big:
        sesv2.list_email_templates(PageSize=101)
    assert error(too_big)[:2] == ("BadRequestException", 400)


def test_bulk_send_with_a_stored_template_renders_handlebars(sesv2: Any) -> None:
    # Given a stored template with nested attributes, a condition and a list
    text = (
        "Hi {{contact.first}}!{{#if vip}} VIP{{else}} member{{/if}}:{{#each items}} {{@index}}={{this.name}}{{/each}}"
    )
    sesv2.create_email_template(TemplateName="rich", TemplateContent={"Subject": "{{contact.first}}", "Text": text})
    data = [{"contact": {"first": "Ann"}, "vip": True, "items": [{"name": "a"}, {"name": "b"}]},
            {"contact": {"first": "Bo"}, "vip": False, "items": []}]  # fmt: skip
    # When sent by name to one destination and by ARN to another
    for address, item in zip(("ann@example.com", "bo@example.com"), data, strict=True):
        arn_or_name = {"TemplateName": "rich"} if item["vip"] else {
            "TemplateArn": f"arn:aws:ses:{REGION}:{ACCOUNT_ID}:template/rich"}  # fmt: skip
        sesv2.send_bulk_email(FromEmailAddress=SENDER, DefaultContent={"Template": arn_or_name},
                              BulkEmailEntries=[entry(address, item)])  # fmt: skip
    # Then each is rendered with its own data
    ann, bo = (parsed(m.raw_data) for m in outbox())
    assert body(ann, "plain").strip() == "Hi Ann! VIP: 0=a 1=b" and ann["Subject"] == "Ann"
    assert body(bo, "plain").strip() == "Hi Bo! member:"
    assert ann.get_content_type() == "text/plain"


def test_a_missing_variable_is_accepted_and_not_sent_as_ses_does(sesv2: Any) -> None:
    # Given a template one entry's data lacks a variable of
    entries = [entry("ok@example.com", {"name": "Ok"}), entry("bad@example.com", {})]
    # When sent
    answer = sesv2.send_bulk_email(FromEmailAddress=SENDER, DefaultContent=inline("s", "Hi {{name}}"),
                                   BulkEmailEntries=entries)  # fmt: skip
    # Then both are accepted with a MessageId, only the first is sent, and the other is a rendering failure
    results = answer["BulkEmailEntryResults"]
    assert [r["Status"] for r in results] == ["SUCCESS", "SUCCESS"] and all(r["MessageId"] for r in results)
    assert [m.id for m in outbox()] == [results[0]["MessageId"]]
    failures = rendering_failures(ACCOUNT_ID, REGION)
    assert [(f["message_id"], f["destinations"]) for f in failures] == [(results[1]["MessageId"], ["bad@example.com"])]
    assert "name" in failures[0]["error"]


def test_inline_content_takes_simple_substitutions_only() -> None:
    # Given a condition in a template, When rendered as inline content and as a stored template
    # Then inline content does not render (SES: "only simple substitutions"), a stored template does
    with pytest.raises(RenderingFailure):
        render("{{#if a}}x{{/if}}", {"a": 1}, simple=True)
    assert render("{{#if a}}x{{/if}}{{{b}}}{{a.c}}", {"a": {"c": 2}, "b": "<i>"}) == "x<i>2"
    assert render("{{#unless a}}no{{/unless}}{{n}}", {"a": 0, "n": 1.0}) == "no1"


def test_more_than_50_entries_is_a_bad_request(sesv2: Any) -> None:
    # Given 51 destinations
    entries = [entry(f"r{n}@example.com", {}) for n in range(51)]
    # When sent in one call
    with pytest.raises(ClientError) as raised:
        sesv2.send_bulk_email(FromEmailAddress=SENDER, DefaultContent=inline("s", "t"), BulkEmailEntries=entries)
    # Then SES refuses the call, and sends none; 50 are taken
    code, status, message = error(raised)
    assert (code, status) == ("BadRequestException", 400) and "50" in message
    assert outbox() == []
    answer = sesv2.send_bulk_email(
        FromEmailAddress=SENDER, DefaultContent=inline("s", "t"), BulkEmailEntries=entries[:50]
    )
    assert len(answer["BulkEmailEntryResults"]) == 50 and len(outbox()) == 50


def test_an_unverified_sender_is_message_rejected(sesv2: Any) -> None:
    # Given a sender no identity of the account covers
    # When it sends
    with pytest.raises(ClientError) as raised:
        sesv2.send_bulk_email(FromEmailAddress="someone@elsewhere.example", DefaultContent=inline("s", "t"),
                              BulkEmailEntries=[entry("a@example.com")])  # fmt: skip
    # Then SES rejects the message, and nothing is sent
    code, status, message = error(raised)
    assert (code, status) == ("MessageRejected", 400) and "someone@elsewhere.example" in message
    assert outbox() == []


def test_an_unknown_configuration_set_or_template_is_not_found(sesv2: Any) -> None:
    # Given a configuration set and a template that do not exist
    # When named in a send
    with pytest.raises(ClientError) as no_set:
        sesv2.send_bulk_email(FromEmailAddress=SENDER, DefaultContent=inline("s", "t"),
                              BulkEmailEntries=[entry("a@example.com")], ConfigurationSetName="nope")  # fmt: skip
    with pytest.raises(ClientError) as no_template:
        sesv2.send_bulk_email(FromEmailAddress=SENDER, DefaultContent={"Template": {"TemplateName": "nope"}},
                              BulkEmailEntries=[entry("a@example.com")])  # fmt: skip
    # Then NotFoundException; an existing configuration set sends
    assert error(no_set)[:2] == ("NotFoundException", 404) and "nope" in error(no_set)[2]
    assert error(no_template)[:2] == ("NotFoundException", 404)
    sesv2.create_configuration_set(ConfigurationSetName="notices")
    sesv2.send_bulk_email(FromEmailAddress=SENDER, DefaultContent=inline("s", "t"),
                          BulkEmailEntries=[entry("a@example.com")], ConfigurationSetName="notices")  # fmt: skip
    assert len(outbox()) == 1


def test_an_invalid_address_fails_that_entry_only(sesv2: Any) -> None:
    # Given one entry with an address that is not local@domain
    entries = [entry("not-an-address"), entry("fine@example.com")]
    # When sent
    results = sesv2.send_bulk_email(FromEmailAddress=SENDER, DefaultContent=inline("s", "t"),
                                    BulkEmailEntries=entries)["BulkEmailEntryResults"]  # fmt: skip
    # Then that entry is INVALID_PARAMETER (BulkEmailStatus) and the other is sent
    assert results[0]["Status"] == "INVALID_PARAMETER" and "not-an-address" in results[0]["Error"]
    assert "MessageId" not in results[0]
    assert results[1]["Status"] == "SUCCESS" and [m.id for m in outbox()] == [results[1]["MessageId"]]


STORED = {"Template": {"TemplateName": "x"}}
WRONG_TYPE = {"Destination": {}, "ReplacementHeaders": [{"Name": "X-N", "Value": 5}]}


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        (
            {"FromEmailAddress": SENDER, "DefaultContent": STORED},
            'Missing required parameter in input: "BulkEmailEntries"',
        ),
        (
            {"FromEmailAddress": SENDER, "DefaultContent": STORED, "BulkEmailEntries": [WRONG_TYPE]},
            "Invalid type for parameter BulkEmailEntries[0].ReplacementHeaders[0].Value",
        ),
        (
            {"FromEmailAddress": 7, "DefaultContent": {}, "BulkEmailEntries": []},
            "Invalid type for parameter FromEmailAddress",
        ),
    ],
)
def test_a_request_the_model_does_not_allow_is_a_bad_request(sesv2: Any, params: dict[str, Any], problem: str) -> None:
    # Given a client that sends what botocore would have refused
    client = boto3.client("sesv2", region_name=REGION, config=Config(parameter_validation=False))
    # When the request reaches SES
    with pytest.raises(ClientError) as raised:
        client.send_bulk_email(**params)
    # Then it is checked against the model, as botocore's Stubber checks, and refused
    code, status, message = error(raised)
    assert (code, status) == ("BadRequestException", 400) and problem in message


@pytest.fixture
def moto_server() -> Iterator[str]:
    """The local AWS as `optout local` runs it: moto's server, patched, in a process of its own."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "optout_local.moto_process", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"moto did not start: {process.stderr.read() if process.stderr else ''}"
                    ) from None
                time.sleep(0.1)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_bulk_send_through_the_moto_server_reaches_its_outbox(moto_server: str) -> None:
    # Given moto's server and a client signed with the admin key, the sender verified
    client = boto3.client("sesv2", endpoint_url=moto_server, region_name=REGION,
                          aws_access_key_id="testing", aws_secret_access_key="testing",
                          config=Config(retries={"max_attempts": 1}))  # fmt: skip
    client.create_email_identity(EmailIdentity="notices@example.org")
    client.create_email_template(
        TemplateName="notice", TemplateContent={"Subject": "For {{name}}", "Text": "Hi {{name}}"}
    )
    # When one bulk call sends to two destinations
    template = {"Template": {"TemplateName": "notice", "TemplateData": '{"name": "x"}'}}
    entries = [entry("a@example.com", {"name": "A"}, unsubscribe(1)), entry("b@example.com", None, unsubscribe(2))]
    answer = client.send_bulk_email(FromEmailAddress=SENDER, DefaultContent=template, BulkEmailEntries=entries)
    results = answer["BulkEmailEntryResults"]
    # Then the server's outbox serves both, each with its own headers and data
    with urllib.request.urlopen(f"{moto_server}/_local/outbox/email", timeout=10) as response:
        mail = json.load(response)
    assert [m["message_id"] for m in mail] == [r["MessageId"] for r in results]
    first, second = (parsed(m["raw"]) for m in mail)
    assert (first["Subject"], second["Subject"]) == ("For A", "For x")
    assert first["List-Unsubscribe"] == unsubscribe(1)[0][1] and second["List-Unsubscribe"] == unsubscribe(2)[0][1]
    assert [k for k in second if k.startswith("List-")] == ["List-Unsubscribe", "List-Unsubscribe-Post"]
