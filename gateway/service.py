"""The gateway process: wait for PostgreSQL, migrate, then ingest until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from core.clock import Clock, SystemClock
from core.errors import StorageUnavailable
from core.rows import DeadLetter, Shelf, StoredRow
from gateway.alerting import Alerting
from gateway.config import Settings
from gateway.ingest import Delivery, MessageSource, MqttSource
from gateway.metrics import IngestMetrics
from gateway.pipeline import Pipeline
from gateway.store import BatchWriter, migrate
from gateway.store.access import directory_version, load_directory
from gateway.store.alerts import load_states
from gateway.store.devices import load_homes, load_known_devices, registry_version
from gateway.store.shelves import load_shelves
from rules import RuleEngine, default_rules_text, load_ruleset
from rules.auditlog import append
from rules.model import DeviceInfo
from rules.work import AlertWork, state_name

log = logging.getLogger(__name__)

# Decoded batches waiting for the writer (which commits them together). More
# did not lower alert latency at 10,000 msg/s but cost 140 MB with 100,000
# devices reporting at once (wgw bench); while the writer is stuck, decoding
# stops here and the broker keeps the rest.
_QUEUED_BATCHES = 2

# Partitions are topped up this often (they are created months ahead).
_PARTITION_CHECK_S = 3600.0

_Work = tuple[list[Delivery], list[StoredRow], list[DeadLetter], AlertWork]


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


class Gateway:
    """Runs ingest: source → pipeline → batch writer → acknowledgement."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        source_factory: Callable[[], MessageSource] | None = None,
        metrics: IngestMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.metrics = metrics or IngestMetrics()
        self._source_factory = source_factory or self._mqtt_source
        self.pipeline = Pipeline(registry={}, settings=settings.ingest, metrics=self.metrics)
        self.ready = asyncio.Event()
        self.alerting: Alerting | None = None
        self.source: MessageSource | None = None
        self._devices: dict[str, DeviceInfo] = {}
        self._staged: list[AlertWork] = []
        # Moves whenever the device registry is reloaded (the console's caches follow it).
        self.registry_loads = 0
        # Receipt time of the oldest event of each batch not yet committed, oldest first.
        self._pending: deque[datetime] = deque()

    def ingest_lag_s(self) -> float:
        """Seconds the oldest received but uncommitted event has waited (0 when none waits)."""
        if not self._pending:
            return 0.0
        return max(0.0, (self.clock.now() - self._pending[0]).total_seconds())

    def stage(self, work: AlertWork) -> None:
        """Hold console changes (staff actions, logged reads) for the next clock tick's write.

        They never wait for PostgreSQL: the change is live already, and the
        write queue keeps them in order behind the batches before them.
        """
        for d in work.access:
            # Checked here, where the caller can be refused: an entry that cannot
            # be chained would otherwise fail inside the write loop and stop ingest.
            append(None, org=d.org, at=d.at, actor=d.actor, action=d.action,
                   subject=d.subject, person=d.person, detail=d.detail)  # fmt: skip
        self._staged.append(work)

    def _mqtt_source(self) -> MessageSource:
        return MqttSource(
            self.settings.mqtt,
            batch_max=self.settings.ingest.batch_max,
            linger=self.settings.ingest.batch_linger_ms / 1000,
            clock=self.clock,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Prepare storage, then ingest until ``stop`` is set."""
        db = self.settings.db
        # A broken rule-set file is refused before anything else starts.
        rules = self.settings.rules
        rulesets = {None: load_ruleset(default_rules_text(), rules.file)} | {
            org: load_ruleset(default_rules_text(), path) for org, path in rules.org_files.items()
        }
        await wait_for_database(db.dsn, db.connect_timeout_s)
        report = await asyncio.to_thread(migrate, db.dsn)
        log.info(
            "storage ready (%s); applied migrations %s", report.variant, report.applied or "none"
        )
        pool = BatchWriter.make_pool(db.dsn, min_size=db.pool_min, max_size=db.pool_max)
        await pool.open(wait=True, timeout=db.connect_timeout_s)
        try:
            async with pool.connection() as conn:
                devices = await load_known_devices(conn)
                version = await registry_version(conn)
                saved = await load_states(conn)
                directory = await load_directory(conn)
                homes = await load_homes(conn)
                shelves = await load_shelves(conn, self.clock.now())
                directory_at = await directory_version(conn)
                await conn.commit()
            self.pipeline.set_registry(devices)
            engines = {key: RuleEngine(rs, self.clock, {}) for key, rs in rulesets.items()}
            writer = BatchWriter(pool)
            async with self._source_factory() as source:
                self.source = source
                self.alerting = Alerting(
                    engines,
                    publish=source.publish,
                    dedup_window=2 * self.settings.mqtt.receive_maximum,
                )
                self.alerting.directory = directory
                self.alerting.set_homes(homes)
                self._devices = devices
                self._apply_shelves(shelves, devices_changed=True)
                # Saved state comes back once each engine knows its devices.
                for key, engine in engines.items():
                    if (state := saved.get(state_name(key))) is not None:
                        engine.import_state(state)
                queue: asyncio.Queue[_Work] = asyncio.Queue(maxsize=_QUEUED_BATCHES)
                tasks = [
                    asyncio.create_task(self._decode_loop(source, queue), name="decode"),
                    asyncio.create_task(self._tick_loop(queue), name="tick"),
                    asyncio.create_task(self._write_loop(source, writer, queue), name="write"),
                    asyncio.create_task(
                        self._maintain(pool, version, directory_at), name="maintain"
                    ),
                ]
                self.ready.set()
                stopper = asyncio.create_task(stop.wait())
                done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
                for task in [*tasks, stopper]:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                await self._flush_staged(writer)
                for task in done:
                    if task is not stopper and (error := task.exception()) is not None:
                        raise error
        finally:
            await pool.close()

    async def _flush_staged(self, writer: BatchWriter) -> None:
        """Store staff actions and logged reads still held at stop: nothing redelivers them."""
        if not self._staged:
            return
        work = AlertWork()
        for earlier in self._staged:
            work.absorb(earlier)
        try:
            await asyncio.wait_for(writer.write([], [], work), 10.0)
        except (StorageUnavailable, TimeoutError) as exc:
            log.error(
                "stopped with %d console changes unstored (%d access-log entries): %s",
                len(self._staged), len(work.access), exc,
            )  # fmt: skip
            return
        self._staged.clear()

    def _apply_shelves(self, shelves: list[Shelf], *, devices_changed: bool = False) -> None:
        """Take devices out of service (no rules, no supervision) while their period runs."""
        if self.alerting is None:
            return
        now = self.clock.now()
        active = {s.device_id: s for s in shelves if s.starts_at <= now < s.ends_at}
        changed = active.keys() != self.alerting.shelved.keys()
        self.alerting.shelved = active
        if changed or devices_changed:
            if changed:
                log.info("%d devices out of service", len(active))
            self.alerting.update_devices(
                {d: info for d, info in self._devices.items() if d not in active}
            )

    async def _decode_loop(self, source: MessageSource, queue: asyncio.Queue[_Work]) -> None:
        assert self.alerting is not None
        process = self.pipeline.process
        async for batch in source.batches():
            rows: list[StoredRow] = []
            dead: list[DeadLetter] = []
            for delivery in batch:
                outcome = process(delivery.raw)
                if outcome.rows:
                    rows.extend(outcome.rows)
                elif outcome.dead_letter is not None:
                    dead.append(outcome.dead_letter)
            # Rules run now, before storage: an alert is published at once.
            work = self.alerting.on_rows(rows)
            if batch:
                self._pending.append(min(d.raw.received_at for d in batch))
            # Bounded: while the writer is stuck, acks stop, the broker stops
            # sending once Receive Maximum is reached, and decoding waits here.
            await queue.put((batch, rows, dead, work))

    async def _tick_loop(self, queue: asyncio.Queue[_Work]) -> None:
        assert self.alerting is not None
        while True:
            await asyncio.sleep(self.settings.rules.tick_s)
            work = AlertWork()
            staged, self._staged = self._staged, []
            for earlier in staged:
                work.absorb(earlier)
            work.absorb(self.alerting.tick(self.clock.now()))
            if work:
                await queue.put(([], [], [], work))

    async def _write_loop(
        self, source: MessageSource, writer: BatchWriter, queue: asyncio.Queue[_Work]
    ) -> None:
        initial = self.settings.ingest.retry_initial_s
        batch_max = self.settings.ingest.batch_max
        while True:
            batch, rows, dead, work = await queue.get()
            decoded = 1 if batch else 0
            # Group commit: what queued up while the last write ran goes in one
            # transaction. Batches can then be handed out early (a short linger,
            # so alerts are not held back) without costing throughput under load.
            while not queue.empty() and len(batch) < batch_max:
                more, more_rows, more_dead, later = queue.get_nowait()
                batch, rows, dead = batch + more, rows + more_rows, dead + more_dead
                work.absorb(later)
                decoded += 1 if more else 0
            delay = initial
            while True:
                try:
                    result = await writer.write(rows, dead, work)
                    break
                except StorageUnavailable as exc:
                    self.metrics.write_failures += 1
                    log.warning("%s; retrying batch of %d in %.1f s", exc, len(batch), delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30.0)
            source.ack(batch)
            for _ in range(decoded):
                self._pending.popleft()
            m = self.metrics
            m.batches += 1
            m.events_stored += result.inserted
            m.duplicates += result.duplicates
            m.batch_rows_max = max(m.batch_rows_max, len(rows))
            if batch:
                m.batch_sizes.observe(len(batch))

    async def _maintain(
        self,
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]],
        version: tuple[datetime | None, int],
        directory_at: datetime | None,
    ) -> None:
        interval = self.settings.ingest.registry_refresh_s
        last_partition_check = 0.0
        while True:
            await asyncio.sleep(interval)
            try:
                async with pool.connection() as conn:
                    current = await registry_version(conn)
                    current_changed = current != version
                    if current_changed:
                        devices = await load_known_devices(conn)
                        self.pipeline.set_registry(devices)
                        self._devices = devices
                        if self.alerting is not None:
                            self.alerting.set_homes(await load_homes(conn))
                        log.info("device registry reloaded (%d devices)", current[1])
                        version = current
                        self.registry_loads += 1
                    # Re-read every round: a period may have begun or ended by itself.
                    self._apply_shelves(
                        await load_shelves(conn, self.clock.now()),
                        devices_changed=current_changed,
                    )
                    imported_at = await directory_version(conn)
                    if imported_at != directory_at and self.alerting is not None:
                        self.alerting.directory = await load_directory(conn)
                        directory_at = imported_at
                        log.info("access directory reloaded")
                    if time.monotonic() - last_partition_check > _PARTITION_CHECK_S:
                        await conn.execute(
                            "SELECT wgw_ensure_event_partitions("
                            "now() - interval '2 months', now() + interval '3 months')"
                        )
                        last_partition_check = time.monotonic()
                    await conn.commit()
            except psycopg.OperationalError as exc:
                log.warning("registry refresh skipped: %s", exc)
