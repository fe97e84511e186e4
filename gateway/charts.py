"""The night report's charts as plain SVG text, one drawing for both the page and the PDF.

Drawn here, server-side, from a ``NightReport``: the page inlines them as they
come and the PDF embeds the same text, so the two cannot disagree. Only what
both Chromium and fpdf2's SVG reader understand is used: rect, line, path and
text with explicit colours, no CSS and no characters outside Windows-1252 (the
PDF's core fonts). Each chart has a title and a description for screen readers
and, per mark, data attributes naming the figure it draws.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from gateway.night_report import Durations, NightReport
from gateway.report_text import duration, text
from rules.ruleset import Lang

WIDTH = 640
FONT = "Helvetica"
INK = "#1f2937"
GRID = "#d1d5db"
MUTED = "#4b5563"
# The console's priority colours (console.css), so a chart reads like the queue.
PRIORITY_COLOURS = {1: "#dc2626", 2: "#d97706", 3: "#ca8a04"}
OTHER_PRIORITY = "#64748b"
ALL_COLOUR = "#2563eb"


def priority_colour(priority: int | None) -> str:
    """The fill of a priority's marks; None (all priorities) has its own."""
    if priority is None:
        return ALL_COLOUR
    return PRIORITY_COLOURS.get(priority, OTHER_PRIORITY)


def nice_step(top: float, most_ticks: int = 5) -> float:
    """A round tick step (1, 2 or 5 times a power of ten) giving at most ``most_ticks`` steps."""
    if top <= 0:
        return 1.0
    raw = top / most_ticks
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def ticks(top: float, *, whole: bool = False) -> list[float]:
    """Axis ticks from 0 to at least ``top``; ``whole`` keeps the step at 1 or more (counts)."""
    step = nice_step(top)
    if whole:
        step = max(1.0, step)
    count = max(1, math.ceil(top / step - 1e-9))
    return [i * step for i in range(count + 1)]


def _num(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _text(x: float, y: float, words: str, *, size: int = 11, anchor: str = "start",
          fill: str = INK, weight: str = "normal") -> str:  # fmt: skip
    return (
        f'<text x="{_num(x)}" y="{_num(y)}" font-family="{FONT}" font-size="{size}"'
        f' font-weight="{weight}" text-anchor="{anchor}" fill="{fill}">{escape(words)}</text>'
    )


def _line(x1: float, y1: float, x2: float, y2: float, *, stroke: str = GRID,
          width: float = 1) -> str:  # fmt: skip
    return (
        f'<line x1="{_num(x1)}" y1="{_num(y1)}" x2="{_num(x2)}" y2="{_num(y2)}"'
        f' stroke="{stroke}" stroke-width="{_num(width)}"/>'
    )


def _attrs(data: dict[str, str]) -> str:
    return "".join(f" data-{k}={quoteattr(v)}" for k, v in data.items())


def _svg(name: str, height: float, title: str, desc: str, body: Iterable[str]) -> str:
    """The chart's root: a white figure of a fixed size, with its title and description."""
    ids = f"chart-{name}-title chart-{name}-desc"
    return "".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{_num(height)}"'
        f' viewBox="0 0 {WIDTH} {_num(height)}" role="img" aria-labelledby="{ids}"'
        f' class="chart" data-chart="{name}">',
        f'<title id="chart-{name}-title">{escape(title)}</title>',
        f'<desc id="chart-{name}-desc">{escape(desc)}</desc>',
        f'<rect x="0" y="0" width="{WIDTH}" height="{_num(height)}" fill="#ffffff"/>',
        *body,
        "</svg>",
    ])  # fmt: skip


def _legend(items: Sequence[tuple[str, str]], y: float) -> list[str]:
    """Coloured squares with their names in a row, from the left margin."""
    parts: list[str] = []
    x = 56.0
    for colour, label in items:
        parts.append(f'<rect x="{_num(x)}" y="{_num(y - 9)}" width="10" height="10"'
                     f' fill="{colour}"/>')  # fmt: skip
        parts.append(_text(x + 14, y, label))
        x += 24 + 6.5 * len(label)
    return parts


def hourly_chart(report: NightReport, lang: Lang = "sv") -> str:
    """Alerts opened per hour of the night, stacked by priority (highest at the bottom)."""
    left, right, top, bottom = 56, 16, 44, 52
    height = 300
    plot_w, plot_h = WIDTH - left - right, height - top - bottom
    base = top + plot_h
    hours = report.by_hour
    priorities = [c.priority for c in hours[0].by_priority] if hours else []
    y_ticks = ticks(max((h.alerts for h in hours), default=0) or 1, whole=True)
    y_top = y_ticks[-1]

    def y(value: float) -> float:
        return base - plot_h * value / y_top

    body = _legend([(priority_colour(p), text(lang, "priority", priority=p)) for p in priorities],
                   y=22)  # fmt: skip
    for value in y_ticks:
        body.append(_line(left, y(value), left + plot_w, y(value)))
        body.append(_text(left - 6, y(value) + 4, _num(value), size=10, anchor="end", fill=MUTED))
    slot = plot_w / max(1, len(hours))
    for i, hour in enumerate(hours):
        x = left + i * slot + slot * 0.15
        label = f"{hour.start:%H}"
        body.append(_text(x + slot * 0.35, base + 15, label, size=10, anchor="middle",
                          fill=MUTED))  # fmt: skip
        stacked = 0
        for c in hour.by_priority:
            if c.count == 0:
                continue
            words = text(lang, "hourly.bar", hour=f"{hour.start:%H:%M}", priority=c.priority,
                         count=c.count)  # fmt: skip
            data = {"hour": hour.start.isoformat(), "priority": str(c.priority),
                    "count": str(c.count)}  # fmt: skip
            body.append(
                f'<rect class="bar" x="{_num(x)}" y="{_num(y(stacked + c.count))}"'
                f' width="{_num(slot * 0.7)}" height="{_num(y(stacked) - y(stacked + c.count))}"'
                f' fill="{priority_colour(c.priority)}"{_attrs(data)}>'
                f"<title>{escape(words)}</title></rect>"
            )
            stacked += c.count
    body.append(_line(left, base, left + plot_w, base, stroke=INK))
    if report.alerts == 0:
        body.append(_text(left + plot_w / 2, top + plot_h / 2, text(lang, "noAlerts"),
                          anchor="middle", fill=MUTED))  # fmt: skip
    body.append(_text(left + plot_w / 2, height - 12, text(lang, "hourly.x", tz=report.timezone),
                      anchor="middle"))  # fmt: skip
    body.append(
        f'<g transform="translate(16,{_num(top + plot_h / 2)}) rotate(-90)">'
        + _text(0, 0, text(lang, "hourly.y"), anchor="middle")
        + "</g>"
    )
    desc = text(lang, "hourly.desc", alerts=report.alerts)
    return _svg("hourly", height, text(lang, "hourly.title"), desc, body)


@dataclass(frozen=True, slots=True)
class SpreadRow:
    """One box of the spread chart: a measure over all alerts or one priority's."""

    measure: str  # "acknowledge" or "arrival"
    priority: int | None  # None: every priority
    times: Durations


def spread_rows(report: NightReport) -> list[SpreadRow]:
    """The boxes to draw: per measure, all alerts first and then each priority."""
    return [
        SpreadRow(measure, p.priority if p else None, times)
        for measure in ("acknowledge", "arrival")
        for p, times in [
            (None, getattr(report, measure)),
            *((p, getattr(p, measure)) for p in report.by_priority),
        ]
    ]


def _marks(t: Durations) -> list[float] | None:
    """Best, first quartile, median, third quartile, 90th percentile and worst; None if none."""
    marks = [v for v in (t.best_s, t.q1_s, t.median_s, t.q3_s, t.p90_s, t.worst_s) if v is not None]
    return marks if len(marks) == 6 else None


def spread_chart(report: NightReport, lang: Lang = "sv") -> str:
    """Box plots of time to acknowledge and to arrival, with median and 90th percentile marked."""
    rows = spread_rows(report)
    left, plot_w, top, row_h, group_gap = 120, 330, 44, 26, 10
    note_x = left + plot_w + 12
    plot_h = len(rows) * row_h + group_gap
    height = top + plot_h + 44
    worst = max((r.times.worst_s or 0 for r in rows), default=0) / 60
    x_ticks = ticks(worst or 1)
    x_top = x_ticks[-1]

    def x(seconds: float) -> float:
        return left + plot_w * seconds / 60 / x_top

    body = [
        _line(left, 18, left + 14, 18, stroke=INK, width=3),
        _text(left + 20, 22, text(lang, "median")),
        f'<path d="M {left + 110} 12 L {left + 116} 18 L {left + 110} 24 L {left + 104} 18 Z"'
        f' fill="{INK}"/>',
        _text(left + 122, 22, text(lang, "p90")),
    ]
    for value in x_ticks:
        px = left + plot_w * value / x_top
        body.append(_line(px, top, px, top + plot_h))
        body.append(_text(px, top + plot_h + 15, _num(value), size=10, anchor="middle",
                          fill=MUTED))  # fmt: skip
    cy = float(top)
    for i, row in enumerate(rows):
        if i > 0 and row.measure != rows[i - 1].measure:
            cy += group_gap
        mid = cy + row_h / 2
        measure = text(lang, row.measure)
        who = text(lang, "all") if row.priority is None else text(
            lang, "priority", priority=row.priority)  # fmt: skip
        label = measure if row.priority is None else who
        weight = "bold" if row.priority is None else "normal"
        body.append(_text(left - 8, mid + 4, label, anchor="end", weight=weight))
        t = row.times
        data = {"measure": row.measure, "priority": str(row.priority or "all"),
                "count": str(t.count)}  # fmt: skip
        marks = _marks(t)
        if marks is None:
            body.append(_text(left + 6, mid + 4, text(lang, "spread.empty"), fill=MUTED))
            body.append(f'<g class="box"{_attrs(data)}></g>')
            cy += row_h
            continue
        best, q1, median, q3, p90, worst = marks
        colour = priority_colour(row.priority)
        words = text(lang, "spread.row", measure=measure, who=who, count=t.count,
                     median=duration(median), p90=duration(p90))  # fmt: skip
        data |= {"median-s": _num(median), "p90-s": _num(p90)}
        px = x(p90)
        body += [
            f'<g class="box"{_attrs(data)}><title>{escape(words)}</title>',
            _line(x(best), mid, x(worst), mid, stroke=INK),
            _line(x(best), mid - 5, x(best), mid + 5, stroke=INK),
            _line(x(worst), mid - 5, x(worst), mid + 5, stroke=INK),
            f'<rect x="{_num(x(q1))}" y="{_num(mid - 7)}"'
            f' width="{_num(max(1.0, x(q3) - x(q1)))}" height="14"'
            f' fill="{colour}" fill-opacity="0.35" stroke="{colour}"/>',
            _line(x(median), mid - 8, x(median), mid + 8, stroke=INK, width=3),
            f'<path d="M {_num(px)} {_num(mid - 6)} L {_num(px + 6)} {_num(mid)}'
            f' L {_num(px)} {_num(mid + 6)} L {_num(px - 6)} {_num(mid)} Z" fill="{INK}"/>',
            "</g>",
            _text(note_x, mid + 4, f"{duration(median)} / {duration(p90)}", size=10,
                  fill=MUTED),
        ]  # fmt: skip
        cy += row_h
    body.append(_text(note_x, top - 6, f"{text(lang, 'median')} / p90", size=10, fill=MUTED))
    body.append(_line(left, top + plot_h, left + plot_w, top + plot_h, stroke=INK))
    body.append(_text(left + plot_w / 2, height - 10, text(lang, "spread.x"), anchor="middle"))
    return _svg("spread", height, text(lang, "spread.title"), text(lang, "spread.desc"), body)


CHARTS = {"hourly": hourly_chart, "spread": spread_chart}
