"""Dispatch time per manifest row, from 1 to millions of rows, with continuations forced.

    python -m optout_local.bench_dispatch --rows 8000000 --continue-every 500000

The notice store (checkpoints, the saved seen set, duplicate records) is moto's DynamoDB in this
process (``in_process_stack``); the manifest is generated on the fly as a stub S3 object of fixed-
width rows (so a byte range maps to rows without holding the file), every 1,000th row repeating an
earlier row's email under a new id; SendMessageBatch and the continuation message are stubs. Each
invocation stops after ``--continue-every`` rows, as one out of time would, and the next starts
from its checkpoint. Prints, per invocation, its rows, seconds, microseconds a row and the time
it took to load the seen set, then the peak RSS of the process (which includes moto's copy of
the saved seen set) and the memory of the dispatcher's seen set itself.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

HEADER = b"recipient_id,email\n"


def _row(i: int) -> bytes:
    email = i - 500 if i % 1000 == 999 else i  # an address listed before, under a new id
    return b"u%09d,user%09d@example.com\n" % (i, email)


ROW = len(_row(0))


class ManifestStub:
    """get_object with a Range over a generated manifest of ``rows`` fixed-width rows."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.size = len(HEADER) + rows * ROW

    def get_object(self, Bucket: str, Key: str, Range: str = "bytes=0-") -> dict[str, Any]:  # noqa: N803
        first, _, last = Range.removeprefix("bytes=").partition("-")
        start, end = int(first), (int(last) + 1 if last else self.size)
        return {"Body": self._bytes(start, min(end, self.size))}

    def _bytes(self, start: int, end: int) -> Iterator[bytes]:
        if start < len(HEADER):
            yield HEADER[start:end]
            start = len(HEADER)
        row = (start - len(HEADER)) // ROW
        if start != len(HEADER) + row * ROW:
            raise ValueError("ranges start at row boundaries here")
        while start < end:
            count = min(4096, (end - start) // ROW)
            if count == 0:
                raise ValueError("ranges end at row boundaries here")
            yield b"".join(_row(i) for i in range(row, row + count))
            row += count
            start += count * ROW


def run(rows: int, continue_every: int) -> list[dict[str, Any]]:
    from optout import wiring
    from optout.notices import dispatch as dispatch_module
    from optout.notices.model import Notice
    from optout_local.runtime import in_process_stack

    results: list[dict[str, Any]] = []
    with in_process_stack():
        dispatcher = wiring.dispatcher()
        manifest = ManifestStub(rows)
        now = datetime.now(UTC)
        notice = Notice(
            id="ntc_bench", kind="policy_change", topic="policy", channels=["email"], mode="all",
            variables={}, manifest="s3://bench-manifests/users.csv", created_by="bench", created_at=now,
            updated_at=now,
        )  # fmt: skip
        dispatcher.notices.create(notice, None, "bench")
        sent = {"n": 0}
        queued: list[dict[str, Any]] = []
        dispatcher.s3 = lambda: manifest
        dispatcher.send_batches = lambda ms: sent.__setitem__("n", sent["n"] + sum(len(m["entries"]) for m in ms))
        dispatcher.requeue = lambda m, delay: queued.append(m)
        real_load = dispatch_module.SeenKeys.load
        loading = {"s": 0.0}

        def timed_load(self: Any, segment: bytes) -> None:
            started = time.perf_counter()
            real_load(self, segment)
            loading["s"] += time.perf_counter() - started

        dispatch_module.SeenKeys.load = timed_load  # type: ignore[method-assign]
        real_restore = dispatcher._restore
        seen_memory = {"bytes": 0}

        def restore(*args: Any) -> None:
            started = time.perf_counter()
            real_restore(*args)
            loading["restore_s"] = time.perf_counter() - started

        dispatcher._restore = restore  # type: ignore[method-assign,assignment]
        outcome = ""
        read_before = 0
        while outcome != "dispatched":
            loading.update(s=0.0, restore_s=0.0)
            started = time.perf_counter()
            outcome = dispatcher.handle({"notice_id": notice.id}, _out_of_time_after(sent, continue_every))
            elapsed = time.perf_counter() - started
            progress = dispatcher.notices.get(notice.id)
            done = progress.rows_read - read_before
            read_before = progress.rows_read
            results.append(
                {
                    "rows_read": progress.rows_read, "rows": done, "seconds": round(elapsed, 2),
                    "us_per_row": round(elapsed / max(1, done) * 1e6, 2),
                    "seen_restore_s": round(loading["restore_s"], 2), "seen_load_s": round(loading["s"], 2),
                    "outcome": outcome,
                }
            )  # fmt: skip
            sys.stdout.write(json.dumps(results[-1]) + "\n")
        final = dispatcher.notices.get(notice.id)
        seen_memory["bytes"] = _seen_memory(dispatcher, notice, manifest)
        results.append(
            {
                "total": final.total, "recipients": final.counts.recipients,
                "email": final.counts.by_channel.get("email"),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "seen_set_mb": round(seen_memory["bytes"] / 1e6),
            }
        )  # fmt: skip
        sys.stdout.write(json.dumps(results[-1]) + "\n")
    return results


def _out_of_time_after(sent: dict[str, int], rows: int) -> Any:
    """Time left for an invocation: none once it has sent ``rows`` recipients."""
    start = sent["n"]
    return lambda: 0 if sent["n"] - start >= rows else 900_000


def _seen_memory(dispatcher: Any, notice: Any, manifest: ManifestStub) -> int:
    """The seen set of the whole manifest, loaded from what was saved (as a continuation would)."""
    from optout.notices.dispatch import SeenKeys

    cursor, _ = dispatcher.notices.cursor(notice.id)
    seen = SeenKeys.for_notice(dispatcher.pepper(), notice.id)
    for segment in cursor.saved.segments:
        seen.load(dispatcher.notices.load_seen_segment(notice.id, segment))
    return seen.memory()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--continue-every", type=int, default=500_000)
    args = parser.parse_args(argv)
    run(args.rows, args.continue_every)


if __name__ == "__main__":
    main()
