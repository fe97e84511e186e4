"""Out-of-service periods for devices: set by a coordinator, ending by themselves."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from gateway.errors import RegistryError


@dataclass(frozen=True, slots=True)
class Shelf:
    """One device out of service: who decided, why, and until when."""

    device_id: str
    reason: str
    shelved_by: str
    starts_at: datetime
    ends_at: datetime


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
