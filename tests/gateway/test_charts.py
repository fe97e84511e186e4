"""The report's SVG charts: well-formed, accessible, in both languages, drawing its figures."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date, timedelta

import pytest

from gateway.charts import CHARTS, hourly_chart, nice_step, spread_chart, ticks
from gateway.night_report import AlertTiming, NightReport, build_report
from gateway.report_text import TEXTS, duration
from rules.ruleset import Lang
from tests.gateway.test_night_report import NIGHT, alert, at

SVG = "{http://www.w3.org/2000/svg}"


def night(*alerts: AlertTiming) -> NightReport:
    return build_report(org="vallby", day=date(2025, 11, 20), window=NIGHT, alerts=alerts,
                        acks=[], stale_after=timedelta(minutes=30), as_of=at(600))  # fmt: skip


BUSY = night(
    alert(1, acknowledged_at=at(2), arrived_at=at(15)),
    alert(5, acknowledged_at=at(8), arrived_at=at(30)),
    alert(70, priority=2, acknowledged_at=at(75)),
    alert(75, priority=2),
    alert(130, priority=3, acknowledged_at=at(160)),
)


def parse(svg: str) -> ET.Element:
    # Our own output, so the standard parser: no untrusted XML here.
    return ET.fromstring(svg)


def words(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{SVG}text")]


def test_ticks_are_round_and_reach_the_top() -> None:
    assert [nice_step(top) for top in (1, 4, 7, 23, 160, 0.4)] == [0.2, 1, 2, 5, 50, 0.1]
    assert ticks(7, whole=True) == [0, 2, 4, 6, 8]
    assert ticks(3, whole=True) == [0, 1, 2, 3]
    assert ticks(1, whole=True) == [0, 1]


@pytest.mark.parametrize("name", sorted(CHARTS))
@pytest.mark.parametrize("lang", ["sv", "en"])
def test_each_chart_is_an_accessible_svg_in_the_language_asked(name: str, lang: Lang) -> None:
    root = parse(CHARTS[name](BUSY, lang))
    assert root.tag == f"{SVG}svg" and root.get("role") == "img"
    title, desc = root.find(f"{SVG}title"), root.find(f"{SVG}desc")
    assert title is not None and desc is not None
    assert root.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"
    assert title.text == TEXTS[lang][f"{name}.title"]
    shown = words(root)
    axis = TEXTS[lang]["hourly.y" if name == "hourly" else "spread.x"]
    assert axis in shown
    # The PDF's core fonts draw Windows-1252 only.
    for text in [*shown, title.text or "", desc.text or ""]:
        text.encode("windows-1252")


def test_the_hourly_chart_stacks_each_hours_alerts_by_priority() -> None:
    root = parse(hourly_chart(BUSY))
    bars = [(b.get("data-hour", "")[11:16], b.get("data-priority"), b.get("data-count"))
            for b in root.iter(f"{SVG}rect") if b.get("class") == "bar"]  # fmt: skip
    assert bars == [("22:00", "1", "2"), ("23:00", "2", "2"), ("00:00", "3", "1")]
    shown = words(root)
    assert [w for w in shown if w.startswith("Prio")] == ["Prio 1", "Prio 2", "Prio 3"]
    assert shown[shown.index("22") : shown.index("22") + 9] == [
        "22", "23", "00", "01", "02", "03", "04", "05", "06",
    ]  # fmt: skip
    # Priority 1 sits on the axis, and a bar of two is twice as tall as one of one.
    heights = [float(b.get("height", 0)) for b in root.iter(f"{SVG}rect")
               if b.get("class") == "bar"]  # fmt: skip
    assert heights[0] == pytest.approx(heights[2] * 2)


def test_an_empty_night_says_so_in_both_charts() -> None:
    empty = night()
    hourly = parse(hourly_chart(empty, "en"))
    assert "No alerts this night." in words(hourly)
    assert not [r for r in hourly.iter(f"{SVG}rect") if r.get("class") == "bar"]
    spread = parse(spread_chart(empty, "en"))
    assert words(spread).count("no values") == 2  # acknowledge and arrival, all priorities


def test_the_spread_chart_marks_the_reports_medians_and_90th_percentiles() -> None:
    root = parse(spread_chart(BUSY))
    boxes = {(g.get("data-measure"), g.get("data-priority")): g
             for g in root.iter(f"{SVG}g") if g.get("class") == "box"}  # fmt: skip
    assert list(boxes) == [
        ("acknowledge", "all"), ("acknowledge", "1"), ("acknowledge", "2"), ("acknowledge", "3"),
        ("arrival", "all"), ("arrival", "1"), ("arrival", "2"), ("arrival", "3"),
    ]  # fmt: skip
    ack = BUSY.acknowledge
    everyone = boxes["acknowledge", "all"]
    assert everyone.get("data-count") == str(ack.count) == "4"
    assert everyone.get("data-median-s") == "240" and ack.median_s == 240.0
    assert float(everyone.get("data-p90-s", "")) == pytest.approx(ack.p90_s)
    shown = words(root)
    assert f"{duration(ack.median_s)} / {duration(ack.p90_s)}" in shown
    assert boxes["arrival", "2"].get("data-count") == "0"
    assert "inga värden" in shown
