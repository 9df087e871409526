"""The local AWS's keep-alive request handler: how each kind of WSGI response reaches the client."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from optout_local.moto_process import keep_alive

App = Callable[[dict[str, Any], Any], Any]


def _app(environ: dict[str, Any], start_response: Any) -> Any:
    path = environ["PATH_INFO"]
    if path == "/chunked":  # no Content-Length: the handler chunks the body
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello ", b"", b"world"]
    if path == "/empty":  # no Content-Length, no body: chunked, unless the status or method has no body
        start_response(environ["QUERY_STRING"] or "200 OK", [])
        return []
    if path == "/fails-first":  # before any header went out: a 500
        raise RuntimeError("boom")
    if path == "/fails-later":  # after the headers went out: only the connection can say so

        def body() -> Iterator[bytes]:
            yield b"part"
            raise RuntimeError("boom")

        start_response("200 OK", [("Content-Type", "text/plain")])
        return body()
    if path == "/write":  # the legacy write() callable start_response returns
        write = start_response("200 OK", [("Content-Length", "5")])
        write(b"ab")
        return [b"cde"]
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


@pytest.fixture
def port() -> Iterator[int]:
    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, _app, True, request_handler=keep_alive(MotoRequestHandler))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()


def _read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _exchange(sock: socket.socket, request: bytes, until: bytes) -> bytes:
    sock.sendall(request)
    data = b""
    while not data.endswith(until):
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    return data


def test_a_body_without_a_length_is_chunked_and_the_connection_kept(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        first = _exchange(sock, b"GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n", b"0\r\n\r\n")
        head, _, body = first.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head.lower()
        assert body == b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"  # the empty part sends no chunk
        # And the next request on the same connection is answered
        second = _exchange(sock, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi", b"\r\n\r\nhi")
        assert second.startswith(b"HTTP/1.1 200")


def test_a_bodiless_response_is_neither_chunked_nor_given_a_body(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        answer = _exchange(sock, b"GET /empty?204 HTTP/1.1\r\nHost: x\r\n\r\n", b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 204") and b"transfer-encoding" not in answer.lower()
        head = _exchange(sock, b"HEAD /empty HTTP/1.1\r\nHost: x\r\n\r\n", b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding" not in head.lower()
        # a HEAD of a resource with a body gets its headers and nothing of the body
        head = _exchange(sock, b"HEAD /write HTTP/1.1\r\nHost: x\r\n\r\n", b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"content-length: 5" in head.lower()
        # the same GET is chunked: an empty body is still a body
        get = _exchange(sock, b"GET /empty HTTP/1.1\r\nHost: x\r\n\r\n", b"\r\n\r\n0\r\n\r\n")
        assert get.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in get.lower()
        # the HEAD's answer carried no body: the next answer follows it directly
        echo = _exchange(sock, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok", b"\r\n\r\nok")
        assert echo.startswith(b"HTTP/1.1 200")


def test_the_write_callable_and_the_iterable_make_one_body(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        answer = _exchange(sock, b"GET /write HTTP/1.1\r\nHost: x\r\n\r\n", b"abcde")
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n\r\nabcde")


def test_an_expect_100_continue_is_answered_before_the_body_is_read(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        request = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        assert _exchange(sock, request, b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        answer = _exchange(sock, b"body", b"\r\n\r\nbody")
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")  # one 100 Continue only, then the answer
        assert b"100 Continue" not in answer


def test_an_application_failing_before_its_headers_gets_a_500_and_a_closed_connection(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /fails-first HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 500")


def test_an_application_failing_mid_body_closes_the_connection_without_a_500(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /fails-later HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n\r\n4\r\npart\r\n")
    assert b"500" not in answer


def test_a_chunked_request_closes_the_connection_after_its_answer(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n")
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n\r\nhi")
