"""A real `wgw serve` with its SCAIP receiver, PostgreSQL and Mosquitto, and SIPp to drive it."""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from core.events import Family
from gateway.embedded import MosquittoServer
from gateway.registry import DeviceRecord
from gateway.store import migrate
from gateway.store.devices import import_devices
from tests.sip.client import UdpUnit
from tests.utils.services import GatewayProcess, gateway_env, wait_until
from tests.utils.sipp_peer import sipp_binary

ORG = "vallby"
SIPP_DIR = Path(__file__).resolve().parents[1] / "sipp"
# The controller ids of tests/sipp/alarms.csv, one unit each.
UNITS = tuple(f"4670000000{n}" for n in range(1, 7))
_LISTENING = re.compile(r"SCAIP receiver on udp\+tcp [0-9.]+:([0-9]+)")


def alarm_units(
    ids: Sequence[str] = UNITS,
    *,
    reply: Literal["body", "message"] | None = None,
    ha1: str | None = None,
) -> list[DeviceRecord]:
    """Social-alarm registry entries for these controller ids."""
    return [
        DeviceRecord(
            device_id=cid,
            family=Family.ALARM,
            org=ORG,
            unit=f"lgh-{cid[-2:]}",
            heartbeat_interval_s=120,
            scaip_reply=reply,
            sip_ha1=ha1,
        )
        for cid in ids
    ]


@dataclass
class SipGateway:
    """A running gateway with the SCAIP receiver on ``port`` (UDP and TCP)."""

    dsn: str
    process: GatewayProcess
    port: int
    log: Path

    def restart(self) -> None:
        """Start it again (after a kill) and learn the receiver's new port."""
        before = len(_LISTENING.findall(self.process.log_text())) if self.log.exists() else 0
        self.process.start()
        wait_until(
            lambda: len(_LISTENING.findall(self.process.log_text())) > before,
            timeout=60,
            what="the SCAIP receiver to listen",
            proc=self.process.proc,
        )
        self.port = int(_LISTENING.findall(self.process.log_text())[-1])


StartGateway = Callable[..., SipGateway]


@pytest.fixture
def sipp() -> str:
    """The SIPp binary (Debian sip-tester)."""
    return sipp_binary()


@pytest.fixture
def start_gateway(
    db_dsn: str, mosquitto: MosquittoServer, tmp_path: Path
) -> Iterator[StartGateway]:
    """Start `wgw serve` with [scaip] on a free port and the given registry entries."""
    started: list[GatewayProcess] = []

    def start(devices: Sequence[DeviceRecord], **scaip: str) -> SipGateway:
        migrate(db_dsn)
        import_devices(db_dsn, devices)
        extra = {"WGW_SCAIP__HOST": "127.0.0.1", "WGW_SCAIP__PORT": "0"}
        extra |= {f"WGW_SCAIP__{k.upper()}": v for k, v in scaip.items()}
        env = gateway_env(
            dsn=db_dsn,
            broker_port=mosquitto.port,
            client_id=f"wgw-{uuid.uuid4().hex[:8]}",
            spool_dir=tmp_path / "spool",
            **extra,
        )
        log = tmp_path / "gateway.log"
        process = GatewayProcess(env, log)
        started.append(process)
        gateway = SipGateway(db_dsn, process, 0, log)
        gateway.restart()
        return gateway

    yield start
    for process in started:
        if process.proc is not None:
            # A clean SIGTERM stop with the receiver running is part of every test.
            assert process.stop() == 0, process.log_text()[-2000:]


@pytest.fixture
def unit_and_gateway(start_gateway: StartGateway) -> Iterator[tuple[UdpUnit, SipGateway]]:
    """A gateway with the units of UNITS registered, and one unit's UDP socket to it."""
    gateway = start_gateway(alarm_units())
    unit = UdpUnit(gateway.port)
    yield unit, gateway
    unit.close()


@dataclass
class SippRun:
    """What one SIPp run did: its exit code and every message it sent and received."""

    returncode: int
    output: str
    messages: str

    def received_bodies(self) -> list[str]:
        """The bodies of what SIPp received, in order."""
        return re.findall(r"(<\?xml[^\n]*?<mrs>.*?</mrs>)", self.messages)


def run_sipp(
    sipp: str,
    gateway: SipGateway,
    scenario: str,
    tmp_path: Path,
    *args: str,
    transport: str = "u1",
    calls: int = 6,
    rate: int = 20,
) -> SippRun:
    """Run one SIPp scenario of tests/sipp against the gateway until ``calls`` calls ended."""
    trace = tmp_path / f"sipp-{uuid.uuid4().hex[:6]}.log"
    command = [
        sipp,
        f"127.0.0.1:{gateway.port}",
        "-sf",
        str(SIPP_DIR / scenario),
        "-t",
        transport,
        "-m",
        str(calls),
        "-r",
        str(rate),
        "-i",
        "127.0.0.1",
        "-p",
        "0",
        "-trace_msg",
        "-message_file",
        str(trace),
        "-nostdin",
        "-timeout",
        "60s",
        "-timeout_error",
        *args,
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path
    )
    messages = trace.read_text(errors="replace") if trace.exists() else ""
    return SippRun(done.returncode, done.stdout + done.stderr, messages)
