"""Planned remote checks: the night's times, overdue, and "not seen" twice raising the alert."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest

from core.events import Family
from rules.access import (
    AccessDirectoryError,
    night_of,
    parse_directory,
    planned_checks,
    remote_view_entry,
)
from rules.auditlog import Action
from rules.model import AlertOpened, AlertRepeated, DeviceInfo, Priority
from tests.rules import ORG, make_engine, se

SENSOR = "sensor-12"
DEVICES = {SENSOR: DeviceInfo(ORG, Family.SENSOR, 3600)}

DIRECTORY = f"""
organisations:
  - {{org: {ORG}, visit_plan_enforced: false}}
staff:
  - {{org: {ORG}, staff_id: s-anna, pseudonym: Anna N, account: nattpatrull-1}}
shifts:
  - {{org: {ORG}, staff_id: s-anna, start: "2026-03-28T21:00:00+01:00",
     end: "2026-03-29T07:00:00+02:00"}}
grants:
  - {{org: {ORG}, device_id: {SENSOR}, staff_id: s-anna}}
consents:
  - {{device_id: {SENSOR}, consent_on_record: true, windows: ["22:00-06:00"],
     checks: ["05:00", "23:00", "02:30"]}}
"""


def test_the_nights_checks_run_from_evening_to_morning_in_local_time() -> None:
    directory = parse_directory(DIRECTORY, source="t")
    # The spring-forward night: 02:30 does not exist on the wall clock and is
    # taken as the hour after (03:30 CEST), as zoneinfo reads a missing time.
    assert [c.planned_at for c in planned_checks(directory, date(2026, 3, 28))] == [
        se(2026, 3, 28, 23, 0),
        se(2026, 3, 29, 2, 30),
        se(2026, 3, 29, 5, 0),
    ]
    assert se(2026, 3, 29, 2, 30) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert night_of(se(2026, 3, 29, 5, 0)) == date(2026, 3, 28)
    assert night_of(se(2026, 3, 29, 12, 0)) == date(2026, 3, 29)
    assert directory.staff_of_account("nattpatrull-1") == directory.staff[0]
    assert directory.staff_of_account("someone-else") is None


def test_a_check_is_overdue_after_its_time_and_the_grace() -> None:
    [first, *_] = planned_checks(parse_directory(DIRECTORY, source="t"), date(2026, 3, 28))
    assert not first.overdue(se(2026, 3, 28, 23, 15))
    assert first.overdue(se(2026, 3, 28, 23, 16))


@pytest.mark.parametrize(
    ("checks", "expected"),
    [
        ('["21:00"]', "planned check 21:00 is outside the agreed windows (22:00-06:00)"),
        ("[2300]", "write each planned check as a string like '23:00', got 2300"),
        ('["25:00"]', "expected a planned check time like '23:00', got '25:00'"),
    ],
)
def test_a_planned_check_must_be_a_time_inside_an_agreed_window(checks: str, expected: str) -> None:
    text = f'consents:\n  - {{device_id: s-1, consent_on_record: true, windows: ["22:00-06:00"], checks: {checks}}}\n'  # noqa: E501
    with pytest.raises(AccessDirectoryError, match="consents #1") as caught:
        parse_directory(text, source="t")
    assert expected in str(caught.value)


def test_the_view_and_its_log_entry_come_from_one_judgement() -> None:
    directory = parse_directory(DIRECTORY, source="t")
    at = se(2026, 3, 28, 21, 30)  # on shift, before the agreed window
    decision, draft = remote_view_entry(
        directory, org=ORG, device_id=SENSOR, staff_id="s-anna", at=at, person="Lgh 12",
        detail={"via": "api"},
    )  # fmt: skip
    assert not decision.allowed
    assert draft.action is Action.REMOTE_VIEW
    assert (draft.org, draft.actor, draft.subject, draft.person, draft.at) == (
        ORG, "s-anna", SENSOR, "Lgh 12", at,
    )  # fmt: skip
    assert draft.detail == {"via": "api", "allowed": False, "reasons": ["outside_agreed_times"]}


def test_not_seen_twice_raises_the_alert_and_the_count_survives_a_restart() -> None:
    planned = se(2026, 3, 28, 23, 0)
    engine, _ = make_engine(se(2026, 3, 28, 23, 1), DEVICES)
    first, effects = engine.remote_check(
        org=ORG, device_id=SENSOR, planned_at=planned, seen=False, actor="nattpatrull-1"
    )
    assert (first.not_seen, first.alert_id, effects) == (1, None, [])
    saved = json.loads(json.dumps(engine.export_state()))

    restarted, _ = make_engine(se(2026, 3, 28, 23, 3), DEVICES)
    restarted.import_state(saved)
    assert restarted.remote_checks() == [first]
    second, effects = restarted.remote_check(
        org=ORG, device_id=SENSOR, planned_at=planned, seen=False, actor="nattpatrull-1"
    )
    [opened] = effects
    assert isinstance(opened, AlertOpened) and opened.pages
    alert = opened.alert
    assert (alert.rule_id, alert.priority, alert.device_id, second.alert_id) == (
        "remote_check_not_seen", Priority.HIGH, SENSOR, alert.alert_id,
    )  # fmt: skip
    assert alert.reason == (
        "not seen at 2 tries of the remote check planned for 2026-03-28 23:00 CET "
        "(last by nattpatrull-1)"
    )
    # A third try that does not see the person adds to the open alert, pages no more.
    _, effects = restarted.remote_check(
        org=ORG, device_id=SENSOR, planned_at=planned, seen=False, actor="nattpatrull-1"
    )
    [repeated] = effects
    assert isinstance(repeated, AlertRepeated) and not repeated.pages


def test_a_seen_check_raises_nothing_and_another_check_counts_apart() -> None:
    engine, _ = make_engine(se(2026, 3, 28, 23, 1), DEVICES)
    for planned in (se(2026, 3, 28, 23, 0), se(2026, 3, 29, 2, 0)):
        result, effects = engine.remote_check(
            org=ORG, device_id=SENSOR, planned_at=planned, seen=False, actor="a"
        )
        assert (result.not_seen, effects) == (1, [])
    seen, effects = engine.remote_check(
        org=ORG, device_id=SENSOR, planned_at=se(2026, 3, 29, 2, 0), seen=True, actor="a"
    )
    assert (seen.seen, seen.not_seen, effects) == (True, 1, [])


def test_results_older_than_a_night_and_a_half_are_forgotten() -> None:
    engine, clock = make_engine(se(2026, 3, 28, 23, 1), DEVICES)
    engine.remote_check(
        org=ORG, device_id=SENSOR, planned_at=se(2026, 3, 28, 23, 0), seen=True, actor="a"
    )
    clock.advance(timedelta(hours=40))
    engine.remote_check(
        org=ORG, device_id=SENSOR, planned_at=se(2026, 3, 30, 14, 0), seen=True, actor="a"
    )
    assert [c.planned_at for c in engine.remote_checks()] == [se(2026, 3, 30, 14, 0)]
