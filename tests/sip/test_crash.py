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
from pathlib import Path

import pytest

from gateway.embedded import free_port
from simulators.sip import SipClient, SipTarget
from tests.sip.client import mrq
from tests.sip.conftest import SipGateway, StartGateway, alarm_units, run_sipp
from tests.utils.services import count, rows, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.db, pytest.mark.slow]

UNITS = tuple(f"467100000{n:02d}" for n in range(40))
MESSAGES = 400
RATE = 100.0  # new messages a second, all units together
KILL_AFTER = MESSAGES // 3  # answered messages
_SNU_TEXT = re.compile(r"<ref>([A-Za-z0-9]+)</ref><snu>([0-9])</snu>")


async def _send_through_a_crash(gateway: SipGateway) -> set[str]:
    """Send everything, kill -9 and restart midway; return the refs answered before the kill."""
    port = gateway.port
    # The simulators' client retransmits as units do (timer E); its timer F is made longer
    # than a restart of the gateway can take on a loaded machine.
    units = SipClient(SipTarget("udp", "127.0.0.1", port), reply_timeout_s=170.0)
    await units.open()
    answered: dict[str, int | None] = {}  # ref → the <mrs> snu, as each transaction ends
    unanswered: list[str] = []  # refs whose transaction ended with no 200 OK

    async def one(ref: str, body: bytes) -> None:
        outcome = await units.send(body)
        if outcome.status == 200:
            answered[ref] = outcome.snu
        else:
            unanswered.append(ref)

    sending: list[asyncio.Task[None]] = []
    before_kill: set[str] | None = None
    restart: asyncio.Future[None] | None = None
    started = time.monotonic()
    deadline = started + 180
    try:
        while time.monotonic() < deadline:
            while len(sending) < MESSAGES and len(sending) < (time.monotonic() - started) * RATE:
                n = len(sending)
                ref, cid = f"K{n:05d}", UNITS[n % len(UNITS)]
                body = mrq(ref, cid, mty="PI") if n % 5 else mrq(ref, cid, more="<stc>0010</stc>")
                sending.append(asyncio.create_task(one(ref, body)))
            if before_kill is None and len(answered) >= KILL_AFTER:
                gateway.process.kill()
                before_kill = set(answered)
                restart = asyncio.ensure_future(asyncio.to_thread(gateway.restart))
            if len(sending) == MESSAGES and all(t.done() for t in sending):
                break
            await asyncio.sleep(0.01)
        assert restart is not None, "the gateway was not killed and restarted"
        await restart
    finally:
        for task in sending:
            task.cancel()
        await units.aclose()
    assert gateway.port == port
    assert not unanswered, f"{len(unanswered)} messages never answered 200: {unanswered[:5]}"
    assert len(answered) == MESSAGES and set(answered.values()) == {0}
    assert before_kill is not None
    return before_kill


def _stored_once(dsn: str, refs: set[str]) -> set[str]:
    """Wait until every ref is stored, check each is stored once and nothing else is; the refs."""
    wait_until(
        lambda: count(dsn, "SELECT count(DISTINCT event_id) FROM events") >= len(refs),
        timeout=60,
        what="every answered message stored",
    )
    stored = [str(e) for (e,) in rows(dsn, "SELECT event_id FROM events")]
    assert sorted(stored) == sorted(refs)  # each 200 OK stored, and once
    return set(stored)


def test_kill_9_while_units_send_loses_nothing_answered_and_stores_each_once(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gateway = start_gateway(alarm_units(UNITS), port=str(free_port()))
    before_kill = asyncio.run(_send_through_a_crash(gateway))
    stored = _stored_once(gateway.dsn, {f"K{n:05d}" for n in range(MESSAGES)})
    assert before_kill and before_kill <= stored  # every 200 OK before the kill was durable
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
    _stored_once(gateway.dsn, answered)
