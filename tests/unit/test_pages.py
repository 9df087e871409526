"""optout.web.pages: language negotiation, locale catalogues, and self-contained, CSP-locked pages."""

from __future__ import annotations

import base64
import hashlib
import json
import string
from html.parser import HTMLParser
from importlib import resources
from typing import Any

import pytest

from optout.web.pages import (
    DEFAULT_LANGUAGE,
    LANGUAGES,
    HtmlPage,
    error_page,
    messages,
    negotiate_language,
    render,
    security_headers,
    topic_row,
)

BRAND = "Example Co"
TOKEN = "1.k1.e." + "0" * 64 + ".marketing.t85s00." + "A" * 43


# --- language negotiation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param("es-ES,es;q=0.9", "es", id="regional-es"),
        pytest.param("de", "de", id="plain-de"),
        pytest.param("fr-CA", "fr", id="regional-fr"),
        pytest.param("FR-ca", "fr", id="upper-case-tag"),
        pytest.param("ja, en;q=0.5", "en", id="unsupported-first"),
        pytest.param("xx", "en", id="unsupported-only"),
        pytest.param(None, "en", id="no-header"),
        pytest.param("", "en", id="empty-header"),
        pytest.param("*", "en", id="wildcard"),
        pytest.param("en;q=0.1, fr;q=0.9", "fr", id="higher-q-wins"),
        pytest.param("de ; q=0.8 , es;q=0.9", "es", id="whitespace-around-params"),
        pytest.param("es;q=0.8, de;q=0.8", "es", id="tie-goes-to-earlier"),
        pytest.param("de;q=0.8, es;q=0.8", "de", id="tie-goes-to-earlier-reversed"),
        pytest.param("de;q=0", "en", id="q-zero-means-not-acceptable"),
        pytest.param("fr;q=abc", "en", id="garbage-q-is-not-acceptable"),
        pytest.param("fr;q=abc, de;q=0.5", "de", id="garbage-q-loses"),
        pytest.param("fr;q=, de;q=0.2", "de", id="empty-q-loses"),
        pytest.param("de;q=nan", "en", id="nan-q"),
        pytest.param("fr;q=-1", "en", id="negative-q"),
        pytest.param(";;;,,,", "en", id="punctuation-only"),
        pytest.param(",".join(["xx"] * 32 + ["de"]), "en", id="only-first-32-entries-count"),
        pytest.param(",".join(["xx"] * 31 + ["de"]), "de", id="32nd-entry-counts"),
    ],
)
def test_negotiate_language(header: str | None, expected: str) -> None:
    assert negotiate_language(header) == expected


def test_negotiate_language_reads_an_upper_case_q() -> None:
    assert negotiate_language("de;Q=0.1, fr;q=0.5") == "fr"


# --- locale catalogues ---------------------------------------------------------------------


def _catalogue_files() -> dict[str, dict[str, Any]]:
    folder = resources.files("optout").joinpath("locales")
    return {
        entry.name.removesuffix(".json"): json.loads(entry.read_text("utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".json")
    }


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def test_every_supported_language_has_a_catalogue_and_vice_versa() -> None:
    assert set(_catalogue_files()) == set(LANGUAGES)
    assert DEFAULT_LANGUAGE in LANGUAGES


@pytest.mark.parametrize("language", LANGUAGES)
def test_catalogue_has_exactly_the_english_keys(language: str) -> None:
    english, other = _catalogue_files()["en"], _catalogue_files()[language]
    assert set(other) == set(english)
    assert set(other["topics"]) == set(english["topics"])
    assert other["lang"] == language


@pytest.mark.parametrize("language", LANGUAGES)
def test_catalogue_values_have_the_english_shape(language: str) -> None:
    english, other = _catalogue_files()["en"], _catalogue_files()[language]
    for key, value in english.items():
        if key == "topics":
            continue
        assert isinstance(other[key], str)
        assert other[key].strip(), key
        # str.format(brand=..., topic=...) must not fail or lose a value in any language.
        assert _placeholders(other[key]) == _placeholders(value), key
    for name, pair in other["topics"].items():
        assert isinstance(pair, list)
        assert len(pair) == 2
        assert all(isinstance(text, str) and text.strip() for text in pair), name


# --- error page ----------------------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_error_page_is_localised(language: str) -> None:
    texts = messages(language)
    page = error_page("invalid_token", 403, language, BRAND)
    assert page.status == 403
    assert page.headers["Content-Language"] == language
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert f'<html lang="{language}">' in page.body
    assert _text(page.body, "h1") == texts["error_title"]
    assert _text(page.body, "p") == texts["error_invalid_token"]


def test_error_page_texts_differ_between_languages() -> None:
    bodies = {language: error_page("malformed_token", 400, language, BRAND).body for language in LANGUAGES}
    assert len(set(bodies.values())) == len(LANGUAGES)


def test_error_page_for_an_unknown_code_uses_the_generic_message() -> None:
    page = error_page("no_such_code", 500, "de", BRAND)
    assert page.status == 500
    assert _text(page.body, "p") == messages("de")["error_generic"]


def test_brand_is_escaped() -> None:
    page = error_page("invalid_token", 403, "en", "<script>alert(1)</script>")
    assert "<script>" not in page.body
    assert "&lt;script&gt;" in page.body


# --- security headers and the inline style -------------------------------------------------


def _csp(headers: dict[str, str]) -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for directive in headers["Content-Security-Policy"].split(";"):
        name, *values = directive.split()
        directives[name] = values
    return directives


def test_security_headers() -> None:
    headers = security_headers()
    csp = _csp(headers)
    assert csp["default-src"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["base-uri"] == ["'none'"]
    assert csp["form-action"] == ["'self'"]
    assert "script-src" not in csp
    assert len(csp["style-src"]) == 1
    assert csp["style-src"][0].startswith("'sha256-")
    assert "unsafe-inline" not in headers["Content-Security-Policy"]
    assert "unsafe-eval" not in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"


class _PageScan(HTMLParser):
    """Collects <style> contents, the text of given tags, and every URL-bearing attribute."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.styles: list[str] = []
        self.tags: list[str] = []
        self.urls: list[tuple[str, str, str]] = []
        self.texts: dict[str, list[str]] = {}
        self._open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self._open.append(tag)
        if tag == "style":
            self.styles.append("")
        self.texts.setdefault(tag, []).append("")
        for name, value in attrs:
            if name in ("src", "href", "action", "srcset", "poster", "data", "formaction") and value is not None:
                self.urls.append((tag, name, value))

    def handle_endtag(self, tag: str) -> None:
        if tag in self._open:
            del self._open[len(self._open) - 1 - self._open[::-1].index(tag) :]

    def handle_data(self, data: str) -> None:
        if self._open:
            tag = self._open[-1]
            self.texts[tag][-1] += data
            if tag == "style":
                self.styles[-1] += data


def _scan(body: str) -> _PageScan:
    scan = _PageScan()
    scan.feed(body)
    scan.close()
    return scan


def _text(body: str, tag: str) -> str:
    return _scan(body).texts[tag][0].strip()


def _preferences(language: str) -> HtmlPage:
    return render(
        "preferences.html",
        language,
        BRAND,
        token=TOKEN,
        token_topic=topic_row(language, "marketing"),
        optional=[topic_row(language, "marketing"), topic_row(language, "product", subscribed=False)],
        required=[topic_row(language, "policy"), topic_row(language, "security")],
        blocked=True,
        result=messages(language)["result_saved"],
    )


def _pages() -> list[Any]:
    cases = []
    for language in LANGUAGES:
        cases.append(pytest.param(lambda lang=language: _preferences(lang), id=f"preferences-{language}"))
        cases.append(
            pytest.param(lambda lang=language: error_page("invalid_token", 403, lang, BRAND), id=f"error-{language}")
        )
    return cases


@pytest.mark.parametrize("make_page", _pages())
def test_style_element_matches_the_csp_hash(make_page: Any) -> None:
    # Given a rendered page
    page: HtmlPage = make_page()
    styles = _scan(page.body).styles
    # Then it has exactly one <style>, and the CSP allows exactly that text by its hash
    assert len(styles) == 1
    digest = base64.b64encode(hashlib.sha256(styles[0].encode("utf-8")).digest()).decode()
    assert _csp(page.headers)["style-src"] == [f"'sha256-{digest}'"]


@pytest.mark.parametrize("make_page", _pages())
def test_page_references_nothing_external(make_page: Any) -> None:
    page: HtmlPage = make_page()
    scan = _scan(page.body)
    assert "http://" not in page.body
    assert "https://" not in page.body
    for tag, attribute, value in scan.urls:
        assert not value.strip().lower().startswith(("//", "http:", "https:", "data:", "javascript:")), (
            tag,
            attribute,
            value,
        )
    # Nothing that could load or run anything.
    assert not {"script", "link", "img", "iframe", "object", "embed", "base"} & set(scan.tags)
    assert " style=" not in page.body  # inline style attributes would need 'unsafe-inline'


def test_preferences_form_posts_back_to_the_same_url_with_the_token() -> None:
    scan = _scan(_preferences("en").body)
    assert scan.urls == [("form", "action", f"?token={TOKEN}")]


def test_preferences_page_renders_the_state() -> None:
    page = _preferences("es")
    texts = messages("es")
    assert page.status == 200
    assert page.headers["Content-Language"] == "es"
    assert 'id="topic-marketing" aria-describedby="desc-marketing" checked>' in page.body
    assert 'id="topic-product" aria-describedby="desc-product">' in page.body
    assert texts["blocked_notice"] in page.body
    assert texts["result_saved"] in page.body
    assert texts["heading"].format(brand=BRAND) in page.body
    assert texts["topics"]["security"][0] in page.body


def test_topic_row_for_an_unknown_topic_falls_back_to_its_name() -> None:
    row = topic_row("fr", "newsletter", subscribed=False)
    assert (row.name, row.label, row.description, row.subscribed) == ("newsletter", "newsletter", "", False)
