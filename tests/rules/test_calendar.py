"""Daily windows across midnight in Europe/Stockholm, on ordinary and DST nights."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from rules.calendar import DailyWindow
from tests.rules import SE, se

NIGHT = DailyWindow.parse("22:00-07:00")


def test_parse_accepts_an_en_dash_and_renders_back() -> None:
    window = DailyWindow.parse("22:00–07:00")
    assert window == DailyWindow(time(22), time(7))
    assert str(window) == "22:00-07:00"


@pytest.mark.parametrize("text", ["22-07", "25:00-07:00", "22:00", "07:00-07:00", ""])
def test_parse_refuses_what_is_not_a_window(text: str) -> None:
    with pytest.raises(ValueError, match="window"):
        DailyWindow.parse(text)


@pytest.mark.parametrize(
    ("hour", "minute", "inside"),
    [(21, 59, False), (22, 0, True), (23, 59, True), (0, 0, True), (6, 59, True), (7, 0, False)],
)
def test_night_across_midnight_on_an_ordinary_night(hour: int, minute: int, inside: bool) -> None:
    assert NIGHT.contains(se(2026, 11, 23, hour, minute)) is inside


def test_a_window_inside_one_day() -> None:
    evening = DailyWindow.parse("15:00-22:00")
    assert evening.contains(se(2026, 11, 23, 15))
    assert not evening.contains(se(2026, 11, 23, 22))
    assert not evening.contains(se(2026, 11, 23, 3))


def test_spring_night_ends_at_seven_summer_time() -> None:
    # 29 March 2026: clocks jump 02:00 → 03:00, so 07:00 local is 05:00 UTC,
    # not 06:00 UTC as the evening's offset would suggest.
    assert NIGHT.contains(datetime(2026, 3, 28, 21, 0, tzinfo=UTC))  # 22:00 CET
    assert NIGHT.contains(datetime(2026, 3, 29, 4, 59, tzinfo=UTC))  # 06:59 CEST
    assert not NIGHT.contains(datetime(2026, 3, 29, 5, 0, tzinfo=UTC))  # 07:00 CEST
    assert not NIGHT.contains(datetime(2026, 3, 28, 20, 59, tzinfo=UTC))  # 21:59 CET


def test_autumn_night_ends_at_seven_winter_time() -> None:
    # 25 October 2026: clocks fall back 03:00 → 02:00; the night is an hour longer.
    assert NIGHT.contains(datetime(2026, 10, 24, 20, 0, tzinfo=UTC))  # 22:00 CEST
    assert NIGHT.contains(datetime(2026, 10, 25, 5, 30, tzinfo=UTC))  # 06:30 CET
    assert not NIGHT.contains(datetime(2026, 10, 25, 6, 0, tzinfo=UTC))  # 07:00 CET
    # Both passes through the repeated hour are night.
    assert NIGHT.contains(se(2026, 10, 25, 2, 30, fold=0))
    assert NIGHT.contains(se(2026, 10, 25, 2, 30, fold=1))


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        NIGHT.contains(datetime(2026, 11, 23, 2, 0))


def test_another_zone_can_be_asked_for() -> None:
    at = datetime(2026, 11, 23, 6, 30, tzinfo=UTC)  # 07:30 in Stockholm, 06:30 in London
    assert not NIGHT.contains(at, SE)
    assert NIGHT.contains(at, ZoneInfo("Europe/London"))
