"""Authorize every request the local AWS receives, as AWS would: who calls, which actions on which resources.

This runs inside the moto process (``moto_process.application``), in front of moto:

1. **Who.** The SigV4 access key names the caller. The stack's own key (``testing``: the
   provisioner, the CLI, the tests' setup) is the account's administrator and passes, as an
   admin role would. A key of an ``sts:AssumeRole`` session is looked up in moto's STS; its
   session token must match, and the caller is that role session. Any other key is refused
   as AWS refuses an unknown key.
2. **What.** The request is read back from the wire into its operation and parameters, and
   from those into the IAM actions and resource ARNs AWS authorizes (``requests.checks``):
   the IAM action, not the API name (``TransactWriteItems`` is one ``PutItem``/``UpdateItem``/...
   per item), plus what the call implies (``kms:Decrypt`` to read a customer-key queue).
3. **Allowed?** Each check is evaluated (``policy.evaluate``) against the role's policies in
   moto's IAM, its inline and attached managed policies, and against the resource's own policy
   (queue, topic, key, bucket, secret). A denial answers with the AccessDenied error of that
   service and the request never reaches moto.

Every decision is recorded (``Usage``) so that ``optout iam report`` can show, per function,
what it was granted and what it used.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

FUNCTION_TAG = "optout:function"  # on each role: the logical id of the function it serves
TEMPLATE_TAG = "optout:template"  # and the digest of the template it was expanded from
ADMIN_KEYS = frozenset({"testing"})
SECURE = "aws:SecureTransport"
DECISION_SECONDS = 60.0  # the stack's own credentials (stack.LOCAL_KEY)
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")
_QUERY_CREDENTIAL = re.compile(r"(?:^|&)X-Amz-Credential=([^%&/]+)(?:%2F|/)")


@dataclass(frozen=True)
class Caller:
    access_key: str
    principal: str  # arn:aws:sts::<account>:assumed-role/<role>/<session>, or "admin"
    role_name: str | None = None
    role_arn: str | None = None
    session: str | None = None


@dataclass(frozen=True)
class Used:
    """One kind of call a role made: the IAM action, the resource, the decision, and what allowed it."""

    role: str
    function: str  # the function's logical id (the role's tag), "" if untagged
    template: str  # the digest of the template the role came from (a tag too): tests edit copies
    action: str
    resource: str
    allowed: bool
    policy: str  # the identity policy that allowed it (inline name or managed ARN), "resource policy", or ""
    statement: int  # that policy's statement index (-1: none)


class Usage:
    """Each kind of call seen, in memory and appended to a file per process (``OPTOUT_IAM_USAGE``).

    Beside it, each role's policies as they were when first used, so a report needs nothing but
    the folder.
    """

    def __init__(self, folder: Path | None) -> None:
        self.seen: dict[Used, int] = {}
        self.roles: dict[str, dict[str, Any]] = {}  # role name -> {"role", "function", "policies"}
        self._lock = threading.Lock()
        self.folder = folder
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)

    def record(self, used: Used, policies: Callable[[], dict[str, Any]]) -> None:
        with self._lock:
            first = used not in self.seen
            self.seen[used] = self.seen.get(used, 0) + 1
            if not first:
                return
            role_key = f"{used.role}@{used.template}"
            new_role = role_key not in self.roles
            if new_role:
                self.roles[role_key] = {"role": used.role, "function": used.function, "template": used.template,
                                        **policies()}  # fmt: skip
            if self.folder is None:
                return
            pid = os.getpid()
            if new_role:
                with (self.folder / f"roles-{pid}.jsonl").open("a") as out:
                    out.write(json.dumps(self.roles[role_key]) + "\n")
            with (self.folder / f"usage-{pid}.jsonl").open("a") as out:
                out.write(json.dumps(asdict(used)) + "\n")

    def view(self) -> dict[str, Any]:
        """What ``/_local/iam`` serves: every kind of call with its count, and the roles' policies."""
        with self._lock:
            return {"usage": [{**asdict(u), "calls": n} for u, n in self.seen.items()], "roles": dict(self.roles)}


def read_usage(folder: Path) -> tuple[list[Used], dict[str, dict[str, Any]]]:
    """Every kind of call recorded under ``folder`` (by any number of local stacks), and the roles' policies."""
    used: set[Used] = set()
    roles: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("usage-*.jsonl")):
        used.update(Used(**json.loads(line)) for line in path.read_text().splitlines() if line.strip())
    for path in sorted(folder.glob("roles-*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                role = json.loads(line)
                roles[f"{role['role']}@{role.get('template', '')}"] = role
    return sorted(used, key=lambda u: (u.function, u.action, u.resource)), roles


def access_key_of(headers: dict[str, str], query: str) -> tuple[str, str, str] | None:
    """(access key, region, service) from a SigV4 Authorization header or a presigned URL's query."""
    found = _CREDENTIAL.search(headers.get("authorization", ""))
    if found:
        return found.group(1), found.group(2), found.group(3)
    found = _QUERY_CREDENTIAL.search(query)
    if found:
        return found.group(1), "", ""
    return None


class Enforcer:
    """The local AWS's authorizer: identity from moto's STS, policies from moto's IAM."""

    def __init__(self, account: str, usage: Usage, admin_keys: frozenset[str] = ADMIN_KEYS) -> None:
        self.account, self.usage, self.admin_keys = account, usage, admin_keys
        self.decisions: dict[tuple[str, Any], tuple[float, Any]] = {}
        self._roles: dict[str, tuple[dict[str, dict[str, Any]], dict[str, str]]] = {}

    def caller(self, access_key: str, token: str | None) -> Caller | None:
        """The caller behind ``access_key``, or None if no such key (or the wrong session token)."""
        if access_key in self.admin_keys:
            return Caller(access_key, "admin")
        from moto.sts.models import sts_backends

        assumed = sts_backends[self.account]["aws"].get_assumed_role_from_access_key(access_key)
        if assumed is None or token != assumed.session_token:
            return None
        role_name = assumed.role_arn.split("/")[-1]
        return Caller(
            access_key,
            f"arn:aws:sts::{self.account}:assumed-role/{role_name}/{assumed.session_name}",
            role_name,
            assumed.role_arn,
            assumed.session_name,
        )

    def forget(self) -> None:
        """Drop what is remembered of roles and decisions (the administrator may have changed them)."""
        self.decisions = {}
        self._roles = {}

    def role(self, role_name: str) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """The role's policies and tags, read from moto's IAM once until ``forget()``."""
        if role_name not in self._roles:
            self._roles[role_name] = (self.role_policies(role_name), self.role_tags(role_name))
        return self._roles[role_name]

    def role_policies(self, role_name: str) -> dict[str, dict[str, Any]]:
        """The role's policy documents as IAM holds them, by name: inline ones, then attached managed ones by ARN."""
        from moto.iam.models import iam_backends

        iam = iam_backends[self.account]["aws"]
        documents: dict[str, dict[str, Any]] = {}
        for name in iam.list_role_policies(role_name):
            _, document = iam.get_role_policy(role_name, name)
            documents[name] = _document(document)
        attached, _ = iam.list_attached_role_policies(role_name)
        for policy in attached:
            version = next(v for v in policy.versions if v.is_default)
            documents[policy.arn] = _document(version.document)
        return documents

    def role_tags(self, role_name: str) -> dict[str, str]:
        from moto.iam.models import iam_backends

        tags: Any = iam_backends[self.account]["aws"].get_role(role_name).tags
        pairs = tags.values() if isinstance(tags, dict) else tags  # moto keeps {key: {"Key", "Value"}}
        return {str(t["Key"]): str(t["Value"]) for t in pairs}

    def decide(
        self, caller: Caller, checks: Iterable[Any], resource_policy: Callable[[str], tuple[Any, bool]]
    ) -> tuple[Any, Any] | None:
        """The first check the caller may not do, with its decision; None if all are allowed."""
        from optout_local.iam.policy import IDENTITY, Request, evaluate

        if caller.role_name is None:  # the account's administrator
            return None
        role = caller.role_name
        named, tags = self.role(role)
        names, identity = list(named), list(named.values())
        function, template = tags.get(FUNCTION_TAG, ""), tags.get(TEMPLATE_TAG, "")
        for check in checks:
            # The same question from the same session gets the same answer until the
            # administrator changes something (then ``decisions`` is cleared) or a minute passes
            # (for a condition on the time of day)
            key = (caller.principal, check.key)
            found = self.decisions.get(key)
            if found is not None and time.monotonic() - found[0] < DECISION_SECONDS:
                decision = found[1]
            else:
                policy, is_key = resource_policy(check.resource)
                decision = evaluate(
                    # The SDKs reach AWS over TLS; locally the endpoint is plain HTTP, which no
                    # policy should see (the template's TLS-only bucket statement would deny it all)
                    Request(caller.principal, check.action, check.resource, {SECURE: "true", **check.context}),
                    identity,
                    policy,
                    self.account,
                    role_arn=caller.role_arn,
                    key_policy=is_key,
                )
                self.decisions[key] = (time.monotonic(), decision)
            by, index = "", -1
            if decision.allowed and decision.statement is not None:
                ref = decision.statement
                by = names[ref.policy_index] if ref.policy_type == IDENTITY else "resource policy"
                index = ref.index
            used = Used(role, function, template, check.action, check.resource, decision.allowed, by, index)
            self.usage.record(used, lambda: {"policies": named})
            if not decision.allowed:
                return check, decision
        return None


def _document(document: Any) -> dict[str, Any]:
    if isinstance(document, str):
        from urllib.parse import unquote

        text = document if document.lstrip().startswith("{") else unquote(document)
        loaded: dict[str, Any] = json.loads(text)
        return loaded
    return dict(document)


def _headers(environ: dict[str, Any]) -> dict[str, str]:
    found = {k[5:].replace("_", "-").lower(): str(v) for k, v in environ.items() if k.startswith("HTTP_")}
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            found[key.replace("_", "-").lower()] = str(environ[key])
    return found


def _status(code: int) -> str:
    from http import HTTPStatus

    return f"{code} {HTTPStatus(code).phrase}"


class _Remembered:
    """A lookup whose answers are kept until ``forget()``: the resources' facts and policies.

    Only the account's administrator changes them (the functions' roles grant no IAM, policy or
    attribute writes), so the gatekeeper forgets everything on each administrator's request;
    the functions' own calls, nearly all of the traffic, are then authorized from memory.
    """

    def __init__(self, target: Any) -> None:
        self._target = target
        self._answers: dict[tuple[str, tuple[Any, ...]], Any] = {}

    def forget(self) -> None:
        self._answers = {}

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._target, name)
        answers = self._answers

        def remembered(*args: Any) -> Any:
            key = (name, args)
            if key not in answers:
                answers[key] = method(*args)
            return answers[key]

        return remembered


class Gatekeeper:
    """Read a request, authorize it, answer a denial: for the moto process (WSGI) and moto in a test's process."""

    def __init__(self, region: str, account: str, usage: Usage, admin_keys: frozenset[str] = ADMIN_KEYS) -> None:
        """``admin_keys``: the access keys of the account's administrator (the stack's own)."""
        from optout_local.iam.requests import MotoResources

        self.region, self.account = region, account
        self.enforcer = Enforcer(account, usage, admin_keys)
        self.resources = _Remembered(MotoResources(region, account))

    def forget(self) -> None:
        self.resources.forget()
        self.enforcer.forget()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes] | None:
        """None when the request may go on to moto; otherwise the denial, already started."""
        import io

        headers = _headers(environ)
        query = str(environ.get("QUERY_STRING") or "")
        if access_key_of(headers, query) is None:
            return None  # unsigned (moto's own API, a presigned URL's redirect): nothing to authorize
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        environ["wsgi.input"] = io.BytesIO(body)
        method = str(environ.get("REQUEST_METHOD", "GET"))
        target = str(environ.get("PATH_INFO", "/")) + (f"?{query}" if query else "")
        denied = self.authorize(method, target, headers, body)
        if denied is None:
            return None
        status, answer_headers, payload = denied
        start_response(_status(status), answer_headers)
        return [payload]

    def authorize(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes] | None:
        """None when the request may go on; otherwise the (status, headers, body) AWS would answer.

        ``headers`` with lower-case names; ``target`` the path and query string.
        """
        from optout_local import wire
        from optout_local.iam import requests

        found = access_key_of(headers, target.partition("?")[2])
        if found is None:
            return None
        caller = self.enforcer.caller(found[0], headers.get("x-amz-security-token"))
        call = wire.classify(method, target, headers, body)
        if caller is None:
            message = "The security token included in the request is invalid."
            return requests.access_denied(call.model_name, call.operation, message, protocol=call.protocol)
        if caller.role_name is None:  # the administrator may change roles, policies, attributes
            self.forget()
            return None
        checks = requests.call_checks(call, account=self.account, resources=self.resources, region=self.region)
        denied = self.enforcer.decide(caller, checks, self.resources.resource_policy)
        if denied is None:
            return None
        check, decision = denied
        message = requests.denial_message(
            call.model_name, caller.principal, check.action, check.resource, decision.reason
        )
        kms = check.action.startswith("kms:") and call.model_name != "kms"
        return requests.access_denied(call.model_name, call.operation, message, protocol=call.protocol, kms=kms)
