"""Helpers for the outage and crash end-to-end tests: a stock-limit Mosquitto, recorders, load.

- ``StockMosquitto``: Mosquitto with its stock queue limits (``max_queued_messages``
  1000, ``max_inflight_messages`` 20), unlike ``gateway.embedded.MosquittoServer``
  which lifts them; ``sys_interval 1`` so ``$SYS`` figures can be sampled.
- ``BrokerStats``: samples ``$SYS/broker/store/messages/count``, retained count and
  ``publish/messages/dropped``.
- ``AlertWatcher``: every message on ``wgw/{org}/alerts/#``, with when it arrived.
- ``LiveStream``: a logged-in ``/api/stream`` read in a thread, every frame timed.
- ``HeartbeatLoad``: a steady rate of QoS 1 heartbeats from many devices (paho in
  a thread, bounded in flight), counting what the broker acknowledged.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from core.events import Family
from gateway.embedded import find_mosquitto, free_port, temp_dir, wait_for_port
from gateway.registry import DeviceRecord
from simulators.model import SimMessage
from simulators.publisher import MqttSession

Item_contra = TypeVar("Item_contra", contravariant=True)

# Only what a stock Mosquitto 2.0 needs to listen privately: no queue or
# in-flight setting, so the stock limits apply (max_queued_messages 1000,
# max_queued_bytes 0, max_inflight_messages 20). sys_interval (default 10 s)
# only makes the $SYS figures fresh enough to sample.
_STOCK_CONF = """\
listener {port} 127.0.0.1
allow_anonymous true
persistence true
persistence_location {data_dir}/
sys_interval 1
log_dest file {data_dir}/mosquitto.log
log_type error
log_type warning
log_type notice
"""

STOCK_QUEUE_LIMIT = 1000

# What Mosquitto logs when a session's queue is full and it drops messages.
DROPPING = "Outgoing messages are being dropped"


class StockMosquitto:
    """A private Mosquitto on a free port with the stock queue limits."""

    def __init__(self) -> None:
        binary = find_mosquitto()
        if binary is None:
            raise AssertionError(
                "mosquitto is not installed: run `make test` as root, or apt-get install mosquitto"
            )
        self.binary = binary
        self.base_dir = temp_dir("wgw-test-stockmq-")
        if os.geteuid() == 0:
            # Mosquitto drops root to the 'mosquitto' account, which must write here.
            self.base_dir.chmod(0o777)
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "mosquitto.log"

    def start(self) -> None:
        conf = self.base_dir / "mosquitto.conf"
        conf.write_text(_STOCK_CONF.format(port=self.port, data_dir=self.base_dir))
        text = conf.read_text()
        assert "max_queued" not in text and "max_inflight" not in text
        self._proc = subprocess.Popen(
            [str(self.binary), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for_port(self.port, 10, proc=self._proc)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def cleanup(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)
        self._proc = None
        shutil.rmtree(self.base_dir, ignore_errors=True)


def _client(port: int, name: str) -> mqtt.Client:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"{name}-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
    )
    client.connect("127.0.0.1", port)
    return client


def _wait_connected(client: mqtt.Client) -> None:
    deadline = time.monotonic() + 10
    while not client.is_connected():
        assert time.monotonic() < deadline, "no CONNACK from the broker"
        time.sleep(0.01)


class BrokerStats:
    """Samples Mosquitto's $SYS store figures once a second (sys_interval 1).

    Mosquitto 2.0 has no per-session queue figure in $SYS. The store count is
    every message the broker holds: retained ones (its own $SYS topics among
    them) plus those queued or in flight for any session. The gateway's session
    is the only one holding messages here, so ``held`` = store − retained bounds
    its queue from above (in-flight ones included).
    """

    STORE = "$SYS/broker/store/messages/count"
    RETAINED = "$SYS/broker/retained messages/count"
    DROPPED = "$SYS/broker/publish/messages/dropped"
    # Mosquitto publishes a $SYS figure only when it changed; the uptime changes
    # every interval, so its ticks show the sampling was alive all along.
    UPTIME = "$SYS/broker/uptime"

    def __init__(self, port: int) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, int] = {}
        self.samples: list[tuple[float, int]] = []  # (monotonic, held)
        self.dropped = 0
        self.ticks: list[float] = []  # monotonic time of each uptime figure
        self._client = _client(port, "wgw-test-sys")
        self._client.on_message = self._on_message
        for topic in (self.STORE, self.RETAINED, self.DROPPED, self.UPTIME):
            self._client.subscribe(topic)
        self._client.loop_start()

    def _on_message(self, client: object, userdata: object, message: mqtt.MQTTMessage) -> None:
        if message.topic == self.UPTIME:
            with self._lock:
                self.ticks.append(time.monotonic())
            return
        value = int(message.payload)
        with self._lock:
            self._latest[message.topic] = value
            if message.topic == self.DROPPED:
                self.dropped = max(self.dropped, value)
            elif self.STORE in self._latest and self.RETAINED in self._latest:
                held = self._latest[self.STORE] - self._latest[self.RETAINED]
                self.samples.append((time.monotonic(), held))

    def max_held(self, since: float = 0.0) -> int:
        with self._lock:
            return max((held for at, held in self.samples if at >= since), default=-1)

    def held_now(self) -> int | None:
        """The latest store − retained figure (None before both arrived)."""
        with self._lock:
            if self.STORE in self._latest and self.RETAINED in self._latest:
                return self._latest[self.STORE] - self._latest[self.RETAINED]
            return None

    def ticks_between(self, start: float, end: float) -> int:
        """How many $SYS intervals were seen in [start, end] (each figure unchanged or sampled)."""
        with self._lock:
            return sum(1 for at in self.ticks if start <= at <= end)

    def held_between(self, start: float, end: float) -> list[int]:
        with self._lock:
            return [held for at, held in self.samples if start <= at <= end]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@dataclass(frozen=True)
class Received:
    """One message or frame and when (time.monotonic()) the test received it."""

    at: float
    topic: str
    data: dict[str, Any]


class AlertWatcher:
    """Every alert the gateway publishes on wgw/{org}/alerts/#, with its arrival time.

    ``on_alert``, if set, is called with each one on paho's network thread, as it arrives.
    """

    def __init__(self, port: int, org: str) -> None:
        self.on_alert: Callable[[Received], None] | None = None
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = _client(port, "wgw-test-alerts")
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *args: self._subscribed.set()
        self._client.subscribe(f"wgw/{org}/alerts/#", qos=1)
        self._client.loop_start()
        assert self._subscribed.wait(10), "alert subscription not granted"

    def _on_message(self, client: object, userdata: object, message: mqtt.MQTTMessage) -> None:
        item = Received(time.monotonic(), message.topic, json.loads(message.payload))
        with self._lock:
            self.messages.append(item)
        if self.on_alert is not None:
            self.on_alert(item)

    def for_device(self, device_id: str) -> list[Received]:
        with self._lock:
            return [
                m for m in self.messages if m.data.get("alert", {}).get("device_id") == device_id
            ]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class LiveStream:
    """The console's live stream for one logged-in user, read in a thread."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.frames: list[Received] = []
        self._lock = threading.Lock()
        self._client = httpx.Client(base_url=base_url, timeout=httpx.Timeout(10.0, read=None))
        login = self._client.post(
            "/api/auth/login", json={"username": username, "password": password}
        )
        assert login.status_code == 200, login.text
        self._snapshot = threading.Event()
        self.error: BaseException | None = None
        self.ended = threading.Event()
        self._thread = threading.Thread(target=self._read, name="sse-reader", daemon=True)
        self._thread.start()
        assert self._snapshot.wait(15), f"no snapshot on /api/stream ({self.error!r})"

    def _read(self) -> None:
        try:
            with self._client.stream("GET", "/api/stream") as response:
                assert response.status_code == 200, response.read()
                event: str | None = None
                data: list[str] = []
                for line in response.iter_lines():
                    if line == "":
                        if data:
                            item = Received(
                                time.monotonic(), event or "", json.loads("".join(data))
                            )
                            with self._lock:
                                self.frames.append(item)
                            if event == "snapshot":
                                self._snapshot.set()
                        event, data = None, []
                    elif line.startswith("event:"):
                        event = line.partition(":")[2].strip()
                    elif line.startswith("data:"):
                        data.append(line.partition(":")[2].removeprefix(" "))
        except BaseException as exc:  # reported by the test, which checks ``ended``
            self.error = exc
        finally:
            self.ended.set()

    def for_device(self, device_id: str) -> list[Received]:
        with self._lock:
            return [
                f
                for f in self.frames
                if isinstance(f.data.get("alert"), dict)
                and f.data["alert"]["device_id"] == device_id
            ]

    def close(self) -> None:
        self._client.close()  # ends the stream; the reader thread then finishes
        self._thread.join(10)


def sensors(org: str, n: int, prefix: str) -> list[DeviceRecord]:
    """Supervision sensors that stay quiet: an hour between heartbeats before "no contact"."""
    return [
        DeviceRecord(
            device_id=f"{prefix}-{i:04d}",
            family=Family.SENSOR,
            org=org,
            unit=f"Lgh {i:04d}",
            area="Norr" if i % 2 else "Söder",
            heartbeat_interval_s=3600,
        )
        for i in range(n)
    ]


def device_message(device: DeviceRecord, kind: str, event_id: str, **fields: object) -> SimMessage:
    """A sensor's JSON event at QoS 1, timestamped now."""
    body = {"id": event_id, "kind": kind, "ts": datetime.now(UTC).isoformat(), **fields}
    topic = f"wgw/{device.org}/{device.family.value}/{device.device_id}/event"
    return SimMessage(topic, json.dumps(body).encode())


@dataclass
class HeartbeatLoad:
    """A steady ``rate`` of heartbeats round-robin over ``devices`` until stopped."""

    broker_url: str
    devices: Sequence[DeviceRecord]
    rate: float
    prefix: str = field(default_factory=lambda: f"hb-{uuid.uuid4().hex[:6]}")
    sent: int = 0
    late_s: float = 0.0  # the most the publisher ever fell behind its schedule
    error: BaseException | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _session: MqttSession | None = None

    def start(self) -> None:
        self._session = MqttSession(self.broker_url, client_id=f"{self.prefix}-pub")
        self._session.open()
        self._thread = threading.Thread(target=self._run, name="heartbeat-load", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self._session is not None
        try:
            t0 = time.monotonic()
            while not self._stop.is_set():
                due = t0 + self.sent / self.rate
                now = time.monotonic()
                if due > now:
                    time.sleep(due - now)
                else:
                    self.late_s = max(self.late_s, now - due)
                device = self.devices[self.sent % len(self.devices)]
                self._session.send(
                    device_message(device, "device.heartbeat", f"{self.prefix}-{self.sent}")
                )
                self.sent += 1
        except BaseException as exc:
            self.error = exc

    def stop(self) -> int:
        """Stop sending, wait for every PUBACK; the number the broker acknowledged."""
        self._stop.set()
        assert self._thread is not None and self._session is not None
        self._thread.join(30)
        self._thread = None
        if self.error is not None:
            raise AssertionError(f"heartbeat publisher failed: {self.error!r}")
        assert self._session.drain(60), "the broker did not acknowledge every heartbeat"
        report = self._session.report(0.0)
        self._session.close()
        self._session = None
        assert report.refused == 0, report
        assert report.acked == report.published == self.sent, report
        return report.acked

    def halt(self) -> None:
        """Stop without waiting for acknowledgements (cleanup after a failure)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        if self._session is not None:
            self._session.close()
            self._session = None


class Session(Protocol[Item_contra]):
    """A simulators' sending session (MQTT or SIP): bounded in flight, drained at the end."""

    def open(self) -> None: ...
    def send(self, item: Item_contra, /) -> None: ...
    def drain(self, timeout_s: float | None = None) -> bool: ...
    def close(self) -> None: ...


def send_every(
    session: Session[Item_contra], items: Sequence[Item_contra], *, timeout_s: float
) -> None:
    """Open the session, send every item as fast as its window allows, wait until all ended."""
    session.open()
    try:
        for item in items:
            session.send(item)
        assert session.drain(timeout_s), f"messages still in flight after {timeout_s:g} s"
    finally:
        session.close()


def publish_all(broker_url: str, messages: Sequence[SimMessage]) -> None:
    """Publish at QoS 1 as fast as the bounded window allows; wait for every PUBACK."""
    session = MqttSession(broker_url)
    send_every(session, messages, timeout_s=60)
    report = session.report(0.0)
    assert report.acked == len(messages) and report.refused == 0, report


class OneShotPublisher:
    """A connected QoS 1 publisher for single events whose publish time matters."""

    def __init__(self, port: int) -> None:
        self._client = _client(port, "wgw-test-dev")
        self._client.loop_start()
        _wait_connected(self._client)

    def publish(self, message: SimMessage) -> float:
        """Publish, wait for the PUBACK; return time.monotonic() just before sending."""
        at = time.monotonic()
        info = self._client.publish(message.topic, message.payload, qos=1)
        info.wait_for_publish(10)
        assert info.is_published(), f"no PUBACK for {message.topic}"
        return at

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
