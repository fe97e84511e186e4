"""The publisher's own logic against a fake paho client: window, stalls, refusals, order."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from simulators import PublishError, SimMessage, build_plan, demo_registry, publish
from simulators import publisher as publisher_module
from simulators.publisher import BrokerAddress, Client, MqttSession, parse_broker_url


def properties(packet: int, **values: int) -> Properties:
    props = Properties(packet)  # type: ignore[no-untyped-call]
    for name, value in values.items():
        setattr(props, name, value)
    return props


class FakeClient:
    """Stands in for paho: records publishes, acknowledges when the test says so."""

    def __init__(
        self, *, receive_maximum: int | None = None, refuse: bool = False, autoack: bool = False
    ) -> None:
        self.on_connect: Any = None
        self.on_disconnect: Any = None
        self.on_publish: Any = None
        self.sent: list[SimMessage] = []
        self.acked = 0
        self.closed = False
        self._receive_maximum = receive_maximum
        self._refuse = refuse
        self._autoack = autoack
        self._lock = threading.Lock()

    def loop_start(self) -> MQTTErrorCode:
        extra = {} if self._receive_maximum is None else {"ReceiveMaximum": self._receive_maximum}
        reason = ReasonCode(PacketTypes.CONNACK, "Not authorized" if self._refuse else "Success")
        flags = mqtt.ConnectFlags(session_present=False)
        self.on_connect(self, None, flags, reason, properties(PacketTypes.CONNACK, **extra))
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def publish(
        self, topic: str, payload: bytes, qos: int = 0, retain: bool = False
    ) -> mqtt.MQTTMessageInfo:
        with self._lock:
            self.sent.append(SimMessage(topic, payload, qos=qos, retain=retain))
            info = mqtt.MQTTMessageInfo(len(self.sent))
        info.rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        if self._autoack:
            self.ack(1)
        return info

    def ack(self, count: int, reason: str = "Success") -> None:
        for _ in range(count):
            self.acked += 1
            code = ReasonCode(PacketTypes.PUBACK, reason)
            self.on_publish(self, None, self.acked, code, properties(PacketTypes.PUBACK))

    def loop_stop(self) -> MQTTErrorCode:
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def disconnect(
        self, reasoncode: ReasonCode | None = None, properties: Properties | None = None
    ) -> MQTTErrorCode:
        self.closed = True
        return MQTTErrorCode.MQTT_ERR_SUCCESS


class FakeSession(MqttSession):
    def __init__(self, client: FakeClient, **kwargs: Any) -> None:
        self._fake = client
        super().__init__("mqtt://127.0.0.1:1883", **kwargs)

    def _make_client(self) -> Client:
        return self._fake


def eventually(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.002)


def test_unacknowledged_messages_never_exceed_the_brokers_receive_maximum() -> None:
    fake = FakeClient(receive_maximum=3)
    session = FakeSession(fake)
    session.open()

    def send_all() -> None:
        for i in range(10):
            session.send(SimMessage("t", bytes([i])))

    sender = threading.Thread(target=send_all)
    sender.start()
    while fake.acked < 10:
        eventually(lambda: len(fake.sent) == min(fake.acked + 3, 10))
        time.sleep(0.01)  # give a misbehaving sender the chance to overrun the window
        assert len(fake.sent) - fake.acked <= 3
        fake.ack(1)
    sender.join()
    assert session.drain(timeout_s=1)
    report = session.report(elapsed_s=0.0)
    assert (report.published, report.acked, report.refused) == (10, 10, 0)
    session.close()
    assert fake.closed


def test_a_broker_that_stops_acknowledging_is_an_error_not_a_hang() -> None:
    session = FakeSession(FakeClient(receive_maximum=2), stall_timeout_s=0.2)
    session.open()
    session.send(SimMessage("t", b"1"))
    session.send(SimMessage("t", b"2"))
    with pytest.raises(PublishError, match=r"did not acknowledge .* 2 messages unacknowledged"):
        session.send(SimMessage("t", b"3"))


def test_drain_with_a_timeout_reports_what_is_still_missing() -> None:
    fake = FakeClient()
    session = FakeSession(fake)
    session.open()
    session.send(SimMessage("t", b"1"))
    assert not session.drain(timeout_s=0.05)
    fake.ack(1)
    assert session.drain(timeout_s=0.05)


def test_a_refused_connection_names_the_reason() -> None:
    session = FakeSession(FakeClient(refuse=True), stall_timeout_s=0.2)
    with pytest.raises(PublishError, match="refused the connection: Not authorized"):
        session.open()


def test_a_puback_with_a_failure_code_is_counted_as_refused() -> None:
    fake = FakeClient()
    session = FakeSession(fake)
    session.open()
    session.send(SimMessage("t", b"1"))
    fake.ack(1, reason="Quota exceeded")
    assert session.report(0.0).refused == 1


def test_publish_sends_the_plan_in_order_and_waits_for_every_acknowledgement(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeClient(autoack=True)
    monkeypatch.setattr(publisher_module, "MqttSession", lambda *a, **k: FakeSession(fake))
    plan = build_plan(
        "device_silent", devices=demo_registry(20, seed=1), seed=1, end=datetime.now(UTC)
    )
    report = publish(plan, "mqtt://127.0.0.1:1883")
    assert fake.sent == [
        SimMessage(m.topic, m.payload, qos=1, retain=m.retain) for m in plan.messages
    ]
    assert report.published == report.acked == len(plan.messages)
    assert any(m.retain for m in fake.sent)


def test_a_rate_below_zero_is_refused() -> None:
    plan = build_plan("fall", devices=demo_registry(8, seed=1), seed=1, end=datetime.now(UTC))
    with pytest.raises(ValueError, match="rate"):
        publish(plan, "mqtt://127.0.0.1:1883", rate=-5)


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("mqtt://127.0.0.1:1883", BrokerAddress("127.0.0.1", 1883)),
        ("mqtt://broker.example", BrokerAddress("broker.example", 1883)),
        ("tcp://[::1]:18830", BrokerAddress("::1", 18830)),
        (
            "mqtts://sim:p%40ss@broker.example",
            BrokerAddress("broker.example", 8883, "sim", "p@ss", tls=True),
        ),
    ],
)
def test_broker_urls(url: str, address: BrokerAddress) -> None:
    assert parse_broker_url(url) == address


@pytest.mark.parametrize("url", ["http://host", "127.0.0.1:1883", "mqtt://", "mqtt://h:99999"])
def test_bad_broker_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="broker URL"):
        parse_broker_url(url)
