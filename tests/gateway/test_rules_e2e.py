"""A seeded night through real Mosquitto and PostgreSQL raises exactly the alerts it should."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import groupby

import pytest

from core.clock import FrozenClock
from gateway.config import load_settings
from gateway.embedded import MosquittoServer
from gateway.service import Gateway
from gateway.store import migrate
from gateway.store.devices import import_devices
from simulators import build_plan, demo_registry, publish
from tests.utils.services import count, counts, rows

pytestmark = [pytest.mark.broker, pytest.mark.db, pytest.mark.slow]

SEED = 20261123
NIGHT = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)  # 02:00 in Stockholm

# What the "mixed" night of this seed holds, read from its story, and the
# alert each part must raise under the default rule set:
EXPECTED_ALERTS = Counter(
    {
        ("alarm", 1): 2,  # two alarm-button calls (JSON and SCAIP), handled and reset
        ("fall", 1): 2,  # a Roommate fall (sent twice: one alert) and a SCAIP fall detector
        ("unauthorised_access", 2): 1,  # SCAIP 0107 from an access controller
        ("no_contact", 2): 3,  # three devices fall silent (too few to be an outage)
        ("not_back_in_bed", 2): 1,  # left the bed at 02:10, not back by 02:30
        ("dose_not_taken", 2): 1,  # dose due 02:05, not taken; the dispenser reports it missed
        ("power_lost", 3): 1,  # mains failure, later restored
        ("device_error", 3): 1,  # a dispenser jam
        ("battery_low", 4): 2,  # SCAIP 0016, and a lock reporting 9 % (later replaced)
        ("refill_low", 4): 1,  # a dispenser roll running low
    }
)
# Conditions the devices themselves reported over before anyone acted.
EXPECTED_CLEARED = Counter({"alarm": 2, "power_lost": 1, "battery_low": 1})


@pytest.mark.parametrize("then_silence", [False, True], ids=["night", "night-then-outage"])
async def test_a_seeded_night_raises_exactly_the_expected_alerts(
    db_dsn: str, mosquitto: MosquittoServer, then_silence: bool
) -> None:
    registry = demo_registry(120, seed=SEED)
    migrate(db_dsn)
    import_devices(db_dsn, registry)
    plan = build_plan("mixed", devices=registry, seed=SEED, start=NIGHT)
    clock = FrozenClock(NIGHT)
    settings = load_settings(
        None,
        db={"dsn": db_dsn},
        mqtt={"port": mosquitto.port, "client_id": f"wgw-{uuid.uuid4().hex[:8]}"},
        rules={"tick_s": 0.02},
    )
    gateway = Gateway(settings, clock=clock)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    async with asyncio.timeout(30):
        await gateway.ready.wait()

    # Play the night minute by minute: the gateway's clock shows each minute
    # while its messages arrive, as it would have live.
    sent = 0
    for minute, group in groupby(plan.messages, key=lambda m: int(m.offset_s // 60)):
        batch = tuple(group)
        clock.advance(NIGHT + timedelta(minutes=minute) - clock.now())
        await asyncio.to_thread(publish, dataclasses.replace(plan, messages=batch), mosquitto.url)
        sent += len(batch)
        async with asyncio.timeout(30):
            while gateway.metrics.messages < sent:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # a few ticks at this minute
    async with asyncio.timeout(30):
        while count(db_dsn, "SELECT count(*) FROM alerts") < EXPECTED_ALERTS.total():
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
    if then_silence:
        # Then the network goes: every device falls silent together.
        for _ in range(20):
            clock.advance(timedelta(minutes=1))
            await asyncio.sleep(0.05)
        async with asyncio.timeout(30):
            while count(db_dsn, "SELECT count(*) FROM incidents") < 2:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
    stop.set()
    await task

    raised = Counter(
        (str(rule), int(priority))  # type: ignore[call-overload]
        for rule, priority in rows(db_dsn, "SELECT rule_id, priority FROM alerts")
    )
    assert raised == EXPECTED_ALERTS
    cleared = counts(
        db_dsn, "SELECT rule_id, count(*) FROM alerts WHERE state = 'cleared' GROUP BY 1"
    )
    assert cleared == EXPECTED_CLEARED
    # The fall sent twice was one event, so its alert was seen once.
    assert count(db_dsn, "SELECT max(count) FROM alerts WHERE rule_id = 'fall'") == 1
    # Nothing here is late: every message arrived in its own minute.
    assert count(db_dsn, "SELECT count(*) FROM alerts WHERE late") == 0
    # The outage is one incident per organisation, not an alert per device.
    assert count(db_dsn, "SELECT count(*) FROM incidents") == (2 if then_silence else 0)
    if then_silence:
        # Every supervised device (alarms, sensors, dispensers; not locks) is in one
        # of them, except the three already reported silent on their own.
        supervised = sum(r.family.value != "lock" for r in registry)
        silent = count(db_dsn, "SELECT sum(cardinality(device_ids))::int FROM incidents")
        assert silent == supervised - EXPECTED_ALERTS[("no_contact", 2)]
