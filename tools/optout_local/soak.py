"""``make soak``: a notice and a stream of opt-outs under injected AWS faults, then the invariants.

Faults are injected into the DynamoDB, SQS, SNS, SES and S3 calls the functions make (not into
the harness playing Lambda's event source mappings): ThrottlingException and
ProvisionedThroughputExceededException (400), ServiceUnavailable (503) and connection errors,
each at the configured rate, before the request reaches moto. Then, with the DLQs redriven:

- every opt-out that got a 2xx is stored;
- every recipient ends in exactly one final decision;
- nobody who opted out before the notice was sent anything;
- nobody was sent the notice twice;
- what failed waited in a DLQ and completed after redrive.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode

SERVICES = ("dynamodb", "sqs", "sns", "sesv2", "s3")
_active = threading.local()


def _fault_response(service: str, kind: str, url: str) -> Any:
    from botocore.awsrequest import AWSResponse

    if kind == "connection":
        from botocore.exceptions import EndpointConnectionError

        raise EndpointConnectionError(endpoint_url=url)
    code, status = {
        "throttle": ("ThrottlingException", 400),
        "throughput": ("ProvisionedThroughputExceededException", 400),
        "unavailable": ("ServiceUnavailable", 503),
    }[kind]
    if service == "dynamodb" and kind == "throttle":
        code = "ThrottlingException"
    if service in ("s3",):
        body = (
            f"<Error><Code>{'SlowDown' if status == 503 else code}</Code><Message>injected</Message></Error>".encode()
        )
        headers = {"Content-Type": "application/xml"}
    elif service == "sns":
        body = (f"<ErrorResponse><Error><Type>Sender</Type><Code>{'Throttling' if status == 400 else code}</Code>"
                f"<Message>injected</Message></Error></ErrorResponse>").encode()  # fmt: skip
        headers = {"Content-Type": "text/xml"}
    else:
        body = json.dumps({"__type": code, "message": "injected", "Message": "injected"}).encode()
        headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-ErrorType": code}

    class Raw:
        def stream(self, **_: Any) -> Iterator[bytes]:
            yield body

    from botocore.awsrequest import HTTPHeaders

    http_headers = HTTPHeaders()
    for name, value in headers.items():
        http_headers[name] = value
    return AWSResponse(url, status, http_headers, Raw())


@contextmanager
def injecting(rate: float, seed: int = 11) -> Iterator[Counter[str]]:
    """Inject faults into calls made on threads that called ``functions_running()``."""
    from moto.core.botocore_stubber import BotocoreStubber

    # A reproducible fault schedule, not a secret
    rng = random.Random(seed)  # noqa: S311  # nosec B311
    lock = threading.Lock()
    injected: Counter[str] = Counter()
    original = BotocoreStubber.__call__

    def call(self: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
        service = event_name.split(".")[1] if event_name.count(".") >= 2 else ""
        if getattr(_active, "on", False) and service in SERVICES:
            with lock:
                hit = rng.random() < rate
                kind = rng.choice(["throttle", "throughput", "unavailable", "connection"]) if hit else ""
            if hit:
                injected[f"{service}:{kind}"] += 1
                return _fault_response(service, kind, request.url)
        return original(self, event_name, request, **kwargs)

    BotocoreStubber.__call__ = call  # type: ignore[method-assign]
    try:
        yield injected
    finally:
        BotocoreStubber.__call__ = original  # type: ignore[method-assign]


@contextmanager
def functions_running() -> Iterator[None]:
    _active.on = True
    try:
        yield
    finally:
        _active.on = False


def _http_event(method: str, path: str, query: str, headers: list[tuple[str, str]], body: bytes) -> dict[str, Any]:
    from optout_local.gateway import build_event, compile_route
    from optout_local.provision import Route

    compiled = compile_route(Route(method, path, "soak", "NONE"))
    return build_event(compiled, {}, method, path, query, headers, body, "198.51.100.7", "us-east-1", None)


def run(
    recipients: int, opt_outs: int, rate: float, echo: Callable[[str], None] = print, timeout: float = 1800
) -> dict[str, Any]:
    import boto3

    from optout_local.dlq import dead_letter_queues, depth, redrive_locally
    from optout_local.pollers import sqs_record
    from optout_local.provision import ACCOUNT_ID
    from optout_local.runtime import LambdaContext, in_process_stack, load_handler

    started = time.perf_counter()
    soak_env = {"POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_NAMESPACE": "OptoutSoak",
                "OPTOUT_EMAIL_RATE_PER_SECOND": "100000"}  # fmt: skip
    with in_process_stack(soak_env) as stack:
        from moto.ses.models import ses_backends

        from optout import secret_store
        from optout.identity import Identity
        from optout.notices import services
        from optout.notices.model import NOTICE_REQUEST
        from optout.settings import get_settings
        from optout.suppression_store import DynamoSuppressionStore
        from optout.token import issue
        from optout.twilio import signature

        settings = get_settings()
        store = DynamoSuppressionStore(settings.suppression_table)
        pepper, ring = secret_store.pepper(), secret_store.key_ring()
        twilio_token = secret_store.secret_string(settings.twilio_auth_token_secret)
        sqs = boto3.client("sqs")
        for name in ("DispatchQueue", "SendQueue"):  # failed messages come back after 1 s, not minutes
            sqs.set_queue_attributes(QueueUrl=stack.ref(name), Attributes={"VisibilityTimeout": "1"})
        unsubscribe = load_handler(stack.function("Unsubscribe"))
        webhook = load_handler(stack.function("SmsWebhook"))
        dispatcher = load_handler(stack.function("Dispatcher"))
        sender = load_handler(stack.function("Sender"))
        acknowledged: list[tuple[str, str, float]] = []  # (channel, address, when)
        refused: Counter[str] = Counter()

        def opt_out(n: int) -> None:
            if n % 2 == 0:  # a one-click from the mail of a manifest recipient
                address = f"user{n}@example.com"
                key = Identity.of(pepper, "email", address).key
                query = urlencode({"token": issue(ring, "email", key, "product")})
                body = b"List-Unsubscribe=One-Click"
                event = _http_event("POST", "/unsubscribe", query,
                                    [("Content-Type", "application/x-www-form-urlencoded")], body)  # fmt: skip
                call, channel = unsubscribe, "email"
            else:  # a STOP through the signed webhook
                address = f"+1415555{n % 10000:04d}"
                form = {"From": address, "To": "+14155550100", "Body": "STOP", "MessageSid": f"SM{n:032d}"}
                url = "https://optout.example.test/sms/twilio"
                event = _http_event("POST", "/sms/twilio", "", [
                    ("Content-Type", "application/x-www-form-urlencoded"),
                    ("X-Twilio-Signature", signature(twilio_token, url, form.items())),
                ], urlencode(form).encode())  # fmt: skip
                call, channel = webhook, "sms"
            try:
                with functions_running():
                    status = call(event, LambdaContext())["statusCode"]
            except Exception:
                status = 500
            if 200 <= status < 300:
                acknowledged.append((channel, address, time.time()))
            else:
                refused[str(status)] += 1

        with injecting(rate) as injected:
            # Half the opt-outs arrive before the notice, half while it goes out
            for n in range(opt_outs // 2):
                opt_out(n * 2 if n % 2 == 0 else n * 2 + 1)
            notice_created = time.time()
            # Every 50th recipient is listed again at the end: the dispatcher must drop them
            rows = [f"u{i},user{i}@example.com\n" for i in range(recipients)]
            repeated = rows[::50]
            body = "recipient_id,email\n" + "".join(rows + repeated)
            bucket = stack.ref("ManifestBucket")
            boto3.client("s3").put_object(Bucket=bucket, Key="soak.csv", Body=body.encode())
            request = NOTICE_REQUEST.validate_python({
                "kind": "product", "manifest": f"s3://{bucket}/soak.csv",
                "variables": {"subject": "Soak", "body": "Soak test."},
            })  # fmt: skip
            notice, _ = services.admin().create(request, None, "soak")
            late = list(range(opt_outs // 2, opt_outs))

            def stream_opt_outs() -> None:
                for n in late:
                    opt_out(n)

            stream = threading.Thread(target=stream_opt_outs)
            stream.start()

            def invoke(handler: Any, records: list[dict[str, Any]], timeout_s: int) -> list[dict[str, Any]]:
                """Lambda's event source mapping: what failed stays on the queue."""
                try:
                    with functions_running():
                        result = handler({"Records": records}, LambdaContext(timeout_seconds=timeout_s))
                    failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
                except Exception:
                    failed = {r["messageId"] for r in records}
                return [r for r in records if r["messageId"] not in failed]

            queues = {n: (stack.ref(n), stack.resolver.attrs[(n, "Arn")]) for n in ("DispatchQueue", "SendQueue")}
            all_dlqs = dead_letter_queues(stack.resolver.refs, stack.resolver.attrs, stack.resolver.template)
            sources = (queues["DispatchQueue"][0], queues["SendQueue"][0])
            dlqs = [q for q in all_dlqs if q.source_url in sources]
            redriven = 0
            deadline = time.monotonic() + timeout
            idle = 0
            while time.monotonic() < deadline:
                work = False
                for name, size, fn_timeout in (("DispatchQueue", 1, 900), ("SendQueue", 2, 120)):
                    url, arn = queues[name]
                    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]).get(
                        "Messages", []
                    )
                    records = [sqs_record(dict(m), arn, "us-east-1") for m in got]
                    handler = dispatcher if name == "DispatchQueue" else sender
                    for start in range(0, len(records), size):
                        work = True
                        for done in invoke(handler, records[start : start + size], fn_timeout):
                            sqs.delete_message(QueueUrl=url, ReceiptHandle=done["receiptHandle"])
                if work:
                    idle = 0
                    continue
                progress = services.notice_store().progress(notice.id)
                if progress.status in ("complete", "complete_with_failures"):
                    break
                waiting = sum(depth(sqs, q.url) for q in dlqs)
                if waiting:
                    for q in dlqs:
                        redriven += redrive_locally(sqs, q)
                    continue
                idle += 1
                if idle % 3 == 0:
                    with functions_running(), contextlib.suppress(Exception):  # retried next idle round
                        services.dispatcher().finalize(notice.id, 0)
                time.sleep(0.5)
            stream.join()
        # --- the invariants, checked without faults ------------------------------------
        final = services.admin().get(notice.id)
        deliveries = list(services.notice_store().all_deliveries(notice.id))
        by_recipient: Counter[str] = Counter(r.recipient_id for r in deliveries)
        # moto lists a raw message's recipient twice (Destination and To header): count messages
        sent_to = Counter(address for m in ses_backends[ACCOUNT_ID]["us-east-1"].sent_messages
                          for address in set(getattr(m, "destinations", [])))  # fmt: skip
        not_stored = []
        for channel, address, _ in acknowledged:
            state = store.get(Identity.of(pepper, channel, address).key)  # type: ignore[arg-type]
            ok = state is not None and (state.blocked is not None if channel == "sms" else "product" in state.topics)
            if not ok:
                not_stored.append(address)
        early = {address for channel, address, when in acknowledged if channel == "email" and when < notice_created}
        result = {
            "recipients": recipients,
            "listed_twice": len(repeated),
            "opt_outs_acknowledged": len(acknowledged),
            "opt_outs_refused": dict(refused),
            "faults_injected": dict(sorted(injected.items())),
            "faults_total": sum(injected.values()),
            "status": final.status,
            "counts": final.counts.model_dump(),
            "redriven_from_dlq": redriven,
            "seconds": round(time.perf_counter() - started, 1),
            "invariants": {
                "acknowledged_opt_outs_not_stored": len(not_stored),
                "recipients_without_exactly_one_final_decision": sum(
                    1 for i in range(recipients) if by_recipient.get(f"u{i}", 0) != 1
                )
                + sum(1 for r in deliveries if r.decision == "deferred"),
                "early_opt_outs_sent_anyway": sum(1 for a in early if sent_to.get(a)),
                "sent_twice": sum(1 for n in sent_to.values() if n > 1),
                "duplicates_not_counted_once": abs(final.counts.recipients.get("duplicate", 0) - len(repeated)),
                "notice_final": final.status in ("complete", "complete_with_failures"),
            },
        }
        echo(json.dumps(result, indent=2))
        return result
