"""`optout notice send` as a newcomer expects it: bad manifests refused before a notice exists, a dry
run that waits and says what would happen, the id printed before waiting, and exit codes that say
how it ended. The admin API is a fake here: what it answers is what each case is about."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from optout_local import notice_cli

POLICY = ["--policy-version", "2026-12-01", "--effective-date", "2026-12-31", "--summary", "s",
          "--policy-url", "https://example.com/p"]  # fmt: skip


class _Admin:
    def __init__(self, statuses: list[str]) -> None:
        self.statuses = statuses
        self.calls: list[tuple[str, str]] = []

    def ok(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        self.calls.append((method, path))
        status = (
            "queued" if method == "POST" else (self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0])
        )
        return {"id": "ntc_1", "kind": "policy_change", "topic": "policy", "channels": ["email"], "mode": "all",
                "status": status, "total": 1, "counts": {"recipients": {}}, "dry_run": False}  # fmt: skip


class _S3:
    def upload_file(self, *args: Any) -> None:
        pass


class _Target:
    bucket = "b"

    def __init__(self, admin: _Admin) -> None:
        self._admin = admin

    def admin(self) -> _Admin:
        return self._admin

    def clients(self, service: str) -> _S3:
        return _S3()


@pytest.fixture
def admin(monkeypatch: pytest.MonkeyPatch) -> _Admin:
    fake = _Admin(["complete"])
    monkeypatch.setattr(notice_cli, "_target", lambda *a: _Target(fake))
    monkeypatch.setattr(notice_cli.time, "sleep", lambda s: None)
    return fake


def _send(tmp_path: Path, body: str, *args: str, name: str = "m.csv") -> Any:
    manifest = tmp_path / name
    manifest.write_text(body)
    command = ["send", "policy-change", "--manifest", str(manifest), *POLICY, *args]
    return CliRunner().invoke(notice_cli.notice, command)


@pytest.mark.parametrize(
    ("body", "name", "said"),
    [
        ("", "m.csv", "lists no usable recipient"),
        ("email\na@example.com\n", "m.csv", "the header has no recipient_id column (line 1)"),
        ("recipient_id,email\n\n", "m.csv", "lists no usable recipient"),
        ("recipient_id,email\n,a@example.com\n", "m.csv", "lists no usable recipient (line 2:"),
        ('{"email": "a@example.com"}\n', "m.jsonl", "lists no usable recipient (line 1:"),
    ],
)
def test_a_manifest_with_no_usable_recipient_is_refused_before_a_notice_exists(
    admin: _Admin, tmp_path: Path, body: str, name: str, said: str
) -> None:
    result = _send(tmp_path, body, name=name)
    assert result.exit_code == 2 and said in result.output
    assert admin.calls == []  # nothing created


def test_a_dry_run_waits_unless_told_not_to(admin: _Admin, tmp_path: Path) -> None:
    waited = _send(tmp_path, "recipient_id,email\nu1,a@example.com\n", "--dry-run")
    assert waited.exit_code == 0 and ("GET", "/admin/notices/ntc_1") in admin.calls
    admin.calls.clear()
    not_waited = _send(tmp_path, "recipient_id,email\nu1,a@example.com\n", "--dry-run", "--no-wait")
    assert not_waited.exit_code == 0 and admin.calls == [("POST", "/admin/notices")]


def test_with_json_the_id_comes_first_on_stderr_and_stdout_is_one_document(admin: _Admin, tmp_path: Path) -> None:
    result = _send(tmp_path, "recipient_id,email\nu1,a@example.com\n", "--wait", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["status"] == "complete"
    assert result.stderr.startswith("notice ntc_1 queued")


def test_a_failed_notice_exits_1_and_a_timeout_exits_3(admin: _Admin, tmp_path: Path) -> None:
    admin.statuses[:] = ["dispatching", "failed"]
    failed = _send(tmp_path, "recipient_id,email\nu1,a@example.com\n", "--wait")
    assert failed.exit_code == 1 and "status      failed" in failed.stdout
    admin.statuses[:] = ["sending"]
    late = _send(tmp_path, "recipient_id,email\nu1,a@example.com\n", "--wait", "--timeout", "1")
    assert late.exit_code == 3 and "optout notice status ntc_1 --wait" in late.stderr
    # and without waiting, nothing is judged
    assert _send(tmp_path, "recipient_id,email\nu1,a@example.com\n").exit_code == 0


def test_waiting_on_a_notice_with_texts_held_for_quiet_hours_says_until_when() -> None:
    from datetime import UTC, datetime

    from optout_local.notice_cli import _deferred_until, _progress_line

    now = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
    document = {
        "status": "dispatched", "total": 3, "counts": {"recipients": {"sent": 2, "deferred": 1}},
        "deferred_until": ["2026-12-03T08:00:00Z", "2026-12-03T16:00:00Z", "2026-12-03T13:00:00+00:00"],
    }  # fmt: skip
    # The last of the held texts that is still to come
    assert _deferred_until(document, now) == datetime(2026, 12, 3, 16, 0, tzinfo=UTC)
    # Nothing held: nothing said, whatever times the notice kept
    assert _deferred_until({**document, "counts": {"recipients": {"sent": 3, "deferred": 0}}}, now) is None
    # The progress line names the time (the times above are in the future of the real clock, too)
    later = {**document, "deferred_until": ["2999-01-01T08:00:00Z"]}
    assert _progress_line(later).endswith("; deferred until 2999-01-01 08:00 UTC")
    assert "deferred until" not in _progress_line({**document, "deferred_until": []})
