"""The MQTT seam: a message source protocol, the real gmqtt-backed source and an in-memory one.

The only module that touches an MQTT client library. A source yields batches
of deliveries and is told which to acknowledge; the real source sends the QoS 1
PUBACK for a delivery only when told, i.e. after its batch is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, Self

import gmqtt
from gmqtt.mqtt.constants import MQTTv50, MQTTv311

from core.clock import Clock, SystemClock
from core.errors import ConfigError, GatewayError
from core.events import RawMessage
from gateway.config import MqttSettings

log = logging.getLogger(__name__)

# Device traffic arrives under these filters. They are deliberately wide so
# that a device publishing on a malformed topic is dead-lettered ("bad_topic")
# instead of never being heard.
DEVICE_TOPIC_FILTERS = ("wgw/#", "scaip/#")

# First wait before reconnecting; doubled per failure up to mqtt.reconnect_max_s.
_RECONNECT_INITIAL_S = 0.5

# Alert publications held while the broker connection is down or its in-flight
# window is full; the oldest go first when more pile up (they are stored anyway).
_PENDING_PUBLISH_MAX = 1_000
# Packet ids kept free of alert publications, so the SUBSCRIBE after a
# reconnect always gets one: the id pool is only the broker's Receive Maximum
# (Mosquitto's max_inflight_messages, 20 by default).
_IDS_KEPT_FREE = 2
# How soon to retry publishing held alerts while connected but the window is full.
_PUBLISH_RETRY_S = 0.05

# MQTT reason codes that mean the broker will not have us as we are: nothing
# improves by waiting, an operator must act. CONNACK 4/5 are MQTT 3.1.1's.
_REFUSALS = {
    0x86: "bad user name or password",
    0x87: "not authorised",
    4: "bad user name or password",
    5: "not authorised",
}
# DISCONNECT reason code: another client connected with our client id.
_SESSION_TAKEN_OVER = 0x8E
# How long a session takeover stays reported after the last one: the gateway
# takes its session back at once, so the two clients would otherwise flicker.
_TAKEOVER_MEMORY_S = 300.0
# Mosquitto 2.0.11 closes the old connection of a taken-over session without the
# DISCONNECT 0x8E of MQTT 5 (measured: tests/gateway/test_broker_acl.py). What
# shows then is the tug of war: the broker drops a connection it had accepted,
# the gateway gets straight back in, and is dropped again. This many such losses
# within the window count as a takeover.
_TAKEOVER_LOSSES = 3
_TAKEOVER_WINDOW_S = 60.0

# The loggers of the pinned gmqtt (a module logger each; Client passes its own
# to the connection and the package handler).
_GMQTT_LOGGERS = (
    "gmqtt",
    "gmqtt.client",
    "gmqtt.mqtt.connection",
    "gmqtt.mqtt.handler",
    "gmqtt.mqtt.package",
    "gmqtt.mqtt.protocol",
    "gmqtt.mqtt.utils",
    "gmqtt.storage",
)


class _GmqttChatter(logging.Filter):
    """Demotes gmqtt's own records below ERROR to DEBUG, and drops them unless debugging.

    gmqtt narrates every step of a lost connection at INFO and WARNING: one
    "[TRYING WRITE TO CLOSED SOCKET]" for each packet written while the socket
    closes, "[EXC: CONN LOST]" with a BrokenPipeError traceback, a line per
    reconnect attempt. A 4 s broker restart under traffic made about 1,000
    lines. MqttSource says the same in two (connection lost, reconnected), so
    these lines are for debugging only: they appear, as DEBUG, when the gmqtt
    loggers are enabled for DEBUG. gmqtt's ERRORs (an exception in one of our
    callbacks, a refused CONNACK) pass unchanged.

    A filter rather than a level on the gmqtt loggers: a logger's filters see
    only its own records, not its children's, so it sits on each of them.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return False
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


_GMQTT_FILTER = _GmqttChatter()


def quiet_gmqtt_logs() -> None:
    """Install the gmqtt chatter filter on gmqtt's loggers (idempotent)."""
    names = set(_GMQTT_LOGGERS) | {
        name for name in logging.root.manager.loggerDict if name.startswith("gmqtt.")
    }
    for name in sorted(names):
        logger = logging.getLogger(name)
        if _GMQTT_FILTER not in logger.filters:
            logger.addFilter(_GMQTT_FILTER)


@dataclass(frozen=True, slots=True)
class Delivery:
    """A raw message and the token that acknowledges it (None for QoS 0)."""

    raw: RawMessage
    token: tuple[int, int] | None


class MessageSource(Protocol):
    """Where raw messages come from: an async context manager yielding batches."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def batches(self) -> AsyncIterator[list[Delivery]]:
        """Yield batches of deliveries as they arrive."""
        ...

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge deliveries whose events are durable."""
        ...

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish a message (an alert) with QoS 1, without waiting."""
        ...

    @property
    def connected(self) -> bool:
        """Whether messages can arrive now (the broker connection is up)."""
        ...

    @property
    def refused(self) -> str | None:
        """Why the broker will not have us (bad login, session taken over), or None."""
        ...


class _Batcher:
    """Collects deliveries and hands them out in batches of at most ``batch_max``.

    A batch is handed out when it is full or ``linger`` seconds after its
    first delivery, whichever comes first.
    """

    def __init__(self, batch_max: int, linger: float) -> None:
        self._batch_max = batch_max
        self._linger = linger
        self._buffer: list[Delivery] = []
        self._any = asyncio.Event()
        self._full = asyncio.Event()

    def add(self, delivery: Delivery) -> None:
        buffer = self._buffer
        buffer.append(delivery)
        if len(buffer) == 1:
            self._any.set()
        if len(buffer) >= self._batch_max:
            self._full.set()

    async def next_batch(self) -> list[Delivery]:
        while not self._buffer:
            self._any.clear()
            await self._any.wait()
        if len(self._buffer) < self._batch_max:
            self._full.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self._linger)
        batch = self._buffer[: self._batch_max]
        del self._buffer[: self._batch_max]
        return batch


class MemorySource:
    """An in-memory source for tests: feed raw messages, see which were acknowledged."""

    def __init__(self, *, batch_max: int = 1000, linger: float = 0.005) -> None:
        self._batcher = _Batcher(batch_max, linger)
        self._next_token = 0
        self.acked: list[tuple[int, int]] = []
        self.published: list[tuple[str, bytes]] = []

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    def feed(self, messages: Iterable[RawMessage]) -> None:
        """Queue messages as if the broker had delivered them with QoS 1."""
        for raw in messages:
            self._next_token += 1
            self._batcher.add(Delivery(raw, (0, self._next_token)))

    async def batches(self) -> AsyncIterator[list[Delivery]]:
        """Yield fed messages in batches."""
        while True:
            yield await self._batcher.next_batch()

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Record acknowledgements."""
        self.acked.extend(d.token for d in deliveries if d.token is not None)

    def publish(self, topic: str, payload: bytes) -> None:
        """Record a publication."""
        self.published.append((topic, payload))

    @property
    def connected(self) -> bool:
        """Always: memory has no connection to lose."""
        return True

    @property
    def refused(self) -> str | None:
        """Never: memory has no broker to refuse us."""
        return None


class MqttSource:
    """Receives device traffic from the broker with QoS 1 and a persistent session.

    The QoS 1 PUBACK is sent only from ``ack``. gmqtt acknowledges either at
    once or after an ``on_message`` coroutine per message finishes; both cost
    more than the whole rest of the pipeline (measured: 38,000 msg/s with a
    coroutine per message against 81,000 msg/s with the packet hook below).
    So ingest replaces the handler's QoS 1 packet hook with a plain function
    and sends PUBACKs itself. gmqtt is pinned to the version this was written
    against, and the hook's presence is checked at start.
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        batch_max: int,
        linger: float,
        clock: Clock | None = None,
        topic_filters: Sequence[str] = DEVICE_TOPIC_FILTERS,
    ) -> None:
        self._settings = settings
        self._clock = clock or SystemClock()
        self._batcher = _Batcher(batch_max, linger)
        self._filters = tuple(
            f"$share/{settings.share_group}/{f}" if settings.share_group else f
            for f in topic_filters
        )
        # Bumped on every (dis)connect: a PUBACK for a packet id of an earlier
        # connection must never be sent on a later one, where that id may
        # already name another message. The broker redelivers those instead.
        self._generation = 0
        self._connected = asyncio.Event()
        self._client: Any = None
        self._closing = False
        self._pending: deque[tuple[str, bytes]] = deque(maxlen=_PENDING_PUBLISH_MAX)
        self._publish_retry: asyncio.TimerHandle | None = None
        self._dropped_publishes = 0
        self._ever_connected = False
        self._lost_at: float | None = None
        self._stamp_tick = -1
        self._stamp = self._clock.now()
        self._refused: str | None = None  # the broker's CONNACK refusal, until a CONNACK 0
        self._taken_over_at: float | None = None
        self._losses: deque[float] = deque(maxlen=_TAKEOVER_LOSSES)
        self._ssl: ssl.SSLContext | bool = False
        self._retry_task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        quiet_gmqtt_logs()
        self._ssl = tls_context(self._settings) or False
        client = gmqtt.Client(
            self._settings.client_id,
            clean_session=False,
            session_expiry_interval=self._settings.session_expiry_s,
            receive_maximum=self._settings.receive_maximum,
        )
        handler = client._package_handler
        if not hasattr(handler, "_handle_qos_1_publish_packet") or not hasattr(
            handler, "_send_puback"
        ):
            raise GatewayError(
                "the installed gmqtt lacks the QoS 1 hooks ingest relies on; "
                "install the version pinned in pyproject.toml"
            )
        handler._handle_qos_1_publish_packet = self._on_qos1
        handler._handle_connack_packet = self._watch_connack(handler._handle_connack_packet)
        client.on_message = self._on_qos0
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        if self._settings.username:
            client.set_auth_credentials(self._settings.username, self._settings.password)
        client.set_config({"reconnect_retries": -1, "reconnect_delay": _RECONNECT_INITIAL_S})
        self._client = client
        await self._connect_first()
        return self

    async def _connect_first(self) -> None:
        delay = _RECONNECT_INITIAL_S
        version = MQTTv50 if self._settings.protocol == 5 else MQTTv311
        where = f"{self._settings.host}:{self._settings.port}"
        while True:
            try:
                await self._client.connect(
                    self._settings.host,
                    self._settings.port,
                    ssl=self._ssl,
                    keepalive=self._settings.keepalive_s,
                    version=version,
                )
                return
            except (OSError, gmqtt.mqtt.handler.MQTTConnectError) as exc:
                if self._refused is None:  # a refusal has logged its own ERROR
                    log.warning(
                        "MQTT broker at %s unreachable (%s); retrying in %.1f s", where, exc, delay
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._settings.reconnect_max_s)

    async def __aexit__(self, *exc_info: object) -> None:
        self._closing = True
        self._generation += 1
        if self._publish_retry is not None:
            self._publish_retry.cancel()
        if self._retry_task is not None:
            self._retry_task.cancel()
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.disconnect()

    @property
    def connected(self) -> bool:
        """Whether the broker connection is up now."""
        return self._connected.is_set()

    @property
    def refused(self) -> str | None:
        """Why the broker will not have us now, or took our session lately; None if neither."""
        if self._refused is not None:
            return self._refused
        if (
            self._taken_over_at is not None
            and time.monotonic() - self._taken_over_at < _TAKEOVER_MEMORY_S
        ):
            return (
                f"another client connected with the gateway's client id "
                f"{self._settings.client_id!r} and took its session over"
            )
        return None

    def _watch_connack(self, original: Any) -> Any:
        def handle(cmd: int, packet: bytes) -> None:
            result = struct.unpack("!BB", packet[:2])[1] if len(packet) >= 2 else 0
            if result in _REFUSALS:
                self._on_refused(result)
            elif result == 0 and self._refused is not None:
                log.info("the MQTT broker accepts the gateway's login again")
                self._refused = None
            original(cmd, packet)
            if result in _REFUSALS and self._ever_connected and not self._closing:
                # gmqtt gives up on a permanent refusal; keep trying (slowly) so that a
                # fixed password file or ACL is picked up without restarting the gateway.
                self._retry_refused()

        return handle

    def _on_refused(self, result: int) -> None:
        reason = f"the broker refused the gateway's login: {_REFUSALS[result]} (0x{result:02X})"
        if self._refused != reason:
            log.error(
                "%s. Nothing is received until this is fixed: check mqtt.username and "
                "mqtt.password against the broker's password file and ACL "
                "(wgw broker-config writes both), then reload the broker",
                reason,
            )
        self._refused = reason

    def _retry_refused(self) -> None:
        if self._retry_task is not None and not self._retry_task.done():
            return

        async def retry() -> None:
            await asyncio.sleep(self._settings.reconnect_max_s)
            await self._connect_first()

        self._retry_task = asyncio.get_running_loop().create_task(retry(), name="mqtt-refused")

    def _on_connect(self, client: Any, flags: int, rc: int, properties: Any) -> None:
        self._generation += 1
        self._connected.set()
        client.set_config({"reconnect_delay": _RECONNECT_INITIAL_S})
        if not flags:
            # A fresh session: gmqtt has dropped its unacknowledged publications
            # but not freed their packet ids, which would leak out of the small
            # pool with every session lost. Nothing is in flight on this session.
            client._package_handler.id_generator._used_ids.clear()
        if self._settings.protocol == 5:
            # Retain handling 1: retained statuses come only with a new subscription,
            # not again on every reconnect of our persistent session (no duplicates).
            # No local: our own alert publications are not device traffic.
            options = {"no_local": True, "retain_handling_options": 1}
        else:
            options = {}  # MQTT 3.1.1 has no subscription options
        client.subscribe([gmqtt.Subscription(f, qos=1, **options) for f in self._filters])
        if not self._ever_connected:
            self._ever_connected = True
            log.info("connected to MQTT broker (session present: %s)", bool(flags))
        else:
            # The one line of a reconnect; it still contains "connected to MQTT broker".
            down = time.monotonic() - self._lost_at if self._lost_at is not None else 0.0
            dropped, self._dropped_publishes = self._dropped_publishes, 0
            log.info(
                "reconnected to MQTT broker after %.1f s (session present: %s%s)",
                down,
                bool(flags),
                f"; {dropped} alert publications dropped meanwhile" if dropped else "",
            )
        self._lost_at = None
        self._flush_publishes()

    def _on_disconnect(self, client: Any, packet: Any, exc: BaseException | None = None) -> None:
        self._generation += 1
        self._connected.clear()
        if self._closing:
            return
        now = time.monotonic()
        if self._lost_at is None:  # the connection was up: the broker or the network dropped it
            self._losses.append(now)
        said = isinstance(packet, bytes | bytearray) and packet[:1] == bytes([_SESSION_TAKEN_OVER])
        tug_of_war = len(self._losses) == _TAKEOVER_LOSSES and (
            now - self._losses[0] <= _TAKEOVER_WINDOW_S
        )
        if said or tug_of_war:
            if self.refused is None:
                log.error(
                    "the MQTT broker disconnected the gateway: session taken over (%s) by "
                    "another client with client id %r. Events meant for the gateway may go to "
                    "that client and be lost: stop it, give each gateway process its own "
                    "mqtt.client_id and account, and have the broker tie client ids to logins "
                    "(use_username_as_clientid, deploy/mosquitto-tls.conf)",
                    "reason 0x8E"
                    if said
                    else f"dropped {_TAKEOVER_LOSSES} times in a row right after reconnecting",
                    self._settings.client_id,
                )
            self._taken_over_at = now
            self._losses.clear()
        # Back off: each disconnect doubles the delay of gmqtt's reconnect loop.
        delay = min(client.reconnect_delay * 2, self._settings.reconnect_max_s)
        client.set_config({"reconnect_delay": delay})
        if self._lost_at is None:  # one warning per outage, however it goes on
            self._lost_at = time.monotonic()
            log.warning("MQTT broker connection lost; reconnecting in %.1f s", delay)

    def _on_qos1(
        self, mid: int, payload: bytes, topic: str | bytes, properties: dict[str, Any]
    ) -> None:
        self._batcher.add(
            Delivery(
                RawMessage(
                    _topic_text(topic), payload, self._received_at(), bool(properties.get("retain"))
                ),
                (self._generation, mid),
            )
        )

    def _on_qos0(
        self, client: Any, topic: str | bytes, payload: bytes, qos: int, properties: dict[str, Any]
    ) -> None:
        self._batcher.add(
            Delivery(
                RawMessage(
                    _topic_text(topic), payload, self._received_at(), bool(properties.get("retain"))
                ),
                None,
            )
        )

    def _received_at(self) -> datetime:
        # Messages arriving within the same millisecond share one timestamp
        # object: a datetime per message costs time and, with 100,000 devices
        # remembered by the rules engine, megabytes.
        tick = time.monotonic_ns() // 1_000_000
        if tick != self._stamp_tick:
            self._stamp_tick = tick
            self._stamp = self._clock.now()
        return self._stamp

    async def batches(self) -> AsyncIterator[list[Delivery]]:
        """Yield received deliveries in batches."""
        while True:
            yield await self._batcher.next_batch()

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Send PUBACKs, in arrival order, for deliveries of the current connection."""
        # gmqtt's own flag turns false as soon as the socket starts closing,
        # before on_disconnect runs: a PUBACK then would only be a
        # "write to closed socket". The broker redelivers those messages.
        if not self._connected.is_set() or not self._client.is_connected:
            return
        handler = self._client._package_handler
        generation = self._generation
        for delivery in deliveries:
            token = delivery.token
            if token is not None and token[0] == generation:
                handler._send_puback(token[1])

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish with QoS 1: now if the connection has room, else once it has.

        Held publications wait in a bounded queue (the oldest are dropped when
        it is full, and counted in the "reconnected" line): the alert is stored
        with its batch and shown in the console either way. Once handed to
        gmqtt, a publication is resent by it after a reconnect.
        """
        if len(self._pending) == self._pending.maxlen:
            self._dropped_publishes += 1
        self._pending.append((topic, payload))
        self._flush_publishes()

    def _flush_publishes(self) -> None:
        client = self._client
        if self._closing or client is None:
            return
        if not self._connected.is_set() or not client.is_connected:
            return  # _on_connect flushes
        ids = client._package_handler.id_generator
        while self._pending and ids._max - 1 - len(ids._used_ids) > _IDS_KEPT_FREE:
            topic, payload = self._pending.popleft()
            try:
                client.publish(topic, payload, qos=1)
            except Exception as exc:  # gmqtt's own errors: translate, keep the rest going
                self._dropped_publishes += 1
                log.warning("could not publish on %s: %r", topic, exc)
        if self._pending and self._publish_retry is None:
            # The broker's in-flight window is full: try again once PUBACKs arrive.
            self._publish_retry = asyncio.get_running_loop().call_later(
                _PUBLISH_RETRY_S, self._retry_publishes
            )

    def _retry_publishes(self) -> None:
        self._publish_retry = None
        self._flush_publishes()


def tls_context(settings: MqttSettings) -> ssl.SSLContext | None:
    """The TLS context for the broker (CA, optional client certificate, hostname checked)."""
    if settings.tls_ca_file is None:
        return None
    try:
        context = ssl.create_default_context(cafile=str(settings.tls_ca_file))
        if settings.tls_cert_file is not None and settings.tls_key_file is not None:
            context.load_cert_chain(str(settings.tls_cert_file), str(settings.tls_key_file))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"mqtt.tls_*: cannot load the TLS files: {exc}") from exc
    # create_default_context checks the broker's certificate and its name (mqtt.host).
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    return context


def _topic_text(topic: str | bytes) -> str:
    # gmqtt hands over bytes when a topic is not valid UTF-8; keep it readable.
    return topic if isinstance(topic, str) else topic.decode("utf-8", "replace")
