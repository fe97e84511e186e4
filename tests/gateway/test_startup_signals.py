"""`wgw serve` stops on SIGTERM and SIGINT whatever start-up is waiting for (issue 8, item 7).

Before the fix, start-up with the broker unreachable ignored both signals:
`timeout 10 wgw serve` was still running 685 s later. Here the gateway is
started against a broker port nobody listens on (PostgreSQL up), and
separately against a PostgreSQL port nobody listens on; once its log shows it
is waiting for that service, and 2 s after it started, it gets the signal and
must be gone within 10 s, with exit code 0 and no traceback.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from gateway.embedded import free_port
from gateway.store import migrate
from tests.utils.services import REPO, gateway_env, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.db, pytest.mark.slow]

SIGNALS = [signal.SIGTERM, signal.SIGINT]

# What the log says while start-up waits for each service.
WAITING_FOR_DATABASE = "waiting for PostgreSQL"
WAITING_FOR_BROKER = "unreachable"  # "MQTT broker at host:port unreachable (...); retrying"


def _start(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )


def _signal_after_start_up_began(
    proc: subprocess.Popen[bytes], log_path: Path, sig: signal.Signals, *, started: float
) -> str:
    """Send ``sig`` 2 s after start; demand exit 0 within 10 s; return the whole log."""
    delay = started + 2.0 - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    assert proc.poll() is None, f"gateway ended on its own: {log_path.read_text()}"
    proc.send_signal(sig)
    sent = time.monotonic()
    try:
        code = proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        raise AssertionError(
            f"still running 10 s after {sig.name}; log:\n{log_path.read_text()[-3000:]}"
        ) from None
    took = time.monotonic() - sent
    log = log_path.read_text(errors="replace")
    assert code == 0, f"exit code {code} after {sig.name} ({took:.1f} s); log:\n{log[-3000:]}"
    assert "Traceback" not in log, log
    return log


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_start_up_waiting_for_the_broker_stops_on_signal(
    sig: signal.Signals, db_dsn: str, tmp_path: Path
) -> None:
    migrate(db_dsn)
    env = gateway_env(
        dsn=db_dsn,
        broker_port=free_port(),  # nobody listens there
        client_id=f"wgw-{uuid.uuid4().hex[:8]}",
        spool_dir=tmp_path / "spool",
    )
    log_path = tmp_path / "gateway.log"
    started = time.monotonic()
    proc = _start(env, log_path)
    try:
        # PostgreSQL answered and it is past it: now it is trying the broker.
        wait_until(
            lambda: WAITING_FOR_BROKER in log_path.read_text(errors="replace"),
            timeout=15,
            what="the gateway to try the broker",
            proc=proc,
        )
        log = _signal_after_start_up_began(proc, log_path, sig, started=started)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert "connected to MQTT broker" not in log


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_start_up_waiting_for_postgresql_stops_on_signal(
    sig: signal.Signals, tmp_path: Path
) -> None:
    env = gateway_env(
        # A PostgreSQL that is down: nothing listens on its port.
        dsn=f"postgresql://postgres@127.0.0.1:{free_port()}/postgres",
        broker_port=free_port(),
        client_id=f"wgw-{uuid.uuid4().hex[:8]}",
        spool_dir=tmp_path / "spool",
    )
    log_path = tmp_path / "gateway.log"
    started = time.monotonic()
    proc = _start(env, log_path)
    try:
        wait_until(
            lambda: WAITING_FOR_DATABASE in log_path.read_text(errors="replace"),
            timeout=15,
            what="the gateway to wait for PostgreSQL",
            proc=proc,
        )
        _signal_after_start_up_began(proc, log_path, sig, started=started)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
