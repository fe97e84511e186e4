"""Rules inside the running gateway: alerts are pushed before storage, timers survive a restart."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from core.clock import FrozenClock
from core.events import Family, RawMessage
from gateway.alerting import alert_json
from gateway.cli import main
from gateway.config import load_settings
from gateway.embedded import PostgresServer
from gateway.ingest import MemorySource
from gateway.public import AlertPublic
from gateway.registry import DeviceRecord
from gateway.service import Gateway
from gateway.store import migrate
from gateway.store.console import alert_history
from gateway.store.devices import import_devices
from tests.utils.gateways import judged, running_gateway, stored, ticked_settings, until
from tests.utils.services import count, rows

pytestmark = pytest.mark.db


def running(
    dsn: str, clock: FrozenClock, *, spool: str | None = None
) -> AbstractAsyncContextManager[tuple[Gateway, MemorySource]]:
    return running_gateway(ticked_settings(dsn, spool=spool), clock)


# 02:10 in Stockholm on a November night (UTC+1).
LEFT_BED = datetime(2026, 11, 24, 1, 10, tzinfo=UTC)
SENSOR = "sensor-0001"
# An hour between heartbeats: these tests are about other rules than silence.
SENSOR_RECORD = DeviceRecord(
    device_id=SENSOR, family=Family.SENSOR, org="vallby", heartbeat_interval_s=3600
)


def message(kind: str, at: datetime, event_id: str, **extra: object) -> RawMessage:
    body = {"id": event_id, "kind": kind, "ts": at.isoformat(), **extra}
    return RawMessage(f"wgw/vallby/sensor/{SENSOR}/event", json.dumps(body).encode(), at)


def published_alerts(source: MemorySource, rule_id: str) -> list[dict[str, Any]]:
    bodies = [json.loads(payload) for _, payload in source.published]
    return [b for b in bodies if b.get("alert", {}).get("rule_id") == rule_id]


@pytest.fixture
def dsn(db_dsn: str) -> str:
    migrate(db_dsn)
    import_devices(db_dsn, [SENSOR_RECORD])
    return db_dsn


async def test_a_fall_is_published_at_once_and_stored_with_its_history(dsn: str) -> None:
    clock = FrozenClock(LEFT_BED)
    async with running(dsn, clock) as (_, source):
        source.feed([message("sensor.fall", LEFT_BED, "f-1", level="alarm")])
        await until(lambda: len(published_alerts(source, "fall")) == 1)
        topic, _ = source.published[0]
        assert topic.startswith("wgw/vallby/alerts/a:")
        # The public alert model, with the rule's look; MQTT names no homes.
        [body] = published_alerts(source, "fall")
        assert set(body["alert"]) == set(AlertPublic.model_fields)
        shown = AlertPublic.model_validate(body["alert"])
        assert (shown.category, shown.icon, shown.title, shown.unit) == ("fall", "fall", "Fall", "")
        await until(lambda: count(dsn, "SELECT count(*) FROM alerts") == 1)
    assert rows(dsn, "SELECT rule_id, priority, state, count FROM alerts") == [
        ("fall", 1, "open", 1)
    ]
    assert rows(dsn, "SELECT from_state, to_state FROM alert_transitions") == [(None, "open")]


async def test_not_back_in_bed_fires_on_time_once_across_a_restart(dsn: str) -> None:
    clock = FrozenClock(LEFT_BED)
    async with running(dsn, clock) as (gateway, source):
        source.feed([message("sensor.left_bed", LEFT_BED, "lb-1")])
        await until(lambda: len(source.acked) == 1)
        await until(lambda: count(dsn, "SELECT count(*) FROM rule_state") >= 1)
    # The gateway is gone for a while; the pending deadline lives in PostgreSQL.
    clock.advance(timedelta(minutes=8))
    async with running(dsn, clock) as (gateway, source):
        clock.advance(timedelta(minutes=11, seconds=58))  # 02:29:58
        gateway.tick_now()
        assert published_alerts(source, "not_back_in_bed") == []
        clock.advance(timedelta(seconds=3))  # 02:30:01
        gateway.tick_now()
        assert len(published_alerts(source, "not_back_in_bed")) == 1
        for _ in range(3):  # more ticks: it must not fire again
            gateway.tick_now()
        assert len(published_alerts(source, "not_back_in_bed")) == 1
        await until(lambda: count(dsn, "SELECT count(*) FROM alerts") == 1)
    # And a third start does not raise it again.
    clock.advance(timedelta(minutes=1))
    async with running(dsn, clock) as (gateway, source):
        gateway.tick_now()
        gateway.tick_now()
        assert published_alerts(source, "not_back_in_bed") == []
    assert rows(dsn, "SELECT rule_id, state FROM alerts") == [("not_back_in_bed", "open")]


async def test_back_in_bed_in_time_raises_nothing(dsn: str) -> None:
    clock = FrozenClock(LEFT_BED)
    async with running(dsn, clock) as (gateway, source):
        source.feed([message("sensor.left_bed", LEFT_BED, "lb-1")])
        clock.advance(timedelta(minutes=15))
        source.feed([message("sensor.in_bed", LEFT_BED + timedelta(minutes=15), "ib-1")])
        await judged(gateway, 2)
        clock.advance(timedelta(minutes=30))
        gateway.tick_now()
        assert published_alerts(source, "not_back_in_bed") == []
        await stored(gateway)
    assert count(dsn, "SELECT count(*) FROM alerts") == 0
    assert count(dsn, "SELECT count(*) FROM events") == 2


async def test_the_alert_path_does_not_wait_for_the_database(
    own_pg: PostgresServer,
) -> None:
    dsn = own_pg.dsn
    migrate(dsn)
    import_devices(dsn, [SENSOR_RECORD])
    now = datetime.now(UTC)
    async with running(dsn, FrozenClock(now)) as (_, source):
        await asyncio.to_thread(own_pg.stop, "immediate")
        source.feed([message("sensor.fall", now, "f-down", level="alarm")])
        await until(lambda: len(published_alerts(source, "fall")) == 1)
        # Durable in the spool, so acknowledged, though PostgreSQL is away.
        await until(lambda: len(source.acked) == 1)
        await asyncio.to_thread(own_pg.start)
        await until(lambda: count(dsn, "SELECT count(*) FROM alerts") == 1, within_s=30)
    assert rows(dsn, "SELECT rule_id, state FROM alerts") == [("fall", "open")]


LOCK = "lock-0001"
NOW = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)
DIRECTORY = f"""
organisations:
  - {{org: vallby, visit_plan_enforced: false}}
staff:
  - {{org: vallby, staff_id: s-anna, pseudonym: Personal 17}}
keys:
  - {{org: vallby, key_id: key-0042, staff_id: s-anna}}
shifts:
  - {{org: vallby, staff_id: s-anna, start: "{(NOW - timedelta(hours=8)).isoformat()}",
     end: "{(NOW - timedelta(hours=5)).isoformat()}"}}
grants:
  - {{org: vallby, device_id: {LOCK}, key_id: key-0042}}
"""


async def test_a_lock_log_synced_six_hours_late_is_audited_and_pages_nothing(
    dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import_devices(dsn, [DeviceRecord(device_id=LOCK, family=Family.LOCK, org="vallby")])
    directory = tmp_path / "access.yaml"
    directory.write_text(DIRECTORY)
    config = tmp_path / "wgw.toml"
    config.write_text(f'[db]\ndsn = "{dsn}"\n')
    assert main(["access", "import", str(directory), "--config", str(config)]) == 0

    def entry(n: int, key: str, hours_ago: float) -> dict[str, object]:
        at = NOW - timedelta(hours=hours_ago)
        return {"id": f"L-{n}", "kind": "lock.unlocked", "ts": at.isoformat(), "actor": key}

    entries = [
        entry(1, "key-0042", 6),  # on shift, granted: fine
        entry(2, "key-0099", 5.9),  # nobody's key
        entry(3, "key-0042", 4),  # after the shift ended
    ]
    log = RawMessage(
        f"wgw/vallby/lock/{LOCK}/event", json.dumps({"entries": entries}).encode(), NOW
    )
    async with running(dsn, FrozenClock(NOW)) as (_, source):
        source.feed([log])
        await until(lambda: len(source.acked) == 1)
        await until(lambda: count(dsn, "SELECT count(*) FROM alerts") == 1)
        effects = published_alerts(source, "unauthorised_opening")
    # Two refused openings, one alert (repeated), marked late, never paging.
    assert [e["effect"] for e in effects] == ["AlertOpened", "AlertRepeated"]
    assert not any(e["pages"] for e in effects)
    [(late, paged_at, alert_count, reason)] = rows(
        dsn, "SELECT late, paged_at, count, reason FROM alerts"
    )
    assert (late, paged_at, alert_count) == (True, None, 2)
    assert "okänd nyckel (unknown_key)" in str(reason)
    # Every opening is in the access log with its device time, whatever the verdict.
    assert rows(dsn, "SELECT actor, at FROM access_log ORDER BY seq") == [
        ("key-0042", NOW - timedelta(hours=6)),
        ("key-0099", NOW - timedelta(hours=5.9)),
        ("key-0042", NOW - timedelta(hours=4)),
    ]
    # The auditor's question: which openings were not allowed, and why?
    capsys.readouterr()
    assert (
        main(["audit", "query", "--outside-plan", "--format", "csv", "--config", str(config)]) == 0
    )
    refused = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["actor"], r["refused"]) for r in refused] == [
        ("key-0099", "unknown_key"),
        ("key-0042", "off_shift"),
    ]


async def test_two_gateways_on_one_database_never_open_two_alerts_for_a_device_and_rule(
    dsn: str,
) -> None:
    clock = FrozenClock(LEFT_BED)
    fall = message("sensor.fall", LEFT_BED, "f-1", level="alarm")
    # A second fall a minute later reaches the other process (a misrouted device).
    later = message("sensor.fall", LEFT_BED + timedelta(minutes=1), "f-2", level="alarm")
    async with (
        running(dsn, clock) as (_, first),
        running(dsn, clock, spool="spool-2") as (_, second),
    ):
        first.feed([fall])
        second.feed([later])
        await until(lambda: len(first.acked) == 1 and len(second.acked) == 1)
        # Each process raised its own alert (different ids) and published it ...
        assert len(published_alerts(first, "fall")) == len(published_alerts(second, "fall")) == 1
    # ... but the database holds one open alert for the device and rule.
    assert rows(dsn, "SELECT rule_id, state FROM alerts") == [("fall", "open")]
    assert count(dsn, "SELECT count(*) FROM alert_transitions") == 1


async def test_two_hundred_devices_silent_together_are_one_incident(db_dsn: str) -> None:
    migrate(db_dsn)
    sensors = [
        DeviceRecord(device_id=f"sensor-{n:04d}", family=Family.SENSOR, org="vallby")
        for n in range(200)
    ]
    import_devices(db_dsn, sensors)
    clock = FrozenClock(NOW)
    async with running(db_dsn, clock) as (gateway, source):
        source.feed(
            RawMessage(
                f"wgw/vallby/sensor/{s.device_id}/event",
                json.dumps({"kind": "device.heartbeat", "ts": NOW.isoformat()}).encode(),
                NOW,
            )
            for s in sensors
        )
        await judged(gateway, 200)
        clock.advance(timedelta(minutes=10))  # 3 heartbeats of 60 s missed, and more
        gateway.tick_now()
        await until(lambda: count(db_dsn, "SELECT count(*) FROM incidents") == 1)
        for _ in range(3):  # further ticks add nothing
            gateway.tick_now()
        bodies = [json.loads(p) for _, p in source.published]
        await stored(gateway)
    assert [b["effect"] for b in bodies] == ["IncidentOpened"]
    assert bodies[0]["incident"]["devices"] == 200
    assert count(db_dsn, "SELECT count(*) FROM alerts") == 0
    assert count(db_dsn, "SELECT cardinality(silent) FROM incidents") == 200


async def test_staff_inside_hold_back_bed_exit_until_they_lock_up(dsn: str) -> None:
    home = "Lgh 1204"
    import_devices(
        dsn,
        [
            SENSOR_RECORD.model_copy(update={"unit": home}),
            DeviceRecord(device_id=LOCK, family=Family.LOCK, org="vallby", unit=home),
        ],
    )

    def lock(kind: str, at: datetime, event_id: str) -> RawMessage:
        body = {"id": event_id, "kind": kind, "ts": at.isoformat(), "actor": "key-0042"}
        return RawMessage(f"wgw/vallby/lock/{LOCK}/event", json.dumps(body).encode(), at)

    clock = FrozenClock(LEFT_BED - timedelta(minutes=5))
    async with running(dsn, clock) as (gateway, source):
        # 02:05 staff let themselves in; 02:10 the person leaves the bed with them.
        source.feed([lock("lock.unlocked", clock.now(), "k-1")])
        clock.advance(timedelta(minutes=5))
        source.feed([message("sensor.left_bed", clock.now(), "lb-1")])
        await judged(gateway, 2)
        clock.advance(timedelta(minutes=25))  # 02:35: past any 20-minute wait
        gateway.tick_now()
        assert published_alerts(source, "not_back_in_bed") == []
        # 02:40 staff lock up and leave; 02:45 the person leaves the bed again.
        source.feed([lock("lock.locked", clock.now() + timedelta(minutes=5), "k-2")])
        clock.advance(timedelta(minutes=10))
        source.feed([message("sensor.left_bed", clock.now(), "lb-2")])
        await judged(gateway, 4)
        clock.advance(timedelta(minutes=21))  # 03:06: not back within 20 minutes
        gateway.tick_now()
        assert len(published_alerts(source, "not_back_in_bed")) == 1
        await until(lambda: count(dsn, "SELECT count(*) FROM alerts") == 1)
    assert rows(dsn, "SELECT device_id, kind, actor FROM suppressions") == [
        (SENSOR, "sensor.left_bed", "key-0042")
    ]


async def test_staff_entering_during_an_open_alarm_record_its_time_of_arrival(dsn: str) -> None:
    home = "Lgh 1204"
    import_devices(
        dsn,
        [
            SENSOR_RECORD.model_copy(update={"unit": home}),
            DeviceRecord(device_id=LOCK, family=Family.LOCK, org="vallby", unit=home),
        ],
    )
    clock = FrozenClock(LEFT_BED)
    async with running(dsn, clock) as (_, source):
        source.feed([message("sensor.fall", LEFT_BED, "f-1", level="alarm")])
        await until(lambda: count(dsn, "SELECT count(*) FROM alerts") == 1)
        clock.advance(timedelta(minutes=12))
        body = {"id": "k-1", "kind": "lock.unlocked", "ts": clock.now().isoformat(),
                "actor": "key-0042"}  # fmt: skip
        source.feed(
            [RawMessage(f"wgw/vallby/lock/{LOCK}/event", json.dumps(body).encode(), clock.now())]
        )
        await until(lambda: len(source.acked) == 2)
    [(opened, arrived)] = rows(dsn, "SELECT opened_at, arrived_at FROM alerts")
    assert isinstance(opened, datetime) and isinstance(arrived, datetime)
    assert arrived == LEFT_BED + timedelta(minutes=12)
    assert arrived - opened == timedelta(minutes=12)  # the time to arrival


async def test_a_device_out_of_service_raises_nothing_until_its_period_ends(
    dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "wgw.toml"
    config.write_text(f'[db]\ndsn = "{dsn}"\n[ingest]\nregistry_refresh_s = 0.05\n')
    until_at = LEFT_BED + timedelta(hours=1)
    args = ["devices", "shelve", SENSOR, "--reason", "på sjukhus", "--by", "samordnare-3",
            "--from", (LEFT_BED - timedelta(hours=1)).isoformat(), "--until", until_at.isoformat(),
            "--config", str(config)]  # fmt: skip
    assert main(args) == 0
    assert "out of service" in capsys.readouterr().out
    assert main([*args[:3], "--reason", "", *args[5:]]) == 2  # a reason is required

    clock = FrozenClock(LEFT_BED)
    source = MemorySource(batch_max=100)
    settings = load_settings(config, rules={"tick_s": 60})
    gateway = Gateway(settings, clock=clock, source_factory=lambda: source)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    await until(gateway.ready.is_set)
    assert gateway.alerting is not None
    alerting = gateway.alerting
    assert SENSOR in alerting.shelved
    source.feed([message("sensor.fall", LEFT_BED, "f-1", level="alarm")])
    await judged(gateway, 1)
    clock.advance(timedelta(minutes=50))  # silent for 50 minutes: no "no contact" either
    gateway.tick_now()
    gateway.tick_now()
    assert source.published == []
    clock.advance(timedelta(minutes=15))  # the period ended by itself at 03:10
    # The registry refresh (every 0.05 s) sees that the period is over.
    await until(lambda: SENSOR not in alerting.shelved)
    gateway.tick_now()
    assert source.published == []  # back in service, given a full grace period from now
    source.feed([message("sensor.fall", clock.now(), "f-2", level="alarm")])
    await until(lambda: len(published_alerts(source, "fall")) == 1)
    stop.set()
    await task
    assert rows(dsn, "SELECT event_id, actor, reason LIKE '%%på sjukhus' FROM suppressions") == [
        ("f-1", "samordnare-3", True)
    ]


async def test_a_device_raising_the_same_alert_again_and_again_is_flagged_chattering(
    dsn: str,
) -> None:
    clock = FrozenClock(LEFT_BED)
    async with running(dsn, clock) as (gateway, source):
        for n in range(4):
            source.feed([message("sensor.fall", clock.now(), f"f-{n}", level="alarm")])
            clock.advance(timedelta(minutes=2))
        await judged(gateway, 4)
        await stored(gateway)
        assert rows(dsn, "SELECT count, chattering FROM alerts") == [(4, False)]
        source.feed([message("sensor.fall", clock.now(), "f-4", level="alarm")])  # 5 in 8 min
        await until(lambda: rows(dsn, "SELECT chattering FROM alerts") == [(True,)])


async def test_an_organisation_with_its_own_rule_set_is_judged_by_it(
    dsn: str, tmp_path: Path
) -> None:
    other = DeviceRecord(device_id="sensor-0002", family=Family.SENSOR, org="solglantan",
                         heartbeat_interval_s=3600)  # fmt: skip
    import_devices(dsn, [other])
    own_rules = tmp_path / "solglantan-rules.yaml"
    own_rules.write_text("rules:\n  not_back_in_bed: {within_min: 5}\n")
    clock = FrozenClock(LEFT_BED)
    source = MemorySource(batch_max=100)
    settings = load_settings(
        None, db={"dsn": dsn}, rules={"tick_s": 60, "org_files": {"solglantan": own_rules}}
    )
    gateway = Gateway(settings, clock=clock, source_factory=lambda: source)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    await until(gateway.ready.is_set)
    body = json.dumps({"id": "lb-2", "kind": "sensor.left_bed", "ts": LEFT_BED.isoformat()})
    source.feed(
        [
            message("sensor.left_bed", LEFT_BED, "lb-1"),
            RawMessage("wgw/solglantan/sensor/sensor-0002/event", body.encode(), LEFT_BED),
        ]
    )
    await judged(gateway, 2)
    clock.advance(timedelta(minutes=6))  # 02:16: past five minutes, not twenty

    def opened() -> list[str]:
        alerts = published_alerts(source, "not_back_in_bed")
        return [str(a["alert"]["org"]) for a in alerts if a["effect"] == "AlertOpened"]

    gateway.tick_now()
    assert opened() == ["solglantan"]
    clock.advance(timedelta(minutes=15))  # 02:31: now the shared rule set's twenty
    gateway.tick_now()
    assert opened() == ["solglantan", "vallby"]
    stop.set()
    await task


ALARM_UNIT = DeviceRecord(
    device_id="46700000001", family=Family.ALARM, org="vallby", heartbeat_interval_s=3600
)
# An invented home in Vallby: the unit reports its position with the alarm (SCAIP <lge>).
WITH_POSITION = (
    b"<mrq><ref>P1</ref><mty>ME</mty><cid>46700000001</cid><dty>0003</dty><stc>0010</stc>"
    b"<lge><geo>59.334591,18.063240</geo><tim>2026-11-24T02:09:30+01</tim></lge></mrq>"
)


async def test_a_scaip_position_reaches_the_published_and_the_stored_alert(db_dsn: str) -> None:
    migrate(db_dsn)
    import_devices(db_dsn, [ALARM_UNIT])
    where = {"lat": 59.334591, "lon": 18.06324, "at": "2026-11-24T01:09:30+00:00"}
    async with running(db_dsn, FrozenClock(LEFT_BED)) as (gateway, source):
        source.feed([RawMessage("scaip/vallby/mrq", WITH_POSITION, LEFT_BED)])
        await until(lambda: len(published_alerts(source, "alarm")) == 1)
        await until(lambda: count(db_dsn, "SELECT count(*) FROM alerts") == 1)
        await stored(gateway)
        assert gateway.alerting is not None
        (live,) = gateway.alerting.open_alerts()
        # The public model writes its times in UTC with a Z.
        public_where = where | {"at": "2026-11-24T01:09:30Z"}
        assert alert_json(live, gateway.alerting.rules_of("vallby"))["position"] == public_where
    assert published_alerts(source, "alarm")[0]["alert"]["position"] == public_where
    # The console's history reads it back from the opening event, after the fact.
    async with await psycopg.AsyncConnection.connect(db_dsn) as conn:
        (row,) = await alert_history(conn, orgs=None, since=None, until=None, limit=10)
    assert row["position"] == where
    public = AlertPublic.model_validate(row | {"unit": "", "area": ""}).position
    assert public is not None
    assert (public.lat, public.lon, public.at) == (
        59.334591,
        18.06324,
        LEFT_BED - timedelta(seconds=30),
    )
