"""How optout.core.settings reads the environment: the loader it implements on plain pydantic.

Each rule here was pydantic-settings' before the layer dropped it (about 40 ms of every cold
start): where a field is read from and in what order, what an empty or oddly cased variable
means, how a JSON value is decoded, that a value given in code wins, and that a missing or bad
variable fails by name. tests/unit/test_settings.py holds what each function requires.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import AliasChoices, Field, ValidationError

from optout.core.settings import (
    DEFAULT_TOPICS,
    LinkSettings,
    OptoutSettings,
    SenderSettings,
    Settings,
    SettingsError,
    SmsWebhookSettings,
    Topic,
    TopicSettings,
    UnsubscribeSettings,
)

ROOT = Path(__file__).resolve().parents[2]
UNSUBSCRIBE = {
    "OPTOUT_SUPPRESSION_TABLE": "suppressions", "OPTOUT_SIGNING_KEYS_SECRET": "signing-keys",
    "OPTOUT_PEPPER_SECRET": "pepper", "OPTOUT_PUBLIC_BASE_URL": "https://x.test", "OPTOUT_NOTICES_TABLE": "notices",
}  # fmt: skip
REGION_VARIABLES = ("OPTOUT_REGION", "AWS_REGION", "AWS_DEFAULT_REGION")
SENDER_REQUIRES = (
    "OPTOUT_SUPPRESSION_TABLE", "OPTOUT_PEPPER_SECRET", "OPTOUT_SIGNING_KEYS_SECRET", "OPTOUT_NOTICES_TABLE",
    "OPTOUT_SEND_QUEUE_URL",
)  # fmt: skip
EVERY_REQUIRED = (
    *SENDER_REQUIRES,
    "OPTOUT_TWILIO_AUTH_TOKEN_SECRET",
    "OPTOUT_DISPATCH_QUEUE_URL",
    "OPTOUT_MANIFEST_BUCKET",
    "OPTOUT_INBOUND_SMS_QUEUE_URL",
)
BLOCKED = ("pydantic_settings", "pydantic-settings", "python-dotenv")


@pytest.fixture(autouse=True)
def _no_optout_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("OPTOUT_") or name.upper() in REGION_VARIABLES:
            monkeypatch.delenv(name)


class PortSettings(OptoutSettings):
    """A model of this test's own: an aliased field with a constraint, and a required one."""

    port: int = Field(default=8080, ge=1, validation_alias=AliasChoices("OPTOUT_PORT", "PORT"))
    service: str


# --- where a field is read from -------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "region"),
    [
        ({"OPTOUT_REGION": "o", "AWS_REGION": "a", "AWS_DEFAULT_REGION": "d"}, "o"),
        ({"AWS_REGION": "a", "AWS_DEFAULT_REGION": "d"}, "a"),
        ({"AWS_DEFAULT_REGION": "d"}, "d"),
        ({"OPTOUT_REGION": "", "AWS_REGION": "", "AWS_DEFAULT_REGION": "d"}, "d"),  # empty: the next one
        ({}, ""),
    ],
)
def test_an_aliased_field_takes_the_first_of_its_variables_that_is_set(environ: dict[str, str], region: str) -> None:
    assert LinkSettings.from_env(environ).region == region


def test_a_field_is_read_from_the_prefix_and_its_name_in_capitals() -> None:
    settings = UnsubscribeSettings.from_env({**UNSUBSCRIBE, "OPTOUT_BRAND_NAME": "Acme", "BRAND_NAME": "not this"})

    assert (settings.suppression_table, settings.signing_keys_secret) == ("suppressions", "signing-keys")
    assert settings.brand_name == "Acme"


def test_variable_names_are_matched_whatever_their_case() -> None:
    settings = LinkSettings.from_env({"optout_public_base_url": "https://a.test", "Aws_Region": "eu-west-1"})

    assert (settings.public_base_url, settings.region) == ("https://a.test", "eu-west-1")


def test_variables_no_field_reads_are_ignored() -> None:
    settings = UnsubscribeSettings.from_env({**UNSUBSCRIBE, "OPTOUT_NO_SUCH_SETTING": "x", "HOME": "/root"})

    assert not hasattr(settings, "no_such_setting") and "home" not in settings.model_dump()


def test_from_env_reads_the_mapping_it_is_given_and_not_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPTOUT_BRAND_NAME", "from the process")
    environ = {**UNSUBSCRIBE, "OPTOUT_TOKEN_TTL_DAYS": "90"}

    settings = UnsubscribeSettings.from_env(environ)

    assert (settings.brand_name, settings.token_ttl_days) == ("Example Co", 90)
    assert environ == {**UNSUBSCRIBE, "OPTOUT_TOKEN_TTL_DAYS": "90"}  # left as it was


def test_from_env_without_a_mapping_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in UNSUBSCRIBE.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OPTOUT_BRAND_NAME", "from the process")

    assert UnsubscribeSettings.from_env().brand_name == "from the process"


# --- values given in code -------------------------------------------------------------------


def test_a_model_built_in_code_reads_the_process_environment_under_what_it_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPTOUT_BRAND_NAME", "from the process")
    monkeypatch.setenv("OPTOUT_SUPPORT_CONTACT", "help@a.test")
    monkeypatch.setenv("AWS_REGION", "us-east-1")

    settings = Settings(brand_name="given", region="eu-west-1")

    assert (settings.brand_name, settings.region) == ("given", "eu-west-1")  # given wins
    assert settings.support_contact == "help@a.test"  # the rest from the environment
    assert Settings().region == "us-east-1"


def test_a_value_given_in_code_may_use_a_variable_name_in_any_case() -> None:
    assert Settings(AWS_REGION="ap-south-1").region == "ap-south-1"
    assert Settings(OPTOUT_REGION="first", region="second").region == "first"  # an alias before the name
    assert Settings(Brand_Name="Acme").brand_name == "Acme"


def test_a_value_given_in_code_for_no_field_is_ignored() -> None:
    settings = Settings(no_such_setting="x")

    assert "no_such_setting" not in settings.model_dump() and settings.model_extra is None


def test_a_value_given_in_code_is_validated_like_a_variable() -> None:
    with pytest.raises(ValidationError, match="greater than or equal to 60"):
        Settings(token_ttl_days=1)
    assert Settings(topics='[{"name": "news", "kind": "optional"}]').optional_topics == ("news",)
    assert Settings(topics=[{"name": "news", "kind": "required"}]).required_topics == ("news",)


# --- JSON values ----------------------------------------------------------------------------


def test_the_topics_are_a_json_list() -> None:
    settings = TopicSettings.from_env(
        {"OPTOUT_TOPICS": '[{"name": "news", "kind": "optional"}, {"name": "legal", "kind": "required"}]'}
    )

    assert settings.topics == (Topic(name="news", kind="optional"), Topic(name="legal", kind="required"))
    assert settings.topic("legal") == Topic(name="legal", kind="required") and settings.topic("other") is None


def test_empty_topics_keep_the_defaults() -> None:
    assert TopicSettings.from_env({"OPTOUT_TOPICS": ""}).topics == DEFAULT_TOPICS


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("marketing", "OPTOUT_TOPICS='marketing': Expecting value"),
        ('{"name": "news", "kind": "optional"}', "OPTOUT_TOPICS: Input should be a valid tuple"),
        ('[{"name": "news", "kind": "maybe"}]', "OPTOUT_TOPICS[0].kind: Input should be 'optional' or 'required'"),
        ('[{"name": "news"}]', "OPTOUT_TOPICS[0].kind is not set"),
    ],
)
def test_a_bad_json_value_fails_naming_the_variable_and_where_in_it(value: str, why: str) -> None:
    with pytest.raises(SettingsError) as failed:
        TopicSettings.from_env({"OPTOUT_TOPICS": value})

    assert str(failed.value).startswith("TopicSettings: ") and why in str(failed.value)


# --- failures name the variable -------------------------------------------------------------


def test_every_missing_variable_is_named_in_one_error() -> None:
    with pytest.raises(SettingsError) as failed:
        SmsWebhookSettings.from_env({"OPTOUT_PEPPER_SECRET": "pepper"})

    assert str(failed.value) == (
        "SmsWebhookSettings: OPTOUT_INBOUND_SMS_QUEUE_URL is not set; OPTOUT_TWILIO_AUTH_TOKEN_SECRET is not set; "
        "OPTOUT_SUPPRESSION_TABLE is not set"
    )


def test_a_bad_value_is_named_with_what_was_read() -> None:
    with pytest.raises(SettingsError) as failed:
        UnsubscribeSettings.from_env({**UNSUBSCRIBE, "OPTOUT_KEY_GRACE_DAYS": "a year"})

    assert str(failed.value) == (
        "UnsubscribeSettings: OPTOUT_KEY_GRACE_DAYS='a year': Input should be a valid integer, "
        "unable to parse string as an integer"
    )


def test_a_bad_value_read_through_an_alias_names_the_variable_it_came_from() -> None:
    with pytest.raises(SettingsError) as failed:
        PortSettings.from_env({"PORT": "0", "OPTOUT_SERVICE": "api"})

    assert str(failed.value) == "PortSettings: PORT='0': Input should be greater than or equal to 1"
    assert PortSettings.from_env({"port": "9", "OPTOUT_PORT": "7", "OPTOUT_SERVICE": "api"}).port == 7


def test_a_rule_across_variables_fails_with_its_own_message() -> None:
    with pytest.raises(SettingsError) as failed:
        SenderSettings.from_env(dict.fromkeys(SENDER_REQUIRES, "x"))

    assert str(failed.value) == (
        "SenderSettings: OPTOUT_PUBLIC_BASE_URL, or OPTOUT_API_ID with AWS_REGION, is required: "
        "mails link to /unsubscribe"
    )


def test_variable_names_the_variables_a_field_is_read_from() -> None:
    assert Settings.variable("suppression_table") == "OPTOUT_SUPPRESSION_TABLE"
    assert Settings.variable("region") == "OPTOUT_REGION or AWS_REGION or AWS_DEFAULT_REGION"
    assert PortSettings.variable("port") == "OPTOUT_PORT or PORT"


def test_settings_are_frozen() -> None:
    settings = Settings.from_env({})

    with pytest.raises(ValidationError, match="frozen"):
        settings.brand_name = "changed"  # type: ignore[misc]


# --- what the layer no longer imports -------------------------------------------------------


def test_the_settings_and_every_function_model_load_without_pydantic_settings_or_dotenv() -> None:
    # A fresh interpreter in which pydantic_settings and dotenv cannot be imported (the dev venv
    # has them, the layer does not) reads every function's settings as a cold start does
    script = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('pydantic_settings', 'dotenv'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from optout import wiring\n"
        "for name in ('unsubscribe', 'sms_webhook', 'sms_inbound', 'feedback', 'admin_api', 'dispatcher', 'sender'):\n"
        "    getattr(wiring, name + '_settings')()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic_settings', 'dotenv')))\n"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OPTOUT_")}
    environ |= {**dict.fromkeys(EVERY_REQUIRED, "x"), "OPTOUT_API_ID": "abc123", "AWS_REGION": "us-east-1"}

    result = subprocess.run(  # our own interpreter running our own code
        [sys.executable, "-c", script], capture_output=True, text=True, env=environ, timeout=120, check=False
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_layer_pins_no_pydantic_settings_or_dotenv() -> None:
    pins = (ROOT / "layers" / "optout" / "requirements.txt").read_text().lower().splitlines()
    wanted = (ROOT / "requirements" / "layer.in").read_text().lower().splitlines()

    assert not [line for line in pins + wanted if line.startswith(BLOCKED)]
    assert any(line.startswith("pydantic==") for line in pins)
