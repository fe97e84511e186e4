"""The rule set as data: the shipped default YAML, an organisation's overrides, validation."""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from core.errors import ConfigError
from core.events import ALL_KINDS, DeviceId, Family
from rules.calendar import DailyWindow
from rules.model import Priority, parse_recipient

logger = logging.getLogger(__name__)


class RuleSetError(ConfigError):
    """A rule set file is invalid; each problem names the file, the key and what was expected."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _known_kind(kind: str) -> str:
    if kind not in ALL_KINDS:
        raise ValueError(f"expected an event kind such as 'sensor.left_bed', got {kind!r}")
    return kind


def _window(value: object) -> DailyWindow:
    if isinstance(value, DailyWindow):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a window like '22:00-07:00', got {value!r}")
    return DailyWindow.parse(value)


Kind = Annotated[str, AfterValidator(_known_kind)]
Kinds = Annotated[tuple[Kind, ...], Field(min_length=1)]
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]
Window = Annotated[DailyWindow, PlainValidator(_window), PlainSerializer(str)]


def _recipient(text: str) -> str:
    parse_recipient(text)
    return text


Recipient = Annotated[str, AfterValidator(_recipient)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# How the console shows a rule's alerts. Each category has a colour in
# dashboards/static/console.css and each icon a drawing in console.js (ICONS);
# tests/rules/test_presentation.py keeps them in step. Every category has an
# icon of its own name; `icon` is a key of its own so a rule may borrow another.
Category = Literal[
    "alarm", "fall", "bed", "access", "lock", "dispenser", "contact", "battery", "power", "time",
    "supervision", "device",
]  # fmt: skip
Icon = Category
CATEGORIES: tuple[str, ...] = get_args(Category)
Title = Annotated[str, Field(min_length=1, max_length=120)]


# The languages of the console, and of a rule's titles.
Lang = Literal["sv", "en"]


class Titles(_Model):
    """A rule's name in each language of the console (Swedish first)."""

    sv: Title
    en: Title


class Presentation(_Model):
    """How the console shows the alerts of a rule: colour group, icon and name."""

    category: Category
    icon: Icon
    titles: Titles


class _Rule(_Model):
    # `title` is the older spelling of `titles.sv`, kept for organisation files
    # written before there were two languages; after validation both are set and
    # `title` always equals `titles.sv` (it is what an alert stores as its title).
    # A rule given only `title` shows that Swedish text in English too. When an
    # organisation's file sets `title` over a default rule that has `titles`, the
    # file's `title` wins for Swedish and the default's English stays; one file
    # may not give both `title` and `titles.sv` (parse_ruleset says so).
    title: Title
    titles: Titles
    # A rule that names none is shown with the neutral device look.
    category: Category = "device"
    icon: Icon = "device"
    priority: Priority
    enabled: bool = True
    # A name from `windows`: the rule raises only for conditions beginning inside it.
    window: Name | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_swedish_title(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        title, titles = data.get("title"), data.get("titles")
        if isinstance(titles, Mapping):
            if isinstance(title, str):
                return {**data, "titles": {**titles, "sv": title}}
            if "sv" in titles:
                return {**data, "title": titles["sv"]}
        elif titles is None and isinstance(title, str):
            return {**data, "titles": {"sv": title, "en": title}}
        return data

    @property
    def presentation(self) -> Presentation:
        """How the console shows this rule's alerts."""
        return Presentation(category=self.category, icon=self.icon, titles=self.titles)


class ImmediateRule(_Rule):
    """An event kind raises an alert at once (alarm button, fall, tamper)."""

    type: Literal["immediate"]
    kinds: Kinds
    clear: tuple[Kind, ...] = ()  # kinds by which the device says the condition is over


class AbsenceRule(_Rule):
    """A start kind not followed by an expected kind within a time raises an alert."""

    type: Literal["absence"]
    start: Kinds
    expect: Kinds
    # Kinds by which the device itself reports that the expected event did not come.
    missed: tuple[Kind, ...] = ()
    within_min: Annotated[int, Field(ge=1, le=24 * 60)]
    # An attribute that pairs start and expected events (a dispenser's dose_id).
    match_attribute: Name | None = None

    @model_validator(mode="after")
    def _distinct_kinds(self) -> AbsenceRule:
        if overlap := set(self.start) & (set(self.expect) | set(self.missed)):
            raise ValueError(f"kinds {sorted(overlap)} cannot both start and end the wait")
        return self

    @property
    def within(self) -> timedelta:
        """How long the expected event may take."""
        return timedelta(minutes=self.within_min)


class OutageGrouping(_Model):
    """When silent devices of one organisation are one outage rather than many faults."""

    # A newly silent device waits this long for others before it is alerted alone.
    window_min: Annotated[float, Field(ge=0, le=60)]
    min_devices: Annotated[int, Field(ge=2)]
    # ... or this share of the organisation's supervised devices, but never fewer
    # than min_devices_for_share (in an organisation of five, one is not an outage).
    min_share: Annotated[float, Field(gt=0, le=1)]
    min_devices_for_share: Annotated[int, Field(ge=2)]

    def is_outage(self, silent: int, supervised: int) -> bool:
        """Whether ``silent`` of an organisation's ``supervised`` devices make an outage."""
        if silent >= self.min_devices:
            return True
        return silent >= self.min_devices_for_share and silent >= self.min_share * supervised


class SupervisionRule(_Rule):
    """No message from a device for k heartbeat intervals raises 'no contact'."""

    type: Literal["supervision"]
    missed_heartbeats: Annotated[int, Field(ge=1, le=1000)]
    families: Annotated[tuple[Family, ...], Field(min_length=1)]
    outage: OutageGrouping

    @field_validator("window")
    @classmethod
    def _no_window(cls, window: str | None) -> str | None:
        if window is not None:
            raise ValueError("supervision runs around the clock; remove the window")
        return window


class ThresholdRule(_Rule):
    """A numeric attribute below a limit (or a kind that says so) raises an alert."""

    type: Literal["threshold"]
    attribute: Name
    below: float
    # The level at or above which the condition is over; defaults to `below`.
    clears_at: float | None = None
    kinds: tuple[Kind, ...] = ()  # kinds by which the device reports the condition itself

    @model_validator(mode="after")
    def _hysteresis(self) -> ThresholdRule:
        if self.clears_at is not None and self.clears_at < self.below:
            raise ValueError(f"clears_at must be at least below ({self.below:g})")
        return self

    @property
    def clear_level(self) -> float:
        """The level at or above which the alert clears."""
        return self.below if self.clears_at is None else self.clears_at


class AccessRule(_Rule):
    """An opening that the access directory refuses raises 'obehörig öppning' with the reason."""

    type: Literal["access"]
    kinds: Kinds  # the openings that are checked against keys, grants, shifts and plans


class EscalationTier(_Model):
    """One step of a priority's escalation: unacknowledged this long after paging, tell these."""

    after_min: Annotated[float, Field(gt=0, le=24 * 60)]
    to: Annotated[tuple[Recipient, ...], Field(min_length=1)]

    @field_validator("to")
    @classmethod
    def _distinct(cls, to: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(to)) != len(to):
            raise ValueError(f"expected each recipient once, got {list(to)}")
        return to

    @property
    def after(self) -> timedelta:
        """How long after paging the tier is due."""
        return timedelta(minutes=self.after_min)


# Whom an organisation's old single `escalation_min` limit now escalates to:
# the old escalation paged everyone who handles the organisation's alarms, and
# so does this one tier.
LEGACY_RECIPIENTS = ("role:coordinator", "role:operator")


class RemoteCheckRule(_Rule):
    """A planned remote check whose person was not seen, tried again and still not seen."""

    type: Literal["remote_check"]
    # Practice (DOMAIN.md section 2): not seen, try again, then alarm the patrol.
    not_seen_times: Annotated[int, Field(ge=1, le=5)] = 2


Rule = Annotated[
    ImmediateRule | AbsenceRule | SupervisionRule | ThresholdRule | AccessRule | RemoteCheckRule,
    Field(discriminator="type"),
]
_RULE = TypeAdapter(Rule)
RULE_TYPES = frozenset(
    {"immediate", "absence", "supervision", "threshold", "access", "remote_check"}
)

# Settings a person's device may change; the kinds a rule reacts to stay the
# organisation's, so the engine can index rules by kind once.
DEVICE_SETTINGS = frozenset(
    {"enabled", "priority", "window", "within_min", "missed_heartbeats", "below", "clears_at"}
)


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"expected an IANA time zone such as 'Europe/Stockholm', got {name!r}"
        ) from exc
    return name


class RuleSet(_Model):
    """A validated rule set: rules, windows, escalation tiers and per-device settings."""

    version: Literal[1]
    timezone: Annotated[str, AfterValidator(_zone)]
    late_after_min: Annotated[int, Field(ge=0)]
    windows: dict[Name, Window]
    escalation: dict[Priority, tuple[EscalationTier, ...]]
    outcomes: Annotated[tuple[Name, ...], Field(min_length=1)]
    rules: dict[Name, Rule]
    devices: dict[DeviceId, dict[Name, dict[str, Any]]] = Field(default_factory=dict)

    _tz: ZoneInfo = PrivateAttr()
    _device_rules: dict[str, dict[str, Rule]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _references(self) -> RuleSet:
        self._tz = ZoneInfo(self.timezone)
        problems: list[str] = []
        if missing := [p.value for p in Priority if p not in self.escalation]:
            problems.append(
                f"key escalation: expected tiers (or an empty list) for every priority; "
                f"missing {missing}"
            )
        for priority, tiers in sorted(self.escalation.items()):
            limits = [tier.after_min for tier in tiers]
            if any(later <= earlier for earlier, later in itertools.pairwise(limits)):
                problems.append(
                    f"key escalation.{priority.value}: expected tiers in order of after_min, "
                    f"each later than the one before; got {[f'{m:g}' for m in limits]}"
                )
        supervision = [rid for rid, rule in self.rules.items() if rule.type == "supervision"]
        if len(supervision) > 1:
            problems.append(f"key rules: expected at most one supervision rule, got {supervision}")
        for rule_id, rule in self.rules.items():
            problems.extend(self._window_problem(f"rules.{rule_id}.window", rule))
        for device_id, overrides in self.devices.items():
            resolved: dict[str, Rule] = {}
            for rule_id, settings in overrides.items():
                key = f"devices.{device_id}.{rule_id}"
                rule_problems, device_rule = self._device_rule(key, rule_id, settings)
                problems.extend(rule_problems)
                if device_rule is not None:
                    resolved[rule_id] = device_rule
            self._device_rules[device_id] = resolved
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _window_problem(self, key: str, rule: Rule) -> list[str]:
        if rule.window is None or rule.window in self.windows:
            return []
        return [
            f"key {key}: expected one of the windows {sorted(self.windows)}, got {rule.window!r}"
        ]

    def _device_rule(
        self, key: str, rule_id: str, settings: Mapping[str, Any]
    ) -> tuple[list[str], Rule | None]:
        base = self.rules.get(rule_id)
        if base is None:
            return [f"key {key}: expected the id of a rule, one of {sorted(self.rules)}"], None
        if unknown := sorted(set(settings) - DEVICE_SETTINGS):
            return [
                f"key {key}.{name}: cannot be set per device (expected one of "
                f"{sorted(DEVICE_SETTINGS)})"
                for name in unknown
            ], None
        try:
            rule = _RULE.validate_python({**base.model_dump(), **settings})
        except ValidationError as exc:
            return [
                f"key {key}{_dotted(_without_tag(err['loc']), lead='.')}: {_expectation(err)}"
                for err in exc.errors()
            ], None
        return self._window_problem(f"{key}.window", rule), rule

    @property
    def tz(self) -> ZoneInfo:
        """The zone every window is judged in."""
        return self._tz

    @property
    def late_after(self) -> timedelta:
        """How old an event may be on arrival and still page as new."""
        return timedelta(minutes=self.late_after_min)

    @property
    def device_rules(self) -> Mapping[str, Mapping[str, Rule]]:
        """The rules of devices with settings of their own, by device id, then rule id."""
        return self._device_rules

    def judged_attributes(self) -> frozenset[str]:
        """The event attributes some rule judges (threshold rules, with device settings)."""
        rules = [
            *self.rules.values(),
            *(r for own in self._device_rules.values() for r in own.values()),
        ]
        return frozenset(r.attribute for r in rules if isinstance(r, ThresholdRule))

    def rule_for(self, rule_id: str, device_id: str) -> Rule:
        """A rule as it applies to one device, with that device's own settings."""
        device_rules = self._device_rules.get(device_id)
        if device_rules is not None and (rule := device_rules.get(rule_id)) is not None:
            return rule
        return self.rules[rule_id]

    def applies_at(self, rule: Rule, at: datetime) -> bool:
        """Whether ``rule`` raises for a condition beginning at ``at`` (its window)."""
        return rule.window is None or self.windows[rule.window].contains(at, self._tz)

    def presentation(self, rule_id: str) -> Presentation | None:
        """How the console shows a rule's alerts; None for a rule no longer in the set."""
        rule = self.rules.get(rule_id)
        return None if rule is None else rule.presentation

    def escalation_tiers(self, priority: Priority) -> tuple[EscalationTier, ...]:
        """The tiers an unacknowledged alert of ``priority`` escalates through, in order."""
        return self.escalation[priority]


def default_rules_text() -> str:
    """The text of the rule set shipped with the package."""
    return resources.files("rules").joinpath("default_rules.yaml").read_text(encoding="utf-8")


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        old = merged.get(key)
        # A rule re-declared with another type is a new rule, not a patch of the old one.
        if (
            isinstance(old, Mapping)
            and isinstance(value, Mapping)
            and ("type" not in value or value["type"] == old.get("type"))
        ):
            merged[key] = _merge(old, value)
        else:
            merged[key] = value
    return merged


def _without_tag(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    # Pydantic puts the discriminator value into the location of a union
    # member's error (rules.x.absence.within_min), and "[key]" after a bad
    # mapping key; the file has neither.
    if loc and loc[-1] == "[key]":
        loc = loc[:-1]
    if loc and loc[0] in RULE_TYPES:
        return loc[1:]
    if len(loc) > 2 and loc[0] == "rules" and loc[2] in RULE_TYPES:
        return loc[:2] + loc[3:]
    return loc


def _dotted(loc: tuple[int | str, ...], lead: str = "") -> str:
    return "".join(f"{lead if i == 0 else '.'}{part}" for i, part in enumerate(loc))


_PYDANTIC_LEAD = re.compile(r"^(Input|Tuple|List|Dictionary|String) should (be|have)")


def _expectation(err: ErrorDetails) -> str:
    if err["type"] == "missing":
        return "required, but missing"
    if err["type"] == "extra_forbidden":
        return "not a known key (the default rule set shows every key there is)"
    if err["type"] == "string_pattern_mismatch":
        return f"expected text matching {err['ctx']['pattern']}, got {err['input']!r}"
    if err["type"] in {"union_tag_invalid", "union_tag_not_found"}:
        got = f", got {err['ctx']['tag']!r}" if err["type"] == "union_tag_invalid" else ""
        return f"expected a type, one of {', '.join(sorted(RULE_TYPES))}{got}"
    # "Input should be a valid integer" reads better as "expected a valid integer".
    message = _PYDANTIC_LEAD.sub("expected", err["msg"].removeprefix("Value error, "))
    if err["type"] == "value_error":
        return message
    value = err["input"]
    if isinstance(value, Mapping | list):
        return message
    return f"{message}, got {value!r}"


def _describe(exc: ValidationError, source: str) -> list[str]:
    problems: list[str] = []
    for err in exc.errors():
        loc = _without_tag(err["loc"])
        if not loc and err["type"] == "value_error":
            # The cross-reference checks name their keys themselves.
            problems.extend(f"{source}: {line}" for line in _expectation(err).splitlines())
        else:
            problems.append(f"{source}: key {_dotted(loc) or '(top level)'}: {_expectation(err)}")
    return problems


def _yaml_mapping(text: str, source: str) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RuleSetError([f"{source}: not valid YAML: {exc}"]) from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise RuleSetError([f"{source}: expected a mapping of settings at the top level"])
    return loaded


def _upgrade_escalation(data: dict[str, Any], source: str) -> dict[str, Any]:
    """Turn a file's old ``escalation_min`` (one limit per priority) into one tier each.

    Older organisation files keep loading: a number becomes one tier after that
    many minutes to LEGACY_RECIPIENTS, null becomes no tiers. A warning says
    how to write it now.
    """
    if "escalation_min" not in data:
        return data
    data = dict(data)
    legacy = data.pop("escalation_min")
    if not isinstance(legacy, Mapping):
        raise RuleSetError(
            [f"{source}: key escalation_min: expected a mapping of priority to minutes; "
             "better, write `escalation` tiers (see the default rule set)"]
        )  # fmt: skip
    tiers = data.get("escalation")
    given = {str(p) for p in tiers} if isinstance(tiers, Mapping) else set()
    upgraded: dict[Any, Any] = dict(tiers) if isinstance(tiers, Mapping) else {}
    problems: list[str] = []
    for priority, minutes in legacy.items():
        key = f"{source}: key escalation_min.{priority}"
        if str(priority) in given:
            problems.append(f"{key}: escalation.{priority} is given too; keep only `escalation`")
        elif minutes is None:
            upgraded[priority] = []
        elif isinstance(minutes, int) and not isinstance(minutes, bool) and minutes >= 1:
            upgraded[priority] = [{"after_min": minutes, "to": list(LEGACY_RECIPIENTS)}]
        else:
            problems.append(f"{key}: expected whole minutes (1 or more) or null, got {minutes!r}")
    if problems:
        raise RuleSetError(problems)
    logger.warning(
        "%s: key escalation_min is the old form; read as one tier per priority to %s. "
        "Write `escalation` tiers instead (see the default rule set)",
        source,
        ", ".join(LEGACY_RECIPIENTS),
    )
    data["escalation"] = upgraded
    return data


def _title_clashes(data: Mapping[str, Any], source: str) -> list[str]:
    """Rules of one file that give both spellings of the Swedish title."""
    rules = data.get("rules")
    if not isinstance(rules, Mapping):
        return []
    return [
        f"{source}: key rules.{rule_id}.title: the older spelling of titles.sv; "
        "give one of them, not both"
        for rule_id, rule in rules.items()
        if isinstance(rule, Mapping)
        and "title" in rule
        and isinstance(rule.get("titles"), Mapping)
        and "sv" in rule["titles"]
    ]


def parse_ruleset(default_text: str, override_text: str | None = None, *, source: str) -> RuleSet:
    """Merge an override text onto the default text and validate; ``source`` names the file."""
    data = _upgrade_escalation(_yaml_mapping(default_text, "default rule set"), "default rule set")
    clashes = _title_clashes(data, "default rule set")
    if override_text is not None:
        override = _upgrade_escalation(_yaml_mapping(override_text, source), source)
        clashes += _title_clashes(override, source)
        data = _merge(data, override)
    if clashes:
        raise RuleSetError(clashes)
    try:
        return RuleSet.model_validate(data)
    except ValidationError as exc:
        raise RuleSetError(_describe(exc, source)) from exc


def load_ruleset(default_text: str, override_path: Path | None = None) -> RuleSet:
    """The rule set in force: the default with an organisation's file merged onto it."""
    if override_path is None:
        return parse_ruleset(default_text, source="default rule set")
    try:
        override_text = override_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleSetError([f"cannot read rule set file {override_path}: {exc.strerror}"]) from exc
    except UnicodeDecodeError as exc:
        raise RuleSetError([f"{override_path}: not UTF-8 text: {exc.reason}"]) from exc
    return parse_ruleset(default_text, override_text, source=str(override_path))


def check_ruleset_file(path: Path) -> list[str]:
    """Every problem of an organisation's rule set file, for ``wgw rules check FILE``."""
    try:
        load_ruleset(default_rules_text(), path)
    except RuleSetError as exc:
        return exc.problems
    return []
