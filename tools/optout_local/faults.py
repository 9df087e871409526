"""A proxy between the functions and the local AWS: it counts what the local AWS received, and injects faults.

The functions' ``AWS_ENDPOINT_URL`` points here (``LocalConfig.function_endpoint``); every request
is forwarded to moto on its own keep-alive connection, unless the fault plan says otherwise:

- ``throttle``: the service's own throttling error, in its own wire format, not forwarded;
- ``unavailable``: a 503 in the service's format, not forwarded;
- ``reset``: the request is read, not forwarded, and the connection reset (TCP RST);
- ``lost``: the request is forwarded and applied, then the connection is reset before the answer
  reaches the function (what a dropped connection or a Lambda freeze at the wrong moment does).

Which service and operation a request is comes from the wire, as the local AWS sees it
(:mod:`optout_local.wire`): the service from the SigV4 credential scope, the operation from
``X-Amz-Target`` (JSON protocols: DynamoDB, SQS, Secrets Manager, KMS), the form's ``Action``
(query protocols: SNS, SES v1), or the method and path matched against botocore's own service model
(REST: SES v2, S3).

Wire formats of the errors (each parsed back by botocore to the code named):

- DynamoDB, AWS JSON 1.0: HTTP 400, ``{"__type": "com.amazonaws.dynamodb.v20120810#
  ProvisionedThroughputExceededException", "message": ...}`` or ``com.amazon.coral.availability#
  ThrottlingException`` (the DynamoDB developer guide, "Error handling with DynamoDB").
- SQS, AWS JSON 1.0 with the query-compatible header, as botocore now talks to it: HTTP 400,
  ``{"__type": "com.amazonaws.sqs#RequestThrottled"}`` and ``x-amzn-query-error:
  RequestThrottled;Sender`` (SQS developer guide, "Interpreting Amazon SQS JSON API responses"); a
  query-protocol request gets the XML ``ErrorResponse`` instead.
- SES v2, REST-JSON: HTTP 429, ``x-amzn-ErrorType: TooManyRequestsException`` (botocore's sesv2
  model gives the shape ``httpStatusCode: 429``).
- Secrets Manager and KMS, AWS JSON 1.1: HTTP 400 ``ThrottlingException`` (Secrets Manager API
  reference, "Common Errors").
- S3, REST-XML: HTTP 503 ``<Error><Code>SlowDown</Code>`` ("Please reduce your request rate.",
  S3 API reference, "Error responses").
- SNS, query: HTTP 429 ``<ErrorResponse><Error><Code>Throttled</Code>`` (botocore's sns model:
  ``ThrottledException``, code ``Throttled``, 429); SES v1, query: 400 ``Throttling``.
- ``unavailable``: HTTP 503 ``ServiceUnavailable`` in the same envelope.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import random
import socket
import struct
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import urlsplit

from optout_local.wire import Call, classify

__all__ = ["KINDS", "Call", "FaultPlan", "FaultProxy", "Ledger", "classify", "error_response"]

KINDS = ("throttle", "unavailable", "reset", "lost")
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "content-length"}
)


@dataclass
class Ledger:
    """What the local AWS received through the proxy while this ledger was the proxy's.

    ``calls`` and ``seconds`` by ``service:Operation`` (moto's time, from forwarding the request
    to reading the whole answer); ``observe`` sees every forwarded call (e.g. to keep some).
    """

    observe: Callable[[Call], None] | None = None
    calls: Counter[str] = field(default_factory=Counter)
    seconds: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, call: Call, seconds: float) -> None:
        with self._lock:
            self.calls[call.name] += 1
            self.seconds[call.name] = self.seconds.get(call.name, 0.0) + seconds
        if self.observe is not None:
            self.observe(call)


@dataclass
class FaultPlan:
    """Which requests fail, and how: a share ``rate`` of them, a kind each, reproducibly from ``seed``."""

    rate: float = 0.0
    kinds: tuple[str, ...] = KINDS
    seed: int = 11
    services: frozenset[str] | None = None  # None: every service
    injected: Counter[str] = field(default_factory=Counter)  # service:kind
    by_code: Counter[str] = field(default_factory=Counter)  # service:Operation:kind-or-code
    lost: list[Call] = field(default_factory=list)  # the calls applied whose answers were dropped
    _rng: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)  # noqa: S311 - a reproducible fault schedule  # nosec B311

    def draw(self, call: Call) -> tuple[str, int] | None:
        """The fault for ``call`` (kind and a number for choosing among codes), or None."""
        if self.rate <= 0 or (self.services is not None and call.service not in self.services):
            return None
        with self._lock:
            if self._rng.random() >= self.rate:
                return None
            return self._rng.choice(self.kinds), self._rng.randrange(1 << 16)

    def count(self, call: Call, kind: str, detail: str) -> None:
        with self._lock:
            self.injected[f"{call.service}:{kind}"] += 1
            self.by_code[f"{call.name}:{detail}"] += 1


# --- the errors, as each service sends them -----------------------------------------------

_THROTTLES: dict[str, list[tuple[str, int, str]]] = {
    # service: [(wire code, HTTP status, message)]
    "dynamodb": [
        ("com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException", 400,
         "The level of configured provisioned throughput for the table was exceeded. "
         "Consider increasing your provisioning level with the UpdateTable API."),
        ("com.amazon.coral.availability#ThrottlingException", 400, "Rate of requests exceeds the allowed throughput."),
    ],
    "sqs": [("com.amazonaws.sqs#RequestThrottled", 400, "Request is throttled.")],
    "sesv2": [("TooManyRequestsException", 429, "Too many requests.")],
    "secretsmanager": [("ThrottlingException", 400, "Rate exceeded")],
    "kms": [("ThrottlingException", 400, "Rate exceeded")],
    "s3": [("SlowDown", 503, "Please reduce your request rate.")],
    "sns": [("Throttled", 429, "Rate exceeded")],
    "ses": [("Throttling", 400, "Maximum sending rate exceeded.")],
}  # fmt: skip
_DEFAULT_THROTTLE = {
    "json": ("ThrottlingException", 400, "Rate exceeded"),
    "query": ("Throttling", 400, "Rate exceeded"),
    "rest-json": ("TooManyRequestsException", 429, "Too many requests."),
    "rest-xml": ("SlowDown", 503, "Please reduce your request rate."),
}
_UNAVAILABLE = ("ServiceUnavailable", 503, "Service is unable to handle request.")


def error_response(call: Call, kind: str, choice: int) -> tuple[int, dict[str, str], bytes, str]:
    """(status, headers, body, short code) of the ``kind`` error for ``call``, in its service's format."""
    if kind == "throttle":
        options = _THROTTLES.get(call.service) or [_DEFAULT_THROTTLE.get(call.protocol, _DEFAULT_THROTTLE["json"])]
        wire, status, message = options[choice % len(options)]
    else:
        wire, status, message = _UNAVAILABLE
    code = wire.rsplit("#", 1)[-1]
    request_id = str(uuid.uuid4())
    headers = {"x-amzn-RequestId": request_id, "Date": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())}
    if call.protocol == "json":
        version = "1.0" if call.service in ("dynamodb", "sqs") else "1.1"
        headers["Content-Type"] = f"application/x-amz-json-{version}"
        if call.service == "sqs":  # awsQueryCompatible: botocore takes the code from this header
            headers["x-amzn-query-error"] = f"{code};{'Receiver' if status >= 500 else 'Sender'}"
        body = json.dumps({"__type": wire, "message": message}).encode()
    elif call.protocol == "rest-json":
        headers.update({"Content-Type": "application/json", "x-amzn-ErrorType": code})
        body = json.dumps({"message": message}).encode()
    elif call.protocol == "rest-xml":
        headers = {"x-amz-request-id": request_id[:16], "x-amz-id-2": request_id, "Content-Type": "application/xml"}
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            f"<RequestId>{request_id[:16]}</RequestId><HostId>{request_id}</HostId></Error>"
        ).encode()
    else:  # query
        headers["Content-Type"] = "text/xml"
        fault = "Receiver" if status >= 500 else "Sender"
        body = (
            f"<ErrorResponse><Error><Type>{fault}</Type><Code>{code}</Code><Message>{message}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
    return status, headers, body, code


# --- the proxy ----------------------------------------------------------------------------


class FaultProxy:
    """An HTTP proxy on ``host:port`` (0: a free port) in front of ``upstream`` (moto's URL)."""

    def __init__(self, upstream: str, host: str = "127.0.0.1", port: int = 0, plan: FaultPlan | None = None) -> None:
        target = urlsplit(upstream)
        self.upstream = (target.hostname or "127.0.0.1", target.port or 80)
        self.plan = plan or FaultPlan()
        self.ledger = Ledger()
        self.server = ThreadingHTTPServer((host, port), self._handler_class(), bind_and_activate=False)
        self.server.request_queue_size = 128
        self.server.daemon_threads = True
        self.server.allow_reuse_address = True
        self.server.server_bind()
        self.server.server_activate()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self.server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @contextlib.contextmanager
    def recording(self, ledger: Ledger | None = None) -> Iterator[Ledger]:
        """Make ``ledger`` (a new one by default) the proxy's while the block runs, then put the old one back."""
        previous, self.ledger = self.ledger, ledger or Ledger()
        try:
            yield self.ledger
        finally:
            self.ledger = previous

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        return type("Handler", (_ProxyHandler,), {"proxy": self})


class _ProxyHandler(BaseHTTPRequestHandler):
    """One client connection to a FaultProxy: each request answered with a fault, or forwarded to moto."""

    proxy: ClassVar[FaultProxy]  # the proxy whose plan and ledger the requests meet
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as written: no delayed-ACK stall
    upstream: http.client.HTTPConnection | None = None

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def _body(self) -> bytes:
        if "chunked" in str(self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        body = self._body()
        call = classify(self.command, self.path, self.headers, body)
        fault = self.proxy.plan.draw(call)
        kind, choice = fault if fault else (None, 0)
        if kind in ("throttle", "unavailable"):
            status, headers, payload, code = error_response(call, kind, choice)
            self.proxy.plan.count(call, kind, code)
            self._answer(status, list(headers.items()), payload)
            return
        if kind == "reset":
            self.proxy.plan.count(call, kind, kind)
            self._reset()
            return
        try:
            status, reason, headers_out, payload, seconds = self._forward(body)
        except (OSError, http.client.HTTPException):
            self._reset()
            return
        self.proxy.ledger.record(call, seconds)
        if kind == "lost":  # applied by the local AWS; the function never hears of it
            self.proxy.plan.count(call, kind, kind)
            self.proxy.plan.lost.append(call)
            self._reset()
            return
        self._answer(status, headers_out, payload, reason)

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes, float]:
        if self.upstream is None:
            self.upstream = http.client.HTTPConnection(*self.proxy.upstream, timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        started = time.perf_counter()
        self.upstream.request(self.command, self.path, body=body, headers=headers)
        response = self.upstream.getresponse()
        payload = response.read()
        seconds = time.perf_counter() - started
        if response.will_close:
            self.upstream.close()
            self.upstream = None
            self.close_connection = True
        return response.status, response.reason, response.getheaders(), payload, seconds

    def _answer(self, status: int, headers: list[tuple[str, str]], payload: bytes, reason: str = "") -> None:
        self.send_response(status, reason or None)
        length = None
        for name, value in headers:
            if name.lower() == "content-length" and self.command == "HEAD":
                length = value
            if name.lower() not in _HOP_BY_HOP and name.lower() not in ("server", "date"):
                self.send_header(name, value)
        self.send_header("Content-Length", length if length is not None else str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)

    def _reset(self) -> None:
        """Drop the connection with a TCP RST: the client sees its connection reset."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        for stream in (self.rfile, self.wfile):
            with contextlib.suppress(OSError, ValueError):
                stream.close()
        with contextlib.suppress(OSError):
            self.connection.close()  # the last reference: the socket closes now, with RST
        self.rfile, self.wfile = io.BytesIO(), io.BytesIO()  # what the server still flushes and closes

    def finish(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            super().finish()
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None
