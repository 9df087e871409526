"""The local Lambda runtime: isolated environments from the built layer, with Lambda's limits.

A probe function (tests/fixtures/runtime_stack) reports what it sees from inside its environment.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from optout_local import lambda_runtime
from optout_local.lambda_runtime import (
    Environment,
    EnvironmentLost,
    FunctionPool,
    InvocationError,
    Throttled,
    lambda_variables,
)
from optout_local.layer_build import RUNTIME_REQUIREMENTS, build_runtime
from optout_local.provision import FunctionSpec, Provisioner
from optout_local.stack import LocalConfig, LocalStack, free_port
from optout_local.template import ROOT

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "runtime_stack" / "template.yaml"
PIN = re.compile(r"^(boto3|botocore)==(\S+)$", re.MULTILINE)


@pytest.fixture(scope="module")
def probe_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    config = LocalConfig(api_port=free_port(), aws_port=free_port(), template=FIXTURE, stack_name="probe")
    stack = LocalStack(config, logs=(tmp_path_factory.mktemp("probe") / "functions.log").open("w"))
    stack.start()
    yield stack
    stack.stop()


def pool(stack: LocalStack, name: str) -> FunctionPool:
    assert stack.functions is not None
    return stack.functions.pools[name]


def test_a_function_sees_exactly_the_template_and_lambda_environment(probe_stack: LocalStack) -> None:
    # When the probe reports its environment
    seen = pool(probe_stack, "ProbeFunction").invoke({"modules": ["pytest", "moto", "optout_local", "yaml"]}).value
    assert probe_stack.stack is not None
    spec = probe_stack.stack.functions["ProbeFunction"]
    environ: dict[str, str] = seen["environ"]
    # Then it holds the template's Globals and the function's Variables, resolved
    assert environ["PROBE_GLOBAL"] == "from-globals"
    assert environ["PROBE_SEEN_QUEUE_URL"] == probe_stack.stack.ref("SeenQueue")
    # And what Lambda sets, with a sampled trace header per invocation (Tracing: Active)
    assert environ["AWS_LAMBDA_FUNCTION_NAME"] == spec.name == seen["function_name"]
    assert environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "128" == seen["memory"]
    assert environ["LAMBDA_TASK_ROOT"] == str(spec.code_dir) == seen["cwd"]
    assert environ["_HANDLER"] == "app.handler"
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+:\d+", environ["AWS_XRAY_DAEMON_ADDRESS"])
    assert re.fullmatch(r"Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=1", environ["_X_AMZN_TRACE_ID"])
    # And nothing of this process: every variable is the template's, Lambda's, or the local AWS endpoint's
    template_keys = set(spec.environment)
    lambda_keys = {
        "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_REGION",
        "AWS_DEFAULT_REGION", "AWS_EXECUTION_ENV", "LAMBDA_TASK_ROOT", "_HANDLER", "LANG", "TZ", "PATH",
        "AWS_XRAY_DAEMON_ADDRESS", "AWS_XRAY_CONTEXT_MISSING", "_X_AMZN_TRACE_ID",
    }  # fmt: skip
    local_aws = set(probe_stack.config.aws_environment())
    assert set(environ) - template_keys - lambda_keys - local_aws == {"LC_CTYPE"}  # set by the interpreter itself
    # And a clean interpreter: python3.13, isolated, no site, its path the code, the layer and the runtime SDK
    assert seen["version"] == [3, 13] and seen["isolated"] == 1 and seen["no_site"] == 1
    assert seen["path"][0] == str(spec.code_dir) and seen["layer"] == "probe"
    assert not any(".venv" in entry for entry in seen["path"])
    assert seen["importable"] == {"pytest": False, "moto": False, "optout_local": False, "yaml": False}
    # And boto3 and botocore at the Lambda runtime's version, not the venv's
    pins = dict(PIN.findall(RUNTIME_REQUIREMENTS.read_text()))
    assert (seen["boto3"], seen["botocore"]) == (pins["boto3"], pins["botocore"])


def test_init_runs_once_and_the_environment_is_reused_warm(probe_stack: LocalStack) -> None:
    probe = pool(probe_stack, "ReservedFunction")
    first = probe.invoke({})
    second = probe.invoke({})
    assert second.value["pid"] == first.value["pid"] == second.value["init_pid"]
    assert not second.cold and second.init_ms is None
    assert second.value["request_id"] != first.value["request_id"]


def test_a_timeout_kills_the_environment_and_the_next_invocation_is_cold(probe_stack: LocalStack) -> None:
    probe = pool(probe_stack, "ProbeFunction")
    warm = probe.invoke({}).value["pid"]
    # The remaining time tells the truth
    quick = probe.invoke({"action": "sleep", "seconds": 0.5}).value
    assert 2500 <= quick["remaining_before"] <= 3000 and 2000 <= quick["remaining_after"] <= 2500
    # When an invocation outlives the function's Timeout (3 s)
    started = time.monotonic()
    with pytest.raises(EnvironmentLost) as lost:
        probe.invoke({"action": "sleep", "seconds": 10})
    # Then it fails as Lambda's do, at the timeout, and the environment is gone
    assert 2.9 <= time.monotonic() - started < 5
    assert lost.value.payload["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 3.00 seconds" in lost.value.payload["errorMessage"]
    after = probe.invoke({})
    assert after.cold and after.value["pid"] not in (warm, quick["pid"])


def test_what_a_handler_printed_before_its_timeout_is_in_its_log(probe_stack: LocalStack) -> None:
    # Given the function's log, as the stack keeps it
    probe = pool(probe_stack, "ProbeFunction")
    assert probe.logs is not None
    log = Path(probe.logs.name)
    text = f"printed-{uuid.uuid4().hex}"
    # When a handler prints a line and a library logs one, then outlives its Timeout (3 s)
    with pytest.raises(EnvironmentLost):
        probe.invoke({"action": "print", "text": text, "seconds": 10})
    # Then both lines are in the log, as the runtime's unbuffered streams and root handler write them
    lines = log.read_text().splitlines()
    assert text in lines
    (logged,) = [line for line in lines if f"a library says {text}" in line]
    level, at, request_id, message = logged.split("\t")
    assert level == "[WARNING]" and at.endswith("Z") and len(request_id) == 36 and message.startswith("a library")


def test_an_environment_that_cannot_start_leaks_no_descriptor(probe_stack: LocalStack) -> None:
    # Given a pool whose interpreter is missing (a broken build)
    probe = pool(probe_stack, "ProbeFunction")
    broken = FunctionPool(probe.spec, replace(probe.runtime, python=Path("/nonexistent/python3.13")), probe.environ)
    with pytest.raises(FileNotFoundError):  # the first attempt may open what the process keeps anyway
        broken.invoke({})
    before = len(os.listdir("/proc/self/fd"))
    # When five more invocations fail to start an environment
    for _ in range(5):
        with pytest.raises(FileNotFoundError):
            broken.invoke({})
    # Then no pipe end is left open, and no environment counted
    assert len(os.listdir("/proc/self/fd")) == before and broken.environments() == 0


def test_an_init_over_the_limit_runs_again_within_the_first_invocations_timeout(
    probe_stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a function whose init takes 2 s, and the init limit (10 s in Lambda) cut to 1 s
    monkeypatch.setattr(lambda_runtime, "INIT_TIMEOUT", 1.0)
    slow = pool(probe_stack, "SlowInitFunction")
    # When it is first invoked
    result = slow.invoke({"action": "sleep", "seconds": 0})
    # Then the init ran again at the invocation, as Lambda retries it, and its 2 s came out of the
    # invocation's Timeout (8 s): the handler had about 6 s left
    assert result.cold and result.value["remaining_before"] <= 6200
    assert slow.logs is not None and "Phase: init\tStatus: timeout" in Path(slow.logs.name).read_text()
    # And the environment is reused warm after that, with the whole Timeout
    warm = slow.invoke({"action": "sleep", "seconds": 0})
    assert not warm.cold and warm.value["remaining_before"] > 7000


def test_an_environment_over_its_memory_size_is_killed(probe_stack: LocalStack) -> None:
    probe = pool(probe_stack, "ProbeFunction")
    before = probe.invoke({}).value["pid"]
    with pytest.raises(EnvironmentLost) as lost:
        probe.invoke({"action": "alloc", "mb": 200})  # MemorySize: 128
    assert "Runtime exited with error: signal: killed" in lost.value.payload["errorMessage"]
    assert probe.invoke({}).value["pid"] != before


def test_a_crash_and_an_error_are_reported_as_lambda_reports_them(probe_stack: LocalStack) -> None:
    probe = pool(probe_stack, "ProbeFunction")
    pid = probe.invoke({}).value["pid"]
    with pytest.raises(InvocationError) as failed:
        probe.invoke({"action": "raise"})
    assert failed.value.payload["errorType"] == "ValueError" and failed.value.payload["stackTrace"]
    assert probe.invoke({}).value["pid"] == pid  # a handled error keeps the environment
    with pytest.raises(EnvironmentLost) as crashed:
        probe.invoke({"action": "exit"})
    assert crashed.value.payload["errorType"] == "Runtime.ExitError"
    assert "exit status 3" in crashed.value.payload["errorMessage"]


def test_reserved_concurrency_throttles_and_unreserved_functions_run_in_parallel(probe_stack: LocalStack) -> None:
    results: list[Any] = []

    def call(name: str, seconds: float) -> None:
        try:
            results.append(pool(probe_stack, name).invoke({"action": "sleep", "seconds": seconds}).value["pid"])
        except Throttled as exc:
            results.append(exc)

    # ReservedConcurrentExecutions: 1 and two calls at once: one is throttled, as in Lambda
    threads = [threading.Thread(target=call, args=("ReservedFunction", 1.0)) for _ in range(2)]
    for thread in threads:
        thread.start()
        time.sleep(0.2)
    for thread in threads:
        thread.join()
    assert sum(isinstance(r, Throttled) for r in results) == 1
    # Unreserved: up to the local cap (4) environments serve at once
    results.clear()
    threads = [threading.Thread(target=call, args=("ProbeFunction", 1.5)) for _ in range(4)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 4 and time.monotonic() - started < 5.5


def test_an_idle_environment_being_inspected_is_no_throttle(
    probe_stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a reserved function (1) with one warm environment, which the stack is inspecting
    # (what the layer-imports check asks of idle environments) slowly
    reserved = pool(probe_stack, "ReservedFunction")
    reserved.invoke({})
    inspect = Environment.loaded_from

    def slowly(self: Environment, folders: list[Path]) -> dict[str, str]:
        time.sleep(1.0)
        return inspect(self, folders)

    monkeypatch.setattr(Environment, "loaded_from", slowly)
    looking = threading.Thread(target=reserved.loaded_from, args=([Path(tempfile.gettempdir())],))
    looking.start()
    time.sleep(0.2)
    # When an invocation comes meanwhile, Then it waits for the environment instead of being throttled
    assert reserved.invoke({}).cold is False
    looking.join()


def test_the_gateway_answers_a_timed_out_function_as_api_gateway_does(probe_stack: LocalStack) -> None:
    url = f"{probe_stack.config.api_url}/probe"
    ok = requests.post(url, json={"action": "sleep", "seconds": 0.1}, timeout=10)
    assert ok.status_code == 200 and ok.json()["pid"]
    timed_out = requests.post(url, json={"action": "sleep", "seconds": 10}, timeout=10)
    assert timed_out.status_code == 500 and timed_out.json() == {"message": "Internal Server Error"}


def test_a_timed_out_sqs_batch_comes_back_after_the_visibility_timeout(probe_stack: LocalStack) -> None:
    assert probe_stack.stack is not None
    sqs = probe_stack.config.client("sqs")
    sent = time.time()
    sqs.send_message(QueueUrl=probe_stack.stack.ref("SlowQueue"), MessageBody="slow")
    deadline = time.monotonic() + 30
    reports: list[dict[str, Any]] = []
    while not reports and time.monotonic() < deadline:
        for message in sqs.receive_message(
            QueueUrl=probe_stack.stack.ref("SeenQueue"), WaitTimeSeconds=1, MaxNumberOfMessages=10
        ).get("Messages", []):
            reports.append(json.loads(message["Body"]))
    # The first delivery timed out (3 s) and was not deleted; it came back after VisibilityTimeout (4 s)
    (report,) = reports
    assert report["receives"] == 2 and report["at"] - sent >= 4


def test_tracing_records_the_function_segment_for_each_invocation(probe_stack: LocalStack) -> None:
    probe = pool(probe_stack, "ProbeFunction")
    header = probe.invoke({}).value["environ"]["_X_AMZN_TRACE_ID"]
    root = header.split(";")[0].removeprefix("Root=")
    parent = header.split(";")[1].removeprefix("Parent=")
    segments = requests.get(f"{probe_stack.config.api_url}/_local/traces", timeout=10).json()
    (mine,) = [s for s in segments if s.get("trace_id") == root]
    assert mine["id"] == parent and mine["origin"] == "AWS::Lambda::Function"
    # PassThrough: no header, no segment
    reserved = pool(probe_stack, "ReservedFunction").invoke({}).value["environ"]
    assert "_X_AMZN_TRACE_ID" not in reserved


def test_a_package_missing_from_the_layer_pins_fails_the_function(tmp_path: Path) -> None:
    # Given the real layer with aws-xray-sdk left out of its pins (as it was before this fix)
    layer = tmp_path / "layer"
    layer.mkdir()
    (layer / "optout").symlink_to(ROOT / "layers" / "optout" / "optout")
    pins = (ROOT / "layers" / "optout" / "requirements.txt").read_text().splitlines()
    (layer / "requirements.txt").write_text("\n".join(p for p in pins if not p.startswith("aws-xray-sdk")) + "\n")
    runtime = build_runtime([layer], tmp_path / "build")
    # And UnsubscribeFunction as the template declares it (Tracing: Active)
    spec = _unsubscribe_spec()
    spec.layers = [layer]
    environ = {**spec.environment, **lambda_variables(spec, "us-east-1", "127.0.0.1:2000")}
    probe = FunctionPool(spec, runtime, environ, logs=(tmp_path / "log").open("w"))
    event = json.loads((ROOT / "events" / "unsubscribe_get.json").read_text())
    # When it is invoked with tracing on, as deployed
    with pytest.raises(InvocationError) as failed:
        probe.invoke(event)
    probe.close()
    # Then it fails locally as it would in AWS
    assert failed.value.payload["errorType"] == "ModuleNotFoundError"
    assert "aws_xray_sdk" in failed.value.payload["errorMessage"]
    shutil.rmtree(tmp_path / "build", ignore_errors=True)


def _unsubscribe_spec() -> FunctionSpec:
    """UnsubscribeFunction as template.yaml declares it (no AWS needed: it fails before any call)."""
    provisioner = Provisioner(boto3.session.Session(region_name="us-east-1"), "http://127.0.0.1:9", "us-east-1")
    raw = provisioner.template["Resources"]["UnsubscribeFunction"]["Properties"]
    provisioner._aws_serverless_function("UnsubscribeFunction", raw)
    spec = provisioner.stack.functions["UnsubscribeFunction"]
    # What UnsubscribeSettings requires at init, so the failure is the one under test
    spec.environment = {
        "POWERTOOLS_SERVICE_NAME": "optout",
        "OPTOUT_SUPPRESSION_TABLE": "unused",
        "OPTOUT_SIGNING_KEYS_SECRET": "unused",
        "OPTOUT_PEPPER_SECRET": "unused",
        "OPTOUT_PUBLIC_BASE_URL": "http://127.0.0.1:9",
        "OPTOUT_NOTICES_TABLE": "unused",
    }
    assert spec.tracing
    return spec


def test_layer_and_runtime_sdk_builds_are_reused_until_the_pins_change(tmp_path: Path) -> None:
    layer = tmp_path / "layer"
    layer.mkdir()
    (layer / "requirements.txt").write_text("six==1.17.0\n")
    first = build_runtime([layer], tmp_path / "build")
    stamp = first.layers[0].packages / ".optout-build-stamp"
    built_at = stamp.stat().st_mtime_ns
    again = build_runtime([layer], tmp_path / "build")
    assert again.layers[0].packages == first.layers[0].packages and stamp.stat().st_mtime_ns == built_at
    (layer / "requirements.txt").write_text("six==1.16.0\n")
    rebuilt = build_runtime([layer], tmp_path / "build")
    assert (rebuilt.layers[0].packages / "six-1.16.0.dist-info").is_dir()
    assert not (rebuilt.layers[0].packages / "six-1.17.0.dist-info").exists()


def _pyc_flags(pyc: Path) -> int:
    """PEP 552: 0 is checked against the source's mtime, 1 is hash-based and never checked, 3 is checked."""
    return int.from_bytes(pyc.read_bytes()[4:8], "little")


def test_the_layer_ships_bytecode_and_an_environment_writes_none(tmp_path: Path) -> None:
    # Given a layer with a pinned package and a module of its own, and a function that imports both
    layer = tmp_path / "layer"
    (layer / "shared").mkdir(parents=True)
    (layer / "shared" / "__init__.py").write_text("WORD = 'layer'\n")
    (layer / "requirements.txt").write_text("six==1.17.0\n")
    code = tmp_path / "function"
    code.mkdir()
    (code / "app.py").write_text(
        "import sys\nimport shared\nimport six\n\n\n"
        "def handler(event, context):\n"
        "    return {'word': shared.WORD, 'six': six.__version__, 'writes': not sys.dont_write_bytecode}\n"
    )
    # When the layer is built and the function runs on it
    runtime = build_runtime([layer], tmp_path / "build")
    spec = FunctionSpec("BytecodeFunction", "bytecode", code, "app.handler", timeout=10, layers=[layer])
    probe = FunctionPool(spec, runtime, lambda_variables(spec, "us-east-1", None), logs=(tmp_path / "log").open("w"))
    try:
        assert probe.invoke({}).value == {"word": "layer", "six": "1.17.0", "writes": False}
    finally:
        probe.close()
    # Then every module of the pinned packages has its .pyc, hash-based and never checked (a built
    # folder never changes), as the layer's Makefile ships it to Lambda's read-only /opt
    packages = runtime.layers[0].packages
    modules = sorted(packages.rglob("*.py"))
    assert modules
    for module in modules:
        pyc = module.parent / "__pycache__" / f"{module.stem}.cpython-313.pyc"
        assert pyc.is_file() and _pyc_flags(pyc) == 1, module
    # And the layer's own source is compiled where it lies, checked against its mtime (it is edited)
    assert _pyc_flags(layer / "shared" / "__pycache__" / "__init__.cpython-313.pyc") == 0
    # And the environment wrote no bytecode: the function's code is compiled in every cold start, as in Lambda
    assert not (code / "__pycache__").exists()
    shutil.rmtree(tmp_path / "build", ignore_errors=True)


def test_a_response_over_6_mb_fails_as_in_lambda(probe_stack: LocalStack) -> None:
    with pytest.raises(InvocationError) as failed:
        pool(probe_stack, "ProbeFunction").invoke({"action": "big"})
    assert failed.value.payload["errorType"] == "Function.ResponseSizeTooLarge"


def test_a_request_over_6_mb_is_refused_before_any_environment(probe_stack: LocalStack) -> None:
    # Given a reserved function (1) whose one environment is busy
    reserved = pool(probe_stack, "ReservedFunction")
    busy = threading.Thread(target=reserved.invoke, args=({"action": "sleep", "seconds": 1.0},))
    busy.start()
    time.sleep(0.3)
    cold_starts = reserved.cold_starts
    # When a request over Lambda's 6 MB limit comes, Then it is refused as too large (not throttled)
    with pytest.raises(InvocationError) as refused:
        reserved.invoke({"padding": "x" * (6 * 1024 * 1024 + 1)})
    assert refused.value.payload["errorType"] == "RequestTooLargeException"
    busy.join()
    assert reserved.cold_starts == cold_starts  # and no environment was started for it


def test_an_event_that_cannot_be_sent_never_leaks_an_environment(probe_stack: LocalStack) -> None:
    from datetime import datetime

    probe = pool(probe_stack, "ProbeFunction")
    for _ in range(probe.concurrency + 1):  # more failures than the function has environments
        with pytest.raises(TypeError):
            probe.invoke({"when": datetime.now()})
    assert probe.invoke({}).value["pid"]  # a slot is still free


def test_closing_a_pool_during_a_cold_start_leaves_no_worker(probe_stack: LocalStack) -> None:
    original = pool(probe_stack, "ProbeFunction")
    fresh = FunctionPool(original.spec, original.runtime, original.environ, logs=original.logs)
    outcome: list[Any] = []
    thread = threading.Thread(target=lambda: outcome.append(_attempt(fresh)))
    thread.start()
    time.sleep(0.05)  # the environment is starting
    fresh.close()
    thread.join(timeout=15)
    assert outcome and isinstance(outcome[0], InvocationError)
    assert fresh.environments() == 0


def _attempt(probe: FunctionPool) -> Any:
    try:
        return probe.invoke({})
    except InvocationError as exc:
        return exc


def test_a_busy_environment_dies_with_the_stack_that_started_it(probe_stack: LocalStack, tmp_path: Path) -> None:
    # Given a process of its own with a pool whose environment is in the middle of a long handler
    original = pool(probe_stack, "ProbeFunction")
    layers = [(str(layer.content), str(layer.packages)) for layer in original.runtime.layers]
    script = tmp_path / "parent.py"
    script.write_text(
        "import json, sys, threading, time\n"
        "from pathlib import Path\n"
        "from optout_local.lambda_runtime import FunctionPool\n"
        "from optout_local.layer_build import BuiltLayer, BuiltRuntime\n"
        "from optout_local.provision import FunctionSpec\n"
        f"spec = FunctionSpec(**json.loads({json.dumps(json.dumps(_spec_fields(original.spec)))}))\n"
        f"layers = tuple(BuiltLayer(Path(c), Path(p)) for c, p in {layers!r})\n"
        f"runtime = BuiltRuntime(Path({str(original.runtime.python)!r}), layers, Path({str(original.runtime.sdk)!r}))\n"
        f"probe = FunctionPool(spec, runtime, {original.environ!r}, logs=sys.stderr)\n"
        "print(probe.invoke({}).value['pid'], flush=True)\n"
        "threading.Thread(target=lambda: probe.invoke({'action': 'sleep', 'seconds': 60}), daemon=True).start()\n"
        "time.sleep(60)\n"
    )  # fmt: skip
    parent = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert parent.stdout is not None
    worker = int(parent.stdout.readline())
    time.sleep(0.5)  # the handler is sleeping
    # When that process is SIGKILLed (nothing of it runs to stop its environments)
    parent.kill()
    parent.wait()
    # Then the worker exits too, within a second or so, instead of running on as an orphan
    deadline = time.monotonic() + 5
    while Path(f"/proc/{worker}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{worker}").exists()


def _spec_fields(spec: FunctionSpec) -> dict[str, Any]:
    return {
        "logical_id": spec.logical_id, "name": spec.name, "code_dir": str(spec.code_dir), "handler": spec.handler,
        "timeout": 90, "memory_mb": spec.memory_mb, "environment": spec.environment, "tracing": spec.tracing,
    }  # fmt: skip


def test_a_missing_variable_fails_the_cold_start_on_the_local_runtime(tmp_path: Path) -> None:
    # Given UnsubscribeFunction without OPTOUT_SIGNING_KEYS_SECRET, on the real built layer
    spec = _unsubscribe_spec()
    del spec.environment["OPTOUT_SIGNING_KEYS_SECRET"]
    runtime = build_runtime(spec.layers)
    environ = {**spec.environment, **lambda_variables(spec, "us-east-1", None)}
    probe = FunctionPool(spec, runtime, environ, logs=(tmp_path / "log").open("w"))
    # When it is invoked, its init fails, naming the variable, and no environment is kept
    with pytest.raises(EnvironmentLost) as failed:
        probe.invoke(json.loads((ROOT / "events" / "unsubscribe_get.json").read_text()))
    assert "OPTOUT_SIGNING_KEYS_SECRET is not set" in failed.value.payload["errorMessage"]
    assert probe.environments() == 0
