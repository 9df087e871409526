"""HTTP stays out of the domain: no domain error carries a status, and the one map in optout.http
gives every error's code the status its resolvers answer with."""

from __future__ import annotations

import importlib
import pkgutil

import optout
from optout.errors import OptoutError
from optout.http import STATUS_BY_CODE, http_status


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


def test_statuses_the_clients_rely_on() -> None:
    from optout.errors import InvalidFields, InvalidToken, MalformedToken, NotFound, UnsupportedMediaType

    assert [http_status(e) for e in (MalformedToken("x"), InvalidToken("x"), NotFound("x"))] == [400, 403, 404]
    assert http_status(UnsupportedMediaType("x")) == 415
    assert http_status(InvalidFields([("a", "b")])) == 422
