"""One Lambda execution environment's runtime loop, run by a clean ``python3.13 -I -S``.

It stands in for Lambda's runtime interface client: it imports the handler named by ``_HANDLER``
from ``LAMBDA_TASK_ROOT`` (the init phase, once), then answers invocations one at a time, each
with a context whose remaining time is the truth and, where tracing is on, the invocation's own
``_X_AMZN_TRACE_ID``. It uses the standard library alone: nothing of the development venv is
importable here, only the path the parent hands over (function code, layers, the runtime's SDK).

Frames on the two pipes are an 8-byte big-endian length and a JSON document.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import time
import traceback
from typing import Any

HEADER = struct.Struct(">Q")
MAX_PAYLOAD = 6 * 1024 * 1024  # Lambda's limit on a synchronous request and response


def die_with_parent(parent: int) -> None:
    """Exit when the stack that started this environment is gone, even in the middle of a handler.

    A watchdog thread rather than PR_SET_PDEATHSIG: that fires when the spawning *thread* ends,
    and environments are started from short-lived request threads.
    """
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks: list[bytes] = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def receive(fd: int) -> Any:
    header = _read_exact(fd, HEADER.size)
    if header is None:
        return None
    body = _read_exact(fd, HEADER.unpack(header)[0])
    return None if body is None else json.loads(body)


def send(fd: int, message: Any) -> None:
    body = json.dumps(message).encode()
    data = HEADER.pack(len(body)) + body
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def error_payload(exc: BaseException, error_type: str | None = None, message: str | None = None) -> dict[str, Any]:
    return {
        "errorMessage": message if message is not None else str(exc),
        "errorType": error_type or type(exc).__name__,
        "stackTrace": traceback.format_list(traceback.extract_tb(exc.__traceback__)),
    }


class LambdaContext:
    """The context object the Python runtime interface client passes to a handler."""

    def __init__(self, invocation: dict[str, Any]) -> None:
        self.aws_request_id: str = invocation["request_id"]
        self.invoked_function_arn: str = invocation["function_arn"]
        self.function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = os.environ["AWS_LAMBDA_FUNCTION_VERSION"]
        self.memory_limit_in_mb = os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]  # a string, as in Lambda
        self.log_group_name = os.environ["AWS_LAMBDA_LOG_GROUP_NAME"]
        self.log_stream_name = os.environ["AWS_LAMBDA_LOG_STREAM_NAME"]
        self.identity = None
        self.client_context = None
        self._deadline_ms: int = invocation["deadline_ms"]

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


def _init(handler_name: str) -> Any:
    module_name, _, attribute = handler_name.rpartition(".")
    try:
        module = __import__(module_name)
        for part in module_name.split(".")[1:]:
            module = getattr(module, part)
    except ImportError as exc:
        raise InitError(
            error_payload(exc, "Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}")
        ) from exc
    except SyntaxError as exc:
        raise InitError(
            error_payload(exc, "Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {exc}")
        ) from exc
    except Exception as exc:
        raise InitError(error_payload(exc)) from exc
    handler = getattr(module, attribute, None)
    if handler is None:
        raise InitError(
            {
                "errorMessage": f"Handler '{attribute}' missing on module '{module_name}'",
                "errorType": "Runtime.HandlerNotFound",
                "stackTrace": [],
            }
        )
    return handler


def _loaded_from(folders: list[str]) -> dict[str, str]:
    """The top-level packages imported so far that were loaded from ``folders``, and from which."""
    found: dict[str, str] = {}
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None) or ""
        for folder in folders:
            if origin.startswith(folder.rstrip("/") + "/"):
                found.setdefault(name.partition(".")[0], folder)
    return found


class Unbuffered:
    """A stream that flushes after every write, as the runtime interface client wraps stdout and
    stderr: what a handler printed is in its log even when its environment is killed next."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)

    def write(self, text: str) -> int:
        written: int = self.stream.write(text)
        self.stream.flush()
        return written

    def writelines(self, lines: Any) -> None:
        self.stream.writelines(lines)
        self.stream.flush()


_REQUEST_ID = [""]  # the invocation being served, for the root logger's lines


def _setup_logging() -> None:
    """The root logger's handler, as the runtime interface client installs it (text format): a
    library's own logger (botocore's, urllib3's) reaches the log as it would in Lambda."""
    import logging

    class RequestId(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            record.aws_request_id = _REQUEST_ID[0]
            return True

    handler = logging.StreamHandler(sys.stdout)
    formatter = logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n", "%Y-%m-%dT%H:%M:%S"
    )
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler.addFilter(RequestId())
    logging.getLogger().addHandler(handler)


class InitError(Exception):
    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__(payload["errorMessage"])
        self.payload = payload


def main() -> None:
    # Lambda's disk is read-only: nothing an import compiles is kept for the next cold start
    sys.dont_write_bytecode = True
    sys.stdout, sys.stderr = Unbuffered(sys.stdout), Unbuffered(sys.stderr)
    _setup_logging()
    in_fd, out_fd = int(sys.argv[1]), int(sys.argv[2])
    die_with_parent(int(sys.argv[4]))
    sys.path[:0] = json.loads(sys.argv[3])
    os.chdir(os.environ["LAMBDA_TASK_ROOT"])
    started = time.monotonic()
    try:
        handler = _init(os.environ["_HANDLER"])
    except InitError as exc:
        sys.stderr.write(f"[ERROR] {exc.payload['errorType']}: {exc.payload['errorMessage']}\n")
        sys.stderr.flush()
        send(out_fd, {"init_error": exc.payload})
        return
    send(out_fd, {"ready": True, "init_ms": (time.monotonic() - started) * 1000})
    while True:
        invocation = receive(in_fd)
        if invocation is None:
            return
        if "inspect" in invocation:  # the local runtime's own question, never an invocation
            send(out_fd, {"modules": _loaded_from(invocation["inspect"])})
            continue
        _REQUEST_ID[0] = invocation.get("request_id", "")
        if invocation.get("trace_id"):
            os.environ["_X_AMZN_TRACE_ID"] = invocation["trace_id"]
        else:
            os.environ.pop("_X_AMZN_TRACE_ID", None)
        try:
            result = handler(invocation["event"], LambdaContext(invocation))
        except Exception as exc:  # the runtime reports any unhandled error, as Lambda's does
            payload = error_payload(exc)
            sys.stderr.write(f"[ERROR] {payload['errorType']}: {payload['errorMessage']}\n")
            traceback.print_exc()
            sys.stderr.flush()
            send(out_fd, {"error": payload})
            continue
        finally:
            sys.stdout.flush()
        try:
            size = len(json.dumps(result))
        except (TypeError, ValueError) as exc:
            send(out_fd, {"error": error_payload(exc, "Runtime.MarshalError", f"Unable to marshal response: {exc}")})
            continue
        if size > MAX_PAYLOAD:
            message = f"Response payload size ({size} bytes) exceeded the maximum allowed ({MAX_PAYLOAD} bytes)"
            send(out_fd, {"error": {"errorType": "Function.ResponseSizeTooLarge", "errorMessage": message}})
            continue
        send(out_fd, {"result": result})


if __name__ == "__main__":
    main()
