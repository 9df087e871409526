"""Time-to-honour rules (optout.privacy.compliance): the clocks, the US business days, and which sends an
opt-out should have stopped. Pure: no AWS."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from optout.privacy.compliance import CLOCKS, OptOut, entries_for, federal_holidays, is_business_day, summarise
from optout.suppression.model import ConsentEvent

OPTIONAL = ("marketing", "product")
T0 = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
KEY = "ab" * 32
CLOCK = {c.name: c for c in CLOCKS}


def _event(action: str, scope: str, at: datetime, source: str = "one_click", **evidence: str) -> ConsentEvent:
    return ConsentEvent(action=action, scope=scope, source=source, at=at, evidence=evidence)  # type: ignore[arg-type]


def _delivery(notice_id: str, at: datetime, decision: str = "sent") -> dict[str, Any]:
    return {"notice_id": notice_id, "decision": decision, "at": at}


TOPICS = {"n_product": "product", "n_marketing": "marketing", "n_policy": "policy", "n_security": "security"}


def _entries(events: list[ConsentEvent], deliveries: list[dict[str, Any]], channel: str = "email",
             since: datetime = T0 - timedelta(days=365)) -> list[OptOut]:  # fmt: skip
    return entries_for(KEY, channel, events, deliveries, TOPICS.get, OPTIONAL, since)  # type: ignore[arg-type]


def test_federal_holidays_are_observed_as_5_usc_6103_says() -> None:
    # 2026: 4 July is a Saturday (observed Friday 3 July); 2027: 25 December is a Saturday (observed
    # Friday 24), and 1 January 2028 a Saturday (observed Friday 31 December 2027)
    h2026 = federal_holidays(2026)
    assert {date(2026, 1, 19), date(2026, 2, 16), date(2026, 5, 25), date(2026, 7, 3), date(2026, 9, 7),
            date(2026, 10, 12), date(2026, 11, 26), date(2026, 12, 25)} <= h2026  # fmt: skip
    assert date(2026, 7, 4) not in h2026 and len(h2026) == 11
    h2027 = federal_holidays(2027)
    assert {date(2027, 12, 24), date(2027, 12, 31), date(2027, 7, 5)} <= h2027 and len(h2027) == 12
    assert not is_business_day(date(2026, 11, 26)) and not is_business_day(date(2026, 11, 28))
    assert is_business_day(date(2026, 11, 27))


def test_ten_business_days_skip_weekends_and_thanksgiving() -> None:
    # Received Friday 20 November 2026: the 10th business day after it is Monday 7 December
    received = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)
    assert CLOCK["can_spam"].deadline(received) == datetime(2026, 12, 8, tzinfo=UTC)
    assert CLOCK["fcc_tcpa"].deadline(received) == datetime(2026, 12, 8, tzinfo=UTC)
    # Gmail and Yahoo: two calendar days, to the second
    assert CLOCK["gmail_yahoo"].deadline(received) == received + timedelta(days=2)


def test_a_send_after_an_opt_out_is_listed_only_where_the_opt_out_covers_its_topic() -> None:
    # Given an opt-out of product mail, then a product, a marketing and a policy notice
    events = [_event("opt_out", "product", T0)]
    later = T0 + timedelta(hours=1)
    deliveries = [_delivery("n_product", later), _delivery("n_marketing", later), _delivery("n_policy", later)]

    (entry,) = _entries(events, deliveries)

    # Then only the product notice was one it should have stopped
    assert [(s.notice_id, s.in_force) for s in entry.sends_after] == [("n_product", True)]
    assert entry.honour_seconds == 0 and entry.received_at == entry.in_force_at == T0


def test_a_stop_covers_required_notices_too_and_a_start_lifts_it() -> None:
    # Given a STOP (a channel block), a policy text after it, then START and another policy text
    events = [
        _event("block", "channel", T0, "sms_keyword", sent_at=(T0 - timedelta(seconds=3)).isoformat()),
        _event("unblock", "channel", T0 + timedelta(days=1), "sms_keyword"),
    ]
    deliveries = [_delivery("n_policy", T0 + timedelta(hours=2)), _delivery("n_policy", T0 + timedelta(days=2))]

    (entry,) = _entries(events, deliveries, channel="sms")

    # Then the text before START is listed, the one after it is not; received is the carrier's time
    assert [s.at for s in entry.sends_after] == [T0 + timedelta(hours=2)]
    assert entry.lifted_at == T0 + timedelta(days=1)
    assert entry.honour_seconds == 3.0


def test_a_queued_stop_lists_what_went_out_while_it_was_on_its_way() -> None:
    # Given a STOP sent at T0 that was processed an hour later, and a product text in between
    events = [_event("block", "channel", T0 + timedelta(hours=1), "sms_keyword", sent_at=T0.isoformat())]
    deliveries = [
        _delivery("n_product", T0 - timedelta(minutes=1)),  # before the STOP: not its business
        _delivery("n_product", T0 + timedelta(minutes=30)),
        _delivery("n_product", T0 + timedelta(hours=2), "suppressed"),
    ]

    (entry,) = _entries(events, deliveries, channel="sms")

    assert [(s.at, s.in_force) for s in entry.sends_after] == [(T0 + timedelta(minutes=30), False)]
    assert entry.suppressed_after == 1 and entry.honour_seconds == 3600


def test_all_optional_covers_every_optional_topic_and_a_topic_opt_in_lifts_it_in_part() -> None:
    events = [_event("opt_out", "optional", T0), _event("opt_in", "product", T0 + timedelta(days=3), "preference_page")]
    deliveries = [
        _delivery("n_marketing", T0 + timedelta(days=1)),
        _delivery("n_security", T0 + timedelta(days=1)),  # required: never covered by a topic opt-out
        _delivery("n_product", T0 + timedelta(days=4)),  # opted back in by then
        _delivery("n_marketing", T0 + timedelta(days=4)),  # still out
    ]

    (entry,) = _entries(events, deliveries)

    assert [(s.topic, s.at) for s in entry.sends_after] == [
        ("marketing", T0 + timedelta(days=1)),
        ("marketing", T0 + timedelta(days=4)),
    ]
    assert entry.lifted_at == T0 + timedelta(days=3)


def test_a_bounce_block_is_not_an_opt_out_and_since_filters_by_received_time() -> None:
    events = [
        _event("block", "channel", T0, "bounce"),
        _event("opt_out", "marketing", T0 - timedelta(days=40)),
        _event("opt_out", "product", T0 + timedelta(days=1)),
    ]
    entries = _entries(events, [], since=T0 - timedelta(days=30))
    assert [(e.scope, e.source) for e in entries] == [("product", "one_click")]


def test_the_summary_gives_each_clock_its_percentiles_and_its_breaches() -> None:
    # Given 100 email opt-outs honoured at once and one complaint honoured 3 days after SES got it,
    # and an SMS opt-out with a product text sent after it was in force
    email = [e for i in range(100) for e in _entries([_event("opt_out", "product", T0 + timedelta(minutes=i))], [])]
    late = _entries(
        [_event("opt_out", "optional", T0 + timedelta(days=3), "complaint", received_at=T0.isoformat())], []
    )
    sms = _entries([_event("block", "channel", T0, "sms_keyword")], [_delivery("n_product", T0 + timedelta(days=1))],
                   channel="sms")  # fmt: skip
    entries = [e for group in (email, late, sms) for e in group]

    summary = {c["clock"]: c for c in summarise(entries)}

    gmail, can_spam, fcc = summary["gmail_yahoo"], summary["can_spam"], summary["fcc_tcpa"]
    assert gmail["opt_outs"] == can_spam["opt_outs"] == 101 and fcc["opt_outs"] == 1
    assert gmail["p50_seconds"] == 0 and gmail["p99_seconds"] == 0 and gmail["max_seconds"] == 3 * 86400
    # three days break Gmail's two, not CAN-SPAM's ten business days
    assert [b["why"] for b in gmail["breaches"]] == ["in force 3.0 days after it was received"]
    assert can_spam["breaches"] == []
    assert len(fcc["breaches"]) == 1 and "1 send(s) after it" in fcc["breaches"][0]["why"]


def test_a_send_decided_before_the_opt_out_is_on_its_way_even_if_recorded_after_it() -> None:
    # Given a product mail decided at T0 and recorded 20 s later, and a one-click opt-out at T0+3 s
    events = [_event("opt_out", "product", T0 + timedelta(seconds=3))]
    deliveries = [{**_delivery("n_product", T0 + timedelta(seconds=20)), "decided_at": T0}]

    (entry,) = _entries(events, deliveries)

    # Then it is listed as on its way (it may have gone out after the click), and no clock is broken
    assert [(s.in_force, s.decided_at) for s in entry.sends_after] == [(False, T0)]
    assert all(c["breaches"] == [] for c in summarise([entry]))
    # while judged by its record time alone it would have been a send after the opt-out
    (naive,) = _entries(events, [_delivery("n_product", T0 + timedelta(seconds=20))])
    assert [s.in_force for s in naive.sends_after] == [True]


def test_an_older_opt_out_is_listed_when_a_send_since_the_window_went_against_it() -> None:
    # Given an opt-out 40 days before the window, and a product mail inside the window
    events = [_event("opt_out", "product", T0 - timedelta(days=40))]
    deliveries = [_delivery("n_product", T0 - timedelta(days=35)), _delivery("n_product", T0 + timedelta(days=1))]

    (entry,) = _entries(events, deliveries, since=T0)

    # Then it is there for that send alone, and counts for the breach but not the clocks' times
    assert entry.before_window and [s.at for s in entry.sends_after] == [T0 + timedelta(days=1)]
    gmail = next(c for c in summarise([entry]) if c["clock"] == "gmail_yahoo")
    assert gmail["opt_outs"] == 0 and gmail["p50_seconds"] is None and len(gmail["breaches"]) == 1
    # without a send in the window it is not listed at all
    assert _entries(events, deliveries[:1], since=T0) == []


def test_a_send_stopped_only_by_a_later_bounce_is_not_pinned_on_a_lifted_opt_out() -> None:
    # Given an opt-out of product mail, lifted the next day, then a hard bounce
    events = [
        _event("opt_out", "product", T0),
        _event("opt_in", "product", T0 + timedelta(days=1), "preference_page"),
        _event("block", "channel", T0 + timedelta(days=2), "bounce"),
    ]
    deliveries = [
        _delivery("n_product", T0 + timedelta(days=3)),
        _delivery("n_product", T0 + timedelta(days=4), "suppressed"),
    ]

    (entry,) = _entries(events, deliveries)

    assert entry.sends_after == [] and entry.suppressed_after == 0 and entry.lifted_at == T0 + timedelta(days=1)


def test_an_opt_in_while_the_channel_was_bounce_blocked_still_lifts_the_opt_out() -> None:
    # Given an opt-out of product mail, a hard bounce, then an opt-in, then a product mail
    events = [
        _event("opt_out", "product", T0),
        _event("block", "channel", T0 + timedelta(days=1), "bounce"),
        _event("opt_in", "product", T0 + timedelta(days=2), "preference_page"),
    ]
    (entry,) = _entries(events, [_delivery("n_product", T0 + timedelta(days=3))])
    assert entry.lifted_at == T0 + timedelta(days=2) and entry.sends_after == []


def test_a_queued_opt_out_received_before_the_window_and_in_force_in_it_counts_in_this_window() -> None:
    # Given an email opt-out received three days before the window and in force a day into it
    since = T0
    events = [_event("opt_out", "optional", T0 + timedelta(days=1), "complaint",
                     received_at=(T0 - timedelta(days=3)).isoformat())]  # fmt: skip
    (entry,) = _entries(events, [], since=since)
    gmail = next(c for c in summarise([entry]) if c["clock"] == "gmail_yahoo")
    assert not entry.before_window and gmail["opt_outs"] == 1 and len(gmail["breaches"]) == 1


def test_an_older_opt_out_carries_only_what_happened_in_the_window() -> None:
    # Given an opt-out received 45 days and in force 40 days before the window, a pending send and a
    # suppression before the window, and one send in it
    events = [_event("opt_out", "product", T0 - timedelta(days=40), "complaint",
                     received_at=(T0 - timedelta(days=45)).isoformat())]  # fmt: skip
    deliveries = [
        _delivery("n_product", T0 - timedelta(days=42)),
        _delivery("n_product", T0 - timedelta(days=39), "suppressed"),
        _delivery("n_product", T0 + timedelta(days=1)),
    ]
    (entry,) = _entries(events, deliveries, since=T0)
    assert [s.at for s in entry.sends_after] == [T0 + timedelta(days=1)] and entry.suppressed_after == 0
    (gmail_breach,) = next(c for c in summarise([entry]) if c["clock"] == "gmail_yahoo")["breaches"]
    assert gmail_breach["why"].startswith("1 send(s) after it")
