"""The local AWS in a process of its own: moto, patched, on host:port.

`optout local` starts it as a child, so the emulator gets a core of its own instead of sharing one
interpreter lock with the gateway and the functions. The child stops on SIGTERM, and also when
its parent is gone, so a killed `optout local` leaves no port behind. Besides moto's own API it
serves what the stack sent, which only this process can see: ``GET /_local/outbox/email`` and
``GET /_local/outbox/sms``, as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from optout_local.provision import ACCOUNT_ID

OUTBOX = "/_local/outbox/"


def sent_sms(region: str) -> list[dict[str, str]]:
    """Every SMS the stack sent through SNS, oldest first."""
    from moto.sns.models import sns_backends

    backend = sns_backends[ACCOUNT_ID][region]
    return [{"message_id": mid, "to": to, "body": body} for mid, (to, body) in backend.sms_messages.items()]


def sent_email(region: str) -> list[dict[str, Any]]:
    """Every raw email the stack sent through SES, oldest first."""
    from moto.ses.models import ses_backends

    backend = ses_backends[ACCOUNT_ID][region]
    return [
        {"message_id": m.id, "source": m.source, "destinations": list(m.destinations), "raw": m.raw_data}
        for m in backend.sent_messages
        if hasattr(m, "raw_data")
    ]


def application(region: str) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    moto_app = DomainDispatcherApplication(create_backend_app)
    outboxes = {"email": sent_email, "sms": sent_sms}

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        if path.startswith(OUTBOX) and path.removeprefix(OUTBOX) in outboxes:
            body = json.dumps(outboxes[path.removeprefix(OUTBOX)](region)).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        return moto_app(environ, start_response)  # type: ignore[no-any-return]

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--parent", type=int, default=0, help="exit when this process is gone")
    args = parser.parse_args(argv)

    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import make_server

    from optout_local import moto_patches

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per AWS request on the console
    moto_patches.apply()
    server = make_server(args.host, args.port, application(args.region), True, request_handler=MotoRequestHandler)

    def shut_down(*_: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()  # not from the serving thread

    signal.signal(signal.SIGTERM, shut_down)
    signal.signal(signal.SIGINT, shut_down)

    def watch_parent() -> None:
        while args.parent and os.getppid() == args.parent:
            time.sleep(0.5)
        if args.parent:
            shut_down()

    threading.Thread(target=watch_parent, daemon=True).start()
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
