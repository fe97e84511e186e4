"""The gateway loop on a real PostgreSQL, fed in memory: acknowledged only after commit."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from core.errors import StorageUnavailable
from core.events import Family, RawMessage
from gateway.config import load_settings
from gateway.embedded import PostgresServer
from gateway.ingest import MemorySource
from gateway.registry import DeviceRecord
from gateway.service import Gateway
from gateway.store import migrate
from gateway.store.devices import import_devices
from rules.auditlog import Action, EntryDraft
from rules.work import AlertWork
from tests.utils.services import scalar

pytestmark = pytest.mark.db


def heartbeats(start: int, count: int) -> list[RawMessage]:
    now = datetime.now(UTC)
    return [
        RawMessage(
            "wgw/vallby/sensor/sensor-0001/event",
            json.dumps(
                {"id": f"hb-{i}", "kind": "device.heartbeat", "ts": now.isoformat()}
            ).encode(),
            now,
        )
        for i in range(start, start + count)
    ]


async def until(predicate: Callable[[], bool], within_s: float = 20) -> None:
    async with asyncio.timeout(within_s):
        while not predicate():
            await asyncio.sleep(0.02)


async def test_acknowledged_once_spooled_and_a_db_outage_loses_nothing(
    own_pg: PostgresServer,
) -> None:
    dsn = own_pg.dsn
    migrate(dsn)
    import_devices(dsn, [DeviceRecord(device_id="sensor-0001", family=Family.SENSOR, org="vallby")])
    settings = load_settings(
        None,
        db={"dsn": dsn, "connect_timeout_s": 30},
        ingest={"storage_retry_s": 0.1, "registry_refresh_s": 60},
    )
    source = MemorySource(batch_max=50)
    gateway = Gateway(settings, source_factory=lambda: source)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    await until(gateway.ready.is_set)

    def stored() -> object:
        return scalar(dsn, "SELECT count(*) FROM events")

    source.feed(heartbeats(0, 100))
    await until(lambda: len(source.acked) == 100)
    await until(lambda: gateway.spool_status().waiting_storage == 0)
    assert stored() == 100

    await asyncio.to_thread(own_pg.stop, "immediate")
    source.feed(heartbeats(100, 100))
    # Acknowledged while PostgreSQL is away: the spool holds them.
    await until(lambda: len(source.acked) == 200)
    await until(lambda: gateway.metrics.write_failures >= 1)
    status = gateway.spool_status()
    assert not status.storage_up and status.waiting_storage > 0

    await asyncio.to_thread(own_pg.start)
    back = asyncio.get_running_loop().time()
    await until(lambda: gateway.spool_status().waiting_storage == 0)
    # Probed every storage_retry_s, not after a doubling back-off.
    assert asyncio.get_running_loop().time() - back < 5
    assert stored() == 200
    assert scalar(dsn, "SELECT count(DISTINCT event_id) FROM events") == 200
    assert source.acked == [(0, n) for n in range(1, 201)]  # in arrival order, each once

    stop.set()
    await task


async def test_start_up_waits_for_postgresql_and_says_so(
    own_pg: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    await asyncio.to_thread(own_pg.stop)
    settings = load_settings(None, db={"dsn": own_pg.dsn, "connect_timeout_s": 60})
    gateway = Gateway(settings, source_factory=MemorySource)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    await until(lambda: "waiting for PostgreSQL" in caplog.text)
    assert not gateway.ready.is_set()
    await asyncio.to_thread(own_pg.start)
    await until(gateway.ready.is_set)
    stop.set()
    await task


async def test_start_up_gives_up_with_a_clear_message(own_pg: PostgresServer) -> None:
    await asyncio.to_thread(own_pg.stop)
    settings = load_settings(None, db={"dsn": own_pg.dsn, "connect_timeout_s": 1})
    with pytest.raises(StorageUnavailable, match=r"did not answer within 1 s.*db\.dsn"):
        await Gateway(settings, source_factory=MemorySource).run(asyncio.Event())


async def test_console_changes_journaled_just_before_a_stop_are_stored(db_dsn: str) -> None:
    # A logged read or a staff action goes to the journal; a stop right after
    # must still store it (nothing redelivers it).
    migrate(db_dsn)
    settings = load_settings(None, db={"dsn": db_dsn}, rules={"tick_s": 60})
    gateway = Gateway(settings, source_factory=MemorySource)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    await until(gateway.ready.is_set)
    read = EntryDraft("vallby", datetime.now(UTC), "stina", Action.READ, "sensor-0001",
                      "Lgh 1204", {"via": "api"})  # fmt: skip
    gateway.stage(AlertWork(access=[read]))
    stop.set()
    await task
    assert scalar(db_dsn, "SELECT count(*) FROM access_log WHERE actor = 'stina'") == 1


async def test_an_access_entry_that_could_not_be_chained_is_refused_when_staged(
    db_dsn: str,
) -> None:
    migrate(db_dsn)
    gateway = Gateway(load_settings(None, db={"dsn": db_dsn}), source_factory=MemorySource)
    bad = EntryDraft("not an org!", datetime.now(UTC), "stina", Action.READ, "x", None, {})
    with pytest.raises(ValueError, match="org"):
        gateway.stage(AlertWork(access=[bad]))
