"""Run the template's functions locally as Lambda runs them.

Each function gets execution environments of its own: worker processes of a clean
``python3.13 -I -S`` (see :mod:`optout_local.lambda_bootstrap`), whose working directory is the
function's code folder and whose path is that code, the built layers and the runtime's SDK
(:mod:`optout_local.layer_build`), never the development venv. Their environment is exactly the
template's ``Globals`` and the function's ``Variables`` plus what Lambda itself sets, and the local
AWS endpoint with its credentials.

- **Init once, then warm.** An environment imports the handler once (the cold start) and then
  serves one invocation at a time until it is discarded.
- **Timeout.** At the function's ``Timeout`` the environment is killed; the invocation fails as
  "Task timed out", and the next one is a cold start.
- **Memory.** An environment whose resident memory goes over ``MemorySize`` is killed, as Lambda
  kills one that runs out of memory.
- **Concurrency.** Up to ``ReservedConcurrentExecutions`` environments (a reserved function
  beyond it is throttled, as in Lambda); unreserved functions get a local cap (4 by default,
  ``OPTOUT_LOCAL_CONCURRENCY``), beyond which invocations wait for a free environment.
- **Tracing.** Where ``Tracing: Active``, each invocation gets a sampled ``_X_AMZN_TRACE_ID`` and
  the function's segment is recorded beside the SDK's subsegments in the X-Ray daemon stand-in.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import selectors
import signal
import subprocess  # nosec B404 - runs our own bootstrap with the Lambda interpreter
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from optout_local import lambda_bootstrap
from optout_local.layer_build import BuiltRuntime
from optout_local.provision import ACCOUNT_ID, FunctionSpec
from optout_local.xray import XRayDaemon

if TYPE_CHECKING:
    from optout_local.iam.roles import Credentials, RoleSessions

log = logging.getLogger(__name__)

BOOTSTRAP = Path(lambda_bootstrap.__file__).resolve()
INIT_TIMEOUT = 10.0  # Lambda's init phase limit
DEFAULT_LOCAL_CONCURRENCY = 4
CREDENTIALS_MARGIN = 300  # seconds: an environment whose role session ends sooner is retired, not reused
MEMORY_POLL = 0.02
PAGE = os.sysconf("SC_PAGE_SIZE")


class InvocationError(Exception):
    """The invocation failed as Lambda reports it: ``payload`` is what Lambda returns."""

    def __init__(self, payload: dict[str, Any], function_error: str = "Unhandled") -> None:
        super().__init__(f"{payload.get('errorType', 'Error')}: {payload.get('errorMessage', '')}")
        self.payload = payload
        self.function_error = function_error


class Throttled(InvocationError):
    """Lambda's TooManyRequestsException: every environment the function may have is busy."""

    def __init__(self, function: str) -> None:
        super().__init__(
            {"errorType": "TooManyRequestsException", "errorMessage": f"Rate Exceeded. ({function})"}, "Throttled"
        )


class EnvironmentLost(InvocationError):
    """The environment died (timeout, out of memory, crash); it is never reused."""


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def trace_header() -> tuple[str, str, str]:
    """A sampled trace header as Lambda sets it: (header, root, parent segment id)."""
    root = f"1-{int(time.time()):08x}-{secrets.token_hex(12)}"
    parent = secrets.token_hex(8)
    return f"Root={root};Parent={parent};Sampled=1", root, parent


def lambda_variables(spec: FunctionSpec, region: str, xray_address: str | None) -> dict[str, str]:
    """What the Lambda service itself sets in every environment of ``spec``."""
    variables = {
        "AWS_LAMBDA_FUNCTION_NAME": spec.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
        "LAMBDA_TASK_ROOT": str(spec.code_dir),
        "_HANDLER": spec.handler,
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "PATH": "/usr/local/bin:/usr/bin/:/bin",
    }
    if xray_address:
        variables["AWS_XRAY_DAEMON_ADDRESS"] = xray_address
        variables["AWS_XRAY_CONTEXT_MISSING"] = "LOG_ERROR"
    return variables


def _log_sink(logs: IO[str] | None) -> tuple[Any, bool]:
    """Where a worker writes its output: the stream's own file, or a pipe relayed to it."""
    if logs is None:
        return None, False
    try:
        logs.flush()
        return logs.fileno(), False
    except (AttributeError, OSError, ValueError):  # an in-memory stream (e.g. click's test runner)
        return subprocess.PIPE, True


def _relay(source: IO[bytes], logs: IO[str]) -> None:
    def copy() -> None:
        for line in source:
            with contextlib.suppress(ValueError):
                logs.write(line.decode("utf-8", "replace"))
                logs.flush()

    threading.Thread(target=copy, name="function-logs", daemon=True).start()


@dataclass
class Result:
    value: Any
    request_id: str
    duration_ms: float
    cold: bool
    init_ms: float | None = None


@dataclass(eq=False)
class Environment:
    """One execution environment: a worker process, its pipes, and its memory limit."""

    spec: FunctionSpec
    runtime: BuiltRuntime
    environ: dict[str, str]
    logs: IO[str] | None
    process: subprocess.Popen[bytes] | None = None
    init_ms: float = 0.0
    invocations: int = 0
    peak_rss: int = 0
    _to_child: int = -1
    _from_child: int = -1
    init_limit: float = INIT_TIMEOUT
    init_in_invocation: float = 0.0  # seconds of a retried init the first invocation has already spent
    stream: str = field(default_factory=lambda: f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}")
    credentials: Credentials | None = None  # the role session this environment holds
    expires_at: float = float("inf")

    def start(self, init_timeout: float | None = None) -> None:
        """Spawn the worker and run its init phase (the cold start), within ``init_timeout`` (Lambda's 10 s)."""
        self.init_limit = INIT_TIMEOUT if init_timeout is None else init_timeout
        child_in, self._to_child = os.pipe()
        self._from_child, child_out = os.pipe()
        env = {**self.environ, "AWS_LAMBDA_LOG_STREAM_NAME": self.stream}
        if self.credentials is not None:  # as Lambda does: the role's session, in the environment
            env.update(self.credentials.environment())
            self.expires_at = self.credentials.expires_at
        command = [
            str(self.runtime.python), "-I", "-S", str(BOOTSTRAP),
            str(child_in), str(child_out), json.dumps(self.runtime.sys_path(self.spec.code_dir)), str(os.getpid()),
        ]  # fmt: skip
        started = time.monotonic()
        sink, relay = _log_sink(self.logs)
        try:
            self.process = subprocess.Popen(  # noqa: S603 - our bootstrap, our interpreter  # nosec B603
                command,
                env=env,
                cwd=self.spec.code_dir,
                pass_fds=(child_in, child_out),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT if relay else sink,
                start_new_session=True,  # Ctrl-C reaches the stack, which stops its environments
            )
        except BaseException:  # no worker: none of the four ends may outlive the attempt
            for fd in (self._to_child, self._from_child):
                os.close(fd)
            self._to_child = self._from_child = -1
            raise
        finally:
            os.close(child_in)
            os.close(child_out)
        if relay and self.logs is not None and self.process.stdout is not None:
            _relay(self.process.stdout, self.logs)
        message = self._receive(started + self.init_limit, "init")
        if "init_error" in message:
            self.kill()
            raise EnvironmentLost(message["init_error"])
        self.init_ms = float(message.get("init_ms", (time.monotonic() - started) * 1000))

    def invoke(self, event: Any, request_id: str, trace: str | None) -> Any:
        # An init Lambda ran again at this invocation counts against its Timeout
        budget, self.init_in_invocation = self.spec.timeout - self.init_in_invocation, 0.0
        deadline = time.time() + budget
        invocation = {
            "event": event,
            "request_id": request_id,
            "deadline_ms": int(deadline * 1000),
            "trace_id": trace,
            "function_arn": f"arn:aws:lambda:{self.environ['AWS_REGION']}:{ACCOUNT_ID}:function:{self.spec.name}",
        }
        try:
            lambda_bootstrap.send(self._to_child, invocation)
        except OSError as exc:
            self.kill()
            raise EnvironmentLost(
                {"errorType": "Runtime.ExitError", "errorMessage": f"RequestId: {request_id} Error: {exc}"}
            ) from exc
        self.invocations += 1
        message = self._receive(time.monotonic() + budget, "invoke", request_id)
        if "error" in message:
            raise InvocationError(message["error"])
        return message["result"]

    def loaded_from(self, folders: list[Path]) -> dict[str, str]:
        """Top-level packages this environment has imported from ``folders`` (for the layer check)."""
        lambda_bootstrap.send(self._to_child, {"inspect": [str(f) for f in folders]})
        return dict(self._receive(time.monotonic() + INIT_TIMEOUT, "inspect")["modules"])

    def _receive(self, deadline: float, phase: str, request_id: str = "") -> dict[str, Any]:
        """Wait for the worker's answer, killing it at the deadline or over its memory."""
        if self.process is None:
            raise RuntimeError("the environment was never started")
        limit = self.spec.memory_mb * 1024 * 1024
        with selectors.DefaultSelector() as selector:
            selector.register(self._from_child, selectors.EVENT_READ)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.kill()
                    seconds = self.spec.timeout if phase == "invoke" else self.init_limit
                    raise EnvironmentLost(
                        {
                            "errorType": "Sandbox.Timedout",
                            "errorMessage": f"{_now_iso()} {request_id} Task timed out after {seconds:.2f} seconds",
                        }
                    )
                ready = selector.select(min(remaining, MEMORY_POLL))
                rss = self._rss()
                self.peak_rss = max(self.peak_rss, rss)
                if rss > limit:
                    self.kill()
                    raise EnvironmentLost(
                        {
                            "errorType": "Runtime.OutOfMemory",
                            "errorMessage": f"RequestId: {request_id} Error: Runtime exited with error: signal: killed",
                        }
                    )
                if ready:
                    message = lambda_bootstrap.receive(self._from_child)
                    if message is None:
                        code = self.process.wait()
                        self.kill()
                        reason = f"signal: {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
                        raise EnvironmentLost(
                            {
                                "errorType": "Runtime.ExitError",
                                "errorMessage": f"RequestId: {request_id} Error: Runtime exited with error: {reason}",
                            }
                        )
                    return dict(message)

    def _rss(self) -> int:
        if self.process is None:
            return 0
        try:
            with open(f"/proc/{self.process.pid}/statm", "rb") as statm:
                return int(statm.read().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            return 0

    def terminate(self) -> None:
        """Kill the worker only: the thread that owns this environment closes its pipes."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
        for fd in (self._to_child, self._from_child):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._to_child = self._from_child = -1

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None and self._to_child >= 0


class FunctionPool:
    """The execution environments of one function, reused warm, created up to its concurrency."""

    def __init__(
        self,
        spec: FunctionSpec,
        runtime: BuiltRuntime,
        environ: Mapping[str, str],
        logs: IO[str] | None = None,
        xray: XRayDaemon | None = None,
        local_cap: int | None = None,
        credentials: Callable[[], Credentials] | None = None,
    ) -> None:
        """``credentials``: the function's role session for each new environment (None: ``environ``'s own)."""
        self.spec = spec
        self.runtime = runtime
        self.environ = dict(environ)
        self.credentials = credentials
        self.logs = logs
        self.xray = xray
        self.reserved = spec.reserved_concurrency
        cap = local_cap or int(os.environ.get("OPTOUT_LOCAL_CONCURRENCY") or DEFAULT_LOCAL_CONCURRENCY)
        self.concurrency = self.reserved if self.reserved is not None else cap
        self._idle: list[Environment] = []
        self._live = 0
        self._all: set[Environment] = set()
        self._inspecting = 0  # idle environments loaded_from has taken aside: still this function's
        self._cond = threading.Condition()
        self.cold_starts = 0
        self._closed = False

    def invoke(self, event: Any) -> Result:
        request_id = str(uuid.uuid4())
        # Lambda refuses an oversized request before any environment: no cold start, no throttle
        if len(json.dumps(event)) > lambda_bootstrap.MAX_PAYLOAD:
            raise InvocationError(
                {"errorType": "RequestTooLargeException", "errorMessage": "Request must be smaller than 6291456 bytes"}
            )
        environment, cold = self._acquire()
        header, root, parent = trace_header() if self.spec.tracing else (None, "", "")
        started_wall, started = time.time(), time.monotonic()
        self._log(f"START RequestId: {request_id} Version: $LATEST")
        error: InvocationError | None = None
        try:
            value = environment.invoke(event, request_id, header)
        except InvocationError as exc:
            error = exc
        except BaseException:  # not Lambda's error but ours (a bad event, a broken pipe): never reuse it
            self._release(environment, lost=True)
            raise
        duration = (time.monotonic() - started) * 1000
        memory = environment.peak_rss / 1024 / 1024
        init = f" Init Duration: {environment.init_ms:.2f} ms" if cold else ""
        self._log(f"END RequestId: {request_id}")
        self._log(
            f"REPORT RequestId: {request_id}\tDuration: {duration:.2f} ms\tBilled Duration: {int(duration) + 1} ms\t"
            f"Memory Size: {self.spec.memory_mb} MB\tMax Memory Used: {memory:.0f} MB{init}"
        )
        if header and self.xray is not None:
            self.xray.record(
                {
                    "name": self.spec.name,
                    "id": parent,
                    "trace_id": root,
                    "start_time": started_wall,
                    "end_time": time.time(),
                    "origin": "AWS::Lambda::Function",
                    "aws": {"request_id": request_id, "cold_start": cold},
                    **({"fault": True} if error is not None else {}),
                }
            )
        self._release(environment, isinstance(error, EnvironmentLost) or not environment.alive)
        if error is not None:
            if isinstance(error, EnvironmentLost):
                self._log(f"{_now_iso()} {error.payload.get('errorMessage')}")
            raise error
        return Result(value, request_id, duration, cold, environment.init_ms if cold else None)

    def _log(self, line: str) -> None:
        stream = self.logs or sys.stdout
        try:
            stream.write(line + "\n")
            stream.flush()
        except ValueError:  # closed at shutdown
            pass

    def _acquire(self) -> tuple[Environment, bool]:
        with self._cond:
            while True:
                if self._closed:
                    raise InvocationError({"errorType": "ServiceException", "errorMessage": "the stack is stopping"})
                while self._idle:
                    environment = self._idle.pop()  # the most recently used: the warmest
                    if environment.alive and time.time() < environment.expires_at - CREDENTIALS_MARGIN:
                        return environment, False
                    self._forget(environment)  # dead, or its role session is about to expire: retired
                if self._live < self.concurrency:
                    self._live += 1
                    break
                if self.reserved is not None and not self._inspecting:
                    raise Throttled(self.spec.name)
                self._cond.wait()  # an environment being inspected is back in a moment: not a throttle
        environment = Environment(self.spec, self.runtime, self.environ, self.logs)
        try:
            environment.credentials = self.credentials() if self.credentials is not None else None
        except BaseException:
            with self._cond:
                self._live -= 1
                self._cond.notify()
            raise
        with self._cond:
            self._all.add(environment)  # before it starts: close() must see it
        try:
            self._start(environment)
            if self._closed:
                raise InvocationError({"errorType": "ServiceException", "errorMessage": "the stack is stopping"})
        except BaseException:
            with self._cond:
                self._forget(environment)
                self._cond.notify()
            raise
        with self._cond:
            self.cold_starts += 1
        return environment, True

    def _start(self, environment: Environment) -> None:
        """Init, as Lambda runs it: an init over 10 s is run again at the first invocation, within
        the function's Timeout ("Lambda retries the Init phase at the time of the first function
        invocation with the configured function timeout")."""
        try:
            environment.start()
        except EnvironmentLost as exc:
            if exc.payload.get("errorType") != "Sandbox.Timedout" or self._closed:
                raise
            self._log(
                f"INIT_REPORT Init Duration: {environment.init_limit * 1000:.2f} ms\tPhase: init\tStatus: timeout"
            )
            environment.start(init_timeout=self.spec.timeout)
            environment.init_in_invocation = environment.init_ms / 1000

    def _forget(self, environment: Environment) -> None:
        environment.kill()
        self._all.discard(environment)
        self._live -= 1

    def _release(self, environment: Environment, lost: bool) -> None:
        with self._cond:
            if lost or self._closed:
                self._forget(environment)
            else:
                self._idle.append(environment)
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            for environment in idle:
                self._forget(environment)
            busy = list(self._all)
            self._cond.notify_all()
        for environment in busy:  # their invoking threads see the worker die and close the pipes
            environment.terminate()

    def environments(self) -> int:
        with self._cond:
            return self._live

    def loaded_from(self, folders: list[Path]) -> dict[str, str]:
        """What the idle environments of this function imported from ``folders``."""
        found: dict[str, str] = {}
        with self._cond:
            idle = list(self._idle)
            self._idle.clear()
            self._inspecting += len(idle)
        try:
            for environment in idle:
                found.update(environment.loaded_from(folders))
        finally:
            with self._cond:
                self._idle.extend(idle)
                self._inspecting -= len(idle)
                self._cond.notify_all()
        return found


class LocalLambda:
    """Every function of a provisioned stack on the local runtime, with one X-Ray daemon stand-in.

    ``aws`` is what points the functions at the local AWS (endpoint and credentials): the one
    part of their environment that is not the template's or Lambda's own.
    """

    def __init__(
        self,
        functions: Mapping[str, FunctionSpec],
        region: str,
        aws: Mapping[str, str],
        logs: IO[str] | None = None,
        build_dir: Path | None = None,
        local_cap: int | None = None,
        sessions: RoleSessions | None = None,
    ) -> None:
        """``sessions``: each function's role credentials (the local stack's); None keeps ``aws``'s own."""
        from optout_local.layer_build import BUILD_DIR, build_runtime

        self.sessions = sessions
        layers = sorted({layer for spec in functions.values() for layer in spec.layers})
        self.runtime = build_runtime(layers, build_dir or BUILD_DIR)
        self.xray = XRayDaemon()
        self.xray.start()
        self.region, self.aws, self.logs, self.local_cap = region, dict(aws), logs, local_cap
        self.pools = {logical_id: self.pool(spec) for logical_id, spec in functions.items()}

    def pool(self, spec: FunctionSpec, logs: IO[str] | None = None) -> FunctionPool:
        """Environments for ``spec`` on this runtime: its own layers, its template and Lambda variables,
        and its role's credentials where the stack has roles."""
        runtime = BuiltRuntime(
            self.runtime.python,
            tuple(layer for layer in self.runtime.layers if layer.content in spec.layers),
            self.runtime.sdk,
        )
        environ = {**spec.environment, **lambda_variables(spec, self.region, self.xray.address), **self.aws}
        credentials = None
        if self.sessions is not None and spec.logical_id in self.sessions.roles:
            sessions, function = self.sessions, spec.logical_id
            credentials = lambda: sessions.credentials(function)  # noqa: E731
        return FunctionPool(spec, runtime, environ, logs or self.logs, self.xray, self.local_cap, credentials)

    def invoke(self, function: str, event: Any) -> Any:
        return self.pools[function].invoke(event).value

    def concurrency(self, function: str) -> int:
        return self.pools[function].concurrency

    def layer_imports(self) -> dict[str, dict[str, str]]:
        """Per function, each top-level package its environments imported from a built layer."""
        folders = [layer.packages for layer in self.runtime.layers] + [layer.content for layer in self.runtime.layers]
        return {name: pool.loaded_from(folders) for name, pool in self.pools.items()}

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()
        self.xray.stop()
