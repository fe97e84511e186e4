"""kill -9 of the gateway while alarm units send SCAIP over SIP (issue 11).

Forty units send 400 messages over UDP at about 100 a second and retransmit
whatever has no final answer (RFC 3261 timer E: from 500 ms, doubling to 4 s),
as real units do. Once a third are answered the gateway is SIGKILLed and
started again on the same port and spool. Demanded: every message that got
`200 OK` before the kill is stored; in the end every message is answered and
stored exactly once, although some reached the spool, lost their answer with
the process and came again. The same once more with SIPp as the units,
reading its message trace for every 200 OK.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.embedded import free_port
from gateway.sip.message import SipError, parse
from tests.sip.client import mrq, request
from tests.sip.conftest import SipGateway, StartGateway, alarm_units, run_sipp
from tests.utils.services import count, rows, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.db, pytest.mark.slow]

UNITS = tuple(f"467100000{n:02d}" for n in range(40))
MESSAGES = 400
RATE = 100.0  # new messages a second, all units together
KILL_AFTER = MESSAGES // 3  # answered messages
_SNU = re.compile(rb"<ref>([A-Za-z0-9]+)</ref><snu>([0-9])</snu>")
_SNU_TEXT = re.compile(r"<ref>([A-Za-z0-9]+)</ref><snu>([0-9])</snu>")


@dataclass
class _Units(asyncio.DatagramProtocol):
    """All the units' side: what is in flight, what was answered and when."""

    pending: dict[str, tuple[bytes, float, float]] = field(default_factory=dict)  # ref →
    answered: dict[str, str] = field(default_factory=dict)  # ref → snu
    transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        try:
            answer = parse(data)
        except SipError:
            return
        found = _SNU.search(answer.body)
        if answer.status == 200 and found is not None:
            ref = found.group(1).decode()
            self.answered.setdefault(ref, found.group(2).decode())
            self.pending.pop(ref, None)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP port unreachable while the gateway is down: retransmission covers it

    def send(self, ref: str, data: bytes, port: int) -> None:
        assert self.transport is not None
        self.pending[ref] = (data, time.monotonic() + 0.5, 0.5)
        self.transport.sendto(data, ("127.0.0.1", port))

    def retransmit(self, port: int) -> None:
        assert self.transport is not None
        now = time.monotonic()
        for ref, (data, due, interval) in list(self.pending.items()):
            if due <= now:
                self.transport.sendto(data, ("127.0.0.1", port))
                self.pending[ref] = (data, now + min(interval * 2, 4.0), min(interval * 2, 4.0))


async def _send_through_a_crash(gateway: SipGateway) -> set[str]:
    """Send everything, kill -9 and restart midway; return the refs answered before the kill."""
    loop = asyncio.get_running_loop()
    _, units = await loop.create_datagram_endpoint(_Units, local_addr=("127.0.0.1", 0))
    port = gateway.port
    local = units.transport.get_extra_info("sockname")[1] if units.transport else 0
    before_kill: set[str] | None = None
    restart: asyncio.Future[None] | None = None
    started = time.monotonic()
    sent = 0
    deadline = started + 180
    while time.monotonic() < deadline:
        while sent < MESSAGES and sent < (time.monotonic() - started) * RATE:
            ref = f"K{sent:05d}"
            cid = UNITS[sent % len(UNITS)]
            body = mrq(ref, cid, mty="PI") if sent % 5 else mrq(ref, cid, more="<stc>0010</stc>")
            units.send(ref, request(body, port=port, local_port=local, cid=cid), port)
            sent += 1
        units.retransmit(port)
        if before_kill is None and len(units.answered) >= KILL_AFTER:
            gateway.process.kill()
            before_kill = set(units.answered)
            restart = asyncio.ensure_future(asyncio.to_thread(gateway.restart))
        if sent == MESSAGES and not units.pending and restart is not None and restart.done():
            break
        await asyncio.sleep(0.01)
    assert restart is not None and restart.done(), "the gateway was not killed and restarted"
    restart.result()
    assert gateway.port == port
    assert units.transport is not None
    units.transport.close()
    assert not units.pending, f"{len(units.pending)} messages never answered"
    assert set(units.answered.values()) == {"0"}
    assert before_kill is not None
    return before_kill


def test_kill_9_while_units_send_loses_nothing_answered_and_stores_each_once(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gateway = start_gateway(alarm_units(UNITS), port=str(free_port()))
    before_kill = asyncio.run(_send_through_a_crash(gateway))
    dsn = gateway.dsn
    wait_until(
        lambda: count(dsn, "SELECT count(DISTINCT event_id) FROM events") >= MESSAGES,
        timeout=60,
        what="every message stored",
    )
    stored = [str(e) for (e,) in rows(dsn, "SELECT event_id FROM events")]
    assert before_kill <= set(stored)  # every 200 OK before the kill was durable
    assert len(stored) == len(set(stored)) == MESSAGES  # and nothing twice
    assert gateway.process.log_text().count("SCAIP receiver on") == 2


def test_kill_9_while_sipp_sends_every_200_ok_is_stored_once(
    sipp: str, start_gateway: StartGateway, tmp_path: Path
) -> None:
    samples = tmp_path / "units.csv"
    lines = [f"S{n:05d};PI;{UNITS[n % len(UNITS)]};0003;\n" for n in range(MESSAGES)]
    samples.write_text("SEQUENTIAL\n" + "".join(lines))
    gateway = start_gateway(alarm_units(UNITS), port=str(free_port()))
    port = gateway.port
    crashed = threading.Event()

    def crash() -> None:
        # Once SIPp has had answers: kill -9, and start again on the same port and spool.
        wait_until(
            lambda: count(gateway.dsn, "SELECT count(*) FROM events") > 50,
            timeout=60,
            what="the first answers",
        )
        gateway.process.kill()
        crashed.set()
        gateway.restart()

    killer = threading.Thread(target=crash)
    killer.start()
    # 40 calls a second for 10 s; SIPp retransmits an unanswered MESSAGE up to 10 times
    # (timer E, 500 ms doubling to 4 s), longer than a restart takes.
    run = run_sipp(
        sipp,
        gateway,
        "scaip_body.xml",
        tmp_path,
        "-inf",
        str(samples),
        "-max_non_invite_retrans",
        "10",
        calls=MESSAGES,
        rate=40,
    )
    killer.join()
    assert crashed.is_set() and gateway.port == port
    assert run.returncode == 0, run.output[-2000:]  # every call ended with its 200 OK
    answered = {ref for ref, snu in _SNU_TEXT.findall(run.messages) if snu == "0"}
    assert len(answered) == MESSAGES
    dsn = gateway.dsn
    wait_until(
        lambda: count(dsn, "SELECT count(*) FROM events") >= MESSAGES,
        timeout=60,
        what="every answered message stored",
    )
    stored = [str(e) for (e,) in rows(dsn, "SELECT event_id FROM events")]
    assert sorted(stored) == sorted(answered)  # each 200 OK stored, and once
