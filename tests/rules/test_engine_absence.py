"""Absence rules: not back in bed, dose not taken, door open; night windows, DST and restarts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from core.events import Family
from rules.engine import RuleEngine
from rules.model import AlertCleared, AlertOpened, AlertRepeated, DeviceInfo, Effect
from tests.rules import ORG, event, make_engine, run, se

# Supervision is kept out of these tests: the devices are not registered.
NO_DEVICES: dict[str, DeviceInfo] = {}


def _opened(effects: list[Effect]) -> list[AlertOpened]:
    return [e for e in effects if isinstance(e, AlertOpened)]


def _left_bed(engine: RuleEngine, at: datetime, device: str = "sensor-1") -> list[Effect]:
    return engine.on_event(event(device, "sensor.left_bed", at), org=ORG)


def test_not_back_in_bed_fires_twenty_minutes_after_leaving_at_night() -> None:
    engine, clock = make_engine(se(2026, 11, 23, 2, 10))
    assert _left_bed(engine, clock.now()) == []
    assert run(engine, clock, se(2026, 11, 23, 2, 29) + timedelta(seconds=59), step_s=1) == []
    [opened] = _opened(run(engine, clock, se(2026, 11, 23, 2, 30), step_s=1))
    alert = opened.alert
    assert opened.pages
    assert (alert.rule_id, alert.title, alert.device_id) == (
        "not_back_in_bed",
        "Ej tillbaka i sängen",
        "sensor-1",
    )
    assert alert.occurred_at == se(2026, 11, 23, 2, 10)
    assert alert.opened_at == se(2026, 11, 23, 2, 30)
    assert alert.reason == (
        "sensor.left_bed at 2026-11-23 02:10 CET, no sensor.in_bed within 20 min"
    )
    assert _opened(run(engine, clock, se(2026, 11, 23, 2, 40))) == []


def test_back_in_bed_at_2_25_means_no_alert() -> None:
    engine, clock = make_engine(se(2026, 11, 23, 2, 10))
    _left_bed(engine, clock.now())
    run(engine, clock, se(2026, 11, 23, 2, 25))
    assert engine.on_event(event("sensor-1", "sensor.in_bed", clock.now()), org=ORG) == []
    assert run(engine, clock, se(2026, 11, 23, 3, 0)) == []
    assert engine.open_alerts() == []


def test_back_in_bed_after_the_alert_clears_it() -> None:
    engine, clock = make_engine(se(2026, 11, 23, 2, 10))
    _left_bed(engine, clock.now())
    run(engine, clock, se(2026, 11, 23, 2, 40))
    back = engine.on_event(event("sensor-1", "sensor.in_bed", clock.now()), org=ORG)
    [cleared] = back
    assert isinstance(cleared, AlertCleared)
    assert cleared.transition.actor == "device:sensor-1"
    assert cleared.transition.note == "sensor.in_bed at 2026-11-23 02:40 CET"


def test_back_in_bed_reported_late_but_in_time_clears_the_alert() -> None:
    engine, clock = make_engine(se(2026, 11, 23, 2, 10))
    _left_bed(engine, clock.now())
    run(engine, clock, se(2026, 11, 23, 2, 31))
    in_time = event("sensor-1", "sensor.in_bed", se(2026, 11, 23, 2, 25), received_at=clock.now())
    assert isinstance(engine.on_event(in_time, org=ORG)[0], AlertCleared)


def test_leaving_the_bed_in_the_day_raises_nothing() -> None:
    engine, clock = make_engine(se(2026, 11, 23, 14, 0))
    _left_bed(engine, clock.now())
    assert run(engine, clock, se(2026, 11, 23, 15, 0), step_s=60) == []


def test_a_wait_begun_at_night_may_end_after_it() -> None:
    engine, clock = make_engine(se(2026, 11, 23, 6, 55))
    _left_bed(engine, clock.now())
    [opened] = _opened(run(engine, clock, se(2026, 11, 23, 7, 20)))
    assert opened.alert.opened_at == se(2026, 11, 23, 7, 15)


def test_a_second_left_bed_keeps_the_first_deadline() -> None:
    engine, clock = make_engine(se(2026, 11, 23, 2, 10))
    _left_bed(engine, clock.now())
    clock.advance(timedelta(minutes=5))
    _left_bed(engine, clock.now())
    [opened] = _opened(run(engine, clock, se(2026, 11, 23, 2, 40)))
    assert opened.alert.opened_at == se(2026, 11, 23, 2, 30)


def test_leaving_again_while_the_alert_is_open_bumps_its_count() -> None:
    engine, clock = make_engine(se(2026, 11, 23, 2, 10))
    _left_bed(engine, clock.now())
    run(engine, clock, se(2026, 11, 23, 2, 31))
    _left_bed(engine, clock.now())
    effects = run(engine, clock, se(2026, 11, 23, 3, 0))
    [repeated] = [e for e in effects if isinstance(e, AlertRepeated)]
    assert repeated.alert.count == 2
    assert not repeated.pages


def test_a_person_s_own_minutes_apply_to_their_sensor() -> None:
    override = "devices:\n  sensor-1:\n    not_back_in_bed: {within_min: 30}\n"
    engine, clock = make_engine(se(2026, 11, 23, 2, 10), NO_DEVICES, override)
    _left_bed(engine, clock.now())
    _left_bed(engine, clock.now(), device="sensor-2")
    effects = _opened(run(engine, clock, se(2026, 11, 23, 3, 0)))
    assert [(e.alert.device_id, e.alert.opened_at) for e in effects] == [
        ("sensor-2", se(2026, 11, 23, 2, 30)),
        ("sensor-1", se(2026, 11, 23, 2, 40)),
    ]


def test_a_deadline_across_the_spring_switch_is_twenty_real_minutes() -> None:
    # 29 March 2026, 01:55 CET; at 02:00 the clocks jump to 03:00 CEST.
    start = se(2026, 3, 29, 1, 55)
    engine, clock = make_engine(start)
    _left_bed(engine, start)
    assert run(engine, clock, se(2026, 3, 29, 3, 14), step_s=1) == []
    [opened] = _opened(run(engine, clock, se(2026, 3, 29, 3, 15), step_s=1))
    assert opened.alert.opened_at == datetime(2026, 3, 29, 1, 15, tzinfo=UTC)
    assert opened.alert.reason.startswith("sensor.left_bed at 2026-03-29 01:55 CET")


def test_a_deadline_across_the_autumn_switch_is_twenty_real_minutes() -> None:
    # 25 October 2026, 02:50 summer time; at 03:00 CEST the clocks go back to 02:00 CET.
    start = se(2026, 10, 25, 2, 50, fold=0)
    engine, clock = make_engine(start)
    _left_bed(engine, start)
    assert run(engine, clock, se(2026, 10, 25, 2, 9, fold=1) + timedelta(seconds=59)) == []
    [opened] = _opened(run(engine, clock, se(2026, 10, 25, 2, 10, fold=1), step_s=1))
    assert opened.alert.opened_at == datetime(2026, 10, 25, 1, 10, tzinfo=UTC)


def test_the_night_of_the_spring_switch_ends_at_seven_summer_time() -> None:
    engine, clock = make_engine(se(2026, 3, 29, 6, 30))
    _left_bed(engine, clock.now())  # 06:30 CEST: night
    _left_bed(engine, se(2026, 3, 29, 7, 5), device="sensor-2")  # 07:05 CEST: morning
    effects = _opened(run(engine, clock, se(2026, 3, 29, 8, 0), step_s=60))
    assert [e.alert.device_id for e in effects] == ["sensor-1"]


def test_the_night_of_the_autumn_switch_ends_at_seven_winter_time() -> None:
    engine, clock = make_engine(se(2026, 10, 25, 6, 30))
    # 06:30 CET is 05:30 UTC: with the evening's summer offset it would look like 07:30.
    _left_bed(engine, clock.now())
    _left_bed(engine, se(2026, 10, 25, 7, 0), device="sensor-2")
    effects = _opened(run(engine, clock, se(2026, 10, 25, 8, 0), step_s=60))
    assert [e.alert.device_id for e in effects] == ["sensor-1"]


def test_a_restart_between_left_bed_and_its_deadline_fires_once_on_time() -> None:
    first, clock = make_engine(se(2026, 11, 23, 2, 10))
    _left_bed(first, clock.now())
    run(first, clock, se(2026, 11, 23, 2, 15))
    saved = json.loads(json.dumps(first.export_state()))

    # The gateway is down for a minute and starts with a fresh engine.
    second, clock = make_engine(se(2026, 11, 23, 2, 16))
    second.import_state(saved)
    assert run(second, clock, se(2026, 11, 23, 2, 29) + timedelta(seconds=59), step_s=1) == []
    [opened] = _opened(run(second, clock, se(2026, 11, 23, 2, 30), step_s=1))
    assert opened.alert.occurred_at == se(2026, 11, 23, 2, 10)
    assert _opened(run(second, clock, se(2026, 11, 23, 3, 0))) == []

    # Restarting again after it fired does not fire it again.
    third, clock = make_engine(se(2026, 11, 23, 2, 45))
    third.import_state(json.loads(json.dumps(second.export_state())))
    assert run(third, clock, se(2026, 11, 23, 3, 30)) == []
    assert [a.alert_id for a in third.open_alerts()] == [opened.alert.alert_id]


def test_a_deadline_found_long_after_a_downtime_is_late() -> None:
    first, clock = make_engine(se(2026, 11, 23, 2, 10))
    _left_bed(first, clock.now())
    saved = first.export_state()
    second, clock = make_engine(se(2026, 11, 23, 3, 30))
    second.import_state(saved)
    [opened] = _opened(second.tick(clock.now()))
    assert opened.alert.late
    assert not opened.pages


def test_a_late_synced_start_and_end_together_raise_nothing() -> None:
    now = se(2026, 11, 23, 3, 0)
    engine, clock = make_engine(now)
    engine.on_event(
        event("sensor-1", "sensor.left_bed", se(2026, 11, 23, 1, 0), received_at=now), org=ORG
    )
    engine.on_event(
        event("sensor-1", "sensor.in_bed", se(2026, 11, 23, 1, 5), received_at=now), org=ORG
    )
    assert run(engine, clock, now + timedelta(minutes=30)) == []


def test_a_late_start_alone_raises_a_late_alert_that_does_not_page() -> None:
    now = se(2026, 11, 23, 3, 0)
    engine, clock = make_engine(now)
    engine.on_event(
        event("sensor-1", "sensor.left_bed", se(2026, 11, 23, 1, 0), received_at=now), org=ORG
    )
    effects = run(engine, clock, now + timedelta(minutes=30))
    [opened] = _opened(effects)
    assert opened.alert.late
    assert not any(e.pages for e in effects)


def test_an_earlier_in_bed_arriving_late_does_not_end_a_later_wait() -> None:
    engine, clock = make_engine(se(2026, 11, 23, 2, 10))
    _left_bed(engine, clock.now())
    stale = event("sensor-1", "sensor.in_bed", se(2026, 11, 23, 2, 5), received_at=clock.now())
    engine.on_event(stale, org=ORG)
    assert len(_opened(run(engine, clock, se(2026, 11, 23, 2, 31)))) == 1


def test_doses_are_waited_for_one_by_one() -> None:
    engine, clock = make_engine(se(2026, 11, 23, 8, 0))

    def dose(kind: str, at: datetime, dose_id: str) -> list[Effect]:
        return engine.on_event(event("disp-1", kind, at, dose_id=dose_id), org=ORG)

    dose("dispenser.dose_due", se(2026, 11, 23, 8, 0), "d-08")
    dose("dispenser.dose_due", se(2026, 11, 23, 8, 1), "d-08b")
    # Taking one dose does not answer for the other.
    assert dose("dispenser.dose_taken", se(2026, 11, 23, 8, 20), "d-08") == []
    [opened] = _opened(run(engine, clock, se(2026, 11, 23, 9, 0)))
    alert = opened.alert
    assert (alert.rule_id, alert.title, alert.match) == ("dose_not_taken", "Missad dos", "d-08b")
    assert alert.opened_at == se(2026, 11, 23, 8, 31)
    # Another dose taken later does not clear the missed one; this one does.
    assert dose("dispenser.dose_taken", se(2026, 11, 23, 12, 5), "d-12") == []
    assert isinstance(
        dose("dispenser.dose_taken", se(2026, 11, 23, 12, 6), "d-08b")[0], AlertCleared
    )


def test_the_dispenser_s_own_missed_report_raises_at_once_and_only_once() -> None:
    engine, clock = make_engine(se(2026, 11, 23, 8, 0))
    engine.on_event(event("disp-1", "dispenser.dose_due", clock.now(), dose_id="d-1"), org=ORG)
    clock.advance(timedelta(minutes=25))
    missed = event("disp-1", "dispenser.dose_missed", clock.now(), dose_id="d-1")
    [opened] = _opened(engine.on_event(missed, org=ORG))
    assert opened.alert.occurred_at == se(2026, 11, 23, 8, 0)
    assert opened.alert.kind == "dispenser.dose_missed"
    assert _opened(run(engine, clock, se(2026, 11, 23, 9, 0))) == []


def test_a_door_left_open_ten_minutes_raises_and_closing_it_clears() -> None:
    engine, clock = make_engine(se(2026, 11, 23, 21, 0))
    lock = Family.LOCK
    engine.on_event(event("lock-1", "lock.door_opened", clock.now(), family=lock), org=ORG)
    engine.on_event(event("lock-2", "lock.door_opened", clock.now(), family=lock), org=ORG)
    clock.advance(timedelta(minutes=9))
    engine.on_event(event("lock-1", "lock.door_closed", clock.now(), family=lock), org=ORG)
    [opened] = _opened(run(engine, clock, se(2026, 11, 23, 21, 15)))
    assert (opened.alert.device_id, opened.alert.title) == ("lock-2", "Dörr öppen")
    assert opened.alert.opened_at == se(2026, 11, 23, 21, 10)
    closed = engine.on_event(event("lock-2", "lock.door_closed", clock.now(), family=lock), org=ORG)
    assert isinstance(closed[0], AlertCleared)
