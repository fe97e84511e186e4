"""The bench's SQL: setup statements and what the events table says about a run."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import psycopg

# How long a query waits for a server that went away to be back.
_RECONNECT_S = 120.0


class Database:
    """The bench's queries: setup statements and what the events table says about a run."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn = psycopg.connect(dsn, autocommit=True)

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def _row(self, query: str, params: Mapping[str, object] | None = None) -> tuple[Any, ...]:
        try:
            row = self._conn.execute(query.encode(), params).fetchone()
        except psycopg.OperationalError:
            if not self._conn.closed:
                raise
            # The server went away under us (the bench's outage phase): wait until it is
            # back, then once more.
            self._reconnect(within=_RECONNECT_S)
            row = self._conn.execute(query.encode(), params).fetchone()
        assert row is not None
        return row

    def _reconnect(self, within: float) -> None:
        deadline = time.monotonic() + within
        while True:
            try:
                self._conn = psycopg.connect(self.dsn, autocommit=True)
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def server_version(self) -> str:
        """PostgreSQL's version string."""
        return str(self._row("SHOW server_version")[0])

    def create_database(self, name: str) -> str:
        """Create a database in the same cluster; return its DSN."""
        self._conn.execute(f'CREATE DATABASE "{name}"'.encode())
        return self.dsn.rsplit("/", 1)[0] + f"/{name}"

    # Every query narrows by occurred_at, which the BRIN index serves: the bench's
    # device time is its publish time, so a run's rows are all at or after its start.
    _RUN = "occurred_at >= to_timestamp(%(since)s) AND starts_with(event_id, %(prefix)s)"

    def count(self, prefix: str, since: float) -> int:
        """Events of a run: ids starting with ``prefix``, published at or after ``since``."""
        query = f"SELECT count(*) FROM events WHERE {self._RUN}"
        return int(self._row(query, {"since": since - 1, "prefix": prefix})[0])

    def duplicates(self, prefix: str, since: float) -> int:
        """Events of a run stored more than once: rows beyond one per (device, event id)."""
        query = (
            f"SELECT count(*) - count(DISTINCT (device_id, event_id)) FROM events WHERE {self._RUN}"
        )
        return int(self._row(query, {"since": since - 1, "prefix": prefix})[0])

    def wait_for(
        self,
        prefix: str,
        since: float,
        expected: int,
        check_alive: Callable[[], None],
        timeout: float,
    ) -> tuple[int, float]:
        """Poll until ``expected`` events are stored or ``timeout`` passes; return count, time.

        ``check_alive`` runs between polls and raises if the gateway under test died.
        """
        deadline = time.monotonic() + timeout
        while True:
            stored = self.count(prefix, since)
            if stored >= expected or time.monotonic() > deadline:
                return stored, time.time()
            check_alive()
            time.sleep(0.1)

    def stored_span(self, prefix: str, since: float) -> tuple[int, float, float, int]:
        """Count, first and last stored_at, and rows stored before the last batch's transaction."""
        row = self._row(
            f"WITH s AS (SELECT stored_at FROM events WHERE {self._RUN}) "
            "SELECT count(*), extract(epoch FROM min(stored_at))::float8, "
            "  extract(epoch FROM max(stored_at))::float8, "
            "  count(*) FILTER (WHERE stored_at < (SELECT max(stored_at) FROM s)) FROM s",
            {"since": since - 1, "prefix": prefix},
        )
        return int(row[0]), float(row[1] or 0), float(row[2] or 0), int(row[3])

    def latency(self, prefix: str, since: float, publish_end: float) -> dict[str, Any]:
        """Latency (stored_at − sent) percentiles, overall and per quarter, and the backlog."""
        quarter = (publish_end - since) / 4
        lat = "percentile_cont(%s) WITHIN GROUP (ORDER BY lat)"
        row = self._row(
            f"SELECT {lat % 0.5}, {lat % 0.99}, "
            f"  {lat % 0.5} FILTER (WHERE sent < %(q1)s), "
            f"  {lat % 0.5} FILTER (WHERE sent >= %(q4)s), "
            "  extract(epoch FROM max(stored_at))::float8, "
            "  count(*) FILTER (WHERE stored_at > to_timestamp(%(end)s)) "
            "FROM (SELECT stored_at, (attributes->>'sent')::float8 AS sent, "
            "  extract(epoch FROM stored_at)::float8 - (attributes->>'sent')::float8 AS lat "
            f"  FROM events WHERE {self._RUN}) s",
            {
                "since": since - 1,
                "prefix": prefix,
                "q1": since + quarter,
                "q4": publish_end - quarter,
                "end": publish_end,
            },
        )
        keys = ("p50", "p99", "first_quarter_p50", "last_quarter_p50", "last_stored", "backlog")
        return dict(zip(keys, row, strict=True))
