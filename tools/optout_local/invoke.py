"""``optout invoke``: one function, one event, like ``sam local invoke`` but without Docker.

The function runs on the local Lambda runtime (an environment of its own, from the built layer,
with the template's environment and tracing). With a local stack running it uses that stack's
resources; otherwise it starts the local AWS on a free port, provisions the template into it, and
invokes there. Function logs go to stderr and the result alone to stdout, as ``sam local invoke`` does.
"""

from __future__ import annotations

import socket
import sys
from dataclasses import replace
from typing import Any

from optout_local.lambda_runtime import InvocationError, LocalLambda
from optout_local.provision import Stack
from optout_local.stack import LocalConfig, LocalStack, free_port, role_sessions


def _stack_running(config: LocalConfig) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((config.host, config.aws_port)) == 0


def _run(stack: Stack, config: LocalConfig, function: str, event: dict[str, Any]) -> Any:
    spec = stack.function(function)
    runtime = LocalLambda(
        {spec.logical_id: spec}, config.region, config.aws_environment(), logs=sys.stderr,
        sessions=role_sessions(config, stack),
    )  # fmt: skip
    try:
        return runtime.invoke(spec.logical_id, event)
    except InvocationError as exc:
        return exc.payload  # what `aws lambda invoke` writes for a function error
    finally:
        runtime.close()


def invoke_once(function: str, event: dict[str, Any], config: LocalConfig) -> Any:
    if _stack_running(config):
        return _run(config.locate(), config, function, event)
    # No stack: the local AWS alone, in its own process as `optout local` runs it (its IAM, its
    # enforcement), on a free port and with nothing kept
    config = replace(config, aws_port=free_port(), state_dir=None)
    aws = LocalStack(config, logs=sys.stderr)
    try:
        return _run(aws.start_aws(), config, function, event)
    finally:
        aws.stop()
