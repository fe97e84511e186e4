"""The pool as the gateway sees it: its type, a connection that fails as ours, a probe."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import psycopg
from psycopg_pool import AsyncConnectionPool

from core.errors import StorageUnavailable

# What store functions take and the API hands them; only this package looks inside.
Connection: TypeAlias = psycopg.AsyncConnection[Any]
Pool: TypeAlias = AsyncConnectionPool[Connection]


@asynccontextmanager
async def connection(pool: Pool, *, wait_s: float) -> AsyncIterator[Connection]:
    """A pooled connection, committed on leaving; StorageUnavailable if PostgreSQL is away.

    The pool's own timeout and a connection lost mid-query are both
    ``psycopg.OperationalError``; either becomes StorageUnavailable here, so
    callers handle one error of the gateway's own.
    """
    try:
        async with pool.connection(timeout=wait_s) as conn:
            yield conn
    except psycopg.OperationalError as exc:
        raise StorageUnavailable(f"PostgreSQL is unreachable: {exc}") from exc


async def probe(pool: Pool, *, within_s: float = 2.0) -> bool:
    """Whether PostgreSQL answers a trivial query within ``within_s`` seconds."""
    try:
        async with asyncio.timeout(within_s), connection(pool, wait_s=within_s) as conn:
            await conn.execute("SELECT 1")
    except (StorageUnavailable, TimeoutError):
        return False
    return True
