"""The rule set: shipped defaults, an organisation's overrides, and errors naming file and key."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from core.errors import ConfigError
from rules.model import Priority
from rules.ruleset import (
    AbsenceRule,
    ImmediateRule,
    RuleSetError,
    SupervisionRule,
    ThresholdRule,
    check_ruleset_file,
    default_rules_text,
    load_ruleset,
)
from tests.rules import se


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "org-rules.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _problems(tmp_path: Path, text: str) -> list[str]:
    path = _write(tmp_path, text)
    with pytest.raises(RuleSetError) as caught:
        load_ruleset(default_rules_text(), path)
    assert isinstance(caught.value, ConfigError)
    assert check_ruleset_file(path) == caught.value.problems
    return caught.value.problems


def test_the_defaults_carry_the_domain_numbers() -> None:
    rs = load_ruleset(default_rules_text())
    bed = rs.rules["not_back_in_bed"]
    assert isinstance(bed, AbsenceRule)
    assert (bed.within_min, bed.window, bed.start, bed.expect) == (
        20,
        "night",
        ("sensor.left_bed",),
        ("sensor.in_bed",),
    )
    dose = rs.rules["dose_not_taken"]
    assert isinstance(dose, AbsenceRule)
    assert (dose.within_min, dose.match_attribute) == (30, "dose_id")
    door = rs.rules["door_open_too_long"]
    assert isinstance(door, AbsenceRule)
    assert door.within_min == 10
    contact = rs.rules["no_contact"]
    assert isinstance(contact, SupervisionRule)
    assert contact.missed_heartbeats == 3
    assert contact.outage.min_devices == 10
    assert contact.outage.min_share == 0.2
    battery = rs.rules["battery_low"]
    assert isinstance(battery, ThresholdRule)
    assert (battery.attribute, battery.below, battery.kinds) == (
        "battery",
        20,
        ("device.battery_low",),
    )
    fall = rs.rules["fall"]
    assert isinstance(fall, ImmediateRule)
    assert fall.priority is Priority.CRITICAL
    assert rs.late_after == timedelta(minutes=15)
    assert str(rs.windows["night"]) == "22:00-07:00"
    # After 2 min unacknowledged to the coordinator, after 5 to every operator.
    assert [(t.after, t.to) for t in rs.escalation_tiers(Priority.CRITICAL)] == [
        (timedelta(minutes=2), ("role:coordinator",)),
        (timedelta(minutes=5), ("role:operator",)),
    ]
    assert rs.escalation_tiers(Priority.LOW) == ()


def test_an_empty_organisation_file_changes_nothing(tmp_path: Path) -> None:
    assert load_ruleset(default_rules_text(), _write(tmp_path, "")) == load_ruleset(
        default_rules_text()
    )


def test_an_organisation_overrides_thresholds_hours_limits_and_persons(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
windows:
  night: "21:00-06:30"
  evening: "15:00-21:00"
escalation:
  1:
    - {after_min: 1, to: ["group:nattledning"]}
    - {after_min: 4, to: ["role:coordinator", "group:jour-norr"]}
rules:
  not_back_in_bed: {within_min: 15}
  battery_low: {below: 15, clears_at: 25}
  refill_low: {enabled: false}
  door_open_too_long: {type: immediate, title: Dörr öppnad, priority: 3, kinds: [lock.door_opened]}
  evening_wandering:
    type: immediate
    title: Lämnat rummet
    priority: 2
    kinds: [sensor.left_room]
    window: evening
devices:
  sensor-0042:
    not_back_in_bed: {within_min: 30, priority: 1}
  sensor-0043:
    not_back_in_bed: {window: null}
""",
    )
    rs = load_ruleset(default_rules_text(), path)
    bed = rs.rule_for("not_back_in_bed", "sensor-0001")
    assert isinstance(bed, AbsenceRule)
    assert bed.within_min == 15
    assert bed.expect == ("sensor.in_bed",)  # merged, not replaced
    own = rs.rule_for("not_back_in_bed", "sensor-0042")
    assert isinstance(own, AbsenceRule)
    assert (own.within_min, own.priority) == (30, Priority.CRITICAL)
    assert not rs.applies_at(bed, se(2026, 11, 23, 20, 30))
    assert rs.applies_at(bed, se(2026, 11, 23, 21, 30))
    assert rs.applies_at(rs.rule_for("not_back_in_bed", "sensor-0043"), se(2026, 11, 23, 12))
    assert not rs.rules["refill_low"].enabled
    # A priority's tiers are replaced as a whole; the others stay the default's.
    assert [(t.after_min, t.to) for t in rs.escalation_tiers(Priority.CRITICAL)] == [
        (1, ("group:nattledning",)),
        (4, ("role:coordinator", "group:jour-norr")),
    ]
    assert rs.escalation_tiers(Priority.HIGH)[0].after == timedelta(minutes=5)
    door = rs.rules["door_open_too_long"]
    assert isinstance(door, ImmediateRule)  # a new type replaces the rule wholly
    assert "evening_wandering" in rs.rules


def test_wrong_values_name_the_file_the_key_and_the_expectation(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        """
late_after_min: soon
windows: {night: "22-07"}
rules:
  not_back_in_bed: {within_min: twenty, windw: night}
  fall: {kinds: [alarm.falll]}
  odd: {type: bogus}
""",
    )
    path = tmp_path / "org-rules.yaml"
    assert all(p.startswith(f"{path}: key ") for p in problems)
    text = "\n".join(problems)
    assert "key late_after_min: expected a valid integer" in text
    assert "got 'soon'" in text
    assert "key windows.night: expected a window like '22:00-07:00', got '22-07'" in text
    assert "key rules.not_back_in_bed.within_min: expected a valid integer" in text
    assert "key rules.not_back_in_bed.windw: not a known key" in text
    assert "key rules.fall.kinds.0: expected an event kind" in text
    assert "key rules.odd: expected a type, one of absence, access, immediate" in text
    assert "got 'bogus'" in text


def test_references_are_checked(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        """
rules:
  not_back_in_bed: {window: nite}
escalation: {4: []}
devices:
  sensor-0042:
    not_back_in_bed: {within_min: 0}
    no_such_rule: {enabled: false}
    fall: {kinds: [alarm.button]}
""",
    )
    path = tmp_path / "org-rules.yaml"
    assert problems == [
        f"{path}: key rules.not_back_in_bed.window: expected one of the windows ['night'], "
        "got 'nite'",
        f"{path}: key devices.sensor-0042.not_back_in_bed.within_min: expected greater than "
        "or equal to 1, got 0",
        f"{path}: key devices.sensor-0042.no_such_rule: expected the id of a rule, one of "
        + str(sorted(load_ruleset(default_rules_text()).rules)),
        f"{path}: key devices.sensor-0042.fall.kinds: cannot be set per device (expected one "
        "of ['below', 'clears_at', 'enabled', 'missed_heartbeats', 'priority', 'window', "
        "'within_min'])",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "rules:\n  extra: {type: supervision, title: X, priority: 2, missed_heartbeats: 2, "
            "families: [lock], outage: {window_min: 1, min_devices: 3, min_share: 0.5, "
            "min_devices_for_share: 2}}",
            "key rules: expected at most one supervision rule",
        ),
        ("rules:\n  no_contact: {window: night}", "key rules.no_contact.window: supervision runs"),
        ("rules:\n  battery_low: {clears_at: 10}", "key rules.battery_low: clears_at must be"),
        (
            "rules:\n  not_back_in_bed: {expect: [sensor.left_bed]}",
            "key rules.not_back_in_bed: kinds ['sensor.left_bed'] cannot both",
        ),
        ("timezone: Europe/Stockhom", "key timezone: expected an IANA time zone"),
        (
            "rules:\n  new_one: {type: absence, title: X, priority: 7}",
            "key rules.new_one.priority: expected 1, 2, 3 or 4, got 7",
        ),
        (
            "rules:\n  new_one: {type: absence, title: X, priority: 2}",
            "key rules.new_one.start: required, but missing",
        ),
        (
            "escalation:\n  1: [{after_min: 2, to: [operator]}]",
            "key escalation.1.0.to.0: expected a recipient 'role:<operator|coordinator|admin>'",
        ),
        (
            "escalation:\n  1: [{after_min: 2, to: ['role:auditor']}]",
            "got 'role:auditor'",
        ),
        (
            "escalation:\n  1: [{after_min: 2, to: ['group:Natt Ledning']}]",
            "got 'group:Natt Ledning'",
        ),
        ("escalation:\n  2: [{after_min: 5, to: []}]", "key escalation.2.0.to: expected"),
        (
            "escalation:\n  2: [{after_min: 5, to: [role:operator, role:operator]}]",
            "key escalation.2.0.to: expected each recipient once",
        ),
        ("escalation:\n  3: [{after_min: 0, to: [role:operator]}]", "key escalation.3.0.after_min"),
        (
            "escalation:\n  1:\n    - {after_min: 5, to: [role:operator]}\n"
            "    - {after_min: 2, to: [role:coordinator]}",
            "key escalation.1: expected tiers in order of after_min, each later than the one "
            "before; got ['5', '2']",
        ),
        (
            "escalation:\n  1: [{after_min: 2, to: [role:operator], who: me}]",
            "key escalation.1.0.who: not a known key",
        ),
        ("escalation_min: {1: soon}", "key escalation_min.1: expected whole minutes"),
        (
            "escalation_min: {1: 3}\nescalation:\n  1: [{after_min: 2, to: [role:operator]}]",
            "key escalation_min.1: escalation.1 is given too; keep only `escalation`",
        ),
        ("escalation_min: 5", "key escalation_min: expected a mapping of priority to minutes"),
        ("- just\n- a list", "expected a mapping of settings at the top level"),
        ("rules: {fall: [unclosed", "not valid YAML"),
    ],
)
def test_more_refusals(tmp_path: Path, text: str, expected: str) -> None:
    problems = _problems(tmp_path, text)
    assert any(expected in p for p in problems), problems
    assert all(p.startswith(str(tmp_path / "org-rules.yaml")) for p in problems)


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(RuleSetError, match=f"cannot read rule set file {missing}"):
        load_ruleset(default_rules_text(), missing)


def test_a_good_file_checks_clean(tmp_path: Path) -> None:
    assert check_ruleset_file(_write(tmp_path, "rules:\n  fall: {priority: 1}\n")) == []


def test_an_old_escalation_min_file_still_loads_as_one_tier_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _write(tmp_path, "escalation_min: {1: 3, 3: null}\n")
    rs = load_ruleset(default_rules_text(), path)
    # One tier to everyone who handles the organisation's alarms, as that escalation reached.
    assert [(t.after_min, t.to) for t in rs.escalation_tiers(Priority.CRITICAL)] == [
        (3, ("role:coordinator", "role:operator"))
    ]
    assert rs.escalation_tiers(Priority.MEDIUM) == ()
    assert rs.escalation_tiers(Priority.HIGH) == load_ruleset(
        default_rules_text()
    ).escalation_tiers(Priority.HIGH)
    assert f"{path}: key escalation_min is the old form" in caplog.text
