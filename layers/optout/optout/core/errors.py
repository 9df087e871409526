"""Domain errors: what went wrong, in the domain's words, with a ``code`` stable for clients.

None carries an HTTP status (``optout.web.http.http_status`` maps codes to statuses, for the resolvers)
or a plain address."""

from __future__ import annotations


class OptoutError(Exception):
    """Base class: ``code`` is stable for clients."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidAddress(OptoutError):
    code = "invalid_address"


class InvalidFields(OptoutError):
    """Fields the request's model accepted but the domain cannot: the same 422 as a model's own."""

    code = "validation_error"

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{path}: {message}" for path, message in fields))
        self.fields = fields


class MalformedToken(OptoutError):
    code = "malformed_token"


class InvalidToken(OptoutError):
    """Well-formed but not ours: bad signature, unknown key, or expired."""

    code = "invalid_token"


class UnknownTopic(OptoutError):
    code = "unknown_topic"


class RequiredTopic(OptoutError):
    code = "required_topic"


class BadForm(OptoutError):
    code = "bad_form"


class UnsupportedMediaType(OptoutError):
    code = "unsupported_media_type"


class PayloadTooLarge(OptoutError):
    code = "payload_too_large"


class ConcurrentUpdate(OptoutError):
    """The suppression state changed between read and write; the caller retries."""

    code = "concurrent_update"


class NotFound(OptoutError):
    code = "not_found"


class MethodNotAllowed(OptoutError):
    code = "method_not_allowed"


class Forbidden(OptoutError):
    code = "forbidden"
