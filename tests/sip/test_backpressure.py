"""A full spool: the SCAIP receiver answers 503 with Retry-After, never 200, until there is room.

In-process, on the in-memory backend with its sink set away (as PostgreSQL
down): alarms fill a 1 MiB spool; each one answered 200 OK is in the spool,
the first that does not fit gets 503, and once storage is back and the spool
drains the same unit is answered 200 again.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime

from core.clock import FrozenClock
from core.events import Family
from gateway.backend import MemoryBackend, Startup
from gateway.config import load_settings
from gateway.sip.receiver import ScaipReceiver
from rules.model import DeviceInfo
from tests.sip.client import UdpUnit, mrq
from tests.utils.gateways import running_gateway, until

CID = "46700000001"


async def test_a_full_spool_answers_503_and_200_again_once_drained() -> None:
    settings = load_settings(
        None,
        spool={"max_bytes": 1024 * 1024, "segment_bytes": 64 * 1024},
        rules={"tick_s": 60},
        scaip={"port": 0},
    )
    assert settings.scaip is not None
    backend = MemoryBackend(Startup(devices={CID: DeviceInfo("vallby", Family.ALARM, 60)}))
    backend.memory.up = False
    async with running_gateway(settings, FrozenClock(datetime.now(UTC)), backend=backend) as (
        gateway,
        _,
    ):
        receiver = ScaipReceiver(gateway, settings.scaip)
        stop = asyncio.Event()
        task = asyncio.create_task(receiver.run(stop))
        await until(receiver.ready.is_set)
        port = int(re.findall(r":([0-9]+)", receiver.listeners.addresses[0])[0])
        unit = UdpUnit(port)
        text = "<dte>" + "x" * 7_000 + "</dte>"
        answered: list[str] = []
        refused = None
        for n in range(1000):
            ref = f"FULL{n}"
            answer = await asyncio.to_thread(unit.ask, unit.message(mrq(ref, CID, more=text)))
            assert answer is not None
            if answer.status != 200:
                refused = answer
                break
            answered.append(ref)
        assert refused is not None and refused.status == 503
        assert refused.get("retry-after") == "5"
        assert answered and gateway.spool_status().bytes >= settings.spool.max_bytes
        backend.memory.up = True
        await until(lambda: gateway.spool_status().bytes < settings.spool.max_bytes * 0.5)
        again = await asyncio.to_thread(unit.ask, unit.message(mrq("AGAIN1", CID)))
        assert again is not None and again.status == 200
        await until(lambda: gateway.spool_status().waiting_storage == 0)
        stored = [
            row.split(b"\t")[2].decode()
            for e in backend.memory.entries
            for row in e.rows.splitlines()
        ]
        assert stored == [*answered, "AGAIN1"]  # every 200 OK, in order, and the refused not
        unit.close()
        stop.set()
        await task
