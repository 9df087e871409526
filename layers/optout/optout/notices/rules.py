"""Who gets what, on which channel: the decision rules of DESIGN §2, as one pure function.

- Required topics (policy, security) ignore topic opt-outs but honour channel blocks (bounce,
  complaint-driven block, SMS STOP, admin) and fall back to the next channel; a recipient with no
  usable channel is ``unreachable`` (they need substitute notice), never silently dropped.
- Optional topics honour every opt-out; with no usable channel the recipient is ``suppressed``.
- Optional SMS outside 08:00-21:00 recipient-local time is ``deferred`` until 08:00, never
  dropped. Breach alerts and other required notices are not held back.
- ``all`` uses every usable channel; ``first_available`` the first usable one, in order.
- An email address whose key changed with IDNA2008 (a domain with ß, ς or a joiner) is decided
  on its state under both keys: an opt-out recorded under the old one is still honoured.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from optout.core.identity import address_key, legacy_address_key
from optout.notices.model import ChannelName, Decision, Mode, Notice, Recipient
from optout.suppression.model import Block, SuppressionState

QUIET_START = time(21, 0)
QUIET_END = time(8, 0)
_REGIONS = ("Africa/", "America/", "Antarctica/", "Asia/", "Atlantic/", "Australia/", "Europe/", "Indian/", "Pacific/")


@dataclass(frozen=True)
class ChannelOutcome:
    channel: ChannelName
    decision: Decision
    reason: str | None = None
    defer_until: datetime | None = None


@dataclass(frozen=True)
class RecipientOutcome:
    decision: Decision
    channels: tuple[ChannelOutcome, ...]

    @property
    def to_send(self) -> tuple[ChannelOutcome, ...]:
        return tuple(c for c in self.channels if c.decision == "sent")


def address_of(recipient: Recipient, channel: ChannelName) -> str | None:
    return recipient.email if channel == "email" else recipient.phone


def _loadable(zone: str) -> bool:
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


Ref = tuple[str, ChannelName]  # (recipient_id, channel)


@dataclass(frozen=True)
class AddressKeys:
    """The suppression keys of some (recipient, channel) pairs: each address's key (``current``),
    and for the few email addresses IDNA2003 normalised to another address, that one's key too
    (``legacy``): opt-outs recorded before IDNA2008 sit under it."""

    current: dict[Ref, str]
    legacy: dict[Ref, str]

    def to_read(self) -> list[str]:
        """Every key whose state decides them, once each: to read in one BatchGetItem."""
        return list(dict.fromkeys([*self.current.values(), *self.legacy.values()]))

    def state(self, ref: Ref, states: Mapping[str, SuppressionState | None]) -> SuppressionState | None:
        """The state that decides ``ref``: its key's, with what is recorded under its legacy key."""
        state = states.get(self.current[ref]) if ref in self.current else None
        legacy = self.legacy.get(ref)
        return state if legacy is None else stricter(state, states.get(legacy))


def address_keys(pepper: bytes, wanted: Iterable[tuple[Recipient, Sequence[ChannelName]]]) -> AddressKeys:
    """The keys of each (recipient, channel) that has an address, by (recipient_id, channel)."""
    keys: dict[Ref, str] = {}
    legacy: dict[Ref, str] = {}
    for recipient, channels in wanted:
        for channel in channels:
            address = address_of(recipient, channel)
            if address is not None:
                ref = (recipient.recipient_id, channel)
                keys[ref] = address_key(pepper, channel, address)
                if (old := legacy_address_key(pepper, channel, address)) is not None:
                    legacy[ref] = old
    return AddressKeys(keys, legacy)


def stricter(state: SuppressionState | None, legacy: SuppressionState | None) -> SuppressionState | None:
    """One address's state under its key, with the opt-outs and block recorded under its legacy key.

    Every opt-out counts, under either key; an opt-in under the new key does not lift one recorded
    under the old (that would need the same person to have opted back in, which cannot be told).
    """
    if legacy is None:
        return state
    if state is None:
        return legacy
    return state.model_copy(
        update={
            "blocked": state.blocked or legacy.blocked,
            "all_optional": state.all_optional or legacy.all_optional,
            "topics": state.topics | legacy.topics,
        }
    )


def time_zones(recipient: Recipient, default: str) -> list[str]:
    """The recipient's zone, else every zone of their phone number's region, else the default."""
    if recipient.timezone:
        return [recipient.timezone]
    if recipient.phone:
        import phonenumbers
        from phonenumbers import timezone as phone_timezones

        number = phonenumbers.parse(recipient.phone)
        # Non-geographic numbers (+800, +882, ...) give "Etc/Unknown", which is no zone at all.
        zones = [z for z in phone_timezones.time_zones_for_number(number) if z.startswith(_REGIONS) and _loadable(z)]
        if zones:
            return zones
    return [default]


def _open_everywhere(zones: Sequence[str], moment: datetime) -> bool:
    return all(QUIET_END <= moment.astimezone(ZoneInfo(z)).time() < QUIET_START for z in zones)


def quiet_until(zones: Sequence[str], now: datetime) -> datetime | None:
    """None if it is 08:00-21:00 in every zone now; else the earliest moment it is in all of them.

    Zones more than 13 hours apart share no such moment; then the latest next 08:00 among them
    is returned, and the check runs again when the deferred message comes back.
    """
    if _open_everywhere(zones, now):
        return None
    openings = []
    for zone in zones:
        local = now.astimezone(ZoneInfo(zone))
        for days in range(3):
            opens = datetime.combine(local.date() + timedelta(days=days), QUIET_END, tzinfo=ZoneInfo(zone))
            if opens > now:
                openings.append(opens)
    for candidate in sorted(openings):
        if _open_everywhere(zones, candidate):
            return candidate
    return max(o for o in openings if o <= now + timedelta(days=1)) if openings else now + timedelta(hours=1)


def _unusable_reason(
    channel: ChannelName, address: str | None, state: SuppressionState | None, topic: str, optional: Sequence[str]
) -> str | None:
    if address is None:
        return "no address"
    if state is None:
        return None
    if state.blocked is not None:
        return f"blocked: {state.blocked.reason}"
    if topic in optional and state.opted_out(topic, optional):
        return "opted out of all optional" if state.all_optional else f"opted out of {topic}"
    return None


def decide(
    recipient: Recipient,
    topic: str,
    optional_topics: Sequence[str],
    channels: Sequence[ChannelName],
    mode: Mode,
    states: Mapping[ChannelName, SuppressionState | None],
    now: datetime,
    hold_optional_sms: bool = True,
    default_timezone: str = "America/New_York",
) -> RecipientOutcome:
    optional = topic in optional_topics
    considered: list[ChannelOutcome] = []
    unusable: list[ChannelOutcome] = []
    for channel in channels:
        address = address_of(recipient, channel)
        reason = _unusable_reason(channel, address, states.get(channel), topic, optional_topics)
        if reason is not None:
            unusable.append(ChannelOutcome(channel, "suppressed", reason))
            if address is not None:
                considered.append(unusable[-1])
            continue
        if channel == "sms" and optional and hold_optional_sms:
            until = quiet_until(time_zones(recipient, default_timezone), now)
            if until is not None:
                considered.append(ChannelOutcome(channel, "deferred", "quiet hours", until))
                if mode == "first_available":
                    break
                continue
        considered.append(ChannelOutcome(channel, "sent"))
        if mode == "first_available":
            break
    decisions = {c.decision for c in considered}
    if "sent" in decisions:
        return RecipientOutcome("sent", tuple(considered))
    if "deferred" in decisions:
        return RecipientOutcome("deferred", tuple(considered))
    if optional:
        return RecipientOutcome("suppressed", tuple(considered))
    # Required notice, no usable channel: every channel says why, the recipient is unreachable.
    return RecipientOutcome("unreachable", tuple(ChannelOutcome(u.channel, "unreachable", u.reason) for u in unusable))


ERASED_BLOCK = "subject erased"


def erased_since(notice: Notice, states: Mapping[ChannelName, SuppressionState | None]) -> frozenset[ChannelName]:
    """The channels whose subject was erased after ``notice`` was created: their address is no longer
    ours to use (as if blocked), and their records are pseudonymised (optout.privacy.erasure). A notice
    created after the erasure came with its own, new manifest: its addresses are used."""
    return frozenset(
        ch for ch, state in states.items()
        if state is not None and state.erased_at is not None and notice.created_at <= state.erased_at
    )  # fmt: skip


def decide_for(
    notice: Notice,
    recipient: Recipient,
    channels: Sequence[ChannelName],
    states: Mapping[ChannelName, SuppressionState | None],
    now: datetime,
    optional_topics: Sequence[str],
    default_timezone: str,
) -> RecipientOutcome:
    """``decide`` for one recipient of ``notice``: the one call a dry run and a send both make, so
    that what a dry run says is what the sender does (a breach alert is never held for quiet hours, and
    an address erased since the notice was created is blocked)."""
    states = dict(states)
    for channel in erased_since(notice, states):
        state = states[channel]
        if state is not None and state.erased_at is not None:
            block = Block(reason=ERASED_BLOCK, source="admin", at=state.erased_at)
            states[channel] = state.model_copy(update={"blocked": block})
    return decide(
        recipient, notice.topic, optional_topics, channels, notice.mode, states, now,
        hold_optional_sms=notice.kind != "breach_alert", default_timezone=default_timezone,
    )  # fmt: skip
