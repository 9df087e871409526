"""The preference page in headless Chromium (Debian's), driven by the keyboard alone."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import RunningStack

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
CHROMIUM = os.environ.get("OPTOUT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: .ci/run installs Debian's chromium package")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
            ],
        )
        yield browser
        browser.close()


def tab_to(page, selector: str, limit: int = 20) -> None:  # type: ignore[no-untyped-def]
    """Press Tab until the element matching ``selector`` has focus, as a keyboard user would."""
    target = page.locator(selector)
    for _ in range(limit):
        page.keyboard.press("Tab")
        if target.evaluate("el => el === document.activeElement"):
            return
    raise AssertionError(f"{selector} is not reachable with Tab")


def test_unsubscribe_with_the_keyboard_alone(local_stack: RunningStack, browser) -> None:  # type: ignore[no-untyped-def]
    url = local_stack.cli("link", "email", "browser@example.com", "--topic", "product").stdout.strip()
    context = browser.new_context(locale="en-US", java_script_enabled=False)
    page = context.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))

    # Given the preference page, opened from the link
    page.goto(url)
    assert page.title().startswith("Email preferences")
    # Every control has a label
    assert page.get_by_label("Product updates").is_checked()
    assert page.get_by_label("Marketing and offers").is_checked()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "preference-page.png"), full_page=True)

    # When the reader tabs to the topic's unsubscribe button and presses Enter
    tab_to(page, "#unsubscribe-topic")
    with page.expect_navigation():
        page.keyboard.press("Enter")

    # Then the confirmation shows
    assert page.locator("#result").inner_text() == "Done: you are unsubscribed from Product updates."
    page.screenshot(path=str(ARTIFACTS / "preference-page-confirmed.png"), full_page=True)

    # And opening the link again shows the new state
    page.goto(url)
    assert not page.get_by_label("Product updates").is_checked()
    assert page.get_by_label("Marketing and offers").is_checked()
    assert page.locator('.state[data-topic="product"]').inner_text() == "(unsubscribed)"

    # And re-subscribing with Space on the checkbox and Enter on Save works too
    tab_to(page, "#topic-product")
    page.keyboard.press("Space")
    tab_to(page, "#save")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.locator("#result").inner_text() == "Done: your preferences are saved."
    assert page.get_by_label("Product updates").is_checked()

    # Nothing was loaded from anywhere but the local gateway
    assert requested and all(u.startswith(local_stack.api_url) for u in requested)
    context.close()


def test_page_speaks_the_browser_language(local_stack: RunningStack, browser) -> None:  # type: ignore[no-untyped-def]
    url = local_stack.cli("link", "email", "browser-de@example.com", "--topic", "marketing").stdout.strip()
    context = browser.new_context(locale="de-DE", extra_http_headers={"Accept-Language": "de-DE,de;q=0.9"})
    page = context.new_page()
    page.goto(url)
    assert page.locator("html").get_attribute("lang") == "de"
    assert page.get_by_role("button", name="Marketing und Angebote abbestellen").is_visible()
    context.close()
