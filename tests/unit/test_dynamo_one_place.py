"""DynamoDB in one place: only optout.core.dynamo builds attribute values by hand, pages by
LastEvaluatedKey, or retries what a batch left unprocessed (issue 15)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

LAYER = Path(__file__).resolve().parents[2] / "layers" / "optout" / "optout"
ONE_PLACE = LAYER / "core" / "dynamo.py"

# A literal attribute value: {"S": ...}, {'N': ...}, {"NULL": True}, ...
HAND_BUILT = re.compile(r"""\{\s*(["'])(S|N|B|SS|NS|BS|BOOL|M|L|NULL)\1\s*:""")
# Reading a page's resume key, or what a batch left undone, is how a hand-made loop starts
LOOP = re.compile(r"""(["'])(LastEvaluatedKey|UnprocessedKeys|UnprocessedItems)\1""")


def offences(text: str) -> list[str]:
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for pattern, what in ((HAND_BUILT, "a hand-built attribute value"), (LOOP, "a hand-made page or retry loop")):
            if pattern.search(line):
                found.append(f"{number}: {what}: {line.strip()}")
    return found


def test_the_patterns_catch_what_they_are_for() -> None:
    for bad in (
        'key = {"pk": {"S": key}}',
        "flag = {'BOOL': True}",
        'values = {":n": {"N": "1"}, ":none": {"NULL": True}}',
        'empty = {"L": []}',
        'topics = {"SS" : sorted(t)}',
        'last = page.get("LastEvaluatedKey")',
        "pending = response['UnprocessedItems']",
        'while response.get("UnprocessedKeys"):',
    ):
        assert offences(bad), bad
    for fine in (
        'item = to_item({"pk": key, "sk": "state"})',
        'KeyConditionExpression="pk = :pk"',
        '"""The token for a LastEvaluatedKey."""',
        'names = {"#s": "status"}',
    ):
        assert not offences(fine), fine


@pytest.mark.parametrize(
    "path", sorted(p for p in LAYER.rglob("*.py") if p != ONE_PLACE), ids=lambda p: str(p.relative_to(LAYER))
)
def test_dynamodb_is_spoken_only_in_optout_core_dynamo(path: Path) -> None:
    found = offences(path.read_text(encoding="utf-8"))
    assert not found, f"{path.relative_to(LAYER)}: use optout.core.dynamo instead:\n" + "\n".join(found)
