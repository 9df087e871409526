"""Build what a function runs with, as ``sam build`` and the Lambda runtime provide it.

- **The layers** the template gives a function (``Globals.Function.Layers``, ``Layers``): each is
  its ``ContentUri``, with its ``requirements.txt`` installed by pip for this machine's platform
  into a build folder of its own. The folder is rebuilt when the pins (or the interpreter) change.
- **The runtime's own SDK**: boto3 and botocore at the version the Lambda ``python3.13`` runtime
  ships (``requirements/lambda-runtime.txt`` says where the figure comes from), installed apart,
  after the layers on the path, as in Lambda.
- **Bytecode, as the deployed layer ships it.** Lambda mounts a layer read-only, so a module
  without a ``.pyc`` is compiled again in every cold start (two to three times the import time of
  these packages). The layer's Makefile (``sam build``) therefore compiles it, and so does this
  build: ``compileall --invalidation-mode unchecked-hash``, since a built folder never changes
  and a zip's 2-second mtimes could make timestamp-checked ``.pyc`` look stale. The layer's own
  package runs from the source tree here, so it is compiled in place with timestamps (an edit
  then invalidates it). Workers write no bytecode (``lambda_bootstrap``), as on Lambda's read-only
  disk: what the build did not compile is compiled in every cold start, as it is there.

Nothing from the development venv is on a function's path: workers are started with ``-I -S``
and get exactly the path built here.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess  # nosec B404 - runs pip with our own interpreter
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from optout_local.template import ROOT

BUILD_DIR = ROOT / "build" / "lambda"
RUNTIME_REQUIREMENTS = ROOT / "requirements" / "lambda-runtime.txt"
LAMBDA_PYTHON = (3, 13)
# Part of every build folder's digest: a folder built another way is rebuilt, never reused
BUILD_FORMAT = b"pip --no-compile; compileall --invalidation-mode unchecked-hash"


class BuildError(RuntimeError):
    pass


def lambda_python() -> Path:
    """The python3.13 interpreter workers run on (Lambda's runtime), not the venv's."""
    candidates: list[Path] = []
    if sys.version_info[:2] == LAMBDA_PYTHON:
        candidates.append(Path(getattr(sys, "_base_executable", sys.executable)))
    wanted = "python{}.{}".format(*LAMBDA_PYTHON)
    found = shutil.which(wanted)
    if found:
        candidates.append(Path(found))
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    candidates.extend(sorted(root.glob(f"versions/{LAMBDA_PYTHON[0]}.{LAMBDA_PYTHON[1]}.*/bin/{wanted}"), reverse=True))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise BuildError(f"the local Lambda runtime needs {wanted} (Lambda's python3.13 runtime); none was found")


@dataclass(frozen=True)
class BuiltLayer:
    """One layer as Lambda mounts it under /opt: its content, and its pinned packages."""

    content: Path
    packages: Path

    @property
    def paths(self) -> tuple[Path, ...]:
        # /opt/python holds both in Lambda; here the packages are built apart from the live source
        return (self.packages, self.content)


@dataclass(frozen=True)
class BuiltRuntime:
    python: Path
    layers: tuple[BuiltLayer, ...]
    sdk: Path

    def sys_path(self, code_dir: Path) -> list[str]:
        """A function's path, in Lambda's order: its code, its layers, the runtime's SDK, the stdlib."""
        paths = [str(code_dir)]
        for layer in self.layers:
            paths.extend(str(p) for p in layer.paths)
        paths.append(str(self.sdk))
        return paths


def _digest(python: Path, requirements: Path | None) -> str:
    version = subprocess.run(  # noqa: S603 - our interpreter  # nosec B603
        [str(python), "-c", "import sys, platform; print(sys.version, platform.machine())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pins = requirements.read_bytes() if requirements is not None else b"(no requirements)"
    return hashlib.sha256(version.encode() + BUILD_FORMAT + pins).hexdigest()


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # two stacks starting at once build once
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def install(python: Path, requirements: Path | None, base: Path) -> Path:
    """pip-install ``requirements`` into a folder named by their digest (built once, never replaced).

    A folder per digest, not one rebuilt in place: a stack still running on the old pins keeps
    importing from its own folder while another stack builds the new one.
    """
    digest = _digest(python, requirements)
    target = base.with_name(f"{base.name}-{digest[:12]}")
    stamp = target / ".optout-build-stamp"
    with _locked(target.parent):
        if stamp.is_file() and stamp.read_text() == digest:
            return target
        staging = target.with_name(target.name + ".staging")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        if requirements is not None:
            command = [
                str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input",
                "--no-compile", "--target", str(staging), "-r", str(requirements),
            ]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603  # nosec B603
            if done.returncode != 0:
                raise BuildError(f"building {target.name} from {requirements} failed:\n{done.stderr[-4000:]}")
            compile_bytecode(python, staging, "unchecked-hash", jobs=0)
        (staging / stamp.name).write_text(digest)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return target


def compile_bytecode(python: Path, folder: Path, mode: str, jobs: int = 1, strict: bool = True) -> None:
    """Compile every module under ``folder`` for ``python`` (``mode``: compileall's invalidation mode).

    An atomic write per file, so two stacks compiling the same tree at once do no harm. Not
    ``strict``: a module that does not compile is left to fail where it is imported, as in Lambda.
    """
    command = [str(python), "-m", "compileall", "-q", "-j", str(jobs), "--invalidation-mode", mode, str(folder)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603  # nosec B603
    if done.returncode != 0 and strict:
        raise BuildError(f"compiling {folder} failed:\n{(done.stdout + done.stderr)[-4000:]}")


def build_layer(content: Path, python: Path, build_dir: Path = BUILD_DIR) -> BuiltLayer:
    requirements = content / "requirements.txt"
    name = hashlib.sha256(str(content.resolve()).encode()).hexdigest()[:12]
    packages = install(
        python, requirements if requirements.is_file() else None, build_dir / f"layer-{content.name}-{name}"
    )
    # The live source, compiled as the deployed layer is; timestamps, so an edit is never run stale.
    # A syntax error here fails the functions that import it (Runtime.UserCodeSyntaxError), not the stack
    compile_bytecode(python, content, "timestamp", strict=False)
    return BuiltLayer(content.resolve(), packages)


def build_runtime(
    layer_contents: list[Path],
    build_dir: Path = BUILD_DIR,
    sdk_requirements: Path = RUNTIME_REQUIREMENTS,
) -> BuiltRuntime:
    """Build every layer in ``layer_contents`` and the runtime's SDK; reuse what is current."""
    python = lambda_python()
    layers = tuple(build_layer(content, python, build_dir) for content in layer_contents)
    sdk = install(python, sdk_requirements, build_dir / "runtime-sdk")
    return BuiltRuntime(python, layers, sdk)
