"""Each function's IAM role as SAM makes it, created in the local AWS, and its temporary credentials.

SAM turns a function's ``Policies`` (policy templates, inline statements, managed policy names),
its ``Tracing`` and its event sources into an ``AWS::IAM::Role`` named ``<Function>Role``.
``expand`` runs aws-sam-translator, the library `sam validate` and `sam deploy` use, on the
template, so the roles here are the roles CloudFormation would create; their intrinsics are
then resolved against the provisioned resources, as CloudFormation resolves them.

Lambda gives each execution environment the credentials of the function's role (an
``sts:AssumeRole`` session named after the function) in ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY`` and ``AWS_SESSION_TOKEN``. ``RoleSessions`` does the same, and renews
a session before it expires; an environment started before a renewal keeps its own until the
pool retires it (``expires_at``), as Lambda recycles its environments.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from optout_local.template import Resolver

SESSION_SECONDS = 3600  # what Lambda's role sessions last; renewed at half-life
_RENEW_AT = 0.5


@dataclass(frozen=True)
class FunctionRole:
    """One function's role: its name, trust policy, inline policies (resolved) and managed policy ARNs."""

    function: str  # the function's logical id
    name: str
    trust: dict[str, Any]
    inline: dict[str, dict[str, Any]] = field(default_factory=dict)  # policy name -> document
    managed: tuple[str, ...] = ()
    template: str = ""  # digest of the template it comes from (reports keep only today's template)

    def arn(self, account: str) -> str:
        return f"arn:aws:iam::{account}:role/{self.name}"


def _sam_input(template: Mapping[str, Any]) -> dict[str, Any]:
    """The template as the translator takes it: local code folders become S3 URIs, as `sam build` does."""
    fragment = copy.deepcopy(dict(template))
    for logical_id, resource in fragment.get("Resources", {}).items():
        props = resource.setdefault("Properties", {})
        if resource.get("Type") == "AWS::Serverless::Function":
            props["CodeUri"] = f"s3://local-build/{logical_id}.zip"
        elif resource.get("Type") == "AWS::Serverless::LayerVersion":
            props["ContentUri"] = f"s3://local-build/{logical_id}.zip"
    fragment.get("Globals", {}).get("Function", {}).pop("CodeUri", None)
    return fragment


_translated: dict[tuple[str, str, str, str], dict[str, Any]] = {}


def translate(template: Mapping[str, Any], parameters: Mapping[str, str], region: str, account: str) -> dict[str, Any]:
    """The CloudFormation template SAM makes of ``template`` (aws-sam-translator, AWS's managed policy map).

    Kept per template, parameters, region and account: every in-process test provisions the same
    template again, and a translation costs more than the rest of its provisioning.
    """
    key = (template_digest(template), json.dumps(dict(parameters), sort_keys=True), region, account)
    if key not in _translated:
        _translated[key] = _translate(template, parameters, region, account)
    return copy.deepcopy(_translated[key])


def _translate(template: Mapping[str, Any], parameters: Mapping[str, str], region: str, account: str) -> dict[str, Any]:
    import importlib.resources

    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator
    from samtranslator.utils.py27hash_fix import to_py27_compatible_template, undo_mark_unicode_str_in_template

    data = importlib.resources.files("samtranslator") / "internal" / "data" / "aws_managed_policies.json"
    managed = json.loads(data.read_text())["aws"]
    values: dict[str, Any] = {
        **parameters, "AWS::Region": region, "AWS::AccountId": account, "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
    }  # fmt: skip
    fragment = _sam_input(template)
    to_py27_compatible_template(fragment, values)
    import boto3

    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=region))  # region only
    out = translator.translate(fragment, parameter_values=values, get_managed_policy_map=lambda: managed)
    return dict(undo_mark_unicode_str_in_template(out))


def expand(
    template: Mapping[str, Any], parameters: Mapping[str, str], resolver: Resolver, region: str, account: str
) -> dict[str, FunctionRole]:
    """Each function's role, keyed by the function's logical id, with every intrinsic resolved."""
    translated = translate(template, parameters, region, account)
    digest = template_digest(template)
    resources: dict[str, Any] = translated["Resources"]
    roles: dict[str, FunctionRole] = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::Lambda::Function" or logical_id not in template.get("Resources", {}):
            continue
        role_ref = resource["Properties"].get("Role")
        if not (isinstance(role_ref, dict) and "Fn::GetAtt" in role_ref):
            raise ValueError(f"{logical_id}: only roles SAM creates are supported locally, not Role: {role_ref!r}")
        role_id = role_ref["Fn::GetAtt"][0]
        props = resources[role_id]["Properties"]
        # SAM's policy templates carry no Version. IAM then reads them as 2008-10-17, which differs
        # only in policy variables (none here: SAM's are Fn::Sub, resolved); moto wants a Version.
        inline = {
            str(p["PolicyName"]): {"Version": "2012-10-17", **resolver.resolve(p["PolicyDocument"])}
            for p in props.get("Policies", [])
        }
        roles[logical_id] = FunctionRole(
            function=logical_id,
            name=f"{resolver.stack_name}-{role_id}",
            trust=resolver.resolve(props["AssumeRolePolicyDocument"]),
            inline=inline,
            managed=tuple(str(resolver.resolve(arn)) for arn in props.get("ManagedPolicyArns", [])),
            template=digest,
        )
    return roles


def template_digest(template: Mapping[str, Any]) -> str:
    """A short digest of a loaded template: which template a role was expanded from."""
    import hashlib

    return hashlib.sha256(json.dumps(template, sort_keys=True, default=str).encode()).hexdigest()[:12]


def create(iam: Any, roles: Mapping[str, FunctionRole]) -> None:
    """Create (or bring up to date) each role in the local IAM: trust, inline policies, attachments."""
    from optout_local.iam.enforce import FUNCTION_TAG, TEMPLATE_TAG

    for role in roles.values():
        tags = [
            {"Key": "lambda:createdBy", "Value": "SAM"},
            {"Key": FUNCTION_TAG, "Value": role.function},
            {"Key": TEMPLATE_TAG, "Value": role.template},
        ]
        existing: set[str] = set()
        attached: set[str] = set()
        try:
            iam.create_role(RoleName=role.name, AssumeRolePolicyDocument=json.dumps(role.trust), Tags=tags)
        except iam.exceptions.EntityAlreadyExistsException:  # a restored stack: the template may have changed
            iam.update_assume_role_policy(RoleName=role.name, PolicyDocument=json.dumps(role.trust))
            iam.tag_role(RoleName=role.name, Tags=tags)
            existing = set(iam.list_role_policies(RoleName=role.name)["PolicyNames"])
            listed = iam.list_attached_role_policies(RoleName=role.name)["AttachedPolicies"]
            attached = {p["PolicyArn"] for p in listed}
        for name, document in role.inline.items():
            iam.put_role_policy(RoleName=role.name, PolicyName=name, PolicyDocument=json.dumps(document))
        for name in existing - set(role.inline):
            iam.delete_role_policy(RoleName=role.name, PolicyName=name)
        for arn in set(role.managed) - attached:
            iam.attach_role_policy(RoleName=role.name, PolicyArn=arn)
        for arn in attached - set(role.managed):
            iam.detach_role_policy(RoleName=role.name, PolicyArn=arn)


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str
    expires_at: float  # time.time()

    def environment(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_SESSION_TOKEN": self.session_token,
        }


class RoleSessions:
    """Temporary credentials of each function's role, assumed as Lambda assumes them, renewed at half-life."""

    def __init__(self, sts: Any, roles: Mapping[str, FunctionRole], names: Mapping[str, str], account: str) -> None:
        self.sts, self.roles, self.names, self.account = sts, dict(roles), dict(names), account
        self._held: dict[str, Credentials] = {}
        self._lock = threading.Lock()

    def credentials(self, function: str) -> Credentials:
        with self._lock:
            held = self._held.get(function)
            if held is None or time.time() > held.expires_at - SESSION_SECONDS * (1 - _RENEW_AT):
                answer = self.sts.assume_role(
                    RoleArn=self.roles[function].arn(self.account),
                    RoleSessionName=self.names.get(function, function)[:64],
                    DurationSeconds=SESSION_SECONDS,
                )["Credentials"]
                held = Credentials(
                    answer["AccessKeyId"], answer["SecretAccessKey"], answer["SessionToken"],
                    answer["Expiration"].timestamp(),
                )  # fmt: skip
                self._held[function] = held
            return held


class RoleClient:
    """A client that always signs with the function's current role session (the pollers' SQS client).

    Lambda's event source mappings call SQS with the function's execution role; a renewed
    session gets a new client.
    """

    def __init__(self, sessions: RoleSessions, function: str, make: Any) -> None:
        self.sessions, self.function, self.make = sessions, function, make
        self._client: Any = None
        self._for: Credentials | None = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        credentials = self.sessions.credentials(self.function)
        with self._lock:
            if credentials is not self._for:
                self._client, self._for = self.make(credentials), credentials
            return getattr(self._client, name)
