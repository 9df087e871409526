"""Page tokens of the admin API: a DynamoDB key to go on from, as an opaque URL-safe string.

A token names string key attributes only, each at most a DynamoDB key's size: a made-up token is a
400, never a DynamoDB error (which would be a 500).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any

from optout.core.dynamo import from_item, to_item
from optout.core.errors import OptoutError

MAX_KEY_BYTES = 1024  # a sort key's limit (a partition key's is 2,048): every key this API pages by fits


class BadPageToken(OptoutError):
    code = "bad_page_token"


def encode(key: dict[str, Any] | None) -> str | None:
    """The token for a LastEvaluatedKey (None: there is no next page)."""
    if key is None:
        return None
    values = dict(sorted(from_item(key).items()))
    return base64.urlsafe_b64encode(json.dumps(values, separators=(",", ":")).encode()).decode()


def decode(token: str, names: Sequence[str]) -> dict[str, Any]:
    """The ExclusiveStartKey a token stands for; it must hold exactly ``names``, as strings."""
    try:
        values = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise BadPageToken("next_token is not one this API gave out") from exc
    if (
        not isinstance(values, dict)
        or sorted(values) != sorted(names)
        or not all(isinstance(v, str) and 0 < len(v.encode()) <= MAX_KEY_BYTES for v in values.values())
    ):
        raise BadPageToken("next_token is not one this API gave out")
    return to_item(values)
