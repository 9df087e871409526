"""Small pieces every HTTP handler needs: the raw body, the public URL, the JSON error body, and the
limits a JSON body is held to before it is parsed."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from optout.core.errors import BadForm, InvalidFields, OptoutError, PayloadTooLarge, UnsupportedMediaType


def body_bytes(body: str | None, is_base64: bool) -> bytes:
    raw = (body or "").encode("utf-8", "surrogateescape")
    if not is_base64:
        return raw
    try:
        return base64.b64decode(raw, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise BadForm("the body is not valid base64") from exc


def public_url(configured_base: str, headers: Mapping[str, str], domain: str, raw_path: str, raw_query: str) -> str:
    """The URL the caller used: the configured public base if set, else what API Gateway saw."""
    if configured_base:
        base = configured_base.rstrip("/")
    else:
        lower = {k.lower(): v for k, v in headers.items()}
        scheme = lower.get("x-forwarded-proto", "https").split(",")[0].strip() or "https"
        base = f"{scheme}://{lower.get('host') or domain}"
    return f"{base}{raw_path}" + (f"?{raw_query}" if raw_query else "")


# JSON request bodies (the admin API). A notice small enough to store (NoticeStore.create: 200 KiB in
# UTF-8) fits in MAX_JSON_BYTES even with every non-ASCII character \u-escaped; nothing the models accept
# nests deeper than 3 levels, nor holds a number of more than a few digits.
MAX_JSON_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 16
MAX_JSON_NUMBER = 32  # characters: json.loads turns 4,300 digits into a ValueError, more is pure CPU
# A string, or an unterminated one to the end: a match at every quote keeps the scan linear
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_JSON_BRACKET = re.compile(rb"[\[\]{}]")
_JSON_LONG_NUMBER = re.compile(rb"[-+0-9.eE]{%d,}" % (MAX_JSON_NUMBER + 1))


# The one place a domain error becomes an HTTP status: every resolver's exception handler asks
# http_status. By code, the clients' contract, so this module imports no domain module for its errors.
STATUS_BY_CODE: dict[str, int] = {
    "error": 400,
    "bad_form": 400,
    "bad_page_token": 400,  # nosec B105 - an error code, not a secret
    "invalid_feedback": 400,
    "invalid_inbound_sms": 400,
    "malformed_token": 400,  # nosec B105 - an error code, not a secret
    "forbidden": 403,
    "invalid_token": 403,  # nosec B105 - an error code, not a secret
    "not_found": 404,
    "method_not_allowed": 405,
    "concurrent_update": 409,
    "idempotency_conflict": 409,
    "keyword_block": 409,
    "publication_conflict": 409,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "invalid_address": 422,
    "not_publishable": 422,
    "required_topic": 422,
    "unknown_topic": 422,
    "validation_error": 422,
    "intake_unavailable": 503,
    "try_again": 503,
}


def http_status(exc: OptoutError) -> int:
    """The HTTP status for a domain error (an unknown code is the caller's fault: 400)."""
    return STATUS_BY_CODE.get(exc.code, 400)


def error_body(exc: OptoutError) -> str:
    if isinstance(exc, InvalidFields):
        return fields_error_body(exc.fields)
    return json.dumps({"error": {"code": exc.code, "message": exc.message}})


def fields_error_body(fields: Sequence[tuple[str, str]]) -> str:
    """The 422 body: our error format, with every field path and what is wrong with it."""
    listed = [{"path": path or "body", "message": message} for path, message in fields]
    message = "; ".join(f"{f['path']}: {f['message']}" for f in listed[:10]) or "invalid request"
    return json.dumps({"error": {"code": InvalidFields.code, "message": message, "fields": listed}})


def validation_error_body(errors: Sequence[Any], union_tags: Collection[str] = ()) -> str:
    """422 body for the resolver's validation errors, field paths without ``body`` or a
    discriminated union's tag (one of ``union_tags``, such as a notice's kind)."""
    fields = []
    for error in errors:
        if error.get("type") == "json_invalid":  # its location is a character offset, not a field
            fields.append(("body", f"not valid JSON (at character {error['loc'][-1]})"))
            continue
        location = [str(part) for part in error.get("loc", ()) if part != "body"]
        if location and location[0] in union_tags:  # the discriminated union's tag is not a field
            location = location[1:]
        fields.append((".".join(location), str(error.get("msg", "invalid"))))
    return fields_error_body(fields)


def _response(status: int, body: str) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": body,
        "isBase64Encoded": False,
    }


def json_shape_problem(raw: bytes) -> str | None:
    """Why a JSON body is refused before it is parsed, or None.

    json.loads recurses once per level of nesting (a RecursionError past about a thousand) and
    converts a number's digits in quadratic time, so both are bounded by scanning the bytes
    outside strings, in linear time, before anything parses them.
    """
    outside = _JSON_STRING.sub(b'""', raw)
    depth = 0
    for bracket in _JSON_BRACKET.finditer(outside):
        depth += 1 if bracket.group() in (b"[", b"{") else -1
        if depth > MAX_JSON_DEPTH:
            return f"nested deeper than {MAX_JSON_DEPTH} levels"
    if _JSON_LONG_NUMBER.search(outside):
        return f"holds a number longer than {MAX_JSON_NUMBER} characters"
    return None


def json_body_refusal(event: Mapping[str, Any]) -> dict[str, Any] | None:
    """The response for a body refused before it is parsed (415, 413, 400 or 422); None when it may proceed."""
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if not event.get("body"):
        return None
    if content_type not in ("application/json", ""):
        return _response(415, error_body(UnsupportedMediaType("send application/json")))
    try:
        raw = body_bytes(event.get("body"), bool(event.get("isBase64Encoded")))
    except BadForm as exc:
        return _response(http_status(exc), error_body(exc))
    if len(raw) > MAX_JSON_BYTES:
        return _response(413, error_body(PayloadTooLarge(f"the body is over {MAX_JSON_BYTES} bytes")))
    problem = json_shape_problem(raw)
    if problem is not None:
        return _response(http_status(InvalidFields([])), fields_error_body([("body", problem)]))
    return None
