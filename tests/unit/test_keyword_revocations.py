"""Revocation by any reasonable means (47 CFR 64.1200(a)(10)): in other words, anywhere, in en, es and fr.

A clear revocation blocks; a negated one or an ordinary message does nothing; a message that
might revoke gets a clarification. Examples first (hand-written, then every phrase in the keyword
file), then properties over negation, punctuation, case and accents.
"""

from __future__ import annotations

import json
import unicodedata
from importlib import resources
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optout.sms.keywords import KeywordMatch, clauses, load_book, normalise_text

BOOK = load_book()
CONFIG: dict[str, Any] = json.loads(resources.files("optout").joinpath("config/sms_keywords.json").read_text("utf-8"))
LANGUAGES = ("en", "es", "fr")


def _listed(language: str, intent: str, kind: str) -> list[str]:
    return list(CONFIG["languages"][language].get(intent, {}).get(kind, []))


# --- examples: what people write --------------------------------------------------------------

# (message, language, the phrase that decided it)
REVOCATIONS = [
    ("Please stop texting me", "en", "stop"),
    ("I want to unsubscribe", "en", "unsubscribe"),
    ("please stop", "en", "stop"),
    ("I said STOP", "en", "stop"),
    ("Hi, stop", "en", "stop"),
    ("Can you please stop sending me these?", "en", "stop"),
    ("How do I opt out?", "en", "opt out"),
    ("I already unsubscribed, why are you texting me", "en", "unsubscribed"),
    ("no more texts please", "en", "no more texts"),
    ("No more!", "en", "no more"),
    ("Leave me alone", "en", "leave me alone"),
    ("take me off your list", "en", "take me off"),
    ("remove me from this list", "en", "remove me"),
    ("Wrong number", "en", "wrong number"),
    ("Don't text me again", "en", "don t text me"),
    ("DO NOT CONTACT ME", "en", "do not contact me"),
    ("Thanks for the reminder, but please cancel these texts", "en", "cancel"),
    ("quit messaging me", "en", "quit"),
    ("end these messages now", "en", "end"),
    ("I don't know why, but stop", "en", "stop"),
    ("I don't care. Just stop.", "en", "stop"),
    ("Start? No. Stop.", "en", "stop"),  # a revocation anywhere beats an opening START
    ("help, how do I stop these texts", "en", "stop"),  # and an opening HELP
    ("I'm at the bus stop, stop texting me", "en", "stop"),
    ("revoke my consent", "en", "revoke"),
    ("stop stop STOP", "en", "stop"),
    ("No más mensajes", "es", "no mas mensajes"),
    ("no más", "es", "no mas"),
    ("Por favor, no me envíen más mensajes", "es", "no me envien"),
    ("Ya no quiero recibir nada", "es", "ya no quiero"),
    ("Quiero darme de baja", "es", "darme de baja"),
    ("Dejen de enviarme mensajes", "es", "dejen de enviarme"),
    ("Paren de mandarme mensajes", "es", "paren"),
    ("cancelar por favor", "es", "cancelar"),
    ("Déjenme en paz", "es", "dejenme en paz"),
    ("Número equivocado", "es", "numero equivocado"),
    ("No, cancelar", "es", "cancelar"),  # the comma ends the "no": not a negation
    ("Plus de SMS svp", "fr", "plus de sms"),
    ("Je ne veux plus recevoir vos messages", "fr", "je ne veux plus"),
    ("Je ne veux plus de SMS", "fr", "je ne veux plus"),
    ("Arrêtez de m'envoyer des messages", "fr", "arretez"),
    ("Arrête de m'envoyer des messages", "fr", "arrete de m envoyer"),
    ("Désabonnez-moi", "fr", "desabonnez moi"),
    ("Laissez-moi tranquille", "fr", "laissez moi tranquille"),
    ("Ne m'envoyez plus rien", "fr", "ne m envoyez plus"),
    ("Pas de SMS, merci", "fr", "pas de sms"),
    ("Mauvais numéro", "fr", "mauvais numero"),
    ("Annuler svp", "fr", "annuler"),
]


@pytest.mark.parametrize(("message", "language", "phrase"), REVOCATIONS, ids=[r[0] for r in REVOCATIONS])
def test_clear_revocations_in_other_words(message: str, language: str, phrase: str) -> None:
    assert BOOK.match(message) == KeywordMatch("opt_out", language, phrase)


NOT_REVOCATIONS = [
    # negated
    "don't stop",
    "Don’t stop!",  # a typographic apostrophe
    "do not stop sending me updates",
    "Please don't stop the updates",
    "never stop",
    "I can't end this",
    "I didn't unsubscribe",
    "Don't unsubscribe me",
    "I do not want to opt out",
    "I don't want you to stop texting me",
    "Don't ever stop",
    "No pares",
    "no paren de enviar",
    "No quiero cancelar",
    "Nunca me den de baja",
    "N'arrêtez pas",
    "Ne pas annuler",
    "Ne pas me désabonner",
    "Arrêtez pas !",  # colloquial: the negation follows
    # ordinary messages
    "See you this weekend",
    "I'll send it tomorrow",
    "I'll stop by the store later",
    "See you at the end of the week",
    "Thanks, see you soon 😊",
    "The bus stopped",
    "Can't wait to stop by",
    "Stop sign ahead",
    "It was a dead end",
    "Nos vemos el fin de semana",
    "Es para ti",
    "À ce week-end !",
    "Je suis à l'arrêt de bus",
    "stopped",
    "blend",
]


@pytest.mark.parametrize("message", NOT_REVOCATIONS)
def test_negated_revocations_and_ordinary_messages_are_nothing(message: str) -> None:
    assert BOOK.match(message).intent == "none"


CLARIFY = [
    ("I'll cancel my appointment", "en", "cancel"),  # "cancel" inside a sentence about something else
    ("Stop by the store", "en", "stop"),  # opens with STOP, in its ordinary sense
    ("Stop at the corner", "en", "stop"),
    ("the end", "en", "end"),
    ("not interested", "en", "not interested"),
    ("Who is this?", "en", "who is this"),
    ("No", "en", "no"),
    ("enough", "en", "enough"),
    ("Is this spam?", "en", "spam"),
    ("שלום STOP", "en", "stop"),
    ("No me interesa", "es", "no me interesa"),
    ("¡Basta!", "es", "basta"),
    ("Non merci", "fr", "non merci"),
    ("Non", "fr", "non"),
    ("C'est qui ?", "fr", "c est qui"),
]


@pytest.mark.parametrize(("message", "language", "phrase"), CLARIFY, ids=[c[0] for c in CLARIFY])
def test_messages_that_might_revoke_get_a_clarification(message: str, language: str, phrase: str) -> None:
    match = BOOK.match(message)

    assert (match.intent, match.language, match.keyword) == ("clarify", language, phrase)


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_clarification_asks_and_names_the_opt_out_keyword(language: str) -> None:
    reply = BOOK.reply("clarify", language, "Acme", "help@acme.example")
    stop_word = {"en": "STOP", "es": "PARAR", "fr": "ARRET"}[language]

    assert reply is not None and reply.startswith("Acme") and "?" in reply
    assert stop_word in reply and BOOK.match(stop_word).intent == "opt_out"
    assert reply != BOOK.reply("opt_out", language, "Acme", "help@acme.example")


# --- examples: every phrase in the keyword file -----------------------------------------------

FILLER = {"en": "please", "es": "por favor", "fr": "svp"}
MESSAGES_WORD = {"en": "messages", "es": "mensajes", "fr": "messages"}
NEGATED = {"en": "don't {}", "es": "no {}", "fr": "ne pas {}"}
PER_LANGUAGE = [(lang, kind, p) for lang in LANGUAGES for kind in ("keywords", "anywhere") for p in
                _listed(lang, "opt_out", kind)]  # fmt: skip


@pytest.mark.parametrize(("language", "kind", "phrase"), PER_LANGUAGE, ids=[f"{x[0]}-{x[2]}" for x in PER_LANGUAGE])
def test_every_listed_revocation_revokes_alone_in_a_sentence_and_not_when_negated(
    language: str, kind: str, phrase: str
) -> None:
    words = normalise_text(phrase)
    expected = ("opt_out", language, words)

    alone = BOOK.match(phrase.upper() + "!")
    assert (alone.intent, alone.language, alone.keyword) == expected
    for sentence in (f"Hello. {FILLER[language]} {phrase}", f"{phrase} {MESSAGES_WORD[language]}"):
        match = BOOK.match(sentence)
        assert (match.intent, match.language) == expected[:2], sentence
    # A phrase that carries its own negation ("do not text me", "no más mensajes") is not negated again.
    if not any((w,) in BOOK.grammars[language].negators_before for w in words.split()):
        negated = NEGATED[language].format(phrase)
        assert BOOK.match(negated).intent == "none", negated


CLARIFY_LISTED = [(lang, p) for lang in LANGUAGES for p in _listed(lang, "clarify", "anywhere")]


@pytest.mark.parametrize(("language", "phrase"), CLARIFY_LISTED, ids=[f"{x[0]}-{x[1]}" for x in CLARIFY_LISTED])
def test_every_listed_clarify_phrase_asks_and_never_revokes(language: str, phrase: str) -> None:
    for message in (phrase, f"Hmm. {phrase}?", phrase.upper()):
        match = BOOK.match(message)
        assert (match.intent, match.language, match.keyword) == ("clarify", language, normalise_text(phrase))


EXACT_LISTED = [(lang, intent, p) for lang in LANGUAGES for intent in ("opt_out", "clarify")
                for p in _listed(lang, intent, "exact")]  # fmt: skip


@pytest.mark.parametrize(("language", "intent", "phrase"), EXACT_LISTED, ids=[f"{x[0]}-{x[2]}" for x in EXACT_LISTED])
def test_every_listed_exact_entry_counts_as_the_whole_message(language: str, intent: str, phrase: str) -> None:
    match = BOOK.match(f"¡{phrase.upper()}!")

    assert (match.intent, match.language, match.keyword) == (intent, language, normalise_text(phrase))


def test_the_fcc_per_se_words_are_all_listed() -> None:
    # 47 CFR 64.1200(a)(10): stop, quit, end, revoke, opt out, cancel, unsubscribe
    for word in ("stop", "quit", "end", "revoke", "opt out", "cancel", "unsubscribe"):
        assert BOOK.match(word).intent == "opt_out", word
        assert BOOK.match(f"I want to {word}").intent == "opt_out", word
        assert BOOK.match(f"please {word} the texts").intent == "opt_out", word


def test_a_book_without_a_clarify_reply_never_clarifies() -> None:
    # Given a configuration from before clarifications (no clarify reply in any language)
    config = json.loads(json.dumps(CONFIG))
    for spec in config["languages"].values():
        del spec["replies"]["clarify"]
    book = type(BOOK).from_config(config)

    # Then an unclear message is nothing, as it was, and a clear one still revokes
    assert book.match("not interested").intent == "none"
    assert book.reply("clarify", "en", "Acme", "x") is None
    assert book.match("please stop texting me").intent == "opt_out"


# --- properties -------------------------------------------------------------------------------

EN_PER_SE = ["stop", "quit", "end", "revoke", "opt out", "cancel", "unsubscribe", "remove", "stopall"]
EN_NEGATIONS = ["don't", "do not", "DON'T", "Don’t", "never", "do NOT", "dont", "please don't", "I don't want you to",
                "I didn't mean to", "you can't", "I won't"]  # fmt: skip
TAILS = ["", " sending me updates", " the texts", "!", " please", " now", " texting me", " 😊"]
BENIGN = {
    "en": ["thanks", "see", "you", "soon", "this", "weekend", "send", "sent", "stopped", "ending", "hello", "great",
           "the", "store", "tomorrow", "ok", "blend", "appointment", "friday", "lol", "😊", "love", "it", "starting",
           "information", "stops", "ended", "cancelled", "friend"],
    "es": ["hola", "gracias", "nos", "vemos", "mañana", "el", "fin", "de", "semana", "muy", "bien", "para", "ti"],
    "fr": ["merci", "à", "demain", "bonne", "journée", "ce", "week-end", "le", "rendez-vous", "arrêté", "bientôt"],
}  # fmt: skip
CHATTER = st.sampled_from(LANGUAGES).flatmap(lambda lang: st.lists(st.sampled_from(BENIGN[lang]), max_size=6))
# Word separators that end no clause (a line break does: it is a clause separator)
JOINERS = st.sampled_from([" ", "  ", " - ", "\u00a0", "_", "\t"])
# Whole-clause separators, and decorations around a whole message
CLAUSE_SEPARATORS = st.sampled_from([". ", ", ", "! ", "? ", "; ", "\n", " — ", "... ", "!! "])
DECORATIONS = st.sampled_from(["", "!", "!!!", "...", "🛑", "🙏", " ", "\t", "«", "»", '"', "(", ")", "¡", "¿"])


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(EN_NEGATIONS), st.sampled_from(EN_PER_SE), st.sampled_from(TAILS), CHATTER)
def test_a_negated_per_se_word_is_never_a_revocation(negation: str, word: str, tail: str, before: list[str]) -> None:
    message = " ".join([*before, negation, word]) + tail

    assert BOOK.match(message).intent == "none", message


FOREIGN_NEGATIONS = [
    ("es", "no {}"), ("es", "nunca {}"), ("es", "No {} por favor"),
    ("fr", "ne pas {}"), ("fr", "n'{} pas"), ("fr", "{} pas"), ("fr", "ne jamais {}"),
]  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(FOREIGN_NEGATIONS), st.data())
def test_negation_in_spanish_and_french(form: tuple[str, str], data: st.DataObject) -> None:
    language, template = form
    word = data.draw(st.sampled_from(_listed(language, "opt_out", "keywords")))

    assert BOOK.match(template.format(word)).intent == "none", template.format(word)


@settings(max_examples=300, deadline=None)
@given(CHATTER, JOINERS, DECORATIONS, DECORATIONS)
def test_ordinary_chatter_is_never_a_revocation_nor_a_question(
    words: list[str], joiner: str, lead: str, trail: str
) -> None:
    message = lead + joiner.join(words) + trail

    assert BOOK.match(message).intent == "none", message


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([(lang, p) for lang in LANGUAGES for p in _listed(lang, "opt_out", "anywhere")]),
    CHATTER,
    CHATTER,
    st.sampled_from([" ", ", ", ". ", " — ", "\n"]),
)
def test_a_clear_revocation_anywhere_in_chatter_revokes(
    entry: tuple[str, str], before: list[str], after: list[str], separator: str
) -> None:
    language, phrase = entry
    message = " ".join(before) + separator + phrase + " " + " ".join(after)

    match = BOOK.match(message)

    assert (match.intent, match.language) == ("opt_out", language), message


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([(lang, p) for lang in LANGUAGES for p in _listed(lang, "opt_out", "keywords")]),
    CHATTER,
    CHATTER,
    CLAUSE_SEPARATORS,
    CLAUSE_SEPARATORS,
)
def test_a_per_se_word_in_a_clause_of_its_own_revokes(
    entry: tuple[str, str], before: list[str], after: list[str], first: str, second: str
) -> None:
    _, word = entry
    message = " ".join(before) + first + word + second + " ".join(after)

    assert BOOK.match(message).intent == "opt_out", message


EXAMPLES = [m for m, *_ in REVOCATIONS] + NOT_REVOCATIONS + [m for m, *_ in CLARIFY]


def _strip_accents(text: str) -> str:
    return unicodedata.normalize("NFC", "".join(c for c in unicodedata.normalize("NFD", text)
                                                if not unicodedata.combining(c)))  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(EXAMPLES),
    st.lists(st.booleans(), min_size=80, max_size=80),
    st.booleans(),
    st.lists(st.sampled_from(["", "\u0301", "\u0300", "\u0308", "\u0327"]), min_size=80, max_size=80),
    DECORATIONS,
    DECORATIONS,
    JOINERS,
)
def test_case_accents_spacing_and_decorations_change_nothing(
    message: str,
    upper: list[bool],
    strip: bool,
    marks: list[str],
    lead: str,
    trail: str,
    joiner: str,
) -> None:
    # Given an example with each letter's case flipped at random, accents stripped or added,
    # its spaces replaced by other separators and decorations around it
    varied = "".join(
        (c.upper() if up else c.lower()) + (mark if c.isalpha() else "")
        for c, up, mark in zip(message, upper * 4, marks * 4, strict=False)
    )
    varied = _strip_accents(varied) if strip else varied
    varied = lead + varied.replace(" ", joiner) + trail

    # Then it means what the example means
    assert BOOK.match(varied) == BOOK.match(message), varied


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_clauses_hold_the_normalised_words_in_order(text: str) -> None:
    assert [w for clause in clauses(text) for w in clause] == normalise_text(text).split()


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_a_clarification_or_revocation_names_a_listed_phrase(text: str) -> None:
    match = BOOK.match(text)

    if match.intent in ("opt_out", "clarify"):
        assert match.keyword is not None
        assert match.keyword in normalise_text(text)
