"""``make bench``: measure the bars of DESIGN §7 on the local Lambda runtime, print a table, write JSON.

Every figure is taken on the stack ``optout local`` runs: moto in its own process, the gateway,
and each function in environments of its own (clean ``python3.13 -I -S`` workers built from the
layer's pinned requirements, tracing on as the template says).

1. Notice throughput: a policy-change notice through the dispatcher and the sender, their AWS
   calls per recipient by operation as moto received them (counted by a proxy in front of moto,
   :mod:`optout_local.faults`, never inside the functions), suppression reads per 100 recipients,
   DynamoDB write units, and the pipeline's time beside the floor: the very SES requests the
   pipeline made, made again bare by an environment of its own on the same runtime, through the
   same proxy, right after each sender invocation. The bench plays the two SQS event source
   mappings itself (receive, invoke, delete what succeeded), so the floor can run between the
   pipeline's steps and no poller's long poll or batching window is timed.
2. Opt-out latency: concurrent clients (a process of their own) on the one-click POST and the
   signed Twilio webhook through the gateway, first requests (cold environments) apart from the
   steady state, and where the time went (gateway, waiting for an environment, the worker pipe,
   the handler, its AWS calls).
3. Cold start: each function's first invocation in a new environment (process start, imports,
   init and the first call with its sample event from events/) beside a bare environment on the
   same runtime and path whose handler imports boto3; interleaved, median of 5; and each
   function's warm invocation p50.
4. Start time: ``optout local`` from process start to its ``ready:`` line, with the Lambda build
   folder missing (a temporary copy of the project) and present.
5. Scale on paper: the pipeline's AWS cost per million notified recipients beside SES's own.
6. The quota run: the sender at its default concurrency against an SES that answers each call
   after 20, 50 or 100 ms and throttles above 100, 500 or 1,000 recipients/s, beside the old
   sender of one SendEmail a recipient, in the same run (``quota_run``; the sender in this
   process, which its docstring says why).
7. Erasure: the time to erase a subject with N delivery records, through the admin API
   (``erasure_time``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess  # nosec B404 - our own interpreter running our own modules
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qsl, urlencode

from optout_local import harness
from optout_local.faults import Call, Ledger
from optout_local.lambda_runtime import FunctionPool, Result
from optout_local.stack import LocalConfig, LocalStack, free_port
from optout_local.template import ROOT

# Prices used for "scale on paper" (us-east-1, on-demand, arm64), as published by AWS.
PRICES = {
    "lambda_gb_second_arm64": 0.0000133334,
    "lambda_request": 0.20 / 1_000_000,
    "sqs_request": 0.40 / 1_000_000,  # standard queue, per 64 KB request
    "dynamodb_write_request_unit": 0.625 / 1_000_000,
    "dynamodb_read_request_unit": 0.125 / 1_000_000,
    "s3_get": 0.0004 / 1000,
    "ses_email": 0.10 / 1000,
}
BENCH_FUNCTIONS = Path(__file__).resolve().parent / "bench_functions"
EVENTS = ROOT / "events"
# Each function's sample event (events/), made real for the running stack by ``_SampleEvents``
SAMPLE_EVENTS = {
    "admin_api": "admin_api_get_notice.json",
    "dispatcher": "dispatcher_notice.json",
    "feedback": "feedback_bounce_sns_envelope.json",
    "sender": "sender_batch.json",
    "sms_inbound": "sms_inbound_sns_envelope.json",
    "sms_webhook": "sms_webhook_twilio.json",
    "unsubscribe": "unsubscribe_one_click.json",
}
WRITES = ("BatchWriteItem", "TransactWriteItems", "PutItem", "UpdateItem", "DeleteItem")


def _units(item: dict[str, Any]) -> int:
    """Write units of one item: 1 KB each, rounded up (its DynamoDB JSON is a close upper bound)."""
    return max(1, -(-len(json.dumps(item)) // 1024))


def write_units(operation: str, params: dict[str, Any]) -> int:
    """DynamoDB write units a request costs: transactional writes cost two per item."""
    if operation == "BatchWriteItem":
        return sum(
            _units(r.get("PutRequest", {}).get("Item", {})) for rs in params["RequestItems"].values() for r in rs
        )
    if operation == "TransactWriteItems":
        return sum(2 * _units(next(iter(t.values())).get("Item", {})) for t in params["TransactItems"])
    if operation in ("PutItem", "UpdateItem", "DeleteItem"):
        return _units(params.get("Item", {}))
    return 0


def _percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"n": 0}
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {"p50_ms": round(statistics.median(ordered), 1), "p99_ms": round(p99, 1),
            "max_ms": round(ordered[-1], 1), "n": len(ordered)}  # fmt: skip


def _logs(name: str) -> IO[str]:
    """Where the functions' output goes during a bench part (CloudWatch Logs in AWS)."""
    folder = ROOT / "test-artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    return (folder / f"bench-{name}.log").open("w", encoding="utf-8")


def _stop_pollers(stack: LocalStack, functions: tuple[str, ...] | None = None) -> None:
    """Stop the stack's event source mappings for ``functions`` (all if None): the bench plays them."""
    chosen = [p for p in stack.pollers if functions is None or p.source.function in functions]
    for poller in chosen:
        poller.stopping.set()
    for poller in chosen:
        poller.stop()


# --- 1. notice throughput -------------------------------------------------------------------


def notice_throughput(recipients: int, runs: int = 1) -> dict[str, Any]:
    """The pipeline against its SES floor, ``runs`` times, each on a fresh stack: the median run.

    Each run measures its own floor right after each of its sender invocations, so a slow moment
    of the machine mostly slows both; the median of several runs keeps one noisy run from deciding.
    """
    results = sorted((_throughput_run(recipients) for _ in range(runs)), key=lambda r: r["ratio_to_bare_ses"])
    median = results[len(results) // 2]
    return {
        **median,
        "runs": runs,
        "ratio_of_each_run": [r["ratio_to_bare_ses"] for r in results],
        "end_to_end_ratio_of_each_run": sorted(r["end_to_end_ratio_to_bare_ses"] for r in results),
    }


def _throughput_run(recipients: int) -> dict[str, Any]:
    with _logs("throughput") as logs, harness.proxied_stack(logs=logs) as env:
        stack, proxy, config, target = env.stack, env.proxy, env.config, env.target
        if stack.stack is None:
            raise RuntimeError("the local stack is not running")
        if stack.functions is None:
            raise RuntimeError("the local stack is not running")
        _stop_pollers(stack, ("DispatcherFunction", "SenderFunction"))
        sqs = config.client("sqs")
        suppressed = _suppress_a_tenth(target, recipients)
        body = "recipient_id,email\n" + "".join(f"u{i},user{i}@example.com\n" for i in range(recipients))
        target.clients("s3").put_object(Bucket=target.bucket, Key="bench.csv", Body=body.encode())
        harness_calls = Ledger()  # the bench's own admin requests: not the pipeline's
        with proxy.recording(harness_calls):
            notice_id = harness.admin(target, "POST", "/admin/notices", body={
                "kind": "policy_change", "manifest": f"s3://{target.bucket}/bench.csv",
                "variables": {"policy_version": "1", "effective_date": "2026-12-31", "summary": "Logs kept 30 days.",
                              "policy_url": "https://example.com/privacy"},
            })["id"]  # fmt: skip
        observed = _PipelineCalls(suppression_table=stack.stack.ref("SuppressionTable"))
        captured = observed.captured
        pipeline = Ledger(observe=observed)
        floor_calls = Ledger()
        pools = stack.functions.pools
        dispatcher, sender = pools["DispatcherFunction"], pools["SenderFunction"]
        sender_spec = stack.stack.functions["SenderFunction"]
        floor_spec = replace(
            sender_spec, logical_id="BenchSesFloor", name=f"{config.stack_name}-BenchSesFloor",
            code_dir=BENCH_FUNCTIONS / "ses_floor", handler="handler.handler", tracing=False,
            reserved_concurrency=None, environment={}, timeout=900,
        )  # fmt: skip
        floor = stack.functions.pool(floor_spec, logs)
        attrs = stack.stack.resolver.attrs
        queues = {n: (stack.stack.ref(n), attrs[(n, "Arn")]) for n in ("DispatchQueue", "SendQueue")}
        player = _MappingPlayer(sqs, queues, config.region, proxy, pipeline)
        floor_seconds, floor_sent, replayed = 0.0, 0, 0
        end_to_end = 0.0

        status = "?"
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < 120:
            started = time.perf_counter()
            work = False
            for batch in player.drain("DispatchQueue", 1):
                work = True
                player.done("DispatchQueue", batch, player.invoke("dispatcher", dispatcher, batch))
            for batch in player.drain("SendQueue", 2):
                work = True
                player.done("SendQueue", batch, player.invoke("sender", sender, batch))
                end_to_end += time.perf_counter() - started
                # The floor: this invocation's SES requests, made again bare, right now
                fresh, replayed = captured[replayed:], len(captured)
                if fresh:
                    with proxy.recording(floor_calls):
                        made = floor.invoke({"requests": fresh}).value
                    floor_seconds += made["seconds"]
                    floor_sent += made["sent"]
                started = time.perf_counter()
            if work:
                end_to_end += time.perf_counter() - started
                idle_since = time.monotonic()
                continue
            with proxy.recording(harness_calls):
                status = harness.notice(target, notice_id)["status"]
            if status in harness.FINAL:
                break
            time.sleep(0.25)  # the dispatcher's finalize message waits out its delay
        floor.close()
        with proxy.recording(harness_calls):
            final = harness.notice(target, notice_id)
        sent = final["counts"]["recipients"].get("sent", 0)
        mailed = sum(len(c["params"].get("BulkEmailEntries") or [None]) for c in captured)
        if floor_sent != sent or mailed != sent:
            raise RuntimeError(f"the floor mailed {floor_sent} of {mailed} recipients; the notice counts {sent}")
        calls = pipeline.calls
        durations = player.durations
        pipeline_seconds = sum(durations.values())
        memory = {"dispatcher": stack.stack.functions["DispatcherFunction"].memory_mb, "sender": sender_spec.memory_mb}
        units, reads = observed.units, observed.reads
        return {
            "recipients": recipients,
            "suppressed_before": suppressed,
            "status": final["status"],
            "counts": final["counts"],
            "pipeline_seconds": round(pipeline_seconds, 2),
            "function_seconds": {k: round(v, 2) for k, v in durations.items()},
            "function_invocations": dict(player.invocations),
            "function_init_ms": player.init_ms,
            "function_memory_mb": memory,
            "recipients_per_second": round(recipients / pipeline_seconds, 1),
            "end_to_end_seconds": round(end_to_end, 2),
            "aws_calls": dict(sorted(calls.items())),
            "aws_call_seconds": {k: round(pipeline.seconds[k], 2) for k in sorted(calls)},
            "aws_calls_per_recipient": round(sum(calls.values()) / recipients, 3),
            "queue_plumbing_calls": dict(player.plumbing),
            "queue_plumbing_seconds": round(player.plumbing_seconds, 2),
            "dynamodb_write_units": dict(sorted((k, v) for k, v in units.items() if v)),
            "suppression_reads_per_100": round(100 * reads["suppression"] / recipients, 3),
            "all_dynamodb_reads_per_100": round(100 * (reads["suppression"] + reads["other"]) / recipients, 3),
            "bare_ses_calls": len(captured),
            "bare_ses_recipients": floor_sent,
            "bare_ses_seconds": round(floor_seconds, 2),
            "bare_ses_calls_received": dict(floor_calls.calls),
            "ratio_to_bare_ses": round(pipeline_seconds / floor_seconds, 2) if floor_seconds else None,
            "end_to_end_ratio_to_bare_ses": round(end_to_end / floor_seconds, 2) if floor_seconds else None,
            "counted_at": "a proxy in front of moto: the requests moto received from the functions",
        }


def _suppress_a_tenth(target: Any, recipients: int) -> int:
    """Block every tenth manifest address before the notice (bounces, admin blocks and transient-bounce
    blocks in turn), as a real list has some: how many were blocked."""
    from optout.core.identity import Identity
    from optout.suppression.consent import change_consent
    from optout.suppression.model import ConsentChange

    settings, store, pepper = target.settings, target.store, target.pepper()
    suppressed = 0
    for i in range(0, recipients, 10):
        reason, source = [("bounce", "bounce"), ("admin", "admin"), ("transient_bounces", "bounce")][i % 3]
        key = Identity.of(pepper, "email", f"user{i}@example.com").key
        change_consent(store, key, "email", [ConsentChange("block", "channel", reason)],
                       settings.optional_topics, source)  # type: ignore[arg-type]  # fmt: skip
        suppressed += 1
    return suppressed


@dataclass
class _PipelineCalls:
    """What the pipeline's AWS calls tell, as moto received them: its SES sends (to make again bare
    for the floor), DynamoDB write units by operation, and reads of the suppression table and others."""

    suppression_table: str
    captured: list[dict[str, Any]] = field(default_factory=list)
    units: Counter[str] = field(default_factory=Counter)
    reads: Counter[str] = field(default_factory=Counter)

    def __call__(self, call: Call) -> None:
        if call.name in ("sesv2:SendEmail", "sesv2:SendBulkEmail"):
            self.captured.append({"operation": call.operation, "params": call.json()})
        elif call.service == "dynamodb" and call.operation in WRITES:
            self.units[call.name] += write_units(call.operation, call.json())
        elif call.service == "dynamodb" and call.operation in ("BatchGetItem", "GetItem"):
            params = call.json()
            tables = set(params.get("RequestItems", {})) | {params.get("TableName")}
            self.reads["suppression" if self.suppression_table in tables else "other"] += 1


class _MappingPlayer:
    """The bench's stand-in for the dispatcher's and the sender's SQS event source mappings: receive,
    invoke, delete what succeeded. It keeps the functions' time apart from the queue plumbing's."""

    def __init__(self, sqs: Any, queues: dict[str, tuple[str, str]], region: str, proxy: Any, pipeline: Ledger) -> None:
        self.sqs, self.queues, self.region = sqs, queues, region
        self.proxy, self.pipeline = proxy, pipeline  # the functions' calls are recorded in ``pipeline``
        self.plumbing: Counter[str] = Counter()
        self.plumbing_seconds = 0.0
        self.durations = {"dispatcher": 0.0, "sender": 0.0}
        self.init_ms: dict[str, float] = {}
        self.invocations: Counter[str] = Counter()

    def drain(self, name: str, batch_size: int) -> list[list[dict[str, Any]]]:
        """One receive, as Lambda's event source mapping does it, cut into the mapping's batches."""
        from optout_local.pollers import sqs_record

        url, arn = self.queues[name]
        t = time.perf_counter()
        got = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]).get("Messages", [])
        self.plumbing_seconds += time.perf_counter() - t
        self.plumbing["sqs:ReceiveMessage"] += 1
        records = [sqs_record(dict(m), arn, self.region) for m in got]
        return [records[i : i + batch_size] for i in range(0, len(records), batch_size)]

    def done(self, name: str, batch: list[dict[str, Any]], result: Result) -> None:
        failed = {f["itemIdentifier"] for f in (result.value or {}).get("batchItemFailures", [])}
        entries = [{"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(batch)
                   if r["messageId"] not in failed]  # fmt: skip
        if entries:
            t = time.perf_counter()
            self.sqs.delete_message_batch(QueueUrl=self.queues[name][0], Entries=entries)
            self.plumbing_seconds += time.perf_counter() - t
            self.plumbing["sqs:DeleteMessageBatch"] += 1

    def invoke(self, name: str, pool: FunctionPool, batch: list[dict[str, Any]]) -> Result:
        with self.proxy.recording(self.pipeline):
            result = pool.invoke({"Records": batch})
        self.durations[name] += result.duration_ms / 1000
        self.invocations[name] += 1
        if result.cold and result.init_ms is not None:
            self.init_ms.setdefault(name, round(result.init_ms, 1))
        return result


# --- 2. opt-out latency ---------------------------------------------------------------------


def _latency_plan(config: LocalConfig, target: Any, clients: int, per_client: int) -> dict[str, Any]:
    from optout.core.identity import Identity
    from optout.sms.twilio import signature
    from optout.unsubscribe.token import issue

    ring, pepper, auth = target.key_ring(), target.pepper(), target.twilio_auth_token()
    plan = []
    form_type = {"Content-Type": "application/x-www-form-urlencoded"}
    for n in range(clients):
        requests = []
        for i in range(per_client):
            if i % 2 == 0:
                key = Identity.of(pepper, "email", f"load{n}-{i}@example.com").key
                url = f"{config.api_url}/unsubscribe?token={issue(ring, 'email', key, 'product')}"
                requests.append({"kind": "one_click", "method": "POST", "url": url,
                                 "body": "List-Unsubscribe=One-Click",
                                 "headers": {**form_type, TAG: f"{n}-{i}"}})  # fmt: skip
            else:
                form = {"From": f"+1415555{n:02d}{i:02d}", "To": "+14155550100", "Body": "STOP",
                        "MessageSid": f"SM{n:04d}{i:04d}" + "0" * 24}  # fmt: skip
                url = f"{config.api_url}/sms/twilio"
                headers = {**form_type, "X-Twilio-Signature": signature(auth, url, form.items()), TAG: f"{n}-{i}"}
                requests.append({"kind": "twilio", "method": "POST", "url": url, "body": urlencode(form),
                                 "headers": headers})  # fmt: skip
        plan.append(requests)
    return {"clients": plan}


TAG = "X-Bench-Request"  # which client request an invocation serves: "<client>-<seq>"


def _timed_pool(pool: FunctionPool, log: list[tuple[float, Result]], tags: dict[str, tuple[float, Result]]) -> None:
    """Record each invocation's wall time in the pool (waiting for an environment included) and its Result."""
    original = pool.invoke

    def invoke(event: Any) -> Result:
        t = time.perf_counter()
        result = original(event)
        wall = (time.perf_counter() - t) * 1000
        log.append((wall, result))
        tag = (event.get("headers") or {}).get(TAG.lower())
        if tag:
            tags[tag] = (wall, result)
        return result

    setattr(pool, "invoke", invoke)  # noqa: B010 - an instance attribute over the method, for this bench only


def _aws_ms(node: dict[str, Any]) -> float:
    """Milliseconds of the AWS call subsegments under ``node``."""
    total = 0.0
    for sub in node.get("subsegments", []) or []:
        if sub.get("namespace") == "aws":
            total += (float(sub["end_time"]) - float(sub["start_time"])) * 1000
        else:
            total += _aws_ms(sub)
    return total


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 1) if values else None


def _profile(
    stack: LocalStack,
    logs: dict[str, list[tuple[float, Result]]],
    rows: list[list[Any]],
    tags: dict[str, tuple[float, Result]],
) -> dict[str, Any]:
    """Where each steady request's time went: the client's view, the runtime's, and the function's X-Ray segments.

    Every client request carries a tag the pool reads from its event, so each figure below is over
    the same requests, and the means add up: the client's latency is the time outside the
    function pool (the gateway's HTTP and event work, the client's own), plus waiting for a free
    environment, plus the invocation: the worker pipe and bootstrap, the handler's own work, and
    its AWS calls (moto's time and the SDK's, as the function sees them).
    """
    if stack.functions is None:
        raise RuntimeError("the local stack is not running")
    by_trace: dict[str, list[dict[str, Any]]] = {}
    for segment in list(stack.functions.xray.segments):
        by_trace.setdefault(str(segment.get("trace_id")), []).append(segment)
    request_trace = {
        s.get("aws", {}).get("request_id"): trace
        for trace, segments in by_trace.items()
        for s in segments
        if s.get("origin") == "AWS::Lambda::Function"
    }
    profile: dict[str, Any] = {}
    for function, kind in (("UnsubscribeFunction", "one_click"), ("SmsWebhookFunction", "twilio")):
        parts: dict[str, list[float]] = {name: [] for name in ("client", "outside", "waiting", "pipe", "own", "aws")}
        calls: Counter[str] = Counter()
        for client, seq, row_kind, _, elapsed, *_ in rows:
            found = tags.get(f"{client}-{seq}")
            if row_kind != kind or seq < 2 or found is None or found[1].cold:
                continue
            wall, result = found
            trace = by_trace.get(request_trace.get(result.request_id, ""), [])
            handler = next((x for x in trace if str(x.get("name", "")).startswith("## ")), None)
            if handler is None:
                continue
            handler_ms = (float(handler["end_time"]) - float(handler["start_time"])) * 1000
            streamed = [x for x in trace if x.get("namespace") == "aws"]
            calls.update(f"{x.get('name')}:{x.get('aws', {}).get('operation')}" for x in streamed)
            aws = sum((float(x["end_time"]) - float(x["start_time"])) * 1000 for x in streamed) + _aws_ms(handler)
            parts["client"].append(elapsed)
            parts["outside"].append(elapsed - wall)
            parts["waiting"].append(wall - result.duration_ms)
            parts["pipe"].append(result.duration_ms - handler_ms)
            parts["own"].append(handler_ms - aws)
            parts["aws"].append(aws)
        n = len(parts["client"])
        profile[function] = {
            "requests": n,
            "client_ms": _percentiles(parts["client"]),
            "waiting_for_an_environment_ms": _percentiles(parts["waiting"]),
            "aws_calls_ms": _percentiles(parts["aws"]),
            "aws_calls_per_request": {k: round(v / max(1, n), 2) for k, v in sorted(calls.items())},
            "mean_breakdown_ms": {
                "client": _mean(parts["client"]),
                "outside the pool (gateway HTTP and event, the client itself)": _mean(parts["outside"]),
                "waiting for a free environment": _mean(parts["waiting"]),
                "worker pipe and bootstrap": _mean(parts["pipe"]),
                "handler's own work": _mean(parts["own"]),
                "AWS calls (moto and the SDK, as the function sees them)": _mean(parts["aws"]),
            },
            "cold_starts": sum(1 for _, r in logs[function] if r.cold),
            "cold_invocation_wall_ms": _percentiles([w for w, r in logs[function] if r.cold]),
        }
    return profile


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds() -> dict[str, float]:
    """CPU seconds so far of this process and of its children, by what they are (from /proc)."""
    found: dict[str, float] = {}

    def read(pid: str) -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK

    found["stack process (gateway, runtime, X-Ray daemon)"] = read("self")
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) != me:
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
            prefix = b"AWS_LAMBDA_FUNCTION_NAME="
            name = next((v.removeprefix(prefix).decode() for v in environ if v.startswith(prefix)), "")
            if name:
                label = f"environments of {name.rsplit('-', 1)[-1]}"
            elif b"optout_local.moto_process" in (entry / "cmdline").read_bytes():
                label = "moto"
            else:
                label = "other"
            found[label] = found.get(label, 0.0) + read(entry.name)
    return dict(found)


def optout_latency(clients: int, per_client: int) -> dict[str, Any]:
    """``clients`` concurrent clients through the gateway, from a stack whose environments are all cold."""
    import resource

    from optout_local.target import local_target

    config = LocalConfig(api_port=free_port(), aws_port=free_port(), state_dir=None)
    with _logs("latency") as logs:
        stack = LocalStack(config, logs=logs)
        stack.start()
        try:
            if stack.functions is None:
                raise RuntimeError("the local stack is not running")
            target = local_target(config)
            plan = _latency_plan(config, target, clients, per_client)
            logged: dict[str, list[tuple[float, Result]]] = {"UnsubscribeFunction": [], "SmsWebhookFunction": []}
            tags: dict[str, tuple[float, Result]] = {}
            for function, log in logged.items():
                _timed_pool(stack.functions.pools[function], log, tags)
            cpu_before = _cpu_seconds()
            children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            done = subprocess.run(  # nosec B603 - our interpreter, our module
                [sys.executable, "-m", "optout_local.loadgen"], input=json.dumps(plan), capture_output=True,
                text=True, check=True, timeout=600,
            )  # fmt: skip
            wall = time.perf_counter() - started
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = {k: v - cpu_before.get(k, 0.0) for k, v in _cpu_seconds().items()}
            cpu["load generator (clients)"] = (
                children.ru_utime + children.ru_stime - children_before.ru_utime - children_before.ru_stime
            )
            rows = json.loads(done.stdout)
            errors = Counter(f"{r[2]}:{r[5]}{f' {r[6]}' if r[6] else ''}" for r in rows if r[5] != 200)
            result: dict[str, Any] = {
                "clients": clients,
                "requests": len(rows),
                "seconds": round(wall, 1),
                "requests_per_second": round(len(rows) / wall, 1),
                "environments": {
                    f: stack.functions.pools[f].concurrency for f in ("UnsubscribeFunction", "SmsWebhookFunction")
                },
                "errors": dict(errors),
            }
            steady: dict[str, list[float]] = {}
            for kind in ("one_click", "twilio"):
                mine = [r for r in rows if r[2] == kind]
                steady[kind] = [r[4] for r in mine if r[1] >= 2]
                result[kind] = _percentiles(steady[kind])  # steady state: each client's later requests
                result[f"{kind}_first_requests"] = _percentiles([r[4] for r in mine if r[1] < 2])  # cold environments
            result["cpu_seconds"] = {k: round(v, 1) for k, v in sorted(cpu.items()) if round(v, 1)}
            result["cpu_cores_available"] = os.cpu_count()
            result["profile"] = _profile(stack, logged, rows, tags)
            return result
        finally:
            stack.stop()


# --- 3. cold start --------------------------------------------------------------------------


class _SampleEvents:
    """Each function's sample event from events/, made real for this stack: new ids, real tokens and signatures."""

    def __init__(self, stack: LocalStack, config: LocalConfig, target: Any, count: int) -> None:
        self.stack, self.config, self.target = stack, config, target
        self.ring, self.pepper, self.twilio = target.key_ring(), target.pepper(), target.twilio_auth_token()
        rows = "recipient_id,email\n" + "".join(f"c{i},cold{i}@example.com\n" for i in range(3))
        target.clients("s3").put_object(Bucket=target.bucket, Key="cold.csv", Body=rows.encode())
        # One for the sender and the admin API, and one for each dispatch (a notice is dispatched once)
        self.notices = [self._notice() for _ in range(count + 2)]

    def _notice(self) -> str:
        notice_id: str = harness.admin(self.target, "POST", "/admin/notices", body={
            "kind": "product", "manifest": f"s3://{self.target.bucket}/cold.csv",
            "variables": {"subject": "Cold start", "body": "A notice for the cold-start bench."},
        })["id"]  # fmt: skip
        return notice_id

    def event(self, code: str, n: int) -> dict[str, Any]:
        event: dict[str, Any] = json.loads((EVENTS / SAMPLE_EVENTS[code]).read_text())
        tag = uuid.uuid4().hex[:12]
        if code == "admin_api":
            notice_id = self.notices[0]
            event["pathParameters"]["notice_id"] = notice_id
            event["rawPath"] = event["requestContext"]["http"]["path"] = f"/admin/notices/{notice_id}"
        elif code == "dispatcher":
            event["Records"][0]["body"] = json.dumps({"notice_id": self.notices[1 + n % (len(self.notices) - 1)]})
        elif code == "sender":
            body = json.loads(event["Records"][0]["body"])
            body.update(notice_id=self.notices[0], batch=f"Lcold{tag}")
            for entry in body["entries"]:
                entry["recipient"]["recipient_id"] += f"-{tag}"
                if "email" in entry["recipient"]:
                    entry["recipient"]["email"] = f"cold-{tag}@example.com"
            event["Records"][0]["body"] = json.dumps(body)
        elif code == "unsubscribe":
            from optout.core.identity import Identity
            from optout.unsubscribe.token import issue

            key = Identity.of(self.pepper, "email", f"cold-{tag}@example.com").key
            event["queryStringParameters"]["token"] = issue(self.ring, "email", key, "product")
            event["rawQueryString"] = urlencode(event["queryStringParameters"])
        elif code == "sms_webhook":
            from optout.sms.twilio import signature

            form = dict(parse_qsl(event["body"], keep_blank_values=True))
            form.update(MessageSid=f"SM{tag}{'0' * 20}", SmsSid=f"SM{tag}{'0' * 20}", From=f"+1415555{n % 10000:04d}")
            event["body"] = urlencode(form)
            event["headers"]["content-length"] = str(len(event["body"]))
            url = f"{self.config.api_url}/sms/twilio"
            event["headers"]["x-twilio-signature"] = signature(self.twilio, url, form.items())
        elif code == "sms_inbound":
            record = event["Records"][0]
            envelope = json.loads(record["body"])
            message = json.loads(envelope["Message"])
            message.update(inboundMessageId=str(uuid.uuid4()), originationNumber=f"+1415556{n % 10000:04d}")
            envelope.update(Message=json.dumps(message), MessageId=str(uuid.uuid4()))
            record.update(body=json.dumps(envelope), messageId=str(uuid.uuid4()))
        return event


def _first_calls(stack: LocalStack, calls: list[Result]) -> dict[str, float | None]:
    """Medians over ``calls`` of the handler's own subsegment and of its AWS calls (X-Ray), in ms."""
    if stack.functions is None:
        raise RuntimeError("the local stack is not running")
    wanted = {r.request_id for r in calls}
    segments = list(stack.functions.xray.segments)
    traces = {
        s.get("trace_id")
        for s in segments
        if s.get("origin") == "AWS::Lambda::Function" and s.get("aws", {}).get("request_id") in wanted
    }
    handler: list[float] = []
    aws: dict[str, float] = {}
    for segment in segments:
        if segment.get("trace_id") not in traces:
            continue
        took = (float(segment.get("end_time", 0)) - float(segment.get("start_time", 0))) * 1000
        if str(segment.get("name", "")).startswith("## "):
            handler.append(took)
        nested = took if segment.get("namespace") == "aws" else _aws_ms(segment)
        aws[str(segment["trace_id"])] = aws.get(str(segment["trace_id"]), 0.0) + nested
    return {
        "handler": round(statistics.median(handler), 1) if handler else None,
        "aws": round(statistics.median(aws.values()), 1) if aws else None,
    }


# X-Ray names an AWS subsegment by the service's endpoint prefix; boto3 by its service name
_BOTO3_NAME = {"email": "sesv2"}


def _services_called(stack: LocalStack, call: Result) -> list[str]:
    """The boto3 services whose calls the invocation's trace holds, in the order first called."""
    if stack.functions is None:
        raise RuntimeError("the local stack is not running")
    segments = list(stack.functions.xray.segments)
    trace = next(
        (s.get("trace_id") for s in segments
         if s.get("origin") == "AWS::Lambda::Function" and s.get("aws", {}).get("request_id") == call.request_id),
        None,
    )  # fmt: skip
    found: list[tuple[float, str]] = []

    def walk(node: dict[str, Any]) -> None:
        if node.get("namespace") == "aws":
            found.append((float(node.get("start_time", 0)), str(node.get("name", ""))))
        for sub in node.get("subsegments", []) or []:
            walk(sub)

    for segment in segments:
        if trace is not None and segment.get("trace_id") == trace:
            walk(segment)
    names = [_BOTO3_NAME.get(name.lower(), name.lower()) for _, name in sorted(found)]
    return list(dict.fromkeys(names))


def _outcome(value: Any) -> str:
    """A short word on what the first call answered, so a cold start on an error path shows."""
    if isinstance(value, dict) and "statusCode" in value:
        return f"HTTP {value['statusCode']}"
    if isinstance(value, dict) and "batchItemFailures" in value:
        return f"{len(value['batchItemFailures'])} batch item failures"
    return type(value).__name__


def cold_start(repeats: int = 5, warm: int = 20) -> dict[str, Any]:
    """Per function: first invocation in a new environment beside a bare one, interleaved; then warm p50."""
    from optout_local.target import local_target

    config = LocalConfig(api_port=free_port(), aws_port=free_port(), state_dir=None)
    results: dict[str, Any] = {}
    with _logs("cold_start") as logs:
        stack = LocalStack(config, logs=logs)
        stack.start()
        try:
            if stack.stack is None:
                raise RuntimeError("the local stack is not running")
            if stack.functions is None:
                raise RuntimeError("the local stack is not running")
            _stop_pollers(stack)  # nothing but the measured environments runs
            events = _SampleEvents(stack, config, local_target(config), repeats + warm)
            for logical_id, spec in sorted(stack.stack.functions.items(), key=lambda kv: kv[1].code_dir.name):
                code = spec.code_dir.name
                bare_spec = replace(spec, code_dir=BENCH_FUNCTIONS / "bare", handler="handler.handler")
                floor_spec = replace(bare_spec, handler="handler.with_clients")
                specs = {"function": spec, "bare": bare_spec, "sdk_floor": floor_spec}
                first: dict[str, list[float]] = {which: [] for which in specs}
                inits: dict[str, list[float]] = {which: [] for which in specs}
                calls: list[Result] = []
                services: list[str] = []
                outcome = ""
                rounds = (("bare", "function", "sdk_floor"), ("function", "sdk_floor", "bare"),
                          ("sdk_floor", "bare", "function"))  # fmt: skip  # the first round learns the services
                for n in range(repeats):
                    for which in rounds[n % 3]:
                        pool = stack.functions.pool(specs[which], logs)
                        event = {"services": services} if which == "sdk_floor" else {}
                        try:
                            t = time.perf_counter()
                            result = pool.invoke(events.event(code, n) if which == "function" else event)
                            first[which].append((time.perf_counter() - t) * 1000)
                            inits[which].append(result.init_ms or 0.0)
                            if which == "function":
                                outcome = _outcome(result.value)
                                calls.append(result)
                                services = services or _services_called(stack, result)
                        finally:
                            pool.close()
                pool = stack.functions.pool(spec, logs)
                try:
                    pool.invoke(events.event(code, repeats))
                    warm_ms = [pool.invoke(events.event(code, repeats + 1 + i)).duration_ms for i in range(warm)]
                finally:
                    pool.close()
                fn, bare = statistics.median(first["function"]), statistics.median(first["bare"])
                floor = statistics.median(first["sdk_floor"])
                traced = _first_calls(stack, calls)
                results[code] = {
                    "first_invocation_ms": round(fn, 1),
                    "bare_first_invocation_ms": round(bare, 1),
                    "ratio": round(fn / bare, 2),
                    # boto3 imported and the clients of the function's first call built: what the SDK
                    # itself costs before any code of ours runs
                    "sdk_floor_first_invocation_ms": round(floor, 1),
                    "sdk_floor_ratio": round(floor / bare, 2),
                    "ratio_to_sdk_floor": round(fn / floor, 2),
                    "services": services,
                    "init_ms": round(statistics.median(inits["function"]), 1),
                    "bare_init_ms": round(statistics.median(inits["bare"]), 1),
                    "first_call_ms": round(statistics.median(r.duration_ms for r in calls), 1),
                    "first_call_handler_ms": traced["handler"],
                    "first_call_aws_ms": traced["aws"],
                    "warm_p50_ms": round(statistics.median(warm_ms), 1) if warm_ms else None,
                    "first_call": outcome,
                    "event": f"events/{SAMPLE_EVENTS[code]}",
                    "each_ms": [round(v, 1) for v in first["function"]],
                    "bare_each_ms": [round(v, 1) for v in first["bare"]],
                    "logical_id": logical_id,
                }
        finally:
            stack.stop()
    return results


# --- 4. start time --------------------------------------------------------------------------


def _ready_seconds(cwd: Path, env: dict[str, str], timeout: float = 900) -> float:
    """Seconds from starting ``optout local`` to its ``ready:`` line; then it is stopped with SIGTERM."""
    state = Path(tempfile.mkdtemp(prefix="optout-bench-state-"))
    command = [sys.executable, "-c", "from optout_local.cli import main; main()", "local",
               "--api-port", str(free_port()), "--aws-port", str(free_port())]  # fmt: skip
    if (
        "--state-dir"
        in subprocess.run(  # noqa: S603  # nosec B603
            [*command[:3], "local", "--help"], capture_output=True, text=True, cwd=cwd, env=env, check=False
        ).stdout
    ):
        command += ["--state-dir", str(state), "--fresh"]
    started = time.perf_counter()
    process = subprocess.Popen(  # noqa: S603 - our interpreter, our module  # nosec B603
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        if process.stdout is None:
            raise RuntimeError("the local stack is not running")
        deadline = time.monotonic() + timeout
        for line in process.stdout:
            if line.startswith("ready:"):
                return time.perf_counter() - started
            if time.monotonic() > deadline:
                break
        raise RuntimeError(f"optout local printed no ready: line (exit {process.poll()})")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(state, ignore_errors=True)


def start_time() -> dict[str, Any]:
    """``optout local`` to ``ready:``: warm (build/lambda current) and cold (a copy of the project without it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTOUT_")}
    warm = [_ready_seconds(ROOT, env) for _ in range(2)]
    with tempfile.TemporaryDirectory(prefix="optout-cold-") as tmp:
        copy_root = Path(tmp) / "optout"
        ignore = shutil.ignore_patterns(
            ".venv*", "build", ".git", ".optout-state", "__pycache__", ".aws-sam", "test-artifacts", "*.egg-info"
        )
        for name in ("tools", "layers", "functions", "requirements", "events"):
            shutil.copytree(ROOT / name, copy_root / name, ignore=ignore)
        for name in ("template.yaml", "pyproject.toml", "samconfig.toml"):
            if (ROOT / name).exists():
                shutil.copy2(ROOT / name, copy_root / name)
        cold_env = {**env, "PYTHONPATH": f"{copy_root / 'tools'}{os.pathsep}{copy_root / 'layers' / 'optout'}"}
        check = subprocess.run(  # nosec B603
            [sys.executable, "-c", "from optout_local.template import ROOT; print(ROOT)"],
            capture_output=True, text=True, cwd=copy_root, env=cold_env, check=True,
        ).stdout.strip()  # fmt: skip
        if Path(check) != copy_root:
            raise RuntimeError(f"the copy did not shadow the project ({check})")
        cold = _ready_seconds(copy_root, cold_env)
        built = sorted(p.name for p in (copy_root / "build" / "lambda").iterdir() if not p.name.startswith("."))
    return {"warm_seconds": round(min(warm), 2), "warm_each": [round(w, 2) for w in warm],
            "cold_seconds": round(cold, 2), "cold_built": built}  # fmt: skip


# --- 5. cost on paper -----------------------------------------------------------------------


def erasure_time(deliveries: int, manifest_rows: int = 1000, runs: int = 3) -> dict[str, Any]:
    """The time to erase a subject with ``deliveries`` delivery records (one a notice, as a subject has
    them), and one row among ``manifest_rows`` in a manifest still in the bucket.

    Through the gateway to the admin API in an environment of its own, warmed first (its cold start
    is measured apart); the records are written beforehand, straight into the table. Each run erases
    a subject of its own; the median run is reported, with the AWS calls moto received for it.
    """
    from optout.core.identity import Identity

    with _logs("erasure") as logs, harness.proxied_stack(logs=logs) as env:
        stack, proxy, config, target = env.stack, env.proxy, env.config, env.target
        if stack.stack is None:
            raise RuntimeError("the local stack is not running")
        ddb = config.client("dynamodb")
        pepper, table = target.pepper(), target.notices_table
        harness.admin(
            target, "POST", "/admin/suppressions/lookup", body={"channel": "email", "address": "w@example.com"}
        )
        runs_out: list[dict[str, Any]] = []
        for run_index in range(runs):
            address = f"subject{run_index}@example.com"
            key = Identity.of(pepper, "email", address).key
            at = datetime.now(UTC).isoformat()
            items = [
                {"PutRequest": {"Item": {
                    "pk": {"S": f"notice#bench{run_index}-{i}"}, "sk": {"S": f"delivery#r{i}#email"},
                    "address_key": {"S": key}, "decision": {"S": "sent"}, "at": {"S": at},
                    "provider_message_id": {"S": f"m-{i}"},
                }}}
                for i in range(deliveries)
            ]  # fmt: skip
            for start in range(0, len(items), 25):
                ddb.batch_write_item(RequestItems={table: items[start : start + 25]})
            rows = [f"r{i},other{i}@example.com" for i in range(manifest_rows - 1)]
            rows.insert(len(rows) // 2, f"s{run_index},{address}")
            body = ("recipient_id,email\n" + "\n".join(rows) + "\n").encode()
            target.clients("s3").put_object(Bucket=target.bucket, Key=f"erasure-{run_index}.csv", Body=body)
            calls = Ledger()
            removed: Counter[str] = Counter()
            requests = 0
            started = time.perf_counter()
            with proxy.recording(calls):
                while True:  # as `optout subject erase` does: again while a call ran out of time
                    result = harness.admin(
                        target,
                        "POST",
                        "/admin/subjects/erase",
                        attempts=1,
                        body={"channel": "email", "address": address},
                    )
                    requests += 1
                    removed.update(result["erasure"]["removed"])
                    if result["complete"]:
                        break
            seconds = time.perf_counter() - started
            runs_out.append({"seconds": round(seconds, 3), "removed": dict(removed), "requests": requests,
                             "aws_calls": dict(sorted(calls.calls.items()))})  # fmt: skip
        median = sorted(runs_out, key=lambda r: r["seconds"])[len(runs_out) // 2]
        return {
            "deliveries": deliveries,
            "manifest_rows": manifest_rows,
            "seconds": median["seconds"],
            "ms_per_delivery": round(1000 * median["seconds"] / max(1, deliveries), 3),
            "seconds_of_each_run": [r["seconds"] for r in runs_out],
            "removed": median["removed"],
            "requests": median["requests"],
            "aws_calls": median["aws_calls"],
        }


def cost_per_million(throughput: dict[str, Any]) -> dict[str, Any]:
    per = 1_000_000 / throughput["recipients"]
    calls = throughput["aws_calls"]
    batches = calls.get("sqs:SendMessageBatch", 0) * 10 + calls.get("sqs:SendMessage", 0)
    sqs_requests = (
        calls.get("sqs:SendMessageBatch", 0) + calls.get("sqs:SendMessage", 0)
    ) + 2 * batches  # + receive, delete
    writes = sum(throughput["dynamodb_write_units"].values())
    reads = calls.get("dynamodb:BatchGetItem", 0) * 100 + calls.get("dynamodb:GetItem", 0)
    memory = throughput["function_memory_mb"]
    gb_seconds = sum(seconds * memory[name] / 1024 for name, seconds in throughput["function_seconds"].items())
    invocations = batches + calls.get("sqs:SendMessage", 0) + 1
    parts = {
        "lambda": gb_seconds * PRICES["lambda_gb_second_arm64"] + invocations * PRICES["lambda_request"],
        "sqs": sqs_requests * PRICES["sqs_request"],
        "dynamodb": writes * PRICES["dynamodb_write_request_unit"] + reads * PRICES["dynamodb_read_request_unit"],
        "s3": calls.get("s3:GetObject", 0) * PRICES["s3_get"],
    }
    pipeline = {k: round(v * per, 2) for k, v in parts.items()}
    return {
        "pipeline_usd_per_million": pipeline,
        "pipeline_total_usd_per_million": round(sum(pipeline.values()), 2),
        "ses_usd_per_million": round(PRICES["ses_email"] * 1_000_000, 2),
        "prices": PRICES,
        "note": "Lambda time is this machine's local invocation duration as a proxy; DynamoDB write units are "
        "counted from each request moto received (1 KB each, rounded up; transactional writes cost 2; an update "
        "counted as 1).",
    }


# --- 6. the quota run -----------------------------------------------------------------------

QUOTA_LATENCIES_MS = (20, 50, 100)  # what one SES call takes
QUOTA_RATES = (100, 500, 1000)  # the account's MaxSendRate, recipients a second


class QuotaSesProcess:
    """The quota run's SES (:class:`optout_local.ses_emulation.QuotaSes`), in a process of its own."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(  # noqa: S603 - our interpreter, our module  # nosec B603
            [sys.executable, "-m", "optout_local.ses_emulation", "--quota-port", str(self.port)],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                self._control()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError("the quota run's SES did not start") from None
                time.sleep(0.05)

    def _control(self, config: dict[str, Any] | None = None) -> dict[str, Any]:
        from urllib.request import Request, urlopen

        from optout_local.ses_emulation import QUOTA_CONTROL

        data = json.dumps(config).encode() if config is not None else None
        request = Request(self.url + QUOTA_CONTROL, data=data, method="POST" if data else "GET")  # noqa: S310
        with urlopen(request, timeout=30) as answer:  # noqa: S310 - our own local endpoint  # nosec B310
            result: dict[str, Any] = json.loads(answer.read())
            return result

    def configure(self, max_send_rate: float, latency: float, enforced_rate: float | None = None) -> None:
        """A new quota and latency (throttling above ``enforced_rate`` if given), its bucket full, its ledger empty."""
        self._control({"max_send_rate": max_send_rate, "latency": latency, "enforced_rate": enforced_rate})

    def ledger(self) -> list[tuple[float, str, int, bool]]:
        """Every call since ``configure``: (arrival, operation, recipients, taken)."""
        return [(float(at), str(op), int(n), bool(ok)) for at, op, n, ok in self._control()["ledger"]]

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def sustained(calls: list[tuple[float, int]], instances: int = 1, settle: float = 1.0) -> float | None:
    """Recipients a second between the calls that pass 10% (and ``settle`` seconds) and 90% of those sent.

    The start and the last tenth are left out: the start (environments reading their secrets and
    the quota, buckets starting full) and the end (instances running out of batches one by one).
    The window spans a whole number of rounds of ``instances`` calls: instances that send in step
    would otherwise count a round's calls without its time.
    """
    if len(calls) < 2 * instances + 1:
        return None
    calls = sorted(calls)
    total = sum(n for _, n in calls)
    cumulative, first, last = 0, None, None
    for i, (_, n) in enumerate(calls):
        cumulative += n
        if first is None and cumulative >= 0.1 * total and calls[i][0] - calls[0][0] >= settle:
            first = i
        if cumulative >= 0.9 * total:
            last = i
            break
    if first is None or last is None or last - first < instances:
        return None
    last = first + (last - first) // instances * instances
    sent = sum(n for _, n in calls[first + 1 : last + 1])
    return sent / (calls[last][0] - calls[first][0])


@contextlib.contextmanager
def _functions_in_this_process(stack: Any, config: LocalConfig, ses_url: str) -> Iterator[None]:
    """The template's function environment in this process: AWS is the local moto, SES the quota run's."""
    from optout_local.runtime import apply_environment, reset_layer_caches
    from optout_local.stack import LOCAL_KEY

    saved = dict(os.environ)
    try:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            os.environ.pop(name, None)
        apply_environment(stack, {
            "AWS_REGION": config.region, "AWS_DEFAULT_REGION": config.region, "AWS_ENDPOINT_URL": config.aws_url,
            "AWS_ENDPOINT_URL_SESV2": ses_url, "AWS_ACCESS_KEY_ID": LOCAL_KEY, "AWS_SECRET_ACCESS_KEY": LOCAL_KEY,
        })  # fmt: skip
        reset_layer_caches()
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        reset_layer_caches()


def _dispatch_notice(config: LocalConfig, stack: Any, recipients: int, tag: str) -> str:
    """A policy notice to ``recipients`` addresses, dispatched in this process into SendQueue; its id."""
    from optout import wiring
    from optout.notices.model import NOTICE_REQUEST

    bucket = stack.ref("ManifestBucket")
    body = "recipient_id,email\n" + "".join(f"{tag}-{i},{tag}-{i}@example.com\n" for i in range(recipients))
    config.client("s3").put_object(Bucket=bucket, Key=f"{tag}.csv", Body=body.encode())
    request = NOTICE_REQUEST.validate_python({
        "kind": "policy_change", "manifest": f"s3://{bucket}/{tag}.csv",
        "variables": {"policy_version": "1", "effective_date": "2026-12-31", "summary": "Logs kept 30 days.",
                      "policy_url": "https://example.com/privacy"},
    })  # fmt: skip
    notice, _ = wiring.notice_admin().create(request, None, "bench")
    sqs = config.client("sqs")
    dispatch_url, send_url = stack.ref("DispatchQueue"), stack.ref("SendQueue")
    expected = -(-recipients // 50)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        got = sqs.receive_message(QueueUrl=dispatch_url, MaxNumberOfMessages=1, WaitTimeSeconds=1).get("Messages", [])
        for message in got:
            wiring.dispatcher().handle(json.loads(message["Body"]), lambda: 900_000)
            sqs.delete_message(QueueUrl=dispatch_url, ReceiptHandle=message["ReceiptHandle"])
        queued = sqs.get_queue_attributes(QueueUrl=send_url, AttributeNames=["ApproximateNumberOfMessages"])
        if int(queued["Attributes"]["ApproximateNumberOfMessages"]) >= expected:
            return str(notice.id)
    raise RuntimeError(f"the dispatcher did not queue {expected} batches within 300 s")


def _send_at_concurrency(config: LocalConfig, stack: Any, instances: int, batches: int) -> dict[str, Any]:
    """``instances`` sender instances, each its own ``Sender`` (settings, clients, pace), send every batch.

    The bench plays the event source mapping: it reads SendQueue's batches first (Lambda's pollers
    read the queue beside the functions, not in their time), then each instance takes BatchSize of
    them an invocation, as the template declares, with one prefetch for them, each processed with
    the invocation's time left.
    """
    from optout import wiring
    from optout.notices.send import batch_from_message

    spec = stack.functions["SenderFunction"]
    source = next(s for s in stack.queue_sources if s.function == "SenderFunction")
    send_url = stack.ref("SendQueue")
    sqs = config.client("sqs")
    bodies: list[str] = []
    while len(bodies) < batches:
        got = sqs.receive_message(QueueUrl=send_url, MaxNumberOfMessages=10, VisibilityTimeout=900).get("Messages", [])
        if not got:
            raise RuntimeError(f"SendQueue holds {len(bodies)} batches, not {batches}")
        bodies += [m["Body"] for m in got]
        sqs.delete_message_batch(
            QueueUrl=send_url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)]
        )
    senders = []
    for _ in range(instances):
        wiring.reset()  # settings, clients, secrets and pace of its own, as an environment has
        sender = wiring.sender()
        sender.email()  # its SES client now, before the next reset: its pace hears its own answers only
        senders.append(sender)
    lock = threading.Lock()
    tally: Counter[str] = Counter()
    errors: list[str] = []

    def instance(sender: Any) -> None:
        while True:
            with lock:
                if not bodies or errors:
                    return
                taken, bodies[: source.batch_size] = bodies[: source.batch_size], []
            invocation, deadline = str(uuid.uuid4()), time.monotonic() + spec.timeout
            try:
                parsed = [batch_from_message(body) for body in taken]
                prefetched = sender.prefetch(parsed)
                for batch in parsed:
                    result = sender.process(batch, owner=invocation, prefetched=prefetched,
                                            remaining_ms=int((deadline - time.monotonic()) * 1000))  # fmt: skip
                    with lock:
                        tally.update({k: v for k, v in result.__dict__.items() if isinstance(v, int)})
                        tally["batches"] += 1
            except Exception as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                return

    threads = [threading.Thread(target=instance, args=(s,), daemon=True) for s in senders]
    cpu = _sender_cpu_seconds()
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    used = {k: round(v - cpu[k], 2) for k, v in _sender_cpu_seconds().items()}
    paces = [s.buckets["email"] for s in senders]
    return {
        "seconds": round(elapsed, 2),
        "results": {k: v for k, v in tally.items() if v},
        "errors": errors,
        "pace_per_instance": round(paces[0].ceiling, 2),
        "most_per_call": paces[0].most_per_call,
        "throttles_heard": sum(p.throttles for p in paces),
        "cpu_seconds": used,
        "cpu_busy": {k: round(v / elapsed, 2) for k, v in used.items()},
    }


def _sender_cpu_seconds() -> dict[str, float]:
    """CPU seconds so far of this process (the sender instances) and of the moto process."""
    found = _cpu_seconds()
    return {"senders": found["stack process (gateway, runtime, X-Ray daemon)"], "moto": found.get("moto", 0.0)}


def _one_by_one(notice_id: str, instances: int, share: float, seconds: float) -> dict[str, Any]:
    """The sender as it was: one SendEmail a recipient, one after another in each instance, each paced
    at its share of the quota.

    Only its SES calls, as the floor above replays the pipeline's: each raw message is rendered
    beforehand, so this is the most the old sender could do, not what it did.
    """
    from optout import wiring
    from optout.channels.email import SesEmail
    from optout.channels.pacing import TokenBucket, send_at_most_once
    from optout.core import clients
    from optout.notices.model import Recipient
    from optout.notices.render import render_email

    settings = wiring.sender_settings()
    notice = wiring.sender().notice(notice_id)
    url = f"{settings.links_base_url}/unsubscribe?token=bench"
    messages = [
        (f"old-{i}@example.com", render_email(notice, Recipient(recipient_id=f"old-{i}", email=f"old-{i}@example.com"),
                                              settings.brand_name, settings.sender_address, url, None,
                                              datetime.now(UTC)))
        for i in range(50)
    ]  # fmt: skip
    email = SesEmail(clients.provider("sesv2"), settings.sender_address, None)
    stop = time.monotonic() + seconds
    sent: Counter[str] = Counter()

    def instance(n: int) -> None:
        bucket = TokenBucket(share, burst_seconds=0.5)
        i = n
        while time.monotonic() < stop:
            bucket.take()
            to, raw = messages[i % len(messages)]
            send_at_most_once(lambda: email.send(to, raw))  # noqa: B023 - called at once, in this iteration
            sent[str(n)] += 1
            i += instances

    threads = [threading.Thread(target=instance, args=(n,), daemon=True) for n in range(instances)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"sent": sum(sent.values())}


def _summary(
    ledger: list[tuple[float, str, int, bool]], operation: str, quota: float, instances: int
) -> dict[str, Any]:
    mine = [row for row in ledger if row[1] == operation]
    taken = [(at, n) for at, _, n, ok in mine if ok]
    rate = sustained(taken, instances)
    return {
        "sustained_per_second": round(rate, 1) if rate is not None else None,
        "of_quota": round(rate / quota, 3) if rate is not None else None,
        "calls": len(mine),
        "recipients_taken": sum(n for _, n in taken),
        "throttled_calls": sum(1 for *_, ok in mine if not ok),
        "recipients_per_call": round(sum(n for _, n in taken) / len(taken), 1) if taken else None,
    }


def quota_run(
    latencies_ms: tuple[int, ...] = QUOTA_LATENCIES_MS,
    quotas: tuple[int, ...] = QUOTA_RATES,
    seconds: float = 8.0,
    old_seconds: float = 4.0,
    echo: Callable[[str], None] | None = None,
    runs: int = 1,
) -> dict[str, Any]:
    """The sender at the SES quota (DESIGN §7), beside the sender of one SendEmail a recipient, in one run.

    For each latency and quota: an SES that answers each call after the latency and refuses what
    goes over the quota (``QuotaSes``); a policy notice to ``seconds`` of the quota in recipients,
    dispatched into SendQueue first, so that the sender is measured alone; then the sender at its
    default concurrency (the template's ReservedConcurrentExecutions, and ``auto`` pacing as the
    template's default) drains it; then the old way for ``old_seconds``. Rates are counted by the
    SES, from the calls it took. Each point is run ``runs`` times and its median run reported (by
    the sender's share of the quota), beside every run's figures: a busy moment of a shared
    machine slows one run, not the point.

    The sender runs in this process, its instances as threads, against moto in a process of its
    own (DynamoDB, SQS, S3, Secrets Manager): on the local Lambda runtime each invocation also
    pays its worker pipe, tracing and the local IAM's checks, and six environments beside moto and
    the SES on this 2-core machine would measure the machine at 1,000 recipients/s, not the pace.
    The sender's code, settings (from the template) and calls are the ones the function runs.
    """
    from optout_local.stack import LocalStack

    config = LocalConfig(api_port=free_port(), aws_port=free_port(), state_dir=None)
    points: list[dict[str, Any]] = []
    ses = QuotaSesProcess()
    with _logs("quota") as logs:
        stack = LocalStack(config, logs=logs)
        try:
            provisioned = stack.start_aws()
            spec = provisioned.functions["SenderFunction"]
            instances = int(spec.reserved_concurrency or 1)
            source = next(s for s in provisioned.queue_sources if s.function == "SenderFunction")
            with _functions_in_this_process(provisioned, config, ses.url):
                for n, (latency_ms, quota) in enumerate(
                    (latency, quota) for latency in latencies_ms for quota in quotas
                ):
                    # Whole rounds of every instance's invocations (BatchSize batches of 50 each), two at
                    # least: a round that only some instances share would measure the tail, not the pace
                    per_round = instances * source.batch_size * 50
                    recipients = max(2, -(-int(quota * seconds) // per_round)) * per_round
                    tried = []
                    for run in range(runs):
                        ses.configure(quota, latency_ms / 1000)
                        notice_id = _dispatch_notice(config, provisioned, recipients, f"q{n}r{run}")
                        ses.configure(quota, latency_ms / 1000)  # as the sending starts: its bucket full
                        bulk = _send_at_concurrency(config, provisioned, instances, -(-recipients // 50))
                        bulk.update(_summary(ses.ledger(), "SendBulkEmail", quota, instances))
                        ses.configure(quota, latency_ms / 1000)
                        old = _one_by_one(notice_id, instances, quota / instances, old_seconds)
                        old.update(_summary(ses.ledger(), "SendEmail", quota, instances))
                        tried.append((bulk, old))
                    tried.sort(key=lambda t: t[0]["of_quota"] or 0)
                    bulk, old = tried[len(tried) // 2]
                    point = {"latency_ms": latency_ms, "quota": quota, "instances": instances,
                             "recipients": recipients, "bulk": bulk, "one_by_one": old,
                             "of_quota_each_run": [t[0]["of_quota"] for t in tried],
                             "throttled_calls_each_run": [t[0]["throttled_calls"] for t in tried]}  # fmt: skip
                    points.append(point)
                    if echo is not None:
                        echo(_quota_line(point))
        finally:
            stack.stop()
            ses.close()
    return {
        "points": points,
        "instances": points[0]["instances"] if points else None,
        "bar": "bulk sustained >= 0.95 of the quota, no throttled call",
        "runs": runs,
        "met": all(
            (p["bulk"]["of_quota"] or 0) >= 0.95 and not any(p["throttled_calls_each_run"]) and not p["bulk"]["errors"]
            for p in points
        ),
        "measured_at": "the quota run's SES: the calls it took, by their arrival",
    }


def shared_quota_run(latency_ms: int = 20, quota: int = 500, share: float = 0.5, rounds: int = 4) -> dict[str, Any]:
    """AIMD at work: GetAccount answers ``quota``, but SES throttles above ``share`` of it (another sender
    uses the rest), so the sender, paced at the quota, is throttled; each throttle halves the pace of
    the instance it answered, which climbs back by a tenth of its share a second.

    Reported: the throttled calls (from the SES's ledger), what the instances heard, and what SES
    took a second beside what it allowed. Batches whose calls were throttled to the end are
    deferred (queued again with a delay), and counted as such.
    """
    from optout_local.stack import LocalStack

    config = LocalConfig(api_port=free_port(), aws_port=free_port(), state_dir=None)
    ses = QuotaSesProcess()
    with _logs("quota") as logs:
        stack = LocalStack(config, logs=logs)
        try:
            provisioned = stack.start_aws()
            instances = int(provisioned.functions["SenderFunction"].reserved_concurrency or 1)
            source = next(s for s in provisioned.queue_sources if s.function == "SenderFunction")
            recipients = rounds * instances * source.batch_size * 50
            with _functions_in_this_process(provisioned, config, ses.url):
                ses.configure(quota, latency_ms / 1000, quota * share)
                _dispatch_notice(config, provisioned, recipients, "shared")
                ses.configure(quota, latency_ms / 1000, quota * share)
                bulk = _send_at_concurrency(config, provisioned, instances, recipients // 50)
                bulk.update(_summary(ses.ledger(), "SendBulkEmail", quota * share, instances))
        finally:
            stack.stop()
            ses.close()
    return {"latency_ms": latency_ms, "quota": quota, "enforced": quota * share, "instances": instances,
            "recipients": recipients, "bulk": bulk}  # fmt: skip


def _quota_line(p: dict[str, Any]) -> str:
    bulk, old = p["bulk"], p["one_by_one"]
    runs = f" (runs {p['of_quota_each_run']})" if len(p.get("of_quota_each_run", [])) > 1 else ""
    return (
        f"  {p['latency_ms']:>4} ms {p['quota']:>5}/s  sender {bulk['sustained_per_second']}/s{runs} "
        f"= {bulk['of_quota']} of the quota, {bulk['throttled_calls']} throttled, {bulk['calls']} calls of "
        f"{bulk['recipients_per_call']}  |  one SendEmail a recipient {old['sustained_per_second']}/s "
        f"= {old['of_quota']}, {old['throttled_calls']} throttled"
    )


def record(key: str, value: Any, out: Path = ROOT / "bench" / "results.json") -> None:
    """Put one part's figures into ``out`` beside the others it holds (a part run on its own)."""
    result = json.loads(out.read_text()) if out.exists() else {}
    result[key] = value
    out.write_text(json.dumps(result, indent=2))


# --- the table ------------------------------------------------------------------------------


@contextlib.contextmanager
def _section(echo: Callable[[str], None], title: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    echo(f"  ({title}: {time.perf_counter() - started:.0f} s)")


def run(
    size: int,
    clients: int,
    per_client: int,
    out: Path | None,
    echo: Callable[[str], None] = print,
    runs: int = 3,
    startup: bool = True,
) -> dict[str, Any]:
    result: dict[str, Any] = {"runtime": "local Lambda runtime: python3.13 -I -S environments, tracing on"}
    with _section(echo, "throughput"):
        throughput = result["throughput"] = notice_throughput(size, runs)
        echo(f"notice throughput on the local runtime ({size} recipients, {throughput['suppressed_before']} suppressed "
             f"beforehand; median of {runs} runs, ratios {throughput['ratio_of_each_run']})")  # fmt: skip
        echo(f"  status {throughput['status']}; {throughput['recipients_per_second']} recipients/s; "
             f"pipeline {throughput['pipeline_seconds']} s (dispatcher and sender invocations) vs bare SES "
             f"{throughput['bare_ses_seconds']} s (the same {throughput['bare_ses_calls']} SES requests, "
             f"replayed by an environment of its own) = ratio {throughput['ratio_to_bare_ses']} "
             "(bar <= 1.5)")  # fmt: skip
        echo(f"  end to end, with this bench's stand-in for the SQS event source mappings: "
             f"{throughput['end_to_end_seconds']} s = ratio {throughput['end_to_end_ratio_to_bare_ses']}")  # fmt: skip
        echo(f"  AWS calls per recipient {throughput['aws_calls_per_recipient']} as moto received them "
             f"(DESIGN §7: <= 0.1, bulk calls alone 0.02; the README's earlier bar 1.1); suppression reads per 100 "
             f"recipients {throughput['suppression_reads_per_100']} (bar <= 1)")  # fmt: skip
        echo(f"    {'operation':<36} {'calls':>7} {'moto s':>8}")
        for op, n in throughput["aws_calls"].items():
            echo(f"    {op:<36} {n:>7} {throughput['aws_call_seconds'][op]:>8}")
    with _section(echo, "latency"):
        latency = result["latency"] = optout_latency(clients, per_client)
        echo(f"opt-out latency through the local gateway ({clients} concurrent clients in a process of their own, "
             f"{latency['requests']} requests; environments per function {latency['environments']})")  # fmt: skip
        for kind in ("one_click", "twilio"):
            cold, steady = latency[f"{kind}_first_requests"], latency[kind]
            echo(f"  {kind:<10} steady p50 {steady.get('p50_ms')} ms  p99 {steady.get('p99_ms')} ms;  "
                 f"first requests (cold) p50 {cold.get('p50_ms')} ms  p99 {cold.get('p99_ms')} ms")  # fmt: skip
        echo(f"  {latency['requests_per_second']} requests/s; errors {latency['errors'] or 'none'}; webhook p99 goal "
             "<= 300 ms")  # fmt: skip
        echo("  where a steady request's time went (means, ms):")
        for function, figures in latency["profile"].items():
            echo(f"    {function}: " + "; ".join(f"{k} {v}" for k, v in figures["mean_breakdown_ms"].items()))
            echo(f"      AWS calls per request {figures['aws_calls_per_request']}; "
                 f"cold starts {figures['cold_starts']}")  # fmt: skip
        echo(f"  CPU seconds over the {latency['seconds']} s run on {latency['cpu_cores_available']} cores: "
             + ", ".join(f"{k} {v}" for k, v in latency["cpu_seconds"].items()))  # fmt: skip
    with _section(echo, "cold start"):
        starts = result["cold_start"] = cold_start()
        echo("cold start: first invocation in a new environment (process, imports, init, first call with the "
             "sample event) beside a bare environment importing boto3, same runtime, tracing on; median of 5 "
             "(bar: ratio <= 2)")  # fmt: skip
        for name, r in starts.items():
            echo(f"  {name:<14} {r['first_invocation_ms']:>7} ms vs bare {r['bare_first_invocation_ms']:>6} ms  "
                 f"ratio {r['ratio']:>5}  (init {r['init_ms']} vs {r['bare_init_ms']} ms; first call "
                 f"{r['first_call_ms']} ms, its handler {r['first_call_handler_ms']} ms, AWS calls "
                 f"{r['first_call_aws_ms']} ms: {r['first_call']}); warm p50 "
                 f"{r['warm_p50_ms']} ms")  # fmt: skip
    if startup:
        with _section(echo, "start time"):
            started = result["start_time"] = start_time()
            echo(f"optout local to ready: warm {started['warm_seconds']} s; cold (no build/lambda) "
                 f"{started['cold_seconds']} s")  # fmt: skip
    with _section(echo, "quota run"):
        echo("the quota run: the sender at its default concurrency (auto pacing) against an SES of a given latency "
             "and quota, beside one SendEmail a recipient (bar: >= 0.95 of the quota, no throttled call)")  # fmt: skip
        quota = result["quota_run"] = quota_run(echo=echo, runs=runs)
        echo(f"  {quota['instances']} instances; bar met: {quota['met']}")
    with _section(echo, "erasure"):
        erasure = result["erasure"] = erasure_time(1000)
        echo(f"erasure of a subject with {erasure['deliveries']} delivery records and a row in a manifest of "
             f"{erasure['manifest_rows']}: {erasure['seconds']} s ({erasure['ms_per_delivery']} ms a record, "
             f"{erasure['requests']} admin requests; median of {len(erasure['seconds_of_each_run'])}); AWS calls "
             + ", ".join(f"{k} {v}" for k, v in erasure["aws_calls"].items()))  # fmt: skip
    cost = result["cost"] = cost_per_million(throughput)
    echo("scale on paper, per million notified recipients (USD): " + ", ".join(
        f"{k} {v}" for k, v in cost["pipeline_usd_per_million"].items()) +
        f"; pipeline {cost['pipeline_total_usd_per_million']} beside SES {cost['ses_usd_per_million']}")  # fmt: skip
    if out is not None:
        out.write_text(json.dumps(result, indent=2))
        echo(f"written to {out}")
    return result
