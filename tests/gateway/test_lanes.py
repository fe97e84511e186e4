"""The alarm lane: what may page goes ahead of a backlog, per-device order holds, and a
backlog of heartbeats waiting to be judged never raises "no contact"."""

from __future__ import annotations

import asyncio
import json
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.clock import FrozenClock
from core.events import Family, RawMessage
from gateway.ingest import MemorySource
from gateway.journal import Lane, lane_of
from gateway.registry import DeviceRecord
from gateway.service import Gateway
from gateway.store import migrate
from gateway.store.devices import import_devices
from rules import default_rules_text, load_ruleset
from rules.model import Effect
from tests.utils.gateways import judged, running_gateway, ticked_settings, until
from tests.utils.services import count, rows

# The attributes the default rule set judges (battery), as the gateway derives them.
JUDGED = load_ruleset(default_rules_text(), None).judged_attributes()


def lane(message: RawMessage) -> Lane:
    return lane_of(message, JUDGED)


pytestmark = pytest.mark.db


def running(
    dsn: str, clock: FrozenClock, *, batch_max: int = 25_000
) -> AbstractAsyncContextManager[tuple[Gateway, MemorySource]]:
    """A gateway whose timers fire only when the test ticks it (within a test's time)."""
    return running_gateway(ticked_settings(dsn), clock, batch_max=batch_max)


# 02:15 in Stockholm on a November night (UTC+1): inside the night window.
NIGHT = datetime(2026, 11, 24, 1, 15, tzinfo=UTC)
BACKLOG = 20_000


def bodies(source: MemorySource) -> list[dict[str, Any]]:
    return [json.loads(payload) for _, payload in source.published]


def alerts_of(source: MemorySource, rule_id: str) -> list[dict[str, Any]]:
    return [b for b in bodies(source) if b.get("alert", {}).get("rule_id") == rule_id]


def event(device: str, kind: str, at: datetime, event_id: str, received: datetime,
          **extra: object) -> RawMessage:  # fmt: skip
    body = {"id": event_id, "kind": kind, "ts": at.isoformat(), **extra}
    return RawMessage(f"wgw/vallby/sensor/{device}/event", json.dumps(body).encode(), received)


def heartbeats(devices: list[str], n: int, received: datetime) -> list[RawMessage]:
    """``n`` distinct heartbeats of ``devices`` in turn, device times just before receipt."""
    out = []
    for i in range(n):
        device = devices[i % len(devices)]
        at = received - timedelta(milliseconds=n - i)
        body = {"id": f"hb-{i}", "kind": "device.heartbeat", "ts": at.isoformat()}
        raw = RawMessage(f"wgw/vallby/sensor/{device}/event", json.dumps(body).encode(), received)
        out.append(raw)
    assert all(lane(r) is Lane.BULK for r in out)
    return out


def sensors(prefix: str, n: int, interval_s: int) -> list[DeviceRecord]:
    return [
        DeviceRecord(
            device_id=f"{prefix}-{k:04d}",
            family=Family.SENSOR,
            org="vallby",
            heartbeat_interval_s=interval_s,
        )
        for k in range(n)
    ]


@pytest.fixture
def dsn(db_dsn: str) -> str:
    migrate(db_dsn)
    return db_dsn


async def test_back_in_bed_behind_a_heartbeat_backlog_never_pages_and_a_fall_goes_first(
    dsn: str,
) -> None:
    busy = sensors("hb", 50, 3600)
    bed, control, faller = sensors("bed", 3, 3600)
    import_devices(dsn, [*busy, bed, control, faller])
    left = NIGHT
    received = left + timedelta(minutes=5)
    clock = FrozenClock(received)
    backlog = heartbeats([d.device_id for d in busy], BACKLOG, received)
    behind = [
        # Out of bed and back within five minutes: the rule's twenty are not used up.
        event(bed.device_id, "sensor.left_bed", left, "lb-1", received),
        event(bed.device_id, "sensor.in_bed", left + timedelta(minutes=5), "ib-1", received),
        # Out of bed and not back: this one must page, so the check below can fail.
        event(control.device_id, "sensor.left_bed", left, "lb-2", received),
        event(faller.device_id, "sensor.fall", received, "f-1", received, level="alarm"),
    ]
    fed = len(backlog) + len(behind)
    async with running(dsn, clock) as (gateway, source):
        seen: list[tuple[str, int, int]] = []

        def note(effect: Effect, _received_at: datetime | None) -> None:
            rule = getattr(getattr(effect, "alert", None), "rule_id", "")
            seen.append((rule, gateway.metrics.messages, gateway.spool_status().waiting_rules))

        assert gateway.alerting is not None
        gateway.alerting.listeners.append(note)
        source.feed([*backlog, *behind])
        await judged(gateway, fed)
        # The fall was published while the heartbeats fed before it still waited.
        [(_, judged_then, waiting_then)] = [s for s in seen if s[0] == "fall"]
        assert judged_then <= len(behind)
        assert waiting_then >= BACKLOG
        assert len(alerts_of(source, "fall")) == 1

        clock.advance(timedelta(minutes=30))  # 02:50: both deadlines (02:35) long gone
        gateway.tick_now()
        gateway.tick_now()
        # The control is not back in bed and pages; back in bed never overtook its
        # left_bed, so the other one never does.
        paged = {a["alert"]["device_id"] for a in alerts_of(source, "not_back_in_bed")}
        assert paged == {control.device_id}
        assert len(alerts_of(source, "not_back_in_bed")) == 1
        await until(lambda: gateway.spool_status().waiting_storage == 0)
    assert count(dsn, "SELECT count(*) FROM events") == fed
    assert sorted(rows(dsn, "SELECT rule_id, device_id FROM alerts")) == [
        ("fall", faller.device_id),
        ("not_back_in_bed", control.device_id),
    ]


async def test_a_battery_reading_on_a_heartbeat_is_judged_in_device_order(dsn: str) -> None:
    [sensor] = sensors("bat", 1, 3600)
    import_devices(dsn, [sensor])
    clock = FrozenClock(NIGHT)
    low = {"kind": "device.heartbeat", "ts": (NIGHT - timedelta(seconds=2)).isoformat(),
           "battery": 12}  # fmt: skip
    hb = RawMessage(f"wgw/vallby/sensor/{sensor.device_id}/event", json.dumps(low).encode(), NIGHT)
    # Charged again a second later, said with an event that is no heartbeat.
    charged = event(sensor.device_id, "sensor.activity", NIGHT - timedelta(seconds=1), "a-1",
                    NIGHT, battery=95)  # fmt: skip
    # A heartbeat with a reading is judged in the alarm lane, in order.
    assert (lane(hb), lane(charged)) == (Lane.ALARM, Lane.ALARM)
    async with running(dsn, clock) as (gateway, source):
        source.feed([hb, charged])
        await judged(gateway, 2)
        effects = [b["effect"] for b in alerts_of(source, "battery_low")]
    # In device order: 12 % opens the alert and 95 % clears it.
    assert effects == ["AlertOpened", "AlertCleared"]


async def test_draining_a_heartbeat_backlog_raises_no_contact_alert(dsn: str) -> None:
    # Ten minutes between heartbeats: silent after 30 minutes (3 missed).
    busy = sensors("hb", 50, 600)
    [stopped] = sensors("gone", 1, 600)
    import_devices(dsn, [*busy, stopped])
    start = NIGHT
    clock = FrozenClock(start)
    async with running(dsn, clock) as (gateway, source):
        # Everyone is heard at 02:15; the registry supervises them from then.
        first = heartbeats([d.device_id for d in [*busy, stopped]], 51, start)
        source.feed(first)
        await judged(gateway, len(first))
        # At 02:40 the busy devices heartbeat again, many times over (a reconnect
        # storm), and the gateway falls behind; it is 02:50 (35 minutes after the
        # first heartbeat, past the 30-minute limit) before it has judged them.
        storm = start + timedelta(minutes=25)
        backlog = heartbeats([d.device_id for d in busy], BACKLOG, storm)
        clock.advance(timedelta(minutes=35))
        source.feed(backlog)
        fed = len(first) + len(backlog)
        # Polled without sleeping, so the ticks below begin as soon as it is spooled.
        await until(lambda: len(source.acked) == fed, poll_s=0)
        ticks_while_waiting = 0
        while gateway.spool_status().waiting_rules:
            work = gateway.tick_now()
            assert not work, work
            ticks_while_waiting += 1
            await asyncio.sleep(0)
        assert ticks_while_waiting > 3  # the ticks did run while the backlog drained
        assert gateway.metrics.messages == fed
        for _ in range(3):
            gateway.tick_now()
        clock.advance(timedelta(minutes=3))  # past the two minutes a lone device waits
        gateway.tick_now()
        gateway.tick_now()
        silent = [a["alert"]["device_id"] for a in alerts_of(source, "no_contact")]
        incidents = [b for b in bodies(source) if "incident" in b]
        await until(lambda: gateway.spool_status().waiting_storage == 0)
    # The device that truly stopped is reported, once; the others never were.
    assert silent == [stopped.device_id]
    assert incidents == []
    assert rows(dsn, "SELECT rule_id, device_id FROM alerts") == [("no_contact", stopped.device_id)]
    assert count(dsn, "SELECT count(*) FROM incidents") == 0
