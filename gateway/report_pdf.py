"""The night report as a PDF for the deviation report (avvikelserapport), drawn with fpdf2.

The same figures as the page, from the same ``NightReport``: the summary, the
two charts (the very SVG the page shows, see ``gateway.charts``) and the
tables. fpdf2 is pure Python and reads SVG itself, so nothing outside PyPI is
needed; its core fonts hold Windows-1252, enough for Swedish.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from gateway.charts import hourly_chart, spread_chart
from gateway.night_report import Durations, NightReport
from gateway.report_text import clock_time, duration, rule_title, text
from rules.ruleset import Lang

# fpdf2 warns of every SVG <title> and <desc> it skips; they are there for screen readers.
logging.getLogger("fpdf.svg").setLevel(logging.ERROR)

FONT = "helvetica"
ENCODING = "windows-1252"
PAGE_W = 180.0  # mm inside A4's 15 mm margins


def _safe(words: str) -> str:
    # An actor or device name the core fonts cannot draw becomes "?", not a failed PDF.
    return words.encode(ENCODING, "replace").decode(ENCODING)


class _Report(FPDF):
    """An A4 page with the report's heading and page numbers."""

    def __init__(self, footer_text: str) -> None:
        super().__init__(format="A4")
        self.core_fonts_encoding = ENCODING
        self.set_margins(15, 15, 15)
        self.set_auto_page_break(auto=True, margin=15)
        self._footer_text = footer_text

    def footer(self) -> None:
        """The organisation and night, and the page number, at the foot of each page."""
        self.set_y(-12)
        self.set_font(FONT, size=8)
        self.cell(0, 5, _safe(f"{self._footer_text} - {self.page_no()}"), align="C")


def _section(
    pdf: FPDF,
    lang: Lang,
    heading: str,
    head: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    widths: tuple[int, ...] | None = None,
) -> None:
    """A heading and its table (a header row, then the rows), or the word for none."""
    # A heading starts a new page rather than sit alone at the foot of one.
    if pdf.will_page_break(30):
        pdf.add_page()
    pdf.ln(3)
    pdf.set_font(FONT, "B", 12)
    pdf.multi_cell(0, 7, _safe(heading), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FONT, size=9)
    if not rows:
        pdf.cell(0, 6, text(lang, "none"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        return
    pdf.set_font(FONT, size=8 if widths else 9)
    with pdf.table(first_row_as_headings=True, line_height=5, col_widths=widths) as table:
        for row in [head, *rows]:
            line = table.row()
            for value in row:
                line.cell(_safe(value))


def _columns(lang: Lang, *keys: str) -> list[str]:
    """The header row of a table: each column's word in ``lang``."""
    return [text(lang, f"col.{key}") for key in keys]


def _times(who: str, alerts: int, ack: Durations, arr: Durations) -> list[str]:
    return [who, str(alerts), str(ack.count), duration(ack.median_s), duration(ack.p90_s),
            duration(ack.worst_s), str(arr.count), duration(arr.median_s), duration(arr.p90_s),
            duration(arr.worst_s)]  # fmt: skip


def night_pdf(report: NightReport, lang: Lang = "sv") -> bytes:
    """The report as an A4 PDF in ``lang``."""
    r = report
    night = f"{clock_time(r.start)} - {clock_time(r.end)}"
    pdf = _Report(f"{text(lang, 'title')}: {r.org}, {night}")
    pdf.set_title(_safe(f"{text(lang, 'title')} {r.org} {r.date.isoformat()}"))
    pdf.set_lang(lang)
    pdf.add_page()
    pdf.set_font(FONT, "B", 16)
    pdf.cell(0, 9, text(lang, "title"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FONT, size=10)
    phase = text(lang, f"phase.{r.phase}", as_of=clock_time(r.as_of))
    summary = [
        (text(lang, "org"), r.org),
        (text(lang, "night"), night),
        ("", text(lang, "window", window=r.window, tz=r.timezone) + ". " + phase),
        (text(lang, "asOf"), clock_time(r.as_of)),
        (text(lang, "alerts"), str(r.alerts)),
        (text(lang, "unacknowledged"), str(r.unacknowledged)),
        (text(lang, "escalations"), str(len(r.escalations))),
        (text(lang, "floods"), str(len(r.floods))),
        (text(lang, "stale", min=r.stale_after_min), str(len(r.stale))),
    ]
    for label, value in summary:
        pdf.set_font(FONT, "B", 10)
        pdf.cell(55, 6, _safe(label))
        pdf.set_font(FONT, size=10)
        pdf.multi_cell(0, 6, _safe(value), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    for chart in (hourly_chart(r, lang), spread_chart(r, lang)):
        pdf.ln(2)
        pdf.image(io.BytesIO(chart.encode()), w=PAGE_W)

    measures = [
        f"{text(lang, measure)}: {text(lang, column).lower()}"
        for measure in ("acknowledge", "arrival")
        for column in ("col.count", "col.median", "col.p90", "col.worst")
    ]
    _section(
        pdf, lang, text(lang, "times"), [*_columns(lang, "priority", "alerts"), *measures],
        [_times(text(lang, "all"), r.alerts, r.acknowledge, r.arrival),
         *(_times(str(p.priority), p.alerts, p.acknowledge, p.arrival) for p in r.by_priority)],
        widths=(9, 8, 15, 17, 17, 17, 15, 17, 17, 17),  # room for "12 min 34 s" on one line
    )  # fmt: skip
    _section(pdf, lang, text(lang, "byKind"), _columns(lang, "priority", "kind", "count"),
             [[str(k.priority), rule_title(r, k, lang), str(k.count)]
              for k in r.by_kind])  # fmt: skip
    _section(pdf, lang, text(lang, "escalationList"),
             _columns(lang, "opened", "priority", "kind", "device"),
             [[clock_time(e.opened_at), str(e.priority), rule_title(r, e, lang), e.device_id]
              for e in r.escalations])  # fmt: skip
    _section(pdf, lang, text(lang, "floodList", count=r.flood_count, min=r.flood_window_min),
             _columns(lang, "staff", "from", "acks"),
             [[f.actor, clock_time(f.start), str(f.count)] for f in r.floods])  # fmt: skip
    _section(pdf, lang, text(lang, "staleList"),
             _columns(lang, "opened", "priority", "kind", "device", "waited", "acknowledged"),
             [[clock_time(s.opened_at), str(s.priority), rule_title(r, s, lang), s.device_id,
               duration(s.waited_s),
               clock_time(s.acknowledged_at) if s.acknowledged_at
               else text(lang, "stale.open" if s.still_open else "stale.never")]
              for s in r.stale])  # fmt: skip
    _section(pdf, lang, text(lang, "chattering"),
             _columns(lang, "device", "kind", "alerts", "repeats"),
             [[c.device_id, ", ".join(rule_title(r, k, lang) for k in c.rules), str(c.alerts),
               str(c.repeats)] for c in r.chattering])  # fmt: skip
    return bytes(pdf.output())
