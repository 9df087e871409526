"""Least privilege, proved: per function, what its role grants and which calls used each grant.

A grant is one action of one Allow statement (a statement with ``NotAction`` is one grant): of
an inline policy (by its name and statement Sid or index) or of an attached managed policy (by
its ARN). A grant is used when some call the enforcer allowed was allowed by that statement and
its action matches that action. The calls are those recorded by every local stack that ran with
``OPTOUT_IAM_USAGE`` pointing at one folder (``make test`` does).

A grant that no call used must say why in the function's ``Metadata``, as checkov skips do (the
template's own ``Metadata`` for the managed policies SAM gives every function)::

    Metadata:
      optout:
        unused-grants:
          - grant: AWSLambdaBasicExecutionRole     # a whole statement or managed policy, or
          # - grant: SuppressionReadWrite:dynamodb:Query   one action of it (<Sid or policy name>:<action>)
            reason: Lambda itself writes the function's logs with the role.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from optout_local.iam.enforce import Used

METADATA = ("optout", "unused-grants")


@dataclass
class Grant:
    function: str
    policy: str  # inline policy name or managed policy ARN
    statement: int
    sid: str | None
    action: str  # the action pattern as granted ("NotAction: ..." for a NotAction statement)
    resource: str  # as granted, for the report
    calls: list[Used] = field(default_factory=list)
    reason: str | None = None  # why an unused grant stays (from Metadata)

    @property
    def statement_name(self) -> str:
        """The statement's Sid, else its policy's name (a managed policy's name without its path)."""
        return self.sid or self.policy.rsplit("/", 1)[-1]

    @property
    def name(self) -> str:
        """How the report and Metadata name it: <Sid or policy name>:<action>."""
        return f"{self.statement_name}:{self.action}"

    def explained_by(self, reasons: Mapping[str, str]) -> str | None:
        """Metadata's reason for this grant: named itself, or by its statement or managed policy as a whole."""
        for name in (self.name, self.statement_name, self.policy.rsplit("/", 1)[-1]):
            if name in reasons:
                return reasons[name]
        return None

    @property
    def used(self) -> bool:
        return bool(self.calls)


def _listed(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def grants(function: str, policies: Mapping[str, Mapping[str, Any]]) -> list[Grant]:
    """Every grant of a role's policies (``policies``: name or managed ARN -> document)."""
    found: list[Grant] = []
    for policy, document in policies.items():
        statements = document.get("Statement", [])
        for index, statement in enumerate(statements if isinstance(statements, list) else [statements]):
            if statement.get("Effect") != "Allow":
                continue
            if "Resource" in statement:
                resource = ", ".join(_listed(statement["Resource"]))
            else:
                resource = "NotResource: " + ", ".join(_listed(statement.get("NotResource", [])))
            sid = statement.get("Sid")
            if "NotAction" in statement:
                action = "NotAction: " + ", ".join(_listed(statement["NotAction"]))
                found.append(Grant(function, policy, index, sid, action, resource))
                continue
            for action in _listed(statement.get("Action", [])):
                found.append(Grant(function, policy, index, sid, action, resource))
    return found


def _matches(grant: Grant, used: Used) -> bool:
    if used.policy != grant.policy or used.statement != grant.statement:
        return False
    if grant.action.startswith("NotAction: "):
        return True
    return fnmatch.fnmatchcase(used.action.lower(), grant.action.lower())  # IAM actions: case-insensitive


def _named(metadata: Mapping[str, Any]) -> dict[str, str]:
    entries = metadata.get(METADATA[0], {}).get(METADATA[1], [])
    return {str(e["grant"]): str(e.get("reason", "")).strip() for e in entries if str(e.get("reason", "")).strip()}


def reasons(template: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """Per function logical id, the unused grants its Metadata names, with their reasons.

    The template's own Metadata names grants SAM gives every function (its managed policies);
    a function's Metadata, its own. An entry without a reason explains nothing.
    """
    stack_wide = _named(template.get("Metadata", {}))
    return {
        logical_id: {**stack_wide, **_named(resource.get("Metadata", {}))}
        for logical_id, resource in template.get("Resources", {}).items()
    }


def build(roles: Mapping[str, Mapping[str, Any]], calls: Sequence[Used], template: Mapping[str, Any]) -> list[Grant]:
    """Every grant of every recorded role, with the calls that used it and Metadata's reasons."""
    from optout_local.iam.roles import template_digest

    why = reasons(template)
    digest = template_digest(template)
    out: list[Grant] = []
    for role in roles.values():
        if role.get("template") != digest:  # a role from an edited copy of the template (a test's)
            continue
        function = str(role.get("function") or role["role"])
        mine = [u for u in calls if u.role == role["role"] and u.template == digest and u.allowed]
        for grant in grants(function, role.get("policies", {})):
            grant.calls = [u for u in mine if _matches(grant, u)]
            grant.reason = grant.explained_by(why.get(function, {}))
            out.append(grant)
    return out


def unexplained(report: Sequence[Grant]) -> list[Grant]:
    """Grants no call used and no Metadata explains: what `make test` fails on."""
    return [g for g in report if not g.used and not g.reason]


def _shown(resource: str, limit: int = 120) -> str:
    """A resource as one printable line: what a fuzzer sends can be long and binary."""
    text = resource.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render(report: Sequence[Grant], calls: Sequence[Used]) -> str:
    """The report as text: per function, each grant with its use, then calls no grant allowed."""
    lines: list[str] = []
    for function in sorted({g.function for g in report}):
        lines.append(f"{function}")
        for grant in (g for g in report if g.function == function):
            if grant.used:
                resources = sorted({_shown(u.resource) for u in grant.calls})
                state = f"used: {', '.join(sorted({u.action for u in grant.calls}))} on {', '.join(resources)}"
            elif grant.reason:
                state = f"unused, kept: {grant.reason}"
            else:
                state = "UNUSED: no call used it and the function's Metadata gives no reason"
            lines.append(f"  {grant.name}  [{grant.resource}]")
            lines.append(f"      {state}")
        denied = [u for u in calls if not u.allowed and (u.function or u.role) == function]
        for used in denied:
            lines.append(f"  DENIED {used.action} on {_shown(used.resource)}")
        by_resource_policy = [
            u for u in calls if u.allowed and u.policy == "resource policy" and u.function == function
        ]
        for used in by_resource_policy:
            lines.append(f"  allowed by the resource's own policy: {used.action} on {_shown(used.resource)}")
    return "\n".join(lines)
