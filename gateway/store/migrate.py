"""Numbered SQL migrations, applied once each, in a TimescaleDB or native variant."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources
from typing import Literal

import psycopg

from core.errors import ConfigError, StorageUnavailable

log = logging.getLogger(__name__)

# Two gateways starting together must not both migrate: take this lock first.
_MIGRATION_LOCK_KEY = 0x77677700
_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+?)(?:\.(native|timescaledb))?\.sql$")

# db.timescaledb: "auto" uses TimescaleDB when it can really be loaded, "on"
# insists on it, "off" never uses it.
TimescaleMode = Literal["auto", "on", "off"]


@dataclass(frozen=True)
class Migration:
    """One migration step, possibly with a storage variant."""

    version: int
    name: str
    variant: str | None
    sql: str


@dataclass(frozen=True)
class MigrationReport:
    """What `migrate` did: the storage variant in use and the versions it applied.

    ``reason`` says why the native variant was chosen when TimescaleDB was
    allowed but could not be loaded (None otherwise).
    """

    variant: str
    applied: tuple[int, ...]
    reason: str | None = None


@dataclass(frozen=True)
class TimescaleSupport:
    """Whether the server can load the timescaledb extension into this database, and if not, why."""

    loadable: bool
    installed: bool = True
    reason: str = ""  # why not, when not loadable
    remedy: str = ""  # what to change to load it


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


def _preloaded(setting: str) -> bool:
    """Whether a shared_preload_libraries value names the timescaledb library."""
    for item in setting.split(","):
        library = item.strip().strip('"').rsplit("/", 1)[-1]
        if library in ("timescaledb", "timescaledb.so"):
            return True
    return False


def timescaledb_support(dsn: str) -> TimescaleSupport:
    """Tell whether ``CREATE EXTENSION timescaledb`` would work in this database.

    Installed (pg_available_extensions) is not enough: TimescaleDB refuses to
    load unless it is in shared_preload_libraries. When both hold and the
    extension is not created yet, it is created in a transaction that is
    rolled back, on a connection of its own, so that nothing of it stays.
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT installed_version FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).fetchone()
        if row is None:
            return TimescaleSupport(
                False,
                installed=False,
                reason="timescaledb is not installed on the PostgreSQL server",
                remedy="install the TimescaleDB package for this PostgreSQL version, add it "
                "to shared_preload_libraries in postgresql.conf and restart PostgreSQL",
            )
        preload = conn.execute("SHOW shared_preload_libraries").fetchone()
        if not _preloaded(str(preload[0] if preload else "")):
            return TimescaleSupport(
                False,
                reason="timescaledb is installed but not in shared_preload_libraries "
                f"({str(preload[0] if preload else '') or 'empty'})",
                remedy="add shared_preload_libraries = 'timescaledb' to postgresql.conf and "
                "restart PostgreSQL",
            )
        if row[0] is not None:  # already created in this database
            return TimescaleSupport(True)
        try:
            with conn.transaction(force_rollback=True):
                conn.execute("CREATE EXTENSION timescaledb")
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return TimescaleSupport(
                False,
                reason=f"CREATE EXTENSION timescaledb fails in this database ({first})",
                remedy="fix what the error names (the server log has more)",
            )
    return TimescaleSupport(True)


def _choose_variant(
    dsn: str, mode: TimescaleMode, recorded: str | None
) -> tuple[str, TimescaleSupport | None]:
    """The variant to migrate with, and why native when TimescaleDB was allowed."""
    if recorded is not None:
        # Once chosen, the variant stays: the events table cannot change kind in place.
        if mode == "on" and recorded != "timescaledb":
            raise ConfigError(
                'db.timescaledb = "on", but this database was migrated with the native variant; '
                'set db.timescaledb = "auto" or "off", or migrate into a new database'
            )
        if mode == "off" and recorded == "timescaledb":
            raise ConfigError(
                'db.timescaledb = "off", but this database was migrated with TimescaleDB; '
                'set db.timescaledb = "auto" or "on", or migrate into a new database'
            )
        return recorded, None
    if mode == "off":
        return "native", None
    support = timescaledb_support(dsn)
    if support.loadable:
        return "timescaledb", None
    if mode == "on":
        raise ConfigError(
            f'db.timescaledb = "on", but {support.reason}: {support.remedy}, or set '
            'db.timescaledb = "auto" or "off" to use native partitions'
        )
    return "native", support


def migrate(dsn: str, *, timescaledb: TimescaleMode = "auto") -> MigrationReport:
    """Apply every migration not yet applied, all in one transaction, under an advisory lock.

    The storage variant is settled before anything is applied: with
    ``timescaledb="on"`` and TimescaleDB not loadable, ConfigError is raised
    and the database is left as it was.
    """
    try:
        conn = psycopg.connect(dsn, autocommit=True)
    except psycopg.OperationalError as exc:
        raise StorageUnavailable(f"cannot connect to PostgreSQL for migration: {exc}") from exc
    with conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK_KEY,))
        exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        done: dict[int, str | None] = {}
        if exists and exists[0]:
            done = {
                row[0]: row[1]
                for row in conn.execute("SELECT version, variant FROM schema_migrations")
            }
        recorded = next((v for v in done.values() if v), None)
        variant, refused = _choose_variant(dsn, timescaledb, recorded)
        reason = None
        if refused is not None:
            reason = refused.reason
            # One line, saying why; a warning only when TimescaleDB is there but unusable.
            log.log(
                logging.WARNING if refused.installed else logging.INFO,
                "%s; using native partitions (to use TimescaleDB: %s)",
                refused.reason,
                refused.remedy,
            )
        pending = [
            m
            for m in available_migrations()
            if m.version not in done and m.variant in (None, variant)
        ]
        # All that is pending in one transaction: a step that fails leaves the
        # database as it was, not with half the schema in it.
        with conn.transaction():
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL, variant text,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            for migration in pending:
                log.info(
                    "applying migration %03d_%s (%s)", migration.version, migration.name, variant
                )
                conn.execute(migration.sql.encode())
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, variant) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.variant),
                )
        applied = [m.version for m in pending]
        conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK_KEY,))
    return MigrationReport(variant=variant, applied=tuple(applied), reason=reason)
