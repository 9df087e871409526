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


def _new_link_mails(local_stack: RunningStack, address: str) -> list[str]:
    """The links in the mails the outbox holds for ``address``."""
    import json
    import re
    from email import message_from_string
    from email.policy import default

    mails = json.loads(local_stack.cli("outbox", "--json", "--last", "0").stdout)["email"]
    parsed = [message_from_string(m["raw"], policy=default) for m in mails]
    texts = [m.get_body(preferencelist=("plain",)).get_content() for m in parsed if m["To"] == address]  # type: ignore[union-attr]
    return [url for text in texts for url in re.findall(r"https?://\S+/unsubscribe\?token=\S+", text)]


def _ask_for_a_new_link(page, address: str) -> None:  # type: ignore[no-untyped-def]
    """Type the address and press Enter on the button, with the keyboard alone."""
    tab_to(page, "#email")
    page.keyboard.type(address)
    tab_to(page, "#send-link")
    with page.expect_navigation():
        page.keyboard.press("Enter")


def test_a_dead_link_page_mails_a_new_link(local_stack: RunningStack, browser) -> None:  # type: ignore[no-untyped-def]
    address = "browser-dead-link@example.com"
    dead = local_stack.cli("link", "email", address, "--topic", "product").stdout.strip()[:-4] + "AAAA"
    context = browser.new_context(locale="en-US", java_script_enabled=False)
    page = context.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    # Given the page of a link that cannot be used
    page.goto(dead)
    assert page.locator("h1").inner_text() == "This link cannot be used"
    assert page.get_by_label("Your email address").is_visible()
    # When the reader asks for a new link there, without JavaScript
    _ask_for_a_new_link(page, address)
    # Then the answer is the one every address gets, and the mail holds a fresh link
    assert page.url == f"{local_stack.api_url}/preferences"
    assert "a new link is on its way" in page.locator("#result").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "new-link-sent.png"), full_page=True)
    (url,) = _new_link_mails(local_stack, address)
    # And the link opens that address's preference page in the browser
    page.goto(url)
    assert page.title().startswith("Email preferences")
    assert page.get_by_label("Product updates").is_checked()
    assert requested and all(u.startswith(local_stack.api_url) for u in requested)
    context.close()


def test_the_preferences_page_mails_a_new_link(local_stack: RunningStack, browser) -> None:  # type: ignore[no-untyped-def]
    address = "browser-preferences@example.com"
    context = browser.new_context(
        locale="es-ES", java_script_enabled=False, extra_http_headers={"Accept-Language": "es-ES,es;q=0.9"}
    )
    page = context.new_page()
    page.goto(f"{local_stack.api_url}/preferences")
    assert page.locator("html").get_attribute("lang") == "es"
    # An address that is not one is refused by the browser's own check (type=email, required):
    # nothing is posted, and the page stays
    tab_to(page, "#email")
    page.keyboard.type("not an address")
    tab_to(page, "#send-link")
    page.keyboard.press("Enter")
    assert page.url == f"{local_stack.api_url}/preferences" and page.locator("#result").count() == 0
    page.fill("#email", "")
    _ask_for_a_new_link(page, address)
    assert "un enlace nuevo va de camino" in page.locator("#result").inner_text()
    (url,) = _new_link_mails(local_stack, address)
    page.goto(url)
    assert page.get_by_role("button", name="Guardar preferencias").is_visible()
    context.close()


def test_public_notices_page_and_json(local_stack: RunningStack, browser) -> None:  # type: ignore[no-untyped-def]
    import json
    from datetime import UTC, datetime, timedelta

    import boto3
    import requests

    from optout.notices.public import PublicNoticeStore, from_notice
    from tests.integration.test_public_notices import notice

    # Given a published breach communication in the stack's NoticesTable (written as the administrator)
    dynamodb = boto3.client(
        "dynamodb", endpoint_url=local_stack.aws_url, region_name="us-east-1", aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )  # fmt: skip
    table = next(t for t in dynamodb.list_tables()["TableNames"] if "NoticesTable" in t)
    store = PublicNoticeStore(table, client=dynamodb)
    store.publish(from_notice(notice("browser-public", "breach_alert"), datetime.now(UTC) - timedelta(minutes=1)))
    # When a browser without JavaScript opens /notices in French
    context = browser.new_context(
        locale="fr-FR", java_script_enabled=False, extra_http_headers={"Accept-Language": "fr-FR,fr;q=0.9"}
    )
    page = context.new_page()
    response = page.goto(f"{local_stack.api_url}/notices")
    # Then it shows the communication, localised, and may be cached and framed
    assert response is not None and response.status == 200
    assert response.headers["cache-control"] == "public, max-age=300"
    assert page.get_by_role("heading", name="Un incident de sécurité qui peut vous concerner").is_visible()
    assert page.locator("#notice-browser-public dd").first.inner_text() == "A support inbox was read by an outsider."
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "public-notices.png"), full_page=True)
    context.close()
    # And /notices.json lists it for a website's banner, readable from any origin
    listed = requests.get(f"{local_stack.api_url}/notices.json", timeout=30)
    assert listed.headers["Access-Control-Allow-Origin"] == "*"
    assert "browser-public" in [n["notice_id"] for n in listed.json()["notices"]]
    assert json.loads(listed.text)["notices"][0]["kind"] == "breach_alert"
