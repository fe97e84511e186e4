"""A broker restart under traffic is one warning and one "reconnected" line, and traffic resumes."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Iterator

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.config import MqttSettings
from gateway.embedded import MosquittoServer
from gateway.ingest import MqttSource

pytestmark = [pytest.mark.broker, pytest.mark.slow]

ALERTS = "wgw/noise/alerts/#"


class _Devices:
    """Publishes device events with QoS 1 from a paho thread, reconnecting on its own."""

    def __init__(self, port: int, rate: float = 200.0) -> None:
        self.sent = 0
        self._port = port
        self._interval = 1 / rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="devices", daemon=True)

    def _run(self) -> None:
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="noise-devices")
        client.reconnect_delay_set(1, 1)
        client.connect_async("127.0.0.1", self._port)
        client.loop_start()
        try:
            while not self._stop.is_set():
                if client.is_connected():
                    client.publish(f"wgw/noise/alarm/dev-{self.sent % 7}/event", b"{}", qos=1)
                    self.sent += 1
                time.sleep(self._interval)
        finally:
            client.disconnect()
            client.loop_stop()

    def __enter__(self) -> _Devices:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.fixture
def alert_watcher(mosquitto: MosquittoServer) -> Iterator[list[str]]:
    """Topics of alerts that reach a subscriber with a persistent session."""
    received: list[str] = []
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="noise-alerts", clean_session=False)
    client.reconnect_delay_set(1, 1)
    client.on_connect = lambda c, *_: c.subscribe(ALERTS, qos=1)
    client.on_message = lambda _c, _u, msg: received.append(msg.topic)
    client.connect("127.0.0.1", mosquitto.port)
    client.loop_start()
    yield received
    client.disconnect()
    client.loop_stop()


async def test_a_broker_restart_is_one_warning_and_one_reconnected_line(
    mosquitto: MosquittoServer, alert_watcher: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = MqttSettings(
        port=mosquitto.port, client_id=f"wgw-noise-{uuid.uuid4().hex[:8]}", reconnect_max_s=1
    )
    received = 0
    async with MqttSource(settings, batch_max=500, linger=0.005) as source:

        async def consume() -> None:
            nonlocal received
            loop = asyncio.get_running_loop()
            async for batch in source.batches():
                received += len(batch)
                # Acknowledged a little later, as after a spool commit: some
                # PUBACKs fall due while the connection is going or gone.
                loop.call_later(0.05, source.ack, batch)

        async def alert() -> None:
            n = 0
            while True:
                n += 1
                source.publish(f"wgw/noise/alerts/a{n}", b"{}")
                await asyncio.sleep(0.1)

        tasks = [asyncio.create_task(consume()), asyncio.create_task(alert())]
        try:
            with _Devices(mosquitto.port):
                await asyncio.sleep(1.5)
                assert received > 0
                caplog.clear()
                await asyncio.to_thread(mosquitto.stop)
                await asyncio.sleep(4)
                alerts_before = len(alert_watcher)
                await asyncio.to_thread(mosquitto.start)
                after_restart = received
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline and (
                    received < after_restart + 100 or len(alert_watcher) <= alerts_before
                ):
                    await asyncio.sleep(0.1)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    assert received >= after_restart + 100, "device traffic did not resume after the restart"
    assert len(alert_watcher) > alerts_before, "alerts did not resume after the restart"
    lines = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], lines
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("MQTT broker connection lost"), lines
    reconnected = [r.getMessage() for r in caplog.records if "reconnected" in r.getMessage()]
    assert len(reconnected) == 1 and reconnected[0].startswith("reconnected to MQTT broker"), lines
    assert not [r for r in caplog.records if r.name.startswith("gmqtt")], lines
