"""Outbound email: SES v2 SendBulkEmail, up to 50 recipients a call; SendEmail (raw MIME) one by one.

A bulk call carries the notice once, as an inline template, and per recipient their address,
their own link (ReplacementTemplateData) and their own List-Unsubscribe and
List-Unsubscribe-Post headers, in that order (ReplacementHeaders). SendEmail stays for what
SES's substitution cannot carry unchanged (see ``notices.render.bulk_template``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from optout.channels.pacing import OutcomeUnknown

BULK_MAX = 50  # destinations in one SendBulkEmail call (SES v2 quotas)
# BulkEmailStatus values (botocore's sesv2 model) that no later try can fix; any other status
# but SUCCESS (throttled, quota, paused, a transient failure) is worth trying again later.
PERMANENT_STATUSES = frozenset({
    "MESSAGE_REJECTED", "MAIL_FROM_DOMAIN_NOT_VERIFIED", "CONFIGURATION_SET_NOT_FOUND",
    "TEMPLATE_NOT_FOUND", "ACCOUNT_SUSPENDED", "INVALID_PARAMETER", "INVALID_SENDING_POOL_NAME",
})  # fmt: skip


@dataclass(frozen=True)
class RenderedEmail:
    """A mail as the channel sends it; notices render into it (``optout.notices.render``)."""

    subject: str
    text: str
    html: str
    headers: dict[str, str] = field(default_factory=dict)
    personal: bool = False  # holds {{name}} and {{name_html}}: each entry's ReplacementTemplateData gives them


class PermanentSendError(Exception):
    """SES refused this message for good (bad address, rejected content): do not retry."""


PERMANENT_CODES = frozenset({"MessageRejected", "MailFromDomainNotVerifiedException", "BadRequestException"})


@dataclass(frozen=True)
class BulkEntry:
    to: str
    url: str  # the recipient's own link, put in for {{url}}
    headers: tuple[tuple[str, str], ...] = ()  # their own headers, in order
    data: tuple[tuple[str, str], ...] = ()  # their own values for the template's other variables


@dataclass(frozen=True)
class BulkResult:
    status: str  # SUCCESS, or a BulkEmailStatus
    message_id: str | None = None
    error: str | None = None

    @property
    def permanent(self) -> bool:
        return self.status in PERMANENT_STATUSES


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
            answer = self.client.send_email(**request)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in PERMANENT_CODES:
                raise PermanentSendError(exc.response["Error"].get("Code", "rejected")) from exc
            raise
        return answered_message_id(answer)

    def send_bulk(self, template: RenderedEmail, entries: list[BulkEntry]) -> list[BulkResult]:
        """One SendBulkEmail call: the results in the entries' order (BulkEmailEntryResults)."""
        from botocore.exceptions import ClientError

        if not 0 < len(entries) <= BULK_MAX:
            raise ValueError(f"a bulk send takes 1 to {BULK_MAX} entries, not {len(entries)}")
        request: dict[str, Any] = {
            "FromEmailAddress": self.sender,
            "DefaultContent": {
                "Template": {
                    "TemplateContent": {"Subject": template.subject, "Text": template.text, "Html": template.html},
                    "TemplateData": "{}",
                }
            },
            "BulkEmailEntries": [
                {
                    "Destination": {"ToAddresses": [e.to]},
                    "ReplacementEmailContent": {
                        "ReplacementTemplate": {"ReplacementTemplateData": json.dumps({"url": e.url, **dict(e.data)})}
                    },
                    **({"ReplacementHeaders": [{"Name": n, "Value": v} for n, v in e.headers]} if e.headers else {}),
                }
                for e in entries
            ],
        }
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        try:
            answer = self.client.send_bulk_email(**request)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in PERMANENT_CODES:
                raise PermanentSendError(exc.response["Error"].get("Code", "rejected")) from exc
            raise
        results = [
            BulkResult(str(r.get("Status", "FAILED")), r.get("MessageId"), r.get("Error"))
            for r in answer.get("BulkEmailEntryResults", [])
        ]
        if len(results) != len(entries):  # SES answers one result per entry: which went out is unknown
            raise OutcomeUnknown(f"SES answered {len(results)} results for {len(entries)} entries")
        return results


def answered_message_id(answer: Any) -> str:
    """The message id of a provider's 200 answer to a send. Without one, the send may have gone
    out all the same (the provider took the request): OutcomeUnknown, never sent again."""
    message_id = answer.get("MessageId") if isinstance(answer, dict) else None
    if not isinstance(message_id, str) or not message_id:
        raise OutcomeUnknown("no message id in the answer")
    return message_id
