"""Concurrent HTTP clients in a process of their own, so the load they make is not timed inside the stack's.

``python -m optout_local.loadgen`` reads a plan from stdin: ``{"clients": [[request, ...], ...]}``,
each request ``{"kind", "method", "url", "body", "headers"}``. Each client is a thread with one
keep-alive connection that sends its requests one after another; all clients start together.
It writes one JSON list to stdout: ``[client, seq, kind, started_s, elapsed_ms, status, failure]`` per
request (``failure``: the client's own error, such as a reset connection, with status 599).
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
from typing import Any
from urllib.parse import urlsplit


def _client(
    n: int, requests: list[dict[str, Any]], start: threading.Barrier, t0: list[float], out: list[list[Any]]
) -> None:
    first = urlsplit(requests[0]["url"])
    connection = http.client.HTTPConnection(first.hostname or "127.0.0.1", first.port or 80, timeout=60)
    start.wait()
    for seq, request in enumerate(requests):
        url = urlsplit(request["url"])
        target = url.path + (f"?{url.query}" if url.query else "")
        began = time.perf_counter()
        try:
            connection.request(request["method"], target, body=request["body"].encode(), headers=request["headers"])
            response = connection.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException) as exc:
            status, failure = 599, f"{type(exc).__name__}: {exc}"
            connection.close()
        else:
            failure = ""
        out.append([n, seq, request["kind"], began - t0[0], (time.perf_counter() - began) * 1000, status, failure])
    connection.close()


def run(plan: dict[str, Any]) -> list[list[Any]]:
    clients: list[list[dict[str, Any]]] = plan["clients"]
    t0 = [0.0]
    start = threading.Barrier(len(clients), action=lambda: t0.__setitem__(0, time.perf_counter()))
    out: list[list[Any]] = []
    threads = [threading.Thread(target=_client, args=(n, c, start, t0, out)) for n, c in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return out


if __name__ == "__main__":
    json.dump(run(json.load(sys.stdin)), sys.stdout)
