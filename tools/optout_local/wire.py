"""What a request to the local AWS is, read off the wire: service, operation, input, caller, region.

The fault proxy (:mod:`optout_local.faults`) counts and fails requests by service and operation;
the local IAM (:mod:`optout_local.iam.requests`) authorizes them. Both read them here, the way the
local AWS sees them:

- the service from the SigV4 credential scope (``Credential=AKID/date/region/service/aws4_request``
  in the ``Authorization`` header, or ``X-Amz-Credential`` in a presigned URL's query), which also
  gives the caller's access key id and the region. SES signs v1 and v2 alike as ``ses``: a ``/v2/``
  path is SES v2 (``sesv2``);
- the operation from ``X-Amz-Target`` (AWS JSON protocols: DynamoDB, SQS, Secrets Manager, KMS,
  End User Messaging SMS), the form's ``Action`` (query protocols: SNS, STS, SES v1, an old SDK's
  SQS), or the method and path matched against botocore's own service model (REST: SES v2, S3);
- the operation's input (:attr:`Call.params`): the JSON body (JSON protocols); the form, flattened
  to one value per key with the serialized names as they are (``TopicArn``, ``PhoneNumber``,
  ``Entries.member.1.Id``) (query protocols); for REST the URI labels (S3 ``Bucket``/``Key``, SES
  v2 ``EmailIdentity``), the query-string and header members under their model names, and the
  JSON body's members (REST-JSON).

S3 requests may name the bucket in the host (virtual-hosted style: ``bucket.localhost:4566`` or
``bucket.s3.<region>.amazonaws.com``); path style is what a client pointed at ``127.0.0.1`` sends.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/([^/]+)/([^/]+)/([^/]+)/aws4_request")
_ACTION = re.compile(rb"(?:^|&)Action=([A-Za-z0-9]+)")
_VIRTUAL_HOST = (
    re.compile(r"^(?P<bucket>.+)\.localhost$"),
    re.compile(r"^(?P<bucket>.+)\.s3(?:[.-][a-z0-9-]+)*\.amazonaws\.com(?:\.cn)?$"),
)
# botocore's name for a signing name that differs from it (sesv2 is found from the path)
_BOTOCORE_NAME = {"sms-voice": "pinpoint-sms-voice-v2"}


def header(headers: Any, name: str) -> str:
    """A header's value as text ('' when absent): from a Message, a dict, or botocore's bytes values."""
    value = None
    if headers is not None:
        value = headers.get(name)
        if value is None and hasattr(headers, "items"):
            value = next((v for k, v in headers.items() if str(k).lower() == name.lower()), None)
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return "" if value is None else str(value)


@dataclass(frozen=True)
class Call:
    """One request as the local AWS receives it."""

    service: str  # dynamodb, sqs, sesv2, secretsmanager, kms, s3, sns, sts, sms-voice, ... (the signing name)
    operation: str
    protocol: str  # json, query, rest-json, rest-xml
    method: str
    path: str
    body: bytes
    query: str = ""  # the raw query string
    headers: tuple[tuple[str, str], ...] = ()
    access_key: str | None = None  # the caller's access key id, from the credential scope
    region: str | None = None  # the region the request was signed for
    labels: tuple[tuple[str, str], ...] = field(default=())  # REST URI labels, URL-decoded

    @property
    def name(self) -> str:
        return f"{self.service}:{self.operation}"

    @property
    def model_name(self) -> str:
        """botocore's name for the service (``pinpoint-sms-voice-v2`` for the ``sms-voice`` signing name)."""
        return _BOTOCORE_NAME.get(self.service, self.service)

    def json(self) -> Any:
        return json.loads(self.body or b"{}")

    def header(self, name: str) -> str:
        return header(dict(self.headers), name)

    @cached_property
    def params(self) -> dict[str, Any]:
        """The operation's input, as far as the wire tells it (see the module's docstring)."""
        if self.protocol == "json":
            with contextlib.suppress(ValueError):
                parsed = self.json()
                return parsed if isinstance(parsed, dict) else {}
            return {}
        if self.protocol == "query":
            form = parse_qs(self.query, keep_blank_values=True)
            if "x-www-form-urlencoded" in self.header("Content-Type") or not self.header("Content-Type"):
                with contextlib.suppress(UnicodeDecodeError):
                    for key, values in parse_qs(self.body.decode(), keep_blank_values=True).items():
                        form.setdefault(key, []).extend(values)
            return {key: values[-1] for key, values in form.items()}
        return _rest_params(self)


# --- the service model ------------------------------------------------------------------------


@cache
def model(service: str) -> Any:
    """botocore's service model (by botocore's name or the signing name)."""
    import botocore.session

    return botocore.session.get_session().get_service_model(_BOTOCORE_NAME.get(service, service))


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    keys: frozenset[str]  # query keys the route requires (its URI's, and its required query members)
    headers: frozenset[str]  # headers the operation requires (lower case): CopyObject's x-amz-copy-source
    literal: int  # length of the path's literal part: the more, the more specific
    operation: str


@cache
def _rest_routes(service: str) -> list[_Route]:
    """Every operation's route, from botocore's model."""
    routes = []
    service_model = model(service)
    for name in service_model.operation_names:
        http = service_model.operation_model(name).http
        uri = str(http.get("requestUri", "/"))
        path, _, query = uri.partition("?")
        pattern = ""
        for part in re.split(r"(\{[^}]+\})", path):
            if part.startswith("{"):
                label = part.strip("{}+")
                pattern += f"(?P<{label}>.+)" if part.endswith("+}") else f"(?P<{label}>[^/]+)"
            else:
                pattern += re.escape(part)
        shape = service_model.operation_model(name).input_shape
        required = shape.required_members if shape is not None else []
        located = [
            (str(shape.members[m].serialization.get("location")), str(shape.members[m].serialization.get("name", m)))
            for m in required
        ]
        keys = frozenset(k.split("=", 1)[0] for k in query.split("&") if k) | {
            n for loc, n in located if loc == "querystring"
        }
        headers = frozenset(n.lower() for loc, n in located if loc == "header")
        literal = len(re.sub(r"\{[^}]+\}", "", path))
        method = str(http.get("method", "GET"))
        routes.append(_Route(method, re.compile(f"^{pattern}/?$"), keys, headers, literal, name))
    return routes


def rest_operation(
    service: str, method: str, path: str, query: dict[str, list[str]], headers: frozenset[str] = frozenset()
) -> tuple[str, dict[str, str]] | None:
    """The operation a REST request is, and its URI labels; None if no route of the model matches.

    ``headers``: the request's header names, lower case. A route matches when the method, the path,
    the query keys it requires and the headers its operation requires all do; the most specific
    (most query keys, then headers, then literal path) wins.
    """
    if "x-id" in query:  # older botocore named S3 object operations in the URL
        name = query["x-id"][0]
        route = next((r for r in _rest_routes(service) if r.operation == name), None)
        found = route.pattern.match(path) if route else None
        return name, {k: unquote(v) for k, v in (found.groupdict() if found else {}).items()}
    best: tuple[tuple[int, int, int], _Route, re.Match[str]] | None = None
    for route in _rest_routes(service):
        if route.method != method or not route.keys <= set(query) or not route.headers <= headers:
            continue
        found = route.pattern.match(path)
        rank = (len(route.keys), len(route.headers), route.literal)
        if found and (best is None or rank > best[0]):
            best = (rank, route, found)
    if best is None:
        return None
    return best[1].operation, {k: unquote(v) for k, v in best[2].groupdict().items()}


def _rest_params(call: Call) -> dict[str, Any]:
    params: dict[str, Any] = dict(call.labels)
    with contextlib.suppress(Exception):  # an unknown service or operation: the labels alone
        operation = model(call.service).operation_model(call.operation)
        shape = operation.input_shape
        members = shape.members if shape is not None else {}
        query = parse_qs(call.query, keep_blank_values=True)
        headers = dict(call.headers)
        for name, member in members.items():
            location, wire_name = member.serialization.get("location"), member.serialization.get("name", name)
            if location == "querystring" and wire_name in query:
                params[name] = query[wire_name][-1]
            elif location == "header" and header(headers, wire_name):
                params[name] = header(headers, wire_name)
        payload = shape.serialization.get("payload") if shape is not None else None
        if call.protocol == "rest-json" and payload is None and call.body:
            body = json.loads(call.body)
            if isinstance(body, dict):
                params.update({k: v for k, v in body.items() if k not in params})
    return params


# --- reading a request ------------------------------------------------------------------------


def _s3_virtual_host(host: str) -> str | None:
    hostname = host.rsplit(":", 1)[0] if not host.startswith("[") else host
    for pattern in _VIRTUAL_HOST:
        found = pattern.match(hostname)
        if found:
            return found.group("bucket")
    return None


def classify(method: str, target: str, headers: Any, body: bytes) -> Call:
    """The request ``method target`` with ``headers`` (a Message, a dict, or botocore's) and ``body``."""
    parts = urlsplit(target)
    path = parts.path or "/"
    query_items = parse_qs(parts.query, keep_blank_values=True)
    found = _CREDENTIAL.search(header(headers, "Authorization")) or _CREDENTIAL.search(
        "Credential=" + query_items.get("X-Amz-Credential", [""])[0]
    )
    access_key, region = (found.group(1), found.group(3)) if found else (None, None)
    service = found.group(4) if found else "unknown"
    kept = tuple(
        (str(k), v.decode("latin-1") if isinstance(v, bytes) else str(v))
        for k, v in (headers.items() if hasattr(headers, "items") else ())
    )

    def make(service: str, operation: str, protocol: str, labels: tuple[tuple[str, str], ...] = ()) -> Call:
        return Call(service, operation, protocol, method, path, body, parts.query, kept, access_key, region, labels)

    amz_target = header(headers, "X-Amz-Target")
    if amz_target:
        return make(service, amz_target.rsplit(".", 1)[-1], "json")
    action = _ACTION.search(parts.query.encode()) or (
        _ACTION.search(body) if "x-www-form-urlencoded" in header(headers, "Content-Type") else None
    )
    if action:
        return make(service, action.group(1).decode(), "query")
    if service == "ses" and path.startswith("/v2/"):
        service = "sesv2"
    protocol = "rest-xml" if service == "s3" else "rest-json"
    with contextlib.suppress(Exception):  # an unknown service keeps method and path as its operation
        protocol = str(model(service).metadata.get("protocol", protocol))
        match_path = path
        bucket = _s3_virtual_host(header(headers, "Host")) if service == "s3" else None
        if bucket:
            match_path = f"/{bucket}{path}" if path != "/" else f"/{bucket}"
        names = frozenset(name.lower() for name, _ in kept)
        matched = rest_operation(service, method, match_path, query_items, names)
        if matched is not None:
            operation, labels = matched
            return make(service, operation, protocol, tuple(labels.items()))
    return make(service, f"{method} {path}", protocol)
