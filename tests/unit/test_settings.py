"""Each function's settings: what it requires fails its cold start by name; the rest defaults.

A handler module reads its function's settings when it is imported, as Lambda's init does, so
these tests import the handlers themselves: in this process by spec (after ``wiring.reset()``),
and in a fresh interpreter for the cold start as Lambda runs it. No AWS is reached.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from optout import wiring
from optout.core.settings import (
    DEFAULT_TOPICS,
    AdminApiSettings,
    DispatcherSettings,
    FeedbackSettings,
    OptoutSettings,
    SenderSettings,
    Settings,
    SettingsError,
    SmsInboundSettings,
    SmsWebhookSettings,
    UnsubscribeSettings,
)

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "functions"

# What each function cannot start without, read from the code each handler calls
REQUIRED: dict[str, tuple[str, ...]] = {
    "unsubscribe": (
        "OPTOUT_SUPPRESSION_TABLE", "OPTOUT_SIGNING_KEYS_SECRET", "OPTOUT_PEPPER_SECRET", "OPTOUT_NOTICES_TABLE",
    ),
    "sms_webhook": (
        "OPTOUT_SUPPRESSION_TABLE", "OPTOUT_PEPPER_SECRET", "OPTOUT_TWILIO_AUTH_TOKEN_SECRET",
        "OPTOUT_INBOUND_SMS_QUEUE_URL",
    ),
    "sms_inbound": ("OPTOUT_SUPPRESSION_TABLE", "OPTOUT_PEPPER_SECRET"),
    "feedback": ("OPTOUT_SUPPRESSION_TABLE", "OPTOUT_PEPPER_SECRET"),
    "admin_api": (
        "OPTOUT_SUPPRESSION_TABLE", "OPTOUT_PEPPER_SECRET", "OPTOUT_NOTICES_TABLE", "OPTOUT_DISPATCH_QUEUE_URL",
        "OPTOUT_MANIFEST_BUCKET", "OPTOUT_SIGNING_KEYS_SECRET",  # links (POST /admin/links)
    ),
    "dispatcher": (
        "OPTOUT_SUPPRESSION_TABLE", "OPTOUT_PEPPER_SECRET", "OPTOUT_NOTICES_TABLE", "OPTOUT_DISPATCH_QUEUE_URL",
        "OPTOUT_SEND_QUEUE_URL",
    ),
    "sender": (
        "OPTOUT_SUPPRESSION_TABLE", "OPTOUT_PEPPER_SECRET", "OPTOUT_SIGNING_KEYS_SECRET", "OPTOUT_NOTICES_TABLE",
        "OPTOUT_SEND_QUEUE_URL",
    ),
}  # fmt: skip
MODELS: dict[str, type[OptoutSettings]] = {
    "unsubscribe": UnsubscribeSettings,
    "sms_webhook": SmsWebhookSettings,
    "sms_inbound": SmsInboundSettings,
    "feedback": FeedbackSettings,
    "admin_api": AdminApiSettings,
    "dispatcher": DispatcherSettings,
    "sender": SenderSettings,
}
# The sender's mails link to /unsubscribe, and so do the new links Unsubscribe mails from /preferences:
# both need a public base URL, or the API id and region
LINKS = {"OPTOUT_API_ID": "abc123", "AWS_REGION": "eu-west-1"}


def complete(function: str) -> dict[str, str]:
    """Exactly what the function requires, each with a stand-in value."""
    env = {name: f"stand-in-{name.lower()}" for name in REQUIRED[function]}
    return {**env, **LINKS} if function in ("sender", "unsubscribe") else env


def without(env: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in env.items() if k != name}


@pytest.fixture(autouse=True)
def _no_optout_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("OPTOUT_") or name == "AWS_REGION":
            monkeypatch.delenv(name)
    wiring.reset()
    yield
    wiring.reset()


def import_handler(function: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Import functions/<function>/app.py afresh under ``env``, as a cold start does."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    wiring.reset()
    name = f"settings_test_{function}"
    spec = importlib.util.spec_from_file_location(name, FUNCTIONS / function / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


def test_every_function_has_its_required_variables_listed_here() -> None:
    assert set(REQUIRED) == {p.parent.name for p in FUNCTIONS.glob("*/app.py")} == set(MODELS)


# --- a missing variable fails the cold start, by name ---------------------------------------


@pytest.mark.parametrize("function", sorted(REQUIRED))
def test_a_function_starts_with_exactly_what_it_requires(function: str, monkeypatch: pytest.MonkeyPatch) -> None:
    module = import_handler(function, complete(function), monkeypatch)

    assert callable(module.lambda_handler)


@pytest.mark.parametrize(("function", "variable"), [(f, v) for f, names in REQUIRED.items() for v in names])
def test_a_missing_required_variable_fails_the_import_naming_it(
    function: str, variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the function's environment without one variable it requires
    env = without(complete(function), variable)

    # When its handler is imported (Lambda's init), it fails, naming that variable alone
    with pytest.raises(SettingsError) as failed:
        import_handler(function, env, monkeypatch)

    assert f"{variable} is not set" in str(failed.value)
    assert not [name for name in REQUIRED[function] if name != variable and name in str(failed.value)]


@pytest.mark.parametrize("function", sorted(REQUIRED))
def test_an_empty_required_variable_counts_as_missing(function: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The template passes "" for a parameter left empty
    env = {**complete(function), "OPTOUT_SUPPRESSION_TABLE": ""}

    with pytest.raises(SettingsError, match="OPTOUT_SUPPRESSION_TABLE is not set"):
        import_handler(function, env, monkeypatch)


@pytest.mark.parametrize("function", sorted(REQUIRED))
def test_the_cold_start_in_a_fresh_interpreter_fails_naming_every_missing_variable(function: str) -> None:
    # Given a fresh interpreter whose environment holds no OPTOUT_ variable (the venv's, for a
    # unit test of the settings; tests/integration/test_lambda_runtime.py fails a cold start on
    # the local Lambda runtime the same way)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTOUT_")}
    load = (
        "import importlib.util as u, sys; s = u.spec_from_file_location('app', sys.argv[1]); "
        "m = u.module_from_spec(s); sys.modules['app'] = m; s.loader.exec_module(m)"
    )
    # When it imports the handler, as Lambda's init does
    result = subprocess.run(  # our own interpreter running our own handler
        [sys.executable, "-c", load, str(FUNCTIONS / function / "app.py")],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    # Then the import fails, and the error names every variable the function requires
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("optout.core.settings.SettingsError: " + MODELS[function].__name__), result.stderr
    assert all(f"{name} is not set" in last for name in REQUIRED[function]), last


# --- defaults -------------------------------------------------------------------------------


@pytest.mark.parametrize("function", sorted(REQUIRED))
def test_what_is_not_required_takes_the_shared_defaults(function: str) -> None:
    settings = MODELS[function].from_env(complete(function))
    shared = Settings.from_env({})

    for name in type(settings).model_fields:
        if f"OPTOUT_{name.upper()}" not in REQUIRED[function] and name not in ("api_id", "region"):
            assert getattr(settings, name) == getattr(shared, name), name


def test_the_shared_defaults_keep_their_values() -> None:
    settings = Settings.from_env({})

    assert settings.topics == DEFAULT_TOPICS
    assert (settings.optional_topics, settings.required_topics) == (("marketing", "product"), ("policy", "security"))
    assert (settings.token_ttl_days, settings.key_grace_days, settings.secrets_max_age_seconds) == (365, 365, 300)
    assert (settings.brand_name, settings.support_contact) == ("Example Co", "support@example.com")
    assert (settings.sms_provider, settings.sms_keywords_file, settings.max_form_bytes) == ("sns", "", 8192)
    assert (settings.email_rate_per_second, settings.sender_concurrency) == ("auto", 1)
    assert (settings.sms_rate_per_second, settings.send_retry_limit) == (20.0, 5)
    assert (settings.sender_address, settings.default_timezone) == ("notices@example.com", "America/New_York")
    assert (settings.transient_bounce_limit, settings.transient_bounce_window_days) == (3, 7)
    assert settings.suppression_table == settings.pepper_secret == settings.links_base_url == ""


def test_a_handler_imported_with_defaults_reads_them(monkeypatch: pytest.MonkeyPatch) -> None:
    import_handler("unsubscribe", complete("unsubscribe"), monkeypatch)

    settings = wiring.unsubscribe_settings()

    assert (settings.token_ttl_days, settings.key_grace_days, settings.brand_name) == (365, 365, "Example Co")
    assert settings.suppression_table == "stand-in-optout_suppression_table"


def test_set_variables_override_the_defaults() -> None:
    env = {
        **complete("sender"),
        "OPTOUT_TOKEN_TTL_DAYS": "90",
        "OPTOUT_EMAIL_RATE_PER_SECOND": "2.5",
        "OPTOUT_TOPICS": '[{"name": "news", "kind": "optional"}]',
        "OPTOUT_PUBLIC_BASE_URL": "https://x.test/",
    }

    settings = SenderSettings.from_env(env)

    assert (settings.token_ttl_days, settings.email_rate_per_second) == (90, 2.5)
    assert settings.optional_topics == ("news",) and settings.required_topics == ()
    assert settings.links_base_url == "https://x.test"


def test_the_region_is_the_one_lambda_sets() -> None:
    settings = SenderSettings.from_env(without(complete("sender"), "AWS_REGION") | {"AWS_REGION": "ap-south-1"})

    assert settings.links_base_url == "https://abc123.execute-api.ap-south-1.amazonaws.com"


# --- bad values fail the cold start, by name ------------------------------------------------

BAD_VALUES = [
    ("unsubscribe", "OPTOUT_TOKEN_TTL_DAYS", "10", "greater than or equal to 60"),
    ("sender", "OPTOUT_TOKEN_TTL_DAYS", "10", "greater than or equal to 60"),
    ("unsubscribe", "OPTOUT_KEY_GRACE_DAYS", "a year", "valid integer"),
    ("unsubscribe", "OPTOUT_MAX_FORM_BYTES", "12", "greater than or equal to 256"),
    ("sender", "OPTOUT_EMAIL_RATE_PER_SECOND", "0", "must be auto or greater than 0"),
    ("sender", "OPTOUT_EMAIL_RATE_PER_SECOND", "fast", "must be auto or a number"),
    ("sender", "OPTOUT_SENDER_CONCURRENCY", "0", "greater than or equal to 1"),
    ("sender", "OPTOUT_SMS_PROVIDER", "twilio", "'sns' or 'end-user-messaging'"),
    ("sms_inbound", "OPTOUT_SMS_PROVIDER", "SNS", "'sns' or 'end-user-messaging'"),
    ("feedback", "OPTOUT_TRANSIENT_BOUNCE_LIMIT", "0", "greater than or equal to 1"),
    ("admin_api", "OPTOUT_TOPICS", "marketing,product", "Expecting value"),
    ("dispatcher", "OPTOUT_TOPICS", '[{"name": "Bad Name", "kind": "optional"}]', "pattern"),
    (
        "sms_webhook",
        "OPTOUT_TOPICS",
        '[{"name": "a", "kind": "optional"}, {"name": "a", "kind": "required"}]',
        "unique",
    ),
    ("sms_webhook", "OPTOUT_SECRETS_MAX_AGE_SECONDS", "-1", "greater than or equal to 0"),
]


@pytest.mark.parametrize(("function", "variable", "value", "why"), BAD_VALUES)
def test_a_bad_value_fails_the_import_naming_the_variable(
    function: str, variable: str, value: str, why: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SettingsError) as failed:
        import_handler(function, {**complete(function), variable: value}, monkeypatch)

    message = str(failed.value)
    assert message.startswith(MODELS[function].__name__ + ": ")
    assert variable in message and why in message


@pytest.mark.parametrize("function", ["sms_webhook", "sms_inbound", "sender"])
def test_end_user_messaging_requires_an_origination_identity(function: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {**complete(function), "OPTOUT_SMS_PROVIDER": "end-user-messaging"}

    with pytest.raises(SettingsError, match="OPTOUT_SMS_ORIGINATION_IDENTITY is required"):
        import_handler(function, env, monkeypatch)
    import_handler(function, {**env, "OPTOUT_SMS_ORIGINATION_IDENTITY": "+14155550100"}, monkeypatch)


def test_the_sender_requires_a_base_for_its_unsubscribe_links(monkeypatch: pytest.MonkeyPatch) -> None:
    env = without(without(complete("sender"), "OPTOUT_API_ID"), "AWS_REGION")

    with pytest.raises(SettingsError, match="OPTOUT_PUBLIC_BASE_URL, or OPTOUT_API_ID with AWS_REGION, is required"):
        import_handler("sender", env, monkeypatch)
    import_handler("sender", {**env, "OPTOUT_PUBLIC_BASE_URL": "https://notify.example.com"}, monkeypatch)


# --- the template gives each function what it requires --------------------------------------


def test_the_template_gives_each_function_every_variable_it_requires() -> None:
    from optout_local.template import load_template

    template = load_template()
    globals_ = set(template["Globals"]["Function"]["Environment"]["Variables"])
    functions = {
        Path(r["Properties"]["CodeUri"]).name: r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Serverless::Function"
    }
    assert set(functions) == set(REQUIRED)
    for function, properties in functions.items():
        declared = globals_ | set(properties.get("Environment", {}).get("Variables", {}))
        missing = set(REQUIRED[function]) - declared
        assert not missing, f"{function} would fail its cold start: {sorted(missing)}"
    sender = set(functions["sender"].get("Environment", {}).get("Variables", {})) | globals_
    assert {"OPTOUT_PUBLIC_BASE_URL", "OPTOUT_API_ID"} <= sender  # AWS_REGION is Lambda's own


# --- one reset ------------------------------------------------------------------------------


def test_reset_makes_the_next_call_read_the_new_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a handler imported under one environment, and its service built
    import_handler("feedback", complete("feedback"), monkeypatch)
    before = wiring.feedback()
    assert wiring.feedback() is before  # built once
    # When the environment changes and the layer is reset once
    monkeypatch.setenv("OPTOUT_SUPPRESSION_TABLE", "another-table")
    monkeypatch.setenv("OPTOUT_TRANSIENT_BOUNCE_LIMIT", "9")
    wiring.reset()
    # Then the next call builds from the new one
    after = wiring.feedback()
    assert after is not before
    assert after.settings.transient_bounce_limit == 9
    assert after.store.table == "another-table"  # type: ignore[attr-defined]


def test_reset_forgets_every_service_and_client(monkeypatch: pytest.MonkeyPatch) -> None:
    from optout.core import clients

    env: dict[str, Any] = {}
    for function in REQUIRED:
        env |= complete(function)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    built = [wiring.unsubscribe(), wiring.sms_webhook(), wiring.sms_inbound(), wiring.feedback(),
             wiring.suppression_admin(), wiring.notice_admin(), wiring.dispatcher(), wiring.sender()]  # fmt: skip
    client = clients.dynamodb()

    wiring.reset()

    again = [wiring.unsubscribe(), wiring.sms_webhook(), wiring.sms_inbound(), wiring.feedback(),
             wiring.suppression_admin(), wiring.notice_admin(), wiring.dispatcher(), wiring.sender()]  # fmt: skip
    assert all(a is not b for a, b in zip(built, again, strict=True))
    assert clients.dynamodb() is not client
