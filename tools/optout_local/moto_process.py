"""The local AWS in a process of its own: moto, patched, on host:port.

`optout local` starts it as a child, so the emulator gets a core of its own instead of sharing one
interpreter lock with the gateway and the functions. The child stops on SIGTERM, and also when
its parent is gone, so a killed `optout local` leaves no port behind. Besides moto's own API it
serves what the stack sent, which only this process can see: ``GET /_local/outbox/email`` and
``GET /_local/outbox/sms``, as JSON; and ``GET /_local/state``, where its state lives.

With ``--state-dir`` its state outlives it. It starts from the folder's snapshot (before it
listens), and saves a new one about every second while something changes, and once more as it
stops. A snapshot is consistent: requests pass a gate, and a snapshot closes the gate, waits for
the requests inside to finish (an SQS long poll steps out while it waits for messages, so it
neither delays the snapshot nor is cut in two by it), and then forks. The forked copy pickles
moto's backends as they were at that instant and writes the file, while this process serves on:
the gate is closed only for the few milliseconds the fork takes, not for the pickling (a quarter
to half a second per 20,000 DynamoDB items). Measure with ``python -m optout_local.moto_process
--measure 20000``. Should a forked snapshot fail, snapshots are taken in this process instead,
with the gate closed throughout.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from optout_local.iam.enforce import Usage
from optout_local.provision import ACCOUNT_ID

OUTBOX = "/_local/outbox/"
STATE = "/_local/state"
IAM = "/_local/iam"  # every kind of call the functions made, with its decision, and their roles' policies
DELIVER = "/_local/deliver"  # a delivery as an AWS service makes it (SES events, End User Messaging SMS)
INTERVAL = 1.0  # seconds between snapshots while something changes: what a SIGKILL may lose
log = logging.getLogger("optout_local.moto_process")


def sent_sms(region: str) -> list[dict[str, str]]:
    """Every SMS the stack sent through SNS, oldest first."""
    from moto.sns.models import sns_backends

    backend = sns_backends[ACCOUNT_ID][region]
    return [{"message_id": mid, "to": to, "body": body} for mid, (to, body) in backend.sms_messages.items()]


def sent_email(region: str) -> list[dict[str, Any]]:
    """Every raw email the stack sent through SES, oldest first."""
    from moto.ses.models import ses_backends

    backend = ses_backends[ACCOUNT_ID][region]
    return [
        {"message_id": m.id, "source": m.source, "destinations": list(m.destinations), "raw": m.raw_data}
        for m in backend.sent_messages
        if hasattr(m, "raw_data")
    ]


class Gate:
    """Requests pass it side by side; a snapshot closes it, waits for those inside, and has moto alone.

    A closing gate lets no new request in (so a busy stack cannot starve a snapshot). ``generation``
    counts the requests that changed something, as they leave: a snapshot taken with the gate
    closed holds exactly the changes it counted.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._inside = 0
        self._closing = False
        self._local = threading.local()
        self.generation = 0

    @contextlib.contextmanager
    def request(self, changes: bool) -> Iterator[None]:
        self._enter()
        self._local.inside, self._local.changes = True, changes
        try:
            yield
        finally:
            self._local.inside = False
            self._leave(self._local.changes)

    def changed(self) -> None:
        """The request on this thread changed state after all (an SQS receive that got messages)."""
        if getattr(self._local, "inside", False):
            self._local.changes = True

    @contextlib.contextmanager
    def released(self) -> Iterator[None]:
        """Step out for a wait that holds nothing half-done (SQS's wait for messages between attempts)."""
        if not getattr(self._local, "inside", False):
            yield
            return
        self._leave(self._local.changes)
        self._local.inside, self._local.changes = False, False
        try:
            yield
        finally:
            self._enter()
            self._local.inside = True

    @contextlib.contextmanager
    def closed(self, timeout: float) -> Iterator[int]:
        """Have moto alone: yields the generation. TimeoutError if those inside take over ``timeout``."""
        generation = self._close(timeout)
        try:
            yield generation
        finally:
            with self._cond:
                self._closing = False
                self._cond.notify_all()

    def close_for_good(self, timeout: float) -> int:
        """Close the gate and never open it again (the last snapshot, as the process stops)."""
        return self._close(timeout)

    def _close(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._closing:  # another snapshot has it
                if not self._cond.wait(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError("another snapshot holds the gate")
            self._closing = True
            while self._inside:
                if not self._cond.wait(max(0.0, deadline - time.monotonic())) and self._inside:
                    self._closing = False
                    self._cond.notify_all()
                    raise TimeoutError(f"{self._inside} request(s) still running after {timeout:.0f} s")
            return self.generation

    def _enter(self) -> None:
        with self._cond:
            while self._closing:
                self._cond.wait()
            self._inside += 1

    def _leave(self, changes: bool) -> None:
        with self._cond:
            self._inside -= 1
            if changes:
                self.generation += 1
            if not self._inside:
                self._cond.notify_all()


# Actions that change nothing. Anything not recognised counts as a change (a needless snapshot at
# worst). ReceiveMessage changes state only when it returns messages: the SQS patch reports that,
# so idle pollers do not cause a snapshot a second.
_READ_ONLY = re.compile(
    r"(Get|List|Describe|Query|Scan|BatchGet|TransactGet|Head|Lookup|Search|Decrypt|Encrypt|ReEncrypt|"
    r"Generate|Sign|Verify|Check|Test|Estimate|Simulate|Validate|Preview|ReceiveMessage)"
)
_ACTION = re.compile(rb"(?:^|&)Action=([A-Za-z0-9]+)")
_BUFFERED = 1 << 20


def changes_state(environ: dict[str, Any]) -> bool:
    """Whether a request may change moto's state, from its action (or, for REST APIs, its method).

    Reads a form body of up to 1 MB to find a query-protocol action (and puts the body back).
    """
    target = str(environ.get("HTTP_X_AMZ_TARGET") or "")
    action = target.rsplit(".", 1)[-1] if target else None
    if action is None:
        found = _ACTION.search(str(environ.get("QUERY_STRING") or "").encode())
        if found is None and str(environ.get("CONTENT_TYPE") or "").startswith("application/x-www-form-urlencoded"):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            if 0 < length <= _BUFFERED:
                body = environ["wsgi.input"].read(length)
                environ["wsgi.input"] = io.BytesIO(body)
                found = _ACTION.search(body)
        action = found.group(1).decode() if found else None
    if action is None:
        return str(environ.get("REQUEST_METHOD", "GET")).upper() not in ("GET", "HEAD", "OPTIONS")
    return _READ_ONLY.match(action) is None


_patched: list[Gate] = []


def patch_sqs(gate: Gate) -> None:
    """Let SQS long polls step out of the gate while they wait, and report receives that changed state.

    moto's ReceiveMessage loops: take the visible messages, and if there are none, wait up to a
    second for one and try again, until WaitTimeSeconds is over. At the wait it has taken nothing
    (or it would have returned), so a snapshot may be taken then; it re-enters before its next try.
    """
    from moto.sqs.models import Queue, SQSBackend

    if _patched:
        _patched[0] = gate
        return
    _patched.append(gate)
    wait = Queue.wait_for_messages
    receive = SQSBackend.receive_message

    def wait_for_messages(self: Any, timeout: int) -> None:
        with _patched[0].released():
            wait(self, timeout)

    def receive_message(self: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        queue = self.queues.get(queue_name)
        before = len(queue._messages) if queue is not None else 0  # moto keeps all messages here
        result = receive(self, queue_name, *args, **kwargs)
        if result or (queue is not None and len(queue._messages) != before):  # some moved to a DLQ
            _patched[0].changed()
        return result

    Queue.wait_for_messages = wait_for_messages  # type: ignore[method-assign]
    SQSBackend.receive_message = receive_message  # type: ignore[method-assign]


class Snapshotter:
    """Saves moto's state to ``path`` about every ``interval`` seconds while it changes, and at close."""

    def __init__(self, gate: Gate, path: Path, interval: float = INTERVAL, use_fork: bool = True) -> None:
        self.gate = gate
        self.path = path
        self.interval = interval
        self.use_fork = use_fork and hasattr(os, "fork")
        # Python warns that forking a threaded process may deadlock the child on a lock another
        # thread held. The fork happens with the gate closed, so no request thread is inside moto;
        # the child takes no lock but the GIL and the import lock (both reset at fork), writes to
        # stderr with os.write only, and ends with os._exit.
        warnings.filterwarnings("ignore", r".*multi-threaded, use of fork\(\) may lead", DeprecationWarning)
        self.saved = gate.generation  # what is on disk already (the restored state, or nothing to save)
        self.count = 0
        self.last_seconds = 0.0  # the last snapshot, start to file renamed
        self.last_closed_seconds = 0.0  # how long the last snapshot kept requests waiting
        self.in_child: list[Callable[[], None]] = []  # run first in a forked copy (close the listening socket)
        self._busy = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="snapshots", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                self.snapshot()
            except TimeoutError as exc:  # a request that will not end: serve on, try again in a second
                log.warning("no snapshot of the local state this second: %s", exc)
            except Exception:  # keep serving; the next second tries again
                log.exception("could not save the local state to %s", self.path)

    def snapshot(self) -> bool:
        """Save now if anything changed since the last snapshot. True if a snapshot was written."""
        with self._busy:
            if self.gate.generation == self.saved:
                return False
            started = time.monotonic()
            if not (self.use_fork and self._forked()):
                self._inline(self.gate.closed(timeout=5))
            self.count += 1
            self.last_seconds = time.monotonic() - started
            return True

    def close(self, timeout: float = 20) -> None:
        """The last snapshot: close the gate for good (nothing changes after it), save if needed."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()
        with self._busy:
            try:
                generation = self.gate.close_for_good(timeout)
            except TimeoutError:
                log.error("not saving the local state at exit: requests still running; the last snapshot stays")
                return
            if generation != self.saved:
                self._inline(contextlib.nullcontext(generation))

    def _inline(self, closed: contextlib.AbstractContextManager[int]) -> None:
        from optout_local.state import capture, write_snapshot

        started = time.monotonic()
        with closed as generation:
            data, services = capture()
        self.last_closed_seconds = time.monotonic() - started
        write_snapshot(self.path, data, self._meta(services, generation))
        self.saved = generation

    def _forked(self) -> bool:
        started = time.monotonic()
        with self.gate.closed(timeout=5) as generation:
            try:
                pid = os.fork()
            except OSError as exc:  # out of memory or processes: snapshot in this process instead
                log.warning("cannot fork a snapshot (%s); taking snapshots in this process from now on", exc)
                self.use_fork = False
                return False
            if pid == 0:
                self._child(generation)  # never returns
        self.last_closed_seconds = time.monotonic() - started
        if self._reap(pid, timeout=max(60.0, 10 * self.last_seconds)):
            self.saved = generation
            return True
        log.warning("the forked snapshot of %s failed; taking snapshots in this process from now on", self.path)
        self.use_fork = False
        return False

    def _child(self, generation: int) -> None:
        code = 1
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            for hook in self.in_child:
                hook()
            from optout_local.state import capture, write_snapshot

            data, services = capture()
            write_snapshot(self.path, data, self._meta(services, generation))
            code = 0
        except BaseException:
            with contextlib.suppress(OSError):
                os.write(2, traceback.format_exc().encode())
        finally:
            os._exit(code)

    @staticmethod
    def _reap(pid: int, timeout: float) -> bool:
        deadline, delay = time.monotonic() + timeout, 0.001
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status) == 0
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.02)

    @staticmethod
    def _meta(services: list[str], generation: int) -> dict[str, Any]:
        import moto

        return {"moto": moto.__version__, "python": sys.version.split()[0], "services": services, "changes": generation}


def application(
    region: str,
    gate: Gate | None = None,
    state: Callable[[], dict[str, Any]] | None = None,
    usage: Usage | None = None,
) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    """moto, behind the local IAM (every signed request authorized) and the snapshot gate."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    from optout_local.iam import deliveries
    from optout_local.iam.enforce import Gatekeeper

    moto_app = DomainDispatcherApplication(create_backend_app)
    outboxes = {"email": sent_email, "sms": sent_sms}
    gate = gate or Gate()
    usage = usage or Usage(None)
    authorize = Gatekeeper(region, ACCOUNT_ID, usage)
    dynamodb_turn = threading.Lock()
    deliveries.patch_sns_to_sqs(region, ACCOUNT_ID, usage)

    def reply(body: bytes, start_response: Callable[..., Any], status: str = "200 OK") -> list[bytes]:
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        if path == STATE:
            # where its resources live, and which process holds them
            found = {**(state() if state else {"state_dir": None}), "region": region, "pid": os.getpid()}
            return reply(json.dumps(found).encode(), start_response)
        if path.startswith(OUTBOX) and path.removeprefix(OUTBOX) in outboxes:
            with gate.request(changes=False):
                body = json.dumps(outboxes[path.removeprefix(OUTBOX)](region)).encode()
            return reply(body, start_response)
        if path == IAM:
            return reply(json.dumps(usage.view()).encode(), start_response)
        if path == DELIVER:
            with gate.request(changes=True):
                outcome = deliveries.deliver_from_request(environ, region, ACCOUNT_ID, usage)
            status = "400 Bad Request" if outcome.get("invalid") else "200 OK"
            return reply(json.dumps(outcome).encode(), start_response, status)
        changes = changes_state(environ)  # may read a small form body: before the gate, not inside it
        with gate.request(changes):
            denied = authorize(environ, start_response)
            if denied is not None:
                return denied
            if "/dynamodb/aws4_request" in environ.get("HTTP_AUTHORIZATION", ""):
                # DynamoDB applies each request atomically; moto's tables are plain dicts that two
                # threads can change at once (a 500 "dictionary changed size during iteration", or
                # an ADD to the notice's counts lost), so its requests take turns
                with dynamodb_turn:
                    return moto_app(environ, start_response)  # type: ignore[no-any-return]
            return moto_app(environ, start_response)  # type: ignore[no-any-return]

    return app


def _restore(snapshot: Path) -> list[str]:
    from optout_local.state import read_snapshot, restore

    meta: dict[str, Any] = {}
    try:
        meta, data = read_snapshot(snapshot)
        return restore(data)
    except Exception as exc:
        import moto

        sys.stderr.write(
            f"optout: cannot restore the local state from {snapshot}: {type(exc).__name__}: {exc}\n"
            f"  (saved by moto {meta.get('moto', '?')}; this is moto {moto.__version__}). "
            "Start empty with `optout local --fresh` (`make run FRESH=1`), or move the file away.\n"
        )
        raise SystemExit(2) from exc


def keep_alive(handler: type[Any]) -> type[Any]:
    """``handler`` keeping HTTP/1.1 connections open, as AWS endpoints do.

    Werkzeug's server closes every connection after one response: after each request it reads
    whatever else the socket holds, which with keep-alive would swallow the next request. The
    SDKs keep connections in a pool, so against it every AWS call paid a TCP connect and a new
    server thread, a third of the CPU an environment spent on a STOP. This handler runs the WSGI
    call itself, drains exactly the body the application left unread, and lets http.server keep
    or close the connection as the request asks. A chunked request body (none of the SDK calls
    the stack makes) still closes it.
    """
    from werkzeug.wsgi import LimitedStream

    class KeepAlive(handler):  # type: ignore[misc]
        def setup(self) -> None:
            super().setup()
            # a kept connection must not hold a response's last segment back for the client's ACK
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_request(self, code: Any = "-", size: Any = "-") -> None:
            pass  # Werkzeug formats a line per request, then drops it (its logger is at WARNING)

        def run_wsgi(self) -> None:
            # no 100 Continue here: http.server's parse_request already sent it (handle_expect_100)
            environ: dict[str, Any] = self.make_environ()
            body = None
            if environ.get("wsgi.input_terminated"):  # chunked: where it ends is the parser's business
                self.close_connection = True
            else:
                body = environ["wsgi.input"] = LimitedStream(self.rfile, int(environ.get("CONTENT_LENGTH") or 0))
            response = _WsgiResponse(self)
            try:
                response.send(self.server.app(environ, response.start_response))
                if body is not None:
                    body.exhaust()  # what the application left unread is not the next request
            except (ConnectionError, TimeoutError):
                self.close_connection = True
                return
            except Exception:
                self.close_connection = True
                if not response.sent:
                    self.send_error(500)
                logging.getLogger(__name__).exception("error on request")
                return
            self.wfile.flush()

    return KeepAlive


class _WsgiResponse:
    """One WSGI response, written by ``handler`` straight to its kept-alive connection: the headers go
    out with the body's first part, chunked when the application gives no Content-Length."""

    def __init__(self, handler: Any) -> None:
        self.handler = handler  # Werkzeug's, writing into http.server's own (untyped) _headers_buffer
        self.status = ""
        self.headers: list[tuple[str, str]] = []
        self.chunked = False
        self.bodiless = False  # a HEAD, or a status that has no body: whatever the app gives is dropped
        self.sent = False  # the status line and headers: once out, an error can no longer be a 500

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if exc_info and self.sent:
            raise exc_info[1].with_traceback(exc_info[2])
        self.status, self.headers, self.chunked = status, headers, False
        return self.write

    def send(self, chunks: Iterable[bytes]) -> None:
        """The application's body, then the end of a chunked one; the iterable closed as WSGI asks."""
        try:
            for data in chunks:
                self.write(data)
            self.write(b"")
            if self.chunked:
                self.handler.wfile.write(b"0\r\n\r\n")
        finally:
            if hasattr(chunks, "close"):
                chunks.close()

    def write(self, data: bytes) -> None:
        if not self.sent:
            self._send_headers()
        if data and not self.bodiless:
            self.handler._headers_buffer.append(b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else data)
        self.handler.flush_headers()

    def _send_headers(self) -> None:
        handler = self.handler
        code_text, _, reason = self.status.partition(" ")
        code = int(code_text)
        handler.send_response(code, reason)
        names = set()
        for name, value in self.headers:
            handler.send_header(name, value)
            names.add(name.lower())
        self.bodiless = bodiless = handler.command == "HEAD" or code < 200 or code in (204, 304)
        if "content-length" not in names and not bodiless:
            self.chunked = True
            handler.send_header("Transfer-Encoding", "chunked")
        handler._headers_buffer.append(b"\r\n")  # end_headers, with the body's first part in the same write
        self.sent = True


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--parent", type=int, default=0, help="exit when this process is gone")
    parser.add_argument("--state-dir", type=Path, help="restore from and save to this folder's moto.snapshot")
    parser.add_argument("--measure", type=int, metavar="ITEMS", help="time a snapshot of ITEMS DynamoDB items")
    args = parser.parse_args(argv)
    if not args.measure and args.port is None:
        parser.error("--port is required")
    return args


def _open_state(state_dir: Path | None, gate: Gate) -> tuple[Snapshotter | None, Path | None, dict[str, Any]]:
    """Where the state lives: restored from ``state_dir``'s snapshot and saved there, or in memory
    with a scratch folder for imports. The snapshotter, the scratch folder, and what /_local/state says."""
    from optout_local.state import IMPORTS, SNAPSHOT

    info: dict[str, Any] = {"state_dir": None, "restored": False, "services": []}
    if state_dir is None:  # state in memory: import progress lives as long as this process
        scratch = Path(tempfile.mkdtemp(prefix="optout-local-"))
        info["imports_dir"] = str(scratch / IMPORTS)
        return None, scratch, info
    state_dir = state_dir.resolve()
    snapshot = state_dir / SNAPSHOT
    if snapshot.exists():
        info.update(restored=True, services=_restore(snapshot))
    snapshotter = Snapshotter(gate, snapshot)
    info.update(state_dir=str(state_dir), imports_dir=str(state_dir / IMPORTS))
    return snapshotter, None, info


def _state_view(info: dict[str, Any], gate: Gate, snapshotter: Snapshotter | None) -> dict[str, Any]:
    """What GET /_local/state says: where the state lives, how many changes, and how its snapshots go."""
    if snapshotter is None:
        return {**info, "changes": gate.generation}
    return {
        **info, "changes": gate.generation, "saved": snapshotter.saved, "snapshots": snapshotter.count,
        "forked": snapshotter.use_fork, "last_snapshot_seconds": snapshotter.last_seconds,
        "last_held_seconds": snapshotter.last_closed_seconds,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    args = _arguments(argv)
    if args.measure:
        measure(args.measure)
        return

    if args.state_dir is not None:
        # S3 objects stay in memory rather than spill to temp files: a forked snapshot reading a
        # spilled object would move the file offset it shares with this process.
        os.environ.setdefault("MOTO_S3_DEFAULT_KEY_BUFFER_SIZE", str(1 << 40))
    # The functions' roles attach AWS managed policies (AWSLambdaBasicExecutionRole, ...), which
    # moto's IAM holds only when asked to
    os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import make_server

    from optout_local import moto_patches

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per AWS request on the console
    moto_patches.apply()
    gate = Gate()
    patch_sqs(gate)
    snapshotter, scratch, info = _open_state(args.state_dir, gate)

    def state() -> dict[str, Any]:
        return _state_view(info, gate, snapshotter)

    usage_dir = os.environ.get("OPTOUT_IAM_USAGE")
    usage = Usage(Path(usage_dir) if usage_dir else None)
    server = make_server(
        args.host, args.port, application(args.region, gate, state, usage), True,
        request_handler=keep_alive(MotoRequestHandler),
    )  # fmt: skip
    stopping = threading.Event()

    def shut_down(*_: Any) -> None:
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.shutdown, daemon=True).start()  # not from the serving thread

    signal.signal(signal.SIGTERM, shut_down)
    # With a parent, Ctrl-C (sent to the whole process group) is the parent's to handle: it stops
    # its pollers and functions first, then terminates this process, whose last snapshot then
    # holds their last writes.
    signal.signal(signal.SIGINT, signal.SIG_IGN if args.parent else shut_down)

    def watch_parent() -> None:
        while args.parent and os.getppid() == args.parent:
            time.sleep(0.5)
        if args.parent:
            shut_down()

    threading.Thread(target=watch_parent, daemon=True).start()
    if snapshotter is not None:
        snapshotter.in_child.append(server.socket.close)
        snapshotter.start()
    try:
        server.serve_forever()
    finally:
        server.server_close()
        if snapshotter is not None:
            snapshotter.close()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def measure(items: int) -> None:
    """Print how long snapshots of a table of ``items`` items take, and how long each keeps the gate."""
    from moto.dynamodb.models import dynamodb_backends

    from optout_local import moto_patches
    from optout_local.state import capture, read_snapshot, restore

    moto_patches.apply()
    backend = dynamodb_backends[ACCOUNT_ID]["us-east-1"]
    backend.create_table(
        "measure", schema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        attr=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
        throughput=None, billing_mode="PAY_PER_REQUEST", indexes=[], global_indexes=[], streams=None,
        sse_specification=None, tags=[], deletion_protection_enabled=False, warm_throughput=None,
    )  # fmt: skip
    for i in range(items):  # shaped like a suppression state record
        backend.put_item("measure", {
            "pk": {"S": f"email#{i:064x}"}, "sk": {"S": "state"}, "channel": {"S": "email"}, "version": {"N": "3"},
            "topics": {"SS": ["marketing", "product"]}, "all_optional": {"BOOL": False},
            "updated_at": {"S": "2026-11-26T11:13:25.123883+00:00"}, "blocked_reason": {"S": "bounce"},
        })  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "moto.snapshot"
        gate = Gate()
        for use_fork in (False, True):
            snapshotter = Snapshotter(gate, path, use_fork=use_fork)
            with gate.request(changes=True):
                pass
            snapshotter.snapshot()
            mode = "forked" if use_fork else "in process"
            print(  # noqa: T201
                f"{items} items, {mode:>10}: snapshot {snapshotter.last_seconds * 1000:7.1f} ms, "
                f"requests held {snapshotter.last_closed_seconds * 1000:7.1f} ms, file {path.stat().st_size:,} bytes"
            )
        started = time.monotonic()
        data, _ = capture()
        pickled = time.monotonic() - started
        started = time.monotonic()
        restore(read_snapshot(path)[1])
        print(  # noqa: T201
            f"{items} items: pickle alone {pickled * 1000:.1f} ms ({len(data):,} bytes), "
            f"restore {(time.monotonic() - started) * 1000:.1f} ms"
        )


if __name__ == "__main__":
    main()
