"""A local HTTP API: turns HTTP requests into API Gateway HTTP API (payload 2.0) events.

Routes come from the template's HttpApi events; AWS_IAM routes require a valid SigV4
signature. ``invoke`` runs the route's function (on the local Lambda runtime, which sets each
function's concurrency); a failed or throttled invocation gets API Gateway's own answer.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from optout_local import sigv4
from optout_local.lambda_runtime import Throttled
from optout_local.provision import ACCOUNT_ID, Route

log = logging.getLogger(__name__)

MAX_PAYLOAD = 10 * 1024 * 1024  # API Gateway's own limit
# The content types an HTTP API hands to Lambda as a UTF-8 string; every other body, a form post
# (urlencoded or multipart) and one with no Content-Type included, arrives base64-encoded. AWS's
# docs name no list; docs/local-runtime.md says where this one was observed.
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript")
Invoke = Callable[[str, dict[str, Any]], Any]


@dataclass(frozen=True)
class CompiledRoute:
    route: Route
    pattern: re.Pattern[str]
    params: tuple[str, ...]
    specificity: tuple[int, int]

    @property
    def key(self) -> str:
        return f"{self.route.method} {self.route.path}"


def compile_route(route: Route) -> CompiledRoute:
    params: list[str] = []
    regex = ""
    for segment in route.path.strip("/").split("/"):
        greedy = re.fullmatch(r"\{(\w+)\+\}", segment)
        single = re.fullmatch(r"\{(\w+)\}", segment)
        if greedy:
            params.append(greedy.group(1))
            regex += r"/(.+)"
        elif single:
            params.append(single.group(1))
            regex += r"/([^/]+)"
        elif segment:
            regex += "/" + re.escape(segment)
    literal_segments = sum(1 for s in route.path.split("/") if s and not s.startswith("{"))
    return CompiledRoute(
        route, re.compile((regex or "/") + "$"), tuple(params), (literal_segments, route.method != "ANY")
    )


class RouteTable:
    def __init__(self, routes: list[Route]) -> None:
        self.routes = sorted((compile_route(r) for r in routes), key=lambda c: c.specificity, reverse=True)

    def match(self, method: str, path: str) -> tuple[CompiledRoute, dict[str, str]] | None:
        for compiled in self.routes:
            found = compiled.pattern.match(path)
            if found and compiled.route.method in (method, "ANY"):
                return compiled, dict(zip(compiled.params, found.groups(), strict=True))
        return None


def build_event(
    compiled: CompiledRoute,
    params: dict[str, str],
    method: str,
    raw_path: str,
    raw_query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    source_ip: str,
    region: str,
    iam_key: str | None,
) -> dict[str, Any]:
    merged: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        lname = name.lower()
        if lname == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        merged[lname] = f"{merged[lname]},{value}" if lname in merged else value
    query: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    content_type = merged.get("content-type", "")
    is_text = not body or content_type.startswith(TEXT_TYPES)
    now = datetime.now(UTC)
    context: dict[str, Any] = {
        "accountId": ACCOUNT_ID,
        "apiId": "local",
        "domainName": merged.get("host", "localhost"),
        "domainPrefix": "local",
        "http": {
            "method": method,
            "path": raw_path,
            "protocol": "HTTP/1.1",
            "sourceIp": source_ip,
            "userAgent": merged.get("user-agent", ""),
        },
        "requestId": str(uuid.uuid4()),
        "routeKey": compiled.key,
        "stage": "$default",
        "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(now.timestamp() * 1000),
    }
    if iam_key is not None:
        context["authorizer"] = {
            "iam": {
                "accessKey": iam_key,
                "accountId": ACCOUNT_ID,
                "callerId": iam_key,
                "userArn": f"arn:aws:iam::{ACCOUNT_ID}:user/local-admin",
                "userId": iam_key,
                "cognitoIdentity": None,
                "principalOrgId": None,
            }
        }
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": compiled.key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": merged,
        "requestContext": context,
        "isBase64Encoded": not is_text,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if params:
        event["pathParameters"] = params
    if body:
        event["body"] = body.decode("utf-8", "replace") if is_text else base64.b64encode(body).decode()
    return event


LOCAL_PREFIX = "/_local/"


class _Server(ThreadingHTTPServer):
    # The default backlog of 5 resets the connections of a burst of clients (20 at once in the
    # bench); API Gateway takes them all.
    request_queue_size = 128


class Gateway:
    def __init__(
        self,
        routes: list[Route],
        invoke: Invoke,
        region: str,
        host: str = "127.0.0.1",
        port: int = 3000,
        local_routes: dict[str, Callable[[], Any]] | None = None,
    ) -> None:
        """``local_routes`` serve GET /_local/<name> as JSON: local-only tools, never in AWS."""
        self.local_routes = local_routes or {}
        self.table = RouteTable(routes)
        self.invoke = invoke
        self.region = region
        self.server = _Server((host, port), self._handler_class())
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.server.serve_forever, name="gateway", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "optout-local-gateway"
            # Headers and body go out in two writes: without this, Nagle holds the body ~40 ms
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                log.debug("%s %s", self.address_string(), format % args)

            def _serve(self) -> None:
                gateway.handle(self)

            def __getattr__(self, name: str) -> Any:
                # Every method reaches the route table, as at API Gateway (an unknown one is a 404).
                if name.startswith("do_"):
                    return self._serve
                raise AttributeError(name)

        return Handler

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        started = time.perf_counter()
        method = request.command.upper()
        parts = urlsplit(request.path)
        length = int(request.headers.get("content-length") or 0)
        if length > MAX_PAYLOAD:
            self._send(request, 413, {"content-type": "application/json"}, b'{"message":"Request Entity Too Large"}')
            request.close_connection = True
            return
        body = request.rfile.read(length) if length else b""
        local = (
            self.local_routes.get(parts.path.removeprefix(LOCAL_PREFIX))
            if parts.path.startswith(LOCAL_PREFIX)
            else None
        )
        if local is not None and method == "GET":
            self._send(request, 200, {"content-type": "application/json"}, json.dumps(local()).encode())
            return
        found = self.table.match(method, parts.path)
        if found is None:
            self._send(request, 404, {"content-type": "application/json"}, b'{"message":"Not Found"}')
            return
        compiled, params = found
        iam_key = None
        if compiled.route.auth == "AWS_IAM":
            host = request.headers.get("host", "")
            try:
                iam_key = sigv4.verify(
                    method, f"http://{host}{request.path}", dict(request.headers.items()), body, self.region
                )
            except sigv4.SignatureError as exc:
                log.info("rejected unsigned or mis-signed request to %s: %s", compiled.key, exc)
                self._send(request, 403, {"content-type": "application/json"}, b'{"message":"Forbidden"}')
                return
        event = build_event(
            compiled,
            params,
            method,
            parts.path,
            parts.query,
            list(request.headers.items()),
            body,
            request.client_address[0],
            self.region,
            iam_key,
        )
        try:
            result = self.invoke(compiled.route.function, event)
            status, headers, payload = _response(result)
        except Throttled:
            # Lambda's 429 reaches the client as an integration failure (not confirmed by AWS's docs)
            log.warning("function %s throttled", compiled.route.function)
            status, headers, payload = 500, {"content-type": "application/json"}, b'{"message":"Internal Server Error"}'
        except Exception:
            # The function failed (an unhandled error, a timeout, a crash) or answered malformed.
            log.exception("function %s failed", compiled.route.function)
            status, headers, payload = 500, {"content-type": "application/json"}, b'{"message":"Internal Server Error"}'
        self._send(
            request, status, headers, b"" if method == "HEAD" else payload, head=method == "HEAD", length=len(payload)
        )
        log.debug("%s %s -> %s in %.1f ms", method, parts.path, status, (time.perf_counter() - started) * 1000)

    @staticmethod
    def _send(
        request: BaseHTTPRequestHandler,
        status: int,
        headers: dict[str, Any],
        payload: bytes,
        head: bool = False,
        length: int | None = None,
    ) -> None:
        request.send_response(status, HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "")
        for name, value in headers.items():
            for item in value if isinstance(value, list) else [value]:
                request.send_header(name, str(item))
        request.send_header("Content-Length", str(length if head and length is not None else len(payload)))
        request.end_headers()
        if payload and not head:
            request.wfile.write(payload)


def _response(result: Any) -> tuple[int, dict[str, Any], bytes]:
    """Map a handler's return value the way HTTP API payload 2.0 does."""
    if not isinstance(result, dict) or "statusCode" not in result:
        return 200, {"content-type": "application/json"}, json.dumps(result).encode()
    headers: dict[str, Any] = {k.lower(): v for k, v in (result.get("headers") or {}).items()}
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers[name.lower()] = values
    if result.get("cookies"):
        headers["set-cookie"] = list(result["cookies"])
    raw = result.get("body") or ""
    payload = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode()
    return int(result["statusCode"]), headers, payload
