"""/healthz and /metrics: what the operations team and Prometheus see, and the database down."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from datetime import UTC, datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.events import RawMessage
from gateway.embedded import PostgresServer
from tests.api.conftest import (
    OPERATOR_A,
    ORG_A,
    ORG_B,
    SENSOR_A1,
    SENSOR_A2,
    SENSOR_A3,
    SENSOR_B1,
    UNIT,
    Shared,
    db_rows,
    device_message,
    eventually,
    open_stream,
    prepare_database,
    running_api,
)

pytestmark = pytest.mark.db

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _samples(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: v for (n, labels), v in samples.items() if n == name}


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


async def test_healthz_says_healthy_without_a_login(shared: Shared) -> None:
    response = await shared.client().get("/healthz")
    assert response.status_code == 200
    health = response.json()
    assert (health["ok"], health["broker"], health["database"]) == (True, True, True)
    assert health["ingest_lag_s"] < 30
    assert health["problems"] == []


def _raw(topic: str, payload: bytes) -> RawMessage:
    return RawMessage(topic, payload, datetime.now(UTC))


async def test_metrics_count_what_was_fed(prepared_dsn: str) -> None:
    async with running_api(prepared_dsn) as api:
        messages: Iterable[RawMessage] = [
            device_message(SENSOR_A1, "sensor.fall", level="alarm"),
            device_message(SENSOR_B1, "sensor.fall", level="alarm"),
            device_message(SENSOR_A2, "device.heartbeat", battery=70),
            _raw(f"wgw/{ORG_A}/sensor/{SENSOR_A2}/event", b"{not json"),
            _raw(f"wgw/{ORG_A}/sensor/{SENSOR_A2}/event", b"[]"),
            _raw(f"wgw/{ORG_A}/sensor/sensor-9999/event",
                 json.dumps({"kind": "sensor.fall", "ts": datetime.now(UTC).isoformat()}).encode()),
        ]  # fmt: skip
        fed = list(messages)
        api.source.feed(fed)
        await eventually(lambda: len(api.source.acked) == len(fed), what="every message spooled")
        await eventually(
            lambda: api.gateway.spool_status().waiting_storage == 0, what="every entry stored"
        )
        await eventually(lambda: len(api.open_alerts()) == 2, what="two falls open")

        response = await api.client().get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert all(unit not in response.text for unit in UNIT.values())  # no personal data
        samples = _samples(response.text)
        assert _by_label(samples, "wgw_events_in_total", "family") == {"sensor": 3}
        assert _by_label(samples, "wgw_dead_letters_total", "reason") == {
            "invalid_json": 2,
            "unknown_device": 1,
        }
        assert _value(samples, "wgw_messages_total") == len(fed)
        assert _value(samples, "wgw_events_stored_total") == 3
        # Every message was in exactly one spooled batch.
        assert _value(samples, "wgw_batch_size_messages_sum") == len(fed)
        assert _value(samples, "wgw_batch_size_messages_count") >= 1
        assert _value(samples, "wgw_ingest_lag_seconds") == 0  # nothing waits for a commit
        assert _value(samples, "wgw_alert_latency_seconds_count") == 2
        assert 0 < _value(samples, "wgw_alert_latency_seconds_sum") < 5
        assert _value(samples, "wgw_alert_latency_seconds_bucket", le="+Inf") == 2
        open_alerts = {
            (dict(labels)["org"], dict(labels)["priority"]): v
            for (name, labels), v in samples.items()
            if name == "wgw_open_alerts"
        }
        assert open_alerts == {(ORG_A, "1"): 1, (ORG_B, "1"): 1}

        # Handled alerts leave the gauge.
        operator = await api.login(OPERATOR_A)
        [alert_a] = [a.alert_id for a in api.open_alerts() if a.org == ORG_A]
        assert (await operator.post(f"/api/alerts/{alert_a}/acknowledge", json={})).is_success
        body = {"outcome": "false_alarm"}
        assert (await operator.post(f"/api/alerts/{alert_a}/resolve", json=body)).is_success
        after = _samples((await api.client().get("/metrics")).text)
        assert _by_label(after, "wgw_open_alerts", "org") == {ORG_B: 1}


@pytest.mark.slow
async def test_with_postgresql_down_healthz_says_so_and_alerts_still_reach_the_console(
    own_pg: PostgresServer, password_hash: str
) -> None:
    prepare_database(own_pg.dsn, password_hash)
    async with running_api(own_pg.dsn) as api:
        operator = await api.login(OPERATOR_A)
        async with open_stream(operator) as stream:
            assert (await stream.next()).event == "snapshot"
            await asyncio.to_thread(own_pg.stop, "immediate")

            # Reported, but no 503: the gateway still takes messages and pages.
            response = await api.client().get("/healthz")
            assert response.status_code == 200
            health = response.json()
            assert (health["ok"], health["broker"], health["database"]) == (True, True, False)
            [problem] = health["problems"]
            assert problem["code"] == "database_down"
            assert problem["detail"].startswith("PostgreSQL is unreachable")

            # DESIGN: alerts keep flowing while the database is down. Falls in three
            # homes: none may wait for another's failed lookup of unit and area.
            loop = asyncio.get_running_loop()
            fed_at = loop.time()
            for device in (SENSOR_A1, SENSOR_A2, SENSOR_A3):
                api.feed(device, "sensor.fall", level="alarm")
            frames = [await stream.next(within_s=10) for _ in range(3)]
            took = loop.time() - fed_at
            assert [(f.event, f.data["effect"], f.data["alert"]["device_id"]) for f in frames] == [
                ("alert", "AlertOpened", device) for device in (SENSOR_A1, SENSOR_A2, SENSOR_A3)
            ]
            assert took < 4, f"three falls took {took:.1f} s to reach the console"
            # Durable in the spool, so acknowledged, though not yet stored.
            await eventually(lambda: len(api.source.acked) == 3, what="spooled")
            alert_id = frames[0].data["alert"]["alert_id"]
            # The patrol can still take it: the session PostgreSQL confirmed holds.
            taken = await operator.post(f"/api/alerts/{alert_id}/acknowledge", json={})
            assert taken.status_code == 200, taken.text
            moved = await stream.next(within_s=10)
            assert (moved.data["alert"]["alert_id"], moved.data["alert"]["state"]) == (
                alert_id, "acknowledged"
            )  # fmt: skip
            # A session it never confirmed is not let in meanwhile.
            stranger = api.client()
            stranger.cookies.set("wgw_session", "never-issued")
            assert (await stranger.get("/api/alerts")).status_code == 503

            await asyncio.to_thread(own_pg.start)

            async def healthy() -> bool:
                return bool((await api.client().get("/healthz")).json()["database"])

            await eventually(healthy, within_s=30, what="healthz to see PostgreSQL again")

            async def stored_acknowledged() -> bool:
                return await db_rows(
                    own_pg.dsn, "SELECT state, handled_by FROM alerts WHERE alert_id = %s",
                    alert_id,
                ) == [("acknowledged", OPERATOR_A)]  # fmt: skip

            await eventually(stored_acknowledged, within_s=30, what="the acknowledgement stored")
            assert await db_rows(
                own_pg.dsn,
                "SELECT actor FROM access_log"
                " WHERE action = 'acknowledge' AND detail->>'alert_id' = %s",
                alert_id,
            ) == [(OPERATOR_A,)]


@pytest.mark.slow
async def test_a_full_spool_stops_acknowledging_says_why_and_drains_losing_nothing(
    own_pg: PostgresServer, password_hash: str
) -> None:
    # A spool of 1 MiB fills within a few thousand heartbeats while PostgreSQL is away.
    prepare_database(own_pg.dsn, password_hash)
    spool = {"max_bytes": 1024 * 1024, "segment_bytes": 64 * 1024}
    async with running_api(own_pg.dsn, spool=spool) as api:
        client = api.client()
        fed: list[RawMessage] = []

        def feed(messages: list[RawMessage]) -> None:
            fed.extend(messages)
            api.source.feed(messages)

        def heartbeats(n: int) -> list[RawMessage]:
            return [device_message(SENSOR_A2, "device.heartbeat", battery=80) for _ in range(n)]

        await asyncio.to_thread(own_pg.stop, "immediate")
        # A fall during the outage is published on the alert topic, PostgreSQL or not.
        feed([device_message(SENSOR_A1, "sensor.fall", level="alarm")])
        await eventually(
            lambda: any(f"wgw/{ORG_A}/alerts/" in topic for topic, _ in api.source.published),
            what="the fall on the MQTT alert topic",
        )
        # Heartbeats until the gateway stops acknowledging.
        while not api.gateway.spool_status().full:
            assert len(fed) < 50_000, f"the spool never filled: {api.gateway.spool_status()}"
            feed(heartbeats(200))
            await eventually(
                lambda: len(api.source.acked) == len(fed) or api.gateway.spool_status().full,
                what="the heartbeats spooled, or the spool full",
            )
        status = api.gateway.spool_status()
        assert status.bytes >= status.limit_bytes and not status.storage_up
        acked = len(api.source.acked)
        assert acked < len(fed)

        # /healthz says why, and so does /metrics.
        response = await client.get("/healthz")
        assert response.status_code == 503
        health = response.json()
        assert [p["code"] for p in health["problems"]] == ["spool_full", "database_down"]
        assert "acknowledgements have stopped" in health["problems"][0]["detail"]
        assert (health["ok"], health["database"], health["spool"]["full"]) == (False, False, True)
        samples = _samples((await client.get("/metrics")).text)
        assert _value(samples, "wgw_spool_full") == 1

        # Back-pressure: what arrives meanwhile is not acknowledged (the broker keeps it).
        feed(heartbeats(300))
        await asyncio.sleep(1.0)
        assert len(api.source.acked) == acked
        assert api.gateway.spool_status().full

        await asyncio.to_thread(own_pg.start)
        await eventually(
            lambda: len(api.source.acked) == len(fed), within_s=60, what="everything acknowledged"
        )
        await eventually(
            lambda: api.gateway.spool_status().waiting_storage == 0,
            within_s=60,
            what="the spool drained into PostgreSQL",
        )
        # Every message acknowledged once, in the order it arrived.
        assert api.source.acked == [(0, n) for n in range(1, len(fed) + 1)]
        assert await db_rows(
            own_pg.dsn, "SELECT count(*), count(DISTINCT event_id) FROM events"
        ) == [(len(fed), len(fed))]
        assert await db_rows(
            own_pg.dsn, "SELECT kind, state FROM alerts WHERE device_id = %s", SENSOR_A1
        ) == [("sensor.fall", "open")]
        assert not api.gateway.spool_status().full

        async def healthy() -> bool:
            answer = await client.get("/healthz")
            return answer.status_code == 200 and answer.json()["problems"] == []

        await eventually(healthy, within_s=30, what="/healthz healthy again")
