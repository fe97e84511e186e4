"""Access control: who may open which lock or cabinet, and when a remote view is allowed."""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from core.errors import ConfigError
from core.events import DeviceId
from core.ids import OrgId
from rules.auditlog import Action, DetailValue, EntryDraft
from rules.calendar import STOCKHOLM, DailyWindow

logger = logging.getLogger(__name__)

# The directory is one row list per future table. Every row but a consent
# carries its organisation: a lock may be shared by two providers (home care
# and a health centre), and only the key's own organisation's grants, shifts
# and visit plans count for that key.

PersonId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]


class AccessDirectoryError(ConfigError):
    """An access directory file is invalid; the message names the file, the entry and the key."""


class Reason(StrEnum):
    """Why an opening or a remote view is not authorised (stable codes, stored and exported)."""

    UNKNOWN_KEY = "unknown_key"  # no such key in the key's organisation
    KEY_BLOCKED = "key_blocked"  # blocked, e.g. after a lost phone
    KEY_EXPIRED = "key_expired"  # outside the key's validity period
    NOT_GRANTED = "not_granted"  # no grant from the key's organisation for this door
    OFF_SHIFT = "off_shift"  # the staff member has no shift at that instant
    OUTSIDE_VISIT_PLAN = "outside_visit_plan"  # no planned visit (with tolerance) covers it
    UNKNOWN_STAFF = "unknown_staff"  # no such staff member in the organisation
    VIEW_NOT_GRANTED = "view_not_granted"  # no grant for this staff member on this sensor
    NO_CONSENT = "no_consent"  # no remote-supervision consent on record
    OUTSIDE_AGREED_TIMES = "outside_agreed_times"  # not inside an agreed daily window


REASON_LABELS: Mapping[Reason, str] = {
    Reason.UNKNOWN_KEY: "okänd nyckel",
    Reason.KEY_BLOCKED: "spärrad nyckel",
    Reason.KEY_EXPIRED: "nyckel utanför giltighetstid",
    Reason.NOT_GRANTED: "ej behörig för dörren",
    Reason.OFF_SHIFT: "utanför arbetspass",
    Reason.OUTSIDE_VISIT_PLAN: "utanför besöksplan",
    Reason.UNKNOWN_STAFF: "okänd personal",
    Reason.VIEW_NOT_GRANTED: "ej behörig för tillsyn",
    Reason.NO_CONSENT: "samtycke saknas",
    Reason.OUTSIDE_AGREED_TIMES: "utanför överenskommen tid",
}


@dataclass(frozen=True, slots=True)
class AccessDecision:
    """The outcome of an access check: allowed exactly when no reason applies."""

    reasons: tuple[Reason, ...] = ()

    @property
    def allowed(self) -> bool:
        """Whether the opening or view is authorised."""
        return not self.reasons


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _check_period(start: datetime | None, end: datetime | None, names: str) -> None:
    if start is not None and end is not None and end <= start:
        raise ValueError(f"{names}: the end must be after the start")


def _within(at: datetime, start: datetime | None, end: datetime | None) -> bool:
    """Half-open validity: from ``start`` inclusive to ``end`` exclusive; None is unbounded."""
    return (start is None or start <= at) and (end is None or at < end)


class _OrgRow(_Row):
    org: OrgId


class Organisation(_Row):
    """A care provider whose staff hold keys (home care, a health centre…)."""

    org: OrgId
    # Some lock systems let a key open only during a planned visit (or an
    # alarm); others only check the shift. There is no safe default either
    # way, so every organisation states it.
    visit_plan_enforced: bool


class Staff(_OrgRow):
    """A staff member; ``pseudonym`` is what the console shows, never a real name."""

    staff_id: PersonId
    pseudonym: Annotated[str, Field(min_length=1, max_length=200)]
    # The console account (users.username) this staff member logs in with:
    # how a remote check from the console is judged as the CLI's --staff.
    account: Annotated[str, Field(min_length=1, max_length=64)] | None = None


class Key(_OrgRow):
    """A digital key held by one staff member."""

    key_id: PersonId
    staff_id: PersonId
    blocked: bool = False
    # When the block took effect: lock logs sync hours late, so an opening
    # from before the block is not a blocked-key opening. Unset means always.
    blocked_at: AwareDatetime | None = None
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Key:
        if self.blocked_at is not None and not self.blocked:
            raise ValueError("'blocked_at' is set but 'blocked' is false")
        _check_period(self.valid_from, self.valid_until, "'valid_from'/'valid_until'")
        return self

    def is_blocked_at(self, at: datetime) -> bool:
        """Whether the key counts as blocked for an opening at ``at``."""
        return self.blocked and (self.blocked_at is None or at >= self.blocked_at)


class Shift(_OrgRow):
    """One work shift of a staff member, between two aware instants (may cross midnight)."""

    staff_id: PersonId
    start: AwareDatetime
    end: AwareDatetime

    @model_validator(mode="after")
    def _ordered(self) -> Shift:
        _check_period(self.start, self.end, "'start'/'end'")
        return self


class Grant(_OrgRow):
    """Permission from one organisation on a device, for one key or all keys of a staff member."""

    device_id: DeviceId
    key_id: PersonId | None = None
    staff_id: PersonId | None = None
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None

    @model_validator(mode="after")
    def _one_holder(self) -> Grant:
        if (self.key_id is None) == (self.staff_id is None):
            raise ValueError("give exactly one of 'key_id' and 'staff_id'")
        _check_period(self.valid_from, self.valid_until, "'valid_from'/'valid_until'")
        return self


class VisitPlanEntry(_OrgRow):
    """A planned visit at a door; without ``staff_id`` any staff of the organisation may make it."""

    device_id: DeviceId
    staff_id: PersonId | None = None
    start: AwareDatetime
    end: AwareDatetime
    # Visits rarely start on the minute; no industry figure was found, so 15
    # minutes either side is a configurable default.
    tolerance_min: Annotated[int, Field(ge=0, le=240)] = 15

    @model_validator(mode="after")
    def _ordered(self) -> VisitPlanEntry:
        _check_period(self.start, self.end, "'start'/'end'")
        return self

    def covers(self, at: datetime) -> bool:
        """Whether ``at`` falls within the visit, tolerance included at both ends."""
        slack = timedelta(minutes=self.tolerance_min)
        return self.start - slack <= at <= self.end + slack


class Consent(_Row):
    """The person's remote-supervision consent for one sensor, and the agreed daily windows."""

    device_id: DeviceId
    consent_on_record: bool
    # Daily Stockholm wall-clock windows such as "22:00-06:00"; a window may
    # cross midnight, and DST nights are judged on the local clock.
    windows: tuple[DailyWindow, ...] = ()
    # The night's planned checks, as local wall-clock times ("23:00"); each
    # must fall inside an agreed window, or it could never be made.
    checks: tuple[time, ...] = ()

    @field_validator("checks", mode="before")
    @classmethod
    def _parse_checks(cls, value: Any) -> Any:
        return _parse_each(value, time, _parse_check, what="planned check", example="23:00")

    @field_serializer("checks")
    def _checks_as_text(self, checks: tuple[time, ...]) -> list[str]:
        return [f"{c:%H:%M}" for c in checks]

    @model_validator(mode="after")
    def _checks_inside_windows(self) -> Consent:
        for check in self.checks:
            if not any(_window_holds(w, check) for w in self.windows):
                windows = ", ".join(str(w) for w in self.windows) or "none"
                raise ValueError(
                    f"planned check {check:%H:%M} is outside the agreed windows ({windows})"
                )
        return self

    @field_validator("windows", mode="before")
    @classmethod
    def _parse_windows(cls, value: Any) -> Any:
        return _parse_each(
            value, DailyWindow, DailyWindow.parse, what="window", example="22:00-06:00"
        )

    @field_serializer("windows")
    def _windows_as_text(self, windows: tuple[DailyWindow, ...]) -> list[str]:
        return [str(w) for w in windows]

    def agreed_at(self, at: datetime) -> bool:
        """Whether ``at`` falls inside one of the agreed windows."""
        return any(w.contains(at, STOCKHOLM) for w in self.windows)


_CHECK = re.compile(r"^\s*([01]\d|2[0-3]):([0-5]\d)\s*$")


_T = TypeVar("_T")


def _parse_check(text: str) -> time:
    """Parse a planned check's ``"HH:MM"``; ValueError saying what was expected."""
    match = _CHECK.match(text)
    if match is None:
        raise ValueError(f"expected a planned check time like '23:00', got {text!r}")
    return time(int(match[1]), int(match[2]))


def _parse_each(
    value: Any, kind: type[_T], parse: Callable[[str], _T], *, what: str, example: str
) -> Any:
    """Parse each text of a list of wall-clock times or windows; parsed ones pass as they are."""
    if not isinstance(value, list | tuple):
        return value
    parsed: list[_T] = []
    for item in value:
        if isinstance(item, kind):
            parsed.append(item)
        elif isinstance(item, str):
            parsed.append(parse(item))
        else:
            # A mapping or bare form would let YAML 1.1 read an unquoted 22:00
            # as the integer 1320, which pydantic takes for 00:22.
            raise ValueError(f"write each {what} as a string like {example!r}, got {item!r}")
    return tuple(parsed)


def _window_holds(window: DailyWindow, at: time) -> bool:
    """Whether a wall-clock time falls in a daily window (which may cross midnight)."""
    if window.start < window.end:
        return window.start <= at < window.end
    return at >= window.start or at < window.end


class AccessDirectory(_Row):
    """Everything the access checks need, as one row list per future table."""

    organisations: tuple[Organisation, ...] = ()
    staff: tuple[Staff, ...] = ()
    keys: tuple[Key, ...] = ()
    shifts: tuple[Shift, ...] = ()
    grants: tuple[Grant, ...] = ()
    visit_plans: tuple[VisitPlanEntry, ...] = ()
    consents: tuple[Consent, ...] = ()

    _orgs: dict[str, Organisation] = PrivateAttr(default_factory=dict)
    _staff: set[tuple[str, str]] = PrivateAttr(default_factory=set)
    _keys: dict[tuple[str, str], Key] = PrivateAttr(default_factory=dict)
    _shifts: dict[tuple[str, str], list[Shift]] = PrivateAttr(default_factory=dict)
    _grants: dict[tuple[str, str], list[Grant]] = PrivateAttr(default_factory=dict)
    _plans: dict[tuple[str, str], list[VisitPlanEntry]] = PrivateAttr(default_factory=dict)
    _consents: dict[str, Consent] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _references(self) -> AccessDirectory:
        problem = _first_reference_problem(self)
        if problem is not None:
            raise PydanticCustomError("access_reference", "{detail}", {"detail": problem})
        return self

    def model_post_init(self, context: Any, /) -> None:
        """Index the rows so each check is a few dictionary look-ups."""
        self._orgs = {o.org: o for o in self.organisations}
        self._staff = {(s.org, s.staff_id) for s in self.staff}
        self._keys = {(k.org, k.key_id): k for k in self.keys}
        self._consents = {c.device_id: c for c in self.consents}
        shifts: defaultdict[tuple[str, str], list[Shift]] = defaultdict(list)
        for shift in self.shifts:
            shifts[shift.org, shift.staff_id].append(shift)
        grants: defaultdict[tuple[str, str], list[Grant]] = defaultdict(list)
        for grant in self.grants:
            grants[grant.org, grant.device_id].append(grant)
        plans: defaultdict[tuple[str, str], list[VisitPlanEntry]] = defaultdict(list)
        for plan in self.visit_plans:
            plans[plan.org, plan.device_id].append(plan)
        self._shifts, self._grants, self._plans = dict(shifts), dict(grants), dict(plans)

    def organisation(self, org: str) -> Organisation | None:
        """The declared organisation ``org``, if any."""
        return self._orgs.get(org)

    def has_staff(self, org: str, staff_id: str) -> bool:
        """Whether ``staff_id`` is a staff member of ``org``."""
        return (org, staff_id) in self._staff

    def key(self, org: str, key_id: str) -> Key | None:
        """The key ``key_id`` of ``org``, if any."""
        return self._keys.get((org, key_id))

    def shifts_of(self, org: str, staff_id: str) -> Sequence[Shift]:
        """The shifts of one staff member of ``org``."""
        return self._shifts.get((org, staff_id), ())

    def grants_on(self, org: str, device_id: str) -> Sequence[Grant]:
        """The grants ``org`` has given on ``device_id``."""
        return self._grants.get((org, device_id), ())

    def visits_at(self, org: str, device_id: str) -> Sequence[VisitPlanEntry]:
        """The visits ``org`` has planned at ``device_id``."""
        return self._plans.get((org, device_id), ())

    def consent(self, device_id: str) -> Consent | None:
        """The remote-supervision consent recorded for sensor ``device_id``, if any."""
        return self._consents.get(device_id)

    def staff_of_account(self, account: str) -> Staff | None:
        """The staff member who logs in to the console as ``account``, if one does."""
        return next((s for s in self.staff if s.account == account), None)


def _first_reference_problem(d: AccessDirectory) -> str | None:
    """Describe the first duplicate or dangling reference as 'section #n (id): key …'."""
    orgs: set[str] = set()
    for i, o in enumerate(d.organisations, start=1):
        if o.org in orgs:
            return f"organisations #{i} ({o.org}): key 'org': appears twice"
        orgs.add(o.org)
    rows: list[tuple[str, Sequence[_OrgRow]]] = [
        ("staff", d.staff),
        ("keys", d.keys),
        ("shifts", d.shifts),
        ("grants", d.grants),
        ("visit_plans", d.visit_plans),
    ]
    for section, entries in rows:
        for i, row in enumerate(entries, start=1):
            if row.org not in orgs:
                return f"{section} #{i} ({_label(section, row)}): key 'org': undeclared {row.org!r}"
    staff: set[tuple[str, str]] = set()
    for i, s in enumerate(d.staff, start=1):
        if (s.org, s.staff_id) in staff:
            return f"staff #{i} ({s.staff_id}): key 'staff_id': appears twice in {s.org!r}"
        staff.add((s.org, s.staff_id))
    keys: set[tuple[str, str]] = set()
    for i, k in enumerate(d.keys, start=1):
        if (k.org, k.key_id) in keys:
            return f"keys #{i} ({k.key_id}): key 'key_id': appears twice in {k.org!r}"
        keys.add((k.org, k.key_id))
    checks: list[tuple[str, Sequence[_OrgRow], str, set[tuple[str, str]]]] = [
        ("keys", d.keys, "staff_id", staff),
        ("shifts", d.shifts, "staff_id", staff),
        ("grants", d.grants, "staff_id", staff),
        ("grants", d.grants, "key_id", keys),
        ("visit_plans", d.visit_plans, "staff_id", staff),
    ]
    for section, entries, field, known in checks:
        for i, row in enumerate(entries, start=1):
            ref = getattr(row, field)
            if ref is not None and (row.org, ref) not in known:
                return (
                    f"{section} #{i} ({_label(section, row)}): key {field!r}: "
                    f"no {field.removesuffix('_id')} {ref!r} in {row.org!r}"
                )
    devices: set[str] = set()
    for i, c in enumerate(d.consents, start=1):
        if c.device_id in devices:
            return f"consents #{i} ({c.device_id}): key 'device_id': appears twice"
        devices.add(c.device_id)
    return None


_LABEL_FIELDS = ("key_id", "staff_id", "device_id", "org")


def _label(section: str, row: _Row | Mapping[str, Any]) -> str:
    """A short human handle for an entry: its own id, else whatever id it has."""
    values = row if isinstance(row, Mapping) else row.model_dump()
    preferred = {"organisations": "org", "staff": "staff_id", "keys": "key_id"}.get(section)
    for field in (preferred, *_LABEL_FIELDS) if preferred else _LABEL_FIELDS:
        value = values.get(field)
        if value:
            return str(value)
    return "?"


def parse_directory(text: str, *, source: str) -> AccessDirectory:
    """Parse an access directory YAML document; errors name ``source``, the entry and the key."""
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AccessDirectoryError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(loaded, dict):
        raise AccessDirectoryError(f"{source}: expected a mapping of sections")
    try:
        return AccessDirectory.model_validate(loaded)
    except ValidationError as exc:
        raise AccessDirectoryError(f"{source}: {_describe(exc, loaded)}") from exc


def _describe(exc: ValidationError, loaded: Mapping[str, Any]) -> str:
    """Turn pydantic's first error into 'section #n (id): key k: message'."""
    first = exc.errors()[0]
    loc = list(first["loc"])
    if not loc:
        return str(first["msg"])
    where = ""
    if len(loc) >= 2 and isinstance(loc[1], int):
        section, index = str(loc[0]), loc[1]
        entry = loaded[section][index]
        label = _label(section, entry) if isinstance(entry, Mapping) else "?"
        where = f"{section} #{index + 1} ({label}): "
        loc = loc[2:]
    if not loc:
        return f"{where}{first['msg']}"
    return f"{where}key {'.'.join(str(p) for p in loc)!r}: {first['msg']}"


def load_directory(path: Path) -> AccessDirectory:
    """Read and validate an access directory file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AccessDirectoryError(f"cannot read access directory {path}: {exc.strerror}") from exc
    directory = parse_directory(text, source=str(path))
    logger.info(
        "access directory %s: %d keys, %d grants", path, len(directory.keys), len(directory.grants)
    )
    return directory


def _require_aware(at: datetime) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("the instant must be timezone-aware")


def _granted(
    d: AccessDirectory, *, org: str, device_id: str, staff_id: str, key_id: str | None, at: datetime
) -> bool:
    return any(
        _within(at, g.valid_from, g.valid_until)
        and (g.staff_id == staff_id or (key_id is not None and g.key_id == key_id))
        for g in d.grants_on(org, device_id)
    )


def _on_shift(d: AccessDirectory, *, org: str, staff_id: str, at: datetime) -> bool:
    return any(s.start <= at < s.end for s in d.shifts_of(org, staff_id))


def check_opening(
    directory: AccessDirectory,
    *,
    org: str,
    device_id: str,
    key_id: str,
    at: datetime,
    during_alarm: bool = False,
) -> AccessDecision:
    """Judge an opening of a lock or cabinet by key ``key_id`` of organisation ``org``."""
    # ``org`` is the key's organisation as the lock system reports it (every
    # lock log entry carries one, DOMAIN.md section 3). Every applicable
    # reason is returned, for the audit, except that an unknown key has no
    # staff member to judge further.
    _require_aware(at)
    key = directory.key(org, key_id)
    if key is None:
        return AccessDecision((Reason.UNKNOWN_KEY,))
    reasons: list[Reason] = []
    if key.is_blocked_at(at):
        reasons.append(Reason.KEY_BLOCKED)
    if not _within(at, key.valid_from, key.valid_until):
        reasons.append(Reason.KEY_EXPIRED)
    granted = _granted(
        directory, org=org, device_id=device_id, staff_id=key.staff_id, key_id=key_id, at=at
    )
    if not granted:
        reasons.append(Reason.NOT_GRANTED)
    if not _on_shift(directory, org=org, staff_id=key.staff_id, at=at):
        reasons.append(Reason.OFF_SHIFT)
    organisation = directory.organisation(org)
    # Every key's organisation is declared (the directory checks references).
    assert organisation is not None
    # Some lock systems allow opening outside the visit plan while an alarm is
    # open for the door; that waives the plan only, never key, grant or shift.
    if organisation.visit_plan_enforced and not during_alarm:
        planned = any(
            (p.staff_id is None or p.staff_id == key.staff_id) and p.covers(at)
            for p in directory.visits_at(org, device_id)
        )
        if not planned:
            reasons.append(Reason.OUTSIDE_VISIT_PLAN)
    return AccessDecision(tuple(reasons))


def check_remote_view(
    directory: AccessDirectory, *, org: str, device_id: str, staff_id: str, at: datetime
) -> AccessDecision:
    """Judge a remote-supervision view of sensor ``device_id`` by staff member ``staff_id``."""
    # The law (SoL since 1 March 2024, DOMAIN.md section 2) wants consent and
    # agreed times, and access only for those whose work needs it: hence a
    # known staff member, on shift, with a grant on the sensor.
    _require_aware(at)
    if not directory.has_staff(org, staff_id):
        return AccessDecision((Reason.UNKNOWN_STAFF,))
    reasons: list[Reason] = []
    if not _granted(directory, org=org, device_id=device_id, staff_id=staff_id, key_id=None, at=at):
        reasons.append(Reason.VIEW_NOT_GRANTED)
    if not _on_shift(directory, org=org, staff_id=staff_id, at=at):
        reasons.append(Reason.OFF_SHIFT)
    consent = directory.consent(device_id)
    if consent is None or not consent.consent_on_record:
        reasons.append(Reason.NO_CONSENT)
    # Without a consent row there are no agreed times to be outside of.
    if consent is not None and not consent.agreed_at(at):
        reasons.append(Reason.OUTSIDE_AGREED_TIMES)
    return AccessDecision(tuple(reasons))


def remote_view_entry(
    directory: AccessDirectory,
    *,
    org: str,
    device_id: str,
    staff_id: str,
    at: datetime,
    person: str | None,
    detail: Mapping[str, DetailValue] | None = None,
) -> tuple[AccessDecision, EntryDraft]:
    """Judge a remote view and draft its access-log entry: the CLI and the console share it."""
    # Allowed or refused, the entry is written before anything is shown
    # (DOMAIN.md section 2: only a log of who looked, when, is kept).
    decision = check_remote_view(directory, org=org, device_id=device_id, staff_id=staff_id, at=at)
    logged: dict[str, DetailValue] = {
        **(detail or {}),
        "allowed": decision.allowed,
        "reasons": [r.value for r in decision.reasons],
    }
    draft = EntryDraft(org, at, staff_id, Action.REMOTE_VIEW, device_id, person, logged)
    return decision, draft


# The night's planned checks run from noon to noon, named by the evening's
# date: a check at 23:00 and one at 05:00 belong to the same night.
NIGHT_TURNS = time(12, 0)
# A planned check not recorded as seen this long after its time is overdue.
# No public figure was found (Trelleborg's checks take 30 s); chosen, so
# that a patrol a few minutes late on a round is not yet flagged.
OVERDUE_GRACE = timedelta(minutes=15)


def night_of(at: datetime) -> date:
    """The night an instant belongs to: the local date of the evening it follows."""
    _require_aware(at)
    local = at.astimezone(STOCKHOLM)
    return local.date() if local.time() >= NIGHT_TURNS else local.date() - timedelta(days=1)


@dataclass(frozen=True, slots=True)
class PlannedCheck:
    """One remote check planned for a night: the sensor, the agreed time, the consent."""

    device_id: str
    planned_at: datetime  # aware, UTC
    consent_on_record: bool
    windows: tuple[DailyWindow, ...]

    def overdue(self, now: datetime) -> bool:
        """Whether the check's time plus the grace has passed (done or not: the caller says)."""
        return now > self.planned_at + OVERDUE_GRACE


def planned_checks(directory: AccessDirectory, night: date) -> list[PlannedCheck]:
    """Every check planned for the night of ``night``, earliest first."""
    found: list[PlannedCheck] = []
    for consent in directory.consents:
        for check in consent.checks:
            day = night if check >= NIGHT_TURNS else night + timedelta(days=1)
            # Wall-clock time on that date; fold=0 takes the first of a
            # repeated hour (the autumn switch), as staff would read it.
            local = datetime.combine(day, check, tzinfo=STOCKHOLM)
            found.append(
                PlannedCheck(
                    consent.device_id,
                    local.astimezone(UTC),
                    consent.consent_on_record,
                    consent.windows,
                )
            )
    return sorted(found, key=lambda c: (c.planned_at, c.device_id))


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The latest result of one planned remote check, as the rules engine keeps it."""

    device_id: str
    planned_at: datetime
    seen: bool  # the latest try: seen and well, or not seen
    not_seen: int  # how many tries did not see the person
    at: datetime  # when the latest result was recorded
    actor: str  # the console account that recorded it
    alert_id: str | None = None  # the alert the "not seen" tries raised, if they did

    def to_json(self) -> dict[str, Any]:
        """JSON-ready, for the engine's saved state."""
        return {
            "device_id": self.device_id,
            "planned_at": self.planned_at.isoformat(),
            "seen": self.seen,
            "not_seen": self.not_seen,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "alert_id": self.alert_id,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CheckResult:
        """Back from ``to_json``; KeyError, TypeError or ValueError when malformed."""
        return cls(
            str(data["device_id"]),
            datetime.fromisoformat(data["planned_at"]),
            bool(data["seen"]),
            int(data["not_seen"]),
            datetime.fromisoformat(data["at"]),
            str(data["actor"]),
            None if data["alert_id"] is None else str(data["alert_id"]),
        )
