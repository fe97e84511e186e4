"""Out-of-service periods for devices: set by a coordinator, ending by themselves."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from core.errors import RegistryError
from core.rows import Shelf


def shelve(dsn: str, shelf: Shelf) -> None:
    """Record an out-of-service period for a registered device."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT org FROM devices WHERE device_id = %s", (shelf.device_id,)
        ).fetchone()
        if row is None:
            raise RegistryError(f"device {shelf.device_id!r} is not registered")
        conn.execute(
            "INSERT INTO shelves (org, device_id, reason, shelved_by, starts_at, ends_at)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (row[0], shelf.device_id, shelf.reason, shelf.shelved_by, shelf.starts_at,
             shelf.ends_at),
        )  # fmt: skip


async def load_shelves(conn: psycopg.AsyncConnection[Any], now: datetime) -> list[Shelf]:
    """Every period not yet over."""
    cur = await conn.execute(
        "SELECT device_id, reason, shelved_by, starts_at, ends_at FROM shelves"
        " WHERE ends_at > %s ORDER BY starts_at",
        (now,),
    )
    return [Shelf(*row) for row in await cur.fetchall()]
