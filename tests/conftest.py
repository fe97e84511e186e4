"""Fixtures: real PostgreSQL and Mosquitto started on free ports, one fresh database per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from gateway.embedded import MosquittoServer, PostgresServer, find_mosquitto, temp_dir


@pytest.fixture(autouse=True)
def spool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every gateway a test starts spools under the test's own directory (WGW_SPOOL__DIR)."""
    path = tmp_path / "spool"
    monkeypatch.setenv("WGW_SPOOL__DIR", str(path))
    return path


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the session; tests get their own database in it."""
    server = PostgresServer(temp_dir("wgw-test-pg-"))
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def db_dsn(pg_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database for one test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    yield pg_server.dsn.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


@pytest.fixture
def own_pg() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster of the test's own, which it may stop and restart."""
    server = PostgresServer(temp_dir("wgw-test-ownpg-"))
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
