"""Runs the rules engine beside ingest: effects are pushed at once and stored with their batch."""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from core.events import Family
from core.rows import Shelf, StoredRow
from gateway.health import DeviceHealth
from rules import (
    Alert,
    AlertCleared,
    AlertEscalated,
    AlertOpened,
    AlertRepeated,
    AlertTransitioned,
    Effect,
    Incident,
    IncidentCleared,
    IncidentOpened,
    IncidentUpdated,
    RuleEngine,
    TransitionError,
)
from rules.access import REASON_LABELS, AccessDirectory, check_opening
from rules.model import AlertState, DeviceInfo
from rules.work import AlertWork, state_name

log = logging.getLogger(__name__)

# Publishes one alert message; must not block (the source queues it).
Publish = Callable[[str, bytes], None]


def alert_topic(org: str, item_id: str) -> str:
    """The MQTT topic an alert or incident is published on."""
    return f"wgw/{org}/alerts/{item_id}"


def alert_json(alert: Alert) -> dict[str, Any]:
    """An alert as JSON for the alert topic, the API and the console."""
    return {
        "alert_id": alert.alert_id,
        "org": alert.org,
        "device_id": alert.device_id,
        "rule_id": alert.rule_id,
        "title": alert.title,
        "kind": alert.kind,
        "priority": int(alert.priority),
        "state": alert.state.value,
        "occurred_at": alert.occurred_at.isoformat(),
        "opened_at": alert.opened_at.isoformat(),
        "last_seen_at": alert.last_seen_at.isoformat(),
        "count": alert.count,
        "escalated": alert.escalated,
        "late": alert.late,
        "reason": alert.reason,
        "outcome": alert.outcome,
        "handled_by": alert.handled_by,
        # {"lat", "lon", "at"} from the opening event's SCAIP <lge>, or None.
        "position": dict(alert.position) if alert.position is not None else None,
    }


def incident_json(incident: Incident) -> dict[str, Any]:
    """An outage incident as JSON for the alert topic, the API and the console."""
    return {
        "incident_id": incident.incident_id,
        "org": incident.org,
        "opened_at": incident.opened_at.isoformat(),
        "cleared_at": incident.cleared_at.isoformat() if incident.cleared_at else None,
        "devices": len(incident.device_ids),
        "silent": list(incident.silent),
    }


# Held back while staff are inside the home: staff help people out of bed and
# come and go through the door; these are care, not alarms.
CARE_CONTEXT_KINDS = frozenset(
    {
        "sensor.left_bed",
        "sensor.sitting_up",
        "sensor.left_room",
        "sensor.left_chair",
        "lock.door_opened",
        "lock.door_closed",
    }
)


# The same alert this many times within the window marks the device as chattering.
CHATTER_COUNT = 5
CHATTER_WINDOW = timedelta(minutes=10)


class Alerting:
    """Feeds new events and clock ticks to the engine; publishes and collects what it causes."""

    def __init__(
        self, engines: Mapping[str | None, RuleEngine], *, publish: Publish, dedup_window: int
    ) -> None:
        # One engine per organisation with a rule set of its own; the engine
        # under None runs the shared rule set for every other organisation.
        self.engines = dict(engines)
        self._access_kinds = {key: e.access_kinds() for key, e in self.engines.items()}
        self._publish = publish
        # A broker redelivers unacknowledged messages after a reconnect; the
        # engine must not count them twice. They are at most Receive Maximum.
        self._recent: deque[tuple[str, str]] = deque(maxlen=dedup_window)
        self._recent_set: set[tuple[str, str]] = set()
        self.directory: AccessDirectory | None = None
        self._homes: dict[str, str] = {}  # device → home, for homes with a lock
        self._home_devices: dict[str, list[str]] = {}
        self._inside: dict[str, str] = {}  # home → the staff key inside now
        self.shelved: dict[str, Shelf] = {}  # device → its current out-of-service period
        self._seen: dict[tuple[str, str], deque[datetime]] = {}  # for chattering
        self._saved_revision: dict[str | None, int] = {}
        self.published = 0
        self.health = DeviceHealth()
        # Told of every effect as it is published (the console's live feed),
        # with the receipt time of the message that caused it.
        self.listeners: list[Callable[[Effect, datetime | None], None]] = []

    def engine_key(self, org: str) -> str | None:
        """Which engine judges an organisation's devices."""
        return org if org in self.engines else None

    def update_devices(self, devices: Mapping[str, DeviceInfo]) -> None:
        """Hand each engine the devices of its organisations."""
        for key, engine in self.engines.items():
            engine.update_devices(
                {d: info for d, info in devices.items() if self.engine_key(info.org) == key}
            )

    def set_homes(self, homes: dict[str, str]) -> None:
        """Which devices share a home with a door lock (from the registry's units)."""
        self._homes = homes
        grouped: dict[str, list[str]] = {}
        for device_id, home in homes.items():
            grouped.setdefault(home, []).append(device_id)
        self._home_devices = grouped

    def on_rows(self, rows: Sequence[StoredRow]) -> AlertWork:
        """Evaluate the events of a decoded batch; publish and collect their effects."""
        effects: list[tuple[Effect, datetime | None]] = []
        care = AlertWork()
        observe = self.health.observe
        for row in rows:
            observe(row.event)
            engine_key = self.engine_key(row.org)
            engine = self.engines[engine_key]
            if not self._first_time(row):
                continue
            home = self._homes.get(row.event.device_id)
            shelf = self.shelved.get(row.event.device_id)
            caused: list[Effect]
            if shelf is not None:
                care.suppressions.append(
                    (row.event.occurred_at, row.org, row.event.device_id, row.event.event_id,
                     row.event.kind, shelf.shelved_by,
                     f"out of service until {shelf.ends_at.isoformat()}: {shelf.reason}")
                )  # fmt: skip
                caused = engine.heard_from(row.event)
            elif home is not None and self._care_context(row, home, care, engine):
                caused = engine.heard_from(row.event)
            else:
                caused = engine.on_event(row.event, org=row.org)
            # Every opening is judged, staff inside or not.
            if row.event.kind in self._access_kinds[engine_key] and row.event.actor is not None:
                caused = [*caused, *self._check_access(row, engine)]
            effects.extend((effect, row.event.received_at) for effect in caused)
        work = self._handle(effects)
        work.suppressions.extend(care.suppressions)
        work.arrivals.extend(care.arrivals)
        return work

    def remember(self, rows: Iterable[StoredRow]) -> None:
        """Count events as judged already (those judged just before a restart)."""
        for row in rows:
            self._first_time(row)

    def _first_time(self, row: StoredRow) -> bool:
        """Note an event; tell whether it is new within the redelivery window."""
        key = (row.event.device_id, row.event.event_id)
        if key in self._recent_set:
            return False
        if len(self._recent) == self._recent.maxlen:
            self._recent_set.discard(self._recent[0])
        self._recent.append(key)
        self._recent_set.add(key)
        return True

    def _care_context(self, row: StoredRow, home: str, care: AlertWork, engine: RuleEngine) -> bool:
        """Track staff inside a home; tell whether this event is held back because of them."""
        event = row.event
        live = event.received_at - event.occurred_at <= engine.late_after
        if live and event.family is Family.LOCK and event.actor is not None:
            # Staff unlock to enter and lock again as they leave (nyckelfri hemtjänst).
            if event.kind == "lock.unlocked":
                self._inside[home] = event.actor
                care.arrivals.append((event.occurred_at, self._home_devices[home]))
            elif event.kind == "lock.locked":
                self._inside.pop(home, None)
        staff = self._inside.get(home)
        if staff is None or event.kind not in CARE_CONTEXT_KINDS:
            return False
        care.suppressions.append(
            (event.occurred_at, row.org, event.device_id, event.event_id, event.kind, staff,
             f"staff key {staff} inside {home}")
        )  # fmt: skip
        return True

    def _check_access(self, row: StoredRow, engine: RuleEngine) -> list[Effect]:
        event = row.event
        assert event.actor is not None
        if self.directory is None:
            return []  # no directory imported: nothing to judge openings against
        # A shared lock's log names the key's organisation; otherwise the lock's.
        key_org = event.attributes.get("key_org")
        decision = check_opening(
            self.directory,
            org=key_org if isinstance(key_org, str) else row.org,
            device_id=event.device_id,
            key_id=event.actor,
            at=event.occurred_at,
        )
        if decision.allowed:
            return []
        reason = "; ".join(f"{REASON_LABELS[r]} ({r.value})" for r in decision.reasons)
        return engine.refused_access(event, org=row.org, reason=reason)

    def find(self, alert_id: str) -> Alert | None:
        """The open alert with this id, from whichever engine holds it."""
        for engine in self.engines.values():
            if (alert := engine.get(alert_id)) is not None:
                return alert
        return None

    def open_alerts(self) -> list[Alert]:
        """Every open alert of every organisation, highest priority and oldest first."""
        alerts = [a for engine in self.engines.values() for a in engine.open_alerts()]
        return sorted(alerts, key=lambda a: (a.priority, a.opened_at))

    def incidents(self) -> list[Incident]:
        """Every open outage incident."""
        return [i for engine in self.engines.values() for i in engine.incidents()]

    def act(
        self,
        alert_id: str,
        to: AlertState,
        *,
        actor: str,
        note: str = "",
        outcome: str | None = None,
    ) -> tuple[Alert, AlertWork]:
        """Apply a staff action; publish it and return the moved alert with the work to store."""
        alert = self.find(alert_id)
        if alert is None:
            raise TransitionError(f"alert {alert_id} is not open")
        engine = self.engines[self.engine_key(alert.org)]
        effect = engine.act(alert_id, to, actor=actor, note=note, outcome=outcome)
        return effect.alert, self._handle([(effect, None)])

    def tick(self, now: datetime, *, heard_until: datetime | None = None) -> AlertWork:
        """Fire due timers, supervision (up to ``heard_until``) and escalation."""
        return self._handle(
            [
                (e, None)
                for engine in self.engines.values()
                for e in engine.tick(now, heard_until=heard_until)
            ]
        )

    def _handle(self, effects: Iterable[tuple[Effect, datetime | None]]) -> AlertWork:
        # Each effect comes with the receipt time of the message that caused
        # it (None for the clock's and staff's), for the latency measure.
        work = AlertWork()
        changed = False
        for effect, received_at in effects:
            changed = True
            self._push(effect, received_at)
            _collect(work, effect)
            if isinstance(effect, AlertOpened | AlertRepeated) and self._chatters(effect.alert):
                work.chattering.add(effect.alert.alert_id)
        self._snapshot(work, effects_seen=changed)
        return work

    def _chatters(self, alert: Alert) -> bool:
        """Count the alert's condition; tell whether it came too often lately."""
        seen = self._seen.setdefault((alert.device_id, alert.rule_id), deque(maxlen=CHATTER_COUNT))
        seen.append(alert.last_seen_at)
        return len(seen) == CHATTER_COUNT and seen[-1] - seen[0] <= CHATTER_WINDOW

    def _push(self, effect: Effect, received_at: datetime | None) -> None:
        # The alert path does not wait for PostgreSQL: publish before storing.
        body: dict[str, Any] = {"effect": type(effect).__name__, "pages": effect.pages}
        if isinstance(effect, IncidentOpened | IncidentUpdated | IncidentCleared):
            body["incident"] = incident_json(effect.incident)
            topic = alert_topic(effect.incident.org, effect.incident.incident_id)
        else:
            body["alert"] = alert_json(effect.alert)
            topic = alert_topic(effect.alert.org, effect.alert.alert_id)
        self._publish(topic, json.dumps(body, separators=(",", ":")).encode())
        self.published += 1
        for listener in self.listeners:
            listener(effect, received_at)

    def _snapshot(self, work: AlertWork, *, effects_seen: bool) -> None:
        # Timers, open alerts and incidents are saved whenever they changed,
        # in the transaction of the batch that changed them; a batch that
        # changed nothing (the engine's revision says so) saves nothing, so
        # a night with many open alerts does not re-serialise them all per batch.
        # Last contact is not saved: after a restart every device gets a full
        # grace period anyway, and 100,000 timestamps per save would cost more
        # than it tells.
        for key, engine in self.engines.items():
            if not effects_seen and self._saved_revision.get(key) == engine.revision:
                continue
            core = engine.export_state(include_last_seen=False)
            core.pop("exported_at")
            work.states[state_name(key)] = core
            self._saved_revision[key] = engine.revision


def _collect(work: AlertWork, effect: Effect) -> None:
    if isinstance(effect, IncidentOpened | IncidentUpdated | IncidentCleared):
        work.incidents[effect.incident.incident_id] = effect.incident
        return
    alert = effect.alert
    work.alerts[alert.alert_id] = alert
    if isinstance(effect, AlertOpened):
        work.opened.add(alert.alert_id)
    if isinstance(effect, AlertOpened | AlertCleared | AlertTransitioned):
        work.add_transition(effect.transition)
    elif not isinstance(effect, AlertRepeated | AlertEscalated):
        raise TypeError(f"unhandled effect {effect!r}")
