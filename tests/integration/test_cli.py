"""CLI commands that need no running stack."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from optout_local.cli import main
from optout_local.stack import free_port


def test_invoke_without_a_running_stack_uses_an_embedded_moto(monkeypatch) -> None:
    # Given no local stack on the configured port
    monkeypatch.setenv("OPTOUT_AWS_PORT", str(free_port()))
    # When a sample event is invoked (its token is well-formed but signed by no key of this stack)
    result = CliRunner().invoke(main, ["invoke", "UnsubscribeFunction", "--event", "events/unsubscribe_get.json"])
    # Then the function ran against a freshly provisioned moto and refused the token with a page
    assert result.exit_code == 0, result.output
    response = json.loads(result.stdout)
    assert response["statusCode"] == 403
    assert "This link cannot be used" in response["body"]


FUNCTIONS = sorted(p.parent.name for p in Path("functions").glob("*/app.py"))


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_function_runs_its_own_sample_event_on_the_local_runtime(function: str, monkeypatch) -> None:
    # Given each function's sample event, named after it
    (event,) = sorted(Path("events").glob(f"{function}_*.json"))[:1]
    monkeypatch.setenv("OPTOUT_AWS_PORT", str(free_port()))
    # When optout invoke runs it
    result = CliRunner().invoke(main, ["invoke", function, "--event", str(event)])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    # Then it ran in an environment of its own, cold, and answered as a handler does (no import error)
    assert "Init Duration" in result.stderr and "REPORT RequestId" in result.stderr
    assert answer.get("errorType") not in ("Runtime.ImportModuleError", "ModuleNotFoundError"), answer
    assert "statusCode" in answer or "batchItemFailures" in answer or answer.get("errorType") == "BatchProcessingError"


def test_invoke_names_the_functions_when_one_is_unknown(monkeypatch) -> None:
    monkeypatch.setenv("OPTOUT_AWS_PORT", str(free_port()))
    result = CliRunner().invoke(main, ["invoke", "Nope", "--event", "events/unsubscribe_get.json"])
    assert result.exit_code == 1
    assert "no function 'Nope'" in result.output and "UnsubscribeFunction" in result.output


def test_link_without_a_running_stack_says_how_to_start_one(monkeypatch) -> None:
    monkeypatch.setenv("OPTOUT_AWS_PORT", str(free_port()))
    result = CliRunner().invoke(main, ["link", "email", "a@example.com", "--topic", "product"])
    assert result.exit_code == 1
    assert "make run" in result.output


def test_version_is_the_installed_package_version() -> None:
    from importlib.metadata import version

    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.output == f"optout {version('optout')}\n"


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    found: list[tuple[tuple[str, ...], click.Command]] = []
    for name, command in sorted(group.commands.items()):
        found.append(((*path, name), command))
        if isinstance(command, click.Group):
            found += _commands(command, (*path, name))
    return found


def test_every_command_and_option_says_what_it_is_for() -> None:
    missing = [
        f"{' '.join(path)} {'/'.join(p.opts)}"
        for path, command in _commands(main)
        for p in command.params
        if isinstance(p, click.Option) and not p.help
    ]
    missing += [" ".join(path) for path, command in _commands(main) if not (command.help or "").strip()]
    assert missing == []
