"""db.timescaledb against a private PostgreSQL that has a stand-in TimescaleDB installed.

No TimescaleDB package exists for this machine. The stand-in is a copy of the
server's installation (bin, share; lib as links) in a temporary directory,
with a timescaledb.control in its own extension directory:

- version 2.17.2, the default, refuses to be created the way the real library
  does when it is not in shared_preload_libraries;
- version 0.0-stub creates timescaledb_information.jobs/job_stats/job_errors
  over a table the test fills, for the job-health checks;
- a preloadable "timescaledb" library (another contrib module under that
  name) lets the server start with shared_preload_libraries = 'timescaledb',
  so the rolled-back CREATE EXTENSION trial is exercised too.

Nothing is written outside the temporary directory, which is removed after.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from core.errors import ConfigError
from gateway.api.routes.ops import ProblemCode, jobs_problems, timescaledb_metrics
from gateway.cli import main
from gateway.embedded import PostgresServer, find_postgres_bin, temp_dir
from gateway.store.migrate import migrate, timescaledb_support
from gateway.store.runtime import make_pool
from gateway.store.timescale import read_jobs, timescaledb_jobs
from tests.utils.databases import create_database
from tests.utils.services import rows, scalar

pytestmark = pytest.mark.db

_CONTROL = """\
comment = 'test stand-in for TimescaleDB (wgw tests)'
default_version = '2.17.2'
relocatable = false
superuser = true
"""

# What the real loader says when the library was not preloaded.
_REFUSING = """\
DO $$ BEGIN
    RAISE EXCEPTION 'extension "timescaledb" must be preloaded'
        USING HINT = 'Please preload the timescaledb library via shared_preload_libraries.';
END $$;
"""

# The documented columns the gateway reads, over a table the test fills.
_STUB = """\
CREATE SCHEMA timescaledb_information;
CREATE TABLE timescaledb_information.stub_jobs (
    job_id integer PRIMARY KEY, application_name text, hypertable_name text,
    last_run_status text, total_runs bigint, total_failures bigint,
    last_successful_finish timestamptz, err_message text, finish_time timestamptz
);
CREATE VIEW timescaledb_information.jobs AS
    SELECT job_id, application_name, hypertable_name FROM timescaledb_information.stub_jobs;
CREATE VIEW timescaledb_information.job_stats AS
    SELECT job_id, hypertable_name, last_run_status, total_runs, total_failures,
           last_successful_finish
      FROM timescaledb_information.stub_jobs;
CREATE VIEW timescaledb_information.job_errors AS
    SELECT job_id, err_message, finish_time
      FROM timescaledb_information.stub_jobs WHERE err_message IS NOT NULL;
"""


def _pg_config(bin_dir: Path, what: str) -> Path:
    out = subprocess.run(
        [str(bin_dir / "pg_config"), f"--{what}"], capture_output=True, text=True, check=True
    )
    return Path(out.stdout.strip())


@dataclass
class StandIn:
    """A private copy of the PostgreSQL installation with the stand-in extension."""

    root: Path
    bin_dir: Path

    def server(self, *, preload: bool) -> PostgresServer:
        settings = {"shared_preload_libraries": "timescaledb"} if preload else {}
        base = temp_dir("wgw-test-tsdb-pg-")
        return PostgresServer(base, bin_dir=self.bin_dir, settings=settings)


@pytest.fixture(scope="module")
def stand_in() -> Iterator[StandIn]:
    source = find_postgres_bin()
    if not (source / "pg_config").exists():
        pytest.skip(f"no pg_config in {source}: cannot locate its share and lib directories")
    bindir, sharedir = _pg_config(source, "bindir"), _pg_config(source, "sharedir")
    libdir = _pg_config(source, "pkglibdir")
    # PostgreSQL finds share and lib relative to its binary when the layout is kept.
    prefix = Path(*Path(bindir).parts[: len(Path(bindir).parts) - 1])
    while not (str(sharedir).startswith(f"{prefix}/") and str(libdir).startswith(f"{prefix}/")):
        prefix = prefix.parent
    root = temp_dir("wgw-test-tsdb-install-")
    try:
        copy_bin = root / bindir.relative_to(prefix)
        copy_share = root / sharedir.relative_to(prefix)
        copy_lib = root / libdir.relative_to(prefix)
        shutil.copytree(bindir, copy_bin)  # real files: the server resolves its own path
        shutil.copytree(sharedir, copy_share, symlinks=True)
        copy_lib.mkdir(parents=True)
        for entry in libdir.iterdir():
            (copy_lib / entry.name).symlink_to(entry)
        # A library that loads under the name timescaledb: preloading it works.
        (copy_lib / "timescaledb.so").symlink_to(libdir / "auto_explain.so")
        extension = copy_share / "extension"
        (extension / "timescaledb.control").write_text(_CONTROL)
        (extension / "timescaledb--2.17.2.sql").write_text(_REFUSING)
        (extension / "timescaledb--0.0-stub.sql").write_text(_STUB)
        for directory in (root, *[p for p in root.rglob("*") if p.is_dir()]):
            directory.chmod(0o755)  # the server may run as another account (root: postgres)
        if _pg_config(copy_bin, "sharedir") != copy_share:
            pytest.skip(f"PostgreSQL in {source} is not relocatable: its copy ignores its share")
        yield StandIn(root, copy_bin)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def not_preloaded(stand_in: StandIn) -> Iterator[PostgresServer]:
    server = stand_in.server(preload=False)
    server.start()
    yield server
    server.cleanup()


@pytest.fixture(scope="module")
def preloaded(stand_in: StandIn) -> Iterator[PostgresServer]:
    server = stand_in.server(preload=True)
    server.start()
    yield server
    server.cleanup()


def _database(server: PostgresServer) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    create_database(server.dsn, name)
    return server.dsn.rsplit("/", 1)[0] + f"/{name}"


def _tables(dsn: str) -> list[tuple[object, ...]]:
    return rows(dsn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")


def test_installed_but_not_preloaded_migrates_native_and_says_why(
    not_preloaded: PostgresServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    dsn = _database(not_preloaded)
    available = rows(dsn, "SELECT name FROM pg_available_extensions WHERE name = 'timescaledb'")
    assert available == [("timescaledb",)]  # the server sees it installed
    config = tmp_path / "wgw.toml"
    config.write_text(f'[db]\ndsn = "{dsn}"\n')  # db.timescaledb defaults to "auto"
    with caplog.at_level(logging.INFO, logger="gateway.store.migrate"):
        assert main(["migrate", "--config", str(config)]) == 0
    assert "storage variant: native" in capsys.readouterr().out
    why = [r for r in caplog.records if "shared_preload_libraries" in r.getMessage()]
    assert len(why) == 1 and why[0].levelno == logging.WARNING
    assert "timescaledb is installed but not in shared_preload_libraries" in why[0].getMessage()
    assert "using native partitions" in why[0].getMessage()
    assert rows(dsn, "SELECT variant FROM schema_migrations WHERE variant IS NOT NULL") == [
        ("native",)
    ]
    assert scalar(dsn, "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'") == 0
    # Once made, the variant stays and nothing is said again.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="gateway.store.migrate"):
        assert migrate(dsn).applied == ()
    assert not [r for r in caplog.records if "shared_preload_libraries" in r.getMessage()]


def test_on_refuses_naming_the_setting_and_applies_nothing(not_preloaded: PostgresServer) -> None:
    dsn = _database(not_preloaded)
    with pytest.raises(ConfigError) as refused:
        migrate(dsn, timescaledb="on")
    message = str(refused.value)
    assert 'db.timescaledb = "on"' in message
    assert "shared_preload_libraries" in message and "restart" in message
    assert _tables(dsn) == []  # not even schema_migrations or 001


def test_on_refuses_at_gateway_start_up_through_the_settings(
    not_preloaded: PostgresServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dsn = _database(not_preloaded)
    config = tmp_path / "wgw.toml"
    config.write_text(f'[db]\ndsn = "{dsn}"\ntimescaledb = "on"\n')
    code = main(["migrate", "--config", str(config)])
    assert code != 0
    assert "db.timescaledb" in capsys.readouterr().err
    assert _tables(dsn) == []


def test_off_is_native_without_looking(
    not_preloaded: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    dsn = _database(not_preloaded)
    with caplog.at_level(logging.INFO, logger="gateway.store.migrate"):
        report = migrate(dsn, timescaledb="off")
    assert report.variant == "native" and report.reason is None
    assert not [r for r in caplog.records if "timescaledb" in r.getMessage().lower()]
    # A native database stays native: "on" later cannot turn it into a hypertable.
    with pytest.raises(ConfigError, match=r"db\.timescaledb"):
        migrate(dsn, timescaledb="on")


def test_preloaded_but_failing_create_is_tried_rolled_back_and_refused(
    preloaded: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    dsn = _database(preloaded)
    assert "timescaledb" in str(scalar(dsn, "SHOW shared_preload_libraries"))
    support = timescaledb_support(dsn)
    assert not support.loadable and "CREATE EXTENSION timescaledb fails" in support.reason
    with pytest.raises(ConfigError, match=r'db\.timescaledb = "on"'):
        migrate(dsn, timescaledb="on")
    assert _tables(dsn) == []
    with caplog.at_level(logging.INFO, logger="gateway.store.migrate"):
        assert migrate(dsn).variant == "native"
    assert scalar(dsn, "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'") == 0
    assert any("CREATE EXTENSION timescaledb fails" in r.getMessage() for r in caplog.records)


async def test_failed_jobs_are_named_in_health_and_metrics(not_preloaded: PostgresServer) -> None:
    dsn = _database(not_preloaded)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION timescaledb VERSION '0.0-stub'")
        conn.execute(
            "INSERT INTO timescaledb_information.stub_jobs VALUES"
            " (1000, 'Compression Policy [1000]', 'events', 'Failed', 3, 3, NULL,"
            "  'permission denied for table events', now()),"
            " (1001, 'Retention Policy [1001]', 'events', 'Success', 2, 1, now(), NULL, NULL),"
            " (1, 'Telemetry Reporter [1]', NULL, NULL, 0, 0, NULL, NULL, NULL)"
        )
    pool = make_pool(dsn)
    await pool.open(wait=True)
    try:
        jobs = await timescaledb_jobs(pool)
        async with pool.connection() as conn:
            assert await read_jobs(conn) == jobs
    finally:
        await pool.close()
    assert jobs is not None and [j.job_id for j in jobs if j.failing] == [1000]
    problems = jobs_problems(jobs)
    assert [p.code for p in problems] == [ProblemCode.TIMESCALEDB_JOBS_FAILING]
    assert "Compression Policy [1000] on events" in problems[0].detail
    assert "permission denied for table events" in problems[0].detail
    assert "Retention Policy" not in problems[0].detail  # its last run succeeded
    text = timescaledb_metrics(jobs).decode()
    assert "wgw_timescaledb_jobs_failing 1.0" in text
    assert (
        'wgw_timescaledb_job_failures_total{hypertable="events",job="Compression Policy [1000]"}'
        " 3.0" in text
    )
    assert 'wgw_timescaledb_job_failing{hypertable="events",job="Retention Policy [1001]"} 0.0' in (
        text
    )


async def test_native_variant_skips_the_job_check(db_dsn: str, pg_variant: str) -> None:
    if pg_variant != "native":
        pytest.skip("the session's server runs TimescaleDB")
    migrate(db_dsn)
    pool = make_pool(db_dsn)
    await pool.open(wait=True)
    try:
        assert await timescaledb_jobs(pool) is None
    finally:
        await pool.close()
    assert jobs_problems(None) == [] and timescaledb_metrics(None) == b""


async def test_healthz_and_metrics_name_a_failing_timescaledb_job(
    not_preloaded: PostgresServer,
) -> None:
    from gateway.api.auth import PasswordHasher
    from tests.api.conftest import PASSWORD, prepare_database, running_api

    dsn = _database(not_preloaded)
    prepare_database(dsn, PasswordHasher().hash(PASSWORD))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION timescaledb VERSION '0.0-stub'")
        conn.execute(
            "INSERT INTO timescaledb_information.stub_jobs VALUES"
            " (1002, 'Retention Policy [1002]', 'events', 'Failed', 4, 4, NULL,"
            "  'canceling statement due to lock timeout', now())"
        )
    async with running_api(dsn) as api, api.client() as client:
        health = (await client.get("/healthz")).json()
        metrics = (await client.get("/metrics")).text
    codes = {p["code"]: p["detail"] for p in health["problems"]}
    assert "Retention Policy [1002] on events" in codes["timescaledb_jobs_failing"]
    assert "lock timeout" in codes["timescaledb_jobs_failing"]
    assert "wgw_timescaledb_jobs_failing 1.0" in metrics
    assert 'wgw_timescaledb_job_failing{hypertable="events",job="Retention Policy [1002]"} 1.0' in (
        metrics
    )


async def test_on_stops_the_gateways_start_up(not_preloaded: PostgresServer) -> None:
    from gateway.config import DatabaseSettings
    from gateway.store.runtime import PostgresBackend

    dsn = _database(not_preloaded)
    backend = PostgresBackend(DatabaseSettings(dsn=dsn, timescaledb="on", connect_timeout_s=5))
    try:
        with pytest.raises(ConfigError, match=r"db\.timescaledb"):
            await backend.prepare()
    finally:
        await backend.close()
    assert _tables(dsn) == []
