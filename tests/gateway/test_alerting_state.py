"""When the rules engine's state is saved with a batch: whenever it changed, and only then."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.clock import FrozenClock
from core.events import Event, Family
from core.rows import StoredRow
from gateway.alerting import Alerting
from rules import RuleEngine, default_rules_text, load_ruleset
from rules.model import DeviceInfo

NIGHT = datetime(2026, 11, 24, 1, 10, tzinfo=UTC)  # 02:10 in Stockholm


def row(kind: str, event_id: str, at: datetime = NIGHT) -> StoredRow:
    event = Event(
        event_id=event_id,
        device_id="sensor-0001",
        family=Family.SENSOR,
        kind=kind,
        occurred_at=at,
        received_at=at,
    )
    return StoredRow(event, "vallby")


def alerting() -> Alerting:
    devices = {"sensor-0001": DeviceInfo("vallby", Family.SENSOR, 300)}
    engine = RuleEngine(load_ruleset(default_rules_text(), None), FrozenClock(NIGHT), devices)
    return Alerting({None: engine}, publish=lambda topic, payload: None, dedup_window=100)


def test_state_is_saved_when_a_wait_starts_or_ends_and_not_for_a_heartbeat() -> None:
    a = alerting()
    assert a.on_rows([row("device.heartbeat", "hb-0")]).states  # the first save
    assert not a.on_rows([row("device.heartbeat", "hb-1")]).states  # nothing changed
    started = a.on_rows([row("sensor.left_bed", "lb-1")]).states
    assert [t["rule_id"] for t in started["engine"]["timers"]] == ["not_back_in_bed"]
    assert not a.on_rows([row("device.heartbeat", "hb-2")]).states
    back = a.on_rows([row("sensor.in_bed", "ib-1", NIGHT + timedelta(minutes=5))]).states
    assert back["engine"]["timers"] == []


def test_state_is_saved_with_every_alert_change() -> None:
    a = alerting()
    a.on_rows([row("device.heartbeat", "hb-0")])
    opened = a.on_rows([row("sensor.fall", "f-1")]).states
    assert [al["rule_id"] for al in opened["engine"]["alerts"]] == ["fall"]
    repeated = a.on_rows([row("sensor.fall", "f-2", NIGHT + timedelta(minutes=1))]).states
    assert [al["count"] for al in repeated["engine"]["alerts"]] == [2]
