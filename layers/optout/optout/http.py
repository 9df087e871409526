"""Small pieces every HTTP handler needs: the raw body, the public URL, the JSON error body."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from typing import Any

from optout.errors import BadForm, OptoutError


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


def error_body(exc: OptoutError) -> str:
    return json.dumps({"error": {"code": exc.code, "message": exc.message}})


def _notice_kinds() -> tuple[str, ...]:
    from typing import get_args

    from optout.notices.model import Kind

    return get_args(Kind)


def validation_error_body(errors: Sequence[Any]) -> str:
    """422 body: our error format, with every field path and what is wrong with it."""
    fields = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ()) if part != "body"]
        if location and location[0] in _notice_kinds():  # the discriminated union's tag is not a field
            location = location[1:]
        fields.append({"path": ".".join(location) or "body", "message": str(error.get("msg", "invalid"))})
    message = "; ".join(f"{f['path']}: {f['message']}" for f in fields[:10]) or "invalid request"
    return json.dumps({"error": {"code": "validation_error", "message": message, "fields": fields}})


def json_body_refusal(event: Mapping[str, Any]) -> dict[str, Any] | None:
    """A 415 response for a request with a body that is not JSON; None when it may proceed."""
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if not event.get("body") or content_type in ("application/json", ""):
        return None
    body = json.dumps({"error": {"code": "unsupported_media_type", "message": "send application/json"}})
    return {"statusCode": 415, "headers": {"Content-Type": "application/json"}, "body": body, "isBase64Encoded": False}
