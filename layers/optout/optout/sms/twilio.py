"""Twilio-style inbound webhooks: request signatures and TwiML replies.

X-Twilio-Signature = base64(HMAC-SHA1(auth token, full public URL + every POST parameter name
and value, sorted by name, concatenated)). The URL is the public one the carrier called (from
configuration, so it verifies behind API Gateway), including any query string.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlsplit, urlunsplit
from xml.sax.saxutils import escape  # nosec B406

from optout.core.errors import BadForm, PayloadTooLarge, UnsupportedMediaType
from optout.web.forms import URLENCODED, media_type


def signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """Names sorted; a name sent more than once contributes each distinct value once, sorted."""
    values: dict[str, set[str]] = {}
    for name, value in params:
        values.setdefault(name, set()).add(value)
    payload = url + "".join(name + value for name in sorted(values) for value in sorted(values[name]))
    digest = hmac.new(auth_token.encode(), payload.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _port_variants(url: str) -> list[str]:
    """Twilio may have signed the URL with or without the default port; accept either."""
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    if parts.port is None and default is not None and parts.hostname:
        return [url, urlunsplit(parts._replace(netloc=f"{parts.netloc}:{default}"))]
    if parts.port == default and parts.hostname:
        return [url, urlunsplit(parts._replace(netloc=parts.netloc.rsplit(":", 1)[0]))]
    return [url]


def valid_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]], claimed: str | None) -> bool:
    if not claimed or not auth_token:
        return False
    pairs = list(params)
    given = claimed.strip().encode("utf-8", "surrogatepass")
    return any(hmac.compare_digest(signature(auth_token, u, pairs).encode(), given) for u in _port_variants(url))


def twiml(reply: str | None) -> str:
    if reply is None:
        return '<?xml version="1.0" encoding="UTF-8"?><Response/>'
    return f'<?xml version="1.0" encoding="UTF-8"?><Response><Message>{escape(reply)}</Message></Response>'


def form_params(body: bytes, content_type: str | None, max_bytes: int) -> list[tuple[str, str]]:
    """The POSTed form as ordered pairs: the signature covers every one of them."""
    if len(body) > max_bytes:
        raise PayloadTooLarge("the webhook body is too large")
    if media_type(content_type) != URLENCODED:
        raise UnsupportedMediaType("Twilio webhooks are application/x-www-form-urlencoded")
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict", max_num_fields=100)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadForm("the webhook body is not valid urlencoded UTF-8") from exc
