"""The PostgreSQL sink: journal entries in one transaction each write, exactly once.

Events go through COPY into a staging table and ``INSERT … ON CONFLICT DO
NOTHING``; alert work, access-log entries, dead letters and the spool
position follow in the same transaction. The sink keeps one connection of
its own, so that after an outage it is back as soon as PostgreSQL answers.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from core.errors import StorageUnavailable
from core.rows import EVENT_COLUMNS, DeadLetter, StoredRow, WriteResult
from gateway.journal import JournalEntry, Progress
from gateway.store.alerts import store as store_alert_work
from gateway.store.auditlog import append_events as append_access_events
from rules.work import AlertWork

log = logging.getLogger(__name__)

# Dead-letter payloads are kept whole up to this size; a bigger hostile
# payload keeps its first MiB, its real size and the hash of all of it.
MAX_DEAD_LETTER_BYTES = 1024 * 1024

# How far back a redelivered event without device time is looked for. It
# covers the broker's session expiry: nothing is redelivered after that.
_GATEWAY_TIME_DEDUP_WINDOW = "7 days"

_COLUMNS_SQL = ", ".join(EVENT_COLUMNS)
_STAGING_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS events_staging"
    " (LIKE events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
_INSERT_SQL = f"""
INSERT INTO events ({_COLUMNS_SQL})
SELECT DISTINCT ON (s.device_id, s.event_id, CASE WHEN s.device_time THEN s.occurred_at END)
       {", ".join("s." + c for c in EVENT_COLUMNS)}
FROM events_staging s
WHERE s.device_time OR NOT EXISTS (
    SELECT 1 FROM events e
    WHERE e.device_id = s.device_id AND e.event_id = s.event_id
      AND e.occurred_at BETWEEN s.occurred_at - interval '{_GATEWAY_TIME_DEDUP_WINDOW}'
                            AND s.occurred_at)
ORDER BY s.device_id, s.event_id, CASE WHEN s.device_time THEN s.occurred_at END, s.occurred_at
ON CONFLICT DO NOTHING
RETURNING device_id, event_id, occurred_at
"""
# One statement for all of an entry's dead letters; RETURNING says which were new, so
# the dead-letter counters count what was committed (a re-published message adds nothing).
_DEAD_LETTER_SQL = """
INSERT INTO dead_letters (received_at, topic, payload, payload_size, message_sha256,
                          reason, detail, org, device_id)
SELECT * FROM unnest(%s::timestamptz[], %s::text[], %s::bytea[], %s::integer[], %s::bytea[],
                     %s::text[], %s::text[], %s::text[], %s::text[])
ON CONFLICT (message_sha256) DO NOTHING
RETURNING reason
"""


def _dead_letter_params(d: DeadLetter) -> tuple[object, ...]:
    # The key is the message itself, topic and raw bytes: the same hostile message
    # published again, or redelivered, is one dead letter.
    digest = hashlib.sha256(d.topic.encode("utf-8", "surrogateescape") + b"\0" + d.payload)
    return (
        d.received_at,
        _storable(d.topic),
        d.payload[:MAX_DEAD_LETTER_BYTES],
        len(d.payload),
        digest.digest(),
        d.reason,
        _storable(d.detail)[:2000],
        None if d.org is None else _storable(d.org),
        None if d.device_id is None else _storable(d.device_id),
    )


def _storable(text: str) -> str:
    """Text PostgreSQL can hold: NUL shown as \\0, lone surrogates as U+FFFD."""
    text = text.replace("\x00", "\\0")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _dead_letter_columns(dead: Sequence[DeadLetter]) -> list[list[object]]:
    return [list(column) for column in zip(*(_dead_letter_params(d) for d in dead), strict=True)]


_SAVE_PROGRESS = """
INSERT INTO spool_progress (spool_id, journal_seq, alarm_seq, bulk_seq, stored_at)
VALUES (%s, %s, %s, %s, now())
ON CONFLICT (spool_id) DO UPDATE SET journal_seq = EXCLUDED.journal_seq,
    alarm_seq = EXCLUDED.alarm_seq, bulk_seq = EXCLUDED.bulk_seq, stored_at = now()
"""


class PostgresSink:
    """Stores journal entries; raises StorageUnavailable while PostgreSQL cannot be reached."""

    def __init__(self, dsn: str, *, connect_timeout_s: int = 2) -> None:
        self._dsn = dsn
        # Short: the caller probes again within a second; a long wait would
        # only delay noticing that PostgreSQL is back.
        self._connect_timeout_s = connect_timeout_s
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._dsn, connect_timeout=self._connect_timeout_s
                )
                await conn.execute(_STAGING_DDL)
                await conn.commit()
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                raise StorageUnavailable(_first_line(exc)) from exc
            self._conn = conn
        return self._conn

    async def probe(self) -> bool:
        """Whether PostgreSQL answers now."""
        try:
            conn = await self._connection()
            await conn.execute("SELECT 1")
            await conn.rollback()
        except StorageUnavailable:
            return False
        except (psycopg.OperationalError, psycopg.InterfaceError):
            await self.close()
            return False
        return True

    async def close(self) -> None:
        """Drop the connection (the next write opens a new one)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except psycopg.Error:
                log.debug("closing a broken storage connection failed", exc_info=True)

    async def write(
        self, entries: Sequence[JournalEntry], progress: Progress | None = None
    ) -> WriteResult:
        """Store entries exactly once, and the spool position with them.

        A row the database refuses (a value it cannot hold) does not block the
        stream: the rows are retried one by one and refused rows become dead
        letters with the database's reason.
        """
        rows = b"".join(e.rows for e in entries)
        count = sum(e.row_count for e in entries)
        access = [r for e in entries for r in e.access]
        dead = [d for e in entries for d in e.dead]
        work = AlertWork()
        for entry in entries:
            if entry.work is not None:
                work.absorb(entry.work)
        try:
            return await self._commit(
                rows, count, access=access, dead=dead, work=work, progress=progress
            )
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            await self._rollback()
            if count == 0:
                raise
            log.warning("batch of %d rows refused (%s); retrying row by row", count, exc)
        inserted = duplicates = 0
        refused: list[DeadLetter] = []
        for line in rows.splitlines(keepends=True):
            try:
                part = await self._commit(line, 1, access=access, dead=(), work=None, progress=None)
            except (psycopg.DataError, psycopg.IntegrityError) as exc:
                await self._rollback()
                refused.append(_refused(line, exc))
                continue
            inserted += part.inserted
            duplicates += part.duplicates
        tail = await self._commit(
            b"", 0, access=(), dead=[*dead, *refused], work=work, progress=progress
        )
        return WriteResult(inserted, duplicates, tail.dead_letters, tail.dead_letter_reasons)

    async def _rollback(self) -> None:
        if self._conn is not None:
            try:
                await self._conn.rollback()
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                await self.close()
                raise StorageUnavailable(_first_line(exc)) from exc

    async def _commit(
        self,
        rows: bytes,
        count: int,
        *,
        access: Sequence[StoredRow],
        dead: Sequence[DeadLetter],
        work: AlertWork | None,
        progress: Progress | None,
    ) -> WriteResult:
        conn = await self._connection()
        inserted = dead_count = 0
        reasons: dict[str, int] = {}
        try:
            async with conn.transaction(), conn.cursor() as cur:
                if count:
                    async with cur.copy(
                        sql.SQL("COPY events_staging ({}) FROM STDIN").format(sql.SQL(_COLUMNS_SQL))
                    ) as copy:
                        await copy.write(rows)
                    await cur.execute(_INSERT_SQL)
                    new = set(await cur.fetchall())
                    inserted = len(new)
                    # Logged in the same transaction as the event: exactly once.
                    fresh = [
                        r
                        for r in access
                        if (r.event.device_id, r.event.event_id, r.event.occurred_at) in new
                    ]
                    if fresh:
                        await append_access_events(cur, fresh)
                if work:
                    await store_alert_work(cur, work)
                if dead:
                    await cur.execute(_DEAD_LETTER_SQL, _dead_letter_columns(dead))
                    for (reason,) in await cur.fetchall():
                        reasons[reason] = reasons.get(reason, 0) + 1
                    dead_count = sum(reasons.values())
                if progress is not None:
                    await cur.execute(
                        _SAVE_PROGRESS,
                        (progress.spool_id, progress.journal_seq, progress.alarm_seq,
                         progress.bulk_seq),
                    )  # fmt: skip
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            await self.close()
            raise StorageUnavailable(f"PostgreSQL write failed: {_first_line(exc)}") from exc
        return WriteResult(inserted, count - inserted, dead_count, reasons)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _refused(line: bytes, exc: Exception) -> DeadLetter:
    """A dead letter for one rendered row PostgreSQL would not take.

    The last line of defence: the adapters and the pipeline refuse what PostgreSQL
    cannot hold (NUL, lone surrogates, numbers out of range) with the raw bytes,
    so this is for what nobody foresaw. The journal holds the rendered row, not
    the message, so the row is kept, without its receive time (that is in its own
    column): the same event refused again is the same dead letter.
    """
    fields = line.decode("utf-8", "surrogateescape").split("\t")
    device_id, org, family = fields[1], fields[4], fields[5]
    received_at = datetime.fromisoformat(fields[3])
    kept = "\t".join([*fields[:3], *fields[4:]]).encode("utf-8", "surrogateescape")
    return DeadLetter(
        received_at=received_at,
        topic=f"wgw/{org}/{family}/{device_id}/event",
        payload=kept,
        reason="storage_rejected",
        detail=f"PostgreSQL refused the event: {_first_line(exc)}",
        org=org,
        device_id=device_id,
    )
