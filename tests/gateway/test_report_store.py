"""The night report from PostgreSQL: a hand-built DST night gives the hand-computed report."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest

from gateway.night_report import NightReport, build_report, night_window
from gateway.store import migrate
from gateway.store.reports import known_organisations, night_alerts, staff_acknowledgements
from rules.calendar import DailyWindow

pytestmark = pytest.mark.db

# The night summer time ends: 22:00 CEST (20:00Z) on 25 October 2025 to 07:00
# CET (06:00Z) on the 26th, ten hours. Every time below is UTC.
NIGHT = date(2025, 10, 25)
WINDOW = DailyWindow.parse("22:00-07:00")


def z(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2025, 10, day, hour, minute, second, tzinfo=UTC)


def insert_alert(
    conn: psycopg.Connection[Any],
    alert_id: str,
    *,
    kind: str,
    priority: int,
    opened: datetime,
    rule: str | None = None,
    paged: bool = True,
    org: str = "vallby",
    state: str = "resolved",
    closed: datetime | None = None,
    arrived: datetime | None = None,
    escalated: bool = False,
    chattering: bool = False,
    count: int = 1,
) -> None:
    conn.execute(
        "INSERT INTO alerts (alert_id, org, device_id, rule_id, kind, priority, state,"
        " occurred_at, opened_at, paged_at, last_seen_at, count, escalated, closed_at,"
        " arrived_at, chattering)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (alert_id, org, f"dev-{alert_id}", rule or kind, kind, priority, state, opened, opened,
         opened if paged else None, opened, count, escalated, closed, arrived, chattering),
    )  # fmt: skip
    move(conn, alert_id, opened, f"rule:{kind}", None, "open")


def move(
    conn: psycopg.Connection[Any],
    alert_id: str,
    at: datetime,
    actor: str,
    from_state: str | None,
    to_state: str,
) -> None:
    conn.execute(
        "INSERT INTO alert_transitions (alert_id, at, actor, from_state, to_state)"
        " VALUES (%s, %s, %s, %s, %s)",
        (alert_id, at, actor, from_state, to_state),
    )


def build_night(dsn: str) -> None:
    migrate(dsn)
    with psycopg.connect(dsn) as conn:
        # A1: button at 22:10 local, kvitterat after 2 min, på plats after 20 min.
        # A rule of the rule set raised it (its title is shown); A2's rule is
        # not in the set (any more), so it is shown by its kind.
        insert_alert(conn, "a1", kind="alarm.button", rule="alarm", priority=1,
                     opened=z(25, 20, 10), closed=z(25, 20, 50))  # fmt: skip
        move(conn, "a1", z(25, 20, 12), "anna", "open", "acknowledged")
        move(conn, "a1", z(25, 20, 15), "anna", "acknowledged", "en_route")
        move(conn, "a1", z(25, 20, 30), "anna", "en_route", "on_site")
        move(conn, "a1", z(25, 20, 50), "anna", "on_site", "resolved")
        # A2: fall at 02:30 CEST, before the clocks go back; escalated; the
        # door opened after 16 min (arrived_at), "on site" pressed later.
        insert_alert(conn, "a2", kind="sensor.fall", priority=1, opened=z(26, 0, 30),
                     escalated=True, arrived=z(26, 0, 46), closed=z(26, 1, 10))  # fmt: skip
        move(conn, "a2", z(26, 0, 35), "bo", "open", "acknowledged")
        move(conn, "a2", z(26, 0, 55), "bo", "acknowledged", "on_site")
        move(conn, "a2", z(26, 1, 10), "bo", "on_site", "resolved")
        # A3: late (never paged), cleared by the device 40 min later, nobody came.
        insert_alert(conn, "a3", kind="sensor.not_back_in_bed", rule="not_back_in_bed", priority=2,
                     opened=z(26, 2, 0), paged=False, state="cleared",
                     closed=z(26, 2, 40))  # fmt: skip
        move(conn, "a3", z(26, 2, 40), "device:dev-a3", "open", "cleared")
        # A4: 06:45 CET, still open at the report; its dispenser chatters.
        insert_alert(conn, "a4", kind="dispenser.dose_missed", rule="dose_not_taken", priority=2,
                     opened=z(26, 5, 45), state="open", chattering=True, count=6)  # fmt: skip
        # Not this night's: opened exactly at its end, just before its start,
        # and another organisation's.
        insert_alert(conn, "a5", kind="alarm.button", priority=1, opened=z(26, 6, 0))
        insert_alert(conn, "a6", kind="alarm.button", priority=1, opened=z(25, 19, 59))
        insert_alert(conn, "a7", kind="alarm.button", priority=1, opened=z(25, 21, 0),
                     org="norrby")  # fmt: skip
        move(conn, "a7", z(25, 21, 1), "bo", "open", "acknowledged")
        # Bo clears an evening backlog: 11 acknowledgements in 8 min 20 s.
        for i in range(11):
            alert_id = f"backlog-{i}"
            insert_alert(conn, alert_id, kind="lock.door_open", priority=3,
                         opened=z(25, 19, 0))  # fmt: skip
            move(conn, alert_id, z(26, 3, 0) + timedelta(seconds=50 * i), "bo", "open",
                 "acknowledged")  # fmt: skip


@pytest.fixture
async def report(db_dsn: str) -> AsyncIterator[NightReport]:
    build_night(db_dsn)
    window = night_window(NIGHT, WINDOW)
    async with await psycopg.AsyncConnection.connect(db_dsn) as conn:
        alerts = await night_alerts(conn, orgs=["vallby"], start=window[0], end=window[1])
        acks = await staff_acknowledgements(conn, orgs=["vallby"], start=window[0], end=window[1])
    yield build_report(
        org="vallby",
        day=NIGHT,
        window=WINDOW,
        alerts=alerts,
        acks=acks,
        stale_after=timedelta(minutes=30),
        as_of=z(26, 7, 0),
    )


async def test_the_dst_night_is_ten_hours_and_holds_only_its_own_alerts(
    report: NightReport,
) -> None:
    assert report.start.isoformat() == "2025-10-25T22:00:00+02:00"
    assert report.end.isoformat() == "2025-10-26T07:00:00+01:00"
    assert report.alerts == 4
    assert [(k.priority, k.kind, k.count) for k in report.by_kind] == [
        (1, "alarm.button", 1),
        (1, "sensor.fall", 1),
        (2, "dispenser.dose_missed", 1),
        (2, "sensor.not_back_in_bed", 1),
    ]


async def test_time_to_acknowledge_and_to_arrival_are_exact(report: NightReport) -> None:
    # a1: 120 s to kvittera, 1200 s to "on site"; a2: 300 s, and 960 s to the
    # door opening (arrived_at wins over its later "on site").
    ack, arrival = report.acknowledge, report.arrival
    assert (ack.count, ack.median_s, ack.worst_s, ack.p90_s) == (2, 210.0, 300.0, 282.0)
    assert (arrival.count, arrival.median_s, arrival.worst_s) == (2, 1080.0, 1200.0)
    assert report.unacknowledged == 2
    p1, p2 = report.by_priority
    assert (p1.priority, p1.alerts, p1.acknowledge.worst_s, p1.arrival.median_s) == (
        1, 2, 300.0, 1080.0,
    )  # fmt: skip
    assert (p2.priority, p2.alerts, p2.acknowledge.count, p2.arrival.count) == (2, 2, 0, 0)


async def test_escalations_floods_stale_and_chattering(report: NightReport) -> None:
    assert [e.alert_id for e in report.escalations] == ["a2"]
    assert report.escalations[0].opened_at.isoformat() == "2025-10-26T02:30:00+02:00"
    [flood] = report.floods
    assert (flood.actor, flood.count) == ("bo", 11)
    assert flood.start.isoformat() == "2025-10-26T04:00:00+01:00"  # 03:00Z, after the switch
    assert [(s.alert_id, s.waited_s, s.still_open) for s in report.stale] == [
        ("a3", 2400.0, False),  # never paged: counted from opening to the device clearing it
        ("a4", 4500.0, True),  # 06:45 to the report at 08:00 CET
    ]
    assert [(c.device_id, c.repeats) for c in report.chattering] == [("dev-a4", 6)]


async def test_organisations_are_those_with_devices_or_alerts_in_scope(db_dsn: str) -> None:
    build_night(db_dsn)
    async with await psycopg.AsyncConnection.connect(db_dsn) as conn:
        assert await known_organisations(conn, orgs=None) == ["norrby", "vallby"]
        assert await known_organisations(conn, orgs=["vallby", "elsewhere"]) == ["vallby"]
