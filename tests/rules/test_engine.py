"""The engine on immediate and threshold rules: one alert per device and rule, escalation, late."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any, TypeVar

import pytest

from core.events import Family, Position
from rules.engine import EngineStateError, RuleEngine
from rules.lifecycle import HandoverRequired, TransitionError
from rules.model import (
    AlertCleared,
    AlertEscalated,
    AlertOpened,
    AlertRepeated,
    AlertState,
    AlertTransitioned,
    DeviceInfo,
    Effect,
    Escalation,
    Priority,
)
from tests.rules import ORG, event, make_engine, run, se

T0 = se(2026, 11, 23, 2, 0)
DEVICES = {"alarm-1": DeviceInfo(ORG, Family.ALARM, 60)}


E = TypeVar("E", bound=Effect)


def _only(effects: list[Effect], kind: type[E]) -> E:
    assert len(effects) == 1, effects
    assert isinstance(effects[0], kind), effects
    return effects[0]


def _heartbeats(engine: RuleEngine, device_id: str, start: int, stop: int) -> None:
    """Keep a device alive so supervision stays out of the way."""
    for minute in range(start, stop):
        at = T0 + timedelta(minutes=minute)
        engine.on_event(event(device_id, "device.heartbeat", at), org=ORG)


def test_an_alarm_button_opens_one_paging_alert() -> None:
    engine, _ = make_engine(T0, DEVICES)
    opened = _only(engine.on_event(event("alarm-1", "alarm.button", T0), org=ORG), AlertOpened)
    alert = opened.alert
    assert opened.pages
    assert (alert.rule_id, alert.title, alert.priority, alert.state) == (
        "alarm",
        "Larm",
        Priority.CRITICAL,
        AlertState.OPEN,
    )
    assert (alert.org, alert.device_id, alert.kind, alert.count) == (
        ORG,
        "alarm-1",
        "alarm.button",
        1,
    )
    assert alert.reason == "alarm.button at 2026-11-23 02:00 CET"
    assert opened.transition.from_state is None
    assert opened.transition.actor == "rule:alarm"
    assert engine.open_alerts() == [alert]


def test_the_alert_id_is_the_same_when_the_event_is_replayed() -> None:
    first, _ = make_engine(T0, DEVICES)
    second, _ = make_engine(T0, DEVICES)
    fall = event("alarm-1", "alarm.fall", T0)
    a = _only(first.on_event(fall, org=ORG), AlertOpened).alert
    b = _only(second.on_event(fall, org=ORG), AlertOpened).alert
    assert a.alert_id == b.alert_id


def test_repeats_bump_the_count_and_last_seen_and_do_not_page() -> None:
    engine, _ = make_engine(T0, DEVICES)
    engine.on_event(event("alarm-1", "alarm.button", T0), org=ORG)
    effects = [
        effect
        for minute in (1, 2)
        for effect in engine.on_event(
            event("alarm-1", "alarm.button", T0 + timedelta(minutes=minute)), org=ORG
        )
    ]
    assert [type(e) for e in effects] == [AlertRepeated, AlertRepeated]
    assert not any(e.pages for e in effects)
    [alert] = engine.open_alerts()
    assert alert.count == 3
    assert alert.last_seen_at == T0 + timedelta(minutes=2)
    assert alert.occurred_at == T0


def test_different_rules_and_devices_get_their_own_alerts() -> None:
    engine, _ = make_engine(T0, DEVICES)
    engine.on_event(event("alarm-1", "alarm.button", T0), org=ORG)
    engine.on_event(event("alarm-1", "alarm.fall", T0), org=ORG)
    engine.on_event(event("alarm-2", "alarm.button", T0), org=ORG)
    assert sorted((a.device_id, a.rule_id) for a in engine.open_alerts()) == [
        ("alarm-1", "alarm"),
        ("alarm-1", "fall"),
        ("alarm-2", "alarm"),
    ]


def test_a_reset_at_the_unit_clears_the_alert_and_keeps_it_for_the_record() -> None:
    engine, _ = make_engine(T0, DEVICES)
    opened = _only(engine.on_event(event("alarm-1", "alarm.button", T0), org=ORG), AlertOpened)
    reset_at = T0 + timedelta(seconds=30)
    cleared = _only(
        engine.on_event(event("alarm-1", "alarm.reset", reset_at), org=ORG), AlertCleared
    )
    assert cleared.alert.alert_id == opened.alert.alert_id
    assert cleared.alert.state is AlertState.CLEARED
    assert not cleared.pages
    assert (cleared.transition.actor, cleared.transition.at) == ("device:alarm-1", reset_at)
    assert cleared.transition.from_state is AlertState.OPEN
    assert engine.open_alerts() == []
    again = _only(
        engine.on_event(event("alarm-1", "alarm.button", T0 + timedelta(minutes=5)), org=ORG),
        AlertOpened,
    )
    assert again.alert.alert_id != opened.alert.alert_id


def test_a_reset_older_than_the_alert_does_not_clear_it() -> None:
    engine, _ = make_engine(T0, DEVICES)
    engine.on_event(event("alarm-1", "alarm.button", T0), org=ORG)
    old_reset = event("alarm-1", "alarm.reset", T0 - timedelta(minutes=1), received_at=T0)
    assert engine.on_event(old_reset, org=ORG) == []
    assert len(engine.open_alerts()) == 1


def test_an_unacknowledged_alert_escalates_tier_by_tier_to_its_recipients() -> None:
    engine, clock = make_engine(T0, DEVICES)
    opened = _only(engine.on_event(event("alarm-1", "alarm.button", T0), org=ORG), AlertOpened)
    assert opened.alert.escalation == Escalation(
        tier=0, to=(), next_at=T0 + timedelta(minutes=2), next_to=("role:coordinator",)
    )
    assert not opened.alert.escalated
    _heartbeats(engine, "alarm-1", 1, 10)
    assert run(engine, clock, T0 + timedelta(minutes=1, seconds=59), step_s=1) == []
    clock.advance(timedelta(seconds=1))
    first = _only(engine.tick(clock.now()), AlertEscalated)
    assert first.pages
    assert (first.at, first.after_min) == (T0 + timedelta(minutes=2), 2)
    assert first.alert.escalated
    assert first.alert.state is AlertState.OPEN
    assert first.alert.escalation == Escalation(
        tier=1,
        to=("role:coordinator",),
        next_at=T0 + timedelta(minutes=5),
        next_to=("role:operator",),
    )
    assert engine.get(first.alert.alert_id) == first.alert
    assert run(engine, clock, T0 + timedelta(minutes=4, seconds=59), step_s=1) == []
    clock.advance(timedelta(seconds=1))
    second = _only(engine.tick(clock.now()), AlertEscalated)
    assert second.after_min == 5
    assert second.alert.escalation == Escalation(tier=2, to=("role:operator",))
    # The last tier is reached: nothing more comes.
    assert run(engine, clock, T0 + timedelta(minutes=9)) == []


def test_acknowledging_stops_the_tiers_and_keeps_the_one_reached() -> None:
    engine, clock = make_engine(T0, DEVICES)
    opened = _only(engine.on_event(event("alarm-1", "alarm.fall", T0), org=ORG), AlertOpened)
    _heartbeats(engine, "alarm-1", 1, 20)
    run(engine, clock, T0 + timedelta(minutes=3))
    acked = engine.act(opened.alert.alert_id, AlertState.ACKNOWLEDGED, actor="staff-7")
    assert acked.alert.escalation == Escalation(tier=1, to=("role:coordinator",))
    assert run(engine, clock, T0 + timedelta(minutes=20)) == []


def test_tiers_missed_while_stopped_each_page_on_the_first_tick() -> None:
    engine, clock = make_engine(T0, DEVICES)
    engine.on_event(event("alarm-1", "alarm.button", T0), org=ORG)
    clock.advance(timedelta(minutes=6))
    effects = engine.tick(clock.now())
    tiers = [e.alert.escalation.tier for e in effects if isinstance(e, AlertEscalated)]
    assert tiers == [1, 2]


def test_an_organisation_s_own_tiers_name_groups() -> None:
    engine, clock = make_engine(
        T0,
        DEVICES,
        "escalation:\n  3: [{after_min: 0.5, to: ['group:nattledning', 'role:admin']}]\n",
    )
    engine.on_event(event("alarm-1", "device.power_lost", T0), org=ORG)
    _heartbeats(engine, "alarm-1", 1, 3)
    effects = run(engine, clock, T0 + timedelta(minutes=2), step_s=1)
    escalated = _only([e for e in effects if isinstance(e, AlertEscalated)], AlertEscalated)
    assert escalated.at == T0 + timedelta(seconds=30)
    assert escalated.alert.escalation.to == ("group:nattledning", "role:admin")


def test_an_acknowledged_alert_does_not_escalate() -> None:
    engine, clock = make_engine(T0, DEVICES)
    opened = _only(engine.on_event(event("alarm-1", "alarm.button", T0), org=ORG), AlertOpened)
    clock.advance(timedelta(minutes=1))
    acked = engine.act(opened.alert.alert_id, AlertState.ACKNOWLEDGED, actor="staff-7")
    assert isinstance(acked, AlertTransitioned)
    assert (acked.transition.actor, acked.transition.at) == ("staff-7", T0 + timedelta(minutes=1))
    _heartbeats(engine, "alarm-1", 1, 30)
    assert run(engine, clock, T0 + timedelta(minutes=30)) == []


def test_each_priority_has_its_own_limit_and_low_never_escalates() -> None:
    engine, clock = make_engine(T0, DEVICES)
    engine.on_event(event("alarm-1", "device.power_lost", T0), org=ORG)  # priority 3: 15 min
    engine.on_event(event("alarm-1", "device.battery_low", T0), org=ORG)  # priority 4: never
    _heartbeats(engine, "alarm-1", 1, 60)
    effects = run(engine, clock, T0 + timedelta(minutes=60))
    escalated = [e for e in effects if isinstance(e, AlertEscalated)]
    assert [(e.alert.rule_id, e.at) for e in escalated] == [
        ("power_lost", T0 + timedelta(minutes=15))
    ]


def test_staff_move_an_alert_to_resolved_with_an_outcome() -> None:
    engine, clock = make_engine(T0, DEVICES)
    opened = _only(engine.on_event(event("alarm-1", "alarm.fall", T0), org=ORG), AlertOpened)
    alert_id = opened.alert.alert_id
    for to in (AlertState.ACKNOWLEDGED, AlertState.EN_ROUTE, AlertState.ON_SITE):
        clock.advance(timedelta(minutes=1))
        engine.act(alert_id, to, actor="staff-7")
    with pytest.raises(TransitionError, match="expected an outcome from"):
        engine.act(alert_id, AlertState.RESOLVED, actor="staff-7", outcome="fixed it")
    with pytest.raises(TransitionError, match="only the device clears"):
        engine.act(alert_id, AlertState.CLEARED, actor="staff-7")
    done = engine.act(
        alert_id, AlertState.RESOLVED, actor="staff-7", note="helped up", outcome="help_given"
    )
    assert (done.alert.state, done.alert.outcome, done.transition.note) == (
        AlertState.RESOLVED,
        "help_given",
        "helped up",
    )
    assert engine.open_alerts() == []
    with pytest.raises(TransitionError, match="is not open"):
        engine.act(alert_id, AlertState.ACKNOWLEDGED, actor="staff-7")
    # The (device, rule) slot is free again: a new fall is a new alert.
    again = engine.on_event(event("alarm-1", "alarm.fall", T0 + timedelta(minutes=9)), org=ORG)
    assert isinstance(again[0], AlertOpened)


def test_a_step_on_someone_elses_alert_is_a_said_takeover_kept_across_a_restart() -> None:
    engine, clock = make_engine(T0, DEVICES)
    opened = _only(engine.on_event(event("alarm-1", "alarm.fall", T0), org=ORG), AlertOpened)
    alert_id = opened.alert.alert_id
    acked = engine.act(alert_id, AlertState.ACKNOWLEDGED, actor="staff-7", actor_name="Sju")
    assert (acked.alert.handled_by_name, acked.handover) == ("Sju", None)
    clock.advance(timedelta(minutes=1))
    with pytest.raises(HandoverRequired, match="handled by Sju") as refused:
        engine.act(alert_id, AlertState.EN_ROUTE, actor="staff-8")
    assert (refused.value.handled_by, refused.value.handled_by_name) == ("staff-7", "Sju")
    # A step the lifecycle refuses takes nothing over.
    with pytest.raises(TransitionError, match="cannot go from acknowledged to on_site"):
        engine.act(alert_id, AlertState.ON_SITE, actor="staff-8", takeover=True)
    assert engine.open_alerts()[0].handled_by == "staff-7"

    moved = engine.act(
        alert_id, AlertState.EN_ROUTE, actor="staff-8", actor_name="Åtta", takeover=True
    )
    assert moved.handover is not None
    assert (moved.handover.from_state, moved.handover.to_state, moved.handover.actor) == (
        AlertState.ACKNOWLEDGED, AlertState.ACKNOWLEDGED, "staff-8",
    )  # fmt: skip
    assert moved.handover.took_over_from == "staff-7"
    assert (moved.transition.to_state, moved.transition.took_over_from) == (
        AlertState.EN_ROUTE,
        None,
    )
    assert (moved.alert.handled_by, moved.alert.handled_by_name) == ("staff-8", "Åtta")
    # The same handler's next step needs no takeover.
    assert engine.act(alert_id, AlertState.ON_SITE, actor="staff-8").handover is None

    restarted, _ = make_engine(clock.now(), DEVICES)
    restarted.import_state(json.loads(json.dumps(engine.export_state())))
    assert restarted.open_alerts()[0].handled_by_name == "Åtta"


def test_a_late_event_is_marked_late_never_pages_and_never_escalates() -> None:
    engine, clock = make_engine(T0, DEVICES)
    # A lock-style sync: the fall happened an hour before it reached the gateway.
    late_fall = event("alarm-1", "alarm.fall", T0 - timedelta(hours=1), received_at=T0)
    effects = engine.on_event(late_fall, org=ORG)
    opened = _only(effects, AlertOpened)
    assert opened.alert.late
    assert opened.alert.paged_at is None
    assert not any(e.pages for e in effects)
    _heartbeats(engine, "alarm-1", 1, 30)
    assert run(engine, clock, T0 + timedelta(minutes=30)) == []


def test_within_the_horizon_an_event_still_pages() -> None:
    engine, _ = make_engine(T0, DEVICES)
    delayed = event("alarm-1", "alarm.fall", T0 - timedelta(minutes=14), received_at=T0)
    assert _only(engine.on_event(delayed, org=ORG), AlertOpened).pages


def test_a_live_repeat_of_a_late_alert_pages_once() -> None:
    engine, clock = make_engine(T0, DEVICES)
    engine.on_event(
        event("alarm-1", "alarm.fall", T0 - timedelta(hours=1), received_at=T0), org=ORG
    )
    clock.advance(timedelta(minutes=1))
    live = engine.on_event(event("alarm-1", "alarm.fall", clock.now()), org=ORG)
    repeated = _only(live, AlertRepeated)
    assert repeated.pages and repeated.promoted
    assert not repeated.alert.late
    assert repeated.alert.paged_at == clock.now()
    again = engine.on_event(event("alarm-1", "alarm.fall", clock.now()), org=ORG)
    assert not _only(again, AlertRepeated).pages
    # Escalation now runs from the live page.
    escalated = [
        e for e in run(engine, clock, T0 + timedelta(minutes=3)) if isinstance(e, AlertEscalated)
    ]
    assert [e.at for e in escalated] == [T0 + timedelta(minutes=3)]


def test_battery_below_the_limit_raises_and_clears_only_well_above_it() -> None:
    engine, _ = make_engine(T0, DEVICES)

    def beat(minute: int, battery: int) -> list[Effect]:
        at = T0 + timedelta(minutes=minute)
        return engine.on_event(event("alarm-1", "device.heartbeat", at, battery=battery), org=ORG)

    assert beat(0, 21) == []
    opened = _only(beat(1, 19), AlertOpened)
    assert (opened.alert.rule_id, opened.alert.priority) == ("battery_low", Priority.LOW)
    assert opened.alert.reason == "battery 19 (below 20) at 2026-11-23 02:01 CET"
    assert isinstance(beat(2, 18)[0], AlertRepeated)
    assert beat(3, 25) == []  # between the limit and clears_at: still low
    cleared = _only(beat(4, 30), AlertCleared)
    assert cleared.alert.count == 2


def test_the_device_s_own_battery_low_report_raises_too() -> None:
    engine, _ = make_engine(T0, DEVICES)
    opened = _only(
        engine.on_event(event("alarm-1", "device.battery_low", T0), org=ORG), AlertOpened
    )
    assert opened.alert.rule_id == "battery_low"
    assert opened.alert.reason == "device.battery_low at 2026-11-23 02:00 CET"


def test_a_rule_switched_off_for_one_device_stays_quiet_for_it_only() -> None:
    engine, _ = make_engine(
        T0, DEVICES, override="devices:\n  alarm-1:\n    power_lost: {enabled: false}\n"
    )
    assert engine.on_event(event("alarm-1", "device.power_lost", T0), org=ORG) == []
    assert len(engine.on_event(event("alarm-2", "device.power_lost", T0), org=ORG)) == 1


def test_a_power_restore_clears_power_lost() -> None:
    engine, _ = make_engine(T0, DEVICES)
    engine.on_event(event("alarm-1", "device.power_lost", T0), org=ORG)
    restored = event("alarm-1", "device.power_restored", T0 + timedelta(hours=1))
    _only(engine.on_event(restored, org=ORG), AlertCleared)


def test_state_with_open_alerts_survives_a_json_round_trip() -> None:
    engine, clock = make_engine(T0, DEVICES)
    opened = _only(engine.on_event(event("alarm-1", "alarm.button", T0), org=ORG), AlertOpened)
    clock.advance(timedelta(seconds=30))
    engine.act(opened.alert.alert_id, AlertState.ACKNOWLEDGED, actor="staff-7")
    saved = json.loads(json.dumps(engine.export_state()))
    restarted, _ = make_engine(T0 + timedelta(minutes=1), DEVICES)
    restarted.import_state(saved)
    assert restarted.open_alerts() == engine.open_alerts()
    repeat = restarted.on_event(
        event("alarm-1", "alarm.button", T0 + timedelta(minutes=1)), org=ORG
    )
    assert _only(repeat, AlertRepeated).alert.count == 2


def test_unreadable_state_is_refused() -> None:
    engine, _ = make_engine(T0, DEVICES)
    with pytest.raises(EngineStateError, match="version"):
        engine.import_state({"version": 99})
    with pytest.raises(EngineStateError, match="malformed"):
        engine.import_state({"version": 1, "alerts": [{"alert_id": "a:1"}]})


def _saved_at_the_first_tier() -> dict[str, Any]:
    """The saved state (through JSON) of an engine whose alarm reached its first tier."""
    engine, clock = make_engine(T0, DEVICES)
    engine.on_event(event("alarm-1", "alarm.button", T0), org=ORG)
    clock.advance(timedelta(minutes=2))
    engine.tick(clock.now())
    saved: dict[str, Any] = json.loads(json.dumps(engine.export_state()))
    return saved


def test_the_tier_reached_survives_a_restart_and_the_next_follows_the_new_rule_set() -> None:
    saved = _saved_at_the_first_tier()
    # Restarted with a rule set whose second tier for priority 1 comes later.
    later = (
        "escalation:\n  1:\n    - {after_min: 2, to: [role:coordinator]}\n"
        "    - {after_min: 8, to: [group:jour]}\n"
    )
    restarted, clock = make_engine(T0 + timedelta(minutes=3), DEVICES, later)
    restarted.import_state(saved)
    (alert,) = restarted.open_alerts()
    assert alert.escalation == Escalation(
        tier=1, to=("role:coordinator",), next_at=T0 + timedelta(minutes=8), next_to=("group:jour",)
    )
    _heartbeats(restarted, "alarm-1", 3, 9)
    effects = run(restarted, clock, T0 + timedelta(minutes=8))
    escalated = _only([e for e in effects if isinstance(e, AlertEscalated)], AlertEscalated)
    assert escalated.alert.escalation.tier == 2


def test_state_saved_before_tiers_reads_an_escalated_alert_as_at_the_first() -> None:
    saved = _saved_at_the_first_tier()
    for alert in saved["alerts"]:
        del alert["escalation"]
    restarted, _ = make_engine(T0 + timedelta(minutes=3), DEVICES)
    restarted.import_state(saved)
    (alert,) = restarted.open_alerts()
    assert (alert.escalation.tier, alert.escalation.next_to) == (1, ("role:operator",))


def test_the_alert_carries_the_opening_event_s_position_through_repeats_and_restarts() -> None:
    engine, _ = make_engine(T0, DEVICES)
    where = Position(lat=59.334591, lon=18.06324, at="2026-11-23T01:00:00+00:00")
    opened = _only(
        engine.on_event(event("alarm-1", "alarm.button", T0, position=where), org=ORG), AlertOpened
    )
    assert opened.alert.position == where
    # A repeat from elsewhere keeps where the alarm began: that is where the patrol goes.
    elsewhere = Position(lat=59.4, lon=18.1, at=None)
    later = T0 + timedelta(seconds=30)
    repeat = engine.on_event(event("alarm-1", "alarm.button", later, position=elsewhere), org=ORG)
    assert _only(repeat, AlertRepeated).alert.position == where
    saved = json.loads(json.dumps(engine.export_state()))
    restarted, _ = make_engine(T0 + timedelta(minutes=1), DEVICES)
    restarted.import_state(saved)
    assert [a.position for a in restarted.open_alerts()] == [where]


def test_an_alert_without_a_position_says_none() -> None:
    engine, _ = make_engine(T0, DEVICES)
    opened = _only(engine.on_event(event("alarm-1", "alarm.button", T0), org=ORG), AlertOpened)
    assert opened.alert.position is None
