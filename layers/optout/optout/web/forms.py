"""Parse the bodies a browser or a mail client posts: urlencoded or multipart/form-data.

Only text fields are accepted; a file part, a malformed body, or a body over the limit is a
client error, never a crash.
"""

from __future__ import annotations

from email.parser import BytesParser
from email.policy import HTTP
from urllib.parse import parse_qsl

from optout.core.errors import BadForm, PayloadTooLarge, UnsupportedMediaType

Form = dict[str, list[str]]
URLENCODED = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
MAX_FIELDS = 64


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_form(body: bytes, content_type: str | None, max_bytes: int) -> Form:
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"the form is larger than {max_bytes} bytes")
    kind = media_type(content_type)
    if kind == URLENCODED:
        return _urlencoded(body)
    if kind == MULTIPART:
        return _multipart(body, content_type or "")
    raise UnsupportedMediaType("send application/x-www-form-urlencoded or multipart/form-data")


def _add(form: Form, name: str, value: str) -> None:
    if sum(len(v) for v in form.values()) >= MAX_FIELDS:
        raise BadForm("the form has too many fields")
    form.setdefault(name, []).append(value)


def _urlencoded(body: bytes) -> Form:
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadForm("the form is not valid urlencoded UTF-8") from exc
    form: Form = {}
    for name, value in pairs:
        _add(form, name, value)
    return form


def _multipart(body: bytes, content_type: str) -> Form:
    if "boundary=" not in content_type.lower():
        raise BadForm("multipart/form-data needs a boundary")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    if not message.is_multipart() or message.defects:
        raise BadForm("the multipart body is malformed")
    form: Form = {}
    for part in message.iter_parts():
        if part.get_content_disposition() != "form-data" or part.get_filename() is not None:
            raise BadForm("only plain form fields are accepted")
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if not isinstance(name, str) or not isinstance(payload, bytes):
            raise BadForm("a form field has no name")
        charset = part.get_content_charset() or "utf-8"
        try:
            _add(form, name, payload.decode(charset))
        except (UnicodeDecodeError, LookupError) as exc:
            raise BadForm("a form field is not valid text") from exc
    return form


def first(form: Form, name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None
