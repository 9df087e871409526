"""HTML pages: the preference page, the error page and the new-link page, localised by Accept-Language.

Pages load nothing from elsewhere: the CSS is inline and allowed by its hash in a strict
Content-Security-Policy, there is no script, and the form posts back to the same URL.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jinja2 import Environment

LANGUAGES = ("en", "es", "fr", "de")
DEFAULT_LANGUAGE = "en"


@dataclass(frozen=True)
class HtmlPage:
    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TopicRow:
    name: str
    label: str
    description: str
    subscribed: bool = True


def negotiate_language(accept_language: str | None) -> str:
    """Pick the best supported language from an Accept-Language header; English otherwise."""
    best, best_q = DEFAULT_LANGUAGE, 0.0
    for position, item in enumerate((accept_language or "").split(",")[:32]):
        tag, _, params = item.strip().partition(";")
        primary = tag.strip().split("-")[0].lower()
        q = 1.0
        if params.strip().lower().startswith("q="):
            try:
                q = min(1.0, max(0.0, float(params.strip()[2:])))
            except ValueError:
                q = 0.0
        q -= position * 1e-6  # earlier entries win ties
        if primary in LANGUAGES and q > best_q:
            best, best_q = primary, q
    return best


@cache
def messages(language: str) -> dict[str, Any]:
    text = resources.files("optout").joinpath(f"locales/{language}.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def _environment() -> Environment:
    # Jinja is imported on the first page rendered, not with this module: the admin API and the
    # dispatcher import the page types (through the public notices) but never render one
    from jinja2 import Environment, PackageLoader, select_autoescape

    return Environment(loader=PackageLoader("optout", "templates"), autoescape=select_autoescape(["html"]))


@cache
def _css() -> tuple[str, str]:
    css = resources.files("optout").joinpath("templates/page.css").read_text("utf-8").strip()
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    return css, f"'sha256-{digest}'"


def security_headers() -> dict[str, str]:
    _, style_hash = _css()
    return {
        "Content-Type": "text/html; charset=utf-8",
        "Content-Security-Policy": (
            f"default-src 'none'; style-src {style_hash}; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-store",
    }


def topic_row(language: str, name: str, subscribed: bool = True) -> TopicRow:
    label, description = messages(language)["topics"].get(name, [name, ""])
    return TopicRow(name=name, label=label, description=description, subscribed=subscribed)


def render(template: str, language: str, brand: str, status: int = 200, **context: Any) -> HtmlPage:
    css, _ = _css()
    body = _environment().get_template(template).render(t=messages(language), brand=brand, css=css, **context)
    headers = security_headers()
    headers["Content-Language"] = language
    return HtmlPage(status=status, body=body, headers=headers)


def error_page(code: str, status: int, language: str, brand: str, offer_new_link: bool = False) -> HtmlPage:
    """A page that says what went wrong in the reader's language and nothing about any address.

    ``offer_new_link`` adds the "email me a new link" form (it posts to /preferences): the way
    back from a link that is damaged, forged or expired.
    """
    texts = messages(language)
    message = texts.get(f"error_{code}", texts["error_generic"])
    return render("error.html", language, brand, status=status, message=message, offer_new_link=offer_new_link)
