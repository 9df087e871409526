"""The SMS keyword engine: what an inbound text asks for (opt out, opt in, help, clarify, or nothing).

Keyword lists, phrase lists and replies are configuration (``config/sms_keywords.json``, or the
file named by OPTOUT_SMS_KEYWORDS_FILE), not code. Matching ignores case, accents, punctuation and
hyphens, and compares whole words ("weekend" holds no "end"). 47 CFR 64.1200(a)(10) lets a
consumer revoke "by any reasonable means", so a revocation need not open the message:

- ``opt_out.anywhere`` ("unsubscribe", "opt out", "no more texts", "no más mensajes") revokes
  wherever it stands, unless it is negated ("don't unsubscribe me").
- ``opt_out.keywords`` are per se words that also have ordinary senses (stop, end, quit, cancel).
  One revokes when it opens the message, when a word about our messages stands near it ("please
  stop texting me"), or when its clause holds nothing but filler words ("please stop", "I said
  STOP"). Negated ("don't stop"), or followed by an ordinary sense ("stop by", "end of"), it is
  not a request; anywhere else ("I'll cancel my appointment") it may be one: ``clarify``.
- ``clarify`` phrases ("not interested", "who is this") might revoke: they get a clarification
  (at most once a day, never a block), not a revocation.

Negation looks back a few words within the clause ("do not stop sending me updates"), stopping
at punctuation and at barrier words ("I don't know why, but stop"). A revocation anywhere wins
over an opt-in or help keyword that opens the message: honouring it is the safe side. START,
HELP and their kin count only at the start; ``exact`` entries ("yes") must be the whole message.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

Intent = Literal["opt_out", "opt_in", "help", "clarify", "none"]
_NON_WORD = re.compile(r"[^\w]+|_")
# Where a clause ends: negation never reaches across one ("No, stop" is a revocation).
_CLAUSE_END = re.compile(r"[.!?;:,\n\r\u2026\u2013\u2014\u2028\u2029\u00a1\u00bf\u037e\u061f\u3002]+")
# How far back a negator reaches ("don't ever stop", "I do not want to unsubscribe").
NEGATION_REACH = 3
# How far a word about our messages may stand from a keyword ("stop sending me these texts").
MESSAGING_REACH = 3

Words = tuple[str, ...]
Kind = Literal["start", "exact", "anywhere", "keyword", "clarify", "ordinary"]


def _fold(text: str) -> str:
    # Decompose first: some compatibility letters (bold maths, squared) only become capitals then.
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _words(folded: str) -> Words:
    return tuple(_NON_WORD.sub(" ", folded).split())


def normalise_text(text: str) -> str:
    """Lower-case, strip accents, and reduce everything but letters and digits to single spaces."""
    return " ".join(_words(_fold(text)))


def clauses(text: str) -> list[Words]:
    """The normalised words of each clause (split at . , ; : ! ? and line breaks), empty ones dropped."""
    return [words for part in _CLAUSE_END.split(_fold(text)) if (words := _words(part))]


@dataclass(frozen=True)
class KeywordMatch:
    intent: Intent
    language: str
    keyword: str | None = None


@dataclass(frozen=True)
class _Entry:
    words: Words
    intent: Intent
    language: str
    kind: Kind


@dataclass(frozen=True)
class Grammar:
    """The words around a keyword that decide whether it is a request (one set per language)."""

    negators_before: tuple[Words, ...] = ()
    negators_after: frozenset[str] = frozenset()
    barriers: frozenset[str] = frozenset()
    messaging: frozenset[str] = frozenset()
    fillers: frozenset[str] = frozenset()
    ordinary: tuple[Words, ...] = ()

    @classmethod
    def from_config(cls, spec: dict[str, Any], keyword_words: Iterable[str]) -> Grammar:
        def phrases(name: str) -> tuple[Words, ...]:
            return tuple(w for p in spec.get(name, []) if (w := tuple(normalise_text(p).split())))

        def words(name: str) -> frozenset[str]:
            return frozenset(w for p in spec.get(name, []) for w in normalise_text(p).split())

        # Repeating a keyword ("stop stop STOP") adds nothing to the request: it is filler too.
        return cls(
            negators_before=phrases("negators_before"),
            negators_after=words("negators_after"),
            barriers=words("barriers"),
            messaging=words("messaging"),
            fillers=words("fillers") | frozenset(keyword_words),
            ordinary=phrases("ordinary"),
        )

    def negated(self, clause: Words, start: int, end: int) -> bool:
        """A negator shortly before ``clause[start:end]`` (no barrier between), or right after it."""
        own = clause[start:end]
        if any(own[i : i + len(n)] == n for n in self.negators_before for i in range(len(own))):
            return False  # the phrase carries its own negation ("do not text me", "no más mensajes")
        for negator in self.negators_before:
            size = len(negator)
            for at in range(max(0, start - NEGATION_REACH - size), start - size + 1):
                between = clause[at + size : start]
                if clause[at : at + size] == negator and not self.barriers.intersection(between):
                    return True
        return any(w in self.negators_after for w in clause[end : end + 2])

    def ordinary_after(self, clause: Words, end: int) -> bool:
        return any(clause[end : end + len(o)] == o for o in self.ordinary)

    def about_messages(self, clause: Words, start: int, end: int) -> bool:
        near = clause[max(0, start - MESSAGING_REACH) : start] + clause[end : end + MESSAGING_REACH]
        return not self.messaging.isdisjoint(near)

    def only_fillers(self, clause: Words, start: int, end: int) -> bool:
        return all(w in self.fillers for w in clause[:start] + clause[end:])


@dataclass(frozen=True)
class KeywordBook:
    default_language: str
    entries: tuple[_Entry, ...]  # longest phrases first
    replies: dict[str, dict[str, str]]
    grammars: dict[str, Grammar]
    # The entries that count inside a message, by first word, longest first.
    _inside: dict[str, tuple[_Entry, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        inside: dict[str, list[_Entry]] = {}
        for entry in self.entries:
            if entry.kind in ("keyword", "anywhere", "clarify", "ordinary"):
                inside.setdefault(entry.words[0], []).append(entry)
        object.__setattr__(self, "_inside", {word: tuple(found) for word, found in inside.items()})

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> KeywordBook:
        entries: list[_Entry] = []
        replies: dict[str, dict[str, str]] = {}
        grammars: dict[str, Grammar] = {}
        for language, spec in config["languages"].items():
            replies[language] = dict(spec["replies"])
            lists: list[tuple[Intent, Kind, Sequence[str]]] = [
                ("opt_out", "keyword", spec["opt_out"].get("keywords", [])),
                ("opt_out", "anywhere", spec["opt_out"].get("anywhere", [])),
                ("opt_out", "exact", spec["opt_out"].get("exact", [])),
                ("clarify", "clarify", spec.get("clarify", {}).get("anywhere", [])),
                ("clarify", "exact", spec.get("clarify", {}).get("exact", [])),
                # Words that hold a keyword in an ordinary sense ("bus stop", "week-end"): read past them.
                ("none", "ordinary", spec.get("grammar", {}).get("ordinary_phrases", [])),
            ]
            for intent in ("opt_in", "help"):
                lists.append((intent, "start", spec.get(intent, {}).get("keywords", [])))
                lists.append((intent, "exact", spec.get(intent, {}).get("exact", [])))
            keyword_words: set[str] = set()
            for intent, kind, phrases in lists:
                for phrase in phrases:
                    words = tuple(normalise_text(phrase).split())
                    if words:
                        entries.append(_Entry(words, intent, language, kind))
                        if kind == "keyword":
                            keyword_words.update(words)
            grammars[language] = Grammar.from_config(spec.get("grammar", {}), keyword_words)
        entries.sort(key=lambda e: -len(e.words))
        default = config.get("default_language", "en")
        if default not in replies:
            raise ValueError("default_language has no replies")
        return cls(default, tuple(entries), replies, grammars)

    def match(self, body: str) -> KeywordMatch:
        parts = clauses(body)
        words = tuple(w for part in parts for w in part)
        if not words:
            return KeywordMatch("none", self.default_language)
        for entry in self.entries:
            if entry.kind == "exact" and words == entry.words:
                return self._found(entry)
        opening = next(
            (e for e in self.entries if e.kind in ("start", "keyword") and words[: len(e.words)] == e.words), None
        )
        clarify: _Entry | None = None
        offset = 0
        for clause in parts:
            # The words of an opening START or HELP are not read again.
            skip = len(opening.words) - offset if opening and opening.intent != "opt_out" else 0
            for at in range(len(clause)):
                if at < skip:
                    continue
                for entry in self._inside.get(clause[at], ()):
                    end = at + len(entry.words)
                    if clause[at:end] != entry.words:
                        continue
                    if entry.kind == "ordinary":
                        skip = end
                        break
                    verdict = self._judge(entry, clause, at, end, at_start=offset + at == 0)
                    if verdict == "opt_out":
                        return self._found(entry)
                    if verdict == "clarify" and clarify is None:
                        clarify = entry
                    break  # the longest phrase at this position decides it
            offset += len(clause)
        if opening is not None and opening.intent != "opt_out":
            return self._found(opening)
        if clarify is not None and self._reply_text("clarify", clarify.language) is not None:
            return KeywordMatch("clarify", clarify.language, " ".join(clarify.words))
        return KeywordMatch("none", self.default_language)

    def _judge(self, entry: _Entry, clause: Words, start: int, end: int, at_start: bool) -> Intent | None:
        grammar = self.grammars[entry.language]
        if entry.kind == "clarify":
            return "clarify"
        if grammar.negated(clause, start, end):
            return None
        if entry.kind == "anywhere":
            return "opt_out"
        # A per se word with an ordinary sense: decide from the words around it.
        if grammar.ordinary_after(clause, end):
            return "clarify" if at_start else None
        if at_start or grammar.about_messages(clause, start, end) or grammar.only_fillers(clause, start, end):
            return "opt_out"
        return "clarify"

    @staticmethod
    def _found(entry: _Entry) -> KeywordMatch:
        return KeywordMatch(entry.intent, entry.language, " ".join(entry.words))

    def _reply_text(self, intent: Intent, language: str) -> str | None:
        texts = self.replies.get(language) or self.replies[self.default_language]
        return texts.get(intent) or self.replies[self.default_language].get(intent)

    def reply(self, intent: Intent, language: str, brand: str, contact: str) -> str | None:
        if intent == "none":
            return None
        text = self._reply_text(intent, language)
        return text.format(brand=brand, contact=contact) if text is not None else None


def load_book(path: str | None = None) -> KeywordBook:
    """The book in the file at ``path``, or the packaged one."""
    if path:
        with open(path, encoding="utf-8") as handle:
            return KeywordBook.from_config(json.load(handle))
    text = resources.files("optout").joinpath("config/sms_keywords.json").read_text("utf-8")
    return KeywordBook.from_config(json.loads(text))
