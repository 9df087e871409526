"""optout.channels.pacing (token bucket, AIMD, the SES quota, backoff) and optout.channels.email.SesEmail.

SES v2 runs as a real boto3 client under botocore's Stubber, which validates every request
against the service model; no network, no waiting (clocks and sleeps are fakes).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.stub import Stubber

from optout.channels.email import PermanentSendError, SesEmail
from optout.channels.pacing import (
    BURST_SECONDS,
    QUOTA_MAX_AGE,
    QUOTA_RETRY,
    OutcomeUnknown,
    SesPace,
    TokenBucket,
    Transient,
    email_pace,
    refused,
    send_at_most_once,
)

REGION = "us-east-1"


class FakeTime:
    """A clock that only moves when the code under test sleeps (or the test advances it)."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


def client_error(code: str, operation: str = "SendEmail", status: int = 400) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, operation)


# --- TokenBucket ----------------------------------------------------------------------------------


def test_burst_is_free_then_the_next_take_waits_one_interval() -> None:
    # Given a bucket of 10/s with a burst of 10
    time = FakeTime()
    bucket = TokenBucket(10, burst=10, clock=time.clock)

    # When ten sends go out at once, none waits
    for _ in range(10):
        bucket.take(sleep=time.sleep)
    assert time.sleeps == []

    # Then the eleventh waits one token's worth: 1/10 s
    bucket.take(sleep=time.sleep)
    assert time.sleeps == [pytest.approx(0.1)]
    assert time.now == pytest.approx(0.1)


# The next tests use 8/s so every step is exact in binary floating point: at 10/s the bucket can
# ask for a sleep of ~1e-17 s, which a fake clock cannot represent (a real clock always moves on).


def test_sustained_rate_matches_the_configured_rate() -> None:
    time = FakeTime()
    bucket = TokenBucket(8, burst=8, clock=time.clock)
    for _ in range(8 + 40):
        bucket.take(sleep=time.sleep)
    # 40 sends beyond the burst take 5 seconds at 8/s, one 1/8 s wait each
    assert time.now == 5.0
    assert time.sleeps == [0.125] * 40


def test_tokens_refill_with_time_up_to_the_burst() -> None:
    time = FakeTime(start=1024.0)
    bucket = TokenBucket(8, burst=8, clock=time.clock)
    for _ in range(8):
        bucket.take(sleep=time.sleep)

    # Given 0.4375 s pass: 3.5 tokens come back, so three sends are free and the fourth waits 1/16 s
    time.advance(0.4375)
    for _ in range(3):
        bucket.take(sleep=time.sleep)
    assert time.sleeps == []
    bucket.take(sleep=time.sleep)
    assert time.sleeps == [0.0625]

    # Given a long idle spell, the bucket holds at most `burst` tokens
    time.advance(3600)
    time.sleeps.clear()
    for _ in range(8):
        bucket.take(sleep=time.sleep)
    assert time.sleeps == []
    bucket.take(sleep=time.sleep)
    assert time.sleeps == [0.125]


def test_default_burst_is_the_rate_but_at_least_one() -> None:
    time = FakeTime()
    assert TokenBucket(14, clock=time.clock).capacity == 14
    slow = TokenBucket(0.5, clock=time.clock)
    assert slow.capacity == 1.0
    slow.take(sleep=time.sleep)
    slow.take(sleep=time.sleep)
    assert time.sleeps == [pytest.approx(2.0)]  # one token every 2 s


# --- refused / send_at_most_once -------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        pytest.param(client_error("Throttling"), True, id="Throttling"),
        pytest.param(client_error("ThrottlingException"), True, id="ThrottlingException"),
        pytest.param(client_error("TooManyRequestsException", status=429), True, id="TooManyRequests"),
        pytest.param(client_error("Throttled", status=429), True, id="SNS-Throttled"),
        pytest.param(client_error("ServiceUnavailable", status=503), False, id="ServiceUnavailable-may-have-applied"),
        pytest.param(client_error("MessageRejected"), False, id="MessageRejected"),
        pytest.param(client_error("AccessDeniedException", status=403), False, id="AccessDenied"),
        pytest.param(ClientError({}, "SendEmail"), False, id="client-error-without-code"),
        pytest.param(EndpointConnectionError(endpoint_url="https://email.us-east-1.amazonaws.com"), True, id="ep-conn"),
        pytest.param(ReadTimeoutError(endpoint_url="https://email.us-east-1.amazonaws.com"), False, id="read-timeout"),
        pytest.param(
            ConnectTimeoutError(endpoint_url="https://email.us-east-1.amazonaws.com"), True, id="conn-timeout"
        ),
        pytest.param(NoCredentialsError(), False, id="no-credentials"),
        pytest.param(ValueError("boom"), False, id="plain-exception"),
    ],
)
def test_refused(exc: BaseException, expected: bool) -> None:
    assert refused(exc) is expected


class Flaky:
    """Fails with the given exceptions, in order, then returns ``result``."""

    def __init__(self, failures: list[BaseException], result: str = "ok") -> None:
        self.failures = list(failures)
        self.result = result
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return self.result


def test_backoff_retries_throttling_then_succeeds() -> None:
    # Given two throttles (both spellings) before success
    call = Flaky([client_error("Throttling"), client_error("ThrottlingException")], result="msg-1")
    time = FakeTime()

    # When called with backoff
    result = send_at_most_once(call, attempts=5, base=0.2, sleep=time.sleep)

    # Then it succeeded on the third attempt after two jittered waits within the backoff caps
    assert result == "msg-1"
    assert call.calls == 3
    assert len(time.sleeps) == 2
    assert 0 <= time.sleeps[0] <= 0.2
    assert 0 <= time.sleeps[1] <= 0.4


def test_backoff_retries_connections_never_made() -> None:
    call = Flaky([EndpointConnectionError(endpoint_url="https://x"), ConnectTimeoutError(endpoint_url="https://x")])
    time = FakeTime()
    assert send_at_most_once(call, sleep=time.sleep) == "ok"
    assert call.calls == 3


@pytest.mark.parametrize("attempts", [1, 3, 5])
def test_backoff_gives_up_with_transient_after_attempts(attempts: int) -> None:
    throttles: list[BaseException] = [client_error("Throttling") for _ in range(attempts + 2)]
    call = Flaky(throttles)
    time = FakeTime()

    with pytest.raises(Transient, match="Throttling") as raised:
        send_at_most_once(call, attempts=attempts, base=0.1, sleep=time.sleep)

    assert call.calls == attempts
    assert len(time.sleeps) == attempts - 1  # no pointless wait after the last attempt
    for n, waited in enumerate(time.sleeps):
        assert 0 <= waited <= 0.1 * 2**n
    assert isinstance(raised.value.__cause__, ClientError)


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(client_error("MessageRejected"), id="MessageRejected"),
        pytest.param(client_error("AccessDeniedException", status=403), id="AccessDenied"),
        pytest.param(KeyError("MessageId"), id="KeyError"),
    ],
)
def test_backoff_does_not_retry_other_errors(error: BaseException) -> None:
    call = Flaky([error])
    time = FakeTime()

    with pytest.raises(type(error)) as raised:
        send_at_most_once(call, sleep=time.sleep)

    assert raised.value is error  # re-raised as is, not wrapped
    assert call.calls == 1
    assert time.sleeps == []


def test_backoff_returns_first_success_without_sleeping() -> None:
    call = Flaky([], result="first")
    time = FakeTime()
    assert send_at_most_once(call, sleep=time.sleep) == "first"
    assert (call.calls, time.sleeps) == (1, [])


# --- SesEmail with a stubbed sesv2 client ---------------------------------------------------

SENDER = "Example Co <notices@example.com>"
RAW = b"From: notices@example.com\r\nTo: ana@example.com\r\nSubject: Hi\r\n\r\nHello\r\n"


@pytest.fixture
def ses() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("sesv2", region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def expected_request(configuration_set: str | None = None) -> dict[str, Any]:
    request: dict[str, Any] = {
        "FromEmailAddress": SENDER,
        "Destination": {"ToAddresses": ["ana@example.com"]},
        "Content": {"Raw": {"Data": RAW}},
    }
    if configuration_set:
        request["ConfigurationSetName"] = configuration_set
    return request


@pytest.mark.parametrize("configuration_set", [None, ""], ids=["none", "empty"])
def test_send_without_configuration_set(ses: tuple[Any, Stubber], configuration_set: str | None) -> None:
    client, stubber = ses
    stubber.add_response("send_email", {"MessageId": "0100-abc"}, expected_request())

    message_id = SesEmail(client, SENDER, configuration_set).send("ana@example.com", RAW)

    assert message_id == "0100-abc"


def test_send_with_configuration_set(ses: tuple[Any, Stubber]) -> None:
    client, stubber = ses
    stubber.add_response("send_email", {"MessageId": "0100-def"}, expected_request("optout-events"))

    assert SesEmail(client, SENDER, "optout-events").send("ana@example.com", RAW) == "0100-def"


@pytest.mark.parametrize("code", ["MessageRejected", "MailFromDomainNotVerifiedException", "BadRequestException"])
def test_permanent_rejection_raises_permanent_send_error(ses: tuple[Any, Stubber], code: str) -> None:
    client, stubber = ses
    stubber.add_client_error("send_email", service_error_code=code, http_status_code=400)

    with pytest.raises(PermanentSendError, match=code) as raised:
        SesEmail(client, SENDER, None).send("ana@example.com", RAW)

    assert isinstance(raised.value.__cause__, ClientError)


@pytest.mark.parametrize(("code", "status"), [("Throttling", 400), ("TooManyRequestsException", 429)])
def test_throttling_propagates_as_client_error(ses: tuple[Any, Stubber], code: str, status: int) -> None:
    client, stubber = ses
    stubber.add_client_error("send_email", service_error_code=code, http_status_code=status)

    with pytest.raises(ClientError) as raised:
        SesEmail(client, SENDER, None).send("ana@example.com", RAW)

    assert not isinstance(raised.value, PermanentSendError)
    assert raised.value.response["Error"]["Code"] == code
    assert refused(raised.value)


def test_backoff_around_ses_send_rides_out_throttling(ses: tuple[Any, Stubber]) -> None:
    # Given SES throttles twice and then accepts
    client, stubber = ses
    stubber.add_client_error("send_email", service_error_code="TooManyRequestsException", http_status_code=429)
    stubber.add_client_error("send_email", service_error_code="Throttling", http_status_code=400)
    stubber.add_response("send_email", {"MessageId": "0100-ghi"}, expected_request())
    sender = SesEmail(client, SENDER, None)
    time = FakeTime()

    # When the send is wrapped in backoff
    send: Callable[[], str] = lambda: sender.send("ana@example.com", RAW)  # noqa: E731
    result = send_at_most_once(send, sleep=time.sleep)

    # Then the third call's MessageId comes back
    assert result == "0100-ghi"
    assert len(time.sleeps) == 2


def test_backoff_around_ses_send_does_not_retry_rejection(ses: tuple[Any, Stubber]) -> None:
    client, stubber = ses
    stubber.add_client_error("send_email", service_error_code="MessageRejected", http_status_code=400)
    sender = SesEmail(client, SENDER, None)
    time = FakeTime()

    with pytest.raises(PermanentSendError):
        send_at_most_once(lambda: sender.send("ana@example.com", RAW), sleep=time.sleep)

    assert time.sleeps == []  # and no second stubbed response was needed


# --- send_at_most_once: a provider send is never repeated once it may have taken effect -------


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        pytest.param(client_error("TooManyRequestsException", status=429), "refused", id="throttled-429"),
        pytest.param(client_error("Throttling"), "refused", id="Throttling-400"),
        pytest.param(EndpointConnectionError(endpoint_url="https://x"), "refused", id="never-connected"),
        pytest.param(ConnectTimeoutError(endpoint_url="https://x"), "refused", id="connect-timeout"),
        pytest.param(ReadTimeoutError(endpoint_url="https://x"), "unknown", id="answer-lost"),
        pytest.param(ConnectionClosedError(endpoint_url="https://x"), "unknown", id="connection-dropped"),
        pytest.param(client_error("InternalFailure", status=500), "unknown", id="500-after-taking-it"),
        pytest.param(client_error("ServiceUnavailable", status=503), "unknown", id="503"),
        pytest.param(client_error("MessageRejected"), "error", id="rejected"),
    ],
)
def test_a_send_is_retried_only_while_the_provider_refuses_it(exc: BaseException, kind: str) -> None:
    call = Flaky([exc])
    time = FakeTime()
    if kind == "refused":
        assert send_at_most_once(call, sleep=time.sleep) == "ok"
        assert call.calls == 2
    elif kind == "unknown":
        with pytest.raises(OutcomeUnknown):
            send_at_most_once(call, sleep=time.sleep)
        assert call.calls == 1  # it may have gone out: never a second call
    else:
        with pytest.raises(ClientError):
            send_at_most_once(call, sleep=time.sleep)
        assert call.calls == 1


def test_a_send_throttled_to_the_end_is_tried_again_later() -> None:
    call = Flaky([client_error("Throttling") for _ in range(5)])
    with pytest.raises(Transient):
        send_at_most_once(call, attempts=5, sleep=FakeTime().sleep)
    assert call.calls == 5


def test_the_provider_client_makes_one_attempt() -> None:
    from optout.core import clients

    clients.reset()
    client = clients.provider("sesv2")
    assert client.meta.config.retries["total_max_attempts"] == 1


# --- AIMD: a throttle slows the whole pace, which climbs back to its ceiling -----------------------


def test_a_throttle_halves_the_pace_once_a_second_and_empties_the_bucket() -> None:
    # Given a pace of 64/s with its burst spent
    time = FakeTime()
    bucket = TokenBucket(64, burst=8, clock=time.clock)
    for _ in range(8):
        bucket.take(sleep=time.sleep)

    # When SES throttles three calls at once (all in flight when the first answer came)
    bucket.throttled()
    bucket.throttled()
    bucket.throttled()

    # Then the pace halved once, not three times, and nothing is left to send at once
    assert (bucket.rate, bucket.throttles, bucket.tokens) == (32, 3, 0)
    # ... and the next send waits at the halved pace (1/32 s, less what the climb gave back)
    bucket.take(sleep=time.sleep)
    assert time.sleeps[0] > 1 / 64

    # When a second passes and SES throttles again, the pace halves again
    time.advance(1.0)
    bucket.throttled()
    assert bucket.rate < 32


def test_after_a_throttle_the_pace_climbs_back_to_its_ceiling_in_half_the_recovery() -> None:
    time = FakeTime()
    bucket = TokenBucket(64, burst=8, clock=time.clock)
    bucket.throttled()
    assert bucket.rate == 32

    # A tenth of the ceiling a second: half of it comes back in 5 s, and no further
    time.advance(2.5)
    bucket.take(sleep=time.sleep)
    assert bucket.rate == pytest.approx(48)
    time.advance(2.5)
    bucket.take(sleep=time.sleep)
    assert bucket.rate == 64
    time.advance(60)
    bucket.take(sleep=time.sleep)
    assert bucket.rate == 64


def test_sends_after_a_throttle_go_out_slower_then_at_the_ceiling_again() -> None:
    # Given a pace of 64/s, throttled once at the start
    time = FakeTime()
    bucket = TokenBucket(64, burst=1, clock=time.clock)
    bucket.take(sleep=time.sleep)
    bucket.throttled()

    # When 64 x 20 sends go out one by one
    marks = []
    for n in range(64 * 20):
        bucket.take(sleep=time.sleep)
        if n % 64 == 63:
            marks.append(time.now)
    per_second = [64 / (b - a) for a, b in zip([0.0, *marks], marks, strict=False)]

    # Then the first second runs at about half the pace, and the last ones at the ceiling
    assert per_second[0] < 40
    assert per_second[-1] == pytest.approx(64)
    assert all(a <= b + 1e-9 for a, b in itertools.pairwise(per_second))  # climbing, never falling


def test_the_pace_never_falls_below_a_sixteenth_of_its_ceiling() -> None:
    time = FakeTime()
    bucket = TokenBucket(64, clock=time.clock)
    for _ in range(10):
        bucket.throttled()
        time.advance(1.0)  # past the cool-down, and 6.4/s climbed back each time
    assert bucket.rate >= 4


def test_a_take_larger_than_the_bucket_waits_for_it_full_then_owes_the_rest() -> None:
    time = FakeTime()
    bucket = TokenBucket(8, burst=4, clock=time.clock)
    bucket.take(8, sleep=time.sleep)  # a full bucket is enough to start; it then owes 4
    assert time.sleeps == [] and bucket.tokens == -4
    bucket.take(sleep=time.sleep)  # 5 tokens to come back: 5/8 s
    assert time.sleeps == [0.625]


def test_a_call_carries_no_more_recipients_than_the_bucket_holds() -> None:
    time = FakeTime()
    assert TokenBucket(250, burst_seconds=0.5, clock=time.clock).most_per_call == 125
    assert TokenBucket(0.25, burst_seconds=0.5, clock=time.clock).most_per_call == 1
    assert TokenBucket(1000 / 6, burst_seconds=BURST_SECONDS).most_per_call == 100  # 6 instances at 1,000/s


# --- SesPace: a fixed rate, or auto (GetAccount, spread over the instances) -----------------------

QUOTA = {"Max24HourSend": 1_000_000.0, "MaxSendRate": 1000.0, "SentLast24Hours": 0.0}


def account(max_send_rate: float = 1000.0) -> dict[str, Any]:
    return {"SendQuota": {**QUOTA, "MaxSendRate": max_send_rate}, "SendingEnabled": True}


BULK_REQUEST = {
    "FromEmailAddress": SENDER,
    "DefaultContent": {"Template": {"TemplateContent": {"Subject": "s", "Text": "t"}, "TemplateData": "{}"}},
    "BulkEmailEntries": [{"Destination": {"ToAddresses": ["ana@example.com"]}}],
}


def test_auto_reads_the_quota_once_and_spreads_it_over_the_instances(ses: tuple[Any, Stubber]) -> None:
    client, stubber = ses
    stubber.add_response("get_account", account(1000.0), {})
    time = FakeTime()

    pace = SesPace(lambda: client, None, instances=4, clock=time.clock)
    assert (pace.auto, pace.quota) == (True, None)  # nothing read before the first send

    pace.take(sleep=time.sleep)
    for _ in range(200):  # ... and not again within the hour (the stub would refuse a second call)
        pace.take(sleep=time.sleep)

    # A quarter of 1,000/s each, 0.6 s of it at once, so a call carries at most 150
    assert (pace.quota, pace.ceiling, pace.rate, pace.capacity, pace.most_per_call) == (1000, 250, 250, 150, 150)


def test_auto_reads_the_quota_again_after_an_hour(ses: tuple[Any, Stubber]) -> None:
    client, stubber = ses
    time = FakeTime()
    stubber.add_response("get_account", account(200.0), {})
    pace = SesPace(lambda: client, None, instances=2, clock=time.clock)
    pace.take(sleep=time.sleep)
    assert pace.ceiling == 100

    # A lowered quota holds at once
    time.advance(QUOTA_MAX_AGE)
    stubber.add_response("get_account", account(100.0), {})
    pace.take(sleep=time.sleep)
    assert (pace.ceiling, pace.rate) == (50, 50)

    # A raised one is climbed to, additively
    time.advance(QUOTA_MAX_AGE)
    stubber.add_response("get_account", account(400.0), {})
    pace.take(sleep=time.sleep)
    assert pace.ceiling == 200 and pace.rate == 50
    time.advance(10.0)
    pace.take(sleep=time.sleep)
    assert pace.rate == 200


def test_auto_without_a_readable_quota_paces_at_the_sandbox_rate_and_reads_again_soon(
    ses: tuple[Any, Stubber], caplog: pytest.LogCaptureFixture
) -> None:
    # Given a role without ses:GetAccount
    client, stubber = ses
    time = FakeTime()
    stubber.add_client_error("get_account", "AccessDeniedException", http_status_code=403)
    pace = SesPace(lambda: client, None, instances=4, clock=time.clock)

    # When the first send is paced, it goes out at a quarter of SES's lowest quota (1/s), logged
    pace.take(sleep=time.sleep)
    assert (pace.quota, pace.ceiling, pace.most_per_call) == (None, 0.25, 1)
    assert any(getattr(r, "error", None) == "AccessDeniedException" for r in caplog.records)

    # Then the quota is read again a minute later, and once read, it holds
    time.advance(QUOTA_RETRY)
    stubber.add_response("get_account", account(1000.0), {})
    pace.take(sleep=time.sleep)
    assert pace.quota == 1000 and pace.ceiling == 250

    # ... even when a later read fails: the quota it had is kept
    time.advance(QUOTA_MAX_AGE)
    stubber.add_client_error("get_account", "ServiceUnavailable", http_status_code=503)
    pace.take(sleep=time.sleep)
    assert pace.ceiling == 250


def test_a_number_is_the_rate_of_each_instance_and_reads_no_quota(ses: tuple[Any, Stubber]) -> None:
    client, _ = ses
    time = FakeTime()
    pace = SesPace(lambda: client, 14.0, instances=4, clock=time.clock)
    pace.take(sleep=time.sleep)  # no get_account stubbed: a call would fail the test
    assert not pace.auto and pace.ceiling == 14 and pace.capacity == pytest.approx(8.4)


def test_the_settings_value_picks_the_pace() -> None:
    assert email_pace("auto", 4, lambda: None).auto
    fixed = email_pace(2.5, 4, lambda: None)
    assert not fixed.auto and fixed.ceiling == 2.5


@pytest.mark.parametrize(
    ("answer", "throttled"),
    [
        (("ThrottlingException", 400), True),
        (("TooManyRequestsException", 429), True),
        (("LimitExceededException", 400), True),
        (("MessageRejected", 400), False),
        (("InternalFailure", 500), False),  # a 5xx says nothing about the rate (and its call is unknown)
        ({"Status": "ACCOUNT_THROTTLED"}, True),
        ({"Status": "SUCCESS", "MessageId": "m-1"}, False),
    ],
    ids=["throttling", "too-many-requests", "limit", "rejected", "5xx", "entry-throttled", "success"],
)
def test_the_pace_hears_throttling_in_ses_answers(
    ses: tuple[Any, Stubber], answer: tuple[str, int] | dict[str, str], throttled: bool
) -> None:
    # Given an instance's pace of 64/s, listening to its client
    client, stubber = ses
    pace = SesPace(lambda: client, 64.0)
    pace.take(sleep=FakeTime().sleep)

    # When a bulk call is answered
    if isinstance(answer, dict):
        stubber.add_response("send_bulk_email", {"BulkEmailEntryResults": [answer]}, BULK_REQUEST)
        client.send_bulk_email(**BULK_REQUEST)
    else:
        stubber.add_client_error("send_bulk_email", answer[0], http_status_code=answer[1])
        with pytest.raises(ClientError):
            client.send_bulk_email(**BULK_REQUEST)

    # Then a throttling answer halved the pace, and nothing else touched it
    assert (pace.throttles, pace.rate) == ((1, 32) if throttled else (0, 64))


def test_a_throttled_quota_read_falls_back_and_slows_without_deadlock(ses: tuple[Any, Stubber]) -> None:
    # The answer to GetAccount reaches the pace while it holds its own lock (the read is in a take)
    client, stubber = ses
    time = FakeTime()
    stubber.add_client_error("get_account", "TooManyRequestsException", http_status_code=429)
    pace = SesPace(lambda: client, None, instances=1, clock=time.clock)
    pace.take(sleep=time.sleep)
    assert (pace.quota, pace.ceiling, pace.throttles) == (None, 1.0, 1)
