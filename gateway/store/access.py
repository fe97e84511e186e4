"""The access directory in PostgreSQL: imported whole from a file, read by the gateway."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import psycopg

from rules.access import AccessDirectory

_CURRENT = "current"


def import_directory(dsn: str, directory: AccessDirectory, *, source: str) -> None:
    """Replace the stored directory with a validated one."""
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO access_directory (name, document, source) VALUES (%s, %s, %s)"
            " ON CONFLICT (name) DO UPDATE SET document = EXCLUDED.document,"
            " source = EXCLUDED.source, imported_at = now()",
            (_CURRENT, json.dumps(directory.model_dump(mode="json")), source),
        )


async def directory_version(conn: psycopg.AsyncConnection[Any]) -> datetime | None:
    """When the stored directory was imported (None if never)."""
    cur = await conn.execute(
        "SELECT imported_at FROM access_directory WHERE name = %s", (_CURRENT,)
    )
    row = await cur.fetchone()
    return None if row is None else row[0]


async def load_directory(conn: psycopg.AsyncConnection[Any]) -> AccessDirectory | None:
    """The stored directory, or None when none was imported."""
    cur = await conn.execute("SELECT document FROM access_directory WHERE name = %s", (_CURRENT,))
    row = await cur.fetchone()
    return None if row is None else AccessDirectory.model_validate(row[0])


def load_stored_directory(dsn: str) -> AccessDirectory | None:
    """The stored directory, read with a plain connection (for the CLI)."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT document FROM access_directory WHERE name = %s", (_CURRENT,)
        ).fetchone()
    return None if row is None else AccessDirectory.model_validate(row[0])
