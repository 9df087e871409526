"""The local gateway's routing, event building and SigV4 check, without a server."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from optout_local import sigv4
from optout_local.admin_client import AdminClient
from optout_local.gateway import Gateway, RouteTable, build_event
from optout_local.provision import Route

ROUTES = [
    Route("ANY", "/unsubscribe", "Unsubscribe", "NONE"),
    Route("GET", "/admin/notices/{id}", "Admin", "AWS_IAM"),
    Route("GET", "/admin/notices/{id}/deliveries", "Admin", "AWS_IAM"),
    Route("POST", "/files/{proxy+}", "Files", "NONE"),
]


@pytest.mark.parametrize(
    ("method", "path", "function", "params"),
    [
        ("GET", "/unsubscribe", "Unsubscribe", {}),
        ("DELETE", "/unsubscribe", "Unsubscribe", {}),
        ("GET", "/admin/notices/n-1", "Admin", {"id": "n-1"}),
        ("GET", "/admin/notices/n-1/deliveries", "Admin", {"id": "n-1"}),
        ("POST", "/files/a/b/c", "Files", {"proxy": "a/b/c"}),
    ],
)
def test_routes_match_like_api_gateway(method, path, function, params) -> None:
    found = RouteTable(ROUTES).match(method, path)
    assert found is not None
    compiled, got = found
    assert compiled.route.function == function and got == params


@pytest.mark.parametrize(("method", "path"), [("POST", "/admin/notices/1"), ("GET", "/nope"), ("GET", "/files/x")])
def test_unknown_routes_do_not_match(method, path) -> None:
    assert RouteTable(ROUTES).match(method, path) is None


def test_event_is_payload_v2_with_joined_headers_and_base64_for_binary() -> None:
    compiled, params = RouteTable(ROUTES).match("GET", "/admin/notices/7")  # type: ignore[misc]
    event = build_event(
        compiled,
        params,
        "GET",
        "/admin/notices/7",
        "a=1&a=2&b=",
        [("Host", "h"), ("X-Multi", "1"), ("X-Multi", "2"), ("Cookie", "c1=1; c2=2"), ("Content-Type", "image/png")],
        b"\x89PNG",
        "10.0.0.1",
        "us-east-1",
        "testing",
    )
    assert event["version"] == "2.0" and event["routeKey"] == "GET /admin/notices/{id}"
    assert event["headers"]["x-multi"] == "1,2" and event["cookies"] == ["c1=1", "c2=2"]
    assert event["queryStringParameters"] == {"a": "1,2", "b": ""}
    assert event["pathParameters"] == {"id": "7"}
    assert event["isBase64Encoded"] is True and event["body"] == "iVBORw=="
    assert event["requestContext"]["authorizer"]["iam"]["accessKey"] == "testing"
    json.dumps(event)


@pytest.mark.parametrize(
    ("content_type", "as_text"),
    [
        ("text/plain; charset=utf-8", True),
        ("application/json", True),
        ("application/xml", True),
        ("application/x-www-form-urlencoded", False),  # a one-click POST and a Twilio webhook arrive base64
        ("multipart/form-data; boundary=b", False),
        (None, False),
    ],
)
def test_only_text_types_arrive_as_a_string_as_an_http_api_hands_them_over(content_type, as_text) -> None:
    compiled, params = RouteTable(ROUTES).match("POST", "/unsubscribe")  # type: ignore[misc]
    headers = [("Host", "h")] + ([("Content-Type", content_type)] if content_type else [])
    event = build_event(compiled, params, "POST", "/unsubscribe", "", headers, b"a=1", "10.0.0.1", "us-east-1", None)
    assert event["isBase64Encoded"] is (not as_text)
    assert event["body"] == ("a=1" if as_text else "YT0x")


def signed(
    method: str, url: str, body: bytes, key: str = "testing", secret: str = "testing", region: str = "us-east-1"
):  # type: ignore[no-untyped-def]
    request = AWSRequest(method=method, url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(key, secret), "execute-api", region).add_auth(request)
    headers = dict(request.headers.items())
    headers["Host"] = url.split("/")[2]
    return headers


URL = "http://127.0.0.1:3000/admin/notices?x=1"


def test_a_correct_signature_is_accepted() -> None:
    headers = signed("POST", URL, b'{"a":1}')
    assert sigv4.verify("POST", URL, headers, b'{"a":1}', "us-east-1") == "testing"


@pytest.mark.parametrize("change", ["body", "secret", "region", "path", "unsigned", "key", "expired"])
def test_wrong_signatures_are_refused(change: str) -> None:
    body = b'{"a":1}'
    headers = signed(
        "POST",
        URL,
        body,
        secret="wrong" if change == "secret" else "testing",
        region="eu-west-1" if change == "region" else "us-east-1",
        key="AKIAOTHER" if change == "key" else "testing",
    )
    url, now = URL, None
    if change == "body":
        body = b'{"a":2}'
    if change == "path":
        url = URL.replace("notices", "notice")
    if change == "unsigned":
        headers.pop("Authorization")
    if change == "expired":
        now = datetime.now(UTC) + timedelta(minutes=20)
    with pytest.raises(sigv4.SignatureError):
        sigv4.verify("POST", url, headers, body, "us-east-1", now=now)


def _signed_unsigned_payload(body: bytes, url: str = URL) -> dict[str, str]:
    """Headers of a request signed as an SDK does with payload signing off (UNSIGNED-PAYLOAD)."""
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={"Content-Type": "application/json", "X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"},
    )
    SigV4Auth(Credentials("testing", "testing"), "execute-api", "us-east-1").add_auth(request)
    return {**dict(request.headers.items()), "Host": url.split("/")[2]}


@pytest.mark.parametrize("body", [b'{"a":1}', b'{"a":2}'], ids=["as-signed", "swapped"])
def test_a_signed_unsigned_payload_is_refused(body: bytes) -> None:
    # Given a request whose signature covers the header UNSIGNED-PAYLOAD in place of its body
    headers = _signed_unsigned_payload(b'{"a":1}')
    assert "x-amz-content-sha256" in headers["Authorization"]  # signed, so the signature itself is right
    # Then it is refused whatever body it carries: the signature vouches for none
    with pytest.raises(sigv4.SignatureError, match="payload must be signed"):
        sigv4.verify("POST", URL, headers, body, "us-east-1")


def test_a_content_hash_header_must_be_the_body_hash() -> None:
    body = b'{"a":1}'
    request = AWSRequest(
        method="POST", url=URL, data=body, headers={"X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest()}
    )
    SigV4Auth(Credentials("testing", "testing"), "execute-api", "us-east-1").add_auth(request)
    headers = {**dict(request.headers.items()), "Host": URL.split("/")[2]}
    # The body's own hash, signed, is what an SDK with payload signing on may send: accepted
    assert sigv4.verify("POST", URL, headers, body, "us-east-1") == "testing"
    # Any other body under that header is refused
    with pytest.raises(sigv4.SignatureError):
        sigv4.verify("POST", URL, headers, b'{"a":2}', "us-east-1")


@pytest.fixture
def admin_gateway() -> Iterator[tuple[Gateway, list[dict[str, Any]]]]:
    """The local gateway on a free port with one AWS_IAM route; the function records its events."""
    events: list[dict[str, Any]] = []

    def invoke(function: str, event: dict[str, Any]) -> dict[str, Any]:
        events.append(event)
        return {"statusCode": 202, "headers": {"content-type": "application/json"}, "body": '{"id":"n1"}'}

    gateway = Gateway([Route("POST", "/admin/notices", "AdminApiFunction", "AWS_IAM")], invoke, "us-east-1", port=0)
    gateway.start()
    try:
        yield gateway, events
    finally:
        gateway.stop()


def test_the_gateway_answers_403_to_unsigned_payload_and_the_admin_client_never_sends_it(
    admin_gateway: tuple[Gateway, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway, events = admin_gateway
    # Given what the admin client puts on the wire
    sent: list[dict[str, str]] = []
    real_request = requests.request

    def record(method: str, url: str, **kwargs: Any) -> requests.Response:
        sent.append(dict(kwargs["headers"]))
        return real_request(method, url, **kwargs)

    monkeypatch.setattr(requests, "request", record)
    client = AdminClient(gateway.url, "us-east-1", Credentials("testing", "testing"))
    # When it creates a notice, its request passes the check and reaches the function with its body
    assert client.request("POST", "/admin/notices", body={"kind": "policy"}) == (202, {"id": "n1"})
    assert [json.loads(e["body"]) for e in events] == [{"kind": "policy"}]
    assert not any(v == "UNSIGNED-PAYLOAD" for v in sent[0].values())
    # When a request signed over UNSIGNED-PAYLOAD comes, with its body swapped
    headers = _signed_unsigned_payload(b'{"a":1}', gateway.url + "/admin/notices")
    answer = real_request("POST", gateway.url + "/admin/notices", data=b'{"a":2}', headers=headers, timeout=10)
    # Then the gateway answers 403 as to any mis-signed request, and the function never runs
    assert answer.status_code == 403 and answer.json() == {"message": "Forbidden"}
    assert len(events) == 1


def test_the_admin_client_signs_over_its_body_for_a_deployed_api_too(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the admin client pointed at an https API (where botocore may sign UNSIGNED-PAYLOAD)
    url = "https://abc123.execute-api.us-east-1.amazonaws.com"
    sent: list[tuple[dict[str, str], bytes]] = []

    def capture(method: str, target: str, **kwargs: Any) -> requests.Response:
        sent.append((dict(kwargs["headers"]), kwargs["data"]))
        response = requests.Response()
        response.status_code, response._content = 202, b"{}"
        return response

    monkeypatch.setattr(requests, "request", capture)
    AdminClient(url, "us-east-1", Credentials("testing", "testing")).request("POST", "/admin/notices", body={"k": 1})
    ((headers, body),) = sent
    headers["Host"] = url.split("/")[2]
    # Then it sends no content-hash header, and its signature holds for its own body only
    assert not {k.lower() for k in headers} & {"x-amz-content-sha256"}
    assert sigv4.verify("POST", url + "/admin/notices", headers, body, "us-east-1") == "testing"
    with pytest.raises(sigv4.SignatureError):
        sigv4.verify("POST", url + "/admin/notices", headers, b'{"k":2}', "us-east-1")
