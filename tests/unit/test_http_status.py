"""HTTP stays out of the domain: no domain error carries a status, and the one map in optout.web.http
gives every error's code the status its resolvers answer with."""

from __future__ import annotations

import importlib
import pkgutil

import optout
from optout.core.errors import OptoutError
from optout.web.http import STATUS_BY_CODE, http_status


def _every_error() -> list[type[OptoutError]]:
    for module in pkgutil.walk_packages(optout.__path__, "optout."):
        importlib.import_module(module.name)
    found: list[type[OptoutError]] = []
    todo = [OptoutError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_no_domain_error_carries_an_http_status() -> None:
    carrying = [cls.__qualname__ for cls in _every_error() if "status" in vars(cls)]
    assert carrying == []


def test_every_domain_errors_code_has_its_status_in_the_one_map() -> None:
    errors = _every_error()
    assert len(errors) > 20  # every module was imported: the walk found the errors defined outside errors.py
    missing = sorted({cls.code for cls in errors} - set(STATUS_BY_CODE))
    assert missing == []
    unused = sorted(set(STATUS_BY_CODE) - {cls.code for cls in errors})
    assert unused == []


# Every code with the status its error carried before the statuses left the domain (165df1f)
CONTRACT = {
    "error": 400, "bad_form": 400, "bad_page_token": 400, "invalid_feedback": 400, "invalid_inbound_sms": 400,
    "malformed_token": 400, "forbidden": 403, "invalid_token": 403, "not_found": 404, "method_not_allowed": 405,
    "concurrent_update": 409, "idempotency_conflict": 409, "keyword_block": 409, "publication_conflict": 409,
    "payload_too_large": 413, "unsupported_media_type": 415, "invalid_address": 422, "not_publishable": 422,
    "required_topic": 422, "unknown_topic": 422, "validation_error": 422, "intake_unavailable": 503,
    "try_again": 503,
}  # fmt: skip


def test_every_code_keeps_the_status_clients_rely_on() -> None:
    assert STATUS_BY_CODE == CONTRACT
    for cls in _every_error():
        error = cls([("a", "b")]) if cls.code == "validation_error" else cls.__new__(cls)
        assert http_status(error) == CONTRACT[cls.code], cls.__qualname__
