"""The shape check a JSON body passes before it is parsed: it measures nesting outside strings exactly,
so it refuses what json.loads would choke on and nothing a model could accept."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from optout.web.http import MAX_JSON_DEPTH, MAX_JSON_NUMBER, json_shape_problem

# Strings full of what the scanner must not count: brackets, and quotes and backslashes (escaped)
TRICKY = st.text(alphabet='[]{}"\\/\n\t\u2028a漢', max_size=20)
LEAVES = st.none() | st.booleans() | st.integers(-(10**12), 10**12) | TRICKY
VALUES = st.recursive(
    LEAVES,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TRICKY, children, max_size=3),
    max_leaves=40,
)


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


def wrapped(value: Any, levels: int) -> Any:
    for _ in range(levels):
        value = [value]
    return value


@settings(max_examples=300, deadline=None)
@given(VALUES, st.integers(0, MAX_JSON_DEPTH + 3), st.booleans())
def test_refused_exactly_when_nested_past_the_limit(value: Any, extra: int, ascii_only: bool) -> None:
    document = wrapped(value, extra)
    raw = json.dumps(document, ensure_ascii=ascii_only).encode()
    problem = json_shape_problem(raw)
    if depth(document) > MAX_JSON_DEPTH:
        assert problem is not None and "nested deeper" in problem
    else:
        assert problem is None


def test_a_number_longer_than_the_limit_is_refused_and_one_at_it_is_not() -> None:
    assert json_shape_problem(b'{"n": ' + b"9" * MAX_JSON_NUMBER + b"}") is None
    assert json_shape_problem(b'{"n": -' + b"9" * MAX_JSON_NUMBER + b"}") is not None
    assert json_shape_problem(b'{"n": 1e' + b"9" * 5_000 + b"}") is not None
    # digits inside a string are text, not a number
    assert json_shape_problem(json.dumps({"n": "9" * 5_000}).encode()) is None


def test_a_pathological_body_is_scanned_in_linear_time() -> None:
    # a megabyte of unterminated string openers and of empty arrays: no backtracking, no recursion
    assert json_shape_problem(b'"\\' * 500_000) is None
    assert json_shape_problem(b"[]" * 500_000) is None
    assert json_shape_problem(b"[" * 1_000_000) is not None
