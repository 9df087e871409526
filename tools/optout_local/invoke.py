"""``optout invoke``: one function, one event, like ``sam local invoke`` but without Docker.

With a local stack running it uses that stack's resources; otherwise it starts moto in this
process, provisions the template into it, and invokes there.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from typing import Any

from optout_local.provision import Provisioner
from optout_local.runtime import apply_environment, invoke
from optout_local.stack import LocalConfig


def _stack_running(config: LocalConfig) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((config.host, config.aws_port)) == 0


def invoke_once(function: str, event: dict[str, Any], config: LocalConfig) -> Any:
    # Function logs go to stderr, the result alone to stdout, as sam local invoke does.
    with contextlib.redirect_stdout(sys.stderr):
        if _stack_running(config):
            stack = config.locate()
            apply_environment(stack, config.function_environment())
            return invoke(stack, stack.function(function).logical_id, event)
        from moto import mock_aws

        from optout_local import moto_patches

        moto_patches.apply()
        with mock_aws():
            os.environ.pop("AWS_ENDPOINT_URL", None)
            env = {k: v for k, v in config.function_environment().items() if k != "AWS_ENDPOINT_URL"}
            stack = Provisioner(config.session(), None, config.region, config.stack_name, config.template).provision()
            apply_environment(stack, env)
            return invoke(stack, stack.function(function).logical_id, event)
