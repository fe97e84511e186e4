"""End to end through real Mosquitto and PostgreSQL, the gateway in its own process."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.embedded import MosquittoServer, PostgresServer
from gateway.registry import DeviceRecord
from gateway.store import migrate
from gateway.store.devices import import_devices
from simulators import Plan, build_plan, demo_registry, publish
from tests.utils.services import (
    GatewayProcess,
    count,
    counts,
    gateway_env,
    scalar,
    wait_until,
)

GatewayFactory = Callable[[str, MosquittoServer], GatewayProcess]

pytestmark = [pytest.mark.broker, pytest.mark.db, pytest.mark.slow]

SEED = 20261123


@pytest.fixture
def registry() -> list[DeviceRecord]:
    return demo_registry(120, seed=SEED)


def _prepare(dsn: str, registry: list[DeviceRecord]) -> None:
    migrate(dsn)
    import_devices(dsn, registry)


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[GatewayFactory]:
    started: list[GatewayProcess] = []

    def make(dsn: str, broker: MosquittoServer) -> GatewayProcess:
        name = f"wgw-{uuid.uuid4().hex[:8]}"
        env = gateway_env(
            dsn=dsn, broker_port=broker.port, client_id=name, spool_dir=tmp_path / name
        )
        process = GatewayProcess(env, tmp_path / "gateway.log")
        started.append(process)
        return process

    yield make
    for process in started:
        process.kill()


def _expected_totals(plan: Plan) -> tuple[int, int]:
    return sum(plan.expected.events.values()), sum(plan.expected.dead_letters.values())


def _wait_for_plan(dsn: str, plan: Plan, gateway: GatewayProcess, timeout: float = 120) -> None:
    events, dead = _expected_totals(plan)
    wait_until(
        lambda: (
            scalar(dsn, "SELECT count(*) FROM events") == events
            and scalar(dsn, "SELECT count(*) FROM dead_letters") == dead
        ),
        timeout=timeout,
        what=f"{events} events and {dead} dead letters (gateway log: {gateway.log_text()[-2000:]})",
        proc=gateway.proc,
    )


def _assert_exactly(dsn: str, plan: Plan) -> None:
    per_family = counts(dsn, "SELECT family, count(*) FROM events GROUP BY family")
    assert per_family == Counter({f: n for f, n in plan.expected.events.items() if n})
    assert counts(dsn, "SELECT kind, count(*) FROM events GROUP BY kind") == plan.expected.kinds
    reasons = counts(dsn, "SELECT reason, count(*) FROM dead_letters GROUP BY reason")
    assert reasons == plan.expected.dead_letters
    # The idempotency key held: no event is in the table twice.
    assert scalar(dsn, "SELECT count(*) - count(DISTINCT (device_id, event_id)) FROM events") == 0
    # Every dead letter kept its raw bytes.
    assert scalar(dsn, "SELECT count(*) FROM dead_letters WHERE payload_size = 0") == 0


def test_a_seeded_night_of_ten_thousand_messages_is_stored_exactly(
    db_dsn: str,
    mosquitto: MosquittoServer,
    registry: list[DeviceRecord],
    gateway_factory: GatewayFactory,
) -> None:
    _prepare(db_dsn, registry)
    plan = build_plan("mixed", devices=registry, seed=SEED, end=datetime.now(UTC), messages=10_000)
    assert len(plan.messages) >= 10_000
    gateway = gateway_factory(db_dsn, mosquitto)
    gateway.start()
    report = publish(plan, mosquitto.url)
    assert report.acked == len(plan.messages)
    _wait_for_plan(db_dsn, plan, gateway)
    _assert_exactly(db_dsn, plan)
    assert gateway.stop() == 0


def _ingest_through_a_fault(
    dsn: str,
    broker: MosquittoServer,
    registry: list[DeviceRecord],
    gateway_factory: GatewayFactory,
    *,
    seed: int,
    fault: Callable[[GatewayProcess], None],
) -> None:
    """Publish a night at a steady rate, strike ``fault`` once it is flowing, demand exactness."""
    _prepare(dsn, registry)
    plan = build_plan("mixed", devices=registry, seed=seed, end=datetime.now(UTC), messages=8_000)
    gateway = gateway_factory(dsn, broker)
    gateway.start()
    publisher = threading.Thread(target=publish, args=(plan, broker.url), kwargs={"rate": 2000.0})
    publisher.start()
    wait_until(
        lambda: count(dsn, "SELECT count(*) FROM events") > 1_500,
        timeout=60,
        what="the first events to be stored",
    )
    fault(gateway)
    # The fault struck mid-stream: the night was not yet all stored.
    assert count(dsn, "SELECT count(*) FROM events") < plan.expected.total_events
    publisher.join(120)
    _wait_for_plan(dsn, plan, gateway)
    _assert_exactly(dsn, plan)


def test_gateway_killed_mid_stream_loses_and_duplicates_nothing(
    db_dsn: str,
    mosquitto: MosquittoServer,
    registry: list[DeviceRecord],
    gateway_factory: GatewayFactory,
) -> None:
    def crash_and_restart(gateway: GatewayProcess) -> None:
        gateway.kill()  # SIGKILL: no flush, unacknowledged batches are redelivered
        gateway.start()

    _ingest_through_a_fault(
        db_dsn, mosquitto, registry, gateway_factory, seed=SEED + 1, fault=crash_and_restart
    )


def test_broker_restart_mid_stream_loses_and_duplicates_nothing(
    db_dsn: str,
    mosquitto: MosquittoServer,
    registry: list[DeviceRecord],
    gateway_factory: GatewayFactory,
) -> None:
    def restart_broker(gateway: GatewayProcess) -> None:
        mosquitto.stop()  # SIGTERM: Mosquitto writes its persistence file
        mosquitto.start()  # same port, same persistence file

    _ingest_through_a_fault(
        db_dsn, mosquitto, registry, gateway_factory, seed=SEED + 2, fault=restart_broker
    )


def test_database_down_mid_stream_loses_and_duplicates_nothing(
    own_pg: PostgresServer,
    mosquitto: MosquittoServer,
    registry: list[DeviceRecord],
    gateway_factory: GatewayFactory,
) -> None:
    def crash_database(gateway: GatewayProcess) -> None:
        own_pg.stop("immediate")  # a crash: no clean shutdown
        wait_until(
            lambda: "the spool keeps everything" in gateway.log_text(),
            timeout=30,
            what="a failed write",
        )
        own_pg.start()

    _ingest_through_a_fault(
        own_pg.dsn, mosquitto, registry, gateway_factory, seed=SEED + 3, fault=crash_database
    )
