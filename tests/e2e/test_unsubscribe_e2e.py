"""Over HTTP against the real local stack: links, the page, one-click, and the CLI."""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e


def link(stack: RunningStack, address: str, topic: str = "product") -> str:
    url = stack.cli("link", "email", address, "--topic", topic).stdout.strip()
    assert "\n" not in url
    return url


def show(stack: RunningStack, address: str) -> dict:
    return json.loads(stack.cli("suppression", "show", "email", address, "--json").stdout)


def test_link_is_a_signed_url_on_the_local_gateway_without_the_address(local_stack) -> None:
    url = link(local_stack, "e2e-link@example.com")
    parts = urlsplit(url)
    assert url.startswith(local_stack.api_url + "/unsubscribe?token=")
    token = parse_qs(parts.query)["token"][0]
    assert "example.com" not in url and "e2e-link" not in token
    assert len(token.split(".")) == 7


def test_link_refuses_a_required_topic_which_has_no_opt_out(local_stack) -> None:
    refused = local_stack.cli("link", "email", "e2e-link@example.com", "--topic", "policy", check=False)
    assert refused.returncode == 2 and refused.stdout == ""
    assert "policy is a required topic" in refused.stderr and "optional topics: marketing, product" in refused.stderr


def test_get_and_head_change_nothing(local_stack) -> None:
    address = "e2e-get@example.com"
    url = link(local_stack, address)
    for _ in range(3):
        assert requests.get(url, timeout=10).status_code == 200
        assert requests.head(url, timeout=10).status_code == 200
    state = show(local_stack, address)
    assert state["events"] == [] and state["topics"] == [] and state["blocked"] is None


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_one_click_post_opts_out_before_answering_without_redirect(local_stack, encoding) -> None:
    address = f"e2e-one-click-{encoding}@example.com"
    url = link(local_stack, address)
    # requests sends data= urlencoded and files= as multipart/form-data, as mail clients may
    body = (
        {"data": {"List-Unsubscribe": "One-Click"}}
        if encoding == "urlencoded"
        else {"files": {"List-Unsubscribe": (None, "One-Click")}}
    )

    def send() -> requests.Response:
        return requests.post(url, allow_redirects=False, timeout=10, **body)  # type: ignore[arg-type]

    response = send()
    assert response.status_code == 200
    assert "location" not in response.headers
    # In force the moment the response arrived
    state = show(local_stack, address)
    assert state["topics"] == ["product"] and state["all_optional"] is False
    assert [(e["action"], e["scope"], e["source"]) for e in state["events"]] == [("opt_out", "product", "one_click")]
    # A second POST is harmless
    assert send().status_code == 200
    assert len(show(local_stack, address)["events"]) == 1


def test_form_post_from_the_page_applies_preferences(local_stack) -> None:
    address = "e2e-form@example.com"
    url = link(local_stack, address, "marketing")
    response = requests.post(url, data={"action": "unsubscribe_all"}, timeout=10)
    assert response.status_code == 200 and "all optional emails" in response.text
    state = show(local_stack, address)
    assert state["all_optional"] is True
    response = requests.post(url, data={"action": "save", "subscribed": ["product"]}, timeout=10)
    assert response.status_code == 200
    state = show(local_stack, address)
    assert state["all_optional"] is False and state["topics"] == ["marketing"]


@pytest.mark.parametrize(
    ("mangle", "status"),
    [(lambda t: t[:40], 400), (lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"), 403), (lambda t: "x", 400)],
    ids=["truncated", "tampered", "garbage"],
)
def test_bad_tokens_get_4xx_pages(local_stack, mangle, status) -> None:
    url = link(local_stack, "e2e-bad@example.com")
    token = parse_qs(urlsplit(url).query)["token"][0]
    bad = f"{local_stack.api_url}/unsubscribe?token={mangle(token)}"
    for response in (
        requests.get(bad, timeout=10),
        requests.post(bad, data={"List-Unsubscribe": "One-Click"}, allow_redirects=False, timeout=10),
    ):
        assert response.status_code == status
        assert "text/html" in response.headers["content-type"]
        assert "e2e-bad" not in response.text
    assert show(local_stack, "e2e-bad@example.com")["events"] == []


def test_wrong_method_content_type_and_size(local_stack) -> None:
    url = link(local_stack, "e2e-misc@example.com")
    assert requests.put(url, timeout=10).status_code == 405
    assert requests.delete(url, timeout=10).status_code == 405
    assert requests.post(url, json={"List-Unsubscribe": "One-Click"}, timeout=10).status_code == 415
    assert requests.post(url, data={"x": "a" * 20000}, timeout=10).status_code == 413
    assert requests.get(local_stack.api_url + "/nowhere", timeout=10).status_code == 404
    assert show(local_stack, "e2e-misc@example.com")["events"] == []


def test_suppression_show_rejects_a_bad_address(local_stack) -> None:
    result = local_stack.cli("suppression", "show", "email", "not-an-address", check=False)
    assert result.returncode == 2
    assert "exactly one @" in result.stderr


def test_invoke_runs_a_function_with_a_sample_event_on_the_running_stack(local_stack) -> None:
    address = "e2e-invoke@example.com"
    token = parse_qs(urlsplit(link(local_stack, address)).query)["token"][0]
    result = local_stack.cli("invoke", "Unsubscribe", "--event", "events/unsubscribe_one_click.json", "--token", token)
    response = json.loads(result.stdout)
    assert response["statusCode"] == 200
    assert show(local_stack, address)["topics"] == ["product"]
    # Function logs went to stderr, as sam local invoke does, and carry no address
    assert "consent submitted" in result.stderr and address not in result.stderr


def test_no_plain_address_in_the_stack_output(local_stack) -> None:
    url = link(local_stack, "e2e-leak@example.com")
    requests.post(url, data={"List-Unsubscribe": "One-Click"}, timeout=10)
    requests.get(url + "x", timeout=10)
    time.sleep(0.5)  # let the drain thread catch up
    output = local_stack.log_path.read_text() + local_stack.stdout_path.read_text()  # type: ignore[attr-defined]
    assert "consent submitted" in output  # the function's own logs are in what we scan
    assert "@example.com" not in output and "e2e-leak" not in output


def test_a_wrong_region_a_bad_port_or_no_stack_is_one_clear_line(local_stack) -> None:
    import subprocess

    from tests.e2e.conftest import OPTOUT

    def run(**env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [OPTOUT, "dlq", "list"], env={**local_stack.env, **env}, capture_output=True, text=True, timeout=120
        )

    wrong_region = run(OPTOUT_REGION="eu-west-1")
    assert wrong_region.returncode == 1 and wrong_region.stderr.strip() == (
        f"Error: the local stack at {local_stack.aws_url} runs in region us-east-1, not eu-west-1: "
        "set OPTOUT_REGION=us-east-1 (or unset it)"
    )
    bad_port = run(OPTOUT_AWS_PORT="abc")
    assert bad_port.returncode == 2 and "Traceback" not in bad_port.stderr
    assert bad_port.stderr.strip().endswith("Error: OPTOUT_AWS_PORT must be a port number from 1 to 65535, not 'abc'")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        free = str(probe.getsockname()[1])
    nothing = run(OPTOUT_AWS_PORT=free)
    assert nothing.returncode == 1 and len(nothing.stderr.strip().splitlines()) == 1
    assert "no local stack answers" in nothing.stderr and "make run" in nothing.stderr
    # and with the right variables, the same command lists the DLQs
    listed = run()
    assert listed.returncode == 0 and "SendDeadLetterQueue" in listed.stdout
