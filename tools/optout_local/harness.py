"""What the bench and the soak share: a real local stack behind a proxy, and ways to look at it from outside.

The stack is the one ``optout local`` runs (moto in its own process, the gateway, the pollers, and
every function in environments of its own on the local Lambda runtime); the functions' AWS calls go
through a :class:`~optout_local.faults.FaultProxy` in front of moto, which counts what moto
received and injects what the fault plan says. Everything here looks at the stack the way an
operator could: HTTP to the gateway and the admin API, moto's own outbox, ``/proc`` for the
environments' processes.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from optout_local.faults import FaultPlan, FaultProxy
from optout_local.stack import LocalConfig, LocalStack, free_port
from optout_local.target import Target, local_target

FINAL = ("complete", "complete_with_failures", "failed")


@dataclass
class Proxied:
    stack: LocalStack
    proxy: FaultProxy
    config: LocalConfig
    target: Target


@contextlib.contextmanager
def proxied_stack(
    plan: FaultPlan | None = None, logs: IO[str] | None = None, state_dir: Path | None = None
) -> Iterator[Proxied]:
    """A local stack on free ports whose functions reach moto through a fault proxy.

    ``state_dir`` None keeps moto's state in memory; a folder gets moto's snapshots, as ``optout
    local`` keeps them (the caller's temporary folder, never the developer's own state).
    """
    aws_port = free_port()
    proxy = FaultProxy(f"http://127.0.0.1:{aws_port}", plan=plan).start()
    config = LocalConfig(
        api_port=free_port(), aws_port=aws_port, function_endpoint=proxy.url, state_dir=state_dir, fresh=True
    )
    stack = LocalStack(config, logs=logs)
    try:
        stack.start()
        yield Proxied(stack, proxy, config, local_target(config))
    finally:
        stack.stop()
        proxy.stop()


def environment_pids(function_name: str) -> list[int]:
    """The worker processes of this process's execution environments of ``function_name``.

    Read from ``/proc`` (each worker's environment holds ``AWS_LAMBDA_FUNCTION_NAME``), as an
    operator would find them, without asking the runtime.
    """
    wanted = f"AWS_LAMBDA_FUNCTION_NAME={function_name}".encode()
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid != me:
                continue
            if wanted in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return sorted(found)


def admin(target: Target, method: str, path: str, attempts: int = 10, **kwargs: Any) -> Any:
    """An admin API call that retries what failed (a 5xx or a 429 from a faulted function)."""
    for attempt in range(attempts):
        status, payload = target.admin().request(method, path, **kwargs)
        if status < 400:
            return payload
        if (status < 500 and status != 429) or attempt == attempts - 1:
            raise RuntimeError(f"{method} {path}: {status} {payload}")
        time.sleep(min(2.0, 0.2 * 2**attempt))
    raise AssertionError("unreachable")


def notice(target: Target, notice_id: str) -> dict[str, Any]:
    document: dict[str, Any] = admin(target, "GET", f"/admin/notices/{notice_id}")
    return document


def deliveries(target: Target, notice_id: str) -> list[dict[str, Any]]:
    """Every delivery record of a notice, through the admin API's pages."""
    items: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        query = {"limit": 1000, **({"next_token": token} if token else {})}
        page = admin(target, "GET", f"/admin/notices/{notice_id}/deliveries", query=query)
        items.extend(page["items"])
        token = page.get("next_token")
        if not token:
            return items


def queue_depth(sqs: Any, url: str) -> int:
    """Messages in a queue: visible, in flight and delayed."""
    names = [f"ApproximateNumberOfMessages{part}" for part in ("", "NotVisible", "Delayed")]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attributes.get(name, 0)) for name in names)
