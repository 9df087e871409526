"""Time-to-honour: when each opt-out was received and in force, every later send it should have
stopped, and the clocks it ran against (Gmail/Yahoo 2 days, CAN-SPAM and the FCC 10 business days).

Pure: no AWS. The admin API pages opt-outs with ``entries_for`` (one address's consent events and
deliveries in, its opt-outs out); the CLI adds the pages up with ``summarise``.

- *Received*: when the person's request reached us (an SMS: the time the carrier says it was sent;
  a complaint: SES's feedback time; a link or page: the request itself). *In force*: when its
  consent event was written, which is before any response was sent.
- A *send after* an opt-out is a delivery decided ``sent`` (or ``unknown``: it may have gone out)
  on the same address and channel, after the request was received, to a topic the opt-out covers,
  before a later opt-in lifted it. One sent once the opt-out was in force breaks the promise
  outright; one sent while the request was still on its way (a queued STOP) is listed too, and
  breaks a clock only if it went out after that clock's deadline.
- A hard bounce blocks the channel too, but it is the provider's signal, not a person's choice: it
  is not an opt-out here (the delivery evidence shows it).
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Any

from pydantic import BaseModel

from optout.core.identity import Channel
from optout.suppression.model import (
    CHANNEL_SCOPE,
    OPTIONAL_SCOPE,
    ConsentChange,
    ConsentEvent,
    SuppressionState,
    apply_changes,
    empty_state,
)

OPT_OUT_ACTIONS = frozenset({"opt_out", "block"})
SENT_DECISIONS = frozenset({"sent", "unknown"})  # unknown: the provider may have delivered it
SUBJECT_CHARS = 16  # an opt-out is named by the start of its address key: pseudonymous, never the address


@dataclass(frozen=True)
class Clock:
    name: str
    channel: Channel
    days: int
    business_days: bool
    rule: str

    def deadline(self, received: datetime) -> datetime:
        """The last moment the opt-out may take effect: ``days`` after ``received``, or the end of
        the ``days``-th US business day after the day it was received (UTC)."""
        if not self.business_days:
            return received + timedelta(days=self.days)
        day, counted = received.astimezone(UTC).date(), 0
        while counted < self.days:
            day += timedelta(days=1)
            counted += is_business_day(day)
        return datetime.combine(day + timedelta(days=1), time(0), UTC)


CLOCKS: tuple[Clock, ...] = (
    Clock("gmail_yahoo", "email", 2, False, "Gmail and Yahoo bulk-sender requirements: honoured within 2 days"),
    Clock("can_spam", "email", 10, True, "CAN-SPAM, 15 U.S.C. 7704(a)(4): within 10 business days"),
    Clock("fcc_tcpa", "sms", 10, True, "FCC 24-24, 47 CFR 64.1200(a)(10): within 10 business days"),
)


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """The n-th ``weekday`` (0 Monday) of a month; n = -1 the last."""
    days = [d for d in calendar.Calendar().itermonthdates(year, month) if d.month == month and d.weekday() == weekday]
    return days[n if n < 0 else n - 1]


def _observed(day: date) -> date:
    # 5 U.S.C. 6103(b): a holiday on a Saturday is observed the Friday before, on a Sunday the Monday after
    return day - timedelta(days=1) if day.weekday() == 5 else day + timedelta(days=1) if day.weekday() == 6 else day


@cache
def federal_holidays(year: int) -> frozenset[date]:
    """The US federal holidays (5 U.S.C. 6103(a)) as observed in ``year``."""
    fixed = [date(year, 1, 1), date(year, 6, 19), date(year, 7, 4), date(year, 11, 11), date(year, 12, 25)]
    moving = [
        _nth_weekday(year, 1, 0, 3),  # Martin Luther King Jr. Day
        _nth_weekday(year, 2, 0, 3),  # Washington's Birthday
        _nth_weekday(year, 5, 0, -1),  # Memorial Day
        _nth_weekday(year, 9, 0, 1),  # Labor Day
        _nth_weekday(year, 10, 0, 2),  # Columbus Day
        _nth_weekday(year, 11, 3, 4),  # Thanksgiving Day
    ]
    observed = {_observed(d) for d in fixed} | set(moving)
    if _observed(date(year + 1, 1, 1)).year == year:  # next New Year's Day, observed on 31 December
        observed.add(date(year, 12, 31))
    return frozenset(observed)


def is_business_day(day: date) -> bool:
    return day.weekday() < 5 and day not in federal_holidays(day.year)


class SendAfter(BaseModel):
    notice_id: str
    topic: str
    decision: str
    at: datetime  # when the delivery was recorded
    decided_at: datetime  # when the sender read the suppression state and decided (``at`` if not recorded)
    # True: decided after the opt-out was in force (never allowed). False: it was on its way.
    in_force: bool


class OptOut(BaseModel):
    subject: str  # the first SUBJECT_CHARS of the address key
    channel: Channel
    action: str
    scope: str
    source: str
    received_at: datetime
    in_force_at: datetime
    honour_seconds: float
    lifted_at: datetime | None = None  # a later opt-in or unblock ended it
    erased: bool = False  # the subject was erased: deliveries to them since then cannot be joined
    sends_after: list[SendAfter] = []
    suppressed_after: int = 0  # sends it stopped: the dispatcher or sender decided "suppressed"
    # in force before the report's start: listed only for a send since then that went against it
    before_window: bool = False


def received_at(event: ConsentEvent) -> datetime:
    """When the request reached us: the evidence's ``received_at`` or ``sent_at`` if earlier than
    the event itself (a queued STOP, a complaint), else the event's own time."""
    for name in ("received_at", "sent_at"):
        raw = event.evidence.get(name)
        if not raw:
            continue
        try:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            continue
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        return min(moment, event.at)
    return event.at


def is_opt_out(event: ConsentEvent) -> bool:
    return event.action in OPT_OUT_ACTIONS and event.source != "bounce"


def covers(scope: str, topic: str, optional_topics: Iterable[str]) -> bool:
    """Whether an opt-out of ``scope`` stops a notice on ``topic``."""
    return scope in (CHANNEL_SCOPE, topic) or (scope == OPTIONAL_SCOPE and topic in set(optional_topics))


@dataclass(frozen=True)
class _Replay:
    """The address's state after each of its events, in order."""

    times: list[datetime]
    states: list[SuppressionState]

    def at(self, moment: datetime, initial: SuppressionState) -> SuppressionState:
        state = initial
        for when, after in zip(self.times, self.states, strict=True):
            if when > moment:
                break
            state = after
        return state


def _replay(events: Sequence[ConsentEvent], address_key: str, channel: Channel, optional: Sequence[str]) -> _Replay:
    state, times, states = empty_state(address_key, channel), [], []
    for event in events:
        if event.action in ("opt_out", "opt_in", "block", "unblock"):
            state, _ = apply_changes(
                state, [ConsentChange(event.action, event.scope)], optional, event.source, event.at
            )
        times.append(event.at)
        states.append(state)
    return _Replay(times, states)


def _stops(state: SuppressionState, topic: str, optional: Sequence[str]) -> bool:
    return state.blocked is not None or state.opted_out(topic, optional)


def entries_for(
    address_key: str,
    channel: Channel,
    events: Sequence[ConsentEvent],
    deliveries: Iterable[Mapping[str, Any]],
    topic_of: Callable[[str], str | None],
    optional_topics: Sequence[str],
    since: datetime,
    erased: bool = False,
) -> list[OptOut]:
    """The opt-outs of one address in force at or after ``since`` (a queued one received before it
    too), each with the sends after it, and any older opt-out that a send since ``since`` went
    against (``before_window``: only what happened since then is counted for it).

    ``events``: every consent event of the address; ``deliveries``: its delivery records (notice
    id, decision, ``at`` when recorded and ``decided_at`` when the sender read the suppression
    state and decided to send, if recorded); ``topic_of``: a notice's topic (None: skipped).

    A send is judged at its decision: one decided before an opt-out was in force but recorded after
    it (the mail was on its way when the person clicked) is listed as on its way, never as a breach.
    """
    ordered = sorted(events, key=lambda e: e.at)
    replay = _replay(ordered, address_key, channel, optional_topics)
    initial = empty_state(address_key, channel)
    opt_outs = [e for e in ordered if is_opt_out(e)]
    entries = {
        id(e): OptOut(
            subject=address_key[:SUBJECT_CHARS],
            channel=channel,
            action=e.action,
            scope=e.scope,
            source=e.source,
            received_at=received_at(e),
            in_force_at=e.at,
            honour_seconds=(e.at - received_at(e)).total_seconds(),
            lifted_at=_lifted(e, ordered, replay, initial, optional_topics),
            erased=erased,
            before_window=e.at < since,
        )
        for e in opt_outs
    }
    lifts: dict[tuple[int, str], datetime | None] = {}

    def holds(e: ConsentEvent, moment: datetime, topic: str) -> bool:
        if not (e.at <= moment and covers(e.scope, topic, optional_topics)):
            return False
        if (id(e), topic) not in lifts:
            lifts[(id(e), topic)] = _lifted(e, ordered, replay, initial, optional_topics, topic)
        lifted = lifts[(id(e), topic)]
        return lifted is None or moment < lifted

    for delivery in sorted(deliveries, key=decided):
        topic = topic_of(str(delivery["notice_id"]))
        if topic is None:
            continue
        moment = decided(delivery)
        if _stops(replay.at(moment, initial), topic, optional_topics):
            # the latest opt-out that held at the time and covers the topic answers for it
            owner = next((e for e in reversed(opt_outs) if holds(e, moment, topic)), None)
            if owner is None or (entries[id(owner)].before_window and moment < since):
                continue  # stopped by a bounce block (not an opt-out), or reported with an earlier window
            entry = entries[id(owner)]
            if delivery["decision"] in SENT_DECISIONS:
                entry.sends_after.append(_send(delivery, topic, in_force=True))
            elif delivery["decision"] == "suppressed":
                entry.suppressed_after += 1
        elif delivery["decision"] in SENT_DECISIONS:
            # on its way: decided while an opt-out covering it was received but not yet in force, or
            # before it and recorded (so perhaps sent) after it was in force
            pending = next(
                (
                    e
                    for e in opt_outs
                    if covers(e.scope, topic, optional_topics)
                    and not entries[id(e)].before_window
                    and (received_at(e) <= moment < e.at or moment < e.at <= delivery["at"])
                ),
                None,
            )
            if pending is not None:
                entries[id(pending)].sends_after.append(_send(delivery, topic, in_force=False))
    return [entries[id(e)] for e in opt_outs if e.at >= since or any(s.in_force for s in entries[id(e)].sends_after)]


def decided(delivery: Mapping[str, Any]) -> datetime:
    moment: datetime = delivery.get("decided_at") or delivery["at"]
    return moment


def _send(delivery: Mapping[str, Any], topic: str, in_force: bool) -> SendAfter:
    return SendAfter(
        notice_id=str(delivery["notice_id"]),
        topic=topic,
        decision=str(delivery["decision"]),
        at=delivery["at"],
        decided_at=decided(delivery),
        in_force=in_force,
    )


def _lifted(
    event: ConsentEvent,
    ordered: Sequence[ConsentEvent],
    replay: _Replay,
    initial: SuppressionState,
    optional: Sequence[str],
    topic: str | None = None,
) -> datetime | None:
    """When a later change first let through a topic this opt-out stopped (``topic``: that one;
    else, for ``optional``, any of them)."""
    if event.scope == CHANNEL_SCOPE:
        topics: Sequence[str] = ("",)  # any topic: only the block matters
    elif topic is not None:
        topics = (topic,)
    elif event.scope == OPTIONAL_SCOPE:
        topics = optional
    else:
        topics = (event.scope,)
    for later in ordered:
        if later.at <= event.at or later.action not in ("opt_in", "unblock"):
            continue
        state = replay.at(later.at, initial)
        if event.scope == CHANNEL_SCOPE:
            if state.blocked is None:
                return later.at
        elif any(not state.opted_out(t, optional) for t in topics):  # a block meanwhile is not this opt-out
            return later.at
    return None


def _percentile(sorted_values: Sequence[float], share: float) -> float:
    """Nearest rank: the smallest value with at least ``share`` of the values at or below it."""
    return sorted_values[max(0, math.ceil(share * len(sorted_values)) - 1)]


def summarise(entries: Sequence[OptOut]) -> list[dict[str, Any]]:
    """Each clock's opt-outs: time to honour as p50, p99 and max (seconds), and every breach.

    A breach: in force after the clock's deadline, or a send it covered decided after the deadline
    (or at any time once it was in force). An opt-out received before the window counts for its
    breaches only: its time to honour was reported with its own window.
    """
    summary = []
    for clock in CLOCKS:
        mine = [e for e in entries if e.channel == clock.channel]
        honour = sorted(e.honour_seconds for e in mine if not e.before_window)
        breaches = []
        for entry in mine:
            deadline = clock.deadline(entry.received_at)
            reasons = []
            if entry.in_force_at > deadline and not entry.before_window:
                reasons.append(f"in force {duration(entry.honour_seconds)} after it was received")
            late = sorted(
                (s for s in entry.sends_after if s.in_force or s.decided_at > deadline), key=lambda s: s.decided_at
            )
            if late:
                first = late[0]
                reasons.append(
                    f"{len(late)} send(s) after it, first {first.decided_at.isoformat()} ({first.notice_id})"
                )
            if reasons:
                breaches.append({"subject": entry.subject, "received_at": entry.received_at.isoformat(),
                                 "deadline": deadline.isoformat(), "why": "; ".join(reasons)})  # fmt: skip
        summary.append(
            {
                "clock": clock.name,
                "channel": clock.channel,
                "rule": clock.rule,
                "opt_outs": sum(not e.before_window for e in mine),
                "p50_seconds": _percentile(honour, 0.5) if honour else None,
                "p99_seconds": _percentile(honour, 0.99) if honour else None,
                "max_seconds": honour[-1] if honour else None,
                "breaches": breaches,
            }
        )
    return summary


def duration(seconds: float | None) -> str:
    """A time to honour as people read it: seconds, minutes, hours or days."""
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
