"""Tests of the rules package, with the small factories the engine tests share."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from core.clock import FrozenClock
from core.events import AttributeValue, Event, Family
from rules.engine import RuleEngine
from rules.model import DeviceInfo, Effect
from rules.ruleset import default_rules_text, parse_ruleset

SE = ZoneInfo("Europe/Stockholm")
ORG = "hemtjanst"


def se(year: int, month: int, day: int, hour: int, minute: int = 0, fold: int = 0) -> datetime:
    """A Stockholm wall-clock time as a UTC instant (``fold=1``: the repeated hour's second)."""
    return datetime(year, month, day, hour, minute, tzinfo=SE, fold=fold).astimezone(UTC)


def event(
    device_id: str,
    kind: str,
    at: datetime,
    *,
    received_at: datetime | None = None,
    family: Family | None = None,
    **attributes: AttributeValue,
) -> Event:
    """An event that happened at ``at`` and (unless told otherwise) arrived at once."""
    if family is None:
        prefix = kind.split(".", maxsplit=1)[0]
        # device.* kinds belong to every family; a social alarm is the common case.
        family = Family(prefix) if prefix in set(Family) else Family.ALARM
    return Event(
        event_id=f"{device_id}:{kind}:{at.isoformat()}",
        device_id=device_id,
        family=family,
        kind=kind,
        occurred_at=at,
        received_at=at if received_at is None else received_at,
        attributes=dict(attributes),
    )


def make_engine(
    start: datetime,
    devices: Mapping[str, DeviceInfo] | None = None,
    override: str | None = None,
) -> tuple[RuleEngine, FrozenClock]:
    """An engine on the default rule set (plus an override text) with a frozen clock."""
    clock = FrozenClock(start)
    ruleset = parse_ruleset(default_rules_text(), override, source="org.yaml")
    return RuleEngine(ruleset, clock, devices or {}), clock


def run(engine: RuleEngine, clock: FrozenClock, until: datetime, step_s: int = 10) -> list[Effect]:
    """Tick the engine every ``step_s`` seconds up to ``until``, as the service loop would."""
    effects: list[Effect] = []
    while clock.now() < until:
        clock.advance(min(timedelta(seconds=step_s), until - clock.now()))
        effects.extend(engine.tick(clock.now()))
    return effects
