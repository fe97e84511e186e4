"""Starting again from the spool: a torn tail is cut off with a clear line and nothing
acknowledged is lost; what PostgreSQL missed and what the rules had not judged is
stored once, with no alert raised twice and the rules' timers where they were."""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.clock import FrozenClock
from core.events import Family, RawMessage
from gateway.embedded import PostgresServer
from gateway.ingest import MemorySource
from gateway.registry import DeviceRecord
from gateway.service import Gateway
from gateway.store import migrate
from gateway.store.devices import import_devices
from tests.utils.gateways import running_gateway, ticked_settings, until
from tests.utils.services import count, rows

pytestmark = pytest.mark.db


def running(
    dsn: str, clock: FrozenClock
) -> AbstractAsyncContextManager[tuple[Gateway, MemorySource]]:
    """A gateway whose timers fire only when the test ticks it (within a test's time)."""
    return running_gateway(ticked_settings(dsn), clock, batch_max=25_000)


# 02:10 in Stockholm on a November night (UTC+1).
LEFT_BED = datetime(2026, 11, 24, 1, 10, tzinfo=UTC)
SENSOR = "sensor-0001"
FALLER = "sensor-0002"
BUSY = [f"hb-{n:04d}" for n in range(50)]
# The spool's record frame (gateway/spool.py): length, CRC, seq, payload.
FRAME = struct.Struct("<IIQ")


def alerts_of(source: MemorySource, rule_id: str) -> list[dict[str, Any]]:
    bodies = [json.loads(payload) for _, payload in source.published]
    return [b for b in bodies if b.get("alert", {}).get("rule_id") == rule_id]


def event(device: str, kind: str, at: datetime, event_id: str, **extra: object) -> RawMessage:
    body = {"id": event_id, "kind": kind, "ts": at.isoformat(), **extra}
    return RawMessage(f"wgw/vallby/sensor/{device}/event", json.dumps(body).encode(), at)


def heartbeats(n: int, received: datetime) -> list[RawMessage]:
    out = []
    for i in range(n):
        at = received - timedelta(milliseconds=n - i)
        body = {"kind": "device.heartbeat", "ts": at.isoformat()}
        topic = f"wgw/vallby/sensor/{BUSY[i % len(BUSY)]}/event"
        out.append(RawMessage(topic, json.dumps(body).encode(), received))
    return out


def records(path: Path) -> list[tuple[int, int, int]]:
    """(offset, payload length, seq) of each record in a segment file."""
    data = path.read_bytes()
    found, offset = [], 0
    while offset < len(data):
        length, _, seq = FRAME.unpack_from(data, offset)
        found.append((offset, length, seq))
        offset += FRAME.size + length
    assert offset == len(data)
    return found


def newest_segment(directory: Path) -> Path:
    return max(directory.glob("*.seg"), key=lambda p: int(p.stem))


def append_torn_record(directory: Path) -> None:
    """A record cut short by a crash mid-write: its header claims more than follows."""
    segment = newest_segment(directory)
    last_seq = records(segment)[-1][2]
    with segment.open("ab") as handle:
        handle.write(FRAME.pack(4096, 0, last_seq + 1) + b"x" * 100)


def truncate_last_record(directory: Path) -> None:
    """Cut the newest segment in the middle of its last record."""
    segment = newest_segment(directory)
    offset, length, _ = records(segment)[-1]
    with segment.open("r+b") as handle:
        handle.truncate(offset + FRAME.size + length // 2)


@pytest.fixture
def dsn(own_pg: PostgresServer) -> str:
    migrate(own_pg.dsn)
    records = [
        DeviceRecord(device_id=d, family=Family.SENSOR, org="vallby", heartbeat_interval_s=3600)
        for d in [SENSOR, FALLER, *BUSY]
    ]
    import_devices(own_pg.dsn, records)
    return own_pg.dsn


def stored_once(dsn: str, expected: int) -> None:
    assert count(dsn, "SELECT count(*) FROM events") == expected
    assert count(dsn, "SELECT count(DISTINCT event_id) FROM events") == expected


@pytest.mark.parametrize(
    "damage",
    ["torn record after the alarm lane", "torn record after the bulk lane", "journal cut short"],
)
async def test_a_torn_spool_tail_is_cut_off_and_everything_acknowledged_is_stored_once(
    dsn: str,
    own_pg: PostgresServer,
    spool_dir: Path,
    damage: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FrozenClock(LEFT_BED)
    fed = [
        *heartbeats(300, LEFT_BED),
        *(event(SENSOR, "sensor.activity", LEFT_BED, f"act-{n}") for n in range(100)),
        event(FALLER, "sensor.fall", LEFT_BED, "f-1", level="alarm"),
    ]
    async with running(dsn, clock) as (gateway, source):
        # PostgreSQL goes away: everything stays in the spool, acknowledged.
        await asyncio.to_thread(own_pg.stop, "immediate")
        source.feed(fed)
        await until(lambda: len(source.acked) == len(fed))
        await until(lambda: gateway.spool_status().waiting_rules == 0)
        await until(lambda: not gateway.storage_up)
        assert len(alerts_of(source, "fall")) == 1
    if damage == "torn record after the alarm lane":
        append_torn_record(spool_dir / "alarm")
    elif damage == "torn record after the bulk lane":
        append_torn_record(spool_dir / "bulk")
    else:
        # The journal is the rules' output: its last entry can be derived again
        # from the lane records it covered.
        truncate_last_record(spool_dir / "journal")

    await asyncio.to_thread(own_pg.start)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        async with running(dsn, clock) as (gateway, source):
            await until(lambda: count(dsn, "SELECT count(*) FROM events") >= len(fed))
            await until(
                lambda: (s := gateway.spool_status()).waiting_rules == 0 and s.waiting_storage == 0
            )
            republished = alerts_of(source, "fall")
    torn = [r for r in caplog.records if "torn last record" in r.getMessage()]
    assert len(torn) == 1, [r.getMessage() for r in caplog.records]
    assert torn[0].levelno == logging.WARNING
    stored_once(dsn, len(fed))
    assert rows(dsn, "SELECT rule_id, device_id, state, count FROM alerts") == [
        ("fall", FALLER, "open", 1)
    ]
    assert count(dsn, "SELECT count(*) FROM alert_transitions") == 1
    # The fall is published again only if its journal entry was what got cut.
    assert len(republished) <= (1 if damage == "journal cut short" else 0)


async def test_a_restart_stores_what_postgresql_missed_and_judges_what_the_rules_had_not(
    dsn: str, own_pg: PostgresServer
) -> None:
    clock = FrozenClock(LEFT_BED)
    before = [
        event(FALLER, "sensor.fall", LEFT_BED, "f-1", level="alarm"),
        event(SENSOR, "sensor.left_bed", LEFT_BED, "lb-1"),
    ]
    backlog = heartbeats(20_000, LEFT_BED + timedelta(seconds=30))
    async with running(dsn, clock) as (gateway, source):
        await asyncio.to_thread(own_pg.stop, "immediate")
        source.feed(before)
        await until(lambda: len(alerts_of(source, "fall")) == 1)
        await until(lambda: gateway.metrics.messages == len(before))
        clock.advance(timedelta(seconds=30))
        source.feed(backlog)
        await until(lambda: len(source.acked) == len(before) + len(backlog), 60, poll_s=0)
        # Stopped while PostgreSQL is away and the rules are behind.
        status = gateway.spool_status()
        assert status.waiting_rules > 0
        assert status.waiting_storage > 0 or not gateway.storage_up
    judged_before = gateway.metrics.messages
    assert judged_before < len(before) + len(backlog)

    await asyncio.to_thread(own_pg.start)
    clock.advance(timedelta(minutes=1))  # 02:11:30
    async with running(dsn, clock) as (gateway, source):
        total = len(before) + len(backlog)
        await until(
            lambda: (s := gateway.spool_status()).waiting_rules == 0 and s.waiting_storage == 0,
            within_s=60,
        )
        # Only what had not been judged is judged again.
        assert gateway.metrics.messages == total - judged_before
        await until(lambda: count(dsn, "SELECT count(*) FROM alerts") == 1)
        assert alerts_of(source, "fall") == []  # raised before the stop, not again
        assert alerts_of(source, "not_back_in_bed") == []
        # The left_bed timer started before the stop fires once, on time.
        clock.advance(timedelta(minutes=18, seconds=20))  # 02:29:50
        gateway.tick_now()
        assert alerts_of(source, "not_back_in_bed") == []
        clock.advance(timedelta(seconds=20))  # 02:30:10
        gateway.tick_now()
        gateway.tick_now()
        clock.advance(timedelta(minutes=1))
        gateway.tick_now()
        assert [a["effect"] for a in alerts_of(source, "not_back_in_bed")] == ["AlertOpened"]
        await until(lambda: count(dsn, "SELECT count(*) FROM alerts") == 2)
    stored_once(dsn, total)
    assert sorted(rows(dsn, "SELECT rule_id, device_id, state FROM alerts")) == [
        ("fall", FALLER, "open"),
        ("not_back_in_bed", SENSOR, "open"),
    ]
    assert count(dsn, "SELECT count(*) FROM alert_transitions") == 2
    # A third start raises neither again.
    clock.advance(timedelta(minutes=1))
    async with running(dsn, clock) as (gateway, source):
        gateway.tick_now()
        assert source.published == []
    assert count(dsn, "SELECT count(*) FROM alerts") == 2
