"""optout.channels.sms: outbound SMS through SNS or AWS End User Messaging (pinpoint-sms-voice-v2).

End User Messaging is not in moto: its client is a real boto3 client under botocore's Stubber,
which checks every request against the service model. SNS runs under moto.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, ParamValidationError
from botocore.stub import Stubber
from moto import mock_aws

from optout.channels.email import PermanentSendError
from optout.channels.sms import EndUserMessagingSms, OptedOutAtProvider, SnsSms, sms_channel
from optout.core.settings import Settings

REGION = "us-east-1"
ACCOUNT = "123456789012"
TO = "+14155550100"
FROM = "+18005550199"
OTHER_FROM = "+18005550111"
POOL = f"arn:aws:sms-voice:{REGION}:{ACCOUNT}:pool/pool-0123456789abcdef0123456789abcdef"
CONFIG_SET = "optout-config-set"
OPT_OUT_LIST = "optout-list"
OPT_OUT_LIST_ARN = f"arn:aws:sms-voice:{REGION}:{ACCOUNT}:opt-out-list/{OPT_OUT_LIST}"


def _pinpoint_client() -> Any:
    return boto3.client("pinpoint-sms-voice-v2", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")


class Calls:
    """Counts every API call a client starts, whether or not a stub answers it."""

    def __init__(self, client: Any) -> None:
        self.names: list[str] = []
        client.meta.events.register("provide-client-params.*.*", self._seen)

    def _seen(self, model: Any, **_: Any) -> None:
        self.names.append(model.name)


@pytest.fixture
def pinpoint() -> Iterator[tuple[Any, Stubber, Calls]]:
    client = _pinpoint_client()
    calls = Calls(client)
    with Stubber(client) as stubber:
        yield client, stubber, calls
        stubber.assert_no_pending_responses()


def _opted_out_number_response(number: str) -> dict[str, Any]:
    return {
        "OptOutListArn": OPT_OUT_LIST_ARN,
        "OptOutListName": OPT_OUT_LIST,
        "OptedOutNumber": number,
        "OptedOutTimestamp": datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        "EndUserOptedOut": False,
    }


# --- End User Messaging --------------------------------------------------------------------


def test_send_uses_the_default_origination_and_the_configuration_set(pinpoint: tuple[Any, Stubber, Calls]) -> None:
    client, stubber, calls = pinpoint
    # Given a channel with an origination pool and a configuration set
    channel = EndUserMessagingSms(client, POOL, CONFIG_SET, OPT_OUT_LIST)
    stubber.add_response(
        "send_text_message",
        {"MessageId": "msg-0001"},
        expected_params={
            "DestinationPhoneNumber": TO,
            "OriginationIdentity": POOL,
            "MessageBody": "Acme: Help at help@acme.example.",
            "MessageType": "TRANSACTIONAL",
            "ConfigurationSetName": CONFIG_SET,
        },
    )

    # When a reply is sent
    message_id = channel.send(TO, "Acme: Help at help@acme.example.")

    # Then exactly one SendTextMessage went out and its id comes back
    assert message_id == "msg-0001"
    assert calls.names == ["SendTextMessage"]


def test_a_text_to_a_number_on_the_opt_out_list_is_refused_for_good(pinpoint: tuple[Any, Stubber, Calls]) -> None:
    client, stubber, calls = pinpoint
    channel = EndUserMessagingSms(client, POOL, CONFIG_SET, OPT_OUT_LIST)
    # Given AWS refuses the text: the destination is on the identity's opt-out list
    stubber.add_client_error(
        "send_text_message",
        service_error_code="ConflictException",
        service_message=f"The destination phone number {TO} is opted out",
        http_status_code=400,
        modeled_fields={
            "Message": f"The destination phone number {TO} is opted out",
            "Reason": "DESTINATION_PHONE_NUMBER_OPTED_OUT",
            "ResourceType": "opt-out-list",
            "ResourceId": OPT_OUT_LIST,
        },
    )
    # When a reply is sent, Then it raises OptedOutAtProvider (a permanent refusal), without the number
    with pytest.raises(OptedOutAtProvider) as raised:
        channel.send(TO, "Acme: You are unsubscribed.")
    assert isinstance(raised.value, PermanentSendError) and TO not in str(raised.value)
    assert calls.names == ["SendTextMessage"]
    # And any other conflict stays the provider's own error
    inactive = {"Message": "conflict", "Reason": "RESOURCE_NOT_ACTIVE", "ResourceType": "pool", "ResourceId": POOL}
    stubber.add_client_error(
        "send_text_message", service_error_code="ConflictException", http_status_code=400, modeled_fields=inactive
    )
    with pytest.raises(ClientError):
        channel.send(TO, "Acme: You are unsubscribed.")


def test_send_honours_a_per_call_origination_and_message_type(pinpoint: tuple[Any, Stubber, Calls]) -> None:
    client, stubber, _ = pinpoint
    channel = EndUserMessagingSms(client, POOL, CONFIG_SET, None)
    stubber.add_response(
        "send_text_message",
        {"MessageId": "msg-0002"},
        expected_params={
            "DestinationPhoneNumber": TO,
            "OriginationIdentity": OTHER_FROM,
            "MessageBody": "Offer!",
            "MessageType": "PROMOTIONAL",
            "ConfigurationSetName": CONFIG_SET,
        },
    )

    assert channel.send(TO, "Offer!", origination=OTHER_FROM, message_type="PROMOTIONAL") == "msg-0002"


def test_send_without_a_configuration_set_omits_it(pinpoint: tuple[Any, Stubber, Calls]) -> None:
    client, stubber, _ = pinpoint
    channel = EndUserMessagingSms(client, FROM, None, None)
    # expected_params must match exactly: an extra ConfigurationSetName would fail the stub
    stubber.add_response(
        "send_text_message",
        {"MessageId": "msg-0003"},
        expected_params={
            "DestinationPhoneNumber": TO,
            "OriginationIdentity": FROM,
            "MessageBody": "hi",
            "MessageType": "TRANSACTIONAL",
        },
    )

    assert channel.send(TO, "hi", origination=None) == "msg-0003"


def test_send_propagates_a_service_error(pinpoint: tuple[Any, Stubber, Calls]) -> None:
    client, stubber, _ = pinpoint
    channel = EndUserMessagingSms(client, FROM, CONFIG_SET, OPT_OUT_LIST)
    stubber.add_client_error(
        "send_text_message", service_error_code="ConflictException", service_message="opted out", http_status_code=409
    )

    with pytest.raises(client.exceptions.ConflictException):
        channel.send(TO, "hi")


def test_mirror_opt_out_puts_the_number_on_the_opt_out_list(pinpoint: tuple[Any, Stubber, Calls]) -> None:
    client, stubber, calls = pinpoint
    channel = EndUserMessagingSms(client, FROM, CONFIG_SET, OPT_OUT_LIST)
    stubber.add_response(
        "put_opted_out_number",
        _opted_out_number_response(TO),
        expected_params={"OptOutListName": OPT_OUT_LIST, "OptedOutNumber": TO},
    )

    assert channel.mirror_opt_out(TO) is None
    assert calls.names == ["PutOptedOutNumber"]


def test_mirror_opt_in_deletes_the_number_from_the_opt_out_list(pinpoint: tuple[Any, Stubber, Calls]) -> None:
    client, stubber, calls = pinpoint
    channel = EndUserMessagingSms(client, FROM, CONFIG_SET, OPT_OUT_LIST)
    stubber.add_response(
        "delete_opted_out_number",
        _opted_out_number_response(TO),
        expected_params={"OptOutListName": OPT_OUT_LIST, "OptedOutNumber": TO},
    )

    channel.mirror_opt_in(TO)

    assert calls.names == ["DeleteOptedOutNumber"]


@pytest.mark.parametrize("opt_out_list", [None, ""])
def test_without_an_opt_out_list_nothing_is_mirrored(
    pinpoint: tuple[Any, Stubber, Calls], opt_out_list: str | None
) -> None:
    client, _, calls = pinpoint
    # Given no opt-out list (no responses queued: any call would fail the stub too)
    channel = EndUserMessagingSms(client, FROM, CONFIG_SET, opt_out_list)

    channel.mirror_opt_out(TO)
    channel.mirror_opt_in(TO)

    assert calls.names == []


def test_the_stubber_really_checks_requests_against_the_model() -> None:
    # Guard for the tests above: a request the model forbids is refused before any stub answers
    client = _pinpoint_client()
    with Stubber(client) as stubber:
        stubber.add_response("send_text_message", {"MessageId": "m"})
        with pytest.raises(ParamValidationError, match="MessageType"):
            client.send_text_message(DestinationPhoneNumber=TO, MessageType=42)


# --- SNS -----------------------------------------------------------------------------------


def _sns_requests(client: Any) -> list[dict[str, Any]]:
    requests: list[dict[str, Any]] = []
    client.meta.events.register("provide-client-params.sns.Publish", lambda params, **_: requests.append(params))
    return requests


def test_sns_send_publishes_to_the_number() -> None:
    from moto.sns.models import sns_backends

    with mock_aws():
        client = boto3.client("sns", region_name=REGION)
        channel = SnsSms(client)

        message_id = channel.send(TO, "Acme: You are unsubscribed.")

        messages = sns_backends[ACCOUNT][REGION].sms_messages
        assert messages[message_id] == (TO, "Acme: You are unsubscribed.")
        assert list(messages) == [message_id]


def test_sns_send_with_origination_and_sender_id_is_accepted_by_sns() -> None:
    from moto.sns.models import sns_backends

    with mock_aws():
        client = boto3.client("sns", region_name=REGION)
        requests = _sns_requests(client)
        channel = SnsSms(client, sender_id="ACME")

        message_id = channel.send(TO, "hi", origination=FROM, message_type="PROMOTIONAL")

        assert sns_backends[ACCOUNT][REGION].sms_messages[message_id] == (TO, "hi")
        assert requests[0]["MessageAttributes"]["AWS.SNS.SMS.SMSType"]["StringValue"] == "Promotional"


@pytest.fixture
def sns_stub() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("sns", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def _attribute(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


def test_sns_message_attributes_default_to_transactional_only(sns_stub: tuple[Any, Stubber]) -> None:
    client, stubber = sns_stub
    stubber.add_response(
        "publish",
        {"MessageId": "sns-1"},
        expected_params={
            "PhoneNumber": TO,
            "Message": "hi",
            "MessageAttributes": {"AWS.SNS.SMS.SMSType": _attribute("Transactional")},
        },
    )

    assert SnsSms(client).send(TO, "hi") == "sns-1"


def test_sns_message_attributes_carry_origination_and_sender_id(sns_stub: tuple[Any, Stubber]) -> None:
    client, stubber = sns_stub
    stubber.add_response(
        "publish",
        {"MessageId": "sns-2"},
        expected_params={
            "PhoneNumber": TO,
            "Message": "hi",
            "MessageAttributes": {
                "AWS.SNS.SMS.SMSType": _attribute("Transactional"),
                "AWS.MM.SMS.OriginationNumber": _attribute(FROM),
                "AWS.SNS.SMS.SenderID": _attribute("ACME"),
            },
        },
    )

    assert SnsSms(client, sender_id="ACME").send(TO, "hi", origination=FROM) == "sns-2"


def test_sns_promotional_type(sns_stub: tuple[Any, Stubber]) -> None:
    client, stubber = sns_stub
    stubber.add_response(
        "publish",
        {"MessageId": "sns-3"},
        expected_params={
            "PhoneNumber": TO,
            "Message": "offer",
            "MessageAttributes": {
                "AWS.SNS.SMS.SMSType": _attribute("Promotional"),
                "AWS.SNS.SMS.SenderID": _attribute("ACME"),
            },
        },
    )

    assert SnsSms(client, sender_id="ACME").send(TO, "offer", message_type="PROMOTIONAL") == "sns-3"


def test_sns_mirrors_nothing(sns_stub: tuple[Any, Stubber]) -> None:
    client, _ = sns_stub
    calls = Calls(client)
    channel = SnsSms(client)

    channel.mirror_opt_out(TO)
    channel.mirror_opt_in(TO)

    assert calls.names == []


# --- sms_channel ---------------------------------------------------------------------------


class FakeClients:
    def __init__(self) -> None:
        self.requested: list[str] = []

    def __call__(self, name: str) -> Any:
        self.requested.append(name)
        return object()


def test_sns_provider_builds_sns_sms() -> None:
    clients = FakeClients()

    channel = sms_channel("sns", clients, Settings(sms_provider="sns", sms_sender_id="ACME"))

    assert isinstance(channel, SnsSms)
    assert clients.requested == ["sns"]
    assert channel.sender_id == "ACME"


def test_sns_provider_without_a_sender_id() -> None:
    channel = sms_channel("sns", FakeClients(), Settings(sms_provider="sns"))

    assert isinstance(channel, SnsSms)
    assert channel.sender_id is None


def test_end_user_messaging_provider_builds_its_channel() -> None:
    clients = FakeClients()
    settings = Settings(
        sms_provider="end-user-messaging",
        sms_origination_identity=POOL,
        sms_configuration_set=CONFIG_SET,
        sms_opt_out_list=OPT_OUT_LIST,
    )

    channel = sms_channel("end-user-messaging", clients, settings)

    assert isinstance(channel, EndUserMessagingSms)
    assert clients.requested == ["pinpoint-sms-voice-v2"]
    assert (channel.origination_identity, channel.configuration_set, channel.opt_out_list) == (
        POOL,
        CONFIG_SET,
        OPT_OUT_LIST,
    )


def test_end_user_messaging_blank_optional_settings_become_none() -> None:
    settings = Settings(sms_provider="end-user-messaging", sms_origination_identity=FROM)

    channel = sms_channel("end-user-messaging", FakeClients(), settings)

    assert isinstance(channel, EndUserMessagingSms)
    assert channel.configuration_set is None
    assert channel.opt_out_list is None


def test_end_user_messaging_without_an_origination_identity_is_refused() -> None:
    clients = FakeClients()
    # Settings refuse this at init (tests/unit/test_settings.py); the channel refuses it as well
    unchecked = Settings.model_construct(sms_provider="end-user-messaging")

    with pytest.raises(ValueError, match="OPTOUT_SMS_ORIGINATION_IDENTITY"):
        sms_channel("end-user-messaging", clients, unchecked)
    assert clients.requested == []


@pytest.mark.parametrize("provider", ["twilio", "SNS", "", "end_user_messaging"])
def test_unknown_provider_is_refused(provider: str) -> None:
    clients = FakeClients()

    with pytest.raises(ValueError, match="unknown SMS provider"):
        sms_channel(provider, clients, Settings())
    assert clients.requested == []


def test_a_real_client_factory_works_end_to_end(pinpoint: tuple[Any, Stubber, Calls]) -> None:
    # Given the factory handed the stubbed pinpoint client
    client, stubber, _ = pinpoint
    settings = Settings(sms_provider="end-user-messaging", sms_origination_identity=FROM, sms_opt_out_list=OPT_OUT_LIST)
    channel = sms_channel("end-user-messaging", lambda name: client, settings)
    stubber.add_response(
        "put_opted_out_number",
        _opted_out_number_response(TO),
        expected_params={"OptOutListName": OPT_OUT_LIST, "OptedOutNumber": TO},
    )
    stubber.add_response(
        "send_text_message",
        {"MessageId": "msg-9"},
        expected_params={
            "DestinationPhoneNumber": TO,
            "OriginationIdentity": FROM,
            "MessageBody": "bye",
            "MessageType": "TRANSACTIONAL",
        },
    )

    # When it mirrors an opt-out and sends the confirmation
    channel.mirror_opt_out(TO)

    # Then both calls match the model and the expected parameters
    assert channel.send(TO, "bye") == "msg-9"
