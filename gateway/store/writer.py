"""Batched idempotent writes: COPY into staging, then INSERT … ON CONFLICT DO NOTHING."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from core.errors import StorageUnavailable
from core.rows import DeadLetter, StoredRow
from gateway.store.alerts import store as store_alert_work
from gateway.store.auditlog import append_events as append_access_events
from gateway.store.auditlog import is_access_event
from gateway.store.pool import Pool
from rules.work import AlertWork

log = logging.getLogger(__name__)

# Dead-letter payloads are kept whole up to this size; a bigger hostile
# payload keeps its first MiB, its real size and the hash of all of it.
MAX_DEAD_LETTER_BYTES = 1024 * 1024

# How far back a redelivered event without device time is looked for. It
# covers the broker's session expiry: nothing is redelivered after that.
_GATEWAY_TIME_DEDUP_WINDOW = "7 days"

_EVENT_COLUMNS = (
    "occurred_at", "device_id", "event_id", "received_at", "org", "family", "kind",
    "actor", "device_time", "attributes",
)  # fmt: skip

# COPY's text format gives these four characters a meaning; escape them.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one committed batch changed."""

    inserted: int
    duplicates: int
    dead_letters: int


# One encoder for all rows: json.dumps with options builds a new one per call.
_ATTRIBUTES_JSON = json.JSONEncoder(separators=(",", ":")).encode


def copy_buffer(rows: Sequence[StoredRow]) -> bytes:
    """Render rows as one COPY text-format buffer in the column order of _EVENT_COLUMNS."""
    lines: list[str] = []
    append = lines.append
    esc = _COPY_ESCAPES
    for row in rows:
        e = row.event
        actor = "\\N" if e.actor is None else e.actor.translate(esc)
        attributes = _ATTRIBUTES_JSON(e.attributes).translate(esc) if e.attributes else "{}"
        # device_id and kind are validated to need no escaping; the rest may.
        append(
            f"{e.occurred_at.isoformat()}\t{e.device_id}\t{e.event_id.translate(esc)}\t"
            f"{e.received_at.isoformat()}\t{row.org.translate(esc)}\t{e.family.value}\t"
            f"{e.kind}\t{actor}\t{'t' if e.device_time else 'f'}\t{attributes}\n"
        )
    # surrogatepass: a lone surrogate reaches PostgreSQL, which refuses that row
    # with a reason (see BatchWriter.write) instead of failing the whole batch here.
    return "".join(lines).encode("utf-8", "surrogatepass")


_COLUMNS_SQL = ", ".join(_EVENT_COLUMNS)
_STAGING_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS events_staging"
    " (LIKE events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
_INSERT_SQL = f"""
INSERT INTO events ({_COLUMNS_SQL})
SELECT DISTINCT ON (s.device_id, s.event_id, CASE WHEN s.device_time THEN s.occurred_at END)
       {", ".join("s." + c for c in _EVENT_COLUMNS)}
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
_DEAD_LETTER_SQL = """
INSERT INTO dead_letters (received_at, topic, payload, payload_size, message_sha256,
                          reason, detail, org, device_id)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (message_sha256) DO NOTHING
"""


def _dead_letter_params(d: DeadLetter) -> tuple[object, ...]:
    digest = hashlib.sha256(d.topic.encode("utf-8", "surrogateescape") + b"\0" + d.payload)
    return (
        d.received_at,
        d.topic.replace("\x00", "\\0"),
        d.payload[:MAX_DEAD_LETTER_BYTES],
        len(d.payload),
        digest.digest(),
        d.reason,
        d.detail.replace("\x00", "\\0")[:2000],
        d.org,
        d.device_id,
    )


async def _prepare_connection(conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.execute(_STAGING_DDL)
    await conn.commit()


class BatchWriter:
    """Writes one batch per transaction; the caller acknowledges only after it returns."""

    def __init__(
        self,
        pool: Pool,
        *,
        acquire_timeout: float = 5.0,
    ) -> None:
        self._pool = pool
        # Short: while PostgreSQL is down the caller retries with backoff and
        # logs each failure; a long pool wait would hide the outage.
        self._acquire_timeout = acquire_timeout

    @staticmethod
    def make_pool(dsn: str, *, min_size: int = 1, max_size: int = 4) -> Pool:
        """Create (unopened) a connection pool whose connections have the staging table."""
        return AsyncConnectionPool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            open=False,
            configure=_prepare_connection,
            kwargs={"autocommit": False},
        )

    async def write(
        self,
        rows: Sequence[StoredRow],
        dead: Sequence[DeadLetter],
        alerts: AlertWork | None = None,
    ) -> WriteResult:
        """Store a batch exactly once; raises StorageUnavailable if PostgreSQL is unreachable.

        A row the database refuses (a value it cannot hold) does not block the
        stream: the batch is retried row by row and refused rows become dead
        letters with the database's reason.
        """
        try:
            return await self._write(rows, dead, alerts)
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            if len(rows) <= 1:
                raise
            log.warning("batch of %d refused (%s); retrying row by row", len(rows), exc)
        total = WriteResult(0, 0, 0)
        refused: list[DeadLetter] = []
        for row in rows:
            try:
                part = await self._write([row], ())
            except (psycopg.DataError, psycopg.IntegrityError) as exc:
                refused.append(_refused(row, exc))
                continue
            total = WriteResult(
                total.inserted + part.inserted, total.duplicates + part.duplicates, 0
            )
        tail = await self._write((), [*dead, *refused], alerts)
        return WriteResult(total.inserted, total.duplicates, tail.dead_letters)

    async def _write(
        self,
        rows: Sequence[StoredRow],
        dead: Sequence[DeadLetter],
        alerts: AlertWork | None = None,
    ) -> WriteResult:
        inserted = dead_count = 0
        try:
            async with (
                self._pool.connection(timeout=self._acquire_timeout) as conn,
                conn.transaction(),
                conn.cursor() as cur,
            ):
                if rows:
                    async with cur.copy(
                        sql.SQL("COPY events_staging ({}) FROM STDIN").format(sql.SQL(_COLUMNS_SQL))
                    ) as copy:
                        await copy.write(copy_buffer(rows))
                    await cur.execute(_INSERT_SQL)
                    new = set(await cur.fetchall())
                    inserted = len(new)
                    # Logged in the same transaction as the event: exactly once.
                    access = [
                        r
                        for r in rows
                        if is_access_event(r)
                        and (r.event.device_id, r.event.event_id, r.event.occurred_at) in new
                    ]
                    if access:
                        await append_access_events(cur, access)
                if alerts:
                    await store_alert_work(cur, alerts)
                if dead:
                    await cur.executemany(_DEAD_LETTER_SQL, [_dead_letter_params(d) for d in dead])
                    dead_count = max(cur.rowcount, 0)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise StorageUnavailable(f"PostgreSQL write failed: {exc}") from exc
        return WriteResult(inserted, len(rows) - inserted, dead_count)


def _refused(row: StoredRow, exc: Exception) -> DeadLetter:
    e = row.event
    # json.dumps escapes what UTF-8 cannot carry (the likely reason for refusal).
    payload = json.dumps(e.model_dump(mode="json")).encode()
    return DeadLetter(
        received_at=e.received_at,
        topic=f"wgw/{row.org}/{e.family.value}/{e.device_id}/event",
        payload=payload,
        reason="storage_rejected",
        detail=f"PostgreSQL refused the event: {exc}".splitlines()[0],
        org=row.org,
        device_id=e.device_id,
    )
