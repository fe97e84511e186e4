"""Alerts, their lifecycle states, transitions, incidents and the effects the engine emits."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, StrEnum
from types import MappingProxyType
from typing import NamedTuple

from core.events import Family, Position


class Priority(IntEnum):
    """How urgent an alert is; 1 is the highest and sorts first in the console."""

    CRITICAL = 1  # a person may be hurt: alarm button, fall — sound in the console
    HIGH = 2  # needs a visit soon: not back in bed, missed dose, no contact with an alarm
    MEDIUM = 3  # needs attention this shift: door open, device fault, power lost
    LOW = 4  # maintenance: battery low, dispenser roll running low


class AlertState(StrEnum):
    """Where an alert is in its lifecycle (escalation is a marker, not a state)."""

    OPEN = "open"  # raised, nobody has taken it yet; escalates after its priority's limit
    ACKNOWLEDGED = "acknowledged"  # kvitterat: a named person has taken responsibility
    EN_ROUTE = "en_route"  # på väg: staff are on their way
    ON_SITE = "on_site"  # på plats: staff are with the person
    RESOLVED = "resolved"  # åtgärdat, with an outcome; final
    CLEARED = "cleared"  # the device reported the condition gone (back in bed, back online); final


# The only moves an alert may make. En route and on site are optional steps
# (help by telephone, or a call-off on the way), but an alert is always
# acknowledged by a named person before it is resolved, so the record says who
# took it. Cleared belongs to the device and can happen until staff resolve.
ALLOWED_TRANSITIONS: MappingProxyType[AlertState, frozenset[AlertState]] = MappingProxyType(
    {
        AlertState.OPEN: frozenset({AlertState.ACKNOWLEDGED, AlertState.CLEARED}),
        AlertState.ACKNOWLEDGED: frozenset(
            {AlertState.EN_ROUTE, AlertState.RESOLVED, AlertState.CLEARED}
        ),
        AlertState.EN_ROUTE: frozenset(
            {AlertState.ON_SITE, AlertState.RESOLVED, AlertState.CLEARED}
        ),
        AlertState.ON_SITE: frozenset({AlertState.RESOLVED, AlertState.CLEARED}),
        AlertState.RESOLVED: frozenset(),
        AlertState.CLEARED: frozenset(),
    }
)

FINAL_STATES = frozenset(state for state, moves in ALLOWED_TRANSITIONS.items() if not moves)


class DeviceInfo(NamedTuple):
    """What the engine needs to know about a registered device."""

    org: str
    family: Family
    heartbeat_interval_s: int


def _short_hash(prefix: str, *parts: str) -> str:
    return prefix + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]


def alert_id_for(org: str, device_id: str, rule_id: str, occurred_at: datetime) -> str:
    """The deterministic id of the alert a rule raises for a device's condition at a time."""
    return _short_hash("a:", org, device_id, rule_id, occurred_at.isoformat())


def incident_id_for(org: str, opened_at: datetime) -> str:
    """The deterministic id of an organisation's outage incident."""
    return _short_hash("i:", org, opened_at.isoformat())


@dataclass(frozen=True, slots=True)
class Escalation:
    """How far an unacknowledged alert has escalated, and what comes next.

    A recipient is ``"role:<role>"`` (every account of that role in the alert's
    organisation) or ``"group:<name>"`` (every account in that named group).
    """

    tier: int = 0  # tiers reached; 0: not escalated yet
    to: tuple[str, ...] = ()  # the recipients of the tier reached
    # When the next tier is due and whom it names; None once there is none
    # (the last tier reached, the priority never escalates, or staff took it).
    next_at: datetime | None = None
    next_to: tuple[str, ...] | None = None


NOT_ESCALATED = Escalation()

# The roles an escalation may name: those that handle alerts (an auditor does not).
ESCALATION_ROLES = ("operator", "coordinator", "admin")
# A named group of staff accounts ("nattledning", "jour-norr").
GROUP_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
_GROUP_NAME = re.compile(GROUP_NAME_PATTERN)


def is_group_name(text: str) -> bool:
    """Whether a text is a valid name for a group of staff accounts."""
    return _GROUP_NAME.fullmatch(text) is not None


def parse_recipient(text: str) -> tuple[str, str]:
    """Split ``"role:<role>"`` or ``"group:<name>"`` into kind and name; ValueError if neither."""
    kind, _, name = text.partition(":")
    if kind == "role" and name in ESCALATION_ROLES:
        return kind, name
    if kind == "group" and is_group_name(name):
        return kind, name
    raise ValueError(
        f"expected a recipient 'role:<{'|'.join(ESCALATION_ROLES)}>' or 'group:<name>' "
        f"(name: a-z 0-9 _ -, starting with a letter), got {text!r}"
    )


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert as the console shows it; changed only through lifecycle transitions."""

    alert_id: str
    org: str
    device_id: str
    rule_id: str
    # The rule's Swedish title (titles.sv) when it was raised, kept with the
    # record; consoles show the rule's titles in their language by rule_id.
    title: str
    priority: Priority
    state: AlertState
    # When the condition began, by the device's clock where it has one: the fall,
    # the moment the person left the bed, the device's last contact.
    occurred_at: datetime
    opened_at: datetime  # gateway time the engine raised it
    # When the night patrol was paged; None for a late alert that never paged.
    # Escalation is measured from here.
    paged_at: datetime | None
    last_seen_at: datetime  # device time of the latest event that raised or repeated it
    count: int  # how many times the condition was seen while the alert was open
    escalated: bool
    late: bool  # raised from information older than the late horizon; did not page
    reason: str
    # The event kind that raised it; a supervision alert says device.offline,
    # since silence is that device being offline.
    kind: str
    event_id: str | None = None  # the event that raised it, for the audit trail
    # The value of the rule's match attribute (e.g. the dose id) it is about.
    match: str | None = None
    outcome: str | None = None  # set when resolved
    # The staff member who last moved it (kvitterat, på väg, …): who is handling it.
    handled_by: str | None = None
    # Its escalation tier; ``escalated`` says whether it reached the first.
    escalation: Escalation = NOT_ESCALATED
    handled_by_name: str | None = None  # their display name, as the console shows it
    # Where the unit was, from the opening event's position attribute (SCAIP <lge>).
    position: Position | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    """One row of an alert's history: who moved it, when, from where to where, and why."""

    alert_id: str
    at: datetime
    actor: str  # a staff user id, or "rule:<id>" / "device:<id>" for the engine's own moves
    from_state: AlertState | None  # None for the row that opens the alert
    to_state: AlertState
    note: str = ""
    # A takeover (from_state == to_state): the staff user who was handling it before.
    took_over_from: str | None = None


@dataclass(frozen=True, slots=True)
class Incident:
    """Many devices of one organisation silent together: one broker or network outage."""

    incident_id: str
    org: str
    opened_at: datetime
    device_ids: tuple[str, ...]  # every device that has been part of it
    silent: tuple[str, ...]  # those not heard from since
    cleared_at: datetime | None = None


# The effects of the engine, for storage and live push to consume. ``pages``
# says whether the night patrol should be alerted (sound, push) by it.


@dataclass(frozen=True, slots=True)
class AlertOpened:
    """A new alert; it pages unless it is late."""

    alert: Alert
    transition: Transition

    @property
    def pages(self) -> bool:
        """Whether this effect should page the night patrol."""
        return not self.alert.late


@dataclass(frozen=True, slots=True)
class AlertRepeated:
    """An open alert's condition was seen again: its count and last-seen time moved."""

    alert: Alert
    event_id: str | None
    # A late alert whose condition is now seen live pages once, as if it were new.
    promoted: bool = False

    @property
    def pages(self) -> bool:
        """Whether this effect should page the night patrol."""
        return self.promoted


@dataclass(frozen=True, slots=True)
class AlertCleared:
    """The device reported the condition gone; the alert is kept for the record."""

    alert: Alert
    transition: Transition

    @property
    def pages(self) -> bool:
        """Whether this effect should page the night patrol."""
        return False


@dataclass(frozen=True, slots=True)
class AlertTransitioned:
    """Staff moved an alert (acknowledged, en route, on site, resolved)."""

    alert: Alert
    transition: Transition
    # Taken over from another handler first: that row comes before ``transition``.
    handover: Transition | None = None

    @property
    def pages(self) -> bool:
        """Whether this effect should page the night patrol."""
        return False


@dataclass(frozen=True, slots=True)
class AlertEscalated:
    """An alert stayed unacknowledged past a tier of its priority: page that tier's recipients.

    ``alert.escalation`` names the tier reached and its recipients.
    """

    alert: Alert
    at: datetime
    after_min: float  # how long it had been unacknowledged by then (the tier's limit)

    @property
    def pages(self) -> bool:
        """Whether this effect should page the night patrol."""
        return True


@dataclass(frozen=True, slots=True)
class IncidentOpened:
    """Many devices of one organisation went silent together: one page, not one per device."""

    incident: Incident

    @property
    def pages(self) -> bool:
        """Whether this effect should page the night patrol."""
        return True


@dataclass(frozen=True, slots=True)
class IncidentUpdated:
    """Devices joined an open incident or were heard from again."""

    incident: Incident

    @property
    def pages(self) -> bool:
        """Whether this effect should page the night patrol."""
        return False


@dataclass(frozen=True, slots=True)
class IncidentCleared:
    """No device of the incident is silent any more (back, or handed on as its own alert)."""

    incident: Incident

    @property
    def pages(self) -> bool:
        """Whether this effect should page the night patrol."""
        return False


Effect = (
    AlertOpened
    | AlertRepeated
    | AlertCleared
    | AlertTransitioned
    | AlertEscalated
    | IncidentOpened
    | IncidentUpdated
    | IncidentCleared
)
