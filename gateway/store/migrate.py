"""Numbered SQL migrations, applied once each, in a TimescaleDB or native variant."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

import psycopg

from core.errors import StorageUnavailable

log = logging.getLogger(__name__)

# Two gateways starting together must not both migrate: take this lock first.
_MIGRATION_LOCK_KEY = 0x77677700
_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+?)(?:\.(native|timescaledb))?\.sql$")


@dataclass(frozen=True)
class Migration:
    """One migration step, possibly with a storage variant."""

    version: int
    name: str
    variant: str | None
    sql: str


@dataclass(frozen=True)
class MigrationReport:
    """What `migrate` did: the storage variant in use and the versions it applied."""

    variant: str
    applied: tuple[int, ...]


def available_migrations() -> list[Migration]:
    """List the packaged migrations in version order."""
    found: list[Migration] = []
    folder = resources.files("gateway.store") / "migrations"
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match is None:
            continue
        version, name, variant = match.groups()
        found.append(Migration(int(version), name, variant, entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: (m.version, m.variant or ""))


def timescaledb_available(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    """Tell whether the server can load the timescaledb extension."""
    row = conn.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    return row is not None


def migrate(dsn: str, *, allow_timescaledb: bool = True) -> MigrationReport:
    """Apply every migration not yet applied, in one transaction each, under an advisory lock."""
    try:
        conn = psycopg.connect(dsn, autocommit=True)
    except psycopg.OperationalError as exc:
        raise StorageUnavailable(f"cannot connect to PostgreSQL for migration: {exc}") from exc
    with conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK_KEY,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, variant text,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {
            row[0]: row[1] for row in conn.execute("SELECT version, variant FROM schema_migrations")
        }
        # Once chosen, the variant stays: it is recorded with the events migration.
        chosen = next((v for v in done.values() if v), None)
        variant = chosen or (
            "timescaledb" if allow_timescaledb and timescaledb_available(conn) else "native"
        )
        applied: list[int] = []
        for migration in available_migrations():
            if migration.version in done or migration.variant not in (None, variant):
                continue
            log.info("applying migration %03d_%s (%s)", migration.version, migration.name, variant)
            with conn.transaction():
                conn.execute(migration.sql.encode())
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, variant) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.variant),
                )
            applied.append(migration.version)
        conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK_KEY,))
    return MigrationReport(variant=variant, applied=tuple(applied))
