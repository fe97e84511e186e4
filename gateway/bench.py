"""`wgw bench`: client baseline, ingest, memory and console latency, on real services.

Everything runs on this machine: a private Mosquitto and PostgreSQL on free
ports, `wgw serve` as a child process, and a publisher in a process of its own
so that it does not share the GIL with the gateway or with the measurements.

    (0) baseline   a no-op gmqtt client with the gateway's QoS 1 packet hook
                   (and paho-mqtt with manual_ack) draining N queued messages
    (a) drain      `wgw serve` draining N messages the broker kept for it
    (b) sustained  publish at increasing rates until the gateway falls behind
    (c) memory     gateway RSS with many registered devices, one heartbeat each
    (d) console    alarm publish → AlertOpened on the console's live stream
                   (SSE), with background heartbeats and without
    (e) backlog    the same while the gateway drains a heartbeat backlog the
                   broker queued for it (the gateway paused meanwhile)
    (f) outage     the same while PostgreSQL is stopped under background load,
                   and how long storage takes to catch up once it is back
    (g) sip        SIPp sending SCAIP heartbeats as SIP MESSAGE over UDP to the
                   gateway's SCAIP receiver at a fixed rate: every one answered
                   and stored once, and the reply latency (MESSAGE → 200 OK)

Each gateway the bench starts gets a fresh spool directory of its own in the
bench's temporary directory. The ack rate (broker → spool) is read from the
gateway's /metrics over the drain (the acknowledged batches' sizes); the
storage rate (spool → PostgreSQL) from the rows' ``stored_at``.

Ingest latency is PostgreSQL's ``stored_at`` (``now()``, the start of the
committing transaction) minus the publish time the publisher puts in each
payload, so it leaves out the batch's own write and commit. Console latency is
the wall time a probe process reads an alert's SSE frame minus the wall time it
published the alarm that raised it; a probe alarms each device once, so its
device id finds the publish time again.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import dataclasses
import http.client
import json
import math
import multiprocessing
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http.cookies import SimpleCookie
from importlib.metadata import version
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import gmqtt
import paho.mqtt.client as paho
import psutil
from gmqtt.mqtt.constants import MQTTv50, MQTTv311
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from core.errors import ServiceError
from core.events import Family
from gateway.config import MqttSettings, load_settings
from gateway.embedded import MosquittoServer, PostgresServer, temp_dir
from gateway.ingest import DEVICE_TOPIC_FILTERS
from gateway.registry import DeviceRecord
from gateway.store import migrate
from gateway.store.bench import Database
from gateway.store.devices import import_devices

ORG = "bench"
FAMILIES = (Family.ALARM, Family.SENSOR, Family.LOCK, Family.DISPENSER)
# Devices the drain and sustained phases publish from, round robin.
BENCH_DEVICES = 1_000
GATEWAY_CLIENT_ID = "wgw-bench-gateway"
MEMORY_CLIENT_ID = "wgw-bench-memory"
CONSOLE_CLIENT_ID = "wgw-bench-console"
_CONSOLE_USER = "bench-console"
MEMORY_TARGET_MB = 150.0
DEFAULT_MESSAGES = 100_000
DEFAULT_RATES = (2_000, 5_000, 10_000, 15_000, 20_000, 30_000)
DEFAULT_DURATION_S = 10.0
DEFAULT_MEMORY_DEVICES = 100_000
QUICK_MESSAGES = 2_000
QUICK_RATES = (1_000,)
QUICK_DURATION_S = 2.0
QUICK_MEMORY_DEVICES = 2_000
# The console target is met at half the ingest target (DESIGN.md): p99 under 50 ms.
DEFAULT_CONSOLE_LOAD = 10_000
DEFAULT_CONSOLE_ALERTS = 300
DEFAULT_CONSOLE_ALERT_RATE = 20.0
QUICK_CONSOLE_LOAD = 1_000
QUICK_CONSOLE_ALERTS = 40
QUICK_CONSOLE_ALERT_RATE = 50.0
CONSOLE_TARGET_P99_MS = 50.0
# Heartbeats run this long before the first alarm, and on this long after the last,
# so every alarm meets a gateway in its steady state under load.
_CONSOLE_WARMUP_S = 1.0
_CONSOLE_TAIL_S = 1.0
# An alert not on the stream this long after the last alarm is counted lost.
_CONSOLE_LOST_AFTER_S = 10.0
# The alarm path under trouble: a fall during a backlog drain or a database outage.
BACKLOG_CLIENT_ID = "wgw-bench-backlog"
OUTAGE_CLIENT_ID = "wgw-bench-outage"
DEFAULT_BACKLOG_MESSAGES = 100_000
DEFAULT_BACKLOG_ALERTS = 100
DEFAULT_BACKLOG_ALERT_RATE = 50.0
DEFAULT_OUTAGE_S = 30.0
DEFAULT_OUTAGE_LOAD = 1_000
QUICK_BACKLOG_MESSAGES = 2_000
QUICK_BACKLOG_ALERTS = 10
QUICK_OUTAGE_S = 3.0
QUICK_OUTAGE_LOAD = 200
# While the bulk path is saturated or the database is down, p99 at most this many
# times the no-load p99 of the same run (DESIGN.md).
ALARM_TARGET_RATIO = 2.0
# What the drain reached before the spool, as a share of the gmqtt no-op baseline:
# neither the ack rate nor the storage rate may fall below it (issue 8).
DRAIN_TODAY_RATIO = 0.12
# The outage's alarms start this long after PostgreSQL stopped and end this long before
# it is back; the background load runs on this long after it is back.
_OUTAGE_SETTLE_S = 1.0
_OUTAGE_AFTER_S = 5.0
# Storage has caught up once its oldest unstored entry is younger than this.
_CAUGHT_UP_LAG_S = 1.0
_METRICS_EVERY_S = 0.1
# Messages spooled and acknowledged: the sum of the acknowledged batches' sizes.
# (wgw_messages_total counts them later, when the rules have judged them.)
ACKED_METRIC = "wgw_batch_size_messages_sum"
_API_ENV = {
    "WGW_API__ENABLED": "true",
    "WGW_API__HOST": "127.0.0.1",
    "WGW_API__PORT": "0",
    "WGW_API__SECURE_COOKIES": "false",
}
PHASES = ("baseline", "drain", "sustained", "memory", "console", "backlog", "outage", "sip")
# The gateway keeps up while it commits at least this share of the publish rate
# and has at most this many seconds of traffic still queued when publishing stops.
KEEP_UP_RATIO = 0.9
MAX_BACKLOG_S = 1.0
# Nor may the median latency of the window's last quarter exceed its first quarter's by
# more than this: growing latency at a constant rate is a growing backlog.
MAX_LATENCY_GROWTH_S = 0.25
# A publisher reaching less than this share of its target rate is the limit, not the gateway.
PUBLISHER_REACH = 0.95
# Unacknowledged publishes before the publisher waits: below the 65,535 packet ids.
_PUBLISH_WINDOW = 20_000
# Messages published per turn of the publisher's loop, so PUBACKs are read in between.
_PUBLISH_CHUNK = 1_000
_READY_LINE = b"connected to MQTT broker"
_API_LINE = re.compile(rb"console and API at http://([^/\s]+):(\d+)/")
_SESSION_EXPIRY_S = 3600
# (g) SCAIP over SIP: the issue's load test (issue 11), 2,000 MESSAGE/s over UDP for 30 s.
SIP_UNITS = 1_000
SIP_CLIENT_ID = "wgw-bench-sip"
DEFAULT_SIP_RATE = 2_000
DEFAULT_SIP_DURATION_S = 30.0
QUICK_SIP_RATE = 200
QUICK_SIP_DURATION_S = 3.0
SIP_TARGET_P99_MS = 100.0
# The sip phase's no-load baseline, on the same gateway just before the load: a trickle
# that keeps it idle, against which the loaded latency is set as a ratio.
SIP_BASELINE_RATE = 50
SIP_BASELINE_DURATION_S = 5.0
_SIPP_BUFFER_BYTES = 4 * 1024 * 1024
_SIP_LINE = re.compile(rb"SCAIP receiver on udp\+tcp ([0-9.]+):([0-9]+)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `wgw bench` options to a parser."""
    parser.add_argument(
        "--messages",
        type=int,
        help=f"backlog size for baseline and drain (default {DEFAULT_MESSAGES:,})",
    )
    parser.add_argument(
        "--rates",
        type=_rate_list,
        help="comma-separated target publish rates in msg/s for the sustained phase "
        f"(default {','.join(map(str, DEFAULT_RATES))})",
    )
    parser.add_argument(
        "--duration",
        type=float,
        help=f"seconds per sustained rate (default {DEFAULT_DURATION_S:g})",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of each measurement; figures are medians"
    )
    parser.add_argument(
        "--memory-devices",
        type=int,
        help=f"registered devices for the memory phase (default {DEFAULT_MEMORY_DEVICES:,})",
    )
    parser.add_argument("--skip-memory", action="store_true", help="leave out the memory phase")
    parser.add_argument(
        "--only",
        type=_phase_list,
        help=f"comma-separated phases to run, of {','.join(PHASES)} (default all)",
    )
    parser.add_argument(
        "--console-load",
        type=int,
        help="background heartbeats in msg/s while the console phase measures "
        f"(default {DEFAULT_CONSOLE_LOAD:,}: half the ingest target)",
    )
    parser.add_argument(
        "--console-alerts",
        type=int,
        help=f"alarms per console run, each a new alert (default {DEFAULT_CONSOLE_ALERTS})",
    )
    parser.add_argument(
        "--console-alert-rate",
        type=float,
        help=f"alarms per second in the console phase (default {DEFAULT_CONSOLE_ALERT_RATE:g})",
    )
    parser.add_argument(
        "--backlog-messages",
        type=int,
        help="heartbeats queued for the paused gateway in the backlog phase "
        f"(default {DEFAULT_BACKLOG_MESSAGES:,})",
    )
    parser.add_argument(
        "--backlog-alerts",
        type=int,
        help=f"alarms sent while the backlog drains, at {DEFAULT_BACKLOG_ALERT_RATE:g}/s "
        f"(default {DEFAULT_BACKLOG_ALERTS})",
    )
    parser.add_argument(
        "--outage-seconds",
        type=float,
        help=f"how long PostgreSQL is stopped in the outage phase (default {DEFAULT_OUTAGE_S:g})",
    )
    parser.add_argument(
        "--outage-load",
        type=int,
        help=f"background heartbeats in msg/s during the outage (default {DEFAULT_OUTAGE_LOAD:,})",
    )
    parser.add_argument(
        "--sip-rate",
        type=int,
        help=f"SIP MESSAGE/s SIPp sends in the sip phase (default {DEFAULT_SIP_RATE:,})",
    )
    parser.add_argument(
        "--sip-duration",
        type=float,
        help=f"seconds SIPp sends in the sip phase (default {DEFAULT_SIP_DURATION_S:g})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK_MESSAGES:,} messages, {QUICK_RATES[0]:,} msg/s for "
        f"{QUICK_DURATION_S:g} s, {QUICK_MEMORY_DEVICES:,} devices, {QUICK_CONSOLE_ALERTS} "
        f"console alarms at {QUICK_CONSOLE_ALERT_RATE:g}/s under {QUICK_CONSOLE_LOAD:,} msg/s, "
        f"a {QUICK_BACKLOG_MESSAGES:,}-message backlog, a {QUICK_OUTAGE_S:g} s outage under "
        f"{QUICK_OUTAGE_LOAD:,} msg/s, SIP at {QUICK_SIP_RATE:,}/s for {QUICK_SIP_DURATION_S:g} s "
        "(explicit options win)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="settings file of the gateway under test, as for `wgw serve` (WGW_* variables "
        "apply too); the bench's own broker and database replace its connection settings",
    )
    parser.add_argument(
        "--json", type=Path, default=Path("bench-results.json"), help="where to write the results"
    )


def _rate_list(text: str) -> tuple[int, ...]:
    try:
        rates = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from exc
    if not rates or min(rates) <= 0:
        raise argparse.ArgumentTypeError("rates must be positive integers")
    return tuple(sorted(rates))


def _phase_list(text: str) -> frozenset[str]:
    phases = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(phases - set(PHASES))
    if unknown or not phases:
        raise argparse.ArgumentTypeError(
            f"unknown phase(s) {', '.join(unknown) or '(none given)'}; choose from "
            f"{','.join(PHASES)}"
        )
    return phases


@dataclass(frozen=True)
class Options:
    """The bench's settings after --quick and explicit options are combined."""

    messages: int
    rates: tuple[int, ...]
    duration_s: float
    repeat: int
    memory_devices: int | None
    json_path: Path
    config: Path | None
    mqtt: MqttSettings
    phases: frozenset[str] = frozenset(PHASES)
    console_load: int = DEFAULT_CONSOLE_LOAD
    console_alerts: int = DEFAULT_CONSOLE_ALERTS
    console_alert_rate: float = DEFAULT_CONSOLE_ALERT_RATE
    backlog_messages: int = DEFAULT_BACKLOG_MESSAGES
    backlog_alerts: int = DEFAULT_BACKLOG_ALERTS
    backlog_alert_rate: float = DEFAULT_BACKLOG_ALERT_RATE
    outage_s: float = DEFAULT_OUTAGE_S
    outage_load: int = DEFAULT_OUTAGE_LOAD
    sip_rate: int = DEFAULT_SIP_RATE
    sip_duration_s: float = DEFAULT_SIP_DURATION_S


def _options(args: argparse.Namespace) -> Options:
    quick = bool(args.quick)
    repeat = max(1, int(args.repeat))
    memory = args.memory_devices or (QUICK_MEMORY_DEVICES if quick else DEFAULT_MEMORY_DEVICES)
    phases = args.only or frozenset(PHASES)
    if args.skip_memory:
        phases -= {"memory"}
    console_load = QUICK_CONSOLE_LOAD if quick else DEFAULT_CONSOLE_LOAD
    if args.console_load is not None:
        console_load = max(0, int(args.console_load))
    return Options(
        messages=args.messages or (QUICK_MESSAGES if quick else DEFAULT_MESSAGES),
        rates=args.rates or (QUICK_RATES if quick else DEFAULT_RATES),
        duration_s=args.duration or (QUICK_DURATION_S if quick else DEFAULT_DURATION_S),
        repeat=repeat,
        memory_devices=memory if "memory" in phases else None,
        json_path=args.json,
        config=args.config,
        mqtt=load_settings(args.config).mqtt,
        phases=phases,
        console_load=console_load,
        console_alerts=max(
            1, args.console_alerts or (QUICK_CONSOLE_ALERTS if quick else DEFAULT_CONSOLE_ALERTS)
        ),
        console_alert_rate=max(
            0.1,
            args.console_alert_rate
            or (QUICK_CONSOLE_ALERT_RATE if quick else DEFAULT_CONSOLE_ALERT_RATE),
        ),
        backlog_messages=max(
            1,
            args.backlog_messages
            or (QUICK_BACKLOG_MESSAGES if quick else DEFAULT_BACKLOG_MESSAGES),
        ),
        backlog_alerts=max(
            1, args.backlog_alerts or (QUICK_BACKLOG_ALERTS if quick else DEFAULT_BACKLOG_ALERTS)
        ),
        outage_s=max(2.5, args.outage_seconds or (QUICK_OUTAGE_S if quick else DEFAULT_OUTAGE_S)),
        outage_load=max(
            0,
            args.outage_load
            if args.outage_load is not None
            else (QUICK_OUTAGE_LOAD if quick else DEFAULT_OUTAGE_LOAD),
        ),
        sip_rate=max(1, args.sip_rate or (QUICK_SIP_RATE if quick else DEFAULT_SIP_RATE)),
        sip_duration_s=max(
            1.0, args.sip_duration or (QUICK_SIP_DURATION_S if quick else DEFAULT_SIP_DURATION_S)
        ),
    )


# --- Devices and payloads ---------------------------------------------------------------------


def device_ids(count: int) -> list[tuple[Family, str]]:
    """The bench's devices: families in turn, ids like ``sensor-000001``."""
    families = [FAMILIES[i % len(FAMILIES)] for i in range(count)]
    return [(family, f"{family.value}-{i:06d}") for i, family in enumerate(families)]


def heartbeat(event_id: str, ts: str, sent: float) -> bytes:
    """A heartbeat in the JSON event form (docs/payloads.md) carrying its publish time."""
    return (
        f'{{"id":"{event_id}","kind":"device.heartbeat","ts":"{ts}","battery":87,'
        f'"rssi":-67,"fw":"2.4.1","sent":{sent:.6f}}}'
    ).encode()


def sip_units(count: int) -> list[str]:
    """The sip phase's social-alarm units: SCAIP controller ids are digits only."""
    return [f"4671{i:07d}" for i in range(count)]


def _register(dsn: str, count: int) -> None:
    records = [DeviceRecord(device_id=d, family=f, org=ORG) for f, d in device_ids(count)]
    records += [
        DeviceRecord(device_id=c, family=Family.ALARM, org=ORG) for c in sip_units(SIP_UNITS)
    ]
    import_devices(dsn, records)


# --- The publisher process --------------------------------------------------------------------


@dataclass(frozen=True)
class PublishPlan:
    """What one publisher process sends: ``total`` messages, at ``rate`` per second or flat out."""

    port: int
    prefix: str
    devices: int
    total: int
    rate: float | None = None


@dataclass(frozen=True)
class PublishReport:
    """What a publisher sent and when (epoch seconds), and the CPU it used."""

    sent: int
    started: float
    finished: float
    cpu_s: float

    @property
    def rate(self) -> float:
        """Messages per second between the first and the last publish."""
        return self.sent / max(self.finished - self.started, 1e-9)


async def _publish(plan: PublishPlan, ready: Any, go: Any) -> PublishReport:
    client = gmqtt.Client(f"wgw-bench-pub-{os.getpid()}")
    # MQTT 3.1.1: no Receive Maximum from the broker to cap our packet ids below the window.
    await client.connect("127.0.0.1", plan.port, version=MQTTv311)
    topics = [
        f"wgw/{ORG}/{family.value}/{device}/event" for family, device in device_ids(plan.devices)
    ]
    # gmqtt keeps each QoS 1 publish here until its PUBACK: the in-flight count.
    inflight = client._persistent_storage
    ready.set()
    await asyncio.to_thread(go.wait)
    cpu = time.process_time()
    started = time.time()
    sent = 0
    prefix, total, rate, n_topics = plan.prefix, plan.total, plan.rate, len(topics)
    while sent < total:
        now = time.time()
        due = total if rate is None else min(total, int((now - started) * rate))
        due = min(due, sent + _PUBLISH_CHUNK)
        if due == sent:
            await asyncio.sleep(0.002)
            continue
        ts = datetime.now(UTC).isoformat(timespec="milliseconds")
        for seq in range(sent, due):
            payload = heartbeat(f"{prefix}{seq}", ts, time.time())
            client.publish(topics[seq % n_topics], payload, qos=1)
        sent = due
        if len(inflight._messages) > _PUBLISH_WINDOW:
            await inflight.wait_empty()
        else:
            await asyncio.sleep(0)
    finished = time.time()
    await inflight.wait_empty()
    await client.disconnect()
    return PublishReport(sent, started, finished, time.process_time() - cpu)


def _publisher_main(plan: PublishPlan, ready: Any, go: Any, results: Any) -> None:
    # The parent stops us; a Ctrl-C on the terminal must not print our traceback too.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    results.send(asyncio.run(_publish(plan, ready, go)))


def _run_child(
    target: Callable[[Any, Any, Any, Any], None],
    plan: object,
    what: str,
    on_start: Callable[[], None] | None,
) -> Any:
    """Start ``target(plan, ready, go, results)`` in a process; go once ready; its result."""
    ctx = multiprocessing.get_context("spawn")
    ready, go = ctx.Event(), ctx.Event()
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=target, args=(plan, ready, go, sender), daemon=True)
    proc.start()
    try:
        deadline = time.monotonic() + 60
        while not ready.wait(0.2):
            if not proc.is_alive() or time.monotonic() > deadline:
                raise ServiceError(f"{what} did not get ready (exit code {proc.exitcode})")
        if on_start is not None:
            on_start()
        go.set()
        while not receiver.poll(0.2):
            if not proc.is_alive():
                raise ServiceError(f"{what} exited with code {proc.exitcode} before reporting")
        result = receiver.recv()
        proc.join(10)
        return result
    finally:
        if proc.is_alive():
            proc.terminate()
            proc.join(5)


def publish(plan: PublishPlan, *, on_start: Callable[[], None] | None = None) -> PublishReport:
    """Run a publisher process (``on_start`` just before it sends) and wait for its PUBACKs."""
    report: PublishReport = _run_child(_publisher_main, plan, "publisher", on_start)
    return report


# --- MQTT sessions and the client baselines -------------------------------------------------


async def _open_session(port: int, client_id: str, filters: Sequence[str], expiry_s: int) -> None:
    client = gmqtt.Client(client_id, clean_session=False, session_expiry_interval=expiry_s)
    subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_subscribe(*_: object) -> None:
        if not subscribed.done():
            subscribed.set_result(None)

    client.on_subscribe = on_subscribe
    await client.connect("127.0.0.1", port, version=MQTTv50)
    client.subscribe([gmqtt.Subscription(f, qos=1, no_local=True) for f in filters])
    await asyncio.wait_for(subscribed, 10)
    await client.disconnect()


def open_session(port: int, client_id: str, filters: Sequence[str], expiry_s: int) -> None:
    """Create a persistent session subscribed to ``filters``, so the broker queues for it."""
    asyncio.run(_open_session(port, client_id, filters, expiry_s))


async def _close_session(port: int, client_id: str) -> None:
    # A clean start discards the session; expiry 0 (the default) keeps none after it.
    client = gmqtt.Client(client_id, clean_session=True)
    await client.connect("127.0.0.1", port, version=MQTTv50)
    await client.disconnect()


def close_session(port: int, client_id: str) -> None:
    """Discard a persistent session, so the broker stops queueing for it."""
    asyncio.run(_close_session(port, client_id))


@dataclass(frozen=True)
class BaselineRun:
    """One no-op drain of a queued backlog by a bare client."""

    messages: int
    received: int
    rate: float | None
    rate_from_connect: float | None


def _rate(count: int, seconds: float) -> float | None:
    return count / seconds if seconds > 0 else None


class _DrainTally:
    """Counts a no-op drain and times it from the first message (and from connect) to the last."""

    def __init__(self, expected: int, on_done: Callable[[], None]) -> None:
        self.expected = expected
        self.received = 0
        self._on_done = on_done
        self._started = self._first = self._last = 0.0

    def start(self) -> None:
        self._started = time.perf_counter()

    def hit(self) -> None:
        self.received += 1
        if self.received == 1:
            self._first = time.perf_counter()
        if self.received == self.expected:
            self._last = time.perf_counter()
            self._on_done()

    def result(self) -> BaselineRun:
        return BaselineRun(
            self.expected,
            self.received,
            _rate(self.received - 1, self._last - self._first),
            _rate(self.received, self._last - self._started),
        )


async def _gmqtt_drain(
    port: int, client_id: str, expected: int, receive_maximum: int, wait_s: float
) -> BaselineRun:
    client = gmqtt.Client(
        client_id,
        clean_session=False,
        session_expiry_interval=_SESSION_EXPIRY_S,
        receive_maximum=receive_maximum,
    )
    handler = client._package_handler
    done = asyncio.Event()
    tally = _DrainTally(expected, done.set)

    # The same hook as gateway.ingest.MqttSource, doing nothing but acknowledging.
    def on_qos1(mid: int, payload: bytes, topic: str | bytes, properties: dict[str, Any]) -> None:
        handler._send_puback(mid)
        tally.hit()

    handler._handle_qos_1_publish_packet = on_qos1
    tally.start()
    await client.connect("127.0.0.1", port, version=MQTTv50)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), wait_s)
    await client.disconnect()
    return tally.result()


def _paho_drain(
    port: int, client_id: str, expected: int, receive_maximum: int, timeout: float
) -> BaselineRun:
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5, manual_ack=True
    )
    done = threading.Event()
    tally = _DrainTally(expected, done.set)

    def on_message(c: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        c.ack(message.mid, message.qos)
        tally.hit()

    client.on_message = on_message
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = _SESSION_EXPIRY_S
    properties.ReceiveMaximum = receive_maximum
    tally.start()
    client.connect("127.0.0.1", port, clean_start=False, properties=properties)
    client.loop_start()
    try:
        done.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    return tally.result()


def run_baseline(
    port: int, library: str, messages: int, *, receive_maximum: int, run: int
) -> BaselineRun:
    """Queue messages for a fresh session, drain them with a no-op client, discard the session.

    The client announces the gateway's Receive Maximum, which bounds what the broker sends
    ahead of acknowledgements.
    """
    client_id = f"wgw-bench-baseline-{library}"
    timeout = max(60.0, messages / 1_000)
    open_session(port, client_id, ("wgw/#",), _SESSION_EXPIRY_S)
    publish(PublishPlan(port, f"b{library[0]}{run}-", BENCH_DEVICES, messages))
    if library == "gmqtt":
        result = asyncio.run(_gmqtt_drain(port, client_id, messages, receive_maximum, timeout))
    else:
        result = _paho_drain(port, client_id, messages, receive_maximum, timeout)
    close_session(port, client_id)
    if result.received != messages:
        raise ServiceError(f"{library} baseline received {result.received} of {messages} messages")
    return result


# --- The gateway process and what it uses -------------------------------------------------------


class GatewayProcess:
    """`wgw serve` as a child process pointed at the bench's services, logging to a file."""

    def __init__(
        self,
        *,
        dsn: str,
        broker_port: int,
        client_id: str,
        log_path: Path,
        config: Path | None,
        spool_root: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._command = [sys.executable, "-m", "gateway.cli", "serve"]
        if config is not None:
            self._command += ["--config", str(config)]
        # WGW_* variables override the settings file, so the connection is set here.
        self._env = dict(os.environ)
        self._env.update(
            {
                "WGW_DB__DSN": dsn,
                "WGW_MQTT__HOST": "127.0.0.1",
                "WGW_MQTT__PORT": str(broker_port),
                "WGW_MQTT__CLIENT_ID": client_id,
                "WGW_MQTT__USERNAME": "",
                "WGW_MQTT__PASSWORD": "",
                "WGW_MQTT__SHARE_GROUP": "",
                "PYTHONUNBUFFERED": "1",
            }
        )
        self._env.update(env or {})
        self._log_path = log_path
        self._spool_root = spool_root
        self._spool: Path | None = None
        self._starts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def start(self, *, same_spool: bool = False) -> psutil.Process:
        """Start the gateway on a fresh spool (or the last one again); return its process.

        A fresh spool per start: each start is a new gateway, whose earlier run has
        stored everything it spooled before it stopped.
        """
        if self._spool is None or not same_spool:
            if self._spool is not None:
                shutil.rmtree(self._spool, ignore_errors=True)
            self._starts += 1
            self._spool = self._spool_root / f"{self._log_path.stem}-spool-{self._starts}"
        # WGW_* variables win over the settings file: never the default /var/lib/wgw/spool.
        self._env["WGW_SPOOL__DIR"] = str(self._spool)
        self._log_path.write_bytes(b"")
        with self._log_path.open("ab") as log_file:
            self.started = time.time()
            # Its own session: a Ctrl-C on the terminal reaches us, and we stop it in order.
            self._proc = subprocess.Popen(
                self._command,
                env=self._env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return psutil.Process(self._proc.pid)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until the gateway has loaded its registry and connected to the broker."""
        deadline = time.monotonic() + timeout
        while _READY_LINE not in self._log_path.read_bytes():
            self.check_alive()
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"gateway not ready within {timeout:.0f} s; log:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def wait_api(self, timeout: float = 60.0) -> tuple[str, int]:
        """Wait for the line naming the API's address; return its host and port."""
        return self._wait_address(_API_LINE, "gateway API", timeout)

    def wait_scaip(self, timeout: float = 60.0) -> tuple[str, int]:
        """Wait for the line naming the SCAIP receiver's address; return its host and port."""
        return self._wait_address(_SIP_LINE, "SCAIP receiver", timeout)

    def _wait_address(self, line: re.Pattern[bytes], what: str, timeout: float) -> tuple[str, int]:
        deadline = time.monotonic() + timeout
        while (found := line.search(self._log_path.read_bytes())) is None:
            self.check_alive()
            if time.monotonic() > deadline:
                raise ServiceError(f"{what} not up within {timeout:.0f} s; log:\n{self.log_tail()}")
            time.sleep(0.05)
        return found[1].decode().strip("[]"), int(found[2])

    def pause(self) -> None:
        """Freeze the gateway (SIGSTOP): the broker queues for its session meanwhile."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused gateway go on (SIGCONT)."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def check_alive(self) -> None:
        """Raise ServiceError with the log's tail if the gateway has exited."""
        if self._proc is not None and self._proc.poll() is not None:
            raise ServiceError(
                f"gateway exited with code {self._proc.returncode}; log:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the gateway printed."""
        text = self._log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit within 30 s."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGCONT)  # a paused gateway cannot take SIGTERM
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None


def _tree_cpu(root: psutil.Process) -> dict[int, float]:
    """CPU seconds used so far by a process and each of its descendants."""
    used: dict[int, float] = {}
    with contextlib.suppress(psutil.Error):
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                used[proc.pid] = times.user + times.system
    return used


@dataclass
class Services:
    """The bench's private broker and database, and their processes for CPU accounting.

    ``postgres`` changes when the outage phase restarts the server.
    """

    port: int
    db: Database
    broker: psutil.Process
    postgres: psutil.Process
    work: Path
    pg: PostgresServer | None = None


class ResourceMonitor:
    """Over a window: CPU of gateway, broker and PostgreSQL, the machine's CPU, gateway peak RSS."""

    def __init__(self, gateway: psutil.Process, services: Services) -> None:
        self._procs = {
            "gateway": gateway,
            "broker": services.broker,
            "postgres": services.postgres,
        }
        self._gateway = gateway
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wall = 0.0
        self._cpu: dict[str, dict[int, float]] = {}
        self.peak_rss = 0
        self.cpu_percent: dict[str, float] = {}
        self.system_cpu_percent = 0.0

    def start(self) -> None:
        """Begin the window."""
        self._stop.clear()
        self.peak_rss = self._gateway.memory_info().rss
        self._cpu = {name: _tree_cpu(proc) for name, proc in self._procs.items()}
        self._wall = time.monotonic()
        psutil.cpu_percent(None)
        self._thread = threading.Thread(target=self._sample, name="bench-monitor", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            with contextlib.suppress(psutil.Error):
                self.peak_rss = max(self.peak_rss, self._gateway.memory_info().rss)

    def stop(self) -> None:
        """End the window and compute the figures."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.system_cpu_percent = psutil.cpu_percent(None)
        wall = max(time.monotonic() - self._wall, 1e-9)
        for name, proc in self._procs.items():
            before = self._cpu[name]
            used = sum(t - before.get(pid, 0.0) for pid, t in _tree_cpu(proc).items())
            self.cpu_percent[name] = 100 * used / wall
        with contextlib.suppress(psutil.Error):
            self.peak_rss = max(self.peak_rss, self._gateway.memory_info().rss)


# --- Phases -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DrainRun:
    """One backlog drain through `wgw serve`."""

    messages: int
    stored: int
    # Storage (spool → PostgreSQL): first to last commit, from the rows' stored_at.
    rate_stored: float | None
    rate_wall: float | None
    # Acknowledgement (broker → spool): messages acknowledged per second over the drain.
    rate_acked: float | None
    startup_s: float
    gateway_cpu_percent: float
    broker_cpu_percent: float
    postgres_cpu_percent: float
    system_cpu_percent: float
    gateway_peak_rss_mb: float


@dataclass(frozen=True)
class StepRun:
    """One sustained-rate step."""

    target_rate: int
    published: int
    stored: int
    achieved_rate: float
    committed_rate: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    latency_first_quarter_p50_ms: float | None
    latency_last_quarter_p50_ms: float | None
    backlog_at_end: int
    gateway_cpu_percent: float
    publisher_cpu_percent: float
    broker_cpu_percent: float
    postgres_cpu_percent: float
    system_cpu_percent: float
    gateway_peak_rss_mb: float


@dataclass(frozen=True)
class MemoryRun:
    """Gateway RSS with many registered devices."""

    devices: int
    stored: int
    rss_registry_loaded_mb: float
    rss_after_heartbeats_mb: float
    peak_rss_mb: float
    target_mb: float


def _mb(n: int) -> float:
    return n / 1_048_576


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else 1000 * seconds


def run_drain(svc: Services, gateway: GatewayProcess, messages: int, run: int) -> DrainRun:
    """Queue messages for the stopped gateway's session, start it, time until all are committed."""
    prefix = f"d{run}-"
    report = publish(PublishPlan(svc.port, prefix, BENCH_DEVICES, messages))
    proc = gateway.start()
    try:
        monitor = ResourceMonitor(proc, svc)
        monitor.start()
        wait_s = max(120.0, messages / 500)
        with MetricsPoller(gateway.wait_api) as poller:
            stored, done = svc.db.wait_for(
                prefix, report.started, messages, gateway.check_alive, timeout=wait_s
            )
        monitor.stop()
    finally:
        gateway.stop()
    acked, _ = counter_rate(poller.samples, ACKED_METRIC, messages)
    if stored != messages:
        raise ServiceError(
            f"drain: {stored} of {messages} messages stored; log:\n{gateway.log_tail()}"
        )
    count, first, last, before_last = svc.db.stored_span(prefix, report.started)
    return DrainRun(
        messages=messages,
        stored=count,
        rate_stored=_rate(before_last, last - first),
        rate_wall=_rate(messages, done - gateway.started),
        rate_acked=acked,
        startup_s=first - gateway.started,
        gateway_cpu_percent=monitor.cpu_percent["gateway"],
        broker_cpu_percent=monitor.cpu_percent["broker"],
        postgres_cpu_percent=monitor.cpu_percent["postgres"],
        system_cpu_percent=monitor.system_cpu_percent,
        gateway_peak_rss_mb=_mb(monitor.peak_rss),
    )


def run_step(
    svc: Services,
    gateway: GatewayProcess,
    proc: psutil.Process,
    *,
    rate: int,
    duration_s: float,
    run: int,
) -> StepRun:
    """Publish at ``rate`` for ``duration_s`` to the running gateway; measure until all stored."""
    prefix = f"s{rate}r{run}-"
    monitor = ResourceMonitor(proc, svc)
    plan = PublishPlan(svc.port, prefix, BENCH_DEVICES, int(rate * duration_s), float(rate))
    report = publish(plan, on_start=monitor.start)
    monitor.stop()
    stored, _ = svc.db.wait_for(
        prefix, report.started, report.sent, gateway.check_alive, timeout=max(30.0, 3 * duration_s)
    )
    lat = svc.db.latency(prefix, report.started, report.finished)
    window = report.finished - report.started
    last = lat["last_stored"] or report.finished
    return StepRun(
        target_rate=rate,
        published=report.sent,
        stored=stored,
        achieved_rate=report.rate,
        committed_rate=stored / max(last - report.started, window, 1e-9),
        latency_p50_ms=_ms(lat["p50"]),
        latency_p99_ms=_ms(lat["p99"]),
        latency_first_quarter_p50_ms=_ms(lat["first_quarter_p50"]),
        latency_last_quarter_p50_ms=_ms(lat["last_quarter_p50"]),
        backlog_at_end=int(lat["backlog"]),
        gateway_cpu_percent=monitor.cpu_percent["gateway"],
        publisher_cpu_percent=100 * report.cpu_s / max(window, 1e-9),
        broker_cpu_percent=monitor.cpu_percent["broker"],
        postgres_cpu_percent=monitor.cpu_percent["postgres"],
        system_cpu_percent=monitor.system_cpu_percent,
        gateway_peak_rss_mb=_mb(monitor.peak_rss),
    )


def run_memory(svc: Services, opts: Options, devices: int) -> MemoryRun:
    """Register ``devices`` in a database of their own; RSS after registry load and heartbeats."""
    dsn = svc.db.create_database("bench_memory")
    migrate(dsn)
    _register(dsn, devices)
    open_session(svc.port, MEMORY_CLIENT_ID, DEVICE_TOPIC_FILTERS, opts.mqtt.session_expiry_s)
    gateway = GatewayProcess(
        dsn=dsn,
        broker_port=svc.port,
        client_id=MEMORY_CLIENT_ID,
        log_path=svc.work / "memory.log",
        config=opts.config,
        spool_root=svc.work,
    )
    memory_db = Database(dsn)
    try:
        proc = gateway.start()
        gateway.wait_ready()
        loaded = proc.memory_info().rss
        monitor = ResourceMonitor(proc, svc)
        monitor.start()
        report = publish(PublishPlan(svc.port, "m-", devices, devices))
        stored, _ = memory_db.wait_for(
            "m-", report.started, devices, gateway.check_alive, timeout=max(120.0, devices / 500)
        )
        monitor.stop()
        after = proc.memory_info().rss
    finally:
        gateway.stop()
        memory_db.close()
        # The broker would otherwise go on queueing the later phases' traffic for it.
        close_session(svc.port, MEMORY_CLIENT_ID)
    if stored != devices:
        raise ServiceError(
            f"memory: {stored} of {devices} heartbeats stored; log:\n{gateway.log_tail()}"
        )
    return MemoryRun(
        devices, stored, _mb(loaded), _mb(after), _mb(monitor.peak_rss), MEMORY_TARGET_MB
    )


# --- Console latency: alarm publish → AlertOpened on the live stream ---------------------------


def console_devices(count: int) -> list[str]:
    """The console phase's alarm devices, ids like ``alarm-c000001``; each is alarmed once."""
    return [f"alarm-c{i:06d}" for i in range(count)]


def alarm(event_id: str, kind: str, sent: float) -> bytes:
    """An alarm event in the JSON event form (docs/payloads.md) carrying its publish time."""
    ts = datetime.fromtimestamp(sent, UTC).isoformat(timespec="milliseconds")
    return f'{{"id":"{event_id}","kind":"{kind}","ts":"{ts}","sent":{sent:.6f}}}'.encode()


def _alarm_topic(device: str) -> str:
    return f"wgw/{ORG}/{Family.ALARM.value}/{device}/event"


@dataclass(frozen=True)
class ProbePlan:
    """A console probe: log in, follow the live stream, alarm each device once at ``rate``."""

    mqtt_port: int
    api_host: str
    api_port: int
    username: str
    password: str
    devices: tuple[str, ...]
    rate: float
    prefix: str
    # An alert not on the stream this long after the last alarm is counted lost.
    lost_after_s: float = _CONSOLE_LOST_AFTER_S


@dataclass(frozen=True)
class ProbeReport:
    """Epoch seconds of each device's alarm publish and AlertOpened read; resets seen; trouble."""

    published: dict[str, float]
    received: dict[str, float]
    cleared: int
    error: str | None


def _login(host: str, port: int, username: str, password: str) -> str:
    """Log in to the API as the console does; return the session cookie's value."""
    from gateway.api.deps import SESSION_COOKIE

    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        body = json.dumps({"username": username, "password": password})
        conn.request("POST", "/api/auth/login", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise ServiceError(f"console login refused: HTTP {response.status}")
        cookies: SimpleCookie = SimpleCookie()
        for header in response.headers.get_all("Set-Cookie") or []:
            cookies.load(header)
    finally:
        conn.close()
    if SESSION_COOKIE not in cookies:
        raise ServiceError("console login set no session cookie")
    return cookies[SESSION_COOKIE].value


class StreamWatch:
    """Follows /api/stream over a bare connection and notes when each wanted alert change arrives.

    A bare asyncio reader rather than an HTTP client library: nothing between the
    socket and the clock reading but splitting chunks and frames.
    """

    def __init__(self, devices: Iterable[str]) -> None:
        self.wanted = frozenset(devices)
        self.opened: dict[str, float] = {}
        self.cleared: set[str] = set()
        self.snapshot = False
        self.ended = False
        # Set at every frame and at the end, for whoever waits on what the stream brought.
        self.changed = asyncio.Event()

    async def run(self, host: str, port: int, cookie: str) -> None:
        """Read the stream until it ends (or the task is cancelled)."""
        from gateway.api.deps import SESSION_COOKIE

        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(
                f"GET /api/stream HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Accept: text/event-stream\r\nCookie: {SESSION_COOKIE}={cookie}\r\n\r\n".encode()
            )
            await writer.drain()
            status = await reader.readline()
            if status.split(b" ")[1:2] != [b"200"]:
                raise ServiceError(f"live stream refused: {status.decode(errors='replace')!r}")
            chunked = False
            while (line := await reader.readline()).strip():
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "transfer-encoding" and "chunked" in value.lower():
                    chunked = True
            buffer = b""
            while data := await _read_body(reader, chunked):
                # Every frame in one read arrived together: one clock reading for all.
                at = time.time()
                *frames, buffer = (buffer + data).split(b"\n\n")
                for frame in frames:
                    self.on_frame(frame, at)
                self.changed.set()
        finally:
            self.ended = True
            self.changed.set()
            writer.close()

    def on_frame(self, frame: bytes, at: float) -> None:
        """Take one SSE frame read at ``at``: the snapshot, or a wanted device's alert change."""
        event, data = "", ""
        for line in frame.decode().split("\n"):
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data += line[5:].removeprefix(" ")
        if event == "snapshot":
            self.snapshot = True
        elif event == "alert":
            body = json.loads(data)
            device = body["alert"]["device_id"]
            if device not in self.wanted:
                return
            if body["effect"] == "AlertOpened":
                self.opened.setdefault(device, at)
            elif body["effect"] == "AlertCleared":
                self.cleared.add(device)


async def _read_body(reader: asyncio.StreamReader, chunked: bool) -> bytes:
    """The next piece of a response body; empty at its end."""
    if not chunked:
        return await reader.read(65_536)
    size_line = await reader.readline()
    try:
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return b""
        return (await reader.readexactly(size + 2))[:-2]
    except (ValueError, asyncio.IncompleteReadError):
        return b""


async def _until(done: Callable[[], bool], watch: StreamWatch, within: float) -> bool:
    """Wait until ``done`` holds, the stream ends, or ``within`` seconds pass; ``done()``."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            while not done() and not watch.ended:
                watch.changed.clear()
                await watch.changed.wait()
    return done()


def _stream_error(stream: asyncio.Task[None]) -> str | None:
    if not stream.done():
        return None
    if stream.cancelled():
        return "the live stream was cancelled"
    exc = stream.exception()
    return f"the live stream failed: {exc}" if exc is not None else "the live stream ended"


async def _probe(plan: ProbePlan, ready: Any, go: Any) -> ProbeReport:
    cookie = await asyncio.to_thread(
        _login, plan.api_host, plan.api_port, plan.username, plan.password
    )
    watch = StreamWatch(plan.devices)
    stream = asyncio.create_task(watch.run(plan.api_host, plan.api_port, cookie))
    if not await _until(lambda: watch.snapshot, watch, 30.0):
        raise ServiceError(_stream_error(stream) or "no snapshot on the live stream in 30 s")
    client = gmqtt.Client(f"wgw-bench-probe-{os.getpid()}")
    await client.connect("127.0.0.1", plan.mqtt_port, version=MQTTv311)
    inflight = client._persistent_storage
    ready.set()
    await asyncio.to_thread(go.wait)
    published: dict[str, float] = {}
    started = time.time()
    for i, device in enumerate(plan.devices):
        delay = started + i / plan.rate - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        sent = time.time()
        payload = alarm(f"{plan.prefix}a{i}", "alarm.button", sent)
        client.publish(_alarm_topic(device), payload, qos=1)
        published[device] = sent
    await _until(lambda: len(watch.opened) >= len(published), watch, plan.lost_after_s)
    received = dict(watch.opened)
    # Reset every alarm, so no alert of this run escalates while the next run is measured.
    for i, device in enumerate(plan.devices):
        payload = alarm(f"{plan.prefix}r{i}", "alarm.reset", time.time())
        client.publish(_alarm_topic(device), payload, qos=1)
    await _until(lambda: len(watch.cleared) >= len(received), watch, _CONSOLE_LOST_AFTER_S)
    await inflight.wait_empty()
    await client.disconnect()
    error = _stream_error(stream)
    stream.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await stream
    return ProbeReport(published, received, len(watch.cleared & received.keys()), error)


def _probe_main(plan: ProbePlan, ready: Any, go: Any, results: Any) -> None:
    # The parent stops us; a Ctrl-C on the terminal must not print our traceback too.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    results.send(asyncio.run(_probe(plan, ready, go)))


def probe(plan: ProbePlan, *, on_ready: Callable[[], None] | None = None) -> ProbeReport:
    """Run a console probe in its own process (``on_ready`` before it alarms); its report."""
    report: ProbeReport = _run_child(_probe_main, plan, "console probe", on_ready)
    return report


@dataclass(frozen=True)
class LatencyHistogram:
    """A scrape of the gateway's ``wgw_alert_latency_seconds``: cumulative buckets, sum, count."""

    buckets: tuple[tuple[float, float], ...]
    total: float
    count: float

    def minus(self, earlier: LatencyHistogram) -> LatencyHistogram:
        """What was observed between an earlier scrape and this one."""
        before = dict(earlier.buckets)
        return LatencyHistogram(
            tuple((le, n - before.get(le, 0.0)) for le, n in self.buckets),
            self.total - earlier.total,
            self.count - earlier.count,
        )

    @property
    def top_bound(self) -> float | None:
        """The highest finite bucket bound."""
        finite = [le for le, _ in self.buckets if not math.isinf(le)]
        return max(finite, default=None)

    def quantile(self, q: float) -> float | None:
        """Estimated as Prometheus's histogram_quantile: linear within the bucket."""
        if self.count <= 0 or not self.buckets:
            return None
        rank = q * self.buckets[-1][1]
        low, below = 0.0, 0.0
        for le, n in self.buckets:
            if n >= rank:
                if math.isinf(le):
                    return low  # above the highest bound: that bound is all we know
                return low + (le - low) * (rank - below) / max(n - below, 1e-12)
            low, below = le, n
        return low


_METRIC = "wgw_alert_latency_seconds"
_BUCKET_LINE = re.compile(rf'^{_METRIC}_bucket\{{[^}}]*le="([^"]+)"[^}}]*\}} (\S+)$', re.M)


def scrape_alert_latency(host: str, port: int) -> LatencyHistogram:
    """Read the gateway's alert-latency histogram from its /metrics."""
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        text = response.read().decode()
    finally:
        conn.close()
    if response.status != 200:
        raise ServiceError(f"/metrics answered HTTP {response.status}")
    buckets = sorted((float(le), float(n)) for le, n in _BUCKET_LINE.findall(text))
    total = re.search(rf"^{_METRIC}_sum(?:{{[^}}]*}})? (\S+)$", text, re.M)
    count = re.search(rf"^{_METRIC}_count(?:{{[^}}]*}})? (\S+)$", text, re.M)
    if not buckets or total is None or count is None:
        raise ServiceError(f"/metrics has no {_METRIC}")
    return LatencyHistogram(tuple(buckets), float(total[1]), float(count[1]))


_SAMPLE_LINE = re.compile(r"^(wgw_[a-z_]+) (\S+)$", re.M)


def parse_metrics(text: str) -> dict[str, float]:
    """The unlabelled ``wgw_*`` samples of a Prometheus text page, by name."""
    return {name: float(value) for name, value in _SAMPLE_LINE.findall(text)}


def scrape_metrics(host: str, port: int, timeout: float = 10.0) -> dict[str, float]:
    """The gateway's unlabelled counters and gauges from its /metrics."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        text = response.read().decode()
    finally:
        conn.close()
    if response.status != 200:
        raise ServiceError(f"/metrics answered HTTP {response.status}")
    return parse_metrics(text)


Sample = tuple[float, Mapping[str, float]]


class MetricsPoller:
    """Scrapes a gateway's /metrics every 0.1 s on a thread: (epoch seconds, samples).

    A scrape that fails or times out (the gateway paused, or not serving yet) is skipped.
    """

    def __init__(self, address: Callable[[], tuple[str, int]]) -> None:
        self._address = address
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-metrics", daemon=True)

    def __enter__(self) -> MetricsPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            host, port = self._address()
        except ServiceError:
            return
        while not self._stop.is_set():
            with contextlib.suppress(OSError, ServiceError, http.client.HTTPException):
                values = scrape_metrics(host, port, timeout=1.0)
                self.samples.append((time.time(), values))
            self._stop.wait(_METRICS_EVERY_S)


def counter_rate(
    samples: Sequence[Sample], name: str, target: float, *, since: float = 0.0
) -> tuple[float | None, float | None]:
    """Per second from the first sample after ``since`` to the first at ``target``; and when.

    The first sample's count is the start, so a scrape that came late costs no accuracy.
    """
    after = [(t, v[name]) for t, v in samples if t >= since and name in v]
    if not after:
        return None, None
    t0, c0 = after[0]
    for t, c in after:
        if c >= target:
            return _rate(int(c - c0), t - t0), t
    return None, None


def first_sample(
    samples: Sequence[Sample], since: float, holds: Callable[[Mapping[str, float]], bool]
) -> float | None:
    """When the first sample after ``since`` that ``holds`` was taken."""
    return next((t for t, v in samples if t >= since and holds(v)), None)


def _quantile(ordered: Sequence[float], q: float) -> float | None:
    """Linear between the closest ranks, as PostgreSQL's percentile_cont."""
    if not ordered:
        return None
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass(frozen=True)
class ConsoleRun:
    """One console run: alarms to AlertOpened on the live stream, with or without load."""

    load_target_rate: int
    load_achieved_rate: float | None
    load_published: int
    load_stored: int
    # The heartbeats' own ingest latency (stored_at − publish), as in the sustained phase:
    # whether the gateway as a whole kept up, or the alerts waited behind a backlog.
    load_latency_p50_ms: float | None
    load_latency_p99_ms: float | None
    alarms: int
    received: int
    lost: int
    cleared: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    latency_max_ms: float | None
    gateway_alerts: int
    gateway_p50_ms: float | None
    gateway_p99_ms: float | None
    gateway_mean_ms: float | None
    # The histogram's highest finite bound: an estimate at it means "at least this".
    gateway_top_bucket_ms: float | None
    gateway_cpu_percent: float
    publisher_cpu_percent: float | None
    broker_cpu_percent: float
    postgres_cpu_percent: float
    system_cpu_percent: float


@dataclass(frozen=True)
class ConsoleTarget:
    """The running gateway of the console phase: its process, API and database."""

    gateway: GatewayProcess
    proc: psutil.Process
    api_host: str
    api_port: int
    db: Database
    password: str


def run_console_step(
    svc: Services,
    target: ConsoleTarget,
    devices: Sequence[str],
    *,
    load_rate: int,
    alert_rate: float,
    tag: str,
    before_alarms: Callable[[], None] | None = None,
    extra_load_s: float = 0.0,
    lost_after_s: float = _CONSOLE_LOST_AFTER_S,
) -> tuple[ConsoleRun, ProbeReport]:
    """Alarm each device once through the running gateway under ``load_rate`` heartbeats/s.

    ``before_alarms`` runs once the load is on and the probe is ready (it makes the
    trouble the alarms are to meet); the load runs ``extra_load_s`` longer for it. The
    probe's report says what went wrong with the live stream, if it ended first.
    """
    plan = ProbePlan(
        svc.port,
        target.api_host,
        target.api_port,
        _CONSOLE_USER,
        target.password,
        tuple(devices),
        alert_rate,
        tag,
        lost_after_s,
    )
    duration = _CONSOLE_WARMUP_S + len(devices) / alert_rate + _CONSOLE_TAIL_S + extra_load_s
    load_plan = PublishPlan(
        svc.port, f"{tag}h", BENCH_DEVICES, int(load_rate * duration), float(load_rate)
    )
    monitor = ResourceMonitor(target.proc, svc)
    before = scrape_alert_latency(target.api_host, target.api_port)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="bench-load") as pool:
        loads: list[concurrent.futures.Future[PublishReport]] = []

        def start_load() -> None:
            # The heartbeats run first, so the alarms meet a gateway already under load.
            if load_rate > 0:
                started = threading.Event()
                loads.append(pool.submit(publish, load_plan, on_start=started.set))
                while not started.wait(0.1):
                    if loads[0].done():
                        loads[0].result()  # raises why the publisher failed
                time.sleep(_CONSOLE_WARMUP_S)
            if before_alarms is not None:
                before_alarms()
            monitor.start()

        report = probe(plan, on_ready=start_load)
        monitor.stop()
        load = loads[0].result() if loads else None
    after = scrape_alert_latency(target.api_host, target.api_port)
    stored = 0
    lat: dict[str, Any] = {"p50": None, "p99": None}
    if load is not None:
        stored, _ = target.db.wait_for(
            load_plan.prefix,
            load.started,
            load.sent,
            target.gateway.check_alive,
            timeout=max(30.0, 3 * duration),
        )
        lat = target.db.latency(load_plan.prefix, load.started, load.finished)
    latencies = sorted(
        report.received[d] - sent for d, sent in report.published.items() if d in report.received
    )
    seen = after.minus(before)
    run = ConsoleRun(
        load_target_rate=load_rate,
        load_achieved_rate=None if load is None else load.rate,
        load_published=0 if load is None else load.sent,
        load_stored=stored,
        load_latency_p50_ms=_ms(lat["p50"]),
        load_latency_p99_ms=_ms(lat["p99"]),
        alarms=len(report.published),
        received=len(latencies),
        lost=len(report.published) - len(latencies),
        cleared=report.cleared,
        latency_p50_ms=_ms(_quantile(latencies, 0.5)),
        latency_p95_ms=_ms(_quantile(latencies, 0.95)),
        latency_p99_ms=_ms(_quantile(latencies, 0.99)),
        latency_max_ms=_ms(latencies[-1] if latencies else None),
        gateway_alerts=int(seen.count),
        gateway_p50_ms=_ms(seen.quantile(0.5)),
        gateway_p99_ms=_ms(seen.quantile(0.99)),
        gateway_mean_ms=_ms(seen.total / seen.count if seen.count > 0 else None),
        gateway_top_bucket_ms=_ms(seen.top_bound),
        gateway_cpu_percent=monitor.cpu_percent["gateway"],
        publisher_cpu_percent=None
        if load is None
        else 100 * load.cpu_s / max(load.finished - load.started, 1e-9),
        broker_cpu_percent=monitor.cpu_percent["broker"],
        postgres_cpu_percent=monitor.cpu_percent["postgres"],
        system_cpu_percent=monitor.system_cpu_percent,
    )
    return run, report


@contextlib.contextmanager
def alarm_gateway(
    svc: Services, opts: Options, *, name: str, client_id: str, devices: Sequence[str]
) -> Iterator[ConsoleTarget]:
    """A gateway with the API on, in a database of its own, for measuring alarms to the console.

    Its own database: no rule state or open alerts from the earlier phases. The
    bench's devices heartbeat there; the alarm ``devices`` only ever alarm.
    """
    # The API's modules load only for these phases: the others need none of them.
    from gateway.api.auth import PasswordHasher
    from gateway.store.users import Role, User, save_user

    dsn = svc.db.create_database(f"bench_{name}")
    migrate(dsn)
    _register(dsn, BENCH_DEVICES)
    # A day between heartbeats: devices that only ever alarm must not raise "no contact".
    quiet = [
        DeviceRecord(device_id=d, family=Family.ALARM, org=ORG, heartbeat_interval_s=86_400)
        for d in devices
    ]
    import_devices(dsn, quiet)
    password = secrets.token_urlsafe(18)
    user = User(_CONSOLE_USER, "wgw bench", Role.OPERATOR, (ORG,))
    save_user(dsn, user=user, password_hash=PasswordHasher().hash(password))
    gateway = GatewayProcess(
        dsn=dsn,
        broker_port=svc.port,
        client_id=client_id,
        log_path=svc.work / f"{name}.log",
        config=opts.config,
        spool_root=svc.work,
        env=_API_ENV,
    )
    db = Database(dsn)
    try:
        proc = gateway.start()
        gateway.wait_ready()
        host, port = gateway.wait_api()
        yield ConsoleTarget(gateway, proc, host, port, db, password)
    finally:
        gateway.stop()
        db.close()
    # The broker would otherwise go on queueing the later phases' traffic for it.
    close_session(svc.port, client_id)


def run_console(svc: Services, opts: Options) -> dict[str, Any]:
    """Alert latency to the console's live stream, unloaded and under load, in turn."""
    loads = (0, opts.console_load) if opts.console_load > 0 else (0,)
    n = opts.console_alerts
    devices = console_devices(n * len(loads) * opts.repeat)
    runs: dict[int, list[ConsoleRun]] = {load: [] for load in loads}
    stream_errors: list[str] = []
    with alarm_gateway(
        svc, opts, name="console", client_id=CONSOLE_CLIENT_ID, devices=devices
    ) as target:
        batches = iter(devices[i : i + n] for i in range(0, len(devices), n))
        for run in range(opts.repeat):
            # Unloaded and loaded in turn, so a drift over the phase touches both alike.
            for load in loads:
                step, report = run_console_step(
                    svc,
                    target,
                    next(batches),
                    load_rate=load,
                    alert_rate=opts.console_alert_rate,
                    tag=f"c{'l' if load else 'u'}{run}",
                )
                runs[load].append(step)
                _print_console_run(step)
                if report.error is not None:
                    stream_errors.append(report.error)
                    _print(f"  STREAM: {report.error} before the probe was done")
    unloaded = _medians(runs[0])
    loaded = _medians(runs[opts.console_load]) if opts.console_load > 0 else None
    p99 = loaded["latency_p99_ms"] if loaded is not None else None
    return {
        "alerts_per_run": n,
        "alert_rate": opts.console_alert_rate,
        "load_rate": opts.console_load,
        "target_p99_ms": CONSOLE_TARGET_P99_MS,
        "unloaded": {"median": unloaded, "runs": [dataclasses.asdict(r) for r in runs[0]]},
        "loaded": None
        if loaded is None
        else {
            "median": loaded,
            "runs": [dataclasses.asdict(r) for r in runs[opts.console_load]],
        },
        "lost": sum(r.lost for rs in runs.values() for r in rs),
        "stream_errors": stream_errors,
        "ratio_p50_loaded_to_unloaded": None
        if loaded is None
        else _ratio(loaded["latency_p50_ms"], unloaded["latency_p50_ms"]),
        "ratio_p99_loaded_to_unloaded": None
        if loaded is None
        else _ratio(p99, unloaded["latency_p99_ms"]),
        "target_met": None if p99 is None else p99 < CONSOLE_TARGET_P99_MS,
    }


# --- The alarm path under trouble: a backlog to drain, a database outage ---------------------


def _alarm_latencies(
    report: ProbeReport, since: float = -math.inf, until: float = math.inf
) -> tuple[int, list[float]]:
    """Alarms published in [since, until], and the sorted latencies of those on the stream."""
    window = {d: t for d, t in report.published.items() if since <= t <= until}
    return len(window), sorted(
        report.received[d] - t for d, t in window.items() if d in report.received
    )


def _ratio_met(
    p99_ms: float | None, noload_p99_ms: float | None
) -> tuple[float | None, bool | None]:
    """p99 over the no-load p99, and whether that is within the target ratio."""
    ratio = _ratio(p99_ms, noload_p99_ms)
    return ratio, None if ratio is None else ratio <= ALARM_TARGET_RATIO


@dataclass(frozen=True)
class BacklogRun:
    """Alarms sent while the gateway drains a heartbeat backlog, and the drain itself."""

    messages: int
    stored: int
    publish_rate: float
    alarms: int
    # Of those, published before the rules had judged the whole backlog: the ones measured.
    alarms_during: int
    received_during: int
    lost: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    latency_max_ms: float | None
    noload_p50_ms: float | None
    noload_p99_ms: float | None
    ratio_p99_to_noload: float | None
    # From the gateway's going on until the whole backlog was acknowledged, and judged.
    acked_s: float | None
    judged_s: float | None
    rate_acked: float | None
    rate_stored: float | None


def run_backlog_step(
    svc: Services, target: ConsoleTarget, devices: Sequence[str], opts: Options, *, run: int
) -> BacklogRun:
    """Alarm the devices once while the gateway drains a backlog queued while it was paused.

    Paused (SIGSTOP) rather than stopped: the probe's live stream stays open, so the
    alarms can follow the backlog at once and measure the drain, not a start-up.
    """
    n = opts.backlog_messages
    prefix = f"bb{run}-"
    host, port = target.api_host, target.api_port
    marks: dict[str, Any] = {}

    def make_backlog() -> None:
        marks["before"] = scrape_metrics(host, port)
        target.gateway.pause()
        try:
            marks["backlog"] = publish(PublishPlan(svc.port, prefix, BENCH_DEVICES, n))
        finally:
            target.gateway.resume()
            marks["resumed"] = time.time()

    with MetricsPoller(lambda: (host, port)) as poller:
        step, report = run_console_step(
            svc,
            target,
            devices,
            load_rate=0,
            alert_rate=opts.backlog_alert_rate,
            tag=f"bl{run}",
            before_alarms=make_backlog,
            lost_after_s=max(_CONSOLE_LOST_AFTER_S, n / 1_000),
        )
        backlog: PublishReport = marks["backlog"]
        stored, _ = target.db.wait_for(
            prefix, backlog.started, n, target.gateway.check_alive, timeout=max(120.0, n / 500)
        )
    if report.error is not None:
        _print(f"  STREAM: {report.error} before the probe was done")
    before, resumed = marks["before"], marks["resumed"]
    rate_acked, acked_at = counter_rate(
        poller.samples, ACKED_METRIC, before.get(ACKED_METRIC, 0.0) + n, since=resumed
    )
    judged_at = first_sample(
        poller.samples,
        resumed,
        lambda v: v.get("wgw_messages_total", 0.0) >= before.get("wgw_messages_total", 0.0) + n,
    )
    alarms, latencies = _alarm_latencies(report, until=judged_at or math.inf)
    _, first, last, before_last = target.db.stored_span(prefix, backlog.started)
    p99 = _ms(_quantile(latencies, 0.99))
    return BacklogRun(
        messages=n,
        stored=stored,
        publish_rate=backlog.rate,
        alarms=step.alarms,
        alarms_during=alarms,
        received_during=len(latencies),
        lost=step.lost,
        latency_p50_ms=_ms(_quantile(latencies, 0.5)),
        latency_p99_ms=p99,
        latency_max_ms=_ms(latencies[-1] if latencies else None),
        noload_p50_ms=None,
        noload_p99_ms=None,
        ratio_p99_to_noload=None,
        acked_s=None if acked_at is None else acked_at - resumed,
        judged_s=None if judged_at is None else judged_at - resumed,
        rate_acked=rate_acked,
        rate_stored=_rate(before_last, last - first),
    )


def run_backlog(svc: Services, opts: Options) -> dict[str, Any]:
    """Fall latency while a heartbeat backlog drains, beside the no-load latency, in turn."""
    n = opts.backlog_alerts
    runs, median, ratio, met = _beside_noload(
        svc, opts, name="backlog", client_id=BACKLOG_CLIENT_ID, per_run=n,
        alert_rate=opts.backlog_alert_rate, tag="bu", step=run_backlog_step,
        show=_print_backlog_run,
    )  # fmt: skip
    return {
        "messages": opts.backlog_messages,
        "alerts_per_run": n,
        "alert_rate": opts.backlog_alert_rate,
        "target_ratio_p99_to_noload": ALARM_TARGET_RATIO,
        "ratio_p99_to_noload": ratio,
        "target_met": met,
        "median": median,
        "runs": [dataclasses.asdict(r) for r in runs],
    }


_Run = TypeVar("_Run", "BacklogRun", "OutageRun")


def _beside_noload(
    svc: Services,
    opts: Options,
    *,
    name: str,
    client_id: str,
    per_run: int,
    alert_rate: float,
    tag: str,
    step: Callable[..., _Run],
    show: Callable[[dict[str, Any]], None],
) -> tuple[list[_Run], dict[str, Any], float | None, bool | None]:
    """Run a phase's step ``opts.repeat`` times, each after a no-load run on the same gateway.

    Returns the runs (each with its no-load figures and ratio), their
    medians, and the median p99's ratio to the median no-load p99 with
    whether it meets the target.
    """
    devices = console_devices(2 * per_run * opts.repeat)
    runs: list[_Run] = []
    with alarm_gateway(svc, opts, name=name, client_id=client_id, devices=devices) as target:
        batches = iter(devices[i : i + per_run] for i in range(0, len(devices), per_run))
        for run in range(opts.repeat):
            noload, _ = run_console_step(
                svc, target, next(batches), load_rate=0, alert_rate=alert_rate, tag=f"{tag}{run}"
            )
            result = step(svc, target, next(batches), opts, run=run)
            ratio, _ = _ratio_met(result.latency_p99_ms, noload.latency_p99_ms)
            result = dataclasses.replace(
                result,
                noload_p50_ms=noload.latency_p50_ms,
                noload_p99_ms=noload.latency_p99_ms,
                ratio_p99_to_noload=ratio,
            )
            runs.append(result)
            show(dataclasses.asdict(result))
    median = _medians(runs)
    ratio, met = _ratio_met(median["latency_p99_ms"], median["noload_p99_ms"])
    return runs, median, ratio, met


@dataclass(frozen=True)
class OutageRun:
    """Alarms sent while PostgreSQL is stopped under load, and storage's recovery after."""

    outage_s: float
    load_target_rate: int
    load_achieved_rate: float | None
    load_published: int
    load_stored: int
    alarms: int
    # Of those, published while PostgreSQL was down: the ones measured.
    alarms_during: int
    received_during: int
    lost: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    latency_max_ms: float | None
    noload_p50_ms: float | None
    noload_p99_ms: float | None
    ratio_p99_to_noload: float | None
    # After PostgreSQL was back (its start command returned): storage writing again,
    # and its oldest unstored entry younger than a second.
    storage_resumed_s: float | None
    storage_caught_up_s: float | None
    peak_waiting_storage: float | None
    peak_spool_mb: float | None


def run_outage_step(
    svc: Services, target: ConsoleTarget, devices: Sequence[str], opts: Options, *, run: int
) -> OutageRun:
    """Stop PostgreSQL under background load, alarm each device once, start it again."""
    pg = svc.pg
    if pg is None:
        raise ServiceError("the outage phase needs the bench's own PostgreSQL")
    marks: dict[str, float] = {}
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="bench-postgres")
    restarted: list[concurrent.futures.Future[None]] = []

    def start_again() -> None:
        time.sleep(max(0.0, marks["down"] + opts.outage_s - time.time()))
        pg.start()
        marks["up"] = time.time()

    def stop_postgres() -> None:
        pg.stop("fast")
        marks["down"] = time.time()
        restarted.append(pool.submit(start_again))
        time.sleep(_OUTAGE_SETTLE_S)  # the alarms meet an outage the gateway has noticed

    window = len(devices) / opts.console_alert_rate
    host, port = target.api_host, target.api_port
    try:
        with MetricsPoller(lambda: (host, port)) as poller:
            step, report = run_console_step(
                svc,
                target,
                devices,
                load_rate=opts.outage_load,
                alert_rate=opts.console_alert_rate,
                tag=f"o{run}",
                before_alarms=stop_postgres,
                extra_load_s=max(0.0, opts.outage_s - window - _CONSOLE_TAIL_S) + _OUTAGE_AFTER_S,
            )
            for future in restarted:
                future.result()
            # Caught up: wait (a while) until the samples show it.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and _caught_up(poller.samples, marks["up"]) is None:
                target.gateway.check_alive()
                time.sleep(0.2)
    finally:
        for future in restarted:
            with contextlib.suppress(Exception):
                future.result()
        pool.shutdown()
        svc.postgres = _postgres_process(pg)
    if report.error is not None:
        _print(f"  STREAM: {report.error} before the probe was done")
    down, up = marks["down"], marks["up"]
    alarms, latencies = _alarm_latencies(report, down, up)
    resumed = first_sample(poller.samples, up, lambda v: v.get("wgw_storage_up") == 1)
    caught_up = _caught_up(poller.samples, up)
    during = [v for t, v in poller.samples if down <= t <= up]
    waiting = [v["wgw_spool_waiting_storage"] for v in during if "wgw_spool_waiting_storage" in v]
    spool = [v["wgw_spool_bytes"] for v in during if "wgw_spool_bytes" in v]
    return OutageRun(
        outage_s=up - down,
        load_target_rate=opts.outage_load,
        load_achieved_rate=step.load_achieved_rate,
        load_published=step.load_published,
        load_stored=step.load_stored,
        alarms=step.alarms,
        alarms_during=alarms,
        received_during=len(latencies),
        lost=step.lost,
        latency_p50_ms=_ms(_quantile(latencies, 0.5)),
        latency_p99_ms=_ms(_quantile(latencies, 0.99)),
        latency_max_ms=_ms(latencies[-1] if latencies else None),
        noload_p50_ms=None,
        noload_p99_ms=None,
        ratio_p99_to_noload=None,
        storage_resumed_s=None if resumed is None else resumed - up,
        storage_caught_up_s=None if caught_up is None else caught_up - up,
        peak_waiting_storage=max(waiting, default=None),
        peak_spool_mb=_mb(int(max(spool))) if spool else None,
    )


def _caught_up(samples: Sequence[Sample], since: float) -> float | None:
    return first_sample(
        samples,
        since,
        lambda v: (
            v.get("wgw_storage_up") == 1
            and v.get("wgw_storage_lag_seconds", math.inf) < _CAUGHT_UP_LAG_S
        ),
    )


def run_outage(svc: Services, opts: Options) -> dict[str, Any]:
    """Fall latency while PostgreSQL is down under load, beside the no-load latency, in turn."""
    # Alarms from a second after PostgreSQL stopped until a second before it is back.
    window = max(0.5, opts.outage_s - _OUTAGE_SETTLE_S - 1.0)
    n = max(3, int(opts.console_alert_rate * window))
    runs, median, ratio, met = _beside_noload(
        svc, opts, name="outage", client_id=OUTAGE_CLIENT_ID, per_run=n,
        alert_rate=opts.console_alert_rate, tag="ou", step=run_outage_step,
        show=_print_outage_run,
    )  # fmt: skip
    return {
        "outage_s": opts.outage_s,
        "load_rate": opts.outage_load,
        "alerts_per_run": n,
        "alert_rate": opts.console_alert_rate,
        "target_ratio_p99_to_noload": ALARM_TARGET_RATIO,
        "ratio_p99_to_noload": ratio,
        "target_met": met,
        "lost": sum(r.lost for r in runs),
        "load_lost": sum(r.load_published - r.load_stored for r in runs),
        "median": median,
        "runs": [dataclasses.asdict(r) for r in runs],
    }


# --- (g) SCAIP over SIP -------------------------------------------------------------------------

# A social-alarm unit's heartbeat as SIP MESSAGE, one a call, ref and cid from -inf; the
# response time is MESSAGE sent → 200 OK (with the <mrs>) received; UDP retransmits at
# T1 = 500 ms. Written to the bench's directory for SIPp (and printed with the command).
SIPP_LOAD_SCENARIO = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="wgw bench: SCAIP heartbeat over SIP">
  <send retrans="500" start_rtd="reply">
    <![CDATA[

      MESSAGE sip:scaip@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field1]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:scaip@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 MESSAGE
      Max-Forwards: 70
      Content-Type: application/scaip+xml
      Content-Length: [len]

      <?xml version="1.0" encoding="UTF-8"?>
      <mrq><ref>[field0]</ref><mty>PI</mty><cid>[field1]</cid><dty>0003</dty></mrq>
    ]]>
  </send>
  <recv response="200" rtd="reply"/>
</scenario>
"""


@dataclass(frozen=True)
class SipRun:
    """One SIPp run against the SCAIP receiver."""

    target_rate: int
    calls: int  # MESSAGEs SIPp was told to send, each its own transaction and ref
    answered: int  # calls SIPp counted successful: a 200 OK came
    failed: int  # calls SIPp counted failed (no answer after its retransmissions, or not 200)
    retransmissions: int
    stored: int  # events of the run in PostgreSQL, one per ref when none is twice
    duplicates: int  # rows beyond one per ref: a message stored twice
    # Datagrams the kernel dropped because a UDP socket's receive buffer was full
    # (/proc/net/snmp RcvbufErrors, the whole machine's, over the run): a reason for
    # retransmissions; None where the counter cannot be read.
    udp_buffer_drops: int | None
    achieved_rate: float | None
    latency_p50_ms: float | None  # MESSAGE → 200 OK, as SIPp measured it (1 ms resolution)
    latency_p99_ms: float | None
    latency_max_ms: float | None
    sipp_exit: int  # 0: every call as the scenario says
    gateway_cpu_percent: float
    broker_cpu_percent: float
    postgres_cpu_percent: float
    system_cpu_percent: float
    gateway_peak_rss_mb: float


def sipp_binary() -> str:
    """The sipp executable (Debian sip-tester), or ServiceError saying how to install it."""
    found = shutil.which("sipp")
    if found is None:
        raise ServiceError(
            "SIPp is not installed: apt-get install sip-tester (scripts/system-deps.sh does it "
            "as root); wgw bench can leave the sip phase out with --only"
        )
    return found


def sipp_stats(path: Path) -> dict[str, str]:
    """The last row of a SIPp -trace_stat file, by column name."""
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    if len(lines) < 2:
        return {}
    return dict(zip(lines[0].split(";"), lines[-1].split(";"), strict=False))


def sipp_rtts(paths: Iterable[Path]) -> list[float]:
    """Every response time (ms) in SIPp -trace_rtt files (rows: date_ms;response_time_ms;rtd)."""
    times: list[float] = []
    for path in paths:
        for line in path.read_text(errors="replace").splitlines()[1:]:
            fields = line.split(";")
            with contextlib.suppress(IndexError, ValueError):
                times.append(float(fields[1]))
    return times


def _udp_buffer_drops() -> int | None:
    """The machine's UDP receive-buffer drops so far (Linux /proc/net/snmp), or None."""
    try:
        lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()]
    except OSError:
        return None
    udp = [fields[1:] for fields in lines if fields and fields[0] == "Udp:"]
    if len(udp) < 2 or "RcvbufErrors" not in udp[0]:
        return None
    return int(udp[1][udp[0].index("RcvbufErrors")])


def run_sip_step(
    svc: Services,
    gateway: GatewayProcess,
    proc: psutil.Process,
    run: str,
    *,
    rate: int,
    duration_s: float,
) -> tuple[SipRun, str]:
    """SIPp sends ``rate`` MESSAGE/s for ``duration_s``; the run and the SIPp command."""
    host, port = gateway.wait_scaip()
    calls = max(1, int(rate * duration_s))
    prefix = f"S{secrets.token_hex(2)}r{run}"  # refs are 1–16 letters and digits
    where = svc.work / f"sip-{run}"
    where.mkdir(parents=True, exist_ok=True)
    scenario = where / "scaip_load.xml"
    scenario.write_text(SIPP_LOAD_SCENARIO)
    units = sip_units(SIP_UNITS)
    rows = (f"{prefix}{n:08d};{units[n % len(units)]}" for n in range(calls))
    (where / "calls.csv").write_text("SEQUENTIAL\n" + "\n".join(rows) + "\n")
    command = [
        sipp_binary(), f"{host}:{port}", "-sf", scenario.name, "-inf", "calls.csv",
        "-t", "u1", "-r", str(rate), "-m", str(calls), "-i", "127.0.0.1", "-p", "0",
        "-nostdin", "-timeout", f"{duration_s + 120:.0f}s",
        "-trace_rtt", "-rtt_freq", "1", "-trace_stat", "-stf", "stat.csv", "-fd", "1",
        # SIPp's own socket buffers as large as the kernel allows (net.core.rmem_max caps
        # them): drops, if any, are then the receiver's.
        "-buff_size", str(_SIPP_BUFFER_BYTES),
    ]  # fmt: skip
    monitor = ResourceMonitor(proc, svc)
    since = time.time()
    drops_before = _udp_buffer_drops()
    monitor.start()
    started = time.monotonic()
    done = subprocess.run(
        command, cwd=where, capture_output=True, text=True, check=False,
        timeout=duration_s + 180,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    monitor.stop()
    drops = _udp_buffer_drops()
    stats = sipp_stats(where / "stat.csv")
    answered = int(stats.get("SuccessfulCall(C)", "0") or 0)
    # Everything answered is durable; what SIPp gave up on may be stored too.
    svc.db.wait_for(prefix, since, answered, gateway.check_alive, timeout=60.0)
    # Counted after a moment more: a duplicate or a late one would show here.
    time.sleep(1.0)
    stored = svc.db.count(prefix, since)
    rtts = sorted(sipp_rtts(where.glob("*_rtt.csv")))
    return (
        SipRun(
            target_rate=rate,
            calls=calls,
            answered=answered,
            failed=int(stats.get("FailedCall(C)", "0") or 0),
            retransmissions=int(stats.get("Retransmissions(C)", "0") or 0),
            stored=stored,
            duplicates=svc.db.duplicates(prefix, since),
            udp_buffer_drops=None
            if drops is None or drops_before is None
            else drops - drops_before,
            achieved_rate=_rate(answered, elapsed),
            latency_p50_ms=_quantile(rtts, 0.5),
            latency_p99_ms=_quantile(rtts, 0.99),
            latency_max_ms=rtts[-1] if rtts else None,
            sipp_exit=done.returncode,
            gateway_cpu_percent=monitor.cpu_percent["gateway"],
            broker_cpu_percent=monitor.cpu_percent["broker"],
            postgres_cpu_percent=monitor.cpu_percent["postgres"],
            system_cpu_percent=monitor.system_cpu_percent,
            gateway_peak_rss_mb=_mb(monitor.peak_rss),
        ),
        " ".join(command),
    )


def run_sip(svc: Services, opts: Options) -> dict[str, Any]:
    """The sip phase: a gateway with its SCAIP receiver on a free port, SIPp as the units."""
    gateway = GatewayProcess(
        dsn=svc.db.dsn,
        broker_port=svc.port,
        client_id=SIP_CLIENT_ID,
        log_path=svc.work / "gateway-sip.log",
        config=opts.config,
        spool_root=svc.work,
        # The API on a free port too (its /metrics has the receiver's own reply latency).
        env={**_API_ENV, "WGW_SCAIP__HOST": "127.0.0.1", "WGW_SCAIP__PORT": "0"},
    )
    proc = gateway.start()
    try:
        gateway.wait_ready()
        baselines: list[SipRun] = []
        runs: list[SipRun] = []
        command = ""
        for run in range(opts.repeat):
            idle, _ = run_sip_step(
                svc, gateway, proc, f"b{run}", rate=SIP_BASELINE_RATE,
                duration_s=SIP_BASELINE_DURATION_S,
            )  # fmt: skip
            baselines.append(idle)
            _print_sip_run(idle, "no-load baseline: ")
            sip_run, command = run_sip_step(
                svc, gateway, proc, str(run), rate=opts.sip_rate, duration_s=opts.sip_duration_s
            )
            runs.append(sip_run)
            _print_sip_run(sip_run)
    finally:
        gateway.stop()
    median = _medians(runs)
    baseline = _medians(baselines)
    p99 = median["latency_p99_ms"]
    return {
        "rate": opts.sip_rate,
        "duration_s": opts.sip_duration_s,
        "median": median,
        "baseline": baseline,
        # Loaded over no-load latency, from the medians.
        "p50_ratio_to_baseline": _over_baseline(median, baseline, "latency_p50_ms"),
        "p99_ratio_to_baseline": _over_baseline(median, baseline, "latency_p99_ms"),
        "target_p99_ms": SIP_TARGET_P99_MS,
        "target_met": None if p99 is None else p99 < SIP_TARGET_P99_MS,
        # Every MESSAGE answered 200, and each stored once (none lost, none twice).
        "all_answered": all(r.answered == r.calls and r.failed == 0 for r in runs),
        "exactly_once": all(r.stored == r.calls and r.duplicates == 0 for r in runs),
        "sipp_command": command,
        "runs": [dataclasses.asdict(r) for r in runs],
    }


def _over_baseline(loaded: Mapping[str, Any], idle: Mapping[str, Any], key: str) -> float | None:
    """``loaded[key]`` as a multiple of ``idle[key]``; SIPp times in whole ms, so 0 counts as 1."""
    base = idle[key]
    return _ratio(loaded[key], None if base is None else max(base, 1.0))


def _print_sip_run(r: SipRun, label: str = "") -> None:
    once = (
        "each stored once"
        if r.stored == r.calls and r.duplicates == 0
        else f"STORED {r.stored:,} ({r.duplicates:,} twice)"
    )
    drops = (
        ""
        if not r.udp_buffer_drops
        else (f"; the kernel dropped {r.udp_buffer_drops:,} datagrams at full UDP receive buffers")
    )
    _print(
        f"  {label}{r.calls:,} MESSAGE at {r.target_rate:,}/s ({_fmt(r.achieved_rate)}/s reached): "
        f"{r.answered:,} answered 200, {r.failed:,} failed, {r.retransmissions:,} retransmitted; "
        f"{once}; reply p50 {_fmt(r.latency_p50_ms, ',.1f')} ms, p99 "
        f"{_fmt(r.latency_p99_ms, ',.1f')} ms, max {_fmt(r.latency_max_ms, ',.0f')} ms "
        f"(target p99 < {SIP_TARGET_P99_MS:g} ms); CPU% gateway {r.gateway_cpu_percent:.0f}, "
        f"broker {r.broker_cpu_percent:.0f}, PostgreSQL {r.postgres_cpu_percent:.0f}, "
        f"machine {r.system_cpu_percent:.0f}{drops}"
    )


def transfer_rates(results: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ack and storage rates of a backlog drain as shares of the gmqtt no-op baseline.

    From the drain phase (the same backlog the baseline drained), else the backlog phase.
    """
    baseline = results.get("baseline")
    base = baseline["gmqtt"]["median"]["rate"] if baseline else None
    source = next((name for name in ("drain", "backlog_alarm") if results.get(name)), None)
    if source is None:
        return None
    median = results[source]["median"]
    acked, stored = median["rate_acked"], median["rate_stored"]
    return {
        "source": source,
        "gmqtt_baseline_rate": base,
        "ack_rate": acked,
        "storage_rate": stored,
        "ack_ratio_to_gmqtt_baseline": _ratio(acked, base),
        "storage_ratio_to_gmqtt_baseline": _ratio(stored, base),
        "drain_today_ratio": DRAIN_TODAY_RATIO,
    }


# --- Summaries --------------------------------------------------------------------------------


def _medians(runs: Sequence[Any]) -> dict[str, Any]:
    """Per field, the median over runs (None where no run has a value)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(runs[0]):
        values = [getattr(r, f.name) for r in runs if getattr(r, f.name) is not None]
        out[f.name] = statistics.median(values) if values else None
    return out


def step_verdict(step: dict[str, Any]) -> tuple[str | None, bool]:
    """Why the gateway fell behind (None if it kept up), and whether the publisher was the limit."""
    achieved, committed = step["achieved_rate"], step["committed_rate"]
    first, last = step["latency_first_quarter_p50_ms"], step["latency_last_quarter_p50_ms"]
    behind = None
    if step["stored"] < step["published"]:
        behind = f"only {step['stored']:,.0f} of {step['published']:,.0f} stored in time"
    elif committed < KEEP_UP_RATIO * achieved:
        behind = f"committed {committed:,.0f}/s of {achieved:,.0f}/s published"
    elif step["backlog_at_end"] > MAX_BACKLOG_S * achieved:
        behind = f"{step['backlog_at_end']:,.0f} messages queued when publishing stopped"
    elif first is not None and last is not None and last - first > 1000 * MAX_LATENCY_GROWTH_S:
        behind = f"backlog growing: median latency {first:,.0f} → {last:,.0f} ms over the window"
    return behind, achieved < PUBLISHER_REACH * step["target_rate"]


def _sweep(
    svc: Services, gateway: GatewayProcess, opts: Options
) -> tuple[list[dict[str, Any]], str | None]:
    steps: list[dict[str, Any]] = []
    proc = gateway.start()
    try:
        gateway.wait_ready()
        for rate in opts.rates:
            runs = [
                run_step(svc, gateway, proc, rate=rate, duration_s=opts.duration_s, run=run)
                for run in range(opts.repeat)
            ]
            median = _medians(runs)
            behind, limited = step_verdict(median)
            steps.append(
                {
                    "target_rate": rate,
                    "median": median,
                    "behind": behind,
                    "publisher_limited": limited,
                    "runs": [dataclasses.asdict(r) for r in runs],
                }
            )
            _print_step(steps[-1])
            if behind:
                return steps, f"the gateway fell behind at {rate:,} msg/s: {behind}"
            if limited:
                return steps, (
                    f"one publisher process reached only {median['achieved_rate']:,.0f} of "
                    f"{rate:,} msg/s; the gateway kept up with that"
                )
    finally:
        gateway.stop()
    return steps, None


# --- Output -----------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str = ",.0f") -> str:
    return "—" if value is None else format(value, spec)


def _print(text: str = "") -> None:
    print(text, flush=True)


_STEP_HEADER = (
    f"  {'target':>7} {'achieved':>8} {'committed':>9} {'p50 ms':>7} {'p99 ms':>7} "
    f"│ CPU% {'gw':>4} {'pub':>4} {'mqtt':>4} {'pg':>4} {'sys':>4} │ {'gw RSS':>6}  note"
)


def _print_step(step: dict[str, Any]) -> None:
    m = step["median"]
    note = "ok" if step["behind"] is None else "BEHIND"
    if step["publisher_limited"]:
        note += ", publisher-limited"
    _print(
        f"  {step['target_rate']:>7,} {_fmt(m['achieved_rate']):>8} "
        f"{_fmt(m['committed_rate']):>9} "
        f"{_fmt(m['latency_p50_ms'], ',.1f'):>7} {_fmt(m['latency_p99_ms'], ',.1f'):>7} "
        f"│      {m['gateway_cpu_percent']:>4.0f} {m['publisher_cpu_percent']:>4.0f} "
        f"{m['broker_cpu_percent']:>4.0f} {m['postgres_cpu_percent']:>4.0f} "
        f"{m['system_cpu_percent']:>4.0f} │ {m['gateway_peak_rss_mb']:>3.0f} MB  {note}"
    )


def _ratio(value: float | None, base: float | None) -> float | None:
    return None if value is None or not base else value / base


_CONSOLE_HEADER = (
    f"  {'load':>7} {'achieved':>8} {'alarms':>6} {'lost':>4} {'p50 ms':>7} {'p95 ms':>7} "
    f"{'p99 ms':>7} {'max ms':>7} │ gw {'p50':>6} {'p99':>6} {'mean':>6} │ ingest {'p50':>6} "
    f"{'p99':>6} │ CPU% {'gw':>4} {'pub':>4} {'mqtt':>4} {'pg':>4} {'sys':>4}"
)


def _print_console_run(run: ConsoleRun | Mapping[str, Any], label: str = "") -> None:
    m = dataclasses.asdict(run) if isinstance(run, ConsoleRun) else run
    load = _fmt(m["load_target_rate"]) if m["load_target_rate"] else "none"
    lost = f"{m['lost']:>4.0f}"

    def gw(value: float | None) -> str:
        # An estimate at the highest bound only says the value is at least that.
        top = m["gateway_top_bucket_ms"]
        text = _fmt(value, ",.1f" if value is None or value < 1000 else ",.0f")
        return f"≥{text}" if value is not None and top is not None and value >= top else text

    _print(
        f"  {load:>7} {_fmt(m['load_achieved_rate']):>8} {m['alarms']:>6.0f} {lost} "
        f"{_fmt(m['latency_p50_ms'], ',.1f'):>7} {_fmt(m['latency_p95_ms'], ',.1f'):>7} "
        f"{_fmt(m['latency_p99_ms'], ',.1f'):>7} {_fmt(m['latency_max_ms'], ',.1f'):>7} "
        f"│ {gw(m['gateway_p50_ms']):>9} {gw(m['gateway_p99_ms']):>6} "
        f"{_fmt(m['gateway_mean_ms'], ',.1f'):>6} "
        f"│ {_fmt(m['load_latency_p50_ms'], ',.1f'):>13} "
        f"{_fmt(m['load_latency_p99_ms'], ',.1f'):>6} "
        f"│      {m['gateway_cpu_percent']:>4.0f} {_fmt(m['publisher_cpu_percent']):>4} "
        f"{m['broker_cpu_percent']:>4.0f} {m['postgres_cpu_percent']:>4.0f} "
        f"{m['system_cpu_percent']:>4.0f}  {label}{'  LOST' if m['lost'] else ''}"
    )


def _print_console(console: Mapping[str, Any], repeat: int) -> None:
    unloaded, loaded = console["unloaded"]["median"], console["loaded"]
    if repeat > 1:  # with one run each, the rows above are already the figures
        _print(f"  medians of {repeat} runs:")
        _print_console_run(unloaded, "(no load)")
        if loaded is not None:
            _print_console_run(loaded["median"], "(under load)")
    if console["lost"]:
        _print(
            f"  LOST: {console['lost']} alert(s) not on the stream within "
            f"{_CONSOLE_LOST_AFTER_S:g} s of the last alarm"
        )
    if loaded is None:
        return
    m = loaded["median"]
    p99 = m["latency_p99_ms"]
    verdict = "—" if p99 is None else "met" if console["target_met"] else "MISSED"
    r50, r99 = console["ratio_p50_loaded_to_unloaded"], console["ratio_p99_loaded_to_unloaded"]
    _print(
        f"  p99 under {console['load_rate']:,} msg/s: {_fmt(p99, ',.1f')} ms (target under "
        f"{console['target_p99_ms']:.0f} ms: {verdict}); load costs ×{_fmt(r50, '.2f')} at p50, "
        f"×{_fmt(r99, '.2f')} at p99"
    )


def _target_verdict(met: bool | None) -> str:
    return "—" if met is None else "met" if met else "MISSED"


def _print_backlog_run(m: Mapping[str, Any]) -> None:
    ratio, met = _ratio_met(m["latency_p99_ms"], m["noload_p99_ms"])
    _print(
        f"  no load           p50 {_fmt(m['noload_p50_ms'], ',.1f'):>7} ms  "
        f"p99 {_fmt(m['noload_p99_ms'], ',.1f'):>7} ms"
    )
    _print(
        f"  during the drain  p50 {_fmt(m['latency_p50_ms'], ',.1f'):>7} ms  "
        f"p99 {_fmt(m['latency_p99_ms'], ',.1f'):>7} ms  max "
        f"{_fmt(m['latency_max_ms'], ',.1f')} ms  ({m['received_during']:.0f} of "
        f"{m['alarms_during']:.0f} alarms sent before the rules had judged the backlog; "
        f"{m['lost']:.0f} lost)"
    )
    _print(
        f"  p99 ×{_fmt(ratio, '.2f')} the no-load p99 (target at most ×{ALARM_TARGET_RATIO:g}: "
        f"{_target_verdict(met)})"
    )
    _print(
        f"  backlog of {m['messages']:,.0f} queued at {_fmt(m['publish_rate'])} msg/s: "
        f"acknowledged {_fmt(m['acked_s'], '.1f')} s after the gateway went on "
        f"({_fmt(m['rate_acked'])} msg/s), "
        f"judged by the rules after {_fmt(m['judged_s'], '.1f')} s, stored at "
        f"{_fmt(m['rate_stored'])} events/s ({m['stored']:,.0f} stored)"
    )


def _print_outage_run(m: Mapping[str, Any]) -> None:
    ratio, met = _ratio_met(m["latency_p99_ms"], m["noload_p99_ms"])
    _print(
        f"  no load           p50 {_fmt(m['noload_p50_ms'], ',.1f'):>7} ms  "
        f"p99 {_fmt(m['noload_p99_ms'], ',.1f'):>7} ms"
    )
    _print(
        f"  PostgreSQL down   p50 {_fmt(m['latency_p50_ms'], ',.1f'):>7} ms  "
        f"p99 {_fmt(m['latency_p99_ms'], ',.1f'):>7} ms  max "
        f"{_fmt(m['latency_max_ms'], ',.1f')} ms  ({m['received_during']:.0f} of "
        f"{m['alarms_during']:.0f} alarms sent in the {m['outage_s']:.1f} s outage; "
        f"{m['lost']:.0f} lost)"
    )
    _print(
        f"  p99 ×{_fmt(ratio, '.2f')} the no-load p99 (target at most ×{ALARM_TARGET_RATIO:g}: "
        f"{_target_verdict(met)})"
    )
    _print(
        f"  load {_fmt(m['load_achieved_rate'])} msg/s: {m['load_stored']:,.0f} of "
        f"{m['load_published']:,.0f} stored; spool peak {_fmt(m['peak_spool_mb'], '.1f')} MB, "
        f"{_fmt(m['peak_waiting_storage'])} journal entries waiting for PostgreSQL"
    )
    _print(
        f"  after PostgreSQL was back: storage writing in {_fmt(m['storage_resumed_s'], '.1f')} s, "
        f"caught up (lag under {_CAUGHT_UP_LAG_S:g} s) in {_fmt(m['storage_caught_up_s'], '.1f')} s"
    )


def _print_summary(results: Mapping[str, Any]) -> None:
    """The issue's figures side by side: alarm p99 against no load, transfer rates."""
    lines = []
    for key, label in (("backlog_alarm", "backlog drain"), ("outage", "PostgreSQL outage")):
        if (phase := results.get(key)) is not None:
            m = phase["median"]
            lines.append(
                f"  alarm p99 during the {label + ':':<19} {_fmt(m['latency_p99_ms'], ',.1f'):>7} "
                f"ms vs {_fmt(m['noload_p99_ms'], ',.1f')} ms without load: "
                f"×{_fmt(phase['ratio_p99_to_noload'], '.2f')} (target ≤ ×{ALARM_TARGET_RATIO:g}: "
                f"{_target_verdict(phase['target_met'])})"
            )
    if (rates := results.get("rates")) is not None:
        floor = f"drain before the spool ≈ {100 * rates['drain_today_ratio']:.0f}% of baseline"
        for key, label in (("ack", "ack rate (broker → spool)"), ("storage", "storage rate")):
            share = rates[f"{key}_ratio_to_gmqtt_baseline"]
            verdict = "—" if share is None else "above" if share >= DRAIN_TODAY_RATIO else "BELOW"
            lines.append(
                f"  {label:<27} {_fmt(rates[f'{key}_rate']):>8} msg/s = "
                f"{_fmt(None if share is None else 100 * share, '.0f')}% of the gmqtt baseline "
                f"({_fmt(rates['gmqtt_baseline_rate'])} msg/s); {floor}: {verdict}"
            )
    if (sip := results.get("sip")) is not None:
        m = sip["median"]
        lines.append(
            f"  SCAIP over SIP at {sip['rate']:,}/s: reply p99 {_fmt(m['latency_p99_ms'], ',.1f')} "
            f"ms (target < {SIP_TARGET_P99_MS:g} ms: {_target_verdict(sip['target_met'])}); "
            f"all answered: {'yes' if sip['all_answered'] else 'NO'}; each stored once: "
            f"{'yes' if sip['exactly_once'] else 'NO'}; p50 / p99 "
            f"{_fmt(sip['p50_ratio_to_baseline'], '.1f')} / "
            f"{_fmt(sip['p99_ratio_to_baseline'], '.1f')} × the no-load baseline "
            f"({SIP_BASELINE_RATE}/s: {_fmt(sip['baseline']['latency_p50_ms'], ',.1f')} / "
            f"{_fmt(sip['baseline']['latency_p99_ms'], ',.1f')} ms)"
        )
    if lines:
        _print("\nthe alarm path and the spool, against the targets:")
        for line in lines:
            _print(line)


# --- The command ------------------------------------------------------------------------------


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    # SIGTERM should clean up like Ctrl-C does; only the main thread may set handlers.
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _broker_process(broker: MosquittoServer) -> psutil.Process:
    # The broker is our child; its command line names its own directory.
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if any(str(broker.base_dir) in arg for arg in child.cmdline()):
                return child
    raise ServiceError("cannot find the Mosquitto process the bench started")


def _postgres_process(pg: PostgresServer) -> psutil.Process:
    pid = int((pg.data_dir / "postmaster.pid").read_text().split()[0])
    return psutil.Process(pid)


def run_bench(args: argparse.Namespace) -> int:
    """Run the bench with its own Mosquitto and PostgreSQL; print a table and write JSON."""
    opts = _options(args)
    with _sigterm_as_interrupt(), contextlib.ExitStack() as stack:
        work = temp_dir("wgw-bench-")
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        # Each service gets its own temporary directory: PostgreSQL runs as another
        # account when we are root, and must not need to enter ours.
        broker = MosquittoServer(temp_dir("wgw-bench-mq-"))
        stack.callback(broker.cleanup)
        pg = PostgresServer(temp_dir("wgw-bench-pg-"))
        stack.callback(pg.cleanup)
        _print("wgw bench: starting Mosquitto and PostgreSQL …")
        broker.start()
        pg.start()
        migrate(pg.dsn)
        _register(pg.dsn, BENCH_DEVICES)
        db = Database(pg.dsn)
        stack.callback(db.close)
        svc = Services(broker.port, db, _broker_process(broker), _postgres_process(pg), work, pg)
        results = _run_phases(svc, opts)
        opts.json_path.write_text(json.dumps(results, indent=2) + "\n")
        _print(f"\nresults written to {opts.json_path}")
    return 0


def _run_phases(svc: Services, opts: Options) -> dict[str, Any]:
    n = opts.messages
    now = datetime.now(UTC)
    results: dict[str, Any] = {
        "started_at": now.isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
            "python": platform.python_version(),
            "postgresql": svc.db.server_version(),
            "gmqtt": version("gmqtt"),
            "paho_mqtt": version("paho-mqtt"),
        },
        "options": {
            "phases": [phase for phase in PHASES if phase in opts.phases],
            "messages": n,
            "rates": list(opts.rates),
            "duration_s": opts.duration_s,
            "repeat": opts.repeat,
            "memory_devices": opts.memory_devices,
            "bench_devices": BENCH_DEVICES,
            "console_load": opts.console_load,
            "console_alerts": opts.console_alerts,
            "console_alert_rate": opts.console_alert_rate,
            "backlog_messages": opts.backlog_messages,
            "backlog_alerts": opts.backlog_alerts,
            "backlog_alert_rate": opts.backlog_alert_rate,
            "outage_s": opts.outage_s,
            "outage_load": opts.outage_load,
            "sip_rate": opts.sip_rate,
            "sip_duration_s": opts.sip_duration_s,
            "config": None if opts.config is None else str(opts.config),
            "payload_bytes": len(
                heartbeat(f"d0-{n // 2}", now.isoformat(timespec="milliseconds"), now.timestamp())
            ),
        },
        "notes": [
            "figures are medians over the runs listed with them",
            "latency = stored_at (PostgreSQL now(): start of the committing transaction) "
            "minus the publish time in the payload; it excludes the batch's write and commit",
            "backlog_alarm and outage: console latency of the alarms sent while the backlog was "
            "undrained or PostgreSQL was down, beside no-load alarms on the same gateway; "
            "rates.ack_rate = messages acknowledged (spooled) per second while draining, from "
            "the gateway's /metrics; rates.storage_rate = first to last stored_at",
            "console latency = when the probe read the AlertOpened frame on /api/stream minus "
            "when it published the alarm (one machine clock); gateway_* = the gateway's own "
            "wgw_alert_latency_seconds (its receipt → its live feed), estimated from buckets",
            "cpu percent: 100 = one core, for a process with its children; "
            "system_cpu_percent: 100 = every core of the machine",
        ],
        "baseline": None,
        "drain": None,
        "sustained": None,
        "memory": None,
        "console": None,
        "backlog_alarm": None,
        "outage": None,
        "sip": None,
        "rates": None,
    }
    m, o = results["machine"], results["options"]
    _print(
        f"\nwgw bench — {m['cpus']} CPUs, {m['memory_gb']} GB, Python {m['python']}, "
        f"PostgreSQL {m['postgresql']}; payloads of ~{o['payload_bytes']} bytes; "
        f"{opts.repeat} run(s) of each figure"
    )
    if "baseline" in opts.phases:
        results["baseline"] = _phase_baseline(svc, opts)
    base_rate = results["baseline"]["gmqtt"]["median"]["rate"] if results["baseline"] else None
    gateway = GatewayProcess(
        dsn=svc.db.dsn,
        broker_port=svc.port,
        client_id=GATEWAY_CLIENT_ID,
        log_path=svc.work / "gateway.log",
        config=opts.config,
        spool_root=svc.work,
        # Its /metrics gives the drain's ack rate; any free port, never a fixed one.
        env=_API_ENV,
    )
    if "drain" in opts.phases:
        results["drain"] = _phase_drain(svc, opts, gateway, base_rate)
    if "sustained" in opts.phases:
        results["sustained"] = _phase_sustained(svc, opts, gateway, base_rate)
    if opts.memory_devices is not None:
        results["memory"] = _phase_memory(svc, opts, opts.memory_devices)
    if "console" in opts.phases:
        _print(
            f"\n(d) console latency: {opts.console_alerts} alarms at "
            f"{opts.console_alert_rate:g}/s per run, publish → AlertOpened on /api/stream"
        )
        _print(_CONSOLE_HEADER)
        results["console"] = run_console(svc, opts)
        _print_console(results["console"], opts.repeat)
    if "backlog" in opts.phases:
        _print(
            f"\n(e) backlog alarm: {opts.backlog_alerts} alarms at {opts.backlog_alert_rate:g}/s "
            f"while the gateway drains {opts.backlog_messages:,} heartbeats queued while it was "
            "paused; publish → AlertOpened on /api/stream"
        )
        results["backlog_alarm"] = run_backlog(svc, opts)
    if "outage" in opts.phases:
        _print(
            f"\n(f) outage: PostgreSQL stopped for {opts.outage_s:g} s under "
            f"{opts.outage_load:,} msg/s of heartbeats, alarms at {opts.console_alert_rate:g}/s; "
            "publish → AlertOpened on /api/stream"
        )
        results["outage"] = run_outage(svc, opts)
    if "sip" in opts.phases:
        _print(
            f"\n(g) SCAIP over SIP: SIPp sends {opts.sip_rate:,} heartbeats/s as SIP MESSAGE over "
            f"UDP for {opts.sip_duration_s:g} s to the SCAIP receiver; MESSAGE → 200 OK"
        )
        results["sip"] = run_sip(svc, opts)
    results["rates"] = transfer_rates(results)
    _print_summary(results)
    _print(
        "\nlatency = stored_at (start of the committing transaction) − publish time; "
        "console: SSE frame read − alarm publish, gw = the gateway's own receipt → feed; "
        "CPU 100 = one core, sys 100 = all cores"
    )
    return results


def _phase_baseline(svc: Services, opts: Options) -> dict[str, Any]:
    n = opts.messages
    _print(f"\n(0) baseline: no-op clients draining {n:,} queued QoS 1 messages")
    rm = opts.mqtt.receive_maximum
    baseline: dict[str, Any] = {"messages": n, "receive_maximum": rm}
    for library, label in (
        ("gmqtt", "gmqtt + QoS 1 packet hook"),
        ("paho", "paho-mqtt, manual_ack"),
    ):
        runs = [
            run_baseline(svc.port, library, n, receive_maximum=rm, run=run)
            for run in range(opts.repeat)
        ]
        median = _medians(runs)
        baseline[library] = {"median": median, "runs": [dataclasses.asdict(r) for r in runs]}
        _print(f"  {label:<28} {_fmt(median['rate']):>8} msg/s")
    return baseline


def _phase_drain(
    svc: Services, opts: Options, gateway: GatewayProcess, base_rate: float | None
) -> dict[str, Any]:
    n = opts.messages
    _print(f"\n(a) backlog drain: `wgw serve` started on {n:,} queued messages")
    open_session(svc.port, GATEWAY_CLIENT_ID, DEVICE_TOPIC_FILTERS, opts.mqtt.session_expiry_s)
    drains = [run_drain(svc, gateway, n, run) for run in range(opts.repeat)]
    drain = _medians(drains)
    ratio = _ratio(drain["rate_stored"], base_rate)
    _print(
        f"  first→last commit        {_fmt(drain['rate_stored']):>8} events/s   "
        f"{_fmt(None if ratio is None else 100 * ratio, '.0f')}% of the gmqtt baseline"
    )
    acked = _ratio(drain["rate_acked"], base_rate)
    _print(
        f"  acknowledged (→ spool)   {_fmt(drain['rate_acked']):>8} msg/s      "
        f"{_fmt(None if acked is None else 100 * acked, '.0f')}% of the gmqtt baseline "
        f"(drain before the spool ≈ {100 * DRAIN_TODAY_RATIO:.0f}%)"
    )
    _print(
        f"  process start→all stored {_fmt(drain['rate_wall']):>8} events/s   "
        f"(first commit {drain['startup_s']:.1f} s after start)"
    )
    _print(
        f"  CPU%: gateway {drain['gateway_cpu_percent']:.0f}, broker "
        f"{drain['broker_cpu_percent']:.0f}, PostgreSQL {drain['postgres_cpu_percent']:.0f}, "
        f"machine {drain['system_cpu_percent']:.0f}; gateway peak RSS "
        f"{drain['gateway_peak_rss_mb']:.0f} MB"
    )
    return {
        "median": drain,
        "ratio_to_gmqtt_baseline": ratio,
        "ack_ratio_to_gmqtt_baseline": acked,
        "runs": [dataclasses.asdict(r) for r in drains],
    }


def _phase_sustained(
    svc: Services, opts: Options, gateway: GatewayProcess, base_rate: float | None
) -> dict[str, Any]:
    _print(f"\n(b) sustained end-to-end: {opts.duration_s:g} s per rate")
    _print(_STEP_HEADER)
    steps, stopped = _sweep(svc, gateway, opts)
    kept_up = [s["median"]["committed_rate"] for s in steps if s["behind"] is None]
    best = max(kept_up, default=None)
    _print(f"  stopped: {stopped or 'all rates done'}")
    close_session(svc.port, GATEWAY_CLIENT_ID)
    return {
        "duration_s": opts.duration_s,
        "steps": steps,
        "stopped": stopped,
        "highest_committed_rate_kept_up": best,
        "ratio_to_gmqtt_baseline": _ratio(best, base_rate),
    }


def _phase_memory(svc: Services, opts: Options, devices: int) -> dict[str, Any]:
    _print(f"\n(c) memory: {devices:,} registered devices, one heartbeat each")
    mem = run_memory(svc, opts, devices)
    verdict = "within" if mem.peak_rss_mb < mem.target_mb else "OVER"
    _print(
        f"  RSS after registry load {mem.rss_registry_loaded_mb:.0f} MB; after the heartbeats "
        f"{mem.rss_after_heartbeats_mb:.0f} MB; peak {mem.peak_rss_mb:.0f} MB "
        f"({verdict} the {mem.target_mb:.0f} MB target)"
    )
    return dataclasses.asdict(mem)
