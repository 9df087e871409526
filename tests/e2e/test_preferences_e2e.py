"""'Email me a new link' over HTTP against the real local stack, the mail read from its outbox.

Every request here comes from 127.0.0.1, so all of them share one IP's count (20 an hour by
default): this file sorts before test_schemathesis.py, which may post to /preferences too.
"""

from __future__ import annotations

import json
import re
from email import message_from_string
from email.message import EmailMessage
from email.policy import default as email_policy
from typing import Any

import pytest
import requests

from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e
SAME_ANSWER = "If we send email to that address, a new link is on its way."


def outbox_to(stack: RunningStack, address: str) -> list[EmailMessage]:
    mails = json.loads(stack.cli("outbox", "--json", "--last", "0").stdout)["email"]
    parsed: list[Any] = [message_from_string(m["raw"], policy=email_policy) for m in mails]
    return [m for m in parsed if m["To"] == address]


def link_in(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    (url,) = re.findall(r"https?://\S+/unsubscribe\?token=\S+", body.get_content())
    return str(url)


def ask(stack: RunningStack, **kwargs: Any) -> requests.Response:
    return requests.post(f"{stack.api_url}/preferences", timeout=30, allow_redirects=False, **kwargs)


def test_from_a_dead_link_to_a_new_one_by_email(local_stack: RunningStack) -> None:
    address = "e2e-new-link@example.com"
    # Given a link that cannot be used (its signature is damaged)
    dead = local_stack.cli("link", "email", address, "--topic", "product").stdout.strip()[:-4] + "AAAA"
    page = requests.get(dead, timeout=30)
    assert page.status_code == 403
    assert '<form method="post" action="preferences"' in page.text and 'name="email"' in page.text
    # When the reader asks for a new link from that page (its form posts to /preferences)
    answer = ask(local_stack, data={"email": address})
    # Then the page says the same as for any address, and the mail carries a fresh link
    assert answer.status_code == 200 and SAME_ANSWER in answer.text and address not in answer.text
    (mail,) = outbox_to(local_stack, address)
    url = link_in(mail)
    assert url.startswith(local_stack.api_url + "/unsubscribe?token=") and "example.com" not in url
    # And following it shows that address's preference page, where a choice is recorded for it
    shown = requests.get(url, timeout=30)
    assert shown.status_code == 200 and 'value="marketing"' in shown.text
    assert requests.post(url, data={"action": "unsubscribe_all"}, timeout=30).status_code == 200
    state = json.loads(local_stack.cli("suppression", "show", "email", address, "--json").stdout)
    assert state["all_optional"] is True
    assert [e["source"] for e in state["events"]] == ["preference_page"]
    # And an address we never mailed gets exactly the same answer
    unknown = ask(local_stack, data={"email": "e2e-never-seen@example.org"})
    assert (unknown.status_code, unknown.text) == (answer.status_code, answer.text)


def test_over_the_address_limit_the_answer_stays_the_same_and_no_mail_goes(local_stack: RunningStack) -> None:
    address = "e2e-flooded@example.com"
    answers = [ask(local_stack, data={"email": address}) for _ in range(4)]  # the limit is 3 an hour
    assert {(a.status_code, a.text) for a in answers} == {(answers[0].status_code, answers[0].text)}
    assert answers[0].status_code == 200
    assert len(outbox_to(local_stack, address)) == 3


def test_bad_input_is_a_4xx_page_and_mails_nothing(local_stack: RunningStack) -> None:
    before = len(json.loads(local_stack.cli("outbox", "--json", "--last", "0").stdout)["email"])
    cases = [
        ({"data": {"name": "x"}}, 400),  # no email field
        ({}, 415),  # no body at all, so no form type
        ({"data": {"email": "not an address"}}, 400),
        ({"data": {"email": "x" * 2_000_000}}, 413),  # a huge body
        ({"data": "email=x%40example.com", "headers": {"Content-Type": "text/plain"}}, 415),
    ]
    for kwargs, status in cases:
        response = ask(local_stack, **kwargs)
        assert response.status_code == status, (kwargs.keys(), response.status_code)
        assert response.headers["Content-Type"].startswith("text/html")
    after = len(json.loads(local_stack.cli("outbox", "--json", "--last", "0").stdout)["email"])
    assert after == before
    # And the form itself is a public page
    form = requests.get(f"{local_stack.api_url}/preferences", timeout=30)
    assert form.status_code == 200 and 'name="email"' in form.text
