"""SIP peers for tests: SIPp (sip-tester) as the receiver, the simulators' client as units."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.errors import ServiceError
from gateway import bench
from gateway.embedded import free_port
from simulators.sip import SipReport, SipSession
from tests.utils.faults import send_every

SCENARIOS = Path(__file__).resolve().parents[1] / "sipp"


def sipp_binary() -> str:
    """The sipp executable the bench uses, or the test fails saying how to install it."""
    try:
        return bench.sipp_binary()
    except ServiceError as exc:
        pytest.fail(str(exc))


@dataclass
class Sipp:
    """A running SIPp and the port it listens on."""

    port: int
    process: subprocess.Popen[str]

    def finish(self, timeout_s: float = 60) -> tuple[int, str]:
        """Wait for SIPp to exit by itself: its exit code (0: every call as scripted), stderr."""
        _, errors = self.process.communicate(timeout=timeout_s)
        return self.process.returncode, errors


@contextmanager
def sipp_uas(
    scenario: str, *, calls: int, transport: str = "udp", extra: Sequence[str] = ()
) -> Iterator[Sipp]:
    """SIPp answering ``calls`` MESSAGEs with tests/sipp/<scenario>.xml.

    SIPp exits by itself after ``calls`` calls; its exit code says whether every one
    went as the scenario says (0), and the test checks it with ``finish``.
    """
    port = free_port()
    command = [
        sipp_binary(), "-sf", str(SCENARIOS / f"{scenario}.xml"), "-i", "127.0.0.1",
        "-p", str(port), "-t", "u1" if transport == "udp" else "t1", "-m", str(calls),
        "-nostdin", "-timeout", "60s", *extra,
    ]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_listening(port, transport, process)
        yield Sipp(port, process)
    finally:
        if process.poll() is None:
            process.terminate()
        process.communicate(timeout=30)


def _wait_listening(port: int, transport: str, process: subprocess.Popen[str]) -> None:
    flag = "-lun" if transport == "udp" else "-ltn"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"sipp exited at start ({process.returncode})")
        query = ["ss", "-H", flag, f"sport = :{port}"]
        listening = subprocess.run(query, check=False, capture_output=True)
        if listening.stdout.strip():
            return
        time.sleep(0.05)
    pytest.fail(f"sipp did not listen on {transport} port {port} within 30 s")


def send_all(url: str, bodies: Sequence[bytes]) -> SipReport:
    """Send SCAIP requests with the simulators' SIP client; its report once all have ended."""
    session = SipSession(url)
    send_every(session, bodies, timeout_s=120)
    return session.report
