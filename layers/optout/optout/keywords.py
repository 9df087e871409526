"""The SMS keyword engine: what an inbound text asks for (opt out, opt in, help, or nothing).

Keyword lists and replies are configuration (``config/sms_keywords.json``, or the file named by
OPTOUT_SMS_KEYWORDS_FILE), not code. Matching ignores case, accents, punctuation and hyphens. A
message that *begins* with a keyword matches ("Stop texting me"); one that merely contains it
("don't stop") does not. Entries under ``exact`` ("yes") must be the whole message.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

Intent = Literal["opt_out", "opt_in", "help", "none"]
INTENTS: tuple[Intent, ...] = ("opt_out", "opt_in", "help")
_NON_WORD = re.compile(r"[^\w]+|_")


def normalise_text(text: str) -> str:
    """Lower-case, strip accents, and reduce everything but letters and digits to single spaces."""
    # Decompose first: some compatibility letters (bold maths, squared) only become capitals then.
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold())
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(_NON_WORD.sub(" ", stripped).split())


@dataclass(frozen=True)
class KeywordMatch:
    intent: Intent
    language: str
    keyword: str | None = None


@dataclass(frozen=True)
class KeywordBook:
    default_language: str
    # (normalised phrase as words, intent, language, exact) longest phrases first
    entries: tuple[tuple[tuple[str, ...], Intent, str, bool], ...]
    replies: dict[str, dict[str, str]]

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> KeywordBook:
        entries: list[tuple[tuple[str, ...], Intent, str, bool]] = []
        replies: dict[str, dict[str, str]] = {}
        for language, spec in config["languages"].items():
            replies[language] = dict(spec["replies"])
            for intent in INTENTS:
                for exact, phrases in (
                    (False, spec[intent].get("keywords", [])),
                    (True, spec[intent].get("exact", [])),
                ):
                    for phrase in phrases:
                        words = tuple(normalise_text(phrase).split())
                        if words:
                            entries.append((words, intent, language, exact))
        entries.sort(key=lambda e: -len(e[0]))
        default = config.get("default_language", "en")
        if default not in replies:
            raise ValueError("default_language has no replies")
        return cls(default, tuple(entries), replies)

    def match(self, body: str) -> KeywordMatch:
        words = tuple(normalise_text(body).split())
        for phrase, intent, language, exact in self.entries:
            if words[: len(phrase)] == phrase and (not exact or len(words) == len(phrase)):
                return KeywordMatch(intent, language, " ".join(phrase))
        return KeywordMatch("none", self.default_language)

    def reply(self, intent: Intent, language: str, brand: str, contact: str) -> str | None:
        if intent == "none":
            return None
        texts = self.replies.get(language) or self.replies[self.default_language]
        return texts[intent].format(brand=brand, contact=contact)


def load_book(path: str | None = None) -> KeywordBook:
    """The book in the file at ``path``, or the packaged one."""
    if path:
        with open(path, encoding="utf-8") as handle:
            return KeywordBook.from_config(json.load(handle))
    text = resources.files("optout").joinpath("config/sms_keywords.json").read_text("utf-8")
    return KeywordBook.from_config(json.loads(text))
