"""How the soak waits for its notice: redriving DLQs, noticing lost work, keeping the logs of a broken run.

The soak itself (tests/soak/test_soak_small.py) meets these paths only when something goes wrong;
here each is driven with a fake clock and fake queues.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from optout_local import soak
from optout_local.dlq import DeadLetterQueue

DLQ = DeadLetterQueue("SendDeadLetterQueue", "dlq", "arn:dlq", "send", "arn:send")


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    clock = _Clock()
    monkeypatch.setattr(soak.time, "monotonic", clock.monotonic)
    monkeypatch.setattr(soak.time, "sleep", clock.sleep)
    return clock


def _queues(monkeypatch: pytest.MonkeyPatch, depths: dict[str, int], statuses: list[str]) -> list[str]:
    """Queues of these depths, a notice going through ``statuses`` (then staying at the last); the redrives made."""
    redrives: list[str] = []

    def redrive(sqs: Any, queue: DeadLetterQueue) -> int:
        redrives.append(queue.url)
        moved, depths[queue.url] = depths[queue.url], 0
        return moved

    monkeypatch.setattr(soak, "depth", lambda sqs, url: depths.get(url, 0))
    monkeypatch.setattr(soak.harness, "queue_depth", lambda sqs, url: depths.get(url, 0))
    monkeypatch.setattr(soak, "redrive_locally", redrive)
    monkeypatch.setattr(
        soak.harness, "notice", lambda target, nid: {"status": statuses.pop(0) if len(statuses) > 1 else statuses[0]}
    )
    return redrives


@pytest.mark.usefixtures("clock")
def test_a_dlq_is_redriven_once_its_queue_is_empty_and_the_wait_ends_when_final(monkeypatch) -> None:
    depths = {"send": 2, "dlq": 3}
    redrives = _queues(monkeypatch, depths, ["sending", "sending", "complete"])
    # the source queue empties after the first look
    monkeypatch.setattr(soak, "depth", lambda sqs, url: depths.get(url, 0) if url != "send" else 0)
    stalled, redriven = soak._wait_for_notice(None, "ntc", None, [DLQ], ["send", "dlq"], timeout=60)
    assert stalled is None and redriven == 3 and redrives == ["dlq"]


def test_nothing_queued_for_longer_than_the_stall_is_lost_work(monkeypatch, clock: _Clock) -> None:
    _queues(monkeypatch, {}, ["sending"])
    stalled, redriven = soak._wait_for_notice(None, "ntc", None, [DLQ], ["send", "dlq"], timeout=600)
    assert stalled == {"status": "sending", "quiet_seconds": 31} and redriven == 0
    assert clock.now < 40  # it stopped at the stall, not at the timeout


def test_a_notice_still_working_at_the_timeout_is_not_a_stall(monkeypatch, clock: _Clock) -> None:
    _queues(monkeypatch, {"send": 1}, ["sending"])
    assert soak._wait_for_notice(None, "ntc", None, [], ["send"], timeout=10) == (None, 0)
    assert clock.now == 10


@pytest.mark.usefixtures("clock")
def test_the_inbound_queue_drains_with_its_dlq_redriven(monkeypatch) -> None:
    depths = {"inbound": 0, "dlq": 2}
    redrives = _queues(monkeypatch, depths, ["complete"])
    inbound_dlq = DeadLetterQueue("InboundDeadLetterQueue", "dlq", "arn:dlq", "inbound", "arn:inbound")
    assert soak._drain_inbound(None, "inbound", [inbound_dlq]) == 2 and redrives == ["dlq"]


def test_the_inbound_drain_gives_up_after_its_time(monkeypatch, clock: _Clock) -> None:
    _queues(monkeypatch, {"inbound": 5}, ["complete"])
    assert soak._drain_inbound(None, "inbound", []) == 0
    assert clock.now == soak.INBOUND_DRAIN


def test_a_broken_run_keeps_the_functions_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(soak, "ROOT", tmp_path)
    log = tmp_path / "functions.log"
    log.write_text("the functions' output\n")
    # A run whose invariants held keeps nothing
    held: dict[str, Any] = {"invariants": {"sent_twice": 0, "notice_final": True}}
    soak._keep_logs_if_broken(held, log)
    assert "function_logs" not in held and not (tmp_path / "test-artifacts").exists()
    # One that broke one says where the log went
    broken: dict[str, Any] = {"invariants": {"sent_twice": 2, "notice_final": True}}
    soak._keep_logs_if_broken(broken, log)
    assert Path(broken["function_logs"]).read_text() == "the functions' output\n"
    # And a run that never got to its result keeps the log too
    soak._keep_logs_if_broken({}, log)
    assert len(list((tmp_path / "test-artifacts").iterdir())) >= 1


@pytest.mark.parametrize("broken", [{"sent_twice": 1}, {"notice_final": False}])
def test_one_broken_count_or_a_false_flag_keeps_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broken: dict[str, Any]
) -> None:
    # 1 == True and False == 0 in Python: a check by equality would call these held
    monkeypatch.setattr(soak, "ROOT", tmp_path)
    log = tmp_path / "functions.log"
    log.write_text("the functions' output\n")
    result: dict[str, Any] = {"invariants": {"sent_twice": 0, "notice_final": True, **broken}}
    soak._keep_logs_if_broken(result, log)
    assert Path(result["function_logs"]).read_text() == "the functions' output\n"
