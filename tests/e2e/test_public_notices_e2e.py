"""Public notices over HTTP against the real local stack: published with the notice, withdrawn by the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e


def listed(stack: RunningStack) -> list[str]:
    response = requests.get(f"{stack.api_url}/notices.json", timeout=30)
    assert response.status_code == 200 and response.headers["Cache-Control"].startswith("public, max-age=")
    return [n["notice_id"] for n in response.json()["notices"]]


def test_a_published_notice_is_public_until_it_is_withdrawn(local_stack: RunningStack, tmp_path: Path) -> None:
    manifest = tmp_path / "public.jsonl"
    manifest.write_text('{"recipient_id": "e2e-pub1", "email": "e2e-pub1@example.com"}\n')
    until = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    # Given a policy change created with --publish and --until
    sent = local_stack.cli(
        "notice", "send", "policy-change", "--manifest", str(manifest), "--policy-version", "2027-01",
        "--effective-date", "2027-01-31", "--summary", "We now keep logs for 30 days.",
        "--policy-url", "https://example.com/privacy", "--publish", "--until", until, "--json",
    )  # fmt: skip
    notice_id = json.loads(sent.stdout)["id"]
    # Then it is on the public page and in its JSON at once
    assert notice_id in listed(local_stack)
    page = requests.get(f"{local_stack.api_url}/notices", headers={"Accept-Language": "es"}, timeout=30)
    assert page.status_code == 200 and f'id="notice-{notice_id}"' in page.text
    assert "Nuestra política de privacidad cambia" in page.text and "We now keep logs for 30 days." in page.text
    assert "<script" not in page.text
    # And its status says when it was published and until when
    status = local_stack.cli("notice", "status", notice_id).stdout
    assert "published   " in status and "until " in status and "withdrawn" not in status
    # When it is withdrawn
    withdrawn = local_stack.cli("notice", "withdraw", notice_id)
    assert f"notice {notice_id} withdrawn " in withdrawn.stdout
    # Then it leaves the page, and its status keeps both dates
    assert notice_id not in listed(local_stack)
    document = json.loads(local_stack.cli("notice", "status", notice_id, "--json").stdout)
    assert document["publication"]["published_at"] and document["publication"]["withdrawn_at"]
    assert "withdrawn " in local_stack.cli("notice", "status", notice_id).stdout


def test_publish_is_refused_where_it_cannot_apply(local_stack: RunningStack, tmp_path: Path) -> None:
    manifest = tmp_path / "refused.jsonl"
    manifest.write_text('{"recipient_id": "e2e-pub2", "email": "e2e-pub2@example.com"}\n')
    body = tmp_path / "body.md"
    body.write_text("Dark mode.\n")
    product = ["notice", "send", "product", "--manifest", str(manifest), "--subject", "New", "--body-file", str(body)]
    policy = [
        "notice", "send", "policy-change", "--manifest", str(manifest), "--policy-version", "2027-02",
        "--effective-date", "2027-02-28", "--summary", "S.", "--policy-url", "https://example.com/privacy",
    ]  # fmt: skip
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    for args in ([*product, "--publish"], [*policy, "--until", past], [*policy, "--publish", "--until", past]):
        refused = local_stack.cli(*args, check=False)
        assert refused.returncode != 0 and "422" in refused.stdout + refused.stderr, (args, refused.stderr)
