"""Domain errors. Handlers map each to a response; none carries a plain address."""

from __future__ import annotations


class OptoutError(Exception):
    """Base class: ``code`` is stable for clients, ``status`` the fitting HTTP status."""

    code = "error"
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidAddress(OptoutError):
    code = "invalid_address"
    status = 422


class InvalidFields(OptoutError):
    """Fields the request's model accepted but the domain cannot: the same 422 as a model's own."""

    code = "validation_error"
    status = 422

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{path}: {message}" for path, message in fields))
        self.fields = fields


class MalformedToken(OptoutError):
    code = "malformed_token"
    status = 400


class InvalidToken(OptoutError):
    """Well-formed but not ours: bad signature, unknown key, or expired."""

    code = "invalid_token"
    status = 403


class UnknownTopic(OptoutError):
    code = "unknown_topic"
    status = 422


class RequiredTopic(OptoutError):
    code = "required_topic"
    status = 422


class BadForm(OptoutError):
    code = "bad_form"
    status = 400


class UnsupportedMediaType(OptoutError):
    code = "unsupported_media_type"
    status = 415


class PayloadTooLarge(OptoutError):
    code = "payload_too_large"
    status = 413


class ConcurrentUpdate(OptoutError):
    """The suppression state changed between read and write; the caller retries."""

    code = "concurrent_update"
    status = 409


class NotFound(OptoutError):
    code = "not_found"
    status = 404


class MethodNotAllowed(OptoutError):
    code = "method_not_allowed"
    status = 405


class AlreadyProcessed(OptoutError):
    """An inbound message (same carrier message id) was processed before: no second effect."""

    code = "already_processed"
    status = 200


class Forbidden(OptoutError):
    code = "forbidden"
    status = 403
