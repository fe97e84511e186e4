"""The whole gateway loop in memory: source, spool on disk, rules, sink — no broker, no database.

Time moves only when the test says so and ticks happen only when it calls
``tick_now``, so nothing here sleeps to see whether something happens.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from core.clock import FrozenClock
from core.events import Family, RawMessage
from gateway.backend import MemoryBackend, Startup
from gateway.config import load_settings
from gateway.ingest import MemorySource
from gateway.service import Gateway
from rules.model import DeviceInfo
from tests.utils.gateways import judged, running_gateway, until

# 02:10 in Stockholm on a November night (UTC+1).
NIGHT = datetime(2026, 11, 24, 1, 10, tzinfo=UTC)
SENSOR = "sensor-0001"


def message(kind: str, at: datetime, event_id: str, **extra: object) -> RawMessage:
    body = {"id": event_id, "kind": kind, "ts": at.isoformat(), **extra}
    return RawMessage(f"wgw/vallby/sensor/{SENSOR}/event", json.dumps(body).encode(), at)


@dataclass
class Running:
    gateway: Gateway
    source: MemorySource
    backend: MemoryBackend
    clock: FrozenClock

    def feed(self, *messages: RawMessage) -> None:
        self.source.feed(messages)

    async def judged(self, fed: int) -> None:
        """Wait until the rules have seen ``fed`` messages (an event, not a guess of time)."""
        await judged(self.gateway, fed)

    def effects(self, rule_id: str) -> list[str]:
        bodies = [json.loads(p) for _, p in self.source.published]
        return [b["effect"] for b in bodies if b.get("alert", {}).get("rule_id") == rule_id]


def memory_backend() -> MemoryBackend:
    return MemoryBackend(Startup(devices={SENSOR: DeviceInfo("vallby", Family.SENSOR, 3600)}))


@asynccontextmanager
async def running(
    backend: MemoryBackend | None = None, clock: FrozenClock | None = None
) -> AsyncIterator[Running]:
    clock = clock or FrozenClock(NIGHT)
    backend = backend or memory_backend()
    # Only explicit ticks: the tick loop's interval is longer than any test.
    settings = load_settings(None, rules={"tick_s": 60}, ingest={"storage_retry_s": 0.01})
    async with running_gateway(settings, clock, backend=backend) as (gateway, source):
        yield Running(gateway, source, backend, clock)


async def test_not_back_in_bed_pages_only_when_ticked_past_the_window() -> None:
    async with running() as gw:
        gw.feed(message("sensor.left_bed", NIGHT, "lb-1", level="notice"))
        await gw.judged(1)
        gw.clock.advance(timedelta(minutes=19))
        gw.gateway.tick_now()
        assert gw.effects("not_back_in_bed") == []
        gw.clock.advance(timedelta(minutes=2))
        gw.gateway.tick_now()
        assert gw.effects("not_back_in_bed") == ["AlertOpened"]


async def test_an_unacknowledged_fall_escalates_on_the_tick_after_its_limit() -> None:
    async with running() as gw:
        gw.feed(message("sensor.fall", NIGHT, "f-1", level="alarm"))
        await gw.judged(1)
        assert gw.effects("fall") == ["AlertOpened"]
        gw.clock.advance(timedelta(minutes=1, seconds=59))
        gw.gateway.tick_now()
        assert gw.effects("fall") == ["AlertOpened"]
        gw.clock.advance(timedelta(seconds=1))
        work = gw.gateway.tick_now()
        assert gw.effects("fall") == ["AlertOpened", "AlertEscalated"]
        assert [a.escalated for a in work.alerts.values()] == [True]
        # The first tier of priority 1: the coordinators, then every operator at 5 min.
        (alert,) = work.alerts.values()
        assert (alert.escalation.tier, alert.escalation.to, alert.escalation.next_to) == (
            1, ("role:coordinator",), ("role:operator",)
        )  # fmt: skip


async def test_alerts_go_out_while_the_sink_is_away_and_are_stored_in_order_after() -> None:
    async with running() as gw:
        gw.backend.memory.up = False
        gw.feed(
            message("device.heartbeat", NIGHT, "hb-1"),
            message("sensor.fall", NIGHT, "f-1", level="alarm"),
        )
        await gw.judged(2)
        # Paged and acknowledged to the broker with nothing stored.
        assert gw.effects("fall") == ["AlertOpened"]
        assert len(gw.source.acked) == 2
        await until(lambda: not gw.gateway.spool_status().storage_up)
        assert gw.backend.memory.entries == []
        assert gw.gateway.spool_status().waiting_storage >= 1

        gw.backend.memory.up = True
        await until(lambda: gw.gateway.spool_status().waiting_storage == 0)
        stored = gw.backend.memory.entries
        assert sum(e.row_count for e in stored) == 2
        work = gw.backend.memory.work()
        assert [a.rule_id for a in work.alerts.values()] == ["fall"]
        # The stored position covers both lanes: the fall (alarm) and the heartbeat (bulk).
        progress = gw.backend.memory.progress
        assert progress is not None
        assert (progress.alarm_seq, progress.bulk_seq) == (1, 1)


async def test_a_message_the_broker_delivers_again_after_a_restart_is_not_judged_twice() -> None:
    # The PUBACK of a judged message may be lost with the process: the broker
    # then delivers it again to the next one, which must not count it as a
    # repeat of its own alert (or page again).
    backend = memory_backend()
    fall = message("sensor.fall", NIGHT, "f-1", level="alarm")
    async with running(backend) as first:
        first.feed(fall)
        await first.judged(1)
        await until(lambda: first.gateway.spool_status().waiting_storage == 0)
        assert first.effects("fall") == ["AlertOpened"]
    async with running(backend, first.clock) as second:
        second.feed(fall)
        await second.judged(1)
        second.gateway.tick_now()
        assert second.effects("fall") == []
        assert second.gateway.alerting is not None
        assert [a.count for a in second.gateway.alerting.open_alerts()] == [1]
