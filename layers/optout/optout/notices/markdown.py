"""Bodies of product and marketing notices: Markdown, rendered safe, with the manifest's ``{{ name }}``.

The admin writes Markdown; the mail's text part is that source and its HTML part is the Markdown
rendered by markdown-it-py (CommonMark). Raw HTML in the source is never passed through (it is
shown as text), and links whose scheme could run code (``javascript:``, ``vbscript:``, ``data:``
but images, ``file:``) are not made links: markdown-it's own ``validateLink``. So a body needs no
HTML sanitiser after it: nothing it can say becomes markup the renderer did not write.

Variables are written ``{{ name }}`` (spaces optional) and come from the recipient's manifest row.
Any other ``{{ … }}`` is refused when the notice is created, so a typo never goes out as written;
``\\{{`` writes the braces themselves.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from markdown_it import MarkdownIt

VARIABLES = ("name",)
_VARIABLE = re.compile(r"(?<!\\)\{\{\s*([^{}\s]*)\s*\}\}")
# Letters only, so Markdown leaves it whole wherever it sits (emphasis, links, headings)
PLACEHOLDER = {name: f"OPTOUTVAR{name.upper()}X9Q" for name in VARIABLES}


def unknown_variables(body: str) -> list[str]:
    """The ``{{ … }}`` in ``body`` that name no variable, in order of first use."""
    found: list[str] = []
    for match in _VARIABLE.finditer(body):
        name = match.group(1)
        if name not in VARIABLES and name not in found:
            found.append(name)
    return found


def uses_variables(body: str) -> bool:
    return any(match.group(1) in VARIABLES for match in _VARIABLE.finditer(body))


def _with_placeholders(body: str) -> str:
    return _VARIABLE.sub(lambda m: PLACEHOLDER.get(m.group(1), m.group(0)), body)


@lru_cache(maxsize=1)
def _renderer() -> MarkdownIt:
    from markdown_it import MarkdownIt

    # "commonmark" with html off: raw HTML is escaped, never rendered
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")


@lru_cache(maxsize=16)
def render_html(body: str) -> str:
    """The body as HTML, variables left as ``PLACEHOLDER`` values for ``fill``."""
    rendered: str = _renderer().render(_with_placeholders(body))
    return rendered


def text(body: str) -> str:
    """The text part: the Markdown source as written, variables left as ``PLACEHOLDER`` values."""
    return _with_placeholders(body)


def fill(content: str, values: dict[str, str], escape: bool) -> str:
    """Put each variable's value in for its placeholder; ``escape`` for an HTML part."""
    for name, placeholder in PLACEHOLDER.items():
        if placeholder in content:
            value = values.get(name) or ""
            content = content.replace(placeholder, html.escape(value) if escape else value)
    return content
