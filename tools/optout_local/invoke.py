"""``optout invoke``: one function, one event, like ``sam local invoke`` but without Docker.

The function runs on the local Lambda runtime (an environment of its own, from the built layer,
with the template's environment and tracing). With a local stack running it uses that stack's
resources; otherwise it starts moto on a free port, provisions the template into it, and invokes
there. Function logs go to stderr and the result alone to stdout, as ``sam local invoke`` does.
"""

from __future__ import annotations

import socket
import sys
import urllib.request
from dataclasses import replace
from typing import Any

from optout_local.lambda_runtime import InvocationError, LocalLambda
from optout_local.provision import Provisioner, Stack
from optout_local.stack import LocalConfig, free_port


def _stack_running(config: LocalConfig) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((config.host, config.aws_port)) == 0


def _run(stack: Stack, config: LocalConfig, function: str, event: dict[str, Any]) -> Any:
    spec = stack.function(function)
    runtime = LocalLambda({spec.logical_id: spec}, config.region, config.aws_environment(), logs=sys.stderr)
    try:
        return runtime.invoke(spec.logical_id, event)
    except InvocationError as exc:
        return exc.payload  # what `aws lambda invoke` writes for a function error
    finally:
        runtime.close()


def invoke_once(function: str, event: dict[str, Any], config: LocalConfig) -> Any:
    if _stack_running(config):
        return _run(config.locate(), config, function, event)
    from moto.server import ThreadedMotoServer

    from optout_local import moto_patches

    moto_patches.apply()
    config = replace(config, aws_port=free_port())
    server = ThreadedMotoServer(ip_address=config.host, port=config.aws_port, verbose=False)
    server.start()
    reset = f"{config.aws_url}/moto-api/reset"  # moto's state is this process's: start and leave it empty
    urllib.request.urlopen(urllib.request.Request(reset, method="POST"), timeout=30).close()  # noqa: S310  # nosec B310
    try:
        stack = Provisioner(
            config.session(), config.aws_url, config.region, config.stack_name, config.template, config.parameters()
        ).provision()
        return _run(stack, config, function, event)
    finally:
        urllib.request.urlopen(urllib.request.Request(reset, method="POST"), timeout=30).close()  # noqa: S310  # nosec B310
        server.stop()
