"""The gateway's backend on PostgreSQL: readiness, migration, start-up state, refresh, the sink."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime

import psycopg
from psycopg_pool import AsyncConnectionPool

from core.errors import StorageUnavailable
from gateway.backend import Refresh, Startup
from gateway.config import DatabaseSettings
from gateway.journal import Progress
from gateway.store.access import directory_version, load_directory
from gateway.store.alerts import load_states
from gateway.store.devices import (
    load_homes,
    load_known_devices,
    load_sip_accounts,
    registry_version,
)
from gateway.store.migrate import migrate
from gateway.store.pool import Connection, Pool
from gateway.store.shelves import load_shelves
from gateway.store.writer import PostgresSink

log = logging.getLogger(__name__)

# Partitions are topped up this often (they are created months ahead).
_PARTITION_CHECK_S = 3600.0


async def wait_for_database(dsn: str, patience_s: float) -> None:
    """Block until PostgreSQL accepts a connection, logging clearly while it does not."""
    deadline = time.monotonic() + patience_s
    delay = 0.25
    while True:
        try:
            conn = await psycopg.AsyncConnection.connect(dsn, connect_timeout=5)
        except psycopg.OperationalError as exc:
            reason = str(exc).strip().splitlines()[0]
            if time.monotonic() >= deadline:
                raise StorageUnavailable(
                    f"PostgreSQL did not answer within {patience_s:.0f} s ({reason}); check db.dsn "
                    "and that the server is running"
                ) from exc
            log.warning("waiting for PostgreSQL: %s", reason)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        await conn.close()
        return


def make_pool(dsn: str, *, min_size: int = 1, max_size: int = 4) -> Pool:
    """An unopened connection pool (for the registry refresh and the API)."""
    return AsyncConnectionPool(
        dsn, min_size=min_size, max_size=max_size, open=False, kwargs={"autocommit": False}
    )


async def _progress(conn: Connection, spool_id: str) -> Progress:
    cur = await conn.execute(
        "SELECT journal_seq, alarm_seq, bulk_seq FROM spool_progress WHERE spool_id = %s",
        (spool_id,),
    )
    row = await cur.fetchone()
    if row is None:
        return Progress(spool_id)
    return Progress(spool_id, int(row[0]), int(row[1]), int(row[2]))


async def load_startup(pool: Pool, *, spool_id: str, now: datetime) -> Startup:
    """Read the registry, saved rule state, access directory and the spool's stored position."""
    async with pool.connection() as conn:
        startup = Startup(
            devices=await load_known_devices(conn),
            version=await registry_version(conn),
            states=await load_states(conn),
            directory=await load_directory(conn),
            directory_at=await directory_version(conn),
            homes=await load_homes(conn),
            shelves=await load_shelves(conn, now),
            progress=await _progress(conn, spool_id),
            sip=await load_sip_accounts(conn),
        )
        await conn.commit()
    return startup


class Refresher:
    """Reloads the registry, shelves and access directory when they change; tops up partitions."""

    def __init__(self, pool: Pool, startup: Startup) -> None:
        self._pool = pool
        self._version = startup.version
        self._directory_at = startup.directory_at
        self._last_partition_check = 0.0

    async def refresh(self, now: datetime) -> Refresh:
        """One look; StorageUnavailable when PostgreSQL cannot be reached."""
        try:
            async with self._pool.connection(timeout=5.0) as conn:
                version = await registry_version(conn)
                changed = version != self._version
                devices = await load_known_devices(conn) if changed else None
                homes = await load_homes(conn) if changed else None
                sip = await load_sip_accounts(conn) if changed else None
                shelves = await load_shelves(conn, now)
                directory_at = await directory_version(conn)
                directory = None
                if directory_at != self._directory_at:
                    directory = await load_directory(conn)
                if time.monotonic() - self._last_partition_check > _PARTITION_CHECK_S:
                    await conn.execute(
                        "SELECT wgw_ensure_event_partitions("
                        "now() - interval '2 months', now() + interval '3 months')"
                    )
                    self._last_partition_check = time.monotonic()
                await conn.commit()
        except psycopg.OperationalError as exc:
            raise StorageUnavailable(str(exc).strip().splitlines()[0]) from exc
        self._version = version
        self._directory_at = directory_at
        return Refresh(version, devices, homes, shelves, directory_at, directory, sip)


class PostgresBackend:
    """The gateway's storage on PostgreSQL: a pool for reads, one connection for the sink."""

    def __init__(self, db: DatabaseSettings) -> None:
        self._db = db
        self._pool = make_pool(db.dsn, min_size=db.pool_min, max_size=db.pool_max)
        self._sink = PostgresSink(db.dsn)
        self._refresher: Refresher | None = None

    async def prepare(self) -> str:
        """Wait for PostgreSQL (db.connect_timeout_s), migrate, open the pool."""
        await wait_for_database(self._db.dsn, self._db.connect_timeout_s)
        report = await asyncio.to_thread(migrate, self._db.dsn, timescaledb=self._db.timescaledb)
        log.info(
            "storage ready (%s); applied migrations %s", report.variant, report.applied or "none"
        )
        await self._pool.open(wait=True, timeout=self._db.connect_timeout_s)
        return report.variant

    async def startup(self, *, spool_id: str, now: datetime) -> Startup:
        """Read what the gateway starts from."""
        startup = await load_startup(self._pool, spool_id=spool_id, now=now)
        self._refresher = Refresher(self._pool, startup)
        return startup

    async def refresh(self, now: datetime) -> Refresh:
        """Reload what changed."""
        assert self._refresher is not None, "startup() comes first"
        return await self._refresher.refresh(now)

    def sink(self) -> PostgresSink:
        """The sink storage writes the journal to."""
        return self._sink

    async def close(self) -> None:
        """Close the sink's connection and the pool."""
        await self._sink.close()
        await self._pool.close()
