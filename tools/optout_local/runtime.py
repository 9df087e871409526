"""Call the template's handlers in this process: for the integration tests' speed, never the real path.

In-process, the handlers see the development venv and every function's environment at once,
with tracing off and no Lambda limits, so nothing here can stand in for how a function runs in
AWS: that is :mod:`optout_local.lambda_runtime`, which every path claiming "the local stack"
uses (``make run``, the e2e tests, ``optout invoke``, the bench and the soak). What stays here is
one fake context, the functions' environment from the template, and handler modules loaded from
``functions/<name>/app.py``, so integration tests can call a handler a thousand times a second.

What it does hold to: each handler called here makes its calls with its own function's role, and
the local IAM authorizes each as the local stack does (:mod:`optout_local.iam.in_process`).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from optout_local.provision import ACCOUNT_ID, FunctionSpec, Stack

Handler = Callable[[dict[str, Any], Any], Any]
_modules: dict[str, ModuleType] = {}
_lock = threading.Lock()


@dataclass
class LambdaContext:
    function_name: str = "optout-local-function"
    memory_limit_in_mb: int = 512
    timeout_seconds: int = 10
    region: str = "us-east-1"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds
        self.invoked_function_arn = f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{self.function_name}"
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = f"local/{self.aws_request_id}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def context_for(spec: FunctionSpec, region: str) -> LambdaContext:
    return LambdaContext(function_name=spec.name, timeout_seconds=spec.timeout, region=region)


def apply_environment(stack: Stack, extra: Mapping[str, str]) -> None:
    """Put every function's template environment (and ``extra``) into this process.

    All functions share one process locally, so a variable declared with two different values
    by two functions is an error rather than a silent surprise.
    """
    merged: dict[str, str] = {}
    for spec in stack.functions.values():
        for key, value in spec.environment.items():
            if key in extra:
                continue
            if key in merged and merged[key] != value:
                raise ValueError(f"{key} differs between functions; the local stack runs them in one process")
            merged[key] = value
    os.environ.update(merged)
    os.environ.update(extra)
    reset_layer_caches()


@contextmanager
def in_process_stack(
    extra: Mapping[str, str] | None = None, region: str = "us-east-1", template: Path | None = None
) -> Iterator[Stack]:
    """moto in this process, every resource of template.yaml in it, the functions' environment set.

    For the tests, the bench, the soak and the OpenAPI document. Each function's role is created
    from the template as the local stack creates it, and a handler loaded with ``load_handler``
    makes its calls with it, authorized by the local IAM. The process environment and the layer's
    caches are put back afterwards.
    """
    import boto3
    from moto import mock_aws

    from optout.core import clients
    from optout_local import moto_patches
    from optout_local.iam.in_process import InProcessIam, create_roles
    from optout_local.provision import Provisioner

    moto_patches.apply()
    saved = dict(os.environ)
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=region)  # noqa: S106  # nosec B106
    os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    iam: InProcessIam | None = None
    try:
        with mock_aws():
            session = boto3.session.Session(region_name=region)
            provisioner = Provisioner(session, None, region, template_path=template, roles=False)
            stack = provisioner.provision()
            create_roles(provisioner, ACCOUNT_ID)
            apply_environment(
                stack, {"AWS_REGION": region, "OPTOUT_PUBLIC_BASE_URL": LOCAL_PUBLIC_URL, **(extra or {})}
            )
            iam = InProcessIam(stack, region, ACCOUNT_ID, session.client("sts"))
            iam.install(reset_layer_caches, clients._session)  # the layer's one session (private: tools only)
            yield stack
    finally:
        if iam is not None:
            iam.uninstall()
        os.environ.clear()
        os.environ.update(saved)
        reset_layer_caches()


LOCAL_PUBLIC_URL = "https://optout.example.test"


def reset_layer_caches() -> None:
    """Forget settings, services, clients and secrets the layer built (after the environment changed)."""
    from optout import wiring

    wiring.reset()


def load_handler(spec: FunctionSpec) -> Handler:
    """The function's handler, called as the function: with its role, in an ``in_process_stack`` only."""
    from optout_local.iam.in_process import running_as

    module_name, _, attribute = spec.handler.rpartition(".")
    key = f"optout_fn_{spec.logical_id}"
    with _lock:
        module = _modules.get(key)
        if module is None:
            path = spec.code_dir / (module_name.replace(".", "/") + ".py")
            import_spec = importlib.util.spec_from_file_location(key, path)
            if import_spec is None or import_spec.loader is None:
                raise ImportError(f"cannot load {path}")
            module = importlib.util.module_from_spec(import_spec)
            sys.modules[key] = module
            import_spec.loader.exec_module(module)
            _modules[key] = module
    handler: Handler = getattr(module, attribute)
    return running_as(spec.logical_id, handler)


def invoke(stack: Stack, logical_id: str, event: dict[str, Any]) -> Any:
    spec = stack.functions[logical_id]
    return load_handler(spec)(event, context_for(spec, stack.resolver.region))
