"""The local gateway's routing, event building and SigV4 check, without a server."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from optout_local import sigv4
from optout_local.gateway import RouteTable, build_event
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
