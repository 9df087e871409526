"""optout.notices.rules: who gets a notice, on which channel, and when (DESIGN §2).

The decision matrix of ``decide`` is table-driven: each case names the topic, the recipient's
suppression states, the channels and mode, the recipient-local hour, and the exact outcome
(recipient decision plus one (channel, decision, reason) row per channel that was considered).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from optout.notices.model import ChannelName, Notice, Recipient
from optout.notices.rules import (
    ChannelOutcome,
    RecipientOutcome,
    decide,
    decide_for,
    erased_since,
    quiet_until,
    time_zones,
)
from optout.suppression.model import Block, SuppressionState
from optout.unsubscribe.token import unsubscribe_url

OPTIONAL = ("marketing", "product")
NEW_YORK = ZoneInfo("America/New_York")
DAY = (2026, 6, 15)  # summer: no DST change anywhere near
NIGHT = 3  # 03:00 recipient-local: quiet hours
NOON = 12
BLOCKED_AT = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
SOURCE_OF = {"bounce": "bounce", "complaint": "complaint", "keyword": "sms_keyword", "admin": "admin"}
BLOCK_REASONS = tuple(SOURCE_OF)

BOTH = Recipient(recipient_id="r-both", email="ana@example.com", phone="+12125550100", timezone="America/New_York")
EMAIL_ONLY = Recipient(recipient_id="r-email", email="ana@example.com", timezone="America/New_York")
PHONE_ONLY = Recipient(recipient_id="r-phone", phone="+12125550100", timezone="America/New_York")


def local_now(hour: int, minute: int = 0) -> datetime:
    """``hour:minute`` on DAY in New York, as the UTC instant the pipeline would see."""
    return datetime(*DAY, hour, minute, tzinfo=NEW_YORK).astimezone(UTC)


NEXT_OPENING = datetime(*DAY, 8, 0, tzinfo=NEW_YORK)  # 03:00 local -> 08:00 the same day


def opted_out(channel: ChannelName, *topics: str, all_optional: bool = False) -> SuppressionState:
    return SuppressionState(
        address_key=f"{channel}-key", channel=channel, topics=frozenset(topics), all_optional=all_optional
    )


def blocked(channel: ChannelName, reason: str) -> SuppressionState:
    block = Block(reason=reason, source=SOURCE_OF[reason], at=BLOCKED_AT)
    return SuppressionState(address_key=f"{channel}-key", channel=channel, blocked=block)


Row = tuple[str, str, str | None]


@dataclass(frozen=True)
class Case:
    id: str
    topic: str
    channels: tuple[ChannelName, ...]
    mode: str
    expected: str
    rows: tuple[Row, ...]
    states: dict[ChannelName, SuppressionState] = field(default_factory=dict)
    hour: int = NOON
    recipient: Recipient = BOTH
    hold: bool = True
    optional_topics: tuple[str, ...] = OPTIONAL


E: ChannelName = "email"
S: ChannelName = "sms"
SENT_E: Row = (E, "sent", None)
SENT_S: Row = (S, "sent", None)
HELD_S: Row = (S, "deferred", "quiet hours")

CASES: list[Case] = [
    # --- optional topic, nothing opted out -------------------------------------------------
    Case("marketing/none/email/all", "marketing", (E,), "all", "sent", (SENT_E,)),
    Case("marketing/none/sms/all/noon", "marketing", (S,), "all", "sent", (SENT_S,)),
    Case("marketing/none/email+sms/all", "marketing", (E, S), "all", "sent", (SENT_E, SENT_S)),
    Case("marketing/none/email+sms/first-stops-at-email", "marketing", (E, S), "first_available", "sent", (SENT_E,)),
    Case("product/none/sms+email/first-stops-at-sms", "product", (S, E), "first_available", "sent", (SENT_S,)),
    Case("product/none/email/all/night-email-not-held", "product", (E,), "all", "sent", (SENT_E,), hour=NIGHT),
    # --- optional topic, topic opt-outs ----------------------------------------------------
    Case(
        "marketing/same-topic-email/email/all",
        "marketing", (E,), "all", "suppressed",
        ((E, "suppressed", "opted out of marketing"),),
        states={E: opted_out(E, "marketing")},
    ),
    Case(
        "marketing/same-topic-email/email+sms/all",
        "marketing", (E, S), "all", "sent",
        ((E, "suppressed", "opted out of marketing"), SENT_S),
        states={E: opted_out(E, "marketing")},
    ),
    Case(
        "marketing/same-topic-email/email+sms/first-falls-back",
        "marketing", (E, S), "first_available", "sent",
        ((E, "suppressed", "opted out of marketing"), SENT_S),
        states={E: opted_out(E, "marketing")},
    ),
    Case(
        "marketing/same-topic-both/email+sms/first",
        "marketing", (E, S), "first_available", "suppressed",
        ((E, "suppressed", "opted out of marketing"), (S, "suppressed", "opted out of marketing")),
        states={E: opted_out(E, "marketing"), S: opted_out(S, "marketing")},
    ),
    Case(
        "marketing/other-topic-email/email/all",
        "marketing", (E,), "all", "sent", (SENT_E,),
        states={E: opted_out(E, "product")},
    ),
    Case(
        "product/other-topic-both/email+sms/all",
        "product", (E, S), "all", "sent", (SENT_E, SENT_S),
        states={E: opted_out(E, "marketing"), S: opted_out(S, "marketing")},
    ),
    Case(
        "marketing/all-optional-email/email/all",
        "marketing", (E,), "all", "suppressed",
        ((E, "suppressed", "opted out of all optional"),),
        states={E: opted_out(E, all_optional=True)},
    ),
    Case(
        "product/all-optional-both/email+sms/all",
        "product", (E, S), "all", "suppressed",
        ((E, "suppressed", "opted out of all optional"), (S, "suppressed", "opted out of all optional")),
        states={E: opted_out(E, all_optional=True), S: opted_out(S, all_optional=True)},
    ),
    Case(
        "product/all-optional-sms/email+sms/all",
        "product", (E, S), "all", "sent",
        (SENT_E, (S, "suppressed", "opted out of all optional")),
        states={S: opted_out(S, all_optional=True)},
    ),
    # --- optional topic, nothing usable ------------------------------------------------------
    Case(
        "marketing/no-phone/sms/all",
        "marketing", (S,), "all", "suppressed", (),  # a missing address is not a considered channel
        recipient=EMAIL_ONLY,
    ),
    Case(
        "marketing/same-topic-email/no-phone/email+sms/all",
        "marketing", (E, S), "all", "suppressed",
        ((E, "suppressed", "opted out of marketing"),),
        states={E: opted_out(E, "marketing")},
        recipient=EMAIL_ONLY,
    ),
    # --- required topic ignores topic opt-outs and all_optional --------------------------
    Case(
        "policy/same-topic-email/email/all",
        "policy", (E,), "all", "sent", (SENT_E,),
        states={E: opted_out(E, "policy")},
    ),
    Case(
        "security/all-optional-both/email+sms/all",
        "security", (E, S), "all", "sent", (SENT_E, SENT_S),
        states={E: opted_out(E, all_optional=True), S: opted_out(S, all_optional=True)},
    ),
    Case(
        "policy/every-topic-and-all-optional/email/all",
        "policy", (E,), "all", "sent", (SENT_E,),
        states={E: opted_out(E, "marketing", "product", "policy", "security", all_optional=True)},
    ),
    Case("security/none/email+sms/first-stops-at-email", "security", (E, S), "first_available", "sent", (SENT_E,)),
    # --- required topic honours channel blocks ------------------------------------------------
    Case(
        "security/bounce-email/email+sms/all",
        "security", (E, S), "all", "sent",
        ((E, "suppressed", "blocked: bounce"), SENT_S),
        states={E: blocked(E, "bounce")},
    ),
    Case(
        "security/keyword-sms/email+sms/all",
        "security", (E, S), "all", "sent",
        (SENT_E, (S, "suppressed", "blocked: keyword")),
        states={S: blocked(S, "keyword")},
    ),
    Case(
        "policy/both-blocked/email+sms/all/unreachable",
        "policy", (E, S), "all", "unreachable",
        ((E, "unreachable", "blocked: complaint"), (S, "unreachable", "blocked: keyword")),
        states={E: blocked(E, "complaint"), S: blocked(S, "keyword")},
    ),
    Case(
        "policy/both-blocked/sms+email/first/unreachable",
        "policy", (S, E), "first_available", "unreachable",
        ((S, "unreachable", "blocked: admin"), (E, "unreachable", "blocked: bounce")),
        states={E: blocked(E, "bounce"), S: blocked(S, "admin")},
    ),
    Case(
        "policy/bounce-email/no-phone/email+sms/first/unreachable",
        "policy", (E, S), "first_available", "unreachable",
        ((E, "unreachable", "blocked: bounce"), (S, "unreachable", "no address")),
        states={E: blocked(E, "bounce")},
        recipient=EMAIL_ONLY,
    ),
    Case(
        "security/no-phone/sms/all/unreachable",
        "security", (S,), "all", "unreachable",
        ((S, "unreachable", "no address"),),
        recipient=EMAIL_ONLY,
    ),
    Case(
        "security/no-address-at-all/email+sms/all/unreachable",
        "security", (E, S), "all", "unreachable",
        ((E, "unreachable", "no address"), (S, "unreachable", "no address")),
        recipient=Recipient(recipient_id="r-none"),
    ),
    Case(
        "security/no-email/email+sms/first-skips-missing-address",
        "security", (E, S), "first_available", "sent", (SENT_S,),
        recipient=PHONE_ONLY,
    ),
    # --- quiet hours -----------------------------------------------------------------------
    Case("marketing/none/sms/all/night-deferred", "marketing", (S,), "all", "deferred", (HELD_S,), hour=NIGHT),
    Case(
        "marketing/none/email+sms/all/night-email-sent-sms-deferred",
        "marketing", (E, S), "all", "sent", (SENT_E, HELD_S), hour=NIGHT,
    ),
    Case(
        "product/none/sms+email/first/night-deferral-stops-search",
        "product", (S, E), "first_available", "deferred", (HELD_S,), hour=NIGHT,
    ),
    Case(
        "marketing/none/email+sms/first/night-email-first",
        "marketing", (E, S), "first_available", "sent", (SENT_E,), hour=NIGHT,
    ),
    Case(
        "marketing/same-topic-email/email+sms/first/night-falls-back-to-held-sms",
        "marketing", (E, S), "first_available", "deferred",
        ((E, "suppressed", "opted out of marketing"), HELD_S),
        states={E: opted_out(E, "marketing")},
        hour=NIGHT,
    ),
    Case(
        "marketing/all-optional-sms/sms/all/night-opt-out-beats-deferral",
        "marketing", (S,), "all", "suppressed",
        ((S, "suppressed", "opted out of all optional"),),
        states={S: opted_out(S, all_optional=True)},
        hour=NIGHT,
    ),
    Case("security/none/sms/all/night-required-not-held", "security", (S,), "all", "sent", (SENT_S,), hour=NIGHT),
    Case(
        "policy/none/email+sms/all/night-required-not-held",
        "policy", (E, S), "all", "sent", (SENT_E, SENT_S), hour=NIGHT,
    ),
    Case(
        "security/bounce-email/email+sms/first/night-required-sms-fallback",
        "security", (E, S), "first_available", "sent",
        ((E, "suppressed", "blocked: bounce"), SENT_S),
        states={E: blocked(E, "bounce")},
        hour=NIGHT,
    ),
    Case(
        "breach-alert/hold-off/sms/night-sent",
        "security", (S,), "all", "sent", (SENT_S,), hour=NIGHT, hold=False,
    ),
    Case(
        "breach-alert/hold-off/security-configured-optional/night-sent",
        "security", (S,), "all", "sent", (SENT_S,), hour=NIGHT, hold=False,
        optional_topics=("marketing", "product", "security"),
    ),
    Case(
        "security-configured-optional/hold-on/night-deferred",
        "security", (S,), "all", "deferred", (HELD_S,), hour=NIGHT,
        optional_topics=("marketing", "product", "security"),
    ),
]  # fmt: skip

# Every block reason on either channel: an optional topic is suppressed on that channel; a
# required topic falls back to the other channel in first_available.
_PAIRS: tuple[tuple[ChannelName, ChannelName], ...] = ((E, S), (S, E))
for _reason in BLOCK_REASONS:
    for _channel, _other in _PAIRS:
        CASES.append(
            Case(
                f"marketing/{_reason}-{_channel}/{_channel}/all",
                "marketing", (_channel,), "all", "suppressed",
                ((_channel, "suppressed", f"blocked: {_reason}"),),
                states={_channel: blocked(_channel, _reason)},
            )
        )  # fmt: skip
        CASES.append(
            Case(
                f"policy/{_reason}-{_channel}/{_channel}+{_other}/first-falls-back",
                "policy", (_channel, _other), "first_available", "sent",
                ((_channel, "suppressed", f"blocked: {_reason}"), (_other, "sent", None)),
                states={_channel: blocked(_channel, _reason)},
            )
        )  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_decide_matrix(case: Case) -> None:
    # Given a recipient, their per-channel suppression states and the local hour
    now = local_now(case.hour)

    # When the rules decide
    outcome = decide(
        case.recipient,
        case.topic,
        case.optional_topics,
        list(case.channels),
        case.mode,  # type: ignore[arg-type]
        case.states,
        now,
        hold_optional_sms=case.hold,
    )

    # Then the recipient-level decision and every channel row are exactly as expected
    assert outcome.decision == case.expected
    assert tuple((c.channel, c.decision, c.reason) for c in outcome.channels) == case.rows
    for row in outcome.channels:
        if row.decision == "deferred":
            assert row.defer_until == NEXT_OPENING
            assert row.defer_until is not None and row.defer_until.utcoffset() == timedelta(hours=-4)
        else:
            assert row.defer_until is None
    assert outcome.to_send == tuple(c for c in outcome.channels if c.decision == "sent")


def test_matrix_is_large_enough_and_ids_unique() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


def test_states_for_other_channels_are_ignored() -> None:
    # Given an SMS STOP on record but a notice sent by email only
    outcome = decide(BOTH, "marketing", OPTIONAL, ["email"], "all", {"sms": blocked("sms", "keyword")}, local_now(12))
    # Then the SMS block does not touch the email channel
    assert outcome == RecipientOutcome("sent", (ChannelOutcome("email", "sent"),))


def test_state_none_means_nothing_on_record() -> None:
    outcome = decide(BOTH, "marketing", OPTIONAL, ["email", "sms"], "all", {"email": None, "sms": None}, local_now(12))
    assert outcome.decision == "sent"
    assert [c.channel for c in outcome.to_send] == ["email", "sms"]


# --- quiet-hour boundaries through decide ----------------------------------------------------


@pytest.mark.parametrize(
    ("hour", "minute", "until"),
    [
        pytest.param(7, 59, datetime(*DAY, 8, 0, tzinfo=NEW_YORK), id="07:59-held-until-08:00-today"),
        pytest.param(8, 0, None, id="08:00-open"),
        pytest.param(20, 59, None, id="20:59-open"),
        pytest.param(21, 0, datetime(2026, 6, 16, 8, 0, tzinfo=NEW_YORK), id="21:00-held-until-08:00-tomorrow"),
        pytest.param(23, 30, datetime(2026, 6, 16, 8, 0, tzinfo=NEW_YORK), id="23:30-held-until-08:00-tomorrow"),
        pytest.param(0, 0, datetime(*DAY, 8, 0, tzinfo=NEW_YORK), id="midnight-held-until-08:00-today"),
    ],
)
def test_optional_sms_quiet_hour_boundaries(hour: int, minute: int, until: datetime | None) -> None:
    outcome = decide(PHONE_ONLY, "marketing", OPTIONAL, ["sms"], "all", {}, local_now(hour, minute))
    if until is None:
        assert outcome == RecipientOutcome("sent", (ChannelOutcome("sms", "sent"),))
    else:
        assert outcome == RecipientOutcome("deferred", (ChannelOutcome("sms", "deferred", "quiet hours", until),))


def test_zone_from_phone_when_no_timezone_given() -> None:
    # Given a San Francisco number and no timezone column, at 10:00 UTC (03:00 in California)
    recipient = Recipient(recipient_id="r-sf", phone="+14155550100")
    now = datetime(*DAY, 10, 0, tzinfo=UTC)
    # When an optional SMS is decided
    outcome = decide(recipient, "product", OPTIONAL, ["sms"], "all", {}, now)
    # Then it waits for 08:00 Pacific (15:00 UTC), not 08:00 in the New York default
    assert outcome.decision == "deferred"
    assert outcome.channels[0].defer_until == datetime(*DAY, 15, 0, tzinfo=UTC)


# --- time_zones ----------------------------------------------------------------------------


def test_explicit_timezone_wins_over_phone() -> None:
    recipient = Recipient(recipient_id="r", phone="+14155550100", timezone="Europe/Berlin")
    assert time_zones(recipient, "America/New_York") == ["Europe/Berlin"]


@pytest.mark.parametrize(
    ("phone", "expected_zone"),
    [
        pytest.param("+14155550100", "America/Los_Angeles", id="us-415-pacific"),
        pytest.param("+12125550100", "America/New_York", id="us-212-eastern"),
        pytest.param("+447911123456", "Europe/London", id="uk-mobile"),
        pytest.param("+33612345678", "Europe/Paris", id="fr-mobile"),
    ],
)
def test_zones_from_phone_number(phone: str, expected_zone: str) -> None:
    zones = time_zones(Recipient(recipient_id="r", phone=phone), "Asia/Tokyo")
    assert expected_zone in zones
    assert "Asia/Tokyo" not in zones
    for zone in zones:
        ZoneInfo(zone)  # every zone returned is a real IANA zone


def test_us_415_number_gives_only_pacific_american_zones() -> None:
    zones = time_zones(Recipient(recipient_id="r", phone="+14155550100"), "America/New_York")
    assert zones == ["America/Los_Angeles"]


def test_no_phone_no_timezone_gives_default() -> None:
    assert time_zones(Recipient(recipient_id="r"), "America/Chicago") == ["America/Chicago"]


def test_unknown_phone_zone_falls_back_to_default() -> None:
    # +800 1234 5678 is a valid international freephone number with no geographic zone
    assert time_zones(Recipient(recipient_id="r", phone="+80012345678"), "America/New_York") == ["America/New_York"]


def test_optional_sms_to_non_geographic_number_uses_default_zone() -> None:
    recipient = Recipient(recipient_id="r", phone="+80012345678")
    outcome = decide(recipient, "marketing", OPTIONAL, ["sms"], "all", {}, local_now(NIGHT))
    assert outcome.decision == "deferred"
    assert outcome.channels[0].defer_until == NEXT_OPENING


# --- quiet_until ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zones", "now", "expected"),
    [
        pytest.param(["America/New_York"], datetime(*DAY, 16, 0, tzinfo=UTC), None, id="one-zone-noon-open"),
        pytest.param(
            ["America/New_York"],
            datetime(*DAY, 7, 0, tzinfo=UTC),  # 03:00 EDT
            datetime(*DAY, 12, 0, tzinfo=UTC),  # 08:00 EDT
            id="one-zone-0300-same-day",
        ),
        pytest.param(
            ["America/New_York"],
            datetime(2026, 6, 16, 1, 30, tzinfo=UTC),  # 21:30 EDT on the 15th
            datetime(2026, 6, 16, 12, 0, tzinfo=UTC),  # 08:00 EDT on the 16th
            id="one-zone-2130-next-day",
        ),
        pytest.param(
            ["America/New_York", "America/Los_Angeles"],
            datetime(*DAY, 16, 0, tzinfo=UTC),  # 12:00 EDT, 09:00 PDT
            None,
            id="two-zones-both-open",
        ),
        pytest.param(
            ["America/New_York", "America/Los_Angeles"],
            datetime(*DAY, 12, 0, tzinfo=UTC),  # 08:00 EDT open, 05:00 PDT quiet
            datetime(*DAY, 15, 0, tzinfo=UTC),  # 08:00 PDT
            id="two-zones-west-still-quiet",
        ),
        pytest.param(
            ["America/Los_Angeles", "America/New_York"],
            datetime(*DAY, 9, 0, tzinfo=UTC),  # 05:00 EDT, 02:00 PDT: both quiet
            datetime(*DAY, 15, 0, tzinfo=UTC),  # the later opening, 08:00 PDT, wins
            id="two-zones-both-quiet-latest-wins",
        ),
        pytest.param(
            ["America/New_York", "America/Los_Angeles"],
            datetime(*DAY, 2, 0, tzinfo=UTC),  # 22:00 EDT quiet, 19:00 PDT open
            datetime(*DAY, 15, 0, tzinfo=UTC),  # 08:00 PDT: the first moment open in both (11:00 EDT)
            id="two-zones-east-evening",
        ),
        pytest.param(
            ["America/New_York", "America/Chicago", "Pacific/Honolulu"],
            datetime(*DAY, 11, 0, tzinfo=UTC),  # 07:00 EDT, 06:00 CDT, 01:00 HST
            datetime(*DAY, 18, 0, tzinfo=UTC),  # 08:00 HST
            id="three-zones-honolulu-latest",
        ),
        pytest.param(
            ["America/New_York"],
            datetime(2026, 3, 8, 6, 0, tzinfo=UTC),  # 01:00 EST on the spring-forward day
            datetime(2026, 3, 8, 12, 0, tzinfo=UTC),  # 08:00 EDT, already UTC-4
            id="dst-spring-forward",
        ),
    ],
)
def test_quiet_until(zones: list[str], now: datetime, expected: datetime | None) -> None:
    assert quiet_until(zones, now) == expected


def test_quiet_until_is_in_the_zone_that_opens_last() -> None:
    until = quiet_until(["America/New_York", "America/Los_Angeles"], datetime(*DAY, 9, 0, tzinfo=UTC))
    assert until is not None
    assert until.tzinfo == ZoneInfo("America/Los_Angeles")
    assert (until.hour, until.minute) == (8, 0)


def _open_everywhere(zones: list[str], moment: datetime) -> bool:
    return all(8 <= moment.astimezone(ZoneInfo(z)).hour < 21 for z in zones)


def test_quiet_until_result_is_open_in_every_zone_far_apart() -> None:
    # Given Moscow (UTC+3) at 17:00 (open) and Kamchatka (UTC+12) at 02:00 (quiet)
    zones = ["Europe/Moscow", "Asia/Kamchatka"]
    now = datetime(*DAY, 14, 0, tzinfo=UTC)
    # When the rules look for the next moment to text
    until = quiet_until(zones, now)
    # Then at that moment it is daytime in both zones (earliest such: 08:00 Moscow tomorrow)
    assert until is not None and _open_everywhere(zones, until)
    assert until == datetime(2026, 6, 16, 5, 0, tzinfo=UTC)


def _notice_of(kind: str, topic: str) -> Notice:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    return Notice(
        id="ntc_1", kind=kind, topic=topic, channels=["sms"], mode="all", variables={},  # type: ignore[arg-type]
        manifest="s3://bucket/m.csv", created_by="admin", created_at=at, updated_at=at,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "topic", "decision"), [("product", "product", "deferred"), ("breach_alert", "security", "sent")]
)
def test_decide_for_applies_the_notices_own_rules_as_dry_runs_and_sends_both_use_them(
    kind: str, topic: str, decision: str
) -> None:
    # Given a text at 03:00 in the recipient's zone
    recipient = Recipient(recipient_id="u1", phone="+14155550100", timezone="America/Los_Angeles")
    night = datetime(2026, 12, 1, 11, 0, tzinfo=UTC)  # 03:00 in Los Angeles
    # When the one decision of dispatch and send is made for a product notice and a breach alert
    outcome = decide_for(_notice_of(kind, topic), recipient, ["sms"], {}, night, ["marketing", "product"], "UTC")
    # Then the product text waits for the morning and the breach alert is never held
    assert outcome.decision == decision


def test_unsubscribe_url_carries_the_token_on_the_one_route_that_reads_it() -> None:
    assert (
        unsubscribe_url("https://links.example.com/", "v1.abc_-.x")
        == "https://links.example.com/unsubscribe?token=v1.abc_-.x"
    )
    assert (
        unsubscribe_url("https://links.example.com", "a/b+c") == "https://links.example.com/unsubscribe?token=a%2Fb%2Bc"
    )


def test_decide_for_blocks_an_address_erased_since_the_notice_for_a_dry_run_as_for_a_send() -> None:
    # Given a breach alert created on 1 December, and one subject's email erased after it, one before
    notice = _notice_of("breach_alert", "security").model_copy(update={"channels": ["email"]})
    recipient = Recipient(recipient_id="u1", email="ada@example.com")
    after = SuppressionState(address_key="k", channel="email", erased_at=datetime(2026, 12, 2, tzinfo=UTC))
    before = SuppressionState(address_key="k", channel="email", erased_at=datetime(2026, 11, 30, tzinfo=UTC))
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    # When the one decision is made
    erased = decide_for(notice, recipient, ["email"], {"email": after}, now, ["product"], "UTC")
    fresh = decide_for(notice, recipient, ["email"], {"email": before}, now, ["product"], "UTC")
    # Then the address erased since is not used (the required notice has no channel left), and the
    # one erased before the notice came with its new manifest and is
    assert erased.decision == "unreachable" and erased.channels[0].reason == "blocked: subject erased"
    assert erased_since(notice, {"email": after}) == {"email"}
    assert fresh.decision == "sent" and erased_since(notice, {"email": before}) == frozenset()
