"""The gateway process: spool what arrives, judge it by the rules, store it when PostgreSQL can.

Four loops share one event loop, each waiting only for its own resource:

    receive  broker → lanes of the spool (fsync'd) → PUBACK
    rules    lanes (alarm lane first) → pipeline → rules → alerts out at once,
             and an entry in the spool's journal
    storage  journal → PostgreSQL, with the journal position in the same transaction
    tick     timers, supervision and escalation, on the clock

So a fall reaches the console and the MQTT alert topic whatever PostgreSQL
does, and nothing acknowledged is lost if the process dies: on start the
rules' state comes back from the newest snapshot (PostgreSQL's or a newer
one in the journal), lane records no journal entry covers are judged again,
and storage resumes at the position PostgreSQL recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from core.clock import Clock, SystemClock
from core.errors import ConfigError, GatewayError, StorageUnavailable
from core.events import RawMessage
from core.rows import DeadLetter, Shelf, StoredRow
from gateway.alerting import Alerting
from gateway.backend import Backend, Sink, Startup
from gateway.config import Settings
from gateway.ingest import MessageSource, MqttSource
from gateway.journal import (
    JournalEntry,
    Lane,
    Progress,
    decode_entry,
    decode_raw,
    encode_entry,
    encode_raw,
    lane_of,
    make_entry,
)
from gateway.metrics import IngestMetrics
from gateway.pipeline import Pipeline
from gateway.registry import SipAccount
from gateway.spool import Spool, SpoolError
from gateway.store.runtime import PostgresBackend
from rules import RuleEngine, default_rules_text, load_ruleset
from rules.auditlog import append
from rules.model import DeviceInfo
from rules.work import AlertWork, state_name

log = logging.getLogger(__name__)

# Messages one rules slice decodes before yielding the loop: small enough
# that an alarm arriving meanwhile waits milliseconds, not a whole batch.
_RULES_SLICE = 500
# Received messages kept in memory per lane for the rules (beyond it they are
# read back from the spool): a bound on memory during a backlog.
_LANE_TAIL = 4_000
# Journal entries kept in memory for storage; beyond, storage reads the spool.
_JOURNAL_TAIL = 16
# Rows storage puts in one transaction when it has a backlog to catch up on.
_STORE_ROWS = 10_000
# How long a stop waits for storage to catch up with the journal.
_DRAIN_S = 5.0
# Acknowledgements resume once the spool is below this share of its limit.
_SPOOL_RESUME = 0.9


class SpoolFull(GatewayError):
    """The spool is at its limit (or not open yet): a message cannot be taken now."""


@dataclass(frozen=True, slots=True)
class SpoolStatus:
    """How much the spool holds that is not yet where it is going."""

    bytes: int
    limit_bytes: int
    full: bool
    waiting_rules: int  # received, not yet judged by the rules
    waiting_storage: int  # journal entries not yet in PostgreSQL
    oldest_unstored_s: float  # age of the oldest of those
    storage_up: bool
    write_error: str | None  # why the spool cannot be written, if it cannot


class _LaneState:
    """A lane's spool, the rules' position in it and an in-memory tail of what arrived."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.cursor = 0  # the last record the rules have judged
        self._tail: deque[tuple[int, RawMessage]] = deque()
        # (last seq, oldest receipt) of each received batch not yet judged.
        self._waiting: deque[tuple[int, datetime]] = deque()

    def received(self, first_seq: int, raws: list[RawMessage]) -> None:
        """Note durable records: kept in memory while the tail is contiguous and small."""
        if not raws:
            return
        self._waiting.append((first_seq + len(raws) - 1, min(r.received_at for r in raws)))
        tail = self._tail
        if len(tail) >= _LANE_TAIL or (tail and tail[-1][0] != first_seq - 1):
            return
        tail.extend(zip(range(first_seq, first_seq + len(raws)), raws, strict=True))

    def received_backlog(self, oldest: datetime) -> None:
        """Note records found in the spool at start that the rules have yet to judge."""
        self._waiting.append((self.spool.durable_seq, oldest))

    def take(self, limit: int) -> list[RawMessage]:
        """The next durable records for the rules, from memory or else from disk."""
        tail = self._tail
        while tail and tail[0][0] <= self.cursor:
            tail.popleft()
        taken: list[RawMessage]
        if tail and tail[0][0] == self.cursor + 1:
            taken = [tail.popleft()[1] for _ in range(min(limit, len(tail)))]
            self.cursor += len(taken)
        else:
            upto = tail[0][0] - 1 if tail else self.spool.durable_seq
            records = self.spool.read(self.cursor, min(limit, upto - self.cursor))
            taken = [decode_raw(payload) for _, payload in records]
            if records:
                self.cursor = records[-1][0]
        waiting = self._waiting
        while waiting and waiting[0][0] <= self.cursor:
            waiting.popleft()
        return taken

    def oldest_waiting(self) -> datetime | None:
        """Receipt time of the oldest record received but not yet judged."""
        return self._waiting[0][1] if self._waiting else None

    @property
    def backlog(self) -> int:
        """Records received but not yet judged."""
        return self.spool.durable_seq - self.cursor


class Gateway:
    """Runs ingest: source → spool → acknowledgement; spool → rules → journal → PostgreSQL."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        source_factory: Callable[[], MessageSource] | None = None,
        metrics: IngestMetrics | None = None,
        backend: Backend | None = None,
    ) -> None:
        self.settings = settings
        self.backend = backend or PostgresBackend(settings.db)
        self.clock = clock or SystemClock()
        self.metrics = metrics or IngestMetrics()
        self._source_factory = source_factory or self._mqtt_source
        self.pipeline = Pipeline(registry={}, settings=settings.ingest, metrics=self.metrics)
        self.ready = asyncio.Event()
        self.alerting: Alerting | None = None
        self.source: MessageSource | None = None
        self._devices: dict[str, DeviceInfo] = {}
        # SIP settings of the devices whose registry entry has any (the SCAIP receiver).
        self.sip_accounts: dict[str, SipAccount] = {}
        # Moves whenever the device registry is reloaded (the console's caches follow it).
        self.registry_loads = 0
        self._lanes: tuple[_LaneState, _LaneState] | None = None
        self._journal: Spool | None = None
        self._spool_id = ""
        self._stored_seq = 0
        self._journal_tail: deque[tuple[int, JournalEntry]] = deque()
        # (journal seq, monotonic time) of the first entry appended in each
        # second not yet stored: the storage lag to within a second, in memory
        # that grows by the second of an outage, not by the entry.
        self._unstored: deque[tuple[int, float]] = deque()
        self._rules_wake = asyncio.Event()
        self._journal_dirty = asyncio.Event()
        self._spool_room = asyncio.Event()
        self._stored_moved = asyncio.Event()
        self._judged_attributes: frozenset[str] = frozenset()
        self._spool_full = False
        # Messages receivers of our own handed in (accept_external), and the task spooling them.
        self._external: list[tuple[RawMessage, asyncio.Future[None]]] = []
        self._flushing: asyncio.Task[None] | None = None
        self._write_error: str | None = None
        self.storage_up = True

    # -- what the API and the demo read -------------------------------------

    def ingest_lag_s(self) -> float:
        """Seconds the oldest received message has waited for the rules (0 when none waits)."""
        if self._lanes is None:
            return 0.0
        oldest = [t for lane in self._lanes if (t := lane.oldest_waiting()) is not None]
        if not oldest:
            return 0.0
        return max(0.0, (self.clock.now() - min(oldest)).total_seconds())

    def spool_status(self) -> SpoolStatus:
        """The spool's depth and whether it takes messages."""
        lanes, journal = self._lanes, self._journal
        if lanes is None or journal is None:
            return SpoolStatus(0, self.settings.spool.max_bytes, False, 0, 0, 0.0, True, None)
        oldest = time.monotonic() - self._unstored[0][1] if self._unstored else 0.0
        return SpoolStatus(
            bytes=self._spool_bytes(),
            limit_bytes=self.settings.spool.max_bytes,
            full=self._spool_full,
            waiting_rules=sum(lane.backlog for lane in lanes),
            waiting_storage=journal.last_seq - self._stored_seq,
            oldest_unstored_s=oldest,
            storage_up=self.storage_up,
            write_error=self._write_error,
        )

    def stage(self, work: AlertWork) -> None:
        """Journal console changes (staff actions, logged reads) behind everything before them.

        They never wait for PostgreSQL: the change is live already, and the
        journal is stored in order once PostgreSQL can take it.
        """
        for d in work.access:
            # Checked here, where the caller can be refused: an entry that cannot
            # be chained would otherwise fail inside storage and stop it.
            append(None, org=d.org, at=d.at, actor=d.actor, action=d.action,
                   subject=d.subject, person=d.person, detail=d.detail)  # fmt: skip
        self._journal_append(JournalEntry(lanes=self._positions(), work=work))

    def tick_now(self) -> AlertWork:
        """Fire due timers, supervision and escalation now; journal what they changed.

        Called by the tick loop every ``rules.tick_s``, and by tests directly.
        """
        assert self.alerting is not None
        heard_until: datetime | None = None
        if self._lanes is not None:
            waiting = [t for lane in self._lanes if (t := lane.oldest_waiting()) is not None]
            heard_until = min(waiting) if waiting else None
        work = self.alerting.tick(self.clock.now(), heard_until=heard_until)
        if work:
            self._journal_append(JournalEntry(lanes=self._positions(), work=work))
        return work

    def device(self, device_id: str) -> DeviceInfo | None:
        """The registered device of that id, as the pipeline knows it now."""
        return self._devices.get(device_id)

    async def accept_external(self, raw: RawMessage) -> None:
        """Spool a message a receiver of the gateway's own took (SCAIP over SIP), durably.

        Returns once it is fsync'd, in the same group commit as the broker's
        messages; the caller answers its peer only then. SpoolFull while the
        spool is at its limit, as acknowledgements to the broker stop then too.
        """
        if self._lanes is None or self._spool_full:
            raise SpoolFull("the gateway's spool cannot take messages now; try again later")
        if self._spool_bytes() >= self.settings.spool.max_bytes:
            raise SpoolFull("the gateway's spool is full; try again later")
        # Batched: what arrives while one fsync runs goes together in the next.
        done = asyncio.get_running_loop().create_future()
        self._external.append((raw, done))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush_external(), name="external")
        await done

    def refuse_external(self, dead: DeadLetter) -> None:
        """Journal a dead letter for a message a receiver of the gateway's own refused."""
        self.metrics.dead_letters_decoded[dead.reason] += 1
        self._journal_append(
            make_entry([], [dead], None, lanes=self._positions(), received_at=dead.received_at)
        )

    # -- running -------------------------------------------------------------

    def _mqtt_source(self) -> MessageSource:
        return MqttSource(
            self.settings.mqtt,
            batch_max=self.settings.ingest.batch_max,
            linger=self.settings.ingest.batch_linger_ms / 1000,
            clock=self.clock,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Prepare storage and the spool, then ingest until ``stop`` is set.

        ``stop`` is obeyed at every stage, start-up waits included.
        """
        main = asyncio.create_task(self._run(stop), name="gateway")
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait([main, stopper], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if not main.done():
                main.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await main
        if main.done() and not main.cancelled() and (error := main.exception()) is not None:
            raise error

    async def _run(self, stop: asyncio.Event) -> None:
        # A broken rule-set file or an unusable spool directory is refused
        # before anything else starts.
        rules = self.settings.rules
        rulesets = {None: load_ruleset(default_rules_text(), rules.file)} | {
            org: load_ruleset(default_rules_text(), path) for org, path in rules.org_files.items()
        }
        self._judged_attributes = frozenset().union(
            *(rs.judged_attributes() for rs in rulesets.values())
        )
        self._spool_id = _spool_id(self.settings.spool.dir)
        backend = self.backend
        try:
            await backend.prepare()
            startup = await backend.startup(spool_id=self._spool_id, now=self.clock.now())
            self._open_spool(startup.progress or Progress(self._spool_id))
            self.pipeline.set_registry(startup.devices)
            engines = {key: RuleEngine(rs, self.clock, {}) for key, rs in rulesets.items()}
            async with self._source_factory() as source:
                self.source = source
                self._start_rules(source, engines, startup)
                intake = [
                    asyncio.create_task(self._receive_loop(source), name="receive"),
                    asyncio.create_task(self._rules_loop(), name="rules"),
                    asyncio.create_task(self._journal_loop(), name="journal"),
                    asyncio.create_task(self._tick_loop(), name="tick"),
                    asyncio.create_task(self._maintain(), name="maintain"),
                ]
                storage = asyncio.create_task(self._storage_loop(backend.sink()), name="storage")
                self.ready.set()
                try:
                    await _first_failure([*intake, storage], stop)
                finally:
                    await _cancel(intake)
                    await self._final_sync()
                    await self._drain(storage)
                    await _cancel([storage])
        finally:
            await backend.close()
            self._close_spool()

    def _open_spool(self, progress: Progress) -> None:
        """Open the lanes and the journal; find where the rules and storage stand."""
        spool = self.settings.spool
        sizes = {"segment_bytes": spool.segment_bytes}
        lanes = (
            _LaneState(Spool(spool.dir / "alarm", **sizes)),
            _LaneState(Spool(spool.dir / "bulk", **sizes)),
        )
        journal = Spool(spool.dir / "journal", **sizes)
        for lane, at in zip(lanes, (progress.alarm_seq, progress.bulk_seq), strict=True):
            lane.spool.open(min_next_seq=at + 1)
            lane.cursor = at
        recovery = journal.open(min_next_seq=progress.journal_seq + 1)
        self._lanes, self._journal = lanes, journal
        self._stored_seq = progress.journal_seq
        unstored = journal.durable_seq - progress.journal_seq
        if unstored or recovery.dropped_bytes:
            log.info(
                "spool %s: %d journal entries not yet in PostgreSQL; storing them first",
                spool.dir,
                unstored,
            )

    def _close_spool(self) -> None:
        if self._lanes is not None:
            for lane in self._lanes:
                lane.spool.close()
        if self._journal is not None:
            self._journal.close()

    def _start_rules(
        self, source: MessageSource, engines: dict[str | None, RuleEngine], startup: Startup
    ) -> None:
        """Bring the rules back to where they stood before the last stop, from the spool."""
        assert self._lanes is not None and self._journal is not None
        alerting = Alerting(engines, publish=source.publish, dedup_window=self._redelivery_window())
        alerting.directory = startup.directory
        alerting.set_homes(startup.homes)
        self.alerting = alerting
        self._devices = startup.devices
        self.sip_accounts = startup.sip
        self._apply_shelves(startup.shelves, devices_changed=True)
        # Newer snapshots than PostgreSQL's, and the positions the journal
        # covers, are in the journal entries it does not have yet.
        states = dict(startup.states)
        journal = self._journal
        seq = self._stored_seq
        while entries := journal.read(seq, 1000):
            for seq, payload in entries:
                entry = decode_entry(payload)
                for lane, at in zip(self._lanes, entry.lanes, strict=True):
                    lane.cursor = max(lane.cursor, at)
                if entry.work is not None:
                    states.update(entry.work.states)
                self._note_unstored(seq)
        for key, engine in engines.items():
            if (state := states.get(state_name(key))) is not None:
                engine.import_state(state)
        self._remember_judged(alerting, startup.devices)
        for lane in self._lanes:
            if lane.backlog:
                first = decode_raw(lane.spool.read(lane.cursor, 1)[0][1])
                lane.received_backlog(first.received_at)
        again = sum(lane.backlog for lane in self._lanes)
        if again:
            log.info("judging %d spooled messages the rules had not finished", again)
        self._rules_wake.set()

    def _remember_judged(self, alerting: Alerting, devices: dict[str, DeviceInfo]) -> None:
        """Seed the redelivery check with the last messages judged before the stop.

        A PUBACK sent just before a crash may never have reached the broker,
        which then delivers the message again: judged a second time it would
        count as a repeat of its own alert. The lanes keep a window of judged
        records for this (see _journal_loop), decoded here once.
        """
        assert self._lanes is not None
        # A pipeline of its own: these messages were counted when first judged.
        scratch = Pipeline(registry=devices, settings=self.settings.ingest)
        window = self._redelivery_window()
        for lane in self._lanes:
            start = max(0, lane.cursor - window)
            for _, payload in lane.spool.read(start, lane.cursor - start):
                alerting.remember(scratch.process(decode_raw(payload)).rows)

    def _redelivery_window(self) -> int:
        """How many judged records may come again from the broker: its in-flight window, twice."""
        return 2 * self.settings.mqtt.receive_maximum

    async def _final_sync(self) -> None:
        """Make the journal durable at stop; PostgreSQL gets it on the next start if not now."""
        if self._journal is None:
            return
        try:
            await asyncio.wait_for(self._journal.sync(), 5.0)
        except (SpoolError, TimeoutError) as exc:
            log.error("could not sync the spool's journal at stop: %s", exc)

    async def _drain(self, storage: asyncio.Task[None]) -> None:
        """At stop, let storage catch up for a moment; what it misses waits in the spool."""
        if self._journal is None or storage.done() or not self.storage_up:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_DRAIN_S):
                while self._stored_seq < self._journal.durable_seq:
                    self._stored_moved.clear()
                    await self._stored_moved.wait()
        if self._stored_seq < self._journal.durable_seq:
            log.warning(
                "stopping with %d journal entries not yet in PostgreSQL; they are stored on "
                "the next start",
                self._journal.durable_seq - self._stored_seq,
            )

    def _positions(self) -> tuple[int, int]:
        assert self._lanes is not None
        return (self._lanes[0].cursor, self._lanes[1].cursor)

    def _spool_bytes(self) -> int:
        assert self._lanes is not None and self._journal is not None
        return self._journal.size_bytes + sum(lane.spool.size_bytes for lane in self._lanes)

    # -- receive: broker → spool → acknowledgement ------------------------------

    async def _receive_loop(self, source: MessageSource) -> None:
        async for batch in source.batches():
            await self._room_in_spool()
            await self._take([delivery.raw for delivery in batch])
            source.ack(batch)
            self.metrics.batch_sizes.observe(len(batch))

    async def _take(self, raws: list[RawMessage]) -> None:
        """Spool messages durably, each in its lane, and hand them to the rules."""
        assert self._lanes is not None
        judged = self._judged_attributes
        split: tuple[list[RawMessage], list[RawMessage]] = ([], [])
        for raw in raws:
            split[lane_of(raw, judged)].append(raw)
        firsts = await self._spool_durably(split)
        for lane in Lane:
            self._lanes[lane].received(firsts[lane], split[lane])
        self._rules_wake.set()

    async def _flush_external(self) -> None:
        """Spool what receivers handed in, a batch per fsync, and tell each caller it is done."""
        while self._external:
            batch, self._external = self._external, []
            try:
                await self._take([raw for raw, _ in batch])
            except BaseException as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(SpoolFull(f"the spool could not take it: {exc}"))
                raise
            for _, done in batch:
                if not done.done():  # its caller may have given up
                    done.set_result(None)

    async def _spool_durably(self, split: tuple[list[RawMessage], list[RawMessage]]) -> list[int]:
        """Append each lane's messages once and fsync; retry (acknowledging nothing) on failure."""
        assert self._lanes is not None
        firsts = [0, 0]
        todo = [lane for lane in Lane if split[lane]]
        while True:
            try:
                while todo:
                    lane = todo[0]
                    spool = self._lanes[lane].spool
                    firsts[lane] = spool.last_seq + 1
                    spool.append([encode_raw(raw) for raw in split[lane]])
                    todo.pop(0)
                await asyncio.gather(*(lane.spool.sync() for lane in self._lanes))
            except SpoolError as exc:
                if self._write_error is None:
                    log.error("%s; acknowledging nothing until it can be written", exc)
                self._write_error = str(exc)
                await asyncio.sleep(1.0)
                continue
            if self._write_error is not None:
                log.warning("the spool can be written again")
                self._write_error = None
            return firsts

    async def _room_in_spool(self) -> None:
        """Hold acknowledgements while the spool is at its limit (the broker keeps the rest)."""
        limit = self.settings.spool.max_bytes
        if self._spool_bytes() < limit:
            return
        self._spool_full = True
        log.warning(
            "spool %s is full (%d bytes, limit %d); acknowledgements stop until PostgreSQL "
            "has caught up",
            self.settings.spool.dir,
            self._spool_bytes(),
            limit,
        )
        while self._spool_bytes() >= limit * _SPOOL_RESUME:
            self._spool_room.clear()
            await self._spool_room.wait()
        self._spool_full = False
        log.warning("spool below its limit again; acknowledgements resume")

    # -- rules: lanes → pipeline → rules → journal -----------------------------

    async def _rules_loop(self) -> None:
        while True:
            if self._rule_slice():
                await asyncio.sleep(0)  # let receiving and the API run between slices
                continue
            self._rules_wake.clear()
            await self._rules_wake.wait()

    def _rule_slice(self) -> bool:
        """Judge the next slice, alarm lane first; tell whether there was one."""
        assert self._lanes is not None and self.alerting is not None
        for lane in self._lanes:
            raws = lane.take(_RULES_SLICE)
            if raws:
                break
        else:
            return False
        process = self.pipeline.process
        rows: list[StoredRow] = []
        dead: list[DeadLetter] = []
        for raw in raws:
            outcome = process(raw)
            if outcome.rows:
                rows.extend(outcome.rows)
            elif outcome.dead_letter is not None:
                dead.append(outcome.dead_letter)
        # Alerts are published from here, before anything is stored.
        work = self.alerting.on_rows(rows)
        received = min(r.received_at for r in raws)
        self._journal_append(
            make_entry(rows, dead, work, lanes=self._positions(), received_at=received)
        )
        return True

    def _journal_append(self, entry: JournalEntry) -> None:
        assert self._journal is not None
        seq = self._journal.append([encode_entry(entry)])
        tail = self._journal_tail
        if len(tail) < _JOURNAL_TAIL and (not tail or tail[-1][0] == seq - 1):
            tail.append((seq, entry))
        self._note_unstored(seq)
        self._journal_dirty.set()

    def _note_unstored(self, seq: int) -> None:
        now = time.monotonic()
        if not self._unstored or now - self._unstored[-1][1] >= 1.0:
            self._unstored.append((seq, now))

    async def _journal_loop(self) -> None:
        """Sync the journal as entries come (group commit), then release judged lane records."""
        assert self._lanes is not None and self._journal is not None
        while True:
            await self._journal_dirty.wait()
            self._journal_dirty.clear()
            covered = self._positions()
            try:
                await self._journal.sync()
            except SpoolError as exc:
                log.error("%s; retrying", exc)
                self._journal_dirty.set()
                await asyncio.sleep(1.0)
                continue
            # Judged records stay a window longer, for _remember_judged after a crash.
            keep = self._redelivery_window()
            for lane, at in zip(self._lanes, covered, strict=True):
                lane.spool.release(at - keep)
            self._spool_room.set()

    # -- storage: journal → PostgreSQL ---------------------------------------

    async def _storage_loop(self, sink: Sink) -> None:
        assert self._journal is not None
        journal = self._journal
        retry_s = self.settings.ingest.storage_retry_s
        while True:
            await journal.wait_durable(self._stored_seq)
            entries = self._next_entries()
            if not entries:
                await asyncio.sleep(retry_s)
                continue
            last = entries[-1][0]
            progress = Progress(self._spool_id, last, *entries[-1][1].lanes)
            while True:
                try:
                    result = await sink.write([e for _, e in entries], progress)
                    break
                except StorageUnavailable as exc:
                    self.metrics.write_failures += 1
                    if self.storage_up:
                        self.storage_up = False
                        log.warning(
                            "%s; alerts go on, the spool keeps everything and storing resumes "
                            "when PostgreSQL answers",
                            exc,
                        )
                    await self._until_answers(sink, retry_s)
            if not self.storage_up:
                self.storage_up = True
                log.warning(
                    "PostgreSQL answers again; storing the %d journal entries it missed",
                    journal.durable_seq - self._stored_seq,
                )
            self._stored_seq = last
            unstored = self._unstored
            if last >= journal.last_seq:
                unstored.clear()
            while len(unstored) > 1 and unstored[1][0] <= last + 1:
                unstored.popleft()
            journal.release(last)
            self._spool_room.set()
            self._stored_moved.set()
            m = self.metrics
            m.batches += 1
            m.events_stored += result.inserted
            m.duplicates += result.duplicates
            m.dead_letters.update(result.dead_letter_reasons)  # committed, not decided
            rows = sum(e.row_count for _, e in entries)
            m.batch_rows_max = max(m.batch_rows_max, rows)

    async def _until_answers(self, sink: Sink, retry_s: float) -> None:
        """Probe PostgreSQL every ``retry_s`` (no back-off) until it answers."""
        await asyncio.sleep(retry_s)
        answered = await sink.probe()
        while not answered:
            await asyncio.sleep(retry_s)
            answered = await sink.probe()

    def _next_entries(self) -> list[tuple[int, JournalEntry]]:
        """The durable journal entries after the stored position, from memory or the spool."""
        assert self._journal is not None
        start = self._stored_seq
        durable = self._journal.durable_seq
        tail = self._journal_tail
        while tail and tail[0][0] <= start:
            tail.popleft()
        found: list[tuple[int, JournalEntry]] = []
        rows = 0
        seq = start
        while seq < durable and rows < _STORE_ROWS:
            if tail and tail[0][0] == seq + 1:
                entry = tail.popleft()[1]
            else:
                upto = tail[0][0] - 1 if tail else durable
                records = self._journal.read(seq, min(upto - seq, 64))
                if not records:
                    break
                batch = [(s, decode_entry(p)) for s, p in records]
                found.extend(batch)
                rows += sum(e.row_count for _, e in batch)
                seq = batch[-1][0]
                continue
            seq += 1
            found.append((seq, entry))
            rows += entry.row_count
        return found

    # -- the clock and the registry ------------------------------------------

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.rules.tick_s)
            self.tick_now()

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

    async def _maintain(self) -> None:
        interval = self.settings.ingest.registry_refresh_s
        while True:
            await asyncio.sleep(interval)
            try:
                fresh = await self.backend.refresh(self.clock.now())
            except StorageUnavailable as exc:
                log.debug("registry refresh skipped: %s", exc)
                continue
            if fresh.devices is not None:
                self.pipeline.set_registry(fresh.devices)
                self._devices = fresh.devices
                if fresh.sip is not None:
                    self.sip_accounts = fresh.sip
                if self.alerting is not None and fresh.homes is not None:
                    self.alerting.set_homes(fresh.homes)
                log.info("device registry reloaded (%d devices)", fresh.version[1])
                self.registry_loads += 1
            # Applied every round: a period may have begun or ended by itself.
            self._apply_shelves(fresh.shelves, devices_changed=fresh.devices is not None)
            if fresh.directory is not None and self.alerting is not None:
                self.alerting.directory = fresh.directory
                log.info("access directory reloaded")


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _first_failure(tasks: list[asyncio.Task[None]], stop: asyncio.Event) -> None:
    """Wait for ``stop`` or for a task to end; re-raise what ended it."""
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    for task in done:
        if task is not stopper and (error := task.exception()) is not None:
            raise error


def _spool_id(directory: Path) -> str:
    """The spool directory's own id, made on first use (PostgreSQL keys its position by it)."""
    path = directory / "spool.id"
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if path.exists():
            return path.read_text(encoding="ascii").strip()
        spool_id = secrets.token_hex(8)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(spool_id + "\n", encoding="ascii")
        tmp.replace(path)
    except OSError as exc:
        raise ConfigError(
            f"spool.dir: cannot use {directory} ({exc.strerror}); set [spool] dir to a "
            "directory on this machine's disk that the gateway may write"
        ) from exc
    return spool_id
