"""``make soak``: a notice and a stream of opt-outs on the real local stack under injected faults, then the invariants.

The stack is ``optout local``'s own (moto in its process, the gateway, the template's event source
mappings, every function in environments of its own on the local Lambda runtime, tracing on), on
free ports with a temporary state folder. The functions reach moto through a fault proxy
(:mod:`optout_local.faults`) that fails a share of their calls with each service's own throttling
error, 503s, connection resets, and lost responses (applied by moto, then the connection dropped
before the answer arrives). Opt-outs are one-click POSTs and signed STOP webhooks sent to the
gateway over HTTP. While the notice goes out, one sender environment's worker process is killed
with SIGKILL in the middle of an invocation. What lands in a DLQ is redriven, as an operator would.
If nothing is left in the notice's queues and DLQs for 30 s and the notice is still not final, its
work was lost: the run stops waiting and says so (``stalled``).

Then, with the faults off:

- every opt-out that got a 2xx is stored;
- every recipient ends in exactly one final decision;
- nobody who opted out before the notice was sent anything (counted from moto's outbox);
- nobody was sent the notice twice (counted from moto's outbox, not from our records);
- every repeated manifest row was counted once as a duplicate;
- the notice reached a final status;
- ``unknown`` is at most the recipients of the provider calls in flight when a fault hit them: the
  sends the proxy failed after which they may have gone out (a 503, a reset, a lost answer), and
  one bulk call (50) for the sender environment killed;
- every ``sent`` record names a message in moto's outbox, and every message in the outbox is a
  ``sent`` record's or went to a recipient recorded ``unknown``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from optout_local import harness
from optout_local.dlq import dead_letter_queues, depth, redrive_locally
from optout_local.faults import KINDS, Call, FaultPlan
from optout_local.stack import moto_outbox
from optout_local.template import ROOT

# failed batches come back in seconds, not minutes
VISIBILITY = {"DispatchQueue": "20", "SendQueue": "5", "InboundSmsQueue": "5"}
INBOUND_DRAIN = 120.0  # seconds for the STOPs the webhook handed to InboundSmsQueue to be recorded
STALL = 30.0  # seconds with nothing in the notice's queues or DLQs and the notice not final: its work was lost
BULK_MAX = 50  # recipients of one SendBulkEmail: at most what a killed sender had in flight


@dataclass
class SoakPlan(FaultPlan):
    """The fault plan, keeping each provider send it failed in a way that leaves its outcome unknown."""

    unknowable: list[Call] = field(default_factory=list)

    def count(self, call: Call, kind: str, detail: str) -> None:
        super().count(call, kind, detail)
        if kind != "throttle" and _addressed(call):  # a throttle says SES did not take it
            self.unknowable.append(call)


def run(
    recipients: int,
    opt_outs: int,
    rate: float,
    echo: Callable[[str], None] = print,
    timeout: float = 1800,
    kill_sender: bool = True,
    seed: int = 11,
    kinds: tuple[str, ...] = KINDS,
) -> dict[str, Any]:
    started = time.perf_counter()
    plan = SoakPlan(rate=0.0, seed=seed, kinds=kinds)
    folder = Path(tempfile.mkdtemp(prefix="optout-soak-"))
    logs = (folder / "functions.log").open("w", encoding="utf-8")
    result: dict[str, Any] = {}
    try:
        with harness.proxied_stack(plan, logs=logs, state_dir=folder / "state") as env:
            stack, proxy, config, target = env.stack, env.proxy, env.config, env.target
            if stack.stack is None:
                raise RuntimeError("the local stack is not running")
            if stack.functions is None:
                raise RuntimeError("the local stack is not running")
            sqs = config.client("sqs")
            for name, seconds in VISIBILITY.items():
                sqs.set_queue_attributes(QueueUrl=stack.stack.ref(name), Attributes={"VisibilityTimeout": seconds})
            pepper = target.pepper()
            people = _OptOuts(config.api_url, target.key_ring(), pepper, target.twilio_auth_token())

            plan.rate = rate  # from here on the functions' AWS calls meet faults
            # Half the opt-outs arrive before the notice, half while it goes out
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(people.send, [n * 2 if n % 2 == 0 else n * 2 + 1 for n in range(opt_outs // 2)]))
            # Every 50th recipient is listed again at the end: the dispatcher must drop them. One in
            # four has a phone too, in a zone where it is now midday (texts outside 08:00-21:00 wait)
            zone = _midday_zone()
            rows = [f"u{i},user{i}@example.com,{phone(i) or ''},en,{zone}\n" for i in range(recipients)]
            repeated = rows[::50]
            bucket = target.bucket
            body = ("recipient_id,email,phone,locale,timezone\n" + "".join(rows + repeated)).encode()
            target.clients("s3").put_object(Bucket=bucket, Key="soak.csv", Body=body)
            notice_created = time.time()
            created = harness.admin(
                target, "POST", "/admin/notices", headers={"Idempotency-Key": f"soak-{seed}-{notice_created}"},
                body={"kind": "product", "manifest": f"s3://{bucket}/soak.csv",
                      "channels": {"channels": ["email", "sms"], "mode": "all"},
                      "variables": {"subject": "Soak", "body": "Soak test.", "sms_text": SMS_TEXT}},
            )  # fmt: skip
            notice_id = created["id"]
            late = list(range(opt_outs // 2, opt_outs))
            streams = [threading.Thread(target=people.stream, args=(part,)) for part in (late[::2], late[1::2])]
            for stream in streams:
                stream.start()

            # One sender environment is killed with SIGKILL in the middle of an invocation
            killed: dict[str, Any] = {}
            finished = threading.Event()
            killer = threading.Thread(
                target=_kill_one_sender, daemon=True,
                args=(proxy, stack.stack.functions["SenderFunction"].name, recipients, finished, killed, started),
            )  # fmt: skip
            if kill_sender:
                killer.start()

            # Wait for the notice; what lands in a DLQ is redriven once its queue has nothing visible
            resolver = stack.stack.resolver
            sources = {stack.stack.ref(n) for n in ("DispatchQueue", "SendQueue")}
            every_dlq = dead_letter_queues(resolver.refs, resolver.attrs, resolver.template)
            dlqs = [q for q in every_dlq if q.source_url in sources]
            stalled, redriven = _wait_for_notice(
                target, notice_id, sqs, dlqs, [*sources, *(q.url for q in dlqs)], timeout
            )
            finished.set()
            for stream in streams:
                stream.join()
            plan.rate = 0.0  # the invariants are checked without faults
            # A webhook's 2xx means recorded or handed to InboundSmsQueue: let the queue finish
            inbound = stack.stack.ref("InboundSmsQueue")
            redriven += _drain_inbound(sqs, inbound, [q for q in every_dlq if q.source_url == inbound])

            # --- the invariants ---------------------------------------------------------------
            acknowledged = people.acknowledged
            final = harness.notice(target, notice_id)
            records = harness.deliveries(target, notice_id)
            by_recipient: Counter[tuple[str, str]] = Counter((r["recipient_id"], r["channel"]) for r in records)
            # moto's own outboxes; a raw message lists its recipient twice (Destination and To): count
            # messages. Texts are the notice's by their wording (a STOP's confirmation may be there too)
            outbox = moto_outbox(config, "email")
            texts = [m for m in moto_outbox(config, "sms") if SMS_TEXT in m["body"]]
            sent_to = Counter(a for m in outbox for a in set(m.get("destinations", [])))
            sent_to.update(m["to"] for m in texts)
            not_stored = [a for ch, a, _ in acknowledged if not _opt_out_stored(target.store, pepper, ch, a)]
            early = {a for ch, a, when in acknowledged if when < notice_created}
            # Sends moto applied whose answers the proxy dropped: the function never knew
            lost_sends = Counter(a for c in plan.lost for a in _addressed(c))
            counts = final["counts"]
            unknown = {(r["recipient_id"], r["channel"]) for r in records if r["decision"] == "unknown"}
            hit = sum(len(_addressed(c)) for c in plan.unknowable) + (BULK_MAX if killed else 0)
            sent_ids = {r["provider_message_id"] for r in records if r["decision"] == "sent"}
            outbox_ids = {m["message_id"] for m in [*outbox, *texts]}
            unknown_addresses = {_address(rid, channel) for rid, channel in unknown}
            unrecorded = [
                m for m in outbox if m["message_id"] not in sent_ids and not set(m["destinations"]) & unknown_addresses
            ] + [m for m in texts if m["message_id"] not in sent_ids and m["to"] not in unknown_addresses]
            phones = sum(1 for i in range(recipients) if phone(i))
            result = {
                "recipients": recipients,
                "listed_twice": len(repeated),
                "opt_outs_acknowledged": len(acknowledged),
                "opt_outs_refused": dict(people.refused),
                "faults_injected": dict(sorted(plan.injected.items())),
                "faults_total": sum(plan.injected.values()),
                "faults_by_operation": dict(sorted(plan.by_code.items())),
                "texts_sent": len(texts),
                "environment_killed": killed or None,
                "sent_twice_after_a_lost_send": sum(1 for a, n in sent_to.items() if n > 1 and lost_sends.get(a)),
                "unknown": len(unknown),
                "unknown_delivered": len(unknown_addresses & set(sent_to)),  # of them, in moto's outbox after all
                "unknown_bound": hit,  # recipients of sends hit by a fault that hides the outcome, and one kill
                "status": final["status"],
                "counts": counts,
                "redriven_from_dlq": redriven,
                "stalled": stalled,  # the notice's work was lost: nothing left anywhere to finish it
                "left_in_dlqs": {q.name: depth(sqs, q.url) for q in dlqs},
                "cold_starts": {n: p.cold_starts for n, p in stack.functions.pools.items() if p.cold_starts},
                "aws_calls_received": sum(proxy.ledger.calls.values()),
                "seconds": round(time.perf_counter() - started, 1),
                "invariants": {
                    "acknowledged_opt_outs_not_stored": len(not_stored),
                    # one per recipient and channel they have: email for all, sms for those with a phone
                    "recipients_without_exactly_one_final_decision": sum(
                        1
                        for i in range(recipients)
                        if by_recipient.get((f"u{i}", "email"), 0) != 1
                        or by_recipient.get((f"u{i}", "sms"), 0) != (1 if phone(i) else 0)
                    )
                    + sum(1 for r in records if r["decision"] == "deferred")
                    + abs(len(records) - recipients - phones),
                    "early_opt_outs_sent_anyway": sum(1 for a in early if sent_to.get(a)),
                    "sent_twice": sum(1 for n in sent_to.values() if n > 1),
                    "duplicates_not_counted_once": abs(counts["recipients"].get("duplicate", 0) - len(repeated)),
                    "notice_final": final["status"] in ("complete", "complete_with_failures"),
                    "unknown_beyond_calls_hit_by_a_fault": max(0, len(unknown) - hit),
                    "sent_records_without_their_message": len(sent_ids - outbox_ids),
                    "messages_without_a_record": len(unrecorded),
                },
            }
    finally:
        logs.close()
        _keep_logs_if_broken(result, folder / "functions.log")
        shutil.rmtree(folder, ignore_errors=True)
    echo(json.dumps(result, indent=2))
    return result


def _opt_out_stored(store: Any, pepper: Any, channel: str, address: str) -> bool:
    """Whether an acknowledged opt-out is in the stored state: a STOP blocks the number, a one-click
    unsubscribes the address from the notice's topic."""
    from optout.core.identity import Identity

    state = store.get(Identity.of(pepper, channel, address).key)  # type: ignore[arg-type]
    return state is not None and (state.blocked is not None if channel == "sms" else "product" in state.topics)


def _keep_logs_if_broken(result: dict[str, Any], log: Path) -> None:
    """When the run failed or broke an invariant, keep what the functions logged, for whoever looks into it."""
    # an invariant holds at the count 0 or the flag True (`1 in (0, True)` is true in Python: compare types)
    broken = not result or not all(
        v is True or (type(v) is int and v == 0) for v in result.get("invariants", {}).values()
    )
    if not broken:
        return
    kept = ROOT / "test-artifacts" / f"soak-functions-{int(time.time())}.log"
    kept.parent.mkdir(exist_ok=True)
    shutil.copyfile(log, kept)
    if result:
        result["function_logs"] = str(kept)


@dataclass
class _OptOuts:
    """People opting out through the gateway, as they would, and what the gateway answered them."""

    api_url: str
    ring: Any
    pepper: Any
    twilio_token: str
    acknowledged: list[tuple[str, str, float]] = field(default_factory=list)  # (channel, address, when the 2xx arrived)
    refused: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _local: threading.local = field(default_factory=threading.local, init=False, repr=False)  # a session a thread

    def send(self, n: int) -> None:
        """Opt-out ``n``: a one-click from the mail of a manifest recipient (even), or a signed STOP (odd)."""
        session = getattr(self._local, "session", None) or requests.Session()
        self._local.session = session
        channel, address, url, data, headers = self._request(n)
        try:
            status = session.post(url, data=data, headers=headers, timeout=60).status_code
        except requests.RequestException:
            status = 599
        with self._lock:
            if 200 <= status < 300:
                self.acknowledged.append((channel, address, time.time()))
            else:
                self.refused[str(status)] += 1

    def stream(self, part: list[int]) -> None:
        for n in part:
            self.send(n)

    def _request(self, n: int) -> tuple[str, str, str, dict[str, str], dict[str, str]]:
        """Opt-out ``n``'s channel and address, and the POST that makes it: URL, form and headers."""
        from optout.core.identity import Identity
        from optout.sms.twilio import signature
        from optout.unsubscribe.token import issue

        if n % 2 == 0:  # a one-click from the mail of a manifest recipient
            address = f"user{n}@example.com"
            token = issue(self.ring, "email", Identity.of(self.pepper, "email", address).key, "product")
            return "email", address, f"{self.api_url}/unsubscribe?token={token}", {"List-Unsubscribe": "One-Click"}, {}
        # a STOP through the signed webhook
        address = f"+1415555{n % 10000:04d}"
        data = {"From": address, "To": "+14155550100", "Body": "STOP", "MessageSid": f"SM{n:032d}"}
        url = f"{self.api_url}/sms/twilio"
        return "sms", address, url, data, {"X-Twilio-Signature": signature(self.twilio_token, url, data.items())}


def _kill_one_sender(
    proxy: Any, sender_name: str, recipients: int, finished: threading.Event, killed: dict[str, Any], started: float
) -> None:
    """SIGKILL one of ``sender_name``'s environments while mails go out, noting in ``killed`` which and when."""
    # Mail goes out in bulk calls of up to 50 (SendEmail one by one where bulk cannot):
    # a third of the way through the calls, an invocation is between two of them
    threshold = max(1, recipients // 50 // 3)
    last = 0
    while not finished.is_set():
        sends = proxy.ledger.calls["sesv2:SendBulkEmail"] + proxy.ledger.calls["sesv2:SendEmail"]
        if sends >= threshold and sends > last:  # mails going out right now: mid-invocation
            pids = harness.environment_pids(sender_name)
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.update(pid=pids[0], after_sends=sends, at=round(time.perf_counter() - started, 1))
                return
        last = sends
        time.sleep(0.02)


def _wait_for_notice(
    target: Any, notice_id: str, sqs: Any, dlqs: list[Any], watched: list[str], timeout: float
) -> tuple[dict[str, Any] | None, int]:
    """Wait for the notice to be final, redriving each DLQ once its queue has nothing visible. If
    nothing is queued anywhere for STALL seconds first, its work was lost: stop, and say so.
    Returns the stall (None if none) and how many messages were redriven."""
    redriven = 0
    quiet_since: float | None = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(1)
        try:
            status = harness.notice(target, notice_id)["status"]
        except RuntimeError:
            continue
        if status in harness.FINAL:
            break
        for queue in dlqs:
            if depth(sqs, queue.url) and not depth(sqs, queue.source_url):
                redriven += redrive_locally(sqs, queue)
        # Nothing queued anywhere (not even a delayed finalize) and the notice not final: stuck
        if any(harness.queue_depth(sqs, url) for url in watched):
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > STALL:
            return {"status": status, "quiet_seconds": round(time.monotonic() - quiet_since)}, redriven
    return None, redriven


def _drain_inbound(sqs: Any, inbound: str, inbound_dlqs: list[Any]) -> int:
    """Give InboundSmsQueue up to INBOUND_DRAIN seconds to empty, redriving its DLQ: how many were redriven."""
    redriven = 0
    drain_by = time.monotonic() + INBOUND_DRAIN
    while time.monotonic() < drain_by:
        for queue in inbound_dlqs:
            if depth(sqs, queue.url):
                redriven += redrive_locally(sqs, queue)
        if not harness.queue_depth(sqs, inbound):
            break
        time.sleep(1)
    return redriven


def _addressed(call: Any) -> list[str]:
    """The addresses a SendEmail or SendBulkEmail request mailed, or an SNS Publish texted (none for
    any other call)."""
    if call.name == "sesv2:SendEmail":
        return list(call.json()["Destination"]["ToAddresses"])
    if call.name == "sesv2:SendBulkEmail":
        return [a for e in call.json()["BulkEmailEntries"] for a in e["Destination"]["ToAddresses"]]
    if call.name == "sns:Publish" and call.params.get("PhoneNumber"):
        return [str(call.params["PhoneNumber"])]
    return []


SMS_TEXT = "Soak text."  # the notice's text, told apart in the SMS outbox from STOP confirmations


def phone(i: int) -> str | None:
    """Recipient ``u{i}``'s phone: one in four has one, some of them among the numbers that text STOP."""
    return f"+1415555{i % 10000:04d}" if i % 4 == 1 else None


def _address(recipient_id: str, channel: str) -> str:
    i = int(recipient_id.removeprefix("u"))
    return (phone(i) or "") if channel == "sms" else f"user{i}@example.com"


def _midday_zone() -> str:
    """A fixed-offset zone where it is about noon now, so the notice's texts are never held for quiet hours."""
    offset = 12 - time.gmtime().tm_hour
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"  # POSIX signs: Etc/GMT-3 is UTC+3
