"""Outbound SMS through one interface with two providers.

- ``sns``: SNS Publish to a phone number (the default, and what the local stack uses).
- ``end-user-messaging``: pinpoint-sms-voice-v2 SendTextMessage from an origination identity
  with a configuration set; opt-outs and opt-ins are mirrored into its opt-out list so AWS
  itself refuses to text a number that opted out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Protocol

from optout.channels.email import PermanentSendError, answered_message_id

if TYPE_CHECKING:
    from optout.core.settings import SmsSettings

MessageType = Literal["TRANSACTIONAL", "PROMOTIONAL"]


class OptedOutAtProvider(PermanentSendError):
    """The provider refused the text because the number is on its own opt-out list: nothing was
    sent, and no retry could send it while the number stays there."""


class SmsChannel(Protocol):
    def send(
        self, to: str, body: str, origination: str | None = None, message_type: MessageType = "TRANSACTIONAL"
    ) -> str:
        """Send ``body`` to the E.164 number ``to``; return the provider's message id."""
        ...

    def mirror_opt_out(self, number: str) -> None: ...

    def mirror_opt_in(self, number: str) -> None: ...


class SnsSms:
    def __init__(self, client: Any, sender_id: str | None = None) -> None:
        self.client = client
        self.sender_id = sender_id

    def send(
        self, to: str, body: str, origination: str | None = None, message_type: MessageType = "TRANSACTIONAL"
    ) -> str:
        attributes: dict[str, Any] = {
            "AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": message_type.capitalize()},
        }
        if origination:
            attributes["AWS.MM.SMS.OriginationNumber"] = {"DataType": "String", "StringValue": origination}
        if self.sender_id:
            attributes["AWS.SNS.SMS.SenderID"] = {"DataType": "String", "StringValue": self.sender_id}
        return answered_message_id(self.client.publish(PhoneNumber=to, Message=body, MessageAttributes=attributes))

    def mirror_opt_out(self, number: str) -> None:
        """SNS keeps its own opt-out list from carrier STOPs; nothing to mirror."""

    def mirror_opt_in(self, number: str) -> None:
        """SNS allows opting a number back in only once per 30 days; we leave that to SNS."""


class EndUserMessagingSms:
    def __init__(
        self, client: Any, origination_identity: str, configuration_set: str | None, opt_out_list: str | None
    ) -> None:
        self.client = client
        self.origination_identity = origination_identity
        self.configuration_set = configuration_set
        self.opt_out_list = opt_out_list

    def send(
        self, to: str, body: str, origination: str | None = None, message_type: MessageType = "TRANSACTIONAL"
    ) -> str:
        request: dict[str, Any] = {
            "DestinationPhoneNumber": to,
            "OriginationIdentity": origination or self.origination_identity,
            "MessageBody": body,
            "MessageType": message_type,
        }
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        from botocore.exceptions import ClientError

        try:
            answer = self.client.send_text_message(**request)
        except ClientError as exc:
            # SendTextMessage's ConflictException names its reason in the modeled field Reason
            if exc.response.get("Reason") == "DESTINATION_PHONE_NUMBER_OPTED_OUT":
                raise OptedOutAtProvider("DESTINATION_PHONE_NUMBER_OPTED_OUT") from None
            raise
        return answered_message_id(answer)

    def mirror_opt_out(self, number: str) -> None:
        if self.opt_out_list:
            self.client.put_opted_out_number(OptOutListName=self.opt_out_list, OptedOutNumber=number)

    def mirror_opt_in(self, number: str) -> None:
        if self.opt_out_list:
            self.client.delete_opted_out_number(OptOutListName=self.opt_out_list, OptedOutNumber=number)


def sms_channel(provider: str, clients: Any, settings: SmsSettings) -> SmsChannel:
    """Build the configured provider; ``clients(name)`` returns a boto3 client."""
    if provider == "sns":
        return SnsSms(clients("sns"), settings.sms_sender_id or None)
    if provider == "end-user-messaging":
        if not settings.sms_origination_identity:
            raise ValueError("OPTOUT_SMS_ORIGINATION_IDENTITY is required for end-user-messaging")
        return EndUserMessagingSms(
            clients("pinpoint-sms-voice-v2"),
            settings.sms_origination_identity,
            settings.sms_configuration_set or None,
            settings.sms_opt_out_list or None,
        )
    raise ValueError(f"unknown SMS provider {provider!r}")
