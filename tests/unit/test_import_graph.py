"""The layer is one folder per bounded context, and imports between them point one way.

The contract is ``[tool.importlinter]`` in pyproject.toml (import-linter's layers contract, which
counts lazy and type-checking imports too); these tests run it, show it refuses an upward import,
and keep every context listed in it and in the README's layout table.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "layers" / "optout" / "optout"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _layers() -> list[list[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["tool"]["importlinter"]
    (contract,) = config["contracts"]
    return [[name.strip() for name in row.split("|")] for row in contract["layers"]]


def _lint_imports(layer_parent: Path) -> subprocess.CompletedProcess[str]:
    # the layer found first on the path is the one analysed (the dev venv's editable install
    # finds the repository's only after the path)
    return subprocess.run(  # our own venv's tool on our own code
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", "--config", str(ROOT / "pyproject.toml")],
        cwd=layer_parent,
        env={"PATH": str(LINT_IMPORTS.parent), "PYTHONPATH": str(layer_parent)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_layer_keeps_the_contract() -> None:
    result = _lint_imports(LAYER.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "added"),
    [
        ("core/errors.py", "from optout.suppression import model\n"),
        ("channels/email.py", "def _render():\n    from optout.notices.render import bulk_template\n"),
        ("sms/inbound.py", "from optout.feedback import ses_events\n"),
        ("channels/sms.py", "if TYPE_CHECKING:\n    from optout.unsubscribe.token import KeyRing\n"),
        ("suppression/store.py", "def _status():\n    from optout.web.http import http_status\n"),
    ],
    ids=["upward", "lazy-upward", "sideways", "sideways-for-typing", "domain-to-http-edge"],
)
def test_an_upward_or_sideways_import_breaks_the_contract(tmp_path: Path, module: str, added: str) -> None:
    # Given a copy of the layer where one module imports what its row may not: core reaching up,
    # a channel reaching into notices inside a function, one context of a row into another (for
    # typing only, too), the suppression domain into the HTTP edge
    shutil.copytree(LAYER, tmp_path / "optout", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "optout" / module
    target.write_text(target.read_text("utf-8") + "\n\n" + added, "utf-8")
    # When the contract is checked
    result = _lint_imports(tmp_path)
    # Then it is broken, and the report names the importing module
    assert result.returncode == 1, result.stdout + result.stderr
    assert "BROKEN" in result.stdout
    assert "optout." + module.removesuffix(".py").replace("/", ".") in result.stdout


def test_every_context_is_in_the_contract() -> None:
    listed = {name for row in _layers() for name in row}
    present = {
        f"optout.{path.name}" for path in LAYER.iterdir() if path.is_dir() and (path / "__init__.py").exists()
    } | {f"optout.{path.stem}" for path in LAYER.glob("*.py") if path.name != "__init__.py"}
    assert present == listed


def test_the_readme_layout_table_names_every_context() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    where = re.findall(r"^\| (`layers/optout/optout/.*?) \|", readme, re.M)  # each row's first cell
    named = {
        re.sub(r"(/|\.py)$", "", path) for cell in where for path in re.findall(r"`layers/optout/optout/([^`]+)`", cell)
    }
    contexts = {name.removeprefix("optout.") for row in _layers() for name in row}
    assert named == contexts | {"templates", "locales", "config"}
