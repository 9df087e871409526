"""The local IAM for moto in this process: a handler called here makes its calls as its function's role.

The local stack authorizes in the moto process (:class:`~optout_local.iam.enforce.Gatekeeper` in
front of moto's WSGI app). The integration tests run moto in their own process (``mock_aws``) and
call the handlers directly, for speed; without this, nothing would authorize those calls and a
grant missing from a path only they cover would go unseen. Here the same gatekeeper (same
request mapping, policies, resource policies and KMS checks, same AccessDenied answers) wraps
moto's stubber in botocore's ``before-send``, so a denied request never reaches moto, and:

- **who** is read off the signed request, as in the moto process. A handler called through
  :func:`running_as` signs with its function's role session (``sts:AssumeRole``, as Lambda gives
  its environments): the layer's botocore session signs with :class:`InvocationCredentials`,
  which are that session's during the call and the administrator's (the environment's) otherwise. So
  the tests' own calls, to set state up and read it back, stay the administrator's, and a
  handler's calls are its role's;
- a handler's call signed otherwise (a client the test built and handed in) would bypass the
  check, so it is refused and kept in :attr:`InProcessIam.stray`, which the fixtures assert empty;
- every decision feeds ``OPTOUT_IAM_USAGE`` as the stack's do, so ``optout iam report --check``
  counts what the in-process tests used.

The event source mappings' calls are played by :meth:`InProcessIam.poll` (the tests hand its
records to the handlers), with the consuming function's role; SES and End User Messaging
publishing to their topics by :meth:`InProcessIam.deliver`, as their service principals; and
SNS's deliveries to SQS are checked as in the moto process.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from botocore.credentials import Credentials, ReadOnlyCredentials

from optout_local.iam.enforce import ADMIN_KEYS, Gatekeeper, Usage, access_key_of
from optout_local.iam.roles import Credentials as RoleCredentials
from optout_local.iam.roles import RoleSessions

Handler = Callable[[Any, Any], Any]
T = TypeVar("T")


@dataclass(frozen=True)
class _Invocation:
    function: str  # logical id
    credentials: RoleCredentials


# The invocation this thread (or task) is in: a context variable, so concurrent handler calls in
# the tests' threads each sign as their own function
_current: ContextVar[_Invocation | None] = ContextVar("optout_local_invocation", default=None)
_installed: list[InProcessIam] = []  # at most one: the in-process stack's
_usages: dict[str, Usage] = {}
_lock = threading.Lock()


class StrayCall(RuntimeError):
    """A handler made a call not signed with its function's role: nothing would have authorized it."""


class InvocationCredentials(Credentials):
    """botocore credentials that are the current invocation's role session, else the administrator's.

    botocore's signer asks ``get_frozen_credentials()`` for each request, so one client signs each
    call with whoever is calling, as each Lambda environment's clients sign with its own role.
    """

    def __init__(self, admin: ReadOnlyCredentials) -> None:  # no super().__init__: the keys are properties
        self._admin = admin
        self.method = "optout-local-invocation"
        self.account_id = None

    def get_frozen_credentials(self) -> ReadOnlyCredentials:
        invocation = _current.get()
        if invocation is None:
            return self._admin
        held = invocation.credentials
        return ReadOnlyCredentials(held.access_key_id, held.secret_access_key, held.session_token)

    # botocore's Credentials has plain attributes; here they follow the invocation
    @property
    def access_key(self) -> str:  # type: ignore[override]
        return str(self.get_frozen_credentials().access_key)

    @property
    def secret_key(self) -> str:  # type: ignore[override]
        return str(self.get_frozen_credentials().secret_key)

    @property
    def token(self) -> str | None:  # type: ignore[override]
        token = self.get_frozen_credentials().token
        return None if token is None else str(token)


class _Resolver:
    """What a botocore session asks for credentials (its ``credential_provider`` component)."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials

    def load_credentials(self) -> Credentials:
        return self.credentials


def usage() -> Usage:
    """One record of use per folder for this process (``OPTOUT_IAM_USAGE``; none: in memory)."""
    folder = os.environ.get("OPTOUT_IAM_USAGE", "")
    with _lock:
        if folder not in _usages:
            _usages[folder] = Usage(Path(folder) if folder else None)
        return _usages[folder]


class InProcessIam:
    """The gatekeeper for moto in this process, and the functions' role sessions."""

    def __init__(self, stack: Any, region: str, account: str, sts: Any) -> None:
        self.stack, self.region, self.account = stack, region, account
        names = {logical_id: spec.name for logical_id, spec in stack.functions.items()}
        # The administrator's keys: the stack's own, and the fake ones mock_aws puts in the
        # environment (the tests' clients and the layer's outside an invocation sign with them)
        admin_keys = ADMIN_KEYS | {os.environ.get("AWS_ACCESS_KEY_ID", "testing")}
        self.gatekeeper = Gatekeeper(region, account, usage(), frozenset(admin_keys))
        self.sessions = RoleSessions(sts, stack.roles, names, account)
        self.stray: list[str] = []

    # --- installing ---------------------------------------------------------------------

    def install(self, reset_layer: Callable[[], None], layer_session: Callable[[], Any]) -> None:
        """Authorize every request botocore sends from now on, and have the layer sign as the invocation.

        ``reset_layer`` forgets the layer's clients and session; ``layer_session`` then makes the
        botocore session its clients come from, after the hook is in botocore's handler list, so
        it has the hook, and before any client, so every client signs with these credentials.
        """
        from botocore.handlers import BUILTIN_HANDLERS
        from moto.core.botocore_stubber import BotocoreStubber

        if _installed:
            raise RuntimeError("the in-process local IAM is installed already (one in-process stack at a time)")
        for index, entry in enumerate(BUILTIN_HANDLERS):
            if isinstance(entry[1], BotocoreStubber):
                # botocore runs every before-send handler and keeps the first answer, so a denial
                # must keep moto from running the call at all: the check wraps moto's stubber.
                # Every session made from now on has it: the layer's, and the tests' own
                BUILTIN_HANDLERS[index] = ("before-send", _Guarded(entry[1]))
        if not any(isinstance(entry[1], _Guarded) for entry in BUILTIN_HANDLERS):
            raise RuntimeError("moto's botocore stubber is not among botocore's handlers: is moto imported?")
        from optout_local.iam import deliveries

        # SNS to SQS inside moto, checked as the moto process checks it (once a process: a patch)
        deliveries.patch_sns_to_sqs(self.region, self.account, usage(), active=lambda: bool(_installed))
        reset_layer()
        admin = ReadOnlyCredentials(
            os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"], os.environ.get("AWS_SESSION_TOKEN")
        )
        credentials = InvocationCredentials(admin)
        session = layer_session()
        session.register_component("credential_provider", _Resolver(credentials))
        if session.get_credentials() is not credentials:
            raise RuntimeError("the layer's botocore session had its credentials already")
        _installed.append(self)

    def uninstall(self) -> None:
        if self in _installed:
            _installed.remove(self)

    # --- running as a function ------------------------------------------------------------

    @contextmanager
    def running(self, function: str) -> Iterator[None]:
        """Calls made in this context are made with ``function``'s role session."""
        invocation = _Invocation(function, self.sessions.credentials(function))
        # The tests' own clients may predate the hook (a boto3 default session), so their
        # administrator's changes may not have reached the gatekeeper: it starts each call afresh
        self.gatekeeper.forget()
        token = _current.set(invocation)
        try:
            yield
        finally:
            _current.reset(token)

    def poll(self, queue: str, *, delete: bool = False) -> list[dict[str, Any]]:
        """One receive from ``queue`` (a logical id) as its event source mapping makes it, as Lambda's records.

        Lambda's poller receives, and deletes what the function handled, with the function's
        role: ``sqs:ReceiveMessage``, ``sqs:DeleteMessage``, and ``kms:Decrypt`` on a customer-key
        queue. ``delete``: delete what was received at once (for a batch the test expects to pass).
        """
        from optout.core import clients
        from optout_local.pollers import sqs_record

        arn = self.stack.resolver.attrs[(queue, "Arn")]
        url = self.stack.ref(queue)
        (function,) = {source.function for source in self.stack.queue_sources if source.queue_arn == arn}
        with self.running(function):
            sqs = clients.client("sqs")  # the layer's session: the one that signs as the running function
            messages: list[dict[str, Any]] = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"]
            ).get("Messages", [])
            if delete and messages:
                entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
                sqs.delete_message_batch(QueueUrl=url, Entries=entries)
        return [sqs_record(m, arn, self.region) for m in messages]

    def deliver(self, principal: str, source_arn: str, topic: str, message: str) -> dict[str, Any]:
        """Publish ``message`` to ``topic`` (a logical id) as an AWS service does: if its policy (and key's) let it.

        As the local stack's ``/_local/deliver``: ``ses.amazonaws.com`` from a configuration set,
        ``sms-voice.amazonaws.com`` from a phone number or pool. ``{"delivered": bool, ...}``.
        """
        from optout_local.iam import deliveries

        topic_arn = str(self.stack.ref(topic))
        return deliveries.deliver(principal, source_arn, topic_arn, message, self.region, self.account, usage())

    def answer(self, request: Any) -> Any:
        """None when ``request`` may go on to moto; else the AccessDenied answer AWS would give."""
        from botocore.awsrequest import AWSResponse
        from botocore.compat import HTTPHeaders
        from moto.core.botocore_stubber import MockRawResponse

        url = urlsplit(request.url)
        headers = {str(k).lower(): v.decode("latin-1") if isinstance(v, bytes) else str(v) for k, v in
                   request.headers.items()}  # fmt: skip
        headers.setdefault("host", url.netloc)
        invocation = _current.get()
        if invocation is not None:
            found = access_key_of(headers, url.query)
            if found is None or found[0] != invocation.credentials.access_key_id:
                message = (
                    f"{invocation.function} made a call to {url.netloc} not signed with its role session "
                    "(a client built outside the layer?): nothing would authorize it"
                )
                self.stray.append(message)
                raise StrayCall(message)
        body = request.body
        if isinstance(body, str):
            body = body.encode()
        elif not isinstance(body, bytes | bytearray):
            body = b""  # a stream (S3 uploads): S3's checks read the path and headers, not the body
        denied = self.gatekeeper.authorize(
            request.method, (url.path or "/") + (f"?{url.query}" if url.query else ""), headers, bytes(body)
        )
        if denied is None:
            return None
        status, answer_headers, payload = denied
        headers_out = HTTPHeaders()
        for name, value in answer_headers:
            headers_out[name] = value
        return AWSResponse(request.url, status, headers_out, MockRawResponse(payload))


def create_roles(provisioner: Any, account: str) -> None:
    """Each function's role, expanded from the template and created as the local stack does it.

    moto's IAM holds the AWS managed policies the roles attach only when it loads all of them
    (``MOTO_IAM_LOAD_MANAGED_POLICIES``, as the moto process does): over a second for each
    test's fresh moto. Here it gets just those the roles attach, from moto's own copy of them.
    """
    from moto.iam.models import AWSManagedPolicy, iam_backends

    from optout_local.iam import roles

    resolver = provisioner.resolver
    stack = provisioner.stack
    stack.roles = roles.expand(provisioner.template, dict(resolver.parameters), resolver, resolver.region, account)
    backend = iam_backends[account]["aws"]
    for arn in {arn for role in stack.roles.values() for arn in role.managed}:
        if arn not in backend.managed_policies:
            name = arn.rsplit("/", 1)[-1]
            policy = AWSManagedPolicy.from_data(name, account, resolver.region, _aws_managed_policies()[name])
            backend.aws_managed_policies.append(policy)
            backend.managed_policies[policy.arn] = policy
    roles.create(provisioner.client("iam"), stack.roles)


@functools.cache
def _aws_managed_policies() -> dict[str, Any]:
    import json

    from moto.iam.aws_managed_policies import aws_managed_policies_data

    data: dict[str, Any] = json.loads(aws_managed_policies_data)
    return data


class _Guarded:
    """moto's botocore stubber behind the local IAM: a denied request never reaches moto."""

    def __init__(self, stubber: Any) -> None:
        self.stubber = stubber

    def __call__(self, event_name: str, request: Any, **kwargs: Any) -> Any:
        if _installed:
            denied = _installed[0].answer(request)
            if denied is not None:
                return denied
        return self.stubber(event_name, request, **kwargs)


def installed() -> InProcessIam:
    if not _installed:
        raise RuntimeError(
            "a handler called in this process outside runtime.in_process_stack: nothing would authorize its calls"
        )
    return _installed[0]


def run_as(function: str, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``call(*args, **kwargs)`` with ``function``'s role session: domain code a test drives directly."""
    with installed().running(function):
        return call(*args, **kwargs)


def running_as(function: str, handler: Handler) -> Handler:
    """``handler`` called as ``function``: each call with that function's role session."""

    @functools.wraps(handler)
    def as_function(event: Any, context: Any) -> Any:
        with installed().running(function):
            return handler(event, context)

    return as_function
