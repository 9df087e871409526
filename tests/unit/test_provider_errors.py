"""What a provider says went wrong reaches no log, record or trace with an address in it.

SES's sandbox refusal quotes the address ("... failed the check in region ...: <address>"); an
SNS or End User Messaging refusal can quote the number. botocore builds the ClientError from that
message, the code logs and stores it (a delivery's reason), and X-Ray's botocore patch, which the
functions run with tracing on, records ``str(error)`` in the subsegment's cause. The clients take
addresses out of every answer before botocore raises. Real clients from ``optout.core.clients``,
answered by botocore's Stubber (which checks each request against the service model).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from optout.channels.email import BulkEntry, PermanentSendError, RenderedEmail, SesEmail
from optout.core import clients
from optout.core.identity import redact_addresses

ADDRESS = "alice.o'neil@example.org"
NUMBER = "+14155550123"
NOT_VERIFIED = (
    f"Email address is not verified. The following identities failed the check in region US-EAST-1: {ADDRESS}"
)


@pytest.fixture(autouse=True)
def _region(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    clients.reset()
    yield
    clients.reset()


def test_redact_addresses_keeps_the_reason_not_the_address() -> None:
    assert redact_addresses(NOT_VERIFIED).endswith("region US-EAST-1: [redacted]")
    assert redact_addresses(f"Invalid parameter: PhoneNumber Reason: {NUMBER} is not valid") == (
        "Invalid parameter: PhoneNumber Reason: [redacted] is not valid"
    )
    throttled = "Throttling: Maximum sending rate exceeded."
    assert redact_addresses(throttled) == throttled
    # What an operator needs stays: ARNs with their account, request ids, times, IP addresses
    denied = (
        "User: arn:aws:sts::123456789012:assumed-role/optout-Sender/s is not authorized (request"
        " 1b3c5d7e-1234-5678-9abc-def012345678 at 2026-12-03 17:00:00 from 203.0.113.10)"
    )
    assert redact_addresses(denied) == denied
    assert redact_addresses("to +44 20 7946 0958 and +1 (415) 555-0123") == "to [redacted] and [redacted]"


def test_a_refused_send_raises_an_error_without_the_address() -> None:
    # Given SES refuses a mail and quotes the address
    client = clients.provider("sesv2")
    with Stubber(client) as stubber:
        stubber.add_client_error(
            "send_email", service_error_code="MessageRejected", service_message=NOT_VERIFIED, http_status_code=400
        )
        # When it is sent, Then the error still says why, and names no address
        with pytest.raises(PermanentSendError) as raised:
            SesEmail(client, "notices@example.com", None).send(ADDRESS, b"Subject: x\r\n\r\nhi")
    error = raised.value.__cause__ or raised.value.__context__
    assert isinstance(error, ClientError)
    assert "not verified" in str(error) and ADDRESS not in str(error)
    assert ADDRESS not in str(raised.value)


def test_an_sns_refusal_quoting_the_number_is_redacted() -> None:
    client = clients.provider("sns")
    with Stubber(client) as stubber:
        stubber.add_client_error(
            "publish", service_error_code="InvalidParameter", http_status_code=400,
            service_message=f"Invalid parameter: PhoneNumber Reason: {NUMBER} is not valid to publish to",
        )  # fmt: skip
        with pytest.raises(ClientError) as raised:
            client.publish(PhoneNumber=NUMBER, Message="hi")
    assert "PhoneNumber" in str(raised.value) and NUMBER not in str(raised.value)


def test_a_bulk_entry_error_is_kept_without_the_address() -> None:
    # Given a bulk send whose one entry SES refuses, quoting the address
    client = clients.provider("sesv2")
    template = RenderedEmail(subject="s", text="t {{url}}", html="<p>t {{url}}</p>")
    with Stubber(client) as stubber:
        stubber.add_response(
            "send_bulk_email",
            {"BulkEmailEntryResults": [{"Status": "MESSAGE_REJECTED", "Error": f"Rejected: {ADDRESS}"}]},
        )
        results = SesEmail(client, "notices@example.com", None).send_bulk(
            template, [BulkEntry(to=ADDRESS, url="https://x.example/u?token=t", headers=())]
        )
    # Then the entry's error, which becomes the delivery's reason, names no address
    assert [r.status for r in results] == ["MESSAGE_REJECTED"]
    assert results[0].error == "Rejected: [redacted]"


class _Segments:
    """An X-Ray emitter that keeps what it would send to the daemon."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def send_entity(self, entity: Any) -> None:
        self.sent.append(entity.serialize())

    def set_daemon_address(self, address: Any) -> None:
        pass


def test_the_trace_of_a_refused_send_holds_no_address() -> None:
    # Given botocore patched for X-Ray, as observability.traced patches it with tracing on
    from aws_xray_sdk.core import patch, xray_recorder

    patch(("botocore",))
    emitter, before = _Segments(), xray_recorder._emitter
    xray_recorder.configure(emitter=emitter)
    client = clients.provider("sesv2")
    try:
        with Stubber(client) as stubber:
            stubber.add_client_error(
                "send_email", service_error_code="MessageRejected", service_message=NOT_VERIFIED, http_status_code=400
            )
            xray_recorder.begin_segment("sender")
            try:
                with pytest.raises(ClientError):
                    client.send_email(
                        FromEmailAddress="notices@example.com",
                        Destination={"ToAddresses": [ADDRESS]},
                        Content={"Raw": {"Data": b"Subject: x\r\n\r\nhi"}},
                    )
            finally:
                xray_recorder.end_segment()
    finally:
        xray_recorder.configure(emitter=before)
    # Then the segment records the refusal (its cause), yet no address
    trace = "".join(emitter.sent)
    causes = [json.loads(s) for s in emitter.sent]
    assert any("not verified" in json.dumps(c) for c in causes)
    assert ADDRESS not in trace
