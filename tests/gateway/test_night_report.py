"""The night report's arithmetic, without a database: windows, medians, floods, stale alerts."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from gateway.night_report import (
    CSV_FIELDS,
    Acknowledgement,
    AlertTiming,
    build_report,
    by_hour,
    chattering_devices,
    csv_rows,
    floods,
    is_staff,
    night_window,
    percentile,
    stale_alerts,
    summarize,
    time_to_acknowledge,
    time_to_arrival,
    tonight,
)
from rules.calendar import STOCKHOLM, DailyWindow

T = datetime(2025, 11, 20, 21, 0, tzinfo=UTC)  # 22:00 in Stockholm (CET)
NIGHT = DailyWindow.parse("22:00-07:00")


def at(minutes: float) -> datetime:
    return T + timedelta(minutes=minutes)


def alert(n: int, **changes: object) -> AlertTiming:
    base = AlertTiming(
        alert_id=f"a:{n}",
        org="vallby",
        device_id=f"dev-{n}",
        rule_id="alarm_button",
        kind="alarm.button",
        priority=1,
        opened_at=at(n),
        paged_at=at(n),
        acknowledged_at=None,
        arrived_at=None,
        closed_at=None,
        escalated=False,
        chattering=False,
        count=1,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_a_night_is_nine_hours_and_a_dst_night_eight_or_ten() -> None:
    def night(day: date) -> tuple[datetime, datetime]:
        return night_window(day, NIGHT)

    assert night(date(2025, 11, 20)) == (T, datetime(2025, 11, 21, 6, tzinfo=UTC))
    # Summer time begins at 02:00 on 30 March 2025: 22:00 CET to 07:00 CEST.
    spring = night(date(2025, 3, 29))
    assert spring == (datetime(2025, 3, 29, 21, tzinfo=UTC), datetime(2025, 3, 30, 5, tzinfo=UTC))
    # It ends at 03:00 on 26 October 2025: 22:00 CEST to 07:00 CET.
    autumn = night(date(2025, 10, 25))
    assert autumn == (datetime(2025, 10, 25, 20, tzinfo=UTC), datetime(2025, 10, 26, 6, tzinfo=UTC))
    assert [e - s for s, e in (spring, autumn)] == [timedelta(hours=8), timedelta(hours=10)]


def test_a_window_that_ends_later_the_same_day_stays_on_that_day() -> None:
    start, end = night_window(date(2025, 11, 21), DailyWindow.parse("00:00-06:00"), tz=STOCKHOLM)
    assert (start, end) == (
        datetime(2025, 11, 20, 23, tzinfo=UTC),
        datetime(2025, 11, 21, 5, tzinfo=UTC),
    )


def test_staff_are_everyone_but_the_engine_and_devices() -> None:
    assert is_staff("anna") and is_staff("rulebook")
    assert not is_staff("rule:fall") and not is_staff("device:lock-0001")


def test_median_and_worst_of_the_times_present() -> None:
    assert summarize([30.0, None, 10.0, 20.0]).model_dump() == {
        "count": 3, "median_s": 20.0, "worst_s": 30.0,
        "best_s": 10.0, "q1_s": 15.0, "q3_s": 25.0, "p90_s": 28.0,
    }  # fmt: skip
    assert summarize([10.0, 40.0]).median_s == 25.0
    assert summarize([None]).model_dump() == {
        "count": 0, "median_s": None, "worst_s": None,
        "best_s": None, "q1_s": None, "q3_s": None, "p90_s": None,
    }  # fmt: skip


def test_acknowledging_counts_from_paging_or_from_opening_when_never_paged() -> None:
    paged_late = alert(1, paged_at=at(3), acknowledged_at=at(5))
    never_paged = alert(2, paged_at=None, acknowledged_at=at(12))
    assert time_to_acknowledge(paged_late) == 120.0  # paged at 3, acknowledged at 5 min
    assert time_to_acknowledge(never_paged) == 600.0  # opened at 2, acknowledged at 12 min
    assert time_to_acknowledge(alert(3)) is None
    assert time_to_arrival(alert(4, arrived_at=at(19))) == 900.0
    assert time_to_arrival(alert(4)) is None


def acks(actor: str, minutes: list[float]) -> list[Acknowledgement]:
    return [Acknowledgement(actor, at(m), f"a:{actor}:{m}") for m in minutes]


def test_more_than_ten_acknowledgements_in_ten_minutes_is_a_flood() -> None:
    eleven = acks("anna", [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9.5])
    [flood] = floods(eleven)
    assert (flood.actor, flood.start, flood.end, flood.count) == ("anna", at(0), at(10), 11)
    assert floods(eleven[:10]) == []


def test_the_window_is_half_open_and_the_engine_never_floods() -> None:
    # Eleven, but the last exactly ten minutes after the first: not in its window.
    assert floods(acks("anna", [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10])) == []
    assert floods(acks("rule:fall", [m / 10 for m in range(30)])) == []


def test_floods_are_reported_once_each_per_operator() -> None:
    burst = [m / 2 for m in range(15)]  # 15 within 7 minutes
    later = [120 + m / 2 for m in range(12)]
    found = floods([*acks("anna", burst + later), *acks("bo", burst[:10])])
    assert [(f.actor, f.start, f.count) for f in found] == [
        ("anna", at(0), 15),
        ("anna", at(120), 12),
    ]


def test_stale_alerts_waited_unacknowledged_over_the_limit() -> None:
    limit = timedelta(minutes=30)
    as_of = at(600)
    alerts = [
        alert(1, acknowledged_at=at(1 + 31)),  # stale: 31 minutes
        alert(2, acknowledged_at=at(2 + 30)),  # exactly the limit: not stale
        alert(3, closed_at=at(3 + 45)),  # cleared by the device after 45 minutes, nobody came
        alert(4, paged_at=None, closed_at=at(4 + 10)),  # cleared soon: not stale
        alert(5),  # still open when the report is made
    ]
    found = stale_alerts(alerts, limit=limit, as_of=as_of)
    assert [(s.alert_id, s.waited_s, s.still_open) for s in found] == [
        ("a:1", 31 * 60.0, False),
        ("a:3", 45 * 60.0, False),
        ("a:5", 595 * 60.0, True),
    ]
    assert found[0].acknowledged_at == at(32) and found[1].acknowledged_at is None


def test_chattering_devices_are_grouped_with_their_repeats() -> None:
    alerts = [
        alert(1, device_id="bed-1", chattering=True, count=7, kind="sensor.left_bed"),
        alert(2, device_id="bed-1", chattering=True, count=5, kind="sensor.not_back"),
        alert(3, device_id="door-1", chattering=True, count=20, kind="lock.door_open"),
        alert(4, device_id="bed-2", count=50),
    ]
    assert [(c.device_id, c.kinds, c.alerts, c.repeats) for c in chattering_devices(alerts)] == [
        ("door-1", ["lock.door_open"], 1, 20),
        ("bed-1", ["sensor.left_bed", "sensor.not_back"], 2, 12),
    ]


def test_the_report_shows_local_times_and_flattens_to_the_documented_csv() -> None:
    alerts = [
        alert(1, acknowledged_at=at(3), arrived_at=at(11), escalated=True),
        alert(2, priority=2, kind="sensor.fall", acknowledged_at=at(62)),
    ]
    report = build_report(
        org="vallby",
        day=date(2025, 11, 20),
        window=NIGHT,
        alerts=alerts,
        acks=acks("anna", [0.5 * m for m in range(11)]),
        stale_after=timedelta(minutes=30),
        as_of=at(600),
    )
    assert report.start.isoformat() == "2025-11-20T22:00:00+01:00"
    assert report.escalations[0].opened_at.isoformat() == "2025-11-20T22:01:00+01:00"
    assert (report.alerts, report.unacknowledged) == (2, 0)
    ack, arrival = report.acknowledge, report.arrival
    assert (ack.count, ack.median_s, ack.worst_s, ack.p90_s) == (2, 1860.0, 3600.0, 3252.0)
    assert (arrival.count, arrival.median_s, arrival.worst_s) == (1, 600.0, 600.0)
    rows = csv_rows(report)
    assert all(tuple(r) == CSV_FIELDS for r in rows)
    assert all(r["org"] == "vallby" for r in rows)
    assert [r["section"] for r in rows] == [
        "night", "by_kind", "by_kind",
        "acknowledge", "acknowledge", "acknowledge", "arrival", "arrival", "arrival",
        "escalation", "flood", "stale",
    ]  # fmt: skip
    ack_all = rows[3]
    assert (ack_all["priority"], ack_all["count"], ack_all["median_s"], ack_all["worst_s"]) == (
        "", "2", "1860.0", "3600.0",
    )  # fmt: skip
    stale = rows[-1]
    assert (stale["alert_id"], stale["waited_s"], stale["end"]) == (
        "a:2", "3600.0", "2025-11-20T23:02:00+01:00",
    )  # fmt: skip


def test_percentiles_interpolate_between_the_nearest_ranks() -> None:
    values = [60.0, 120.0, 180.0, 240.0, 600.0]
    assert [percentile(values, p) for p in (0, 25, 50, 75, 90, 100)] == [
        60.0, 120.0, 180.0, 240.0, 456.0, 600.0,
    ]  # fmt: skip
    assert percentile([42.0], 90) == 42.0
    spread = summarize([600.0, None, 60.0, 240.0, 180.0, 120.0])
    assert (spread.best_s, spread.q1_s, spread.median_s, spread.q3_s, spread.p90_s) == (
        60.0, 120.0, 180.0, 240.0, 456.0,
    )  # fmt: skip


def test_alerts_are_counted_per_hour_of_the_night_and_priority() -> None:
    window = night_window(date(2025, 11, 20), NIGHT)
    alerts = [
        alert(0),  # 22:00 sharp: the first hour
        alert(59, priority=2),  # 22:59: still the first hour
        alert(60, priority=2),  # 23:00: the second
        alert(61),
        alert(9 * 60 - 1, priority=3),  # 06:59: the last hour
    ]
    hours = by_hour(alerts, window)
    assert len(hours) == 9
    assert hours[0].start == T and hours[-1].end == window[1]
    table = [(h.alerts, [(c.priority, c.count) for c in h.by_priority]) for h in hours]
    assert table[0] == (2, [(1, 1), (2, 1), (3, 0)])
    assert table[1] == (2, [(1, 1), (2, 1), (3, 0)])
    assert table[2:8] == [(0, [(1, 0), (2, 0), (3, 0)])] * 6
    assert table[8] == (1, [(1, 0), (2, 0), (3, 1)])
    assert sum(h.alerts for h in hours) == len(alerts)


def test_a_dst_night_has_ten_hours_and_the_repeated_hour_twice() -> None:
    # 26 October 2025: 03:00 CEST becomes 02:00 CET, so 02 comes twice.
    window = night_window(date(2025, 10, 25), NIGHT)
    hours = by_hour([], window)
    assert [f"{h.start.astimezone(STOCKHOLM):%H}" for h in hours] == [
        "22", "23", "00", "01", "02", "02", "03", "04", "05", "06",
    ]  # fmt: skip
    assert all(h.by_priority == [] and h.alerts == 0 for h in hours)


def stockholm(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=STOCKHOLM)


def test_tonight_is_the_coming_night_by_day_and_the_night_in_progress_after_midnight() -> None:
    evening = date(2025, 11, 20)
    # During the day the coming night; in the evening the one begun; after midnight
    # still that one (not the night before it), until the window ends at 07:00.
    for now in ("2025-11-20 07:00", "2025-11-20 14:00", "2025-11-20 22:30",
                "2025-11-21 00:00", "2025-11-21 03:00", "2025-11-21 06:59"):  # fmt: skip
        assert tonight(stockholm(now), NIGHT) == evening, now
    assert tonight(stockholm("2025-11-20 06:59"), NIGHT) == date(2025, 11, 19)
    # A window that ends the same day: once it is over, tonight is tomorrow's.
    small_hours = DailyWindow.parse("00:00-06:00")
    assert tonight(stockholm("2025-11-21 03:00"), small_hours) == date(2025, 11, 21)
    assert tonight(stockholm("2025-11-21 14:00"), small_hours) == date(2025, 11, 22)


def test_the_report_says_whether_its_night_is_tonight_and_how_far_it_is() -> None:
    def made(day: date, minutes: float) -> tuple[str, bool]:
        report = build_report(org="vallby", day=day, window=NIGHT, alerts=[], acks=[],
                              stale_after=timedelta(minutes=30), as_of=at(minutes))  # fmt: skip
        assert (report.window, report.timezone) == ("22:00-07:00", "Europe/Stockholm")
        return report.phase, report.tonight

    assert made(date(2025, 11, 20), -8 * 60) == ("coming", True)  # 14:00 that day
    assert made(date(2025, 11, 20), 5 * 60) == ("in_progress", True)  # 03:00
    assert made(date(2025, 11, 19), 5 * 60) == ("ended", False)  # the night before
