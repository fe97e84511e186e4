"""Supervision: 'no contact' per device, one incident for an outage, and restarts."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TypeVar

from core.events import Family
from rules.engine import RuleEngine
from rules.model import (
    AlertCleared,
    AlertOpened,
    DeviceInfo,
    Effect,
    IncidentCleared,
    IncidentOpened,
    IncidentUpdated,
    Priority,
)
from tests.rules import ORG, event, make_engine, run, se

T0 = se(2026, 11, 23, 1, 0)
OTHER = "vardcentral"


def _fleet(count: int, org: str = ORG, prefix: str = "alarm") -> dict[str, DeviceInfo]:
    return {f"{prefix}-{org}-{i:03d}": DeviceInfo(org, Family.ALARM, 60) for i in range(count)}


def _beat(engine: RuleEngine, devices: dict[str, DeviceInfo], minute: float) -> list[Effect]:
    at = T0 + timedelta(minutes=minute)
    effects: list[Effect] = []
    for device_id, info in devices.items():
        effects += engine.on_event(event(device_id, "device.heartbeat", at), org=info.org)
    return effects


E = TypeVar("E", bound=Effect)


def _of(effects: list[Effect], kind: type[E]) -> list[E]:
    return [e for e in effects if isinstance(e, kind)]


def test_one_silent_device_gets_no_contact_after_three_beats_and_the_grouping_wait() -> None:
    quiet = _fleet(1, prefix="quiet")
    live = _fleet(20)
    engine, clock = make_engine(T0, quiet | live)
    effects: list[Effect] = []
    for minute in range(1, 6):
        _beat(engine, live, minute)
        effects += run(engine, clock, T0 + timedelta(minutes=minute), step_s=1)
        if minute < 5:
            assert effects == [], minute
    [opened] = _of(effects, AlertOpened)
    alert = opened.alert
    assert opened.pages
    assert (alert.rule_id, alert.title, alert.priority) == (
        "no_contact",
        "Ingen kontakt",
        Priority.HIGH,
    )
    assert (alert.device_id, alert.kind, alert.occurred_at) == (
        "quiet-hemtjanst-000",
        "device.offline",
        T0,
    )
    # Silent for 3 × 60 s at 01:03, then 2 min to see whether others join it.
    assert alert.opened_at == T0 + timedelta(minutes=5)
    assert alert.reason == "no message since 2026-11-23 01:00 CET (3 heartbeats of 60 s)"

    back = engine.on_event(event("quiet-hemtjanst-000", "device.heartbeat", clock.now()), org=ORG)
    [cleared] = _of(back, AlertCleared)
    assert cleared.transition.note == "back in contact at 2026-11-23 01:05 CET"


def test_a_device_back_within_the_grouping_wait_raises_nothing() -> None:
    engine, clock = make_engine(T0, _fleet(1))
    run(engine, clock, T0 + timedelta(minutes=4))
    engine.on_event(event("alarm-hemtjanst-000", "device.heartbeat", clock.now()), org=ORG)
    assert run(engine, clock, T0 + timedelta(minutes=6)) == []


def test_the_offline_will_is_not_a_sign_of_life() -> None:
    engine, clock = make_engine(T0, _fleet(1))
    run(engine, clock, T0 + timedelta(minutes=2))
    offline = event("alarm-hemtjanst-000", "device.offline", clock.now())
    assert engine.on_event(offline, org=ORG) == []
    assert len(_of(run(engine, clock, T0 + timedelta(minutes=5)), AlertOpened)) == 1


def test_locks_are_not_supervised_and_a_device_can_be_left_out() -> None:
    devices = {
        "lock-1": DeviceInfo(ORG, Family.LOCK, 60),
        "alarm-1": DeviceInfo(ORG, Family.ALARM, 60),
    }
    engine, clock = make_engine(
        T0, devices, override="devices:\n  alarm-1:\n    no_contact: {enabled: false}\n"
    )
    assert run(engine, clock, T0 + timedelta(hours=2), step_s=60) == []


def test_a_person_s_device_may_have_its_own_number_of_beats() -> None:
    devices = _fleet(2)
    first = next(iter(devices))
    override = f"devices:\n  {first}:\n    no_contact: {{missed_heartbeats: 10}}\n"
    engine, clock = make_engine(T0, devices, override)
    opened = _of(run(engine, clock, T0 + timedelta(minutes=13)), AlertOpened)
    assert [(e.alert.device_id, e.alert.opened_at) for e in opened] == [
        ("alarm-hemtjanst-001", T0 + timedelta(minutes=5)),
        (first, T0 + timedelta(minutes=12)),
    ]


def test_two_hundred_devices_silenced_at_once_are_one_incident_not_two_hundred_alerts() -> None:
    silenced = _fleet(200)
    elsewhere = _fleet(50, org=OTHER)
    engine, clock = make_engine(T0, silenced | elsewhere)
    effects: list[Effect] = []
    for minute in range(1, 11):
        effects += _beat(engine, elsewhere, minute)
        effects += run(engine, clock, T0 + timedelta(minutes=minute), step_s=5)
    [incident] = _of(effects, IncidentOpened)
    assert incident.pages
    assert incident.incident.org == ORG
    assert set(incident.incident.device_ids) == set(silenced)
    assert set(incident.incident.silent) == set(silenced)
    assert _of(effects, AlertOpened) == []
    assert [i.org for i in engine.incidents()] == [ORG]

    # The network comes back: every device reports, the incident clears, nobody is paged.
    effects = _beat(engine, silenced | elsewhere, 10.5)
    effects += run(engine, clock, T0 + timedelta(minutes=11), step_s=5)
    [cleared] = _of(effects, IncidentCleared)
    assert cleared.incident.incident_id == incident.incident.incident_id
    assert cleared.incident.silent == ()
    assert cleared.incident.cleared_at is not None
    assert not any(e.pages for e in effects)
    assert engine.incidents() == []
    assert engine.open_alerts() == []


def test_devices_falling_silent_over_a_minute_join_the_one_incident() -> None:
    silenced = _fleet(200)
    engine, clock = make_engine(T0, silenced)
    # Their last beats are spread over a minute, as heartbeats are.
    for i, (device_id, info) in enumerate(silenced.items()):
        at = T0 + timedelta(seconds=60 + i * 60 // 200)
        engine.on_event(event(device_id, "device.heartbeat", at), org=info.org)
    effects = run(engine, clock, T0 + timedelta(minutes=10), step_s=1)
    [opened] = _of(effects, IncidentOpened)
    assert _of(effects, AlertOpened) == []
    updated = _of(effects, IncidentUpdated)
    assert updated and not any(u.pages for u in updated)
    assert set(updated[-1].incident.silent) == set(silenced)
    assert len(opened.incident.device_ids) < 200


def test_stragglers_after_an_outage_get_their_own_alerts_and_the_incident_clears() -> None:
    silenced = _fleet(30)
    engine, clock = make_engine(T0, silenced)
    [opened] = _of(run(engine, clock, T0 + timedelta(minutes=4)), IncidentOpened)
    dead = sorted(silenced)[:3]
    alive = {d: i for d, i in silenced.items() if d not in dead}
    effects: list[Effect] = []
    for minute in range(4, 8):
        _beat(engine, alive, minute)
        effects += run(engine, clock, T0 + timedelta(minutes=minute), step_s=1)
    # From the first tick after the others came back (01:04:01) the three get
    # three beats' time to report.
    assert _of(effects, AlertOpened) == []
    effects = run(engine, clock, T0 + timedelta(minutes=7, seconds=1), step_s=1)
    alerts = _of(effects, AlertOpened)
    assert sorted(a.alert.device_id for a in alerts) == dead
    assert all(a.pages for a in alerts)
    assert alerts[0].alert.reason.endswith(", still silent after the outage")
    [cleared] = _of(effects, IncidentCleared)
    assert cleared.incident.incident_id == opened.incident.incident_id
    assert set(cleared.incident.device_ids) == set(silenced)


def test_in_a_small_organisation_three_of_five_are_an_outage_but_one_is_not() -> None:
    small = _fleet(5)
    ids = sorted(small)
    engine, clock = make_engine(T0, small)
    effects: list[Effect] = []
    for minute in range(1, 13):
        beating = ids[1:] if minute <= 6 else ids[4:]
        _beat(engine, {d: small[d] for d in beating}, minute)
        effects += run(engine, clock, T0 + timedelta(minutes=minute), step_s=5)
    [alone] = _of(effects, AlertOpened)
    assert alone.alert.device_id == ids[0]
    [incident] = _of(effects, IncidentOpened)
    assert sorted(incident.incident.device_ids) == ids[1:4]
    assert incident.incident.opened_at == T0 + timedelta(minutes=9)


def test_a_restart_does_not_page_no_contact_for_the_time_the_gateway_was_down() -> None:
    devices = _fleet(20) | _fleet(1, prefix="dead")
    first, clock = make_engine(T0, devices)
    _beat(first, devices, 0.5)
    saved = json.loads(json.dumps(first.export_state()))
    assert saved["last_seen"]["dead-hemtjanst-000"] == (T0 + timedelta(seconds=30)).isoformat()

    # Down for half an hour; the broker's queued heartbeats arrive as it starts.
    restart = T0 + timedelta(minutes=30)
    second, clock = make_engine(restart, devices)
    second.import_state(saved)
    alive = {d: i for d, i in devices.items() if not d.startswith("dead")}
    effects: list[Effect] = []
    for minute in range(31, 40):
        effects += _beat(second, alive, minute)
        effects += run(second, clock, T0 + timedelta(minutes=minute), step_s=5)
    [opened] = _of(effects, AlertOpened)
    assert opened.alert.device_id == "dead-hemtjanst-000"
    # A full three beats from the restart, plus the grouping wait.
    assert opened.alert.opened_at == restart + timedelta(minutes=5)
    assert opened.alert.occurred_at == T0 + timedelta(seconds=30)
    assert _of(effects, IncidentOpened) == []


def test_an_open_incident_survives_a_restart() -> None:
    silenced = _fleet(30)
    first, clock = make_engine(T0, silenced)
    [opened] = _of(run(first, clock, T0 + timedelta(minutes=4)), IncidentOpened)
    saved = json.loads(json.dumps(first.export_state()))
    second, clock = make_engine(T0 + timedelta(minutes=5), silenced)
    second.import_state(saved)
    assert [i.incident_id for i in second.incidents()] == [opened.incident.incident_id]
    effects = _beat(second, silenced, 6) + run(second, clock, T0 + timedelta(minutes=7))
    assert [type(e) for e in effects] == [IncidentCleared]


def test_registry_changes_are_followed() -> None:
    engine, clock = make_engine(T0, _fleet(2))
    run(engine, clock, T0 + timedelta(minutes=2))
    engine.update_devices(_fleet(1) | {"alarm-new": DeviceInfo(ORG, Family.ALARM, 60)})
    opened = _of(run(engine, clock, T0 + timedelta(minutes=8)), AlertOpened)
    assert [(e.alert.device_id, e.alert.opened_at) for e in opened] == [
        ("alarm-hemtjanst-000", T0 + timedelta(minutes=5)),
        ("alarm-new", T0 + timedelta(minutes=7)),
    ]
