"""The words and number formats of the night report's charts and PDF, in Swedish and English.

The page's own labels live in ``dashboards/static/report.js``; these are the
ones drawn server-side (the SVG charts, which the page shows as they come, and
the PDF), so they are kept with the code that draws them. Swedish is the default.
"""

from __future__ import annotations

from datetime import datetime

from gateway.night_report import NightReport, RuleKind
from rules.ruleset import Lang

TEXTS: dict[Lang, dict[str, str]] = {
    "sv": {
        "title": "Larmhantering per natt",
        "org": "Organisation",
        "night": "Natten",
        "window": "Nattfönster {window} ({tz}) enligt regeluppsättningen",
        "phase.coming": "Natten har inte börjat än.",
        "phase.in_progress": "Natten pågår: siffrorna gäller fram till {as_of}.",
        "phase.ended": "Natten är slut.",
        "asOf": "Beräknad",
        "alerts": "Larm",
        "unacknowledged": "Aldrig kvitterade",
        "escalations": "Eskalerade",
        "floods": "Larmstormar",
        "stale": "Väntade över {min} min",
        "times": "Tid till kvittering och till plats",
        "byKind": "Larm per typ och prioritet",
        "staleList": "Larm som väntade för länge på kvittering",
        "chattering": "Enheter som larmar om och om igen",
        "floodList": "Larmstormar (fler än {count} kvitteringar av samma person inom {min} min)",
        "escalationList": "Eskalerade larm",
        "none": "Inga",
        "col.priority": "Prio",
        "col.alerts": "Larm",
        "col.count": "Antal",
        "col.kind": "Typ",
        "col.device": "Enhet",
        "col.opened": "Larmet kom",
        "col.staff": "Personal",
        "col.from": "Från",
        "col.acks": "Kvitteringar",
        "col.waited": "Väntade",
        "col.acknowledged": "Kvitterat",
        "col.repeats": "Upprepningar",
        "col.measure": "Mått",
        "col.median": "Median",
        "col.p90": "p90",
        "col.worst": "Längst",
        "stale.open": "Fortfarande öppet",
        "stale.never": "Aldrig",
        "all": "Alla",
        "priority": "Prio {priority}",
        "acknowledge": "Kvittering",
        "arrival": "Till plats",
        "hourly.title": "Larm per timme och prioritet",
        "hourly.desc": "Staplade staplar: larm som kom under varje timme av natten, "
        "per prioritet. Totalt {alerts} larm.",
        "hourly.x": "Timme ({tz})",
        "hourly.y": "Antal larm",
        "hourly.bar": "{hour}, prio {priority}: {count} larm",
        "spread.title": "Spridning av tid till kvittering och till plats",
        "spread.desc": "Lådagram per prioritet: strecket från kortast till längst, "
        "lådan från första till tredje kvartilen, median som tjockt streck och "
        "90:e percentilen som romb.",
        "spread.x": "Minuter",
        "spread.row": "{measure}, {who}: {count} st, median {median}, p90 {p90}",
        "spread.empty": "inga värden",
        "median": "median",
        "p90": "90:e percentilen",
        "noAlerts": "Inga larm den här natten.",
    },
    "en": {
        "title": "Alarm handling per night",
        "org": "Organisation",
        "night": "Night",
        "window": "Night window {window} ({tz}) from the rule set",
        "phase.coming": "The night has not begun yet.",
        "phase.in_progress": "The night is in progress: figures up to {as_of}.",
        "phase.ended": "The night is over.",
        "asOf": "Computed",
        "alerts": "Alerts",
        "unacknowledged": "Never acknowledged",
        "escalations": "Escalated",
        "floods": "Floods",
        "stale": "Waited over {min} min",
        "times": "Time to acknowledge and to arrive",
        "byKind": "Alerts by kind and priority",
        "staleList": "Alerts that waited too long to be acknowledged",
        "chattering": "Devices alerting again and again",
        "floodList": "Floods (more than {count} acknowledgements by one person within {min} min)",
        "escalationList": "Escalated alerts",
        "none": "None",
        "col.priority": "Priority",
        "col.alerts": "Alerts",
        "col.count": "Count",
        "col.kind": "Kind",
        "col.device": "Device",
        "col.opened": "Raised",
        "col.staff": "Staff",
        "col.from": "From",
        "col.acks": "Acknowledgements",
        "col.waited": "Waited",
        "col.acknowledged": "Acknowledged",
        "col.repeats": "Repeats",
        "col.measure": "Measure",
        "col.median": "Median",
        "col.p90": "p90",
        "col.worst": "Worst",
        "stale.open": "Still open",
        "stale.never": "Never",
        "all": "All",
        "priority": "Priority {priority}",
        "acknowledge": "Acknowledge",
        "arrival": "To arrival",
        "hourly.title": "Alerts per hour and priority",
        "hourly.desc": "Stacked bars: alerts raised in each hour of the night, "
        "by priority. {alerts} alerts in all.",
        "hourly.x": "Hour ({tz})",
        "hourly.y": "Alerts",
        "hourly.bar": "{hour}, prio {priority}: {count} alerts",
        "spread.title": "Spread of time to acknowledge and to arrival",
        "spread.desc": "Box plot per priority: the line from best to worst, the box "
        "from the first to the third quartile, the median as a thick line and the "
        "90th percentile as a diamond.",
        "spread.x": "Minutes",
        "spread.row": "{measure}, {who}: {count}, median {median}, p90 {p90}",
        "spread.empty": "no values",
        "median": "median",
        "p90": "90th percentile",
        "noAlerts": "No alerts this night.",
    },
}


def text(lang: Lang, key: str, **values: object) -> str:
    """The text of ``key`` in ``lang`` with its ``{placeholders}`` filled."""
    return TEXTS[lang][key].format(**values)


def duration(seconds: float | None) -> str:
    """Seconds as "12 min 5 s" or "1 h 20 min", as the page writes them; a dash for none."""
    if seconds is None:
        return "-"
    total = round(seconds)
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    if h > 0:
        return f"{h} h {m} min"
    return f"{m} min {s} s" if m > 0 else f"{s} s"


def clock_time(at: datetime) -> str:
    """A local instant as date and time to the minute, "2025-10-25 22:00"."""
    return at.strftime("%Y-%m-%d %H:%M")


def rule_title(report: NightReport, ref: RuleKind, lang: Lang) -> str:
    """The rule's title in ``lang`` from the rule set, or the kind for a rule no longer in it."""
    titles = report.titles.get(ref.rule_id)
    return ref.kind if titles is None else getattr(titles, lang)
