"""Publish simulated traffic with QoS 1, losing nothing when the broker restarts mid-stream.

How nothing is lost: the client keeps a persistent session (clean start off, a
session expiry), paho keeps every QoS 1 message until its PUBACK arrives and, after
its network thread has reconnected (with back-off), sends the unacknowledged ones
again with the DUP flag. We bound the unacknowledged messages to a window (at most
``MAX_IN_FLIGHT`` and never above the broker's Receive Maximum), so packet ids
(which wrap at 65,535) are never reused while in flight, and wait for every PUBACK
before reporting. A resend may duplicate a message the broker had already taken;
the gateway's idempotency key makes that harmless.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from core.errors import GatewayError
from simulators.model import Plan, SimMessage
from simulators.render import BRIDGE_TOPIC_PREFIX
from simulators.sip import SipReport, SipSession

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 1_000
# Long enough to outlive a broker restart; the session is ended on a clean close.
SESSION_EXPIRY_S = 3_600
KEEPALIVE_S = 30
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 8
# How long without any PUBACK (or connection) before giving up.
STALL_TIMEOUT_S = 120.0
# The gateway refuses device times further ahead than this (clock_skew).
GATEWAY_FUTURE_SKEW_S = 300

_DEFAULT_PORTS = {"mqtt": 1883, "tcp": 1883, "mqtts": 8883, "ssl": 8883}
_TLS_SCHEMES = frozenset({"mqtts", "ssl"})


class PublishError(GatewayError):
    """The broker could not be reached, refused us, or stopped acknowledging."""


@dataclass(frozen=True, slots=True)
class PublishReport:
    """What a publishing run achieved."""

    published: int  # messages handed to the client
    acked: int  # PUBACKs received (one per message, however often it was resent)
    elapsed_s: float
    refused: int = 0  # PUBACKs with a failure reason code (the broker did not take it)
    reconnects: int = 0
    sip: SipReport | None = None  # the SCAIP requests sent as SIP MESSAGE, if any were


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where the broker is, parsed from mqtt://[user[:password]@]host[:port]."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False


def parse_broker_url(url: str) -> BrokerAddress:
    """Parse a broker URL (mqtt, tcp, mqtts or ssl scheme)."""
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"broker URL {url!r} is not mqtt://host[:port] (or mqtts://)")
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError as exc:
        raise ValueError(f"broker URL {url!r} has an invalid port") from exc
    return BrokerAddress(
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=parts.scheme in _TLS_SCHEMES,
    )


class Client(Protocol):
    """The part of paho's client the session uses (a seam for tests)."""

    on_connect: Any
    on_disconnect: Any
    on_publish: Any

    def publish(
        self, topic: str, payload: bytes, qos: int = ..., retain: bool = ...
    ) -> mqtt.MQTTMessageInfo:
        """Queue a message."""
        ...

    def loop_start(self) -> MQTTErrorCode:
        """Start the network thread."""
        ...

    def loop_stop(self) -> MQTTErrorCode:
        """Stop the network thread."""
        ...

    def disconnect(
        self, reasoncode: ReasonCode | None = ..., properties: Properties | None = ...
    ) -> MQTTErrorCode:
        """Say goodbye to the broker."""
        ...


class MqttSession:
    """One paho client: persistent session, bounded window of unacknowledged messages."""

    def __init__(
        self,
        broker_url: str,
        *,
        client_id: str | None = None,
        protocol: int = 5,
        max_in_flight: int = MAX_IN_FLIGHT,
        stall_timeout_s: float = STALL_TIMEOUT_S,
    ) -> None:
        if protocol not in (4, 5):
            raise ValueError("protocol must be 4 (MQTT 3.1.1) or 5")
        if not 1 <= max_in_flight < 65_535:
            raise ValueError("max_in_flight must be between 1 and 65,534")
        self.address = parse_broker_url(broker_url)
        self.client_id = client_id or f"wgw-sim-{uuid.uuid4().hex[:12]}"
        self._protocol = protocol
        self._max_in_flight = max_in_flight
        self._stall_s = stall_timeout_s
        self._cond = threading.Condition()
        self._window = max_in_flight
        self._published = 0
        self._acked = 0
        self._refused = 0
        self._connects = 0
        self._connected = False
        self._last_progress = time.monotonic()
        self._refusal: str | None = None
        self._client: Client = self._make_client()

    def _make_client(self) -> Client:
        version = mqtt.MQTTv5 if self._protocol == 5 else mqtt.MQTTv311
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=version,
            # MQTT 3.1.1 keeps the session through clean_session; v5 through clean_start.
            clean_session=None if version == mqtt.MQTTv5 else False,
        )
        # paho's own window must not hold back what ours lets through.
        client.max_inflight_messages_set(self._max_in_flight)
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        if self.address.username is not None:
            client.username_pw_set(self.address.username, self.address.password)
        if self.address.tls:
            client.tls_set()
        where = (self.address.host, self.address.port, KEEPALIVE_S)
        if version == mqtt.MQTTv5:
            # paho's Properties constructor carries no annotations.
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = SESSION_EXPIRY_S
            client.connect_async(*where, clean_start=False, properties=properties)
        else:
            client.connect_async(*where)
        return client

    @property
    def published(self) -> int:
        """Messages handed to the client so far."""
        return self._published

    @property
    def acked(self) -> int:
        """PUBACKs received so far."""
        return self._acked

    def report(self, elapsed_s: float) -> PublishReport:
        """The counts so far as a report."""
        with self._cond:
            return PublishReport(
                published=self._published,
                acked=self._acked,
                elapsed_s=elapsed_s,
                refused=self._refused,
                reconnects=max(0, self._connects - 1),
            )

    def open(self) -> None:
        """Start the network thread (which connects and reconnects) and wait for the broker."""
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.loop_start()
        with self._cond:
            self._last_progress = time.monotonic()
            while not self._connected:
                self._wait("connect")

    def send(self, message: SimMessage) -> None:
        """Publish one message, first waiting while the window of unacknowledged ones is full."""
        with self._cond:
            while self._published - self._acked >= self._window:
                self._wait("acknowledge")
            self._published += 1
        # Outside our lock: paho calls on_publish holding its own lock, so holding ours
        # here could deadlock. Counting before publishing keeps an early PUBACK in order.
        info = self._client.publish(
            message.topic, message.payload, qos=message.qos, retain=message.retain
        )
        # NO_CONN is fine: paho keeps the message and sends it once reconnected.
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise PublishError(f"paho refused to queue a message: {mqtt.error_string(info.rc)}")

    def drain(self, timeout_s: float | None = None) -> bool:
        """Wait for every PUBACK; with a timeout, return False instead of waiting longer."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while self._acked < self._published:
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                self._wait("acknowledge")
        return True

    def close(self) -> None:
        """Disconnect cleanly, ending the broker-side session, and stop the network thread."""
        if self._protocol == 5:
            properties = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = 0
            self._client.disconnect(properties=properties)
        else:
            self._client.disconnect()
        self._client.loop_stop()

    def _wait(self, what: str) -> None:
        # Called holding the condition; raises once nothing has moved for the stall timeout.
        remaining = self._last_progress + self._stall_s - time.monotonic()
        if remaining <= 0:
            where = f"{self.address.host}:{self.address.port}"
            if self._refusal is not None:
                raise PublishError(f"broker at {where} refused the connection: {self._refusal}")
            state = "connected" if self._connected else "not connected"
            raise PublishError(
                f"broker at {where} did not {what} for {self._stall_s:.0f} s ({state}; "
                f"{self._published - self._acked} messages unacknowledged)"
            )
        self._cond.wait(min(remaining, 1.0))

    def _on_connect(
        self,
        client: object,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            with self._cond:
                self._refusal = str(reason)
                self._cond.notify_all()
            log.warning("broker refused the connection: %s", reason)
            return
        receive_maximum = getattr(properties, "ReceiveMaximum", None)
        with self._cond:
            self._connects += 1
            self._connected = True
            self._refusal = None
            self._last_progress = time.monotonic()
            if receive_maximum:
                self._window = min(self._max_in_flight, receive_maximum)
            unacked = self._published - self._acked
            self._cond.notify_all()
        log.info(
            "connected to %s:%s (session present: %s, window %d, %d unacknowledged to resend)",
            self.address.host,
            self.address.port,
            flags.session_present,
            self._window,
            unacked,
        )

    def _on_disconnect(
        self,
        client: object,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._cond:
            self._connected = False
            unacked = self._published - self._acked
        if reason.is_failure:
            log.warning(
                "lost the broker (%s); reconnecting, %d messages await their PUBACK",
                reason,
                unacked,
            )

    def _on_publish(
        self,
        client: object,
        userdata: object,
        mid: int,
        reason: ReasonCode,
        properties: Properties,
    ) -> None:
        with self._cond:
            self._acked += 1
            if reason.is_failure:
                self._refused += 1
            self._last_progress = time.monotonic()
            self._cond.notify_all()
        if reason.is_failure:
            log.warning("broker did not accept message %d: %s", mid, reason)


class Sessions:
    """Where simulated traffic goes: the broker, and SCAIP over SIP when a receiver is given.

    With a SIP receiver, what a SIP bridge would have put on ``scaip/{org}/mrq`` goes
    to the receiver as the unit itself sends it, a SIP MESSAGE; everything else
    (JSON events, SCAIP on the device's own topic, statuses) stays on MQTT.
    """

    def __init__(self, mqtt_session: MqttSession, sip: SipSession | None) -> None:
        self.mqtt = mqtt_session
        self.sip = sip

    def send(self, message: SimMessage) -> None:
        """Send one message the way its device does."""
        if self.sip is not None and message.topic.startswith(BRIDGE_TOPIC_PREFIX):
            self.sip.send(message.payload)
        else:
            self.mqtt.send(message)

    def drain(self, timeout_s: float | None = None) -> bool:
        """Wait for every PUBACK and every SIP transaction; False if the timeout came first."""
        drained = self.mqtt.drain(timeout_s)
        return (self.sip is None or self.sip.drain(timeout_s)) and drained

    def report(self, elapsed_s: float) -> PublishReport:
        """The counts so far, MQTT and SIP."""
        report = self.mqtt.report(elapsed_s)
        if self.sip is None:
            return report
        return replace(report, sip=self.sip.report)

    @property
    def unfinished(self) -> int:
        """MQTT messages without their PUBACK plus SIP transactions not yet ended."""
        sip = 0 if self.sip is None else self.sip.report.sent - len(self.sip.report.latencies_s)
        return self.mqtt.published - self.mqtt.acked + sip


@contextmanager
def open_session(
    broker_url: str,
    *,
    client_id: str | None = None,
    protocol: int = 5,
    scaip_sip: str | None = None,
) -> Iterator[Sessions]:
    """Open sessions (MQTT, and SIP to ``scaip_sip`` if given), closed however the block ends."""
    session = MqttSession(broker_url, client_id=client_id, protocol=protocol)
    sip = None if scaip_sip is None else SipSession(scaip_sip)
    try:
        session.open()
        if sip is not None:
            sip.open()
        yield Sessions(session, sip)
    finally:
        if sip is not None:
            sip.close()
        session.close()


def publish(
    plan: Plan,
    broker_url: str,
    *,
    rate: float | None = None,
    client_id: str | None = None,
    realtime: bool = False,
    protocol: int = 5,
    scaip_sip: str | None = None,
) -> PublishReport:
    """Publish a plan with QoS 1 and wait for every PUBACK; ``rate`` caps messages/s overall.

    With ``scaip_sip`` (udp://host:port or tcp://host:port) the bridged SCAIP requests
    go to that receiver as SIP MESSAGE instead, and the run waits for their replies too.
    """
    if rate is not None and rate <= 0:
        raise ValueError("rate must be positive (or None for as fast as possible)")
    _warn_if_ahead(plan, realtime)
    started = time.monotonic()
    sessions = open_session(broker_url, client_id=client_id, protocol=protocol, scaip_sip=scaip_sip)
    with sessions as session:
        t0 = time.monotonic()
        for index, message in enumerate(plan.messages):
            due = t0 + index / rate if rate is not None else t0
            if realtime:
                due = max(due, t0 + message.offset_s)
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            session.send(message)
        session.drain()
        return session.report(time.monotonic() - started)


def _warn_if_ahead(plan: Plan, realtime: bool) -> None:
    if realtime:
        return
    ahead = (plan.end - datetime.now(UTC)).total_seconds()
    if ahead > GATEWAY_FUTURE_SKEW_S:
        log.warning(
            "plan %r ends %s ahead of now; published at full speed its later events will be "
            "refused as clock_skew. Build it with end=now, or publish with realtime=True.",
            plan.scenario,
            timedelta(seconds=round(ahead)),
        )
