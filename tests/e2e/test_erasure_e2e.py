"""`optout subject erase` on the real local stack: the CLI, SigV4, the gateway and the admin API's own role."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e
ADDRESS = "e2e-erase@example.com"


def _export(stack: RunningStack) -> dict:  # type: ignore[type-arg]
    return json.loads(stack.cli("subject", "export", "email", ADDRESS).stdout)


def test_subject_erase_keeps_the_opt_out_and_export_then_shows_only_it_and_the_erasure(
    local_stack: RunningStack, tmp_path: Path
) -> None:
    # Given a subject who opted out of product mail and was sent a policy change
    local_stack.cli("suppression", "add", "email", ADDRESS, "--scope", "product", "--reason", "asked")
    manifest = tmp_path / "erase.csv"
    manifest.write_text(
        f"recipient_id,email,name\ne2e-erase-1,{ADDRESS},Eve Erased\ne2e-erase-2,e2e-keep@example.com,Kim\n"
    )
    notice = json.loads(local_stack.cli(
        "notice", "send", "policy-change", "--manifest", str(manifest), "--policy-version", "2026-12-01",
        "--effective-date", "2026-12-31", "--summary", "Logs kept 30 days.", "--policy-url",
        "https://example.com/privacy", "--wait", "--json",
    ).stdout)  # fmt: skip
    assert notice["status"] == "complete"
    assert [d["recipient_id"] for d in _export(local_stack)["deliveries"]] == ["e2e-erase-1"]

    # When they are erased
    erased = json.loads(local_stack.cli("subject", "erase", "email", ADDRESS, "--json").stdout)
    text = local_stack.cli("subject", "erase", "email", ADDRESS).stdout  # again: nothing more to remove

    # Then the erasure says who, when and what; the export shows only the suppression state and the erasures
    assert erased["complete"] is True and erased["removed"]["deliveries_pseudonymised"] == 1
    assert erased["erasure"]["actor"].endswith(":user/local-admin")
    assert "deliveries pseudonymised" in text and "kept         suppression state" in text
    document = _export(local_stack)
    assert document["deliveries"] == []
    assert document["suppression"]["topics"] == ["product"] and document["suppression"]["erased_at"]
    assert [e["action"] for e in document["suppression"]["events"]] == ["opt_out"]
    assert [e["removed"]["deliveries_pseudonymised"] for e in document["erasures"]] == [1, 0]
    assert "e2e-erase-1" not in json.dumps(document) and "Eve" not in json.dumps(erased)
