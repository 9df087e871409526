"""Whether AWS would allow one request: IAM's documented policy evaluation logic, for the local AWS.

``evaluate`` takes the caller's identity-based policies (a role session's inline and managed
policies) and the resource's own policy (an SQS queue policy, SNS topic policy, S3 bucket policy,
Secrets Manager resource policy or KMS key policy) and decides as the IAM User Guide says AWS
decides (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html,
"How AWS enforcement code logic evaluates requests to allow or deny access", and "Policy
evaluation for requests within a single account"):

1. An applicable ``Deny`` in any policy is final ("explicit deny").
2. Within one account, an ``Allow`` in an identity-based policy *or* in the resource-based policy
   is enough: a resource-based policy that names the role session, the role ARN or every
   principal (``"*"``) grants by itself. One that names the *account* (its id or
   ``arn:aws:iam::<account>:root``) delegates to the account's IAM policies and grants nothing on
   its own ("IAM JSON policy elements: Principal", AWS account principals).
3. A service principal (``sns.amazonaws.com`` delivering to a queue) has no identity-based
   policies: only a resource-based policy statement naming the service (or ``"*"``) allows it.
4. KMS keys are the exception the guide names: "Unless the key policy explicitly allows it, you
   cannot use IAM policies to allow access to a KMS key" (KMS Developer Guide, "Key policies in
   AWS KMS"). IAM policies count only for the actions that a key-policy statement naming the
   account allows; a key-policy statement naming the caller allows by itself; an IAM ``Deny``
   always counts.
5. Across accounts both sides must allow ("Cross-account policy evaluation logic").

Permissions boundaries, session policies, SCPs and RCPs do not exist in the local stack.

Statement matching is this module's own, not principalmapper's, although the project installs
principalmapper 1.1.5 for it. That release is the last one, it cannot be imported on Python 3.10
or later (``from collections import Mapping`` in ``principalmapper.util.case_insensitive_dict``),
and its ``local_policy_simulation`` is wrong on documented cases the template's policies meet
(each is pinned in ``tests/unit/test_iam_policy.py``):

* resource-policy actions written ``SNS:...`` or ``SQS:...`` (the console's and SNS's default
  topic policy's spelling) match *every* action: ``_statement_matches_action`` splits the request
  action where it means to split the policy's;
* ``Resource`` and ``ArnLike`` compare case-insensitively, and a ``*`` spans colons anywhere;
  ARN operators are "Case-sensitive matching of the ARN" ("Condition operators"), "In the
  Resource element, the IAM user name is case sensitive", and a ``*`` crosses a colon only as
  the last character of an ARN segment ("IAM JSON policy elements: Resource");
* ``StringLike`` and ``Resource`` patterns are turned into regular expressions without escaping:
  ``"+1*"`` (a phone number) raises ``re.error``;
* a missing key makes ``StringNotLike`` false; the guide says negated operators are *true*
  when the key is absent ("Condition operators");
* ``Bool`` with a JSON/YAML boolean (``aws:SecureTransport: false``, as the template writes it)
  never matches;
* ``NumericXIfExists`` and ``DateXIfExists`` never match a present key; ``DateX`` with two
  values checks only the first; a date without a zone raises ``TypeError``;
* ``ForAnyValue`` with two keys is satisfied by either; keys in one operator are ANDed
  ("Conditions with multiple context keys or values");
* policy variables (``${aws:PrincipalAccount}``) are not substituted in condition values;
* principals are principalmapper graph nodes (users and roles), not role sessions.

What principalmapper does right (action/NotAction matching, case-insensitive ``*``/``?`` globs,
string equality, ``Null``, ``ForAllValues`` on an absent key) is matched here, and the tests check
that this module agrees with principalmapper on those cases.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Literal

__all__ = ["Decision", "PolicyError", "Request", "StatementRef", "access_denied_message", "evaluate"]

IDENTITY = "identity-based policy"
RESOURCE = "resource-based policy"

# The policy language version in which ${...} is a variable; in 2008-10-17 it is literal text
# ("IAM JSON policy elements: Version").
_VARIABLES_VERSION = "2012-10-17"


class PolicyError(ValueError):
    """A policy AWS would not have stored: an unknown condition operator, an Effect other than Allow or Deny."""


@dataclass(frozen=True)
class Request:
    """One authorization question: may ``principal`` perform ``action`` on ``resource``?"""

    # "arn:aws:sts::123456789012:assumed-role/RoleName/session" (a role session), or a service
    # principal such as "sns.amazonaws.com"; IAM user and account root ARNs work too.
    principal: str
    action: str  # "dynamodb:PutItem"
    resource: str  # an ARN, or "*" for an action with no resource type
    # Condition keys (names case-insensitive), e.g. aws:SourceArn, aws:SourceAccount, kms:ViaService.
    # aws:PrincipalArn, aws:PrincipalAccount, aws:PrincipalType, aws:PrincipalServiceName,
    # aws:PrincipalIsAWSService, aws:ResourceAccount, aws:CurrentTime and aws:EpochTime are
    # filled in when absent.
    context: Mapping[str, str | Sequence[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class StatementRef:
    """Which statement of which policy applied: for reports and error messages."""

    policy_type: str  # IDENTITY or RESOURCE
    policy_index: int  # position in identity_policies; 0 for the resource policy
    index: int  # position in the policy's Statement list
    sid: str | None
    effect: str  # "Allow" or "Deny"

    def __str__(self) -> str:
        where = f"{self.policy_type} #{self.policy_index}" if self.policy_type == IDENTITY else self.policy_type
        sid = f" (Sid {self.sid})" if self.sid else ""
        return f"{self.effect} statement #{self.index}{sid} of the {where}"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    # AWS's wording of the denial, to follow "... is not authorized to perform: <action> on
    # resource: <resource> " ("Troubleshoot access denied error messages"); "" when allowed.
    reason: str
    statement: StatementRef | None = None  # the statement that allowed, or that explicitly denied
    matched: tuple[StatementRef, ...] = ()  # every statement that applied to the request

    @property
    def policy_type(self) -> str:
        """The kind of policy the decision came from ("" for an implicit deny)."""
        return self.statement.policy_type if self.statement else ""


def access_denied_message(request: Request, decision: Decision) -> str:
    """The AccessDenied message AWS gives for ``decision`` (same account, same wording)."""
    return (
        f"User: {request.principal} is not authorized to perform: {request.action} "
        f"on resource: {request.resource} {decision.reason}"
    )


def evaluate(
    request: Request,
    identity_policies: Sequence[Mapping[str, Any]],
    resource_policy: Mapping[str, Any] | None,
    resource_account: str,
    *,
    role_arn: str | None = None,
    key_policy: bool = False,
) -> Decision:
    """Decide ``request`` as AWS does.

    ``identity_policies``: the caller's policy documents (inline and managed, resolved); ignored
    for a service principal. ``resource_policy``: the resource's policy, or None. ``role_arn``:
    the role behind an assumed-role session, with its path (otherwise it is derived from the
    session ARN, without a path). ``key_policy``: ``resource_policy`` is a KMS key policy.
    Raises PolicyError for a policy AWS would have refused.
    """
    caller = _caller(request.principal, role_arn)
    context = _context(request, caller, resource_account)

    matched: list[tuple[StatementRef, _Grant]] = []
    if caller.service is None:
        for number, policy in enumerate(identity_policies):
            matched += _matches(policy, IDENTITY, number, request, context, caller=None)
    if resource_policy is not None:
        matched += _matches(resource_policy, RESOURCE, 0, request, context, caller=caller)
    refs = tuple(ref for ref, _ in matched)

    denied = _explicit_deny(matched)
    if denied is not None:  # 1. explicit deny, in whichever policy
        return Decision(False, f"with an explicit deny in {_article(denied.policy_type)}", denied, refs)
    allowed, reason, statement = _verdict(
        _Allows.of(matched), request.action, caller, caller.account == resource_account, key_policy
    )
    return Decision(allowed, "" if allowed else reason, statement, refs)


def _article(policy_type: str) -> str:
    return f"an {policy_type}" if policy_type[0] in "aeiou" else f"a {policy_type}"


def _explicit_deny(matched: Sequence[tuple[StatementRef, _Grant]]) -> StatementRef | None:
    """The first Deny that applied, an identity-based policy's before the resource's."""
    for kind in (IDENTITY, RESOURCE):
        for ref, _ in matched:
            if ref.effect == "Deny" and ref.policy_type == kind:
                return ref
    return None


@dataclass(frozen=True)
class _Allows:
    """The first Allow of each kind that applied to a request."""

    identity: StatementRef | None  # in an identity-based policy
    direct: StatementRef | None  # in the resource policy, naming the caller (or "*")
    delegated: StatementRef | None  # in the resource policy, naming the caller's account

    @classmethod
    def of(cls, matched: Sequence[tuple[StatementRef, _Grant]]) -> _Allows:
        allows = [(r, g) for r, g in matched if r.effect == "Allow"]
        return cls(
            identity=next((r for r, _ in allows if r.policy_type == IDENTITY), None),
            direct=next((r for r, g in allows if r.policy_type == RESOURCE and g == "direct"), None),
            delegated=next((r for r, g in allows if r.policy_type == RESOURCE and g == "account"), None),
        )


# (allowed, why not, the statement the decision came from)
_Verdict = tuple[bool, str, StatementRef | None]


def _verdict(allows: _Allows, action: str, caller: _Caller, same_account: bool, key_policy: bool) -> _Verdict:
    """Steps 2 to 5: whether the allows that applied, with no explicit deny, are enough."""
    no_resource_allow = f"because no {RESOURCE} allows the {action} action"
    if caller.service is not None:  # 3. a service: the resource's policy alone
        return allows.direct is not None, no_resource_allow, allows.direct
    if caller.root and same_account and not key_policy:  # the root user: everything not denied
        return True, "", None
    no_identity_allow = f"because no {IDENTITY} allows the {action} action"
    if key_policy:
        return _key_policy_verdict(allows, caller.root, same_account, no_identity_allow, no_resource_allow)
    if same_account:  # 2. either side's allow is enough
        if allows.identity is not None:
            return True, "", allows.identity
        return allows.direct is not None, no_identity_allow, allows.direct
    if allows.identity is None:  # 5. across accounts, both sides
        return False, no_identity_allow, None
    grant = allows.direct or allows.delegated
    return grant is not None, no_resource_allow, allows.identity


def _key_policy_verdict(
    allows: _Allows, root: bool, same_account: bool, no_identity_allow: str, no_resource_allow: str
) -> _Verdict:
    """4. The key policy must allow, directly or by enabling IAM policies."""
    if same_account:
        if allows.direct is not None:
            return True, "", allows.direct
        if allows.delegated is None:
            return False, no_resource_allow, None
        if root:
            return True, "", allows.delegated
        return allows.identity is not None, no_identity_allow, allows.identity
    if (allows.direct or allows.delegated) is None:
        return False, no_resource_allow, None
    return allows.identity is not None, no_identity_allow, allows.identity


# --- the caller --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Caller:
    principal: str
    service: str | None = None  # "sns.amazonaws.com"
    account: str | None = None
    partition: str = "aws"
    names: tuple[str, ...] = ()  # ARNs that name this principal itself: the session's, the role's
    chain: tuple[str, ...] = ()  # what a NotPrincipal must list to exempt it, account first
    arn: str | None = None  # aws:PrincipalArn: for a role session, the role's ARN
    principal_type: str | None = None
    root: bool = False


_SESSION = re.compile(r"arn:(?P<p>[\w-]+):sts::(?P<a>\d{12}):assumed-role/(?P<role>[^/]+)/(?P<s>.+)")
_IAM = re.compile(r"arn:(?P<p>[\w-]+):iam::(?P<a>\d{12}):(?P<rest>root|user/.+|role/.+)")


def _caller(principal: str, role_arn: str | None) -> _Caller:
    if not principal.startswith("arn:"):
        return _Caller(principal, service=principal)
    session = _SESSION.fullmatch(principal)
    if session is not None:
        partition, account = session["p"], session["a"]
        role = role_arn or f"arn:{partition}:iam::{account}:role/{session['role']}"
        if not role.endswith(f"/{session['role']}"):
            raise ValueError(f"role {role} is not the role of session {principal}")
        return _Caller(
            principal, account=account, partition=partition, names=(principal, role),
            chain=(account, role, principal), arn=role, principal_type="AssumedRole",
        )  # fmt: skip
    iam = _IAM.fullmatch(principal)
    if iam is None:
        raise ValueError(f"not a principal this evaluator knows: {principal!r}")
    partition, account, rest = iam["p"], iam["a"], iam["rest"]
    if rest == "root":
        return _Caller(principal, account=account, partition=partition, chain=(account,), arn=principal,
                       principal_type="Account", root=True)  # fmt: skip
    kind = "User" if rest.startswith("user/") else "AssumedRole"
    return _Caller(principal, account=account, partition=partition, names=(principal,),
                   chain=(account, principal), arn=principal, principal_type=kind)  # fmt: skip


# --- the request context -----------------------------------------------------------------------

_Values = tuple[str, ...]


class _Context:
    """Condition keys, looked up case-insensitively ("Condition key names are not case-sensitive")."""

    def __init__(self, items: Mapping[str, str | Sequence[str]]) -> None:
        self._items: dict[str, _Values] = {}
        for key, value in items.items():
            self._items[key.lower()] = (value,) if isinstance(value, str) else tuple(str(v) for v in value)

    def get(self, key: str) -> _Values | None:
        return self._items.get(key.lower())

    def setdefault(self, key: str, value: str) -> None:
        self._items.setdefault(key.lower(), (value,))


def _context(request: Request, caller: _Caller, resource_account: str) -> _Context:
    context = _Context(request.context)
    if caller.service is not None:
        context.setdefault("aws:PrincipalServiceName", caller.service)
        context.setdefault("aws:PrincipalIsAWSService", "true")
    else:
        context.setdefault("aws:PrincipalIsAWSService", "false")
        if caller.arn:
            context.setdefault("aws:PrincipalArn", caller.arn)
        if caller.account:
            context.setdefault("aws:PrincipalAccount", caller.account)
        if caller.principal_type:
            context.setdefault("aws:PrincipalType", caller.principal_type)
    context.setdefault("aws:ResourceAccount", resource_account)
    now = datetime.now(UTC)
    context.setdefault("aws:CurrentTime", now.strftime("%Y-%m-%dT%H:%M:%SZ"))
    context.setdefault("aws:EpochTime", str(int(now.timestamp())))
    return context


# --- statements --------------------------------------------------------------------------------

_Grant = Literal["direct", "account", "none"]


class _Unresolved(Exception):
    """A policy variable with no value: "any attempt to match it fails and causes the statement to be invalid"."""


def _listify(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _matches(
    policy: Mapping[str, Any],
    policy_type: str,
    policy_index: int,
    request: Request,
    context: _Context,
    *,
    caller: _Caller | None,
) -> list[tuple[StatementRef, _Grant]]:
    """The statements of ``policy`` that apply to the request; ``caller`` for a resource policy's principals."""
    variables = policy.get("Version") == _VARIABLES_VERSION
    applied: list[tuple[StatementRef, _Grant]] = []
    for index, statement in enumerate(_listify(policy.get("Statement", []))):
        effect = statement.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise PolicyError(f"statement {index}: Effect must be Allow or Deny, not {effect!r}")
        grant: _Grant = "none"
        if caller is not None:
            grant = _principal_grant(statement, caller)
            if grant == "none":
                continue
        try:
            if not (
                _action_matches(statement, request.action)
                and _resource_matches(statement, request.resource, context, variables)
                and _conditions_match(statement.get("Condition", {}), context, variables)
            ):
                continue
        except _Unresolved:
            continue
        sid = statement.get("Sid")
        applied.append((StatementRef(policy_type, policy_index, index, str(sid) if sid else None, effect), grant))
    return applied


def _action_matches(statement: Mapping[str, Any], action: str) -> bool:
    """Action/NotAction: a case-insensitive ``*``/``?`` match of the whole action ("Action" element)."""
    if "Action" in statement:
        return any(_glob(str(p), ignore_case=True).fullmatch(action) for p in _listify(statement["Action"]))
    if "NotAction" in statement:
        return not any(_glob(str(p), ignore_case=True).fullmatch(action) for p in _listify(statement["NotAction"]))
    raise PolicyError("a statement needs Action or NotAction")


def _resource_matches(statement: Mapping[str, Any], resource: str, context: _Context, variables: bool) -> bool:
    """Resource/NotResource; a statement with neither applies to every resource."""
    if "Resource" in statement:
        return any(_resource_pattern(str(p), context, variables).fullmatch(resource)
                   for p in _listify(statement["Resource"]))  # fmt: skip
    if "NotResource" in statement:
        return not any(_resource_pattern(str(p), context, variables).fullmatch(resource)
                       for p in _listify(statement["NotResource"]))  # fmt: skip
    return True


def _principal_grant(statement: Mapping[str, Any], caller: _Caller) -> _Grant:
    """How a resource-policy statement's Principal/NotPrincipal names ``caller``.

    "direct": the caller itself (its session or role ARN, its service, or everyone);
    "account": only its account, which delegates to the account's IAM policies; "none".
    """
    if "Principal" in statement:
        return _names(statement["Principal"], caller)
    if "NotPrincipal" in statement:
        # Everyone but the principals named; a role session is exempt only when its account, its
        # role and the session are all named ("IAM JSON policy elements: NotPrincipal").
        listed = _entries(statement["NotPrincipal"])
        if listed is None or "*" in listed.get("aws", ()):
            return "none"
        if caller.service is not None:
            exempt = caller.service.lower() in {s.lower() for s in listed.get("service", ())}
        else:
            exempt = all(_names_one(listed.get("aws", ()), item, caller) for item in caller.chain)
        return "none" if exempt else "direct"
    raise PolicyError("a resource policy statement needs Principal or NotPrincipal")


def _entries(element: Any) -> dict[str, tuple[str, ...]] | None:
    """A Principal element as {"aws": (...), "service": (...), ...}; None for "*" (every principal)."""
    if element == "*":
        return None
    if not isinstance(element, Mapping):
        raise PolicyError(f'Principal must be "*" or an object, not {element!r}')
    return {str(kind).lower(): tuple(str(v) for v in _listify(values)) for kind, values in element.items()}


def _names(element: Any, caller: _Caller) -> _Grant:
    entries = _entries(element)
    # "Principal": "*" and {"AWS": "*"} are every principal ("IAM JSON policy elements: Principal").
    if entries is None or "*" in entries.get("aws", ()):
        return "direct"
    if caller.service is not None:
        services = {s.lower() for s in entries.get("service", ())}
        return "direct" if caller.service.lower() in services else "none"
    aws = entries.get("aws", ())
    if any(name in aws for name in caller.names):
        return "direct"
    if caller.root and caller.principal in aws:
        return "direct"
    if caller.account and _names_one(aws, caller.account, caller):
        return "account"
    return "none"


def _names_one(aws: Sequence[str], item: str, caller: _Caller) -> bool:
    """Whether the AWS principals ``aws`` name ``item`` (an ARN, or the caller's account id)."""
    if item == caller.account:
        return item in aws or f"arn:{caller.partition}:iam::{item}:root" in aws
    return item in aws


# --- patterns ----------------------------------------------------------------------------------

# A pattern after variable substitution: literal text, and the * and ? the policy wrote.
_Token = tuple[Literal["text", "*", "?"], str]
_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_DEFAULT = re.compile(r"\s*([^,\s]+)\s*,\s*'([^']*)'\s*")
_SPECIAL = {"*": "*", "?": "?", "$": "$"}  # ${*}, ${?}, ${$}: the characters themselves


def _tokens(pattern: str, context: _Context | None) -> tuple[_Token, ...]:
    """Split ``pattern`` into literal text and wildcards, substituting ${key} from ``context`` if given.

    A substituted value is literal text, never a wildcard; ``${key, 'default'}`` falls back to
    the default ("IAM policy elements: Variables and tags").
    """
    tokens: list[_Token] = []

    def text(chunk: str) -> None:
        for part in re.split(r"([*?])", chunk):
            if part == "*":
                tokens.append(("*", "*"))
            elif part == "?":
                tokens.append(("?", "?"))
            elif part:
                tokens.append(("text", part))

    position = 0
    for found in _VARIABLE.finditer(pattern) if context is not None else ():
        text(pattern[position : found.start()])
        position = found.end()
        name = found[1]
        if name in _SPECIAL:
            tokens.append(("text", _SPECIAL[name]))
            continue
        default = _DEFAULT.fullmatch(name)
        key, fallback = (default[1], default[2]) if default else (name.strip(), None)
        values = context.get(key) if context is not None else None
        if values is not None and len(values) == 1:
            tokens.append(("text", values[0]))
        elif fallback is not None:
            tokens.append(("text", fallback))
        else:  # absent, or multivalued: "you can't use multivalued context keys as policy variables"
            raise _Unresolved(key)
    text(pattern[position:])
    return tuple(tokens)


def _plain(tokens: Iterable[_Token]) -> str:
    return "".join(value for _, value in tokens)


_Mode = Literal["glob", "resource", "arn"]


@lru_cache(maxsize=4096)
def _compile(tokens: tuple[_Token, ...], mode: _Mode, ignore_case: bool) -> re.Pattern[str]:
    """A regular expression for ``tokens``; every literal character is escaped.

    glob: ``*`` is any characters, ``?`` one (actions, StringLike).
    resource: as the Resource element: a wildcard stays inside its colon-separated segment,
      except a ``*`` that is the last character of a segment, which "can expand to match beyond
      the colon boundaries" ("IAM JSON policy elements: Resource").
    arn: as ArnLike: "each of the six colon-delimited components of the ARN is checked
      separately"; a wildcard in the pattern's last component takes the rest of the ARN.
    """
    parts: list[str] = []
    colons = sum(value.count(":") for kind, value in tokens if kind == "text")
    seen = 0
    for position, (kind, value) in enumerate(tokens):
        if kind == "text":
            parts.append(re.escape(value))
            seen += value.count(":")
            continue
        if mode == "glob":
            wide = True
        elif mode == "arn":
            wide = seen == colons  # in the pattern's last component
        else:
            following = tokens[position + 1] if position + 1 < len(tokens) else None
            wide = kind == "*" and (following is None or (following[0] == "text" and following[1].startswith(":")))
        if kind == "*":
            parts.append(".*" if wide else "[^:]*")
        else:
            parts.append("." if wide else "[^:]")
    return re.compile("".join(parts), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _glob(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    return _compile(_tokens(pattern, None), "glob", ignore_case)


def _resource_pattern(pattern: str, context: _Context, variables: bool) -> re.Pattern[str]:
    return _compile(_tokens(pattern, context if variables else None), "resource", False)


# --- conditions --------------------------------------------------------------------------------

_Match = Callable[[tuple[_Token, ...], str], bool]  # (policy value, request value) -> bool


def _number(value: str) -> Decimal | None:
    try:
        return Decimal(value.strip())
    except InvalidOperation:
        return None


def _date(value: str) -> datetime | None:
    """ISO 8601 (a missing zone is UTC) or epoch seconds, as the Date operators take them."""
    text = value.strip()
    try:
        if re.fullmatch(r"-?\d+(\.\d+)?", text):
            return datetime.fromtimestamp(float(text), UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, OverflowError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _compare(parse: Callable[[str], Any], test: Callable[[Any, Any], bool]) -> _Match:
    def match(policy: tuple[_Token, ...], value: str) -> bool:
        left, right = parse(value), parse(_plain(policy))
        return left is not None and right is not None and bool(test(left, right))

    return match


def _equals(policy: tuple[_Token, ...], value: str) -> bool:
    return _plain(policy) == value


def _equals_ignore_case(policy: tuple[_Token, ...], value: str) -> bool:
    return _plain(policy).lower() == value.lower()


def _bool(policy: tuple[_Token, ...], value: str) -> bool:
    return _plain(policy).lower() == value.lower()


def _ip(policy: tuple[_Token, ...], value: str) -> bool:
    try:
        return ipaddress.ip_address(value.strip()) in ipaddress.ip_network(_plain(policy).strip(), strict=False)
    except ValueError:
        return False


def _string_like(policy: tuple[_Token, ...], value: str) -> bool:
    return _compile(policy, "glob", False).fullmatch(value) is not None


def _arn_like(policy: tuple[_Token, ...], value: str) -> bool:
    return _compile(policy, "arn", False).fullmatch(value) is not None


@dataclass(frozen=True)
class _Operator:
    match: _Match
    negated: bool = False
    variables: bool = False  # "string operators or ARN operators" take policy variables


def _operators() -> dict[str, _Operator]:
    table: dict[str, _Operator] = {}

    def pair(name: str, negated_name: str, match: _Match, *, variables: bool = False) -> None:
        table[name.lower()] = _Operator(match, False, variables)
        table[negated_name.lower()] = _Operator(match, True, variables)

    pair("StringEquals", "StringNotEquals", _equals, variables=True)
    pair("StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase", _equals_ignore_case, variables=True)
    pair("StringLike", "StringNotLike", _string_like, variables=True)
    pair("ArnEquals", "ArnNotEquals", _arn_like, variables=True)  # "ArnEquals, ArnLike": the same matching
    pair("ArnLike", "ArnNotLike", _arn_like, variables=True)
    pair("NumericEquals", "NumericNotEquals", _compare(_number, lambda v, p: v == p))
    pair("DateEquals", "DateNotEquals", _compare(_date, lambda v, p: v == p))
    pair("IpAddress", "NotIpAddress", _ip)
    comparisons: tuple[tuple[str, Callable[[Any, Any], bool]], ...] = (
        ("LessThan", lambda v, p: v < p),
        ("LessThanEquals", lambda v, p: v <= p),
        ("GreaterThan", lambda v, p: v > p),
        ("GreaterThanEquals", lambda v, p: v >= p),
    )
    for suffix, test in comparisons:
        table[f"numeric{suffix}".lower()] = _Operator(_compare(_number, test))
        table[f"date{suffix}".lower()] = _Operator(_compare(_date, test))
    table["bool"] = _Operator(_bool)
    table["binaryequals"] = _Operator(_equals)
    return table


_OPERATORS = _operators()


def _policy_values(raw: Any) -> tuple[str, ...]:
    """A condition's values as strings: JSON true/false are "true"/"false", numbers their text."""
    values = []
    for value in _listify(raw):
        if isinstance(value, bool):
            values.append("true" if value else "false")
        elif isinstance(value, str | int | float):
            values.append(str(value))
        else:
            raise PolicyError(f"a condition value must be a string, number or boolean, not {value!r}")
    return tuple(values)


def _conditions_match(condition: Mapping[str, Any], context: _Context, variables: bool) -> bool:
    """Every operator's every key must hold (AND); within a key, any policy value (OR; NOR if negated)."""
    if not isinstance(condition, Mapping):
        raise PolicyError("Condition must be an object")
    for name, keys in condition.items():
        if not isinstance(keys, Mapping):
            raise PolicyError(f"{name}: a condition operator takes an object of keys")
        for key, raw in keys.items():
            if not _condition_holds(str(name), str(key), _policy_values(raw), context, variables):
                return False
    return True


def _condition_holds(name: str, key: str, raw: tuple[str, ...], context: _Context, variables: bool) -> bool:
    qualifier, _, base = name.rpartition(":")
    qualifier = qualifier.lower()
    if qualifier not in ("", "forallvalues", "foranyvalue"):
        raise PolicyError(f"unknown condition set operator {name!r}")
    lowered = base.lower()
    if_exists = lowered.endswith("ifexists")
    lowered = lowered.removesuffix("ifexists")
    values = context.get(key) or ()
    present = len(values) > 0

    if lowered == "null":  # "true": the key is absent; "false": it is present
        return any(present != (p.lower() == "true") for p in raw)
    operator = _OPERATORS.get(lowered)
    if operator is None:
        raise PolicyError(f"unknown condition operator {name!r}")
    lookup = context if variables and operator.variables else None
    policy = tuple(_tokens(p, lookup) for p in raw)

    def holds(request_values: Iterable[str]) -> bool:  # OR over the pairs; NOR for a negated operator
        hit = any(operator.match(p, v) for p in policy for v in request_values)
        return not hit if operator.negated else hit

    if qualifier == "forallvalues":  # true when the key is absent or empty
        return all(holds((v,)) for v in values)
    if qualifier == "foranyvalue":  # false when the key is absent or empty
        return any(holds((v,)) for v in values)
    if not present:
        # "If the key ... is not present in the request context, the values do not match and the
        # condition is false. If the policy condition requires that the key is not matched, such as
        # StringNotLike or ArnNotLike, and the right key is not present, the condition is true."
        return if_exists or operator.negated
    return holds(values)
