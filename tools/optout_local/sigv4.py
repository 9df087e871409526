"""Check AWS Signature Version 4 on requests to AWS_IAM routes, as API Gateway does.

Locally the only principal is access key ``testing`` with secret ``testing``; the signature is
recomputed with botocore over exactly the headers the client signed, and always over the body:
a signed ``x-amz-content-sha256: UNSIGNED-PAYLOAD`` (or any value but the body's hash) would let
the body of a captured request be swapped, so it is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

LOCAL_CREDENTIALS = {"testing": "testing"}
MAX_SKEW = timedelta(minutes=15)
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request,\s*"
    r"SignedHeaders=(?P<signed>[a-z0-9;\-]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)


class SignatureError(Exception):
    pass


def verify(
    method: str, url: str, headers: Mapping[str, str], body: bytes, region: str, now: datetime | None = None
) -> str:
    """Return the caller's access key id, or raise SignatureError saying what is wrong."""
    lower = {k.lower(): v for k, v in headers.items()}
    match = _AUTH.match(lower.get("authorization", "").strip())
    if match is None:
        raise SignatureError("missing or malformed SigV4 Authorization header")
    access_key = match["key"]
    secret = LOCAL_CREDENTIALS.get(access_key)
    if secret is None:
        raise SignatureError("unknown access key")
    if match["region"] != region or match["service"] != "execute-api":
        raise SignatureError("credential scope must be <date>/<region>/execute-api/aws4_request")
    amz_date = lower.get("x-amz-date", "")
    try:
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError as exc:
        raise SignatureError("missing or malformed X-Amz-Date") from exc
    if abs((now or datetime.now(UTC)) - signed_at) > MAX_SKEW or amz_date[:8] != match["date"]:
        raise SignatureError("signature expired or dated wrongly")
    signed_names = match["signed"].split(";")
    if "host" not in signed_names:
        raise SignatureError("the host header must be signed")
    content_hash = lower.get("x-amz-content-sha256")
    if content_hash is not None and content_hash != hashlib.sha256(body).hexdigest():
        # botocore signs over this header's value in place of the body's hash when it is given
        raise SignatureError("the payload must be signed: x-amz-content-sha256 must be the body's SHA-256")
    request = AWSRequest(method=method, url=url, data=body, headers={n: lower.get(n, "") for n in signed_names})
    request.context["timestamp"] = amz_date
    credentials = Credentials(access_key, secret, lower.get("x-amz-security-token"))
    auth = SigV4Auth(credentials, "execute-api", region)
    canonical = auth.canonical_request(request)
    string_to_sign = auth.string_to_sign(request, canonical)
    expected = auth.signature(string_to_sign, request)
    if not hmac.compare_digest(expected, match["signature"]):
        raise SignatureError("the signature does not match")
    return access_key
