"""Test helpers that run real services and the gateway as a separate process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import psycopg

from core.rows import DeadLetter, StoredRow, WriteResult
from gateway.journal import make_entry
from gateway.store import PostgresSink
from rules.work import AlertWork

REPO = Path(__file__).resolve().parents[2]

# What `wgw serve` logs once its API listens (gateway/api/server.py).
_CONSOLE_LINE = re.compile(r"console and API at (http://\S+/)")


def gateway_env(
    *, dsn: str, broker_port: int, client_id: str, spool_dir: Path, **extra: str
) -> dict[str, str]:
    """Environment for a `wgw serve` subprocess pointed at the test's services and spool."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WGW_")}
    env.update(
        {
            "WGW_DB__DSN": dsn,
            "WGW_SPOOL__DIR": str(spool_dir),
            "WGW_MQTT__PORT": str(broker_port),
            "WGW_MQTT__CLIENT_ID": client_id,
            "WGW_MQTT__RECONNECT_MAX_S": "1",
            "WGW_INGEST__REGISTRY_REFRESH_S": "0.5",
            "WGW_INGEST__STORAGE_RETRY_S": "0.2",
            # Any free port: several gateways run side by side in the suite.
            "WGW_API__PORT": "0",
            "WGW_API__SECURE_COOKIES": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


class GatewayProcess:
    """`wgw serve` in a child process, so a test can SIGKILL it like a crash would."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self._env = env
        self._log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the gateway and wait until it reports that it is ingesting."""
        with self._log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "serve"],
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
        # Restarts append to the same log: wait for this start's own line.
        connected_before = self._log_path.read_bytes().count(b"connected to MQTT broker")
        wait_until(
            lambda: (
                self._log_path.read_bytes().count(b"connected to MQTT broker") > connected_before
            ),
            timeout=30,
            what="gateway to connect",
            proc=self.proc,
        )

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, no final flush."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> int:
        """SIGTERM and wait; return the exit code."""
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        self.proc = None
        return code

    def log_text(self) -> str:
        """What the gateway printed so far."""
        return self._log_path.read_text(errors="replace")

    def console_urls(self) -> list[str]:
        """The console addresses logged so far, one per start that got its API up, oldest first."""
        return _CONSOLE_LINE.findall(self.log_text())


def wait_until(
    predicate: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    proc: subprocess.Popen[bytes] | None = None,
    interval: float = 0.05,
) -> None:
    """Poll ``predicate`` until true; fail with ``what`` if it does not become true in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited ({proc.returncode}) while waiting for {what}")
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def scalar(dsn: str, query: str, *params: object) -> object:
    """Run a one-value query."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query.encode(), params or None).fetchone()
        return None if row is None else row[0]


def count(dsn: str, query: str, *params: object) -> int:
    """Run a query whose one value is a count."""
    value = scalar(dsn, query, *params)
    assert isinstance(value, int), value
    return value


def counts(dsn: str, query: str) -> Counter[str]:
    """Run a ``SELECT label, count(*) … GROUP BY label`` query as a Counter."""
    return Counter({str(label): int(n) for label, n in rows(dsn, query)})  # type: ignore[call-overload]


def rows(dsn: str, query: str, *params: object) -> list[tuple[object, ...]]:
    """Run a query and return all rows."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(query.encode(), params or None).fetchall()


class EntryWriter:
    """Writes rows as one journal entry through the PostgreSQL sink, as storage does."""

    def __init__(self, dsn: str) -> None:
        self.sink = PostgresSink(dsn)

    async def write(
        self,
        rows: Sequence[StoredRow],
        dead: Sequence[DeadLetter] = (),
        work: AlertWork | None = None,
    ) -> WriteResult:
        return await self.sink.write([make_entry(list(rows), list(dead), work)])
