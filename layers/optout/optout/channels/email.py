"""Outbound email: SES v2 SendEmail with a raw MIME message, one call per recipient."""

from __future__ import annotations

from typing import Any


class PermanentSendError(Exception):
    """SES refused this message for good (bad address, rejected content): do not retry."""


PERMANENT_CODES = frozenset({"MessageRejected", "MailFromDomainNotVerifiedException", "BadRequestException"})


class SesEmail:
    def __init__(self, client: Any, sender: str, configuration_set: str | None) -> None:
        self.client = client
        self.sender = sender
        self.configuration_set = configuration_set

    def send(self, to: str, raw_message: bytes) -> str:
        from botocore.exceptions import ClientError

        request: dict[str, Any] = {
            "FromEmailAddress": self.sender,
            "Destination": {"ToAddresses": [to]},
            "Content": {"Raw": {"Data": raw_message}},
        }
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        try:
            message_id: str = self.client.send_email(**request)["MessageId"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in PERMANENT_CODES:
                raise PermanentSendError(exc.response["Error"].get("Code", "rejected")) from exc
            raise
        return message_id
