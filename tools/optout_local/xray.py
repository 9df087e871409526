"""An X-Ray daemon stand-in: listens on UDP where ``AWS_XRAY_DAEMON_ADDRESS`` points, keeps segments.

The X-Ray SDK sends each (sub)segment as one datagram: a JSON header line
(``{"format": "json", "version": 1}``) and the segment document. Lambda itself records the
function's segment, whose id is the ``Parent`` of the invocation's trace header; the local runtime
adds that one through :meth:`XRayDaemon.record`. ``optout traces`` prints what was kept.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections import deque
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)
HEADER = {"format": "json", "version": 1}
MAX_SEGMENTS = 50_000


class XRayDaemon:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind((host, port))
        self.segments: deque[dict[str, Any]] = deque(maxlen=MAX_SEGMENTS)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="xray-daemon", daemon=True)

    @property
    def address(self) -> str:
        host, port = self.socket.getsockname()[:2]
        return f"{host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self.socket.close()

    def record(self, segment: dict[str, Any]) -> None:
        self.segments.append(segment)

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                data = self.socket.recv(65536)
            except OSError:
                return
            try:
                header, _, body = data.partition(b"\n")
                if json.loads(header) != HEADER:
                    raise ValueError("not an X-Ray daemon header")
                self.record(json.loads(body))
            except ValueError:
                log.warning("an X-Ray datagram could not be read (%d bytes)", len(data))


def render(segments: Iterable[dict[str, Any]]) -> list[str]:
    """One block per trace: the function's segment, then its subsegments as a tree."""
    traces: dict[str, list[dict[str, Any]]] = {}
    for segment in segments:
        traces.setdefault(str(segment.get("trace_id", "?")), []).append(segment)
    lines: list[str] = []
    for trace_id, members in traces.items():
        children: dict[str | None, list[dict[str, Any]]] = {}
        ids = set()
        for segment in members:
            for node in _flatten(segment, segment.get("parent_id")):
                children.setdefault(node[1], []).append(node[0])
                ids.add(node[0].get("id"))
        roots = [s for parent, group in children.items() if parent not in ids for s in group]
        lines.append(f"trace {trace_id}")
        for root in sorted(roots, key=lambda s: s.get("start_time", 0)):
            _render(root, children, 1, lines)
    return lines


def _flatten(segment: dict[str, Any], parent: str | None) -> Iterable[tuple[dict[str, Any], str | None]]:
    yield segment, parent
    for sub in segment.get("subsegments", []) or []:
        yield from _flatten(sub, segment.get("id"))


Tree = dict[str | None, list[dict[str, Any]]]


def _render(segment: dict[str, Any], children: Tree, depth: int, out: list[str]) -> None:
    start, end = segment.get("start_time"), segment.get("end_time")
    timed = isinstance(start, float | int) and isinstance(end, float | int)
    took = f"{(float(end) - float(start)) * 1000:7.1f} ms" if timed else "   open   "  # type: ignore[arg-type]
    flags = "".join(f" {flag}" for flag in ("error", "fault", "throttle") if segment.get(flag))
    operation = (segment.get("aws") or {}).get("operation")
    name = f"{segment.get('name')}{f' {operation}' if operation else ''}"
    out.append(f"{'  ' * depth}{took}  {name}{flags}")
    for child in sorted(children.get(segment.get("id"), []), key=lambda s: s.get("start_time", 0)):
        _render(child, children, depth + 1, out)
