"""optout.sms.keywords: the SMS keyword engine (opt out, opt in, help, nothing) and its replies."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, get_args

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from optout.core.settings import KeywordBookSettings
from optout.sms.keywords import Intent, KeywordBook, clauses, load_book, normalise_text

BRAND = "Acme Widgets"
CONTACT = "help@acme.example"


def _packaged_config() -> dict[str, Any]:
    text = resources.files("optout").joinpath("config/sms_keywords.json").read_text("utf-8")
    config: dict[str, Any] = json.loads(text)
    return config


PACKAGED = load_book()


@pytest.fixture
def book() -> KeywordBook:
    return PACKAGED


# --- matching: the packaged configuration ----------------------------------------------------

# (message, intent, language, matched keyword)
MATCHES = [
    # English opt-out, every spelling a carrier or a person sends
    pytest.param("STOP", "opt_out", "en", "stop", id="en-STOP"),
    pytest.param("stop", "opt_out", "en", "stop", id="en-stop-lower"),
    pytest.param(" Stop. ", "opt_out", "en", "stop", id="en-padded-with-period"),
    pytest.param("STOP!!", "opt_out", "en", "stop", id="en-STOP-bangs"),
    pytest.param("STOP.", "opt_out", "en", "stop", id="en-STOP-period"),
    pytest.param("\tstop\n", "opt_out", "en", "stop", id="en-tab-newline"),
    pytest.param("\u00a0stop\u00a0", "opt_out", "en", "stop", id="en-nbsp-around"),
    pytest.param("stop\u200b", "opt_out", "en", "stop", id="en-zero-width-space-after"),
    pytest.param("Stop texting me", "opt_out", "en", "stop", id="en-stop-texting-me"),
    pytest.param("opt out", "opt_out", "en", "opt out", id="en-opt-out-two-words"),
    pytest.param("OPT-OUT", "opt_out", "en", "opt out", id="en-OPT-OUT-hyphen"),
    pytest.param("Opt Out!", "opt_out", "en", "opt out", id="en-Opt-Out-bang"),
    pytest.param("optout", "opt_out", "en", "optout", id="en-optout-one-word"),
    pytest.param("STOPALL", "opt_out", "en", "stopall", id="en-STOPALL"),
    pytest.param("stop all", "opt_out", "en", "stop all", id="en-stop-all"),
    pytest.param("Stop_All", "opt_out", "en", "stop all", id="en-underscore-is-a-separator"),
    pytest.param("UNSUBSCRIBE", "opt_out", "en", "unsubscribe", id="en-UNSUBSCRIBE"),
    pytest.param("Unsubscribe please", "opt_out", "en", "unsubscribe", id="en-unsubscribe-please"),
    pytest.param("CANCEL", "opt_out", "en", "cancel", id="en-CANCEL"),
    pytest.param("END", "opt_out", "en", "end", id="en-END"),
    pytest.param("QUIT", "opt_out", "en", "quit", id="en-QUIT"),
    pytest.param("REVOKE", "opt_out", "en", "revoke", id="en-REVOKE"),
    pytest.param("REMOVE", "opt_out", "en", "remove", id="en-REMOVE"),
    pytest.param("TD", "opt_out", "en", "td", id="en-TD"),
    # punctuation, emoji and compatibility forms around or inside keywords
    pytest.param("🛑 STOP 🛑", "opt_out", "en", "stop", id="emoji-around-stop"),
    pytest.param("🛑STOP🛑", "opt_out", "en", "stop", id="emoji-glued-to-stop"),
    pytest.param("stop 🙏", "opt_out", "en", "stop", id="stop-then-emoji"),
    pytest.param("«Stop»", "opt_out", "en", "stop", id="guillemets-around-stop"),
    pytest.param("...quit...", "opt_out", "en", "quit", id="ellipses-around-quit"),
    pytest.param("ＳＴＯＰ", "opt_out", "en", "stop", id="full-width-upper-STOP"),
    pytest.param("ｓｔｏｐ", "opt_out", "en", "stop", id="full-width-lower-stop"),
    pytest.param("ⓈⓉⓄⓅ", "opt_out", "en", "stop", id="circled-letters-STOP"),
    pytest.param(
        "𝐒𝐓𝐎𝐏",
        "opt_out",
        "en",
        "stop",
        id="math-bold-STOP",
    ),
    pytest.param(
        "🅂🅃🄾🄿",
        "opt_out",
        "en",
        "stop",
        id="squared-letters-STOP",
    ),
    # English opt-in and help
    pytest.param("START", "opt_in", "en", "start", id="en-START"),
    pytest.param("Start again", "opt_in", "en", "start", id="en-start-again"),
    pytest.param("unstop", "opt_in", "en", "unstop", id="en-unstop"),
    pytest.param("YES", "opt_in", "en", "yes", id="en-YES-exact"),
    pytest.param("yes", "opt_in", "en", "yes", id="en-yes-exact"),
    pytest.param("Yes!", "opt_in", "en", "yes", id="en-yes-punctuation-still-exact"),
    pytest.param("HELP", "help", "en", "help", id="en-HELP"),
    pytest.param("info", "help", "en", "info", id="en-info"),
    pytest.param("INFO?", "help", "en", "info", id="en-INFO-question"),
    pytest.param("Help me", "help", "en", "help", id="en-help-me"),
    # French
    pytest.param("ARRET", "opt_out", "fr", "arret", id="fr-ARRET"),
    pytest.param("Arrêt", "opt_out", "fr", "arret", id="fr-Arret-accented"),
    pytest.param("ARRÊT", "opt_out", "fr", "arret", id="fr-ARRET-accented-upper"),
    pytest.param("arrêter", "opt_out", "fr", "arreter", id="fr-arreter"),
    pytest.param("DÉSABONNER", "opt_out", "fr", "desabonner", id="fr-DESABONNER"),
    pytest.param("désinscrire", "opt_out", "fr", "desinscrire", id="fr-desinscrire"),
    pytest.param("Annuler", "opt_out", "fr", "annuler", id="fr-annuler"),
    pytest.param("COMMENCER", "opt_in", "fr", "commencer", id="fr-COMMENCER"),
    pytest.param("Démarrer", "opt_in", "fr", "demarrer", id="fr-Demarrer"),
    pytest.param("reprendre", "opt_in", "fr", "reprendre", id="fr-reprendre"),
    pytest.param("OUI", "opt_in", "fr", "oui", id="fr-OUI-exact"),
    pytest.param("AIDE", "help", "fr", "aide", id="fr-AIDE"),
    # Spanish
    pytest.param("PARAR", "opt_out", "es", "parar", id="es-PARAR"),
    pytest.param("Baja", "opt_out", "es", "baja", id="es-Baja"),
    pytest.param("alto", "opt_out", "es", "alto", id="es-alto"),
    pytest.param("Cancelar", "opt_out", "es", "cancelar", id="es-cancelar-not-en-cancel"),
    pytest.param("detener", "opt_out", "es", "detener", id="es-detener"),
    pytest.param("Darse de baja", "opt_out", "es", "darse de baja", id="es-darse-de-baja"),
    pytest.param("COMENZAR", "opt_in", "es", "comenzar", id="es-COMENZAR"),
    pytest.param("iniciar", "opt_in", "es", "iniciar", id="es-iniciar"),
    pytest.param("Sí", "opt_in", "es", "si", id="es-Si-accented-exact"),
    pytest.param("si", "opt_in", "es", "si", id="es-si-exact"),
    pytest.param("AYUDA", "help", "es", "ayuda", id="es-AYUDA"),
]


@pytest.mark.parametrize(("message", "intent", "language", "keyword"), MATCHES)
def test_keyword_matches(book: KeywordBook, message: str, intent: str, language: str, keyword: str) -> None:
    match = book.match(message)

    assert (match.intent, match.language, match.keyword) == (intent, language, keyword)


NON_MATCHES = [
    pytest.param("don't stop", id="keyword-not-first-dont-stop"),
    pytest.param("I can't end this", id="keyword-not-first-cant-end"),
    pytest.param("Yes please", id="exact-only-yes-with-more"),
    pytest.param("Sí, por favor", id="exact-only-si-with-more"),
    pytest.param("oui merci", id="exact-only-oui-with-more"),
    pytest.param("hello", id="hello"),
    pytest.param("", id="empty"),
    pytest.param("   \t\n ", id="whitespace-only"),
    pytest.param("!!!...", id="punctuation-only"),
    pytest.param("🛑", id="stop-sign-emoji-only"),
    pytest.param("👍👍", id="thumbs-up-emoji-only"),
    pytest.param("توقف", id="arabic-stop-word"),
    pytest.param("עצור", id="hebrew-stop-word"),
    pytest.param("\u202eqots", id="rtl-override-reversed-text"),
    pytest.param("stopped", id="stopped-is-a-different-word"),
    pytest.param("stops", id="stops-is-a-different-word"),
    pytest.param("starting", id="starting-is-a-different-word"),
    pytest.param("helpful", id="helpful-is-a-different-word"),
    pytest.param("yesterday", id="yesterday-is-a-different-word"),
    pytest.param("information", id="information-is-a-different-word"),
    pytest.param("opt in", id="opt-in-is-not-a-keyword"),
    pytest.param("opt", id="half-of-a-two-word-keyword"),
    pytest.param("darse", id="first-word-of-three-word-keyword"),
    pytest.param("s t o p", id="spelled-out-letters"),
    pytest.param("st0p", id="digit-zero-for-o"),
]


@pytest.mark.parametrize("message", NON_MATCHES)
def test_non_matches(book: KeywordBook, message: str) -> None:
    match = book.match(message)

    assert match.intent == "none"
    assert match.keyword is None
    assert match.language == book.default_language == "en"


def test_rtl_marks_around_a_keyword_do_not_hide_it(book: KeywordBook) -> None:
    # Given bidi control characters (category Cf, not word characters) around STOP
    # Then they act as separators and STOP still opts out
    assert book.match("\u200fSTOP\u200f").intent == "opt_out"
    assert book.match("\u202bstop\u202c").intent == "opt_out"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("  Hello,   WORLD!! ", "hello world", id="case-and-spacing"),
        pytest.param("Arrêt", "arret", id="accent-stripped"),
        pytest.param("OPT-OUT", "opt out", id="hyphen-becomes-space"),
        pytest.param("a_b", "a b", id="underscore-becomes-space"),
        pytest.param("Straße", "strasse", id="sharp-s-casefolded"),
        pytest.param("ＳＴＯＰ", "stop", id="full-width"),
        pytest.param("", "", id="empty"),
        pytest.param("🛑🛑", "", id="emoji-only"),
    ],
)
def test_normalise_text_examples(text: str, expected: str) -> None:
    assert normalise_text(text) == expected


# --- replies -------------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["en", "es", "fr"])
@pytest.mark.parametrize("intent", ["opt_out", "opt_in", "help", "clarify"])
def test_every_reply_names_the_brand(book: KeywordBook, language: str, intent: Any) -> None:
    reply = book.reply(intent, language, BRAND, CONTACT)

    assert reply is not None
    assert reply.startswith(BRAND)
    assert "{" not in reply and "}" not in reply  # every placeholder filled


def test_english_help_has_the_rates_notice_and_the_contact(book: KeywordBook) -> None:
    reply = book.reply("help", "en", BRAND, CONTACT)

    assert reply is not None
    assert "Msg & data rates may apply" in reply
    assert CONTACT in reply


@pytest.mark.parametrize("language", ["es", "fr"])
def test_help_in_other_languages_has_the_contact(book: KeywordBook, language: str) -> None:
    reply = book.reply("help", language, BRAND, CONTACT)

    assert reply is not None
    assert CONTACT in reply
    assert reply != book.reply("help", "en", BRAND, CONTACT)


@pytest.mark.parametrize(
    ("language", "resubscribe"),
    [("en", "START"), ("es", "COMENZAR"), ("fr", "COMMENCER")],
)
def test_opt_out_confirmation_says_how_to_resubscribe(book: KeywordBook, language: str, resubscribe: str) -> None:
    reply = book.reply("opt_out", language, BRAND, CONTACT)

    assert reply is not None
    assert resubscribe in reply
    # and the word it names really is an opt-in keyword of that language
    assert book.match(resubscribe) == book.match(resubscribe.lower())
    assert (book.match(resubscribe).intent, book.match(resubscribe).language) == ("opt_in", language)


@pytest.mark.parametrize(("language", "stop_word"), [("en", "STOP"), ("es", "PARAR"), ("fr", "ARRET")])
def test_help_reply_names_a_working_opt_out_keyword(book: KeywordBook, language: str, stop_word: str) -> None:
    reply = book.reply("help", language, BRAND, CONTACT)

    assert reply is not None and stop_word in reply
    assert (book.match(stop_word).intent, book.match(stop_word).language) == ("opt_out", language)


def test_no_reply_for_no_intent(book: KeywordBook) -> None:
    assert book.reply("none", "en", BRAND, CONTACT) is None
    assert book.reply("none", "fr", BRAND, CONTACT) is None


@pytest.mark.parametrize("language", ["de", "", "EN"])
@pytest.mark.parametrize("intent", ["opt_out", "opt_in", "help"])
def test_unknown_language_falls_back_to_the_default(book: KeywordBook, language: str, intent: Any) -> None:
    assert book.reply(intent, language, BRAND, CONTACT) == book.reply(intent, "en", BRAND, CONTACT)


def test_brand_is_inserted_verbatim_not_reformatted(book: KeywordBook) -> None:
    # Given a brand that looks like a placeholder
    reply = book.reply("help", "en", "{contact} Inc", CONTACT)

    # Then it is not substituted a second time
    assert reply is not None
    assert reply.startswith("{contact} Inc:")


# --- configuration, not code ---------------------------------------------------------------


def _language(
    opt_out: list[str],
    opt_in: list[str],
    help_: list[str],
    *,
    opt_in_exact: list[str] | None = None,
    replies: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "opt_out": {"keywords": opt_out, "exact": []},
        "opt_in": {"keywords": opt_in, "exact": opt_in_exact or []},
        "help": {"keywords": help_, "exact": []},
        "replies": replies
        or {
            "opt_out": "{brand}: Abgemeldet. Antworte START zum Anmelden.",
            "opt_in": "{brand}: Angemeldet.",
            "help": "{brand}: Hilfe unter {contact}.",
        },
    }


GERMAN = {
    "default_language": "de",
    "languages": {"de": _language(["halt", "stopp", "abmelden"], ["start"], ["hilfe"], opt_in_exact=["ja"])},
}


def test_custom_config_adds_a_language() -> None:
    # Given a German-only configuration
    book = KeywordBook.from_config(GERMAN)

    # Then its keywords match, with their language
    assert book.match("HALT").intent == "opt_out"
    assert book.match("Halt!").language == "de"
    assert book.match("Stopp bitte").intent == "opt_out"
    assert book.match("Hilfe").intent == "help"
    assert book.match("ja").intent == "opt_in"
    assert book.match("ja bitte").intent == "none"  # exact only
    # and the packaged English list is gone: configuration replaces it
    assert book.match("stop").intent == "none"
    assert book.match("stop").language == "de"
    assert book.reply("help", "de", BRAND, CONTACT) == f"{BRAND}: Hilfe unter {CONTACT}."
    assert book.reply("help", "en", BRAND, CONTACT) == f"{BRAND}: Hilfe unter {CONTACT}."  # falls back to de


def test_custom_config_extends_the_packaged_one() -> None:
    # Given the packaged configuration plus German
    packaged = _packaged_config()
    packaged["languages"]["de"] = GERMAN["languages"]["de"]
    book = KeywordBook.from_config(packaged)

    assert (book.match("halt").intent, book.match("halt").language) == ("opt_out", "de")
    assert (book.match("STOP").intent, book.match("STOP").language) == ("opt_out", "en")
    assert book.default_language == "en"


def test_config_phrases_are_normalised_when_loaded() -> None:
    config = {"languages": {"en": _language(["Opt-Out", "Arrêt", "ＱＵＩＴ"], ["Start"], ["HELP!"])}}
    book = KeywordBook.from_config(config)

    assert book.match("opt out").intent == "opt_out"
    assert book.match("arret").intent == "opt_out"
    assert book.match("quit").intent == "opt_out"
    assert book.match("help").intent == "help"


def test_a_phrase_that_normalises_to_nothing_is_ignored() -> None:
    # Given an opt-out "keyword" that is only punctuation
    config = {"languages": {"en": _language(["!!!", "🛑", "halt"], ["start"], ["help"])}}
    book = KeywordBook.from_config(config)

    # Then it does not turn every message (or the empty message) into an opt-out
    assert book.match("hello").intent == "none"
    assert book.match("").intent == "none"
    assert book.match("!!!").intent == "none"
    assert book.match("halt").intent == "opt_out"


def test_longest_phrase_wins() -> None:
    # Given "stop" as opt-out and the longer "stop info" as help
    config = {"languages": {"en": _language(["stop"], ["start"], ["stop info"])}}
    book = KeywordBook.from_config(config)

    assert book.match("stop info please").intent == "help"
    assert book.match("stop information").intent == "opt_out"
    assert book.match("stop").intent == "opt_out"


def test_missing_exact_and_keywords_lists_are_allowed() -> None:
    config = {
        "languages": {
            "en": {
                "opt_out": {"keywords": ["stop"]},
                "opt_in": {"exact": ["yes"]},
                "help": {},
                "replies": {"opt_out": "o", "opt_in": "i", "help": "h"},
            }
        }
    }
    book = KeywordBook.from_config(config)

    assert book.match("stop now").intent == "opt_out"
    assert book.match("yes").intent == "opt_in"
    assert book.match("help").intent == "none"


def test_default_language_defaults_to_english() -> None:
    book = KeywordBook.from_config({"languages": {"en": _language(["stop"], ["start"], ["help"])}})

    assert book.default_language == "en"
    assert book.match("hello").language == "en"


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(
            {"default_language": "de", "languages": {"en": _language(["stop"], ["start"], ["help"])}},
            id="default-language-not-configured",
        ),
        pytest.param({"languages": {"fr": _language(["arret"], ["commencer"], ["aide"])}}, id="implicit-en-missing"),
        pytest.param({"default_language": "en", "languages": {}}, id="no-languages"),
    ],
)
def test_default_language_without_replies_is_rejected(config: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="default_language has no replies"):
        KeywordBook.from_config(config)


def test_without_a_file_the_packaged_book_is_read() -> None:
    book = load_book()

    assert (book.match("STOP").intent, book.match("PARAR").language) == ("opt_out", "es")


def test_the_book_is_the_file_the_keywords_setting_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Given a German configuration named by OPTOUT_SMS_KEYWORDS_FILE
    path = tmp_path / "keywords.json"
    path.write_text(json.dumps(GERMAN), encoding="utf-8")
    monkeypatch.setenv("OPTOUT_SMS_KEYWORDS_FILE", str(path))

    # When the book is loaded from what the function's settings say
    book = load_book(KeywordBookSettings.from_env().sms_keywords_file)

    # Then it is that configuration
    assert book.default_language == "de"
    assert (book.match("halt").intent, book.match("halt").language) == ("opt_out", "de")
    assert book.match("stop").intent == "none"


def test_a_bad_keywords_file_fails_loudly(tmp_path: Path) -> None:
    path = tmp_path / "keywords.json"
    path.write_text(json.dumps({"default_language": "de", "languages": {}}), encoding="utf-8")

    with pytest.raises(ValueError, match="default_language"):
        load_book(str(path))


# --- properties ----------------------------------------------------------------------------

INTENT_NAMES = set(get_args(Intent))
# Opt-out keywords that are not exact-only, in the spellings people send, with their language.
OPT_OUT_PREFIXES = [
    ("STOP", "en"),
    ("stop", "en"),
    ("Stop all", "en"),
    ("STOPALL", "en"),
    ("OPT-OUT", "en"),
    ("optout", "en"),
    ("Unsubscribe", "en"),
    ("CANCEL", "en"),
    ("end", "en"),
    ("Quit", "en"),
    ("revoke", "en"),
    ("REMOVE", "en"),
    ("TD", "en"),
    ("PARAR", "es"),
    ("Baja", "es"),
    ("alto", "es"),
    ("Darse de baja", "es"),
    ("Arrêt", "fr"),
    ("arrêter", "fr"),
    ("DÉSABONNER", "fr"),
    ("annuler", "fr"),
]
# Latin-1 plus emoji: the text an SMS actually carries (GSM-7 and common UCS-2)
SMS_TEXT = st.text(
    st.one_of(st.characters(codec="latin-1"), st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF)),
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(SMS_TEXT)
def test_normalise_text_is_idempotent_for_sms_text(text: str) -> None:
    once = normalise_text(text)

    assert normalise_text(once) == once


@settings(max_examples=200, deadline=None)
@given(st.text())
@example("𝐒𝐓𝐎𝐏")
def test_normalise_text_is_idempotent_for_any_text(text: str) -> None:
    once = normalise_text(text)

    assert normalise_text(once) == once


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_normalised_text_is_single_spaced_word_characters(text: str) -> None:
    normalised = normalise_text(text)

    assert normalised == normalised.strip()
    assert "  " not in normalised
    assert all(re.fullmatch(r"[^\W_]+", word) for word in normalised.split())


@settings(max_examples=200, deadline=None)
@given(st.text())
@example("")
@example("\x00")
@example("\U0010ffff")
def test_match_never_raises_and_returns_a_known_intent(text: str) -> None:
    book = PACKAGED

    match = book.match(text)

    assert match.intent in INTENT_NAMES
    assert match.language in book.replies
    assert (match.keyword is None) == (match.intent == "none")


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(OPT_OUT_PREFIXES), st.sampled_from([str, str.upper, str.lower, str.title]), st.text())
def test_a_message_beginning_with_an_opt_out_keyword_opts_out(
    keyword: tuple[str, str], case: Callable[[str], str], rest: str
) -> None:
    word, language = keyword
    # unless what follows negates it ("arrêt pas") or gives it an ordinary sense ("stop by")
    grammar = PACKAGED.grammars[language]
    opening = tuple(normalise_text(word).split())
    following = clauses(case(word) + " " + rest)[0]
    assume(not grammar.negated(following, 0, len(opening)) and not grammar.ordinary_after(following, len(opening)))

    match = PACKAGED.match(case(word) + " " + rest)

    assert (match.intent, match.language) == ("opt_out", language)
