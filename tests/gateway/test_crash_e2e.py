"""kill -9 of the gateway while its spool holds events PostgreSQL does not have (issue 8).

PostgreSQL is stopped; heartbeats and two falls from different devices are
published; the gateway acknowledges them to the broker once they are in its
spool and publishes both alerts on MQTT. Then it is SIGKILLed, PostgreSQL
comes back and the gateway restarts on the same spool directory. Only the
spool has the events at that point (the broker holds nothing for the
gateway's session), so everything stored afterwards came from the spool.

Demanded: every event stored exactly once; each fall has exactly one row in
``alerts`` and one opening transition, with the alert id published before the
crash. An alert may be published again after the restart only with the same
alert id (a consumer dedupes on it); a new id for the same fall would be a
second alarm for one fall, and fails the test.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from gateway.embedded import PostgresServer
from gateway.registry import DeviceRecord
from gateway.store import migrate
from gateway.store.devices import import_devices
from simulators.model import SimMessage
from tests.utils.faults import (
    AlertWatcher,
    BrokerStats,
    Received,
    StockMosquitto,
    device_message,
    publish_all,
    sensors,
)
from tests.utils.services import GatewayProcess, count, gateway_env, rows, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.db, pytest.mark.slow]

ORG = "vallby"
BEFORE = 500  # heartbeats stored while PostgreSQL is up
DURING = 3_000  # heartbeats published while it is down
# What the broker's store holds beyond the gateway's session when nothing is
# queued for it: the $SYS messages on their way to our sampler.
IDLE_HELD = 20
# What the gateway logs when it starts with journal entries PostgreSQL lacks.
REPLAYING = "journal entries not yet in PostgreSQL; storing them first"


@pytest.fixture
def stock_broker() -> Iterator[StockMosquitto]:
    broker = StockMosquitto()
    broker.start()
    yield broker
    broker.cleanup()


def _heartbeats(devices: list[DeviceRecord], prefix: str, n: int) -> list[SimMessage]:
    return [
        device_message(devices[i % len(devices)], "device.heartbeat", f"{prefix}-{i}")
        for i in range(n)
    ]


def _wait_until_only_the_spool_has_them(
    gateway: GatewayProcess, stats: BrokerStats, published: float
) -> None:
    """Acknowledged: the broker holds nothing for the gateway, on a fresh $SYS figure;
    and the spool holds entries PostgreSQL lacks."""
    wait_until(
        lambda: (
            stats.ticks_between(published + 0.1, time.monotonic()) >= 1
            and (stats.held_now() or 0) <= IDLE_HELD
        ),
        timeout=15,
        what=f"the broker's queue for the gateway to empty (held {stats.held_now()})",
        proc=gateway.proc,
    )
    (url,) = gateway.console_urls()
    health = httpx.get(f"{url}healthz", timeout=10).json()
    assert health["database"] is False, health
    assert health["spool"]["waiting_storage"] > 0, health


def _kill_at(gateway: GatewayProcess, device_id: str) -> Callable[[Received], None]:
    """SIGKILL the gateway the moment an alert of ``device_id`` arrives (on paho's thread)."""
    proc = gateway.proc
    assert proc is not None

    def kill(message: Received) -> None:
        if message.data.get("alert", {}).get("device_id") == device_id:
            proc.send_signal(signal.SIGKILL)

    return kill


@pytest.mark.parametrize("when", ["settled", "at_the_last_alert"])
def test_kill_9_with_events_only_in_the_spool_stores_each_once_and_raises_each_alert_once(
    when: str, own_pg: PostgresServer, stock_broker: StockMosquitto, tmp_path: Path
) -> None:
    """``settled``: killed once the broker holds nothing for the gateway and the spool's
    journal is durable. ``at_the_last_alert``: killed the moment the last fall's alert is
    on MQTT, before the journal entry recording it need be durable: the restart may
    judge that fall again, and must not raise it as a new alert."""
    dsn = own_pg.dsn
    devices = sensors(ORG, 200, "rumsensor")
    falling = (devices[17], devices[140])
    migrate(dsn)
    import_devices(dsn, devices)

    env = gateway_env(
        dsn=dsn,
        broker_port=stock_broker.port,
        client_id=f"wgw-{uuid.uuid4().hex[:8]}",
        spool_dir=tmp_path / "spool",
    )
    gateway = GatewayProcess(env, tmp_path / "gateway.log")
    stats = BrokerStats(stock_broker.port)
    alerts = AlertWatcher(stock_broker.port, ORG)
    try:
        gateway.start()
        publish_all(stock_broker.url, _heartbeats(devices, "before", BEFORE))
        wait_until(
            lambda: count(dsn, "SELECT count(*) FROM events") == BEFORE,
            timeout=30,
            what=f"{BEFORE} heartbeats stored",
            proc=gateway.proc,
        )

        own_pg.stop("immediate")
        messages = _heartbeats(devices, "during", DURING)
        # One fall in the middle, one last: the last is judged after everything else.
        falls = [
            device_message(d, "sensor.fall", f"fall-{n}", level="alarm")
            for n, d in enumerate(falling)
        ]
        messages.insert(DURING // 2, falls[0])
        messages.append(falls[1])
        if when == "at_the_last_alert":
            alerts.on_alert = _kill_at(gateway, falling[1].device_id)
        publish_all(stock_broker.url, messages)
        published = time.monotonic()

        for device in falling:

            def alerted(device_id: str = device.device_id) -> bool:
                return bool(alerts.for_device(device_id))

            wait_until(
                alerted,
                timeout=15,
                interval=0.001,
                what=f"the alert for {device.device_id} on MQTT ({gateway.log_text()[-1500:]})",
                proc=gateway.proc,
            )
        before_crash = {d.device_id: alerts.for_device(d.device_id) for d in falling}
        for device_id, seen in before_crash.items():
            assert [m.data["effect"] for m in seen] == ["AlertOpened"], (device_id, seen)
        alert_ids = {d: seen[0].data["alert"]["alert_id"] for d, seen in before_crash.items()}
        assert len(set(alert_ids.values())) == 2

        if when == "settled":
            _wait_until_only_the_spool_has_them(gateway, stats, published)
        gateway.kill()  # SIGKILL: no final sync, no drain

        gateway.kill()  # SIGKILL: no final sync, no drain (already dead if at_the_last_alert)
        alerts.on_alert = None
        alerts_before_restart = len(alerts.messages)
        own_pg.start()
        gateway.start()
        expected = BEFORE + DURING + len(falls)
        wait_until(
            lambda: count(dsn, "SELECT count(*) FROM events") >= expected,
            timeout=60,
            what=f"{expected} events stored ({gateway.log_text()[-2000:]})",
            proc=gateway.proc,
        )
        assert REPLAYING in gateway.log_text()
        time.sleep(3)  # a rule tick or two: a second alarm would show by now

        assert count(dsn, "SELECT count(*) FROM events") == expected
        distinct = "SELECT count(DISTINCT (device_id, event_id)) FROM events"
        assert count(dsn, distinct) == expected
        assert count(dsn, "SELECT count(*) FROM events WHERE kind = 'sensor.fall'") == 2
        assert count(dsn, "SELECT count(*) FROM alerts") == 2
        # After the restart an alert may come again on MQTT, but only as itself.
        again = [(m.data["effect"], m.data.get("alert", {}).get("alert_id"))
                 for m in alerts.messages[alerts_before_restart:]]  # fmt: skip
        for device in falling:
            stored = rows(
                dsn,
                "SELECT alert_id, rule_id, state, count FROM alerts WHERE device_id = %s",
                device.device_id,
            )
            # One fall, seen once: a re-judged fall is not a repeat of itself.
            assert stored == [(alert_ids[device.device_id], "fall", "open", 1)], (stored, again)
            opened = count(
                dsn,
                "SELECT count(*) FROM alert_transitions WHERE alert_id = %s AND from_state IS NULL",
                alert_ids[device.device_id],
            )
            assert opened == 1
        for message in alerts.messages[alerts_before_restart:]:
            alert = message.data.get("alert", {})
            if alert.get("device_id") in alert_ids:
                assert alert["alert_id"] == alert_ids[alert["device_id"]], message
        republished = [effect for effect, alert_id in again if alert_id in alert_ids.values()]
        rejudged = "the rules had not finished" in gateway.log_text()
        print(
            f"\n{expected} events stored once; rules re-judged spooled messages: {rejudged}; "
            f"republished after restart (same ids): {republished}"
        )
        assert gateway.stop() == 0
    finally:
        alerts.close()
        stats.close()
        gateway.kill()
