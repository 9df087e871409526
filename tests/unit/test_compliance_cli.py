"""`optout compliance report` against a fake admin API: a page it could not serve is asked again, a
refusal is not, and breaches exit 4 (1 stays "the report could not be made")."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click
import pytest
from click.testing import CliRunner

from optout_local import compliance_cli

T = datetime(2026, 11, 30, 12, tzinfo=UTC).isoformat()
SEND = {"notice_id": "n1", "topic": "product", "decision": "sent", "at": T, "decided_at": T, "in_force": True}
ENTRY = {"subject": "ab" * 8, "channel": "email", "action": "opt_out", "scope": "product", "source": "one_click",
         "received_at": T, "in_force_at": T, "honour_seconds": 0.0}  # fmt: skip


class _Admin:
    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.requests = 0

    def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        self.requests += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        return {"items": [], "next_token": None}  # the notice list


class _Target:
    def __init__(self, admin: _Admin) -> None:
        self._admin = admin

    def admin(self) -> _Admin:
        return self._admin


def _run(monkeypatch: pytest.MonkeyPatch, answers: list[Any]) -> tuple[Any, _Admin]:
    admin = _Admin(answers)
    monkeypatch.setattr(compliance_cli, "resolve_target", lambda *a: _Target(admin))
    monkeypatch.setattr(compliance_cli.time, "sleep", lambda s: None)
    return CliRunner().invoke(compliance_cli.compliance, ["report", "--json"]), admin


def page(*entries: dict[str, Any]) -> tuple[int, Any]:
    return 200, {"items": list(entries), "addresses": len(entries), "next_token": None}


def test_a_page_the_api_could_not_serve_is_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    busy = (503, {"error": {"code": "try_again", "message": "later"}})
    result, admin = _run(monkeypatch, [busy, click.ClickException("cannot reach"), page(ENTRY)])
    assert result.exit_code == 0, result.output
    assert admin.requests == 3


def test_a_refusal_is_not_asked_again_and_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    result, admin = _run(monkeypatch, [(400, {"error": {"code": "bad_page_token", "message": "no"}})])
    assert result.exit_code == 1 and "400 bad_page_token: no" in result.output and admin.requests == 1


def test_breaches_exit_4(monkeypatch: pytest.MonkeyPatch) -> None:
    result, _ = _run(monkeypatch, [page({**ENTRY, "sends_after": [SEND]})])
    assert result.exit_code == 4 and '"sends_after_in_force": 1' in result.output
