"""PostgreSQL for the tests: the server WGW_TEST_PG_BIN/WGW_TEST_PG_PRELOAD ask for, and
databases made from templates that TimescaleDB's background workers do not hold open."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

from gateway.embedded import PostgresServer, temp_dir


def postgres_for_tests(prefix: str) -> PostgresServer:
    """An unstarted PostgreSQL cluster as WGW_TEST_PG_BIN and WGW_TEST_PG_PRELOAD ask."""
    settings: dict[str, str] = {}
    preload = os.environ.get("WGW_TEST_PG_PRELOAD", "").strip()
    if preload:
        settings["shared_preload_libraries"] = preload
        if "timescaledb" in preload:
            settings["timescaledb.telemetry_level"] = "off"
            # One scheduler per database holding the extension, plus a worker per
            # running job. TimescaleDB's "Troubleshoot jobs" page: max_background_workers
            # = databases + concurrent jobs, max_worker_processes = that +
            # max_parallel_workers (8). Too few and jobs fail to launch.
            settings["max_worker_processes"] = "32"
            settings["timescaledb.max_background_workers"] = "24"
    binaries = os.environ.get("WGW_TEST_PG_BIN", "").strip()
    if binaries:
        if not (Path(binaries) / "postgres").exists():
            pytest.fail(f"WGW_TEST_PG_BIN={binaries}: no postgres binary there")
        return PostgresServer(temp_dir(prefix), bin_dir=Path(binaries), settings=settings)
    return PostgresServer(temp_dir(prefix), settings=settings)


def create_database(server_dsn: str, name: str, template: str = "template0") -> None:
    """CREATE DATABASE from a template no one is connected to.

    template0 refuses connections, so TimescaleDB's background workers never
    sit in it, while they visit template1 (and a CREATE DATABASE copying a
    template fails while anyone is connected to it). For a prepared template
    of our own, see seal_template.
    """
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'.encode())


def seal_template(server_dsn: str, name: str) -> None:
    """Make database ``name`` a template nobody connects to, so it can be copied at any time.

    TimescaleDB's scheduler stays connected to every database holding the
    extension; refusing connections keeps it (and anyone else) out, and the
    sessions already there are ended.
    """
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(
            f'ALTER DATABASE "{name}" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false'.encode()
        )
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )


def drop_database(server_dsn: str, name: str) -> None:
    """Drop a database (a sealed template too), ending whoever is connected to it."""
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        sealed = conn.execute(
            "SELECT datistemplate FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
        if sealed and sealed[0]:
            conn.execute(f'ALTER DATABASE "{name}" WITH IS_TEMPLATE false'.encode())
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
