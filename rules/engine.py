"""The rules engine: interprets the rule set over events and time, and emits effects."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from core.clock import Clock
from core.errors import GatewayError
from core.events import Event, Position
from rules import lifecycle
from rules.access import CheckResult
from rules.lifecycle import HandoverRequired, TransitionError
from rules.model import (
    FINAL_STATES,
    NOT_ESCALATED,
    Alert,
    AlertCleared,
    AlertEscalated,
    AlertOpened,
    AlertRepeated,
    AlertState,
    AlertTransitioned,
    DeviceInfo,
    Effect,
    Escalation,
    Incident,
    IncidentCleared,
    IncidentOpened,
    IncidentUpdated,
    Priority,
    alert_id_for,
    incident_id_for,
)
from rules.ruleset import (
    AbsenceRule,
    AccessRule,
    ImmediateRule,
    OutageGrouping,
    RemoteCheckRule,
    Rule,
    RuleSet,
    SupervisionRule,
    ThresholdRule,
)

logger = logging.getLogger(__name__)

STATE_VERSION = 1

# A supervision alert's kind: a device that stays silent is offline.
SILENCE_KIND = "device.offline"
# The kind of the alert a remote check raises: no device event caused it.
REMOTE_NOT_SEEN_KIND = "remote_check.not_seen"
# Remote-check results are kept this long after their planned time (a night and a half).
REMOTE_CHECKS_KEPT = timedelta(hours=36)


class EngineStateError(GatewayError):
    """Saved engine state cannot be read back."""


class _Role(Enum):
    RAISE = "raise"  # immediate: the kind raises the alert
    CLEAR = "clear"  # immediate: the kind clears it
    START = "start"  # absence: starts the wait
    EXPECT = "expect"  # absence: ends the wait, clears the alert
    MISSED = "missed"  # absence: the device says the wait failed


@dataclass(frozen=True, slots=True)
class _Timer:
    """A pending absence deadline: the start event seen, the expected one not yet."""

    org: str
    device_id: str
    rule_id: str
    match: str | None
    kind: str
    started_at: datetime
    deadline: datetime
    late: bool
    event_id: str


@dataclass(slots=True)
class _Outage:
    """The mutable working form of an open incident."""

    incident_id: str
    org: str
    opened_at: datetime
    devices: dict[str, None]  # insertion-ordered set: every device that has been part
    silent: set[str]
    # Set once fewer devices than an outage are still silent: from then on the
    # rest get their usual k heartbeats to report before they are alerted alone.
    recovering_since: datetime | None = None
    changed: bool = False  # since the last IncidentUpdated

    def snapshot(self, cleared_at: datetime | None = None) -> Incident:
        return Incident(
            incident_id=self.incident_id,
            org=self.org,
            opened_at=self.opened_at,
            device_ids=tuple(self.devices),
            silent=tuple(sorted(self.silent)),
            cleared_at=cleared_at,
        )


class RuleEngine:
    """One engine interpreting every rule of a rule set for a set of registered devices."""

    # Pure and single-threaded: feed each device's events in order to on_event,
    # call tick about once a second (absence deadlines, supervision,
    # escalation), hand staff actions to act. Effects go to storage and live
    # push; export_state/import_state carry timers, last contact, open alerts
    # and incidents across a restart as JSON-ready data.

    def __init__(self, ruleset: RuleSet, clock: Clock, devices: Mapping[str, DeviceInfo]) -> None:
        self._rs = ruleset
        self._clock = clock
        self._late_after = ruleset.late_after
        self._rules = ruleset.rules
        self._device_rules = ruleset.device_rules
        self._open: dict[tuple[str, str], Alert] = {}  # (device, rule) → its one open alert
        self._by_id: dict[str, tuple[str, str]] = {}
        self._timers: dict[tuple[str, str], dict[str | None, _Timer]] = {}
        self._by_kind: dict[str, list[tuple[_Role, str]]] = {}
        self._thresholds: list[tuple[str, ThresholdRule]] = []
        self._access: list[tuple[str, AccessRule]] = []
        self._supervision: tuple[str, SupervisionRule] | None = None
        self._remote: str | None = None  # the remote-check rule's id
        # (sensor, planned time) → the latest result of that planned check.
        self._checks: dict[tuple[str, str], CheckResult] = {}
        self._index()
        # Supervision. A supervised device is in exactly one place: _due (heard
        # from lately; the moment it will count as silent), _held, an outage, or
        # reported (its no-contact alert raised, open or already closed by
        # staff, so one silence pages once). Contact moves it back to _due.
        self._devices: dict[str, DeviceInfo] = {}
        self._limit: dict[str, timedelta] = {}
        self._supervised = Counter[str]()  # org → supervised devices
        self._last_seen: dict[str, datetime] = {}
        self._due: dict[str, datetime] = {}
        self._held: dict[str, datetime] = {}  # silent, waiting to see if others join
        self._outages: dict[str, _Outage] = {}  # org → its open incident
        # Moves whenever what export_state saves may have changed: every effect
        # does, and so do the changes that emit none (a wait starting or ending,
        # an outage's silent set or recovery clock). Saving can skip a batch
        # that left it where it was.
        self.revision = 0
        self._in_outage: dict[str, str] = {}  # silent device → org of its incident
        self.update_devices(devices)

    def _rule(self, rule_id: str, device_id: str) -> Rule:
        """``RuleSet.rule_for`` on the hot path, without pydantic's private-attribute lookup."""
        own = self._device_rules.get(device_id)
        if own is not None and (rule := own.get(rule_id)) is not None:
            return rule
        return self._rules[rule_id]

    def _index(self) -> None:
        def add(kinds: tuple[str, ...], role: _Role, rule_id: str) -> None:
            for kind in kinds:
                self._by_kind.setdefault(kind, []).append((role, rule_id))

        for rule_id, rule in self._rs.rules.items():
            if isinstance(rule, ImmediateRule):
                add(rule.kinds, _Role.RAISE, rule_id)
                add(rule.clear, _Role.CLEAR, rule_id)
            elif isinstance(rule, AbsenceRule):
                add(rule.start, _Role.START, rule_id)
                add(rule.expect, _Role.EXPECT, rule_id)
                add(rule.missed, _Role.MISSED, rule_id)
            elif isinstance(rule, ThresholdRule):
                self._thresholds.append((rule_id, rule))
            elif isinstance(rule, AccessRule):
                # Decided outside the engine (it needs the access directory).
                self._access.append((rule_id, rule))
            elif isinstance(rule, RemoteCheckRule):
                # Fed by staff results from the console, judged outside as well.
                self._remote = rule_id
            else:
                self._supervision = (rule_id, rule)

    # -- devices -----------------------------------------------------------

    def update_devices(self, devices: Mapping[str, DeviceInfo]) -> None:
        """Follow the registry: new devices are supervised from now, removed ones dropped."""
        now = self._clock.now()
        self._devices = dict(devices)
        limits: dict[str, timedelta] = {}
        # One timedelta per distinct limit, shared: 100,000 devices have few.
        shared: dict[int, timedelta] = {}
        if self._supervision is not None:
            rule_id = self._supervision[0]
            for device_id, info in self._devices.items():
                rule = self._rule(rule_id, device_id)
                assert isinstance(rule, SupervisionRule)
                if rule.enabled and info.family in rule.families:
                    seconds = rule.missed_heartbeats * info.heartbeat_interval_s
                    limits[device_id] = shared.setdefault(seconds, timedelta(seconds=seconds))
        for device_id in self._last_seen.keys() - limits.keys():
            self._unsupervise(device_id)
        self._limit = limits
        self._supervised = Counter(self._devices[d].org for d in limits)
        for device_id in limits:
            if device_id not in self._last_seen:
                self._watch(device_id, last_seen=None, now=now)

    def _watch(self, device_id: str, *, last_seen: datetime | None, now: datetime) -> None:
        """Start supervising a device, giving it a full k heartbeats from ``now``."""
        self._last_seen[device_id] = now if last_seen is None else last_seen
        reported = self._supervision is not None and (device_id, self._supervision[0]) in self._open
        if device_id in self._in_outage or reported:
            self._due.pop(device_id, None)
        else:
            self._due[device_id] = max(self._last_seen[device_id], now) + self._limit[device_id]

    def _unsupervise(self, device_id: str) -> None:
        """Forget a device's silence; an open alert stays for staff to close."""
        self._last_seen.pop(device_id, None)
        self._due.pop(device_id, None)
        self._held.pop(device_id, None)
        if (org := self._in_outage.pop(device_id, None)) is not None:
            self._outages[org].silent.discard(device_id)
            self._outages[org].changed = True
            self.revision += 1

    # -- events ------------------------------------------------------------

    def on_event(self, event: Event, *, org: str) -> list[Effect]:
        """Evaluate one event of a device of ``org``; return what it caused."""
        effects: list[Effect] = []
        # The offline status is the broker speaking for a device (its MQTT
        # will), not the device: it is no sign of life. Silence itself is
        # judged by supervision, so a will storm is grouped like any outage.
        if event.kind != SILENCE_KIND:
            self._contact(event.device_id, event.received_at, effects)
        roles = self._by_kind.get(event.kind)
        if roles is not None:
            late = event.received_at - event.occurred_at > self._late_after
            for role, rule_id in roles:
                rule = self._rule(rule_id, event.device_id)
                if not rule.enabled:
                    continue
                if isinstance(rule, ImmediateRule):
                    self._on_immediate(
                        role, rule_id, rule, event, org=org, late=late, effects=effects
                    )
                elif isinstance(rule, AbsenceRule):
                    self._on_absence(
                        role, rule_id, rule, event, org=org, late=late, effects=effects
                    )
        for rule_id, base in self._thresholds:
            if event.kind in base.kinds or base.attribute in event.attributes:
                rule = self._rule(rule_id, event.device_id)
                if rule.enabled and isinstance(rule, ThresholdRule):
                    self._on_threshold(rule_id, rule, event, org, effects)
        return effects

    def _on_immediate(
        self,
        role: _Role,
        rule_id: str,
        rule: ImmediateRule,
        event: Event,
        *,
        org: str,
        late: bool,
        effects: list[Effect],
    ) -> None:
        if role is _Role.CLEAR:
            self._clear(
                (event.device_id, rule_id),
                at=event.received_at,
                device_time=event.occurred_at,
                what=event.kind,
                effects=effects,
            )
        elif self._rs.applies_at(rule, event.occurred_at):
            effects.append(
                self._raise_for(
                    rule_id, rule, event, org=org, late=late,
                    reason=f"{event.kind} at {self._local(event.occurred_at)}",
                )
            )  # fmt: skip

    def _raise_for(
        self,
        rule_id: str,
        rule: ImmediateRule | AccessRule,
        event: Event,
        *,
        org: str,
        late: bool,
        reason: str,
    ) -> AlertOpened | AlertRepeated:
        """Raise (or repeat) a rule's alert for the event that caused it."""
        return self._raise(
            rule_id,
            rule.title,
            rule.priority,
            device_id=event.device_id,
            org=org,
            occurred_at=event.occurred_at,
            raised_at=event.received_at,
            late=late,
            kind=event.kind,
            event_id=event.event_id,
            reason=reason,
            position=_position(event),
        )

    def _on_absence(
        self,
        role: _Role,
        rule_id: str,
        rule: AbsenceRule,
        event: Event,
        *,
        org: str,
        late: bool,
        effects: list[Effect],
    ) -> None:
        key = (event.device_id, rule_id)
        match = None
        if rule.match_attribute is not None:
            value = event.attributes.get(rule.match_attribute)
            match = None if value is None else str(value)
        pending = self._timers.get(key)
        if role is _Role.START:
            if not self._rs.applies_at(rule, event.occurred_at):
                return
            # A repeated start keeps the earliest deadline: the wait began then.
            current = None if pending is None else pending.get(match)
            if current is None or event.occurred_at < current.started_at:
                self.revision += 1
                self._timers.setdefault(key, {})[match] = _Timer(
                    org=org,
                    device_id=event.device_id,
                    rule_id=rule_id,
                    match=match,
                    kind=event.kind,
                    started_at=event.occurred_at,
                    deadline=event.occurred_at + rule.within,
                    late=late,
                    event_id=event.event_id,
                )
            return
        # Expected or missed: the wait for this (matching) start is over.
        ended = self._end_waits(key, match, before=event.occurred_at)
        if role is _Role.EXPECT:
            alert = self._open.get(key)
            if alert is not None and (match is None or alert.match in (None, match)):
                self._clear(
                    key,
                    at=event.received_at,
                    device_time=event.occurred_at,
                    what=event.kind,
                    effects=effects,
                )
            return
        started = min((t.started_at for t in ended), default=event.occurred_at)
        if self._rs.applies_at(rule, started):
            effects.append(
                self._raise(
                    rule_id,
                    rule.title,
                    rule.priority,
                    device_id=event.device_id,
                    org=org,
                    occurred_at=started,
                    raised_at=event.received_at,
                    late=late,
                    kind=event.kind,
                    event_id=event.event_id,
                    match=match,
                    reason=f"the device reported {event.kind} at {self._local(event.occurred_at)}",
                    position=_position(event),
                )
            )

    def _end_waits(
        self, key: tuple[str, str], match: str | None, *, before: datetime
    ) -> list[_Timer]:
        pending = self._timers.get(key)
        if pending is None:
            return []
        # Without a match value the event answers every wait of the rule.
        candidates = list(pending) if match is None else [match]
        ended = [
            pending.pop(m) for m in candidates if m in pending and pending[m].started_at <= before
        ]
        if ended:
            self.revision += 1
        if not pending:
            del self._timers[key]
        return ended

    def _on_threshold(
        self, rule_id: str, rule: ThresholdRule, event: Event, org: str, effects: list[Effect]
    ) -> None:
        value = event.attributes.get(rule.attribute)
        level = value if isinstance(value, int | float) and not isinstance(value, bool) else None
        if event.kind in rule.kinds or (level is not None and level < rule.below):
            if not self._rs.applies_at(rule, event.occurred_at):
                return
            reason = (
                f"{event.kind} at {self._local(event.occurred_at)}"
                if level is None
                else f"{rule.attribute} {level:g} (below {rule.below:g}) at "
                f"{self._local(event.occurred_at)}"
            )
            effects.append(
                self._raise(
                    rule_id,
                    rule.title,
                    rule.priority,
                    device_id=event.device_id,
                    org=org,
                    occurred_at=event.occurred_at,
                    raised_at=event.received_at,
                    late=event.received_at - event.occurred_at > self._late_after,
                    kind=event.kind,
                    event_id=event.event_id,
                    reason=reason,
                    position=_position(event),
                )
            )
        elif (
            level is not None
            and level >= rule.clear_level
            and (event.device_id, rule_id) in self._open
        ):
            self._clear(
                (event.device_id, rule_id),
                at=event.received_at,
                device_time=event.occurred_at,
                what=f"{rule.attribute} {level:g}",
                effects=effects,
            )

    def heard_from(self, event: Event) -> list[Effect]:
        """Count an event as a sign of life only, without judging it by any rule."""
        effects: list[Effect] = []
        if event.kind != SILENCE_KIND:
            self._contact(event.device_id, event.received_at, effects)
        return effects

    @property
    def late_after(self) -> timedelta:
        """How old device time may be before an event no longer counts as live."""
        return self._late_after

    def _contact(self, device_id: str, at: datetime, effects: list[Effect]) -> None:
        limit = self._limit.get(device_id)
        if limit is None:
            return
        previous = self._last_seen.get(device_id)
        if previous is not None and at < previous:
            return
        self._last_seen[device_id] = at
        if device_id not in self._due:
            self._back(device_id, at, effects)
        self._due[device_id] = at + limit

    def _back(self, device_id: str, at: datetime, effects: list[Effect]) -> None:
        """A device known to be silent was heard from again."""
        if self._held.pop(device_id, None) is not None:
            return
        org = self._in_outage.pop(device_id, None)
        if org is not None:
            outage = self._outages[org]
            outage.silent.discard(device_id)
            outage.changed = True
            self.revision += 1
        elif self._supervision is not None:
            self._clear(
                (device_id, self._supervision[0]),
                at=at,
                device_time=None,
                what="back in contact",
                effects=effects,
            )

    # -- alerts ------------------------------------------------------------

    def _raise(
        self,
        rule_id: str,
        title: str,
        priority: Priority,
        *,
        device_id: str,
        org: str,
        occurred_at: datetime,
        raised_at: datetime,
        late: bool,
        kind: str,
        reason: str,
        event_id: str | None = None,
        match: str | None = None,
        position: Position | None = None,
    ) -> AlertOpened | AlertRepeated:
        key = (device_id, rule_id)
        current = self._open.get(key)
        if current is not None:
            promoted = current.late and not late
            repeated = replace(
                current,
                count=current.count + 1,
                last_seen_at=max(current.last_seen_at, occurred_at),
                late=current.late and late,
                paged_at=raised_at if promoted else current.paged_at,
            )
            if promoted:
                # Escalation runs from the live page.
                repeated = self._scheduled(repeated)
            self._open[key] = repeated
            return AlertRepeated(repeated, event_id, promoted)
        alert = Alert(
            alert_id=alert_id_for(org, device_id, rule_id, occurred_at),
            org=org,
            device_id=device_id,
            rule_id=rule_id,
            title=title,
            priority=priority,
            state=AlertState.OPEN,
            occurred_at=occurred_at,
            opened_at=raised_at,
            paged_at=None if late else raised_at,
            last_seen_at=occurred_at,
            count=1,
            escalated=False,
            late=late,
            reason=reason,
            kind=kind,
            event_id=event_id,
            match=match,
            position=position,
        )
        alert = self._scheduled(alert)
        self._open[key] = alert
        self._by_id[alert.alert_id] = key
        return AlertOpened(alert, lifecycle.opening(alert, actor=f"rule:{rule_id}", note=reason))

    def _clear(
        self,
        key: tuple[str, str],
        *,
        at: datetime,
        device_time: datetime | None,
        what: str,
        effects: list[Effect],
    ) -> None:
        alert = self._open.get(key)
        # A clearing event older than the alert's latest evidence (a late log)
        # does not undo it.
        if alert is None or (device_time is not None and device_time < alert.last_seen_at):
            return
        note = f"{what} at {self._local(at if device_time is None else device_time)}"
        cleared, row = lifecycle.transition(
            alert, AlertState.CLEARED, actor=f"device:{alert.device_id}", at=at, note=note
        )
        self._forget(key)
        effects.append(AlertCleared(cleared, row))

    def _forget(self, key: tuple[str, str]) -> None:
        alert = self._open.pop(key)
        del self._by_id[alert.alert_id]

    def access_kinds(self) -> frozenset[str]:
        """The event kinds an enabled access rule checks."""
        return frozenset(k for _, rule in self._access if rule.enabled for k in rule.kinds)

    def refused_access(self, event: Event, *, org: str, reason: str) -> list[Effect]:
        """Raise the access rule's alert for an opening the access directory refused."""
        for rule_id, rule in self._access:
            if rule.enabled and event.kind in rule.kinds:
                late = event.received_at - event.occurred_at > self._late_after
                when = self._local(event.occurred_at)
                return [
                    self._raise_for(
                        rule_id, rule, event, org=org, late=late,
                        reason=f"{event.kind} by {event.actor} at {when}: {reason}",
                    )
                ]  # fmt: skip
        return []

    def remote_check(
        self, *, org: str, device_id: str, planned_at: datetime, seen: bool, actor: str
    ) -> tuple[CheckResult, list[Effect]]:
        """Record a remote check's result; the n-th "not seen" raises the remote-check alert."""
        now = self._clock.now()
        key = (device_id, planned_at.isoformat())
        before = self._checks.get(key)
        not_seen = (0 if before is None else before.not_seen) + (0 if seen else 1)
        alert_id = None if before is None else before.alert_id
        effects: list[Effect] = []
        if not seen and self._remote is not None:
            rule = self._rule(self._remote, device_id)
            assert isinstance(rule, RemoteCheckRule)
            if rule.enabled and not_seen >= rule.not_seen_times:
                effect = self._raise(
                    self._remote, rule.title, rule.priority, device_id=device_id, org=org,
                    occurred_at=now, raised_at=now, late=False, kind=REMOTE_NOT_SEEN_KIND,
                    reason=f"not seen at {not_seen} tries of the remote check planned for "
                    f"{self._local(planned_at)} (last by {actor})",
                    match=planned_at.isoformat(),
                )  # fmt: skip
                effects.append(effect)
                alert_id = effect.alert.alert_id
        result = CheckResult(device_id, planned_at, seen, not_seen, now, actor, alert_id)
        self._checks[key] = result
        for old, kept in list(self._checks.items()):
            if kept.planned_at < now - REMOTE_CHECKS_KEPT:
                del self._checks[old]
        self.revision += 1
        return result, effects

    def remote_checks(self) -> list[CheckResult]:
        """The latest result of each remote check of the last night and a half."""
        return list(self._checks.values())

    def device(self, device_id: str) -> DeviceInfo | None:
        """A registered device of this engine's organisations, if it is one."""
        return self._devices.get(device_id)

    def act(
        self,
        alert_id: str,
        to: AlertState,
        *,
        actor: str,
        note: str = "",
        outcome: str | None = None,
        actor_name: str | None = None,
        takeover: bool = False,
    ) -> AlertTransitioned:
        """Apply a staff action (acknowledge, en route, on site, resolve) to an open alert.

        A step on an alert someone else is handling raises HandoverRequired
        unless ``takeover`` says so; then the takeover is a row of its own.
        """
        key = self._by_id.get(alert_id)
        if key is None:
            raise TransitionError(f"alert {alert_id} is not open")
        if to is AlertState.CLEARED:
            raise TransitionError(
                f"alert {alert_id}: only the device clears an alert; resolve it with an outcome"
            )
        if outcome is not None and outcome not in self._rs.outcomes:
            raise TransitionError(
                f"alert {alert_id}: expected an outcome from {list(self._rs.outcomes)}, "
                f"got {outcome!r}"
            )
        alert, now, handover = self._open[key], self._clock.now(), None
        if lifecycle.needs_takeover(alert, actor):
            if not takeover:
                raise HandoverRequired(alert)
            # The step is checked first: a refused step must not leave a takeover behind.
            lifecycle.transition(alert, to, actor=actor, at=now, note=note, outcome=outcome)
            alert, handover = lifecycle.takeover(alert, actor=actor, at=now, actor_name=actor_name)
        moved, row = lifecycle.transition(
            alert, to, actor=actor, at=now, note=note, outcome=outcome, actor_name=actor_name
        )
        # Taken by staff: no further tier is due (the tier reached stays on record).
        moved = self._scheduled(moved)
        if to in FINAL_STATES:
            self._forget(key)
        else:
            self._open[key] = moved
        return AlertTransitioned(moved, row, handover)

    @property
    def ruleset(self) -> RuleSet:
        """The rule set this engine runs."""
        return self._rs

    def get(self, alert_id: str) -> Alert | None:
        """The open alert with this id, if this engine holds it."""
        key = self._by_id.get(alert_id)
        return None if key is None else self._open[key]

    def open_alerts(self) -> list[Alert]:
        """The open alerts, highest priority and oldest first."""
        return sorted(self._open.values(), key=lambda a: (a.priority, a.opened_at))

    def incidents(self) -> list[Incident]:
        """The open outage incidents."""
        return [outage.snapshot() for outage in self._outages.values()]

    # -- time --------------------------------------------------------------

    def tick(self, now: datetime, *, heard_until: datetime | None = None) -> list[Effect]:
        """Fire what is due at ``now``: absence deadlines, supervision, escalation.

        ``heard_until`` is the receipt time up to which every message has been
        seen by the engine (older than ``now`` while a backlog waits): silence
        is judged only up to it, so a heartbeat received but not yet processed
        still counts as contact.
        """
        effects: list[Effect] = []
        self._fire_deadlines(now, effects)
        if self._supervision is not None:
            silence_now = now if heard_until is None else min(now, heard_until)
            self._supervise(silence_now, *self._supervision, effects)
        self._escalate(now, effects)
        return effects

    def _fire_deadlines(self, now: datetime, effects: list[Effect]) -> None:
        due = [t for waits in self._timers.values() for t in waits.values() if t.deadline <= now]
        for timer in sorted(due, key=lambda t: t.deadline):
            key = (timer.device_id, timer.rule_id)
            waits = self._timers[key]
            del waits[timer.match]
            self.revision += 1
            if not waits:
                del self._timers[key]
            rule = self._rule(timer.rule_id, timer.device_id)
            assert isinstance(rule, AbsenceRule)
            expected = " or ".join(rule.expect)
            effects.append(
                self._raise(
                    timer.rule_id,
                    rule.title,
                    rule.priority,
                    device_id=timer.device_id,
                    org=timer.org,
                    occurred_at=timer.started_at,
                    raised_at=now,
                    # A deadline found long after it passed (the gateway was
                    # down for long) is history, like a late event.
                    late=timer.late or now - timer.deadline > self._late_after,
                    kind=timer.kind,
                    event_id=timer.event_id,
                    match=timer.match,
                    reason=f"{timer.kind} at {self._local(timer.started_at)}, no {expected} "
                    f"within {rule.within_min} min",
                )
            )

    def _supervise(
        self, now: datetime, rule_id: str, base: SupervisionRule, effects: list[Effect]
    ) -> None:
        grouping = base.outage
        for device_id in [d for d, due in self._due.items() if due <= now]:
            became_silent = self._due.pop(device_id)
            org = self._devices[device_id].org
            outage = self._outages.get(org)
            if outage is not None:
                outage.devices[device_id] = None
                outage.silent.add(device_id)
                outage.changed = True
                self.revision += 1
                self._in_outage[device_id] = org
            else:
                self._held[device_id] = became_silent
        # Many of one organisation silent within the grouping window: one incident.
        held_by_org: dict[str, list[str]] = {}
        for device_id in self._held:
            held_by_org.setdefault(self._devices[device_id].org, []).append(device_id)
        for org, held in held_by_org.items():
            if grouping.is_outage(len(held), self._supervised[org]):
                self._open_outage(org, held, now, effects)
        window = timedelta(minutes=grouping.window_min)
        for device_id, since in list(self._held.items()):
            if now - since >= window:
                del self._held[device_id]
                self._no_contact(rule_id, device_id, now, "", effects)
        for outage in list(self._outages.values()):
            self._recover(rule_id, grouping, outage, now, effects)

    def _open_outage(self, org: str, held: list[str], now: datetime, effects: list[Effect]) -> None:
        outage = _Outage(
            incident_id=incident_id_for(org, now),
            org=org,
            opened_at=now,
            devices=dict.fromkeys(sorted(held)),
            silent=set(held),
        )
        for device_id in held:
            del self._held[device_id]
            self._in_outage[device_id] = org
        self._outages[org] = outage
        logger.warning("outage in %s: %d devices silent together", org, len(held))
        effects.append(IncidentOpened(outage.snapshot()))

    def _recover(
        self,
        rule_id: str,
        grouping: OutageGrouping,
        outage: _Outage,
        now: datetime,
        effects: list[Effect],
    ) -> None:
        if grouping.is_outage(len(outage.silent), self._supervised[outage.org]):
            if outage.recovering_since is not None:
                outage.recovering_since = None
                self.revision += 1
        else:
            if outage.recovering_since is None:
                outage.recovering_since = now
                self.revision += 1
            for device_id in sorted(outage.silent):
                if now - outage.recovering_since >= self._limit[device_id]:
                    outage.silent.discard(device_id)
                    del self._in_outage[device_id]
                    outage.changed = True
                    self._no_contact(
                        rule_id, device_id, now, ", still silent after the outage", effects
                    )
        if not outage.silent:
            del self._outages[outage.org]
            logger.warning("outage in %s is over", outage.org)
            effects.append(IncidentCleared(outage.snapshot(cleared_at=now)))
        elif outage.changed:
            outage.changed = False
            effects.append(IncidentUpdated(outage.snapshot()))

    def _no_contact(
        self, rule_id: str, device_id: str, now: datetime, detail: str, effects: list[Effect]
    ) -> None:
        rule = self._rule(rule_id, device_id)
        info = self._devices[device_id]
        last = self._last_seen[device_id]
        assert isinstance(rule, SupervisionRule)
        effects.append(
            self._raise(
                rule_id,
                rule.title,
                rule.priority,
                device_id=device_id,
                org=info.org,
                occurred_at=last,
                raised_at=now,
                # Silence is observed as it happens, never from old news.
                late=False,
                kind=SILENCE_KIND,
                reason=f"no message since {self._local(last)} ({rule.missed_heartbeats} "
                f"heartbeats of {info.heartbeat_interval_s} s){detail}",
            )
        )

    def _escalate(self, now: datetime, effects: list[Effect]) -> None:
        for key, alert in list(self._open.items()):
            due = alert.escalation.next_at
            if due is None or now < due:
                continue
            tiers = self._rs.escalation_tiers(alert.priority)
            current = alert
            # Tier by tier, each its own page: after a long stop several may be due at once.
            while (due := current.escalation.next_at) is not None and due <= now:
                tier = tiers[current.escalation.tier]
                reached = Escalation(tier=current.escalation.tier + 1, to=tier.to)
                current = self._scheduled(replace(current, escalated=True, escalation=reached))
                effects.append(AlertEscalated(current, now, tier.after_min))
            self._open[key] = current

    def _scheduled(self, alert: Alert) -> Alert:
        """The alert with its next escalation tier worked out from the rule set.

        None is due once staff have taken it, while it has not paged (late),
        or after the priority's last tier.
        """
        current = alert.escalation
        tiers = self._rs.escalation_tiers(alert.priority)
        next_at: datetime | None = None
        next_to: tuple[str, ...] | None = None
        paged_at = alert.paged_at
        if alert.state is AlertState.OPEN and paged_at is not None and current.tier < len(tiers):
            upcoming = tiers[current.tier]
            next_at, next_to = paged_at + upcoming.after, upcoming.to
        if (next_at, next_to) == (current.next_at, current.next_to):
            return alert
        return replace(alert, escalation=replace(current, next_at=next_at, next_to=next_to))

    def _local(self, at: datetime) -> str:
        return at.astimezone(self._rs.tz).strftime("%Y-%m-%d %H:%M %Z")

    # -- state -------------------------------------------------------------

    def export_state(self, *, include_last_seen: bool = True) -> dict[str, Any]:
        """Everything a restart must not lose, as JSON-ready data.

        Without ``include_last_seen`` the export is small enough to save with
        every batch: last contact only informs reasons after a restart.
        """
        last_seen = self._last_seen if include_last_seen else {}
        return {
            "version": STATE_VERSION,
            "exported_at": self._clock.now().isoformat(),
            "last_seen": {d: at.isoformat() for d, at in last_seen.items()},
            "timers": [
                _timer_to_json(timer) for waits in self._timers.values() for timer in waits.values()
            ],
            "alerts": [_alert_to_json(alert) for alert in self._open.values()],
            "incidents": [_outage_to_json(outage) for outage in self._outages.values()],
            "remote_checks": [check.to_json() for check in self._checks.values()],
        }

    def import_state(self, state: Mapping[str, Any]) -> None:
        """Restore exported state into a fresh engine at start-up."""
        # The time the gateway itself was down is not held against the devices:
        # every supervised device not already reported silent gets a full k
        # heartbeats from now (the restart) before it counts as silent; those
        # reported before keep their open alert or incident. Saved last contact
        # is kept for the record and the reasons.
        if state.get("version") != STATE_VERSION:
            raise EngineStateError(
                f"saved rule state has version {state.get('version')!r}, expected {STATE_VERSION}"
            )
        try:
            alerts = [_alert_from_json(a) for a in state["alerts"]]
            timers = [_timer_from_json(t) for t in state["timers"]]
            outages = [_outage_from_json(o) for o in state["incidents"]]
            last_seen = {d: datetime.fromisoformat(at) for d, at in state["last_seen"].items()}
            # Absent from state saved before remote checks existed.
            checks = [CheckResult.from_json(c) for c in state.get("remote_checks", [])]
        except (KeyError, TypeError, ValueError) as exc:
            raise EngineStateError(f"saved rule state is malformed: {exc!r}") from exc
        now = self._clock.now()
        # The next tier follows the rule set in force now, which may have changed.
        self._open = {(a.device_id, a.rule_id): self._scheduled(a) for a in alerts}
        self._checks = {(c.device_id, c.planned_at.isoformat()): c for c in checks}
        self._by_id = {a.alert_id: (a.device_id, a.rule_id) for a in alerts}
        self._timers = {}
        for timer in timers:
            self._timers.setdefault((timer.device_id, timer.rule_id), {})[timer.match] = timer
        for outage in outages:
            # A device that has left the registry cannot come back to end it.
            outage.silent &= self._limit.keys()
        self._outages = {o.org: o for o in outages}
        self._in_outage = {d: o.org for o in outages for d in o.silent}
        self._held = {}
        for device_id in self._limit:
            self._watch(device_id, last_seen=last_seen.get(device_id), now=now)


def _position(event: Event) -> Position | None:
    """The event's position attribute (SCAIP <lge>), which an alert it opens carries."""
    value = event.attributes.get("position")
    return value if isinstance(value, dict) else None


def _value(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Escalation):
        # The next tier is worked out again from the rule set on import.
        return {"tier": value.tier, "to": list(value.to)}
    return value


def _when(value: Any) -> datetime:
    when = datetime.fromisoformat(value)
    if when.tzinfo is None:
        raise ValueError(f"time {value!r} has no offset")
    return when


def _alert_to_json(alert: Alert) -> dict[str, Any]:
    return {name: _value(getattr(alert, name)) for name in Alert.__dataclass_fields__}


def _alert_from_json(data: Mapping[str, Any]) -> Alert:
    paged_at = data["paged_at"]
    return Alert(
        alert_id=data["alert_id"],
        org=data["org"],
        device_id=data["device_id"],
        rule_id=data["rule_id"],
        title=data["title"],
        priority=Priority(data["priority"]),
        state=AlertState(data["state"]),
        occurred_at=_when(data["occurred_at"]),
        opened_at=_when(data["opened_at"]),
        paged_at=None if paged_at is None else _when(paged_at),
        last_seen_at=_when(data["last_seen_at"]),
        count=int(data["count"]),
        escalated=bool(data["escalated"]),
        late=bool(data["late"]),
        reason=data["reason"],
        kind=data["kind"],
        event_id=data["event_id"],
        match=data["match"],
        outcome=data["outcome"],
        handled_by=data.get("handled_by"),
        escalation=_escalation_from_json(data.get("escalation"), escalated=bool(data["escalated"])),
        handled_by_name=data.get("handled_by_name"),
        position=data.get("position"),
    )


def _escalation_from_json(data: Mapping[str, Any] | None, *, escalated: bool) -> Escalation:
    if data is None:
        # Saved before escalation had tiers: an escalated alert had reached the one there was.
        return Escalation(tier=1) if escalated else NOT_ESCALATED
    return Escalation(tier=int(data["tier"]), to=tuple(str(r) for r in data["to"]))


def _timer_to_json(timer: _Timer) -> dict[str, Any]:
    return {name: _value(getattr(timer, name)) for name in _Timer.__dataclass_fields__}


def _timer_from_json(data: Mapping[str, Any]) -> _Timer:
    return _Timer(
        org=data["org"],
        device_id=data["device_id"],
        rule_id=data["rule_id"],
        match=data["match"],
        kind=data["kind"],
        started_at=_when(data["started_at"]),
        deadline=_when(data["deadline"]),
        late=bool(data["late"]),
        event_id=data["event_id"],
    )


def _outage_to_json(outage: _Outage) -> dict[str, Any]:
    recovering = outage.recovering_since
    return {
        "incident_id": outage.incident_id,
        "org": outage.org,
        "opened_at": outage.opened_at.isoformat(),
        "device_ids": list(outage.devices),
        "silent": sorted(outage.silent),
        "recovering_since": None if recovering is None else recovering.isoformat(),
    }


def _outage_from_json(data: Mapping[str, Any]) -> _Outage:
    recovering = data["recovering_since"]
    return _Outage(
        incident_id=data["incident_id"],
        org=data["org"],
        opened_at=_when(data["opened_at"]),
        devices=dict.fromkeys(data["device_ids"]),
        silent=set(data["silent"]),
        recovering_since=None if recovering is None else _when(recovering),
    )
