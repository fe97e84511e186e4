"""Access control: every reason code, shared locks, alarms, DST and directory file errors."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from core.errors import ConfigError
from rules.access import (
    REASON_LABELS,
    AccessDirectory,
    AccessDirectoryError,
    Reason,
    check_opening,
    check_remote_view,
    load_directory,
    parse_directory,
)

SE = ZoneInfo("Europe/Stockholm")

# Two providers share lock-12: home care (hemtjanst) enforces visit plans, the
# health centre (vardcentral) only shifts. The night of 2026-03-28/29 is the
# spring DST switch, so the night shifts below are an hour short.
DIRECTORY = """
organisations:
  - {org: hemtjanst, visit_plan_enforced: true}
  - {org: vardcentral, visit_plan_enforced: false}
staff:
  - {org: hemtjanst, staff_id: s-anna, pseudonym: Personal 17}
  - {org: hemtjanst, staff_id: s-bo, pseudonym: Personal 18}
  - {org: vardcentral, staff_id: s-cia, pseudonym: Sjuksköterska 3}
keys:
  - {org: hemtjanst, key_id: k-anna, staff_id: s-anna}
  - {org: hemtjanst, key_id: k-bo, staff_id: s-bo, blocked: true,
     blocked_at: "2026-03-29T00:00:00+01:00"}
  - {org: hemtjanst, key_id: k-old, staff_id: s-anna, valid_until: "2026-03-01T00:00:00+01:00"}
  - {org: hemtjanst, key_id: k-lost, staff_id: s-anna, blocked: true}
  - {org: vardcentral, key_id: k-cia, staff_id: s-cia}
shifts:
  - {org: hemtjanst, staff_id: s-anna, start: "2026-03-28T21:00:00+01:00",
     end: "2026-03-29T07:00:00+02:00"}
  - {org: hemtjanst, staff_id: s-bo, start: "2026-03-28T21:00:00+01:00",
     end: "2026-03-29T07:00:00+02:00"}
  - {org: vardcentral, staff_id: s-cia, start: "2026-03-28T20:00:00+01:00",
     end: "2026-03-29T08:00:00+02:00"}
  - {org: hemtjanst, staff_id: s-anna, start: "2026-10-24T21:00:00+02:00",
     end: "2026-10-25T07:00:00+01:00"}
grants:
  - {org: hemtjanst, device_id: lock-12, key_id: k-anna}
  - {org: hemtjanst, device_id: lock-12, key_id: k-old}
  - {org: hemtjanst, device_id: lock-12, key_id: k-lost}
  - {org: hemtjanst, device_id: lock-12, staff_id: s-bo}
  - {org: hemtjanst, device_id: lock-13, staff_id: s-bo}
  - {org: vardcentral, device_id: lock-12, staff_id: s-cia}
  - {org: hemtjanst, device_id: sensor-12, staff_id: s-anna}
  - {org: hemtjanst, device_id: sensor-13, staff_id: s-anna}
  - {org: hemtjanst, device_id: sensor-14, staff_id: s-anna}
visit_plans:
  - {org: hemtjanst, device_id: lock-12, start: "2026-03-28T23:00:00+01:00",
     end: "2026-03-28T23:30:00+01:00"}
  - {org: hemtjanst, device_id: lock-12, staff_id: s-bo, start: "2026-03-29T03:00:00+02:00",
     end: "2026-03-29T03:20:00+02:00"}
  - {org: hemtjanst, device_id: lock-12, start: "2026-03-29T07:30:00+02:00",
     end: "2026-03-29T08:00:00+02:00"}
  - {org: hemtjanst, device_id: lock-13, start: "2026-03-28T23:00:00+01:00",
     end: "2026-03-28T23:30:00+01:00"}
consents:
  - {device_id: sensor-12, consent_on_record: true, windows: ["22:00-06:00"]}
  - {device_id: sensor-13, consent_on_record: false, windows: ["22:00-06:00"]}
"""


@pytest.fixture(scope="module")
def directory() -> AccessDirectory:
    return parse_directory(DIRECTORY, source="directory.yaml")


def se(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    """A Stockholm wall-clock instant (the hour must exist that day)."""
    return datetime(year, month, day, hour, minute, tzinfo=SE)


def utc(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def opening(
    directory: AccessDirectory,
    key_id: str,
    at: datetime,
    *,
    org: str = "hemtjanst",
    device_id: str = "lock-12",
    during_alarm: bool = False,
) -> tuple[Reason, ...]:
    decision = check_opening(
        directory, org=org, device_id=device_id, key_id=key_id, at=at, during_alarm=during_alarm
    )
    assert decision.allowed == (not decision.reasons)
    return decision.reasons


def test_planned_visit_on_shift_with_grant_is_allowed(directory: AccessDirectory) -> None:
    assert opening(directory, "k-anna", se(2026, 3, 28, 23, 10)) == ()


@pytest.mark.parametrize(
    ("key_id", "at", "device_id", "expected"),
    [
        ("k-nobody", se(2026, 3, 28, 23, 10), "lock-12", (Reason.UNKNOWN_KEY,)),
        ("k-lost", se(2026, 3, 28, 23, 10), "lock-12", (Reason.KEY_BLOCKED,)),
        ("k-old", se(2026, 3, 28, 23, 10), "lock-12", (Reason.KEY_EXPIRED,)),
        ("k-anna", se(2026, 3, 28, 23, 10), "lock-13", (Reason.NOT_GRANTED,)),
        ("k-anna", se(2026, 3, 29, 7, 45), "lock-12", (Reason.OFF_SHIFT,)),
        ("k-anna", se(2026, 3, 29, 1, 30), "lock-12", (Reason.OUTSIDE_VISIT_PLAN,)),
    ],
    ids=["unknown", "blocked", "expired", "not-granted", "off-shift", "outside-plan"],
)
def test_each_reason_alone(
    directory: AccessDirectory,
    key_id: str,
    at: datetime,
    device_id: str,
    expected: tuple[Reason, ...],
) -> None:
    assert opening(directory, key_id, at, device_id=device_id) == expected


def test_every_applicable_reason_is_given_in_a_stable_order(directory: AccessDirectory) -> None:
    assert opening(directory, "k-old", se(2026, 3, 29, 9, 0), device_id="lock-13") == (
        Reason.KEY_EXPIRED,
        Reason.NOT_GRANTED,
        Reason.OFF_SHIFT,
        Reason.OUTSIDE_VISIT_PLAN,
    )


def test_a_block_counts_from_when_it_was_made(directory: AccessDirectory) -> None:
    # Bo's key was blocked at midnight; the lock synced both openings later.
    assert opening(directory, "k-bo", se(2026, 3, 28, 23, 10)) == ()
    assert opening(directory, "k-bo", se(2026, 3, 29, 3, 10)) == (Reason.KEY_BLOCKED,)


@pytest.mark.parametrize(
    ("at", "on_plan"),
    [
        (se(2026, 3, 28, 22, 44), False),
        (se(2026, 3, 28, 22, 45), True),
        (se(2026, 3, 28, 23, 45), True),
        (se(2026, 3, 28, 23, 46), False),
    ],
)
def test_visit_plan_tolerance_is_fifteen_minutes(
    directory: AccessDirectory, at: datetime, on_plan: bool
) -> None:
    expected = () if on_plan else (Reason.OUTSIDE_VISIT_PLAN,)
    assert opening(directory, "k-anna", at) == expected


def test_a_visit_planned_for_one_staff_member_is_not_anothers(directory: AccessDirectory) -> None:
    # 03:00-03:20 is planned for Bo only; Anna opening then is outside the plan.
    assert opening(directory, "k-anna", se(2026, 3, 29, 3, 10)) == (Reason.OUTSIDE_VISIT_PLAN,)


@pytest.mark.parametrize(
    ("at", "on_shift"),
    [
        (se(2026, 3, 28, 19, 59), False),
        (se(2026, 3, 28, 20, 0), True),
        (se(2026, 3, 28, 23, 59), True),
        (se(2026, 3, 29, 0, 30), True),
        (se(2026, 3, 29, 7, 59), True),
        # 08:00 CEST: the shift ends on the local clock, an hour earlier in UTC
        # than the night before.
        (utc(2026, 3, 29, 6, 0), False),
    ],
)
def test_shift_across_midnight(directory: AccessDirectory, at: datetime, on_shift: bool) -> None:
    # The health centre enforces no visit plan, so only the shift decides.
    expected = () if on_shift else (Reason.OFF_SHIFT,)
    assert opening(directory, "k-cia", at, org="vardcentral") == expected


def test_shared_lock_the_keys_organisation_decides(directory: AccessDirectory) -> None:
    # Both providers granted lock-12. The health centre's key opens it at
    # 01:30 although home care's visit plan has no visit then.
    assert opening(directory, "k-cia", se(2026, 3, 29, 1, 30), org="vardcentral") == ()
    assert opening(directory, "k-anna", se(2026, 3, 29, 1, 30)) == (Reason.OUTSIDE_VISIT_PLAN,)
    # Home care's grant on lock-13 does nothing for the health centre's key.
    assert opening(
        directory, "k-cia", se(2026, 3, 28, 23, 10), org="vardcentral", device_id="lock-13"
    ) == (Reason.NOT_GRANTED,)
    # A key is known only in its own organisation.
    assert opening(directory, "k-cia", se(2026, 3, 28, 23, 10)) == (Reason.UNKNOWN_KEY,)


def test_an_open_alarm_waives_the_visit_plan_only(directory: AccessDirectory) -> None:
    night = se(2026, 3, 29, 1, 30)
    assert opening(directory, "k-anna", night, during_alarm=True) == ()
    assert opening(directory, "k-nobody", night, during_alarm=True) == (Reason.UNKNOWN_KEY,)
    assert opening(directory, "k-lost", night, during_alarm=True) == (Reason.KEY_BLOCKED,)
    assert opening(directory, "k-anna", night, during_alarm=True, device_id="lock-13") == (
        Reason.NOT_GRANTED,
    )
    assert opening(directory, "k-anna", se(2026, 3, 29, 9, 0), during_alarm=True) == (
        Reason.OFF_SHIFT,
    )


def test_a_naive_instant_is_refused(directory: AccessDirectory) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        opening(directory, "k-anna", datetime(2026, 3, 28, 23, 10))


def view(directory: AccessDirectory, at: datetime, **kw: str) -> tuple[Reason, ...]:
    args = {"org": "hemtjanst", "device_id": "sensor-12", "staff_id": "s-anna"} | kw
    return check_remote_view(directory, at=at, **args).reasons


@pytest.mark.parametrize(
    ("at", "kw", "expected"),
    [
        (se(2026, 3, 28, 23, 0), {}, ()),
        (se(2026, 3, 28, 23, 0), {"staff_id": "s-nobody"}, (Reason.UNKNOWN_STAFF,)),
        (se(2026, 3, 28, 23, 0), {"staff_id": "s-cia"}, (Reason.UNKNOWN_STAFF,)),
        (se(2026, 3, 28, 23, 0), {"staff_id": "s-bo"}, (Reason.VIEW_NOT_GRANTED,)),
        (se(2026, 3, 30, 23, 0), {}, (Reason.OFF_SHIFT,)),
        (se(2026, 3, 28, 23, 0), {"device_id": "sensor-13"}, (Reason.NO_CONSENT,)),
        (se(2026, 3, 28, 23, 0), {"device_id": "sensor-14"}, (Reason.NO_CONSENT,)),
        (se(2026, 3, 28, 21, 30), {}, (Reason.OUTSIDE_AGREED_TIMES,)),
    ],
    ids=[
        "allowed",
        "unknown-staff",
        "other-orgs-staff",
        "no-grant",
        "off-shift",
        "consent-refused",
        "no-consent-row",
        "outside-times",
    ],
)
def test_remote_view_reasons(
    directory: AccessDirectory, at: datetime, kw: dict[str, str], expected: tuple[Reason, ...]
) -> None:
    assert view(directory, at, **kw) == expected


@pytest.mark.parametrize(
    ("at", "inside"),
    [
        # Spring forward, 2026-03-29: 02:00 CET jumps to 03:00 CEST.
        (utc(2026, 3, 28, 20, 59), False),  # 21:59 CET
        (utc(2026, 3, 28, 21, 0), True),  # 22:00 CET
        (utc(2026, 3, 29, 1, 30), True),  # 03:30 CEST, just after the jump
        (utc(2026, 3, 29, 3, 59), True),  # 05:59 CEST
        (utc(2026, 3, 29, 4, 0), False),  # 06:00 CEST; a fixed +01:00 would say 05:00
        # Fall back, 2026-10-25: 03:00 CEST returns to 02:00 CET.
        (utc(2026, 10, 24, 19, 59), False),  # 21:59 CEST
        (utc(2026, 10, 24, 20, 0), True),  # 22:00 CEST
        (utc(2026, 10, 25, 0, 30), True),  # 02:30 CEST, the first time
        (utc(2026, 10, 25, 1, 30), True),  # 02:30 CET, the second time
        (utc(2026, 10, 25, 4, 59), True),  # 05:59 CET; a fixed +02:00 would say 06:59
        (utc(2026, 10, 25, 5, 0), False),  # 06:00 CET
    ],
)
def test_agreed_window_on_dst_nights(
    directory: AccessDirectory, at: datetime, inside: bool
) -> None:
    expected = () if inside else (Reason.OUTSIDE_AGREED_TIMES,)
    assert view(directory, at) == expected


def test_every_reason_has_its_swedish_label() -> None:
    assert set(REASON_LABELS) == set(Reason)
    assert REASON_LABELS[Reason.UNKNOWN_KEY] == "okänd nyckel"
    assert REASON_LABELS[Reason.KEY_BLOCKED] == "spärrad nyckel"
    assert REASON_LABELS[Reason.NOT_GRANTED] == "ej behörig för dörren"
    assert REASON_LABELS[Reason.OFF_SHIFT] == "utanför arbetspass"
    assert REASON_LABELS[Reason.OUTSIDE_VISIT_PLAN] == "utanför besöksplan"
    assert REASON_LABELS[Reason.NO_CONSENT] == "samtycke saknas"
    assert REASON_LABELS[Reason.OUTSIDE_AGREED_TIMES] == "utanför överenskommen tid"


def test_directory_round_trips_through_its_table_form(directory: AccessDirectory) -> None:
    dumped = directory.model_dump(mode="json")
    assert dumped["consents"][0]["windows"] == ["22:00-06:00"]
    assert AccessDirectory.model_validate(dumped) == directory


def test_load_directory_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "access.yaml"
    path.write_text(DIRECTORY, encoding="utf-8")
    loaded = load_directory(path)
    assert loaded.key("vardcentral", "k-cia") is not None


HEADER = """
organisations: [{org: hemtjanst, visit_plan_enforced: true}]
staff: [{org: hemtjanst, staff_id: s-anna, pseudonym: Personal 17}]
"""


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "keys: [{org: hemtjanst, key_id: k-1, staff_id: s-anna},"
            " {org: hemtjanst, key_id: k-2, staff_id: s-anna,"
            " valid_until: 2026-04-01T00:00:00}]",
            "keys #2 (k-2): key 'valid_until': Input should have timezone info",
        ),
        (
            "shifts: [{org: hemtjanst, staff_id: s-anna, start: 2026-03-28T21:00:00+01:00,"
            " end: 2026-03-29T07:00:00+02:00, stat: x}]",
            "shifts #1 (s-anna): key 'stat': Extra inputs are not permitted",
        ),
        (
            "shifts: [{org: hemtjanst, staff_id: s-anna, start: 2026-03-29T07:00:00+02:00,"
            " end: 2026-03-28T21:00:00+01:00}]",
            "shifts #1 (s-anna): Value error, 'start'/'end': the end must be after the start",
        ),
        (
            "grants: [{org: hemtjanst, device_id: lock-1, key_id: k-zz}]",
            "grants #1 (k-zz): key 'key_id': no key 'k-zz' in 'hemtjanst'",
        ),
        (
            "keys: [{org: hemtjanst, key_id: k-1, staff_id: s-bo}]",
            "keys #1 (k-1): key 'staff_id': no staff 's-bo' in 'hemtjanst'",
        ),
        (
            "keys: [{org: vardcentral, key_id: k-1, staff_id: s-anna}]",
            "keys #1 (k-1): key 'org': undeclared 'vardcentral'",
        ),
        (
            "keys: [{org: hemtjanst, key_id: k-1, staff_id: s-anna},"
            " {org: hemtjanst, key_id: k-1, staff_id: s-anna}]",
            "keys #2 (k-1): key 'key_id': appears twice in 'hemtjanst'",
        ),
        (
            "grants: [{org: hemtjanst, device_id: lock-1, key_id: k-1, staff_id: s-anna}]",
            "grants #1 (k-1): Value error, give exactly one of 'key_id' and 'staff_id'",
        ),
        (
            "consents: [{device_id: sensor-1, consent_on_record: true,"
            " windows: [{start: 22:00, end: 06:00}]}]",
            "consents #1 (sensor-1): key 'windows': Value error, write each window as a string",
        ),
        (
            "consents: [{device_id: sensor-1, consent_on_record: true, windows: [22-06]}]",
            "consents #1 (sensor-1): key 'windows': Value error, expected a window like",
        ),
        (
            "visit_plans: [{org: hemtjanst, device_id: lock-1, start: 2026-03-28T23:00:00+01:00,"
            " end: 2026-03-28T23:30:00+01:00, tolerance_min: -5}]",
            "visit_plans #1 (lock-1): key 'tolerance_min': Input should be greater than",
        ),
        ("kyes: []", "key 'kyes': Extra inputs are not permitted"),
    ],
)
def test_directory_errors_name_file_entry_and_key(tmp_path: Path, body: str, expected: str) -> None:
    path = tmp_path / "access.yaml"
    path.write_text(HEADER + body + "\n", encoding="utf-8")
    with pytest.raises(AccessDirectoryError) as caught:
        load_directory(path)
    assert str(caught.value).startswith(f"{path}: {expected}")


def test_unreadable_or_malformed_files_are_config_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError, match=r"cannot read access directory .*missing\.yaml"):
        load_directory(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("keys: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken\.yaml: not valid YAML"):
        load_directory(broken)
