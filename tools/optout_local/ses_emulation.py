"""SES v2 ``SendBulkEmail`` and the email template operations, which moto lacks, emulated in moto.

moto 5.2.5 routes every ``/v2/...`` request of the ``email.<region>`` host to
``moto.sesv2.responses.SESV2Response`` (its ``urls.py`` ends in a catch-all ``/v2/.*``) and finds
the operation from botocore's model by method and URI; what it lacks is the handler methods. Here
they are set on that class, and the operations' routes are also named in ``moto.sesv2.urls``, so
the same code serves moto's server (``moto_process``) and ``mock_aws`` (whose botocore stubber
reads ``url_paths`` on each request).

State lives in moto's own backends, so snapshots (``state.py`` pickles every backend) keep it and
``/moto-api/reset`` clears it: templates in the SES core backend's ``templates`` (where moto's SES
v1 ``CreateTemplate`` keeps them: SES v1 and v2 share one set of templates), their tags in its
tagger, and every accepted destination's message in its ``sent_messages``, as a ``RawMessage``
made by the core backend's ``send_raw_email`` (where ``SendEmail`` with ``Content.Raw`` puts raw
mail). A destination whose template does not render is accepted, as SES accepts it, and not sent;
it is recorded in the core backend's ``rendering_failures``.

What SES does, and where it is written:

- Each request is checked against botocore's sesv2 model (``validate_parameters``, as botocore's
  Stubber checks), then against the limits the model and the SES docs give that the validator does
  not check (at most 15 headers, header name pattern and length); a failure is
  ``BadRequestException``.
- Up to 50 ``BulkEmailEntries`` (SES developer guide, "Service quotas": 50 destinations per
  SendBulkEmail call, 50 recipients per message).
- ``FromEmailAddress`` must be a verified identity (the address or its domain), else
  ``MessageRejected`` "Email address is not verified. The following identities failed the check
  in region ...", SES's message; an unknown ``ConfigurationSetName`` or template is
  ``NotFoundException``.
- Templates are Handlebars (SES developer guide, "Advanced email personalization"): ``{{a}}``,
  ``{{{a}}}``, nested ``{{a.b}}``, ``{{#if}}``/``{{else}}``/``{{/if}}``, ``{{#unless}}``,
  ``{{#each}}`` (``this``, ``@index``, ``@first``, ``@last``), comments. Values are inserted as
  they are, HTML included ("SES doesn't escape HTML content when rendering the HTML template").
  Inline ``TemplateContent`` takes simple substitutions only (botocore model, ``Template``
  ``TemplateContent``: "Amazon SES supports only simple substitions when you ... provide the full
  template content"): a block helper in it is a rendering failure.
- A variable the data lacks: SES accepts the call, returns a MessageId, and does not send the
  message, a Rendering Failure event (SES API reference for SendTemplatedEmail; AWS knowledge
  center "ses-sendtemplatedemail-delivery-failure"). So the entry is ``SUCCESS`` with its
  MessageId, and nothing reaches the outbox.
- ``ReplacementHeaders`` (botocore model ``BulkEmailEntry``): a header named in the entry
  replaces the value of the template's header of that name, others are added, in the given
  order. Headers SES sets itself may not be given (SES developer guide, "Amazon SES header
  fields": for SendEmail with Simple or Template content and SendBulkEmail, BCC, CC,
  Content-Disposition, Content-Type, Date, From, Message-ID, MIME-Version, Reply-To, Return-Path,
  Subject, To are disallowed), nor twice one of those the same page allows only once.
- Per entry (``BulkEmailStatus``): an address that is not ``local@domain`` in 7-bit ASCII (model,
  ``Destination``), no recipient, or over 50 recipients is ``INVALID_PARAMETER``; replacement data
  that is not a JSON object too.
- ``GetAccount`` answers the account's sending quota (``SendQuota``): ``MaxSendRate`` and
  ``Max24HourSend`` as set with ``set_send_quota`` (kept in the core backend, so snapshots keep it),
  else from ``OPTOUT_LOCAL_SES_MAX_SEND_RATE`` / ``OPTOUT_LOCAL_SES_MAX_24_HOUR_SEND`` in the moto
  process's environment, else ``DEFAULT_QUOTA``; ``SentLast24Hours`` is what moto counted sent.
  moto enforces neither: the quota run's SES (``QuotaSes``, below) throttles.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email import policy as email_policy
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any
from urllib.parse import parse_qs

MAX_ENTRIES = 50  # SendBulkEmail destinations per call (SES quotas)
MAX_RECIPIENTS = 50  # recipients per message, To + Cc + Bcc (SES quotas)
MAX_HEADERS = 15  # MessageHeaderList max (botocore model)
TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # SES: up to 64 letters, digits, _ and -
HEADER_NAME = re.compile(r"^[!-9;-@A-~]{1,126}$")  # MessageHeaderName (botocore model)
TAG = re.compile(r"^[A-Za-z0-9_-]{1,256}$")  # MessageTagName / MessageTagValue (botocore model)
# Headers SES sets itself, which SendEmail (Simple, Template) and SendBulkEmail may not set
DISALLOWED_HEADERS = frozenset(
    h.lower()
    for h in (
        "BCC", "CC", "Content-Disposition", "Content-Type", "Date", "From", "Message-ID",
        "MIME-Version", "Reply-To", "Return-Path", "Subject", "To",
    )
)  # fmt: skip
# Headers that may appear once in a message (SES developer guide, "Amazon SES header fields")
SINGLE_HEADERS = frozenset(
    h.lower()
    for h in (
        "Accept-Language", "acceptLanguage", "Archived-At", "Auto-Submitted", "Bounces-to", "Comments",
        "Content-Alternative", "Content-Base", "Content-Class", "Content-Description", "Content-Disposition",
        "Content-Duration", "Content-ID", "Content-Language", "Content-Length", "Content-Location",
        "Content-MD5", "Content-Transfer-Encoding", "Content-Type", "Date", "Delivered-To",
        "Disposition-Notification-Options", "Disposition-Notification-To", "DKIM-Signature",
        "DomainKey-Signature", "Errors-To", "From", "Importance", "In-Reply-To", "Keywords", "List-Archive",
        "List-Help", "List-Id", "List-Owner", "List-Post", "List-Subscribe", "List-Unsubscribe",
        "List-Unsubscribe-Post", "Message-Context", "Message-ID", "MIME-Version", "Organization",
        "Original-From", "Original-Message-ID", "Original-Recipient", "Original-Subject", "Precedence",
        "Priority", "References", "Reply-To", "Return-Path", "Return-Receipt-To", "Sender", "Solicitation",
        "Sensitivity", "Subject", "Thread-Index", "Thread-Topic", "User-Agent", "VBR-Info",
    )
)  # fmt: skip
# A production account after a quota increase; the local sender (auto) paces under it
DEFAULT_QUOTA = {"MaxSendRate": 1000.0, "Max24HourSend": 10_000_000.0}
ROUTES = (
    "{0}/v2/email/account$",
    "{0}/v2/email/outbound-bulk-emails$",
    "{0}/v2/email/templates$",
    "{0}/v2/email/templates/(?P<TemplateName>[^/]+)$",
)
# Headers as SES writes them: CRLF, and no folding of the long List-Unsubscribe URLs
MIME_POLICY = email_policy.SMTP.clone(max_line_length=998)
_applied = False


# --- errors ----------------------------------------------------------------------------------


def _errors() -> dict[str, type[Exception]]:
    from moto.core.exceptions import ServiceException

    def make(code: str) -> type[Exception]:
        return type(code, (ServiceException,), {"code": code})

    return {code: make(code) for code in ("BadRequestException", "NotFoundException", "AlreadyExistsException")}


_ERRORS: dict[str, type[Exception]] = {}


def _error(code: str, message: str) -> Exception:
    """A ServiceException moto serializes from the sesv2 model (status and X-Amzn-ErrorType)."""
    if not _ERRORS:
        _ERRORS.update(_errors())
    if code == "MessageRejected":
        from moto.ses.exceptions import MessageRejectedError

        return MessageRejectedError(message)
    return _ERRORS[code](message)


def bad_request(message: str) -> Exception:
    return _error("BadRequestException", message)


def not_found(message: str) -> Exception:
    return _error("NotFoundException", message)


# --- the model check ---------------------------------------------------------------------------

_MODEL: Any = None


def _model() -> Any:
    global _MODEL
    if _MODEL is None:
        import botocore.session

        _MODEL = botocore.session.get_session().get_service_model("sesv2")
    return _MODEL


def request_params(
    operation: str, body: str | bytes | None, uri: dict[str, Any], query: dict[str, Any]
) -> dict[str, Any]:
    """The operation's input as botocore's client would have had it, checked against the model."""
    from botocore.exceptions import ParamValidationError
    from botocore.validate import validate_parameters

    shape = _model().operation_model(operation).input_shape
    params: dict[str, Any] = {}
    if body:
        try:
            params = json.loads(body)
        except ValueError:
            raise bad_request("The request body is not valid JSON.") from None
        if not isinstance(params, dict):
            raise bad_request("The request body is not a JSON object.")
    for name, member in shape.members.items():
        location, wire = member.serialization.get("location"), member.serialization.get("name", name)
        if location == "uri" and wire in uri:
            params[name] = uri[wire]
        elif location == "querystring" and wire in query:
            value = query[wire]
            value = value[0] if isinstance(value, list) else value
            if member.type_name == "integer":
                try:
                    value = int(value)
                except ValueError:
                    raise bad_request(f"Invalid value for {name}: {value!r} is not an integer.") from None
            params[name] = value
    try:
        validate_parameters(params, shape)
    except ParamValidationError as e:
        raise bad_request(str(e)) from None
    return params


# --- templates: Handlebars as SES renders them --------------------------------------------------


class RenderingFailure(Exception):
    """The template does not render with this data: SES sends nothing (a Rendering Failure event)."""


_TOKEN = re.compile(r"\{\{\{\s*(?P<raw>[^}]*?)\s*\}\}\}|\{\{(?P<tag>!--.*?--|[^}]*?)\}\}", re.S)
_MISSING = object()


def _parse(template: str, simple: bool) -> list[Any]:
    """Text and tags into a tree: strings, ("var", path), ("if"|"unless"|"each", path, body, else)."""
    root: list[Any] = []
    stack: list[tuple[str, str, list[Any], list[Any] | None]] = []
    current = root
    pos = 0
    for match in _TOKEN.finditer(template):
        if match.start() > pos:
            current.append(template[pos : match.start()])
        pos = match.end()
        if match.group("raw") is not None:
            current.append(("var", match.group("raw")))
            continue
        tag = match.group("tag").strip().strip("~").strip()
        if tag.startswith("!"):
            continue
        if simple and (tag[:1] in "#/^>" or tag == "else" or tag.startswith("else ")):
            raise RenderingFailure(
                f"Template content sent inline supports simple substitutions only, not {{{{{tag}}}}}."
            )
        if tag.startswith("#"):
            helper, _, arg = tag[1:].partition(" ")
            if helper not in ("if", "unless", "each") or not arg.strip():
                raise RenderingFailure(f"Unsupported block helper {{{{{tag}}}}}.")
            body: list[Any] = []
            stack.append((helper, arg.strip(), body, None))
            current = body
        elif tag == "else":
            if not stack or stack[-1][3] is not None:
                raise RenderingFailure("{{else}} outside a block.")
            helper, arg, body, _ = stack[-1]
            otherwise: list[Any] = []
            stack[-1] = (helper, arg, body, otherwise)
            current = otherwise
        elif tag.startswith("/"):
            if not stack or stack[-1][0] != tag[1:].strip():
                raise RenderingFailure(f"{{{{{tag}}}}} does not close an open block.")
            helper, arg, body, closed_else = stack.pop()
            parent_else = stack[-1][3] if stack else None
            current = parent_else if parent_else is not None else (stack[-1][2] if stack else root)
            current.append((helper, arg, body, closed_else or []))
        else:
            current.append(("var", tag))
    if stack:
        raise RenderingFailure(f"{{{{#{stack[-1][0]}}}}} is not closed.")
    if pos < len(template):
        current.append(template[pos:])
    return root


def _lookup(path: str, scopes: list[Any], specials: dict[str, Any]) -> Any:
    """``path`` in the current scope (``../`` for the one around it), as Handlebars resolves it."""
    if path in specials:
        return specials[path]
    depth = 0
    while path.startswith("../"):
        depth, path = depth + 1, path[3:]
    if depth >= len(scopes):
        return _MISSING
    value = scopes[-1 - depth]
    if path in ("this", "."):
        return value
    for part in path.removeprefix("this.").split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def _text(value: Any) -> str:
    """A JSON value as Handlebars (JavaScript) prints it."""
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and math.isfinite(value):
        return str(int(value))
    if isinstance(value, list):
        return ",".join(_text(v) for v in value)
    if isinstance(value, dict):
        return "[object Object]"
    return str(value)


def _truthy(value: Any) -> bool:
    return value is not _MISSING and value not in (None, False, "", 0) and value != []


def _render(nodes: list[Any], scopes: list[Any], specials: dict[str, Any]) -> Iterator[str]:
    for node in nodes:
        if isinstance(node, str):
            yield node
            continue
        kind, path = node[0], node[1].strip()
        value = _lookup(path, scopes, specials)
        if kind == "var":
            if value is _MISSING:
                raise RenderingFailure(f"Attribute '{path}' is not present in the rendering data.")
            yield _text(value)
        elif kind in ("if", "unless"):
            chosen = node[2] if _truthy(value) == (kind == "if") else node[3]
            yield from _render(chosen, scopes, specials)
        else:  # each
            items = list(value.values()) if isinstance(value, dict) else value
            if not _truthy(items) or not isinstance(items, list):
                yield from _render(node[3], scopes, specials)
                continue
            keys = list(value) if isinstance(value, dict) else None
            for index, item in enumerate(items):
                local = {
                    "@index": index, "@first": index == 0, "@last": index == len(items) - 1,
                    "@key": keys[index] if keys else index,
                }  # fmt: skip
                yield from _render(node[2], [*scopes, item], local)


def render(template: str, data: dict[str, Any], simple: bool = False) -> str:
    """``template`` with ``data`` put in, as SES renders it; RenderingFailure if it cannot be."""
    return "".join(_render(_parse(template, simple), [data], {}))


# --- the backend side ----------------------------------------------------------------------------


def _core(backend: Any) -> Any:
    return backend.core_backend


def _template_arn(backend: Any, name: str) -> str:
    from moto.ses.utils import get_arn

    return get_arn(backend, "ses", f"template/{name}")


def _stored(backend: Any, name: str) -> dict[str, Any]:
    template = _core(backend).templates.get(name)
    if not template:
        raise not_found(f"Template {name} does not exist.")
    return dict(template)


def _content(params: dict[str, Any]) -> dict[str, str]:
    content = params.get("TemplateContent") or {}
    if not content.get("Text") and not content.get("Html"):
        raise bad_request("The template content must have a Text part, an Html part, or both.")
    return {
        "subject_part": content.get("Subject", ""),
        "text_part": content.get("Text", ""),
        "html_part": content.get("Html", ""),
    }


def _check_name(name: str) -> None:
    if not TEMPLATE_NAME.match(name):
        raise bad_request(
            f"Invalid template name {name!r}: up to 64 ASCII letters, numbers, underscores (_) and dashes (-)."
        )


def _created(template: dict[str, Any]) -> float:
    stamp = template.get("Timestamp")
    if isinstance(stamp, datetime):
        return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()
    return 0.0


def create_email_template(backend: Any, params: dict[str, Any]) -> None:
    name = params["TemplateName"]
    _check_name(name)
    core = _core(backend)
    if core.templates.get(name):
        raise _error("AlreadyExistsException", f"Template {name} already exists.")
    template: dict[str, Any] = {"template_name": name, **_content(params), "Timestamp": datetime.now(UTC)}
    core.templates[name] = template
    if params.get("Tags"):
        core.tagger.tag_resource(_template_arn(backend, name), params["Tags"])


def get_email_template(backend: Any, params: dict[str, Any]) -> dict[str, Any]:
    name = params["TemplateName"]
    template = _stored(backend, name)
    content = {
        key: template[part]
        for key, part in (("Subject", "subject_part"), ("Text", "text_part"), ("Html", "html_part"))
        if template.get(part)
    }
    answer: dict[str, Any] = {"TemplateName": name, "TemplateContent": content}
    tags = _core(backend).tagger.list_tags_for_resource(_template_arn(backend, name)).get("Tags")
    if tags:
        answer["Tags"] = tags
    return answer


def update_email_template(backend: Any, params: dict[str, Any]) -> None:
    name = params["TemplateName"]
    template = _stored(backend, name)
    template.update(_content(params))
    _core(backend).templates[name] = template


def delete_email_template(backend: Any, params: dict[str, Any]) -> None:
    name = params["TemplateName"]
    _stored(backend, name)
    core = _core(backend)
    core.templates.pop(name)
    core.tagger.delete_all_tags_for_resource(_template_arn(backend, name))


def list_email_templates(backend: Any, params: dict[str, Any]) -> dict[str, Any]:
    size = params.get("PageSize", 10)  # "the next 10 email templates" (model, NextToken)
    if not 1 <= size <= 100:
        raise bad_request("PageSize must be at least 1 and no more than 100.")
    start = 0
    if params.get("NextToken"):
        try:
            start = int(base64.urlsafe_b64decode(params["NextToken"].encode()).decode())
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise bad_request("Invalid NextToken.") from None
    templates = list(_core(backend).templates.values())
    page = templates[start : start + size]
    answer: dict[str, Any] = {
        "TemplatesMetadata": [{"TemplateName": t["template_name"], "CreatedTimestamp": _created(t)} for t in page]
    }
    if start + size < len(templates):
        answer["NextToken"] = base64.urlsafe_b64encode(str(start + size).encode()).decode()
    return answer


# --- SendBulkEmail ------------------------------------------------------------------------------


def _address_problem(address: str) -> str | None:
    """Why SES would not take ``address`` as a recipient, or None."""
    _, bare = parseaddr(address)
    local, at, domain = bare.rpartition("@")
    if not bare or not at or not local or not domain:
        return f"Illegal address: {address!r}."
    if not local.isascii():
        return f"Illegal address: {address!r}: the local part may contain only 7-bit ASCII characters."
    if not domain.isascii():
        return f"Illegal address: {address!r}: encode a non-ASCII domain with Punycode."
    return None


def _headers(headers: list[dict[str, str]], where: str) -> list[tuple[str, str]]:
    if len(headers) > MAX_HEADERS:
        raise bad_request(f"{where}: at most {MAX_HEADERS} headers, not {len(headers)}.")
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    for header in headers:
        name, value = header["Name"], header["Value"]
        if not HEADER_NAME.match(name):
            raise bad_request(f"{where}: invalid header name {name!r}.")
        if not value or len(value) > 995 or len(name) + len(value) > 996 or not re.fullmatch(r"[ -~]*", value):
            raise bad_request(f"{where}: invalid value for header {name!r}.")
        if name.lower() in DISALLOWED_HEADERS:
            raise bad_request(f"{where}: the header {name!r} is set by SES and may not be given.")
        if name.lower() in SINGLE_HEADERS and name.lower() in seen:
            raise bad_request(f"{where}: the header {name!r} may appear only once.")
        seen.add(name.lower())
        out.append((name, value))
    return out


def _merge_headers(template: list[tuple[str, str]], entry: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The entry's header replaces the template's header of its name; the others are added, in order."""
    replaced = {name.lower(): value for name, value in entry}
    merged = [(name, replaced.pop(name.lower(), value)) for name, value in template]
    return merged + [(name, value) for name, value in entry if name.lower() in replaced]


def _tags(tags: list[dict[str, str]], where: str) -> None:
    for tag in tags:
        if not TAG.match(tag["Name"]) or not TAG.match(tag["Value"]):
            raise bad_request(
                f"{where}: invalid message tag {tag['Name']!r}: ASCII letters, digits, _ and -, up to 256."
            )


def _json_object(text: str | None, what: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        raise bad_request(f"{what} is not valid JSON.") from None
    if not isinstance(data, dict):
        raise bad_request(f"{what} must be a JSON object.")
    return data


def _template_content(backend: Any, template: dict[str, Any]) -> tuple[dict[str, str], bool]:
    """(Subject, Text, Html) of the request's template, and whether it was given inline."""
    given = [key for key in ("TemplateName", "TemplateArn", "TemplateContent") if template.get(key)]
    if len(given) != 1:
        raise bad_request(
            "DefaultContent.Template must give exactly one of TemplateName, TemplateArn, TemplateContent."
        )
    if given[0] == "TemplateContent":
        content = template["TemplateContent"]
        if not content.get("Text") and not content.get("Html"):
            raise bad_request("TemplateContent must have a Text part, an Html part, or both.")
        return {
            "Subject": content.get("Subject", ""),
            "Text": content.get("Text", ""),
            "Html": content.get("Html", ""),
        }, True
    name = template.get("TemplateName") or ""
    if given[0] == "TemplateArn":
        arn = template["TemplateArn"]
        prefix = _template_arn(backend, "")
        if not arn.startswith(prefix):
            raise not_found(f"Template {arn} does not exist.")
        name = arn.removeprefix(prefix)
    stored = _stored(backend, name)
    return {
        "Subject": stored.get("subject_part", ""),
        "Text": stored.get("text_part", ""),
        "Html": stored.get("html_part", ""),
    }, False


def _verified_sender(backend: Any, params: dict[str, Any]) -> str:
    sender = params.get("FromEmailAddress")
    if not sender:
        raise bad_request("FromEmailAddress is required.")
    problem = _address_problem(sender)
    if problem:
        raise bad_request(problem)
    core = _core(backend)
    identity_arn = params.get("FromEmailAddressIdentityArn")
    if identity_arn:
        identity = identity_arn.rpartition(":identity/")[2]
        verified = identity in core.email_identities
    else:
        identity, verified = parseaddr(sender)[1], core._is_verified_address(sender)
    if not verified:
        raise _error(
            "MessageRejected",
            "Email address is not verified. The following identities failed the check in region "
            f"{backend.region_name.upper()}: {identity}",
        )
    return str(sender)


def _message(
    sender: str, destination: dict[str, list[str]], reply_to: list[str], subject: str, text: str, html: str,
    headers: list[tuple[str, str]], message_id: str, region: str, attachments: list[dict[str, Any]],
) -> str:  # fmt: skip
    message = EmailMessage(policy=MIME_POLICY)
    message["From"] = sender
    if destination.get("ToAddresses"):
        message["To"] = ", ".join(destination["ToAddresses"])
    if destination.get("CcAddresses"):
        message["Cc"] = ", ".join(destination["CcAddresses"])
    if reply_to:
        message["Reply-To"] = ", ".join(reply_to)
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC))
    domain = "email.amazonses.com" if region == "us-east-1" else f"{region}.amazonses.com"
    message["Message-ID"] = f"<{message_id}@{domain}>"
    message["MIME-Version"] = "1.0"
    for name, value in headers:
        message[name] = value
    if text and html:
        message.set_content(text, charset="utf-8")
        message.add_alternative(html, subtype="html", charset="utf-8")
    elif html:
        message.set_content(html, subtype="html", charset="utf-8")
    else:
        message.set_content(text, charset="utf-8")
    for attachment in attachments:
        raw = attachment["RawContent"]
        data = base64.b64decode(raw) if isinstance(raw, str) else bytes(raw)
        maintype, _, subtype = (attachment.get("ContentType") or "application/octet-stream").partition("/")
        message.add_attachment(
            data, maintype=maintype, subtype=subtype or "octet-stream", filename=attachment["FileName"],
            disposition=(attachment.get("ContentDisposition") or "ATTACHMENT").lower(),
            cid=f"<{attachment['ContentId']}>" if attachment.get("ContentId") else None,
        )  # fmt: skip
    for part in message.walk():
        if part is not message:
            del part["MIME-Version"]  # EmailMessage puts one on every part it makes: only the top has one
    return message.as_string()


def send_bulk_email(backend: Any, params: dict[str, Any]) -> dict[str, Any]:
    from moto.ses.exceptions import SesError
    from moto.ses.utils import get_random_message_id

    entries = params["BulkEmailEntries"]
    if not 1 <= len(entries) <= MAX_ENTRIES:
        raise bad_request(f"BulkEmailEntries must hold between 1 and {MAX_ENTRIES} entries, not {len(entries)}.")
    sender = _verified_sender(backend, params)
    core = _core(backend)
    config_set = params.get("ConfigurationSetName")
    if config_set and config_set not in core.config_sets:
        raise not_found(f"Configuration set <{config_set}> does not exist.")
    template = (params.get("DefaultContent") or {}).get("Template")
    if not template:
        raise bad_request("DefaultContent.Template is required.")
    content, inline = _template_content(backend, template)
    defaults = _json_object(template.get("TemplateData"), "TemplateData")
    template_headers = _headers(template.get("Headers") or [], "DefaultContent.Template.Headers")
    for address in [*(params.get("ReplyToAddresses") or []), params.get("FeedbackForwardingEmailAddress") or "x@x"]:
        problem = _address_problem(address)
        if problem:
            raise bad_request(problem)
    _tags(params.get("DefaultEmailTags") or [], "DefaultEmailTags")
    entry_headers = []
    for index, entry in enumerate(entries):
        entry_headers.append(
            _headers(entry.get("ReplacementHeaders") or [], f"BulkEmailEntries[{index}].ReplacementHeaders")
        )
        _tags(entry.get("ReplacementTags") or [], f"BulkEmailEntries[{index}].ReplacementTags")

    results: list[dict[str, Any]] = []
    for entry, headers in zip(entries, entry_headers, strict=True):
        destination = entry["Destination"]
        recipients = [a for key in ("ToAddresses", "CcAddresses", "BccAddresses") for a in destination.get(key) or []]
        problems = [p for p in map(_address_problem, recipients) if p]
        if not recipients:
            problems.append("The destination has no recipients.")
        elif len(recipients) > MAX_RECIPIENTS:
            problems.append(f"Recipient count exceeds {MAX_RECIPIENTS}.")
        replacement = ((entry.get("ReplacementEmailContent") or {}).get("ReplacementTemplate") or {}).get(
            "ReplacementTemplateData"
        )
        try:
            data = {**defaults, **_json_object(replacement, "ReplacementTemplateData")}
        except Exception as e:
            problems.append(str(getattr(e, "message", e)))
        if problems:
            results.append({"Status": "INVALID_PARAMETER", "Error": problems[0]})
            continue
        message_id = get_random_message_id()
        try:
            rendered = {part: render(text, data, simple=inline) for part, text in content.items()}
        except RenderingFailure as failure:
            # SES accepted it, and sends nothing: a Rendering Failure event, not an error
            failures = core.__dict__.setdefault("rendering_failures", [])
            failures.append({
                "message_id": message_id, "source": sender, "destinations": recipients,
                "template": template.get("TemplateName") or template.get("TemplateArn") or "(inline)",
                "configuration_set": config_set, "error": str(failure), "timestamp": datetime.now(UTC).isoformat(),
            })  # fmt: skip
            results.append({"Status": "SUCCESS", "MessageId": message_id})
            continue
        raw = _message(
            sender, destination, params.get("ReplyToAddresses") or [], rendered["Subject"], rendered["Text"],
            rendered["Html"], _merge_headers(template_headers, headers), message_id, backend.region_name,
            template.get("Attachments") or [],
        )  # fmt: skip
        try:
            sent = core.send_raw_email(source=sender, destinations=list(recipients), raw_data=raw)
        except SesError as e:
            results.append({"Status": "FAILED", "Error": e.message})
            continue
        sent.id = message_id  # the same id in the answer, the RawMessage and its Message-ID header
        results.append({"Status": "SUCCESS", "MessageId": message_id})
    return {"BulkEmailEntryResults": results}


# --- GetAccount: the sending quota -------------------------------------------------------------


def set_send_quota(account: str, region: str, max_send_rate: float, max_24_hour_send: float | None = None) -> None:
    """The quota GetAccount answers in this process's moto (``mock_aws``, or the moto process itself)."""
    from moto.ses.models import ses_backends

    if not max_send_rate > 0:
        raise ValueError(f"MaxSendRate must be positive, not {max_send_rate}")
    core = ses_backends[account][region]
    core.__dict__["send_quota"] = {
        "MaxSendRate": float(max_send_rate),
        "Max24HourSend": float(max_24_hour_send if max_24_hour_send is not None else DEFAULT_QUOTA["Max24HourSend"]),
    }


def _quota(core: Any) -> dict[str, float]:
    import os

    if "send_quota" in core.__dict__:
        return dict(core.__dict__["send_quota"])
    return {
        "MaxSendRate": float(os.environ.get("OPTOUT_LOCAL_SES_MAX_SEND_RATE") or DEFAULT_QUOTA["MaxSendRate"]),
        "Max24HourSend": float(os.environ.get("OPTOUT_LOCAL_SES_MAX_24_HOUR_SEND") or DEFAULT_QUOTA["Max24HourSend"]),
    }


def account(quota: dict[str, float], sent: float) -> dict[str, Any]:
    """A GetAccount answer: a production account in good standing with this quota."""
    return {
        "DedicatedIpAutoWarmupEnabled": False,
        "EnforcementStatus": "HEALTHY",
        "ProductionAccessEnabled": True,
        "SendingEnabled": True,
        "SendQuota": {**quota, "SentLast24Hours": float(sent)},
    }


def get_account(backend: Any, params: dict[str, Any]) -> dict[str, Any]:
    core = _core(backend)
    return account(_quota(core), core.sent_message_count)


# --- the patch -----------------------------------------------------------------------------------

_OPERATIONS: dict[str, Callable[[Any, dict[str, Any]], dict[str, Any] | None]] = {
    "SendBulkEmail": send_bulk_email,
    "GetAccount": get_account,
    "CreateEmailTemplate": create_email_template,
    "GetEmailTemplate": get_email_template,
    "UpdateEmailTemplate": update_email_template,
    "DeleteEmailTemplate": delete_email_template,
    "ListEmailTemplates": list_email_templates,
}


def _handler(operation: str, implementation: Callable[[Any, dict[str, Any]], dict[str, Any] | None]) -> Any:
    def handler(self: Any) -> str:
        query = parse_qs(self.parsed_url.query, keep_blank_values=True)
        params = request_params(operation, self.body, self.uri_match or {}, query)
        return json.dumps(implementation(self.sesv2_backend, params) or {})

    handler.__name__ = re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()
    return handler


def apply() -> None:
    """Give moto's sesv2 the operations above, in its server and under ``mock_aws`` alike."""
    global _applied
    if _applied:
        return
    from moto.sesv2 import urls
    from moto.sesv2.responses import SESV2Response

    for operation, implementation in _OPERATIONS.items():
        handler = _handler(operation, implementation)
        setattr(SESV2Response, handler.__name__, handler)
    # Named routes, ahead of moto's catch-all, so they stay served should the catch-all go
    routes = dict.fromkeys(ROUTES, SESV2Response.dispatch)
    paths = dict(urls.url_paths)
    urls.url_paths.clear()
    urls.url_paths.update({**routes, **paths})
    _applied = True


def rendering_failures(account: str, region: str) -> list[dict[str, Any]]:
    """The destinations SES accepted and did not send, their template failing to render."""
    from moto.ses.models import ses_backends

    return list(ses_backends[account][region].__dict__.get("rendering_failures", []))


__all__ = ["QuotaSes", "RenderingFailure", "apply", "render", "rendering_failures", "set_send_quota"]


# --- the quota run's SES: a latency and a per-second quota, nothing rendered -----------------------

# POST {"max_send_rate", "latency", "max_24_hour_send", "enforced_rate"} starts afresh; GET: the ledger
QUOTA_CONTROL = "/_quota"
QUOTA_ROUTES = {
    ("GET", "/v2/email/account"): "GetAccount",
    ("POST", "/v2/email/outbound-bulk-emails"): "SendBulkEmail",
    ("POST", "/v2/email/outbound-emails"): "SendEmail",
}


class QuotaSes:
    """SES v2 for the bench's quota run: each call answered after ``latency`` seconds, recipients above
    ``max_send_rate`` a second refused.

    Why not moto: moto renders and stores each recipient's message as raw MIME, about 2.3 ms a
    recipient on the 2-core machine the bench runs on (200 bulk calls of about 45 recipients
    replayed bare took 20.8 s), so it cannot take 1,000 recipients a second: the quota run would
    measure moto, not the sender. Here each request is still checked against botocore's model
    (``request_params``), each address as SES checks it, and every call is kept in a ledger (when it
    arrived, the operation, its recipients, whether it was taken): the provider's own count.

    The quota is recipients per second (SES developer guide, "sending quotas"): a token bucket of
    ``max_send_rate`` a second that holds one second of it and starts full. A call is taken whole, or
    refused whole with ``ThrottlingException`` "Maximum sending rate exceeded." (the guide's
    "Errors related to the sending quotas"), before its latency, as SES decides on arrival. With
    ``enforced_rate`` it throttles above that instead, while GetAccount still answers the quota:
    an account another sender shares.
    """

    def __init__(self, max_send_rate: float = DEFAULT_QUOTA["MaxSendRate"], latency: float = 0.0) -> None:
        import threading

        self.lock = threading.Lock()
        self.configure({"max_send_rate": max_send_rate, "latency": latency})

    def configure(self, config: dict[str, Any]) -> None:
        import time

        rate = float(config.get("max_send_rate") or DEFAULT_QUOTA["MaxSendRate"])
        if not rate > 0:
            raise ValueError(f"max_send_rate must be positive, not {rate}")
        with self.lock:
            self.quota = {
                "MaxSendRate": rate,
                "Max24HourSend": float(config.get("max_24_hour_send") or DEFAULT_QUOTA["Max24HourSend"]),
            }
            self.latency = float(config.get("latency") or 0.0)
            # What it throttles above: the quota, unless told less (another sender shares the account)
            self.enforced = float(config.get("enforced_rate") or rate)
            self.tokens, self.updated = self.enforced, time.monotonic()
            self.ledger: list[tuple[float, str, int, bool]] = []
            self.sent = 0

    def _admit(self, operation: str, recipients: int) -> bool:
        import time

        with self.lock:
            now = time.monotonic()
            rate = self.enforced
            self.tokens = min(rate, self.tokens + (now - self.updated) * rate)
            self.updated = now
            taken = self.tokens >= recipients
            if taken:
                self.tokens -= recipients
                self.sent += recipients
            self.ledger.append((now, operation, recipients, taken))
            return taken

    def handle(self, operation: str, body: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
        """(status, headers, JSON body) for one request, its latency waited out."""
        import time
        import uuid

        from moto.core.exceptions import ServiceException

        arrived = time.monotonic()
        try:
            params = request_params(operation, body, {}, {})
            if operation == "GetAccount":
                return 200, {}, account(self.quota, self.sent)
            if operation == "SendEmail":
                destination = params.get("Destination") or {}
                addresses = [
                    a for key in ("ToAddresses", "CcAddresses", "BccAddresses") for a in destination.get(key) or []
                ]
            else:
                addresses = [
                    a
                    for entry in params["BulkEmailEntries"]
                    for key in ("ToAddresses", "CcAddresses", "BccAddresses")
                    for a in entry["Destination"].get(key) or []
                ]
                if not 1 <= len(params["BulkEmailEntries"]) <= MAX_ENTRIES:
                    raise bad_request(f"BulkEmailEntries must hold between 1 and {MAX_ENTRIES} entries.")
            problem = next((p for p in map(_address_problem, addresses) if p), None)
            if problem or not addresses:
                raise bad_request(problem or "The destination has no recipients.")
        except ServiceException as e:
            return 400, {"x-amzn-ErrorType": e.code}, {"message": e.message}
        taken = self._admit(operation, len(addresses))
        time.sleep(max(0.0, arrived + self.latency - time.monotonic()))  # the latency includes the checks
        if not taken:
            return 400, {"x-amzn-ErrorType": "ThrottlingException"}, {"message": "Maximum sending rate exceeded."}
        if operation == "SendEmail":
            return 200, {}, {"MessageId": str(uuid.uuid4())}
        results = [{"Status": "SUCCESS", "MessageId": str(uuid.uuid4())} for _ in params["BulkEmailEntries"]]
        return 200, {}, {"BulkEmailEntryResults": results}

    def serve(self, host: str, port: int) -> None:
        """Serve until killed, a thread a connection, so calls wait out their latency side by side."""
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        ses = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as SES's endpoint and botocore's pool use it
            disable_nagle_algorithm = True  # else headers and body, written apart, wait for a delayed ACK (40 ms)

            def _reply(self, status: int, headers: dict[str, str], body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _route(self, method: str) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = self.path.split("?", 1)[0]
                if path == QUOTA_CONTROL:
                    if method == "POST":
                        ses.configure(json.loads(body or b"{}"))
                    with ses.lock:
                        ledger = list(ses.ledger)
                    self._reply(200, {}, {"quota": ses.quota, "latency": ses.latency, "ledger": ledger})
                    return
                operation = QUOTA_ROUTES.get((method, path))
                if operation is None:
                    self._reply(404, {"x-amzn-ErrorType": "NotFoundException"}, {"message": f"{method} {path}"})
                    return
                self._reply(*ses.handle(operation, body))

            def do_GET(self) -> None:  # BaseHTTPRequestHandler's names
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                return

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128

        Server((host, port), Handler).serve_forever()


def main(argv: list[str] | None = None) -> None:
    """``python -m optout_local.ses_emulation --quota-port N``: the quota run's SES, in a process of its own."""
    import argparse

    parser = argparse.ArgumentParser(description=QuotaSes.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--quota-port", type=int, required=True)
    args = parser.parse_args(argv)
    _model()  # botocore's sesv2 model, loaded before the first call rather than in it
    QuotaSes().serve(args.host, args.quota_port)


if __name__ == "__main__":
    main()
