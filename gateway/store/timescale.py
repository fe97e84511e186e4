"""TimescaleDB's background jobs (compression, retention): which of them are failing.

Read from timescaledb_information.jobs and .job_stats (documented columns:
job_id, application_name, hypertable_name; last_run_status 'Success' or
'Failed', total_runs, total_failures, last_successful_finish), and the last
error from .job_errors where that view exists (TimescaleDB 2.9 and later).
On the native variant (no timescaledb extension in the database) there is
nothing to check.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

import psycopg

from core.errors import StorageUnavailable
from gateway.store.pool import Connection, Pool, connection


@dataclass(frozen=True)
class JobState:
    """One TimescaleDB job as job_stats sees it."""

    job_id: int
    name: str  # application_name, e.g. "Compression Policy [1000]"
    hypertable: str | None
    last_run_status: str | None  # 'Success', 'Failed', or None before its first run
    total_runs: int
    total_failures: int
    last_success: datetime | None
    last_error: str | None = None  # the newest job_errors message, when readable

    @property
    def failing(self) -> bool:
        """Whether its last run failed."""
        return self.last_run_status == "Failed"


_JOBS = """
SELECT j.job_id, j.application_name, j.hypertable_name, s.last_run_status,
       coalesce(s.total_runs, 0), coalesce(s.total_failures, 0), s.last_successful_finish
  FROM timescaledb_information.jobs j
  LEFT JOIN timescaledb_information.job_stats s ON s.job_id = j.job_id
 ORDER BY j.job_id
"""

_LAST_ERRORS = """
SELECT DISTINCT ON (job_id) job_id, err_message
  FROM timescaledb_information.job_errors
 WHERE job_id = ANY(%s)
 ORDER BY job_id, finish_time DESC NULLS LAST
"""


async def read_jobs(conn: Connection) -> list[JobState] | None:
    """Every TimescaleDB job of this database, or None when the extension is not in it."""
    cur = await conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
    if await cur.fetchone() is None:
        return None
    cur = await conn.execute(_JOBS)
    jobs = [
        JobState(
            job_id=int(row[0]),
            name=str(row[1]),
            hypertable=row[2],
            last_run_status=row[3],
            total_runs=int(row[4]),
            total_failures=int(row[5]),
            last_success=row[6],
        )
        for row in await cur.fetchall()
    ]
    failing = [job.job_id for job in jobs if job.failing]
    errors: dict[int, str] = {}
    if failing:
        cur = await conn.execute(
            "SELECT to_regclass('timescaledb_information.job_errors') IS NOT NULL"
        )
        exists = await cur.fetchone()
        if exists and exists[0]:
            cur = await conn.execute(_LAST_ERRORS, (failing,))
            errors = {int(row[0]): str(row[1]) for row in await cur.fetchall()}
    return [
        JobState(**{**job.__dict__, "last_error": errors.get(job.job_id)})
        if job.job_id in errors
        else job
        for job in jobs
    ]


async def timescaledb_jobs(pool: Pool, *, within_s: float = 2.0) -> list[JobState] | None:
    """TimescaleDB's jobs, None on the native variant or when PostgreSQL does not answer."""
    try:
        async with asyncio.timeout(within_s), connection(pool, wait_s=within_s) as conn:
            return await read_jobs(conn)
    except (StorageUnavailable, TimeoutError, psycopg.Error):
        return None
