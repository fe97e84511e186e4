"""The alarm-handling report of one night, as pure functions over stored alerts (no I/O).

What a coordinator needs for deviation reporting (avvikelserapportering):
alerts by kind and priority, time to acknowledge and to arrival, escalations,
acknowledgement floods, stale alerts and chattering devices. The rows come from
``gateway.store.reports``; everything here is arithmetic on them.

Definitions, so the figures can be checked by hand:

- the night is the rule set's ``night`` window: from its start on the date to
  its end (the next morning when it is not later the same day), on the rule
  set's wall clock, so a DST night is an hour shorter or longer; an alert
  belongs to the night it was opened in (gateway time);
- tonight is the night in progress, or else the next one to start: during the
  day the coming night, after midnight the one that began the evening before;
- per hour: the night cut into hours from its start (whole hours on the wall
  clock, so a DST night has 8 or 10), alerts counted by the hour they opened in;
- time to acknowledge: the first transition to acknowledged minus the paging
  time, or minus the opening time for an alert that never paged (a late one);
- time to arrival: ``arrived_at`` (staff opened the door of the home) or else
  the first on-site transition, minus the opening time;
- median, quartiles, 90th percentile, best and worst over the alerts that
  have the time at all; a percentile interpolates linearly between the two
  nearest ranks (p of n sorted values sits at rank p·(n-1), counted from 0),
  so the median is the usual one;
- a flood: a staff member acknowledging more than ``FLOOD_COUNT`` alerts within
  ``FLOOD_WINDOW``; windows are half-open, each starts at an acknowledgement,
  and after a flood the search resumes at its window's end, so floods do not
  overlap and each is reported once;
- stale: an alert that waited unacknowledged (from paging, or opening) longer
  than the limit — until acknowledged, else until it closed (cleared by the
  device), else until the report was made (``still_open``);
- chattering: devices with an alert flagged chattering in the night.
"""

from __future__ import annotations

import statistics
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from rules.calendar import STOCKHOLM, DailyWindow
from rules.ruleset import Titles

# Issue 4: "floods (more than 10 alerts per operator in 10 minutes)".
FLOOD_COUNT = 10
FLOOD_WINDOW = timedelta(minutes=10)

Phase = Literal["coming", "in_progress", "ended"]

# The engine's own moves carry these actors; every other actor is a staff user.
SYSTEM_ACTOR_PREFIXES = ("rule:", "device:")


def night_window(
    day: date, window: DailyWindow, tz: ZoneInfo = STOCKHOLM
) -> tuple[datetime, datetime]:
    """The night of ``day`` as two aware UTC instants, from the window's local start to its end."""
    end_day = day if window.end > window.start else day + timedelta(days=1)
    # Local wall-clock times made aware in the zone, then converted: the UTC
    # length of the night is what DST makes it (9 h, 8 h in spring, 10 h in autumn).
    start = datetime.combine(day, window.start, tzinfo=tz)
    end = datetime.combine(end_day, window.end, tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def tonight(now: datetime, window: DailyWindow, tz: ZoneInfo = STOCKHOLM) -> date:
    """The date of the night in progress at ``now``, or else of the next night to start."""
    today = now.astimezone(tz).date()
    # The first night, from yesterday's on, that has not ended yet: after
    # midnight yesterday's is still on; once it has ended, today's is coming or on.
    for day in (today - timedelta(days=1), today):
        if night_window(day, window, tz)[1] > now:
            return day
    return today + timedelta(days=1)  # a window that ended earlier today (e.g. 00:00-06:00)


def night_phase(now: datetime, window: tuple[datetime, datetime]) -> Phase:
    """Whether a night is still to come, in progress, or over at ``now``."""
    start, end = window
    if now < start:
        return "coming"
    return "in_progress" if now < end else "ended"


def is_staff(actor: str) -> bool:
    """Whether a transition's actor is a staff user rather than the engine or a device."""
    return not actor.startswith(SYSTEM_ACTOR_PREFIXES)


@dataclass(frozen=True, slots=True)
class AlertTiming:
    """One stored alert of the night with the moments the report measures."""

    alert_id: str
    org: str
    device_id: str
    rule_id: str  # the rule that raised it: its title is what the report shows
    kind: str
    priority: int
    opened_at: datetime
    paged_at: datetime | None
    acknowledged_at: datetime | None  # the first transition to acknowledged
    arrived_at: datetime | None  # alerts.arrived_at, else the first on-site transition
    closed_at: datetime | None
    escalated: bool
    chattering: bool
    count: int  # times the condition was seen while the alert was open

    @property
    def waiting_from(self) -> datetime:
        """When the clock for acknowledging starts: paging, or opening if it never paged."""
        return self.paged_at or self.opened_at


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """One staff acknowledgement in the night."""

    actor: str
    at: datetime
    alert_id: str


class Durations(BaseModel):
    """How long something took over a set of alerts, in seconds (None when there were none)."""

    count: int
    median_s: float | None
    worst_s: float | None
    # The spread the report's box plot draws: best, quartiles and 90th percentile.
    best_s: float | None
    q1_s: float | None
    q3_s: float | None
    p90_s: float | None


class PriorityTimes(BaseModel):
    """Time to acknowledge and to arrival for the alerts of one priority."""

    priority: int
    alerts: int
    acknowledge: Durations
    arrival: Durations


class RuleKind(BaseModel):
    """The rule that raised an alert and the kind of event it raised it for."""

    rule_id: str
    kind: str


class KindCount(RuleKind):
    """How many alerts of one rule (and its kind) and priority the night had."""

    priority: int
    count: int


class PriorityCount(BaseModel):
    """How many alerts of one priority."""

    priority: int
    count: int


class HourCount(BaseModel):
    """The alerts opened in one hour of the night, per priority of the night (zeros kept)."""

    start: datetime
    end: datetime
    alerts: int
    by_priority: list[PriorityCount]


class AlertRef(RuleKind):
    """An alert the report points at."""

    alert_id: str
    device_id: str
    priority: int
    opened_at: datetime


class Flood(BaseModel):
    """A staff member acknowledging more alerts in a short window than anyone can handle."""

    actor: str
    start: datetime
    end: datetime
    count: int


class StaleAlert(AlertRef):
    """An alert that waited too long for someone to acknowledge it."""

    acknowledged_at: datetime | None
    waited_s: float
    still_open: bool  # neither acknowledged nor closed when the report was made


class ChatteringDevice(BaseModel):
    """A device whose alerts kept repeating (a fault, or a sensor placed wrongly)."""

    device_id: str
    kinds: list[str]
    rules: list[RuleKind]  # the rules its repeating alerts came from, by kind
    alerts: int
    repeats: int  # the times its alerts were seen in all


class NightReport(BaseModel):
    """The alarm-handling report of one night for one organisation."""

    org: str
    date: date
    start: datetime
    end: datetime
    window: str  # the rule set's night window it was cut by, "22:00-07:00"
    timezone: str  # the wall clock of the window and of every time shown
    phase: Phase  # at as_of: "coming", "in_progress" or "ended"
    tonight: bool  # whether this is the night the report opens on at as_of
    as_of: datetime  # when it was made: open alerts are measured up to here
    stale_after_min: int
    flood_count: int
    flood_window_min: int
    alerts: int
    unacknowledged: int  # alerts never acknowledged
    by_kind: list[KindCount]
    by_hour: list[HourCount]
    acknowledge: Durations
    arrival: Durations
    by_priority: list[PriorityTimes]
    escalations: list[AlertRef]
    floods: list[Flood]
    stale: list[StaleAlert]
    chattering: list[ChatteringDevice]
    # The names of the rules the report mentions, by rule id, in each language,
    # from the rule set; a rule no longer in the set is missing and shown by its kind.
    titles: dict[str, Titles]


def _seconds(delta: timedelta) -> float:
    return delta.total_seconds()


def time_to_acknowledge(alert: AlertTiming) -> float | None:
    """Seconds from paging (or opening) to the first acknowledgement; None if never."""
    if alert.acknowledged_at is None:
        return None
    return _seconds(alert.acknowledged_at - alert.waiting_from)


def time_to_arrival(alert: AlertTiming) -> float | None:
    """Seconds from opening to staff arriving; None if nobody is known to have arrived."""
    if alert.arrived_at is None:
        return None
    return _seconds(alert.arrived_at - alert.opened_at)


def percentile(ordered: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) of sorted values, interpolated between the nearest ranks."""
    if not ordered:
        raise ValueError("a percentile needs at least one value")
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(values: Iterable[float | None]) -> Durations:
    """Median, spread and worst of the values that are present."""
    present = sorted(v for v in values if v is not None)
    if not present:
        return Durations(
            count=0, median_s=None, worst_s=None, best_s=None, q1_s=None, q3_s=None, p90_s=None
        )
    return Durations(
        count=len(present),
        median_s=float(statistics.median(present)),
        worst_s=present[-1],
        best_s=present[0],
        q1_s=percentile(present, 25),
        q3_s=percentile(present, 75),
        p90_s=percentile(present, 90),
    )


def by_kind(alerts: Sequence[AlertTiming]) -> list[KindCount]:
    """Alert counts per (rule, priority), highest priority first, then by kind and rule."""
    counts: defaultdict[tuple[int, str, str], int] = defaultdict(int)
    for a in alerts:
        counts[a.priority, a.kind, a.rule_id] += 1
    return [
        KindCount(rule_id=r, kind=k, priority=p, count=n) for (p, k, r), n in sorted(counts.items())
    ]


def by_hour(alerts: Sequence[AlertTiming], window: tuple[datetime, datetime]) -> list[HourCount]:
    """Alerts per hour of the night and priority, every hour and every priority of the night."""
    start, end = window
    hour = timedelta(hours=1)
    # Whole hours in UTC are whole hours on the Stockholm clock (its offsets are
    # whole hours), and counting in UTC gives a DST night its 8 or 10 hours.
    hours = -(-(end - start) // hour)  # a window ending at :30 keeps its last part-hour
    priorities = sorted({a.priority for a in alerts})
    counts: defaultdict[tuple[int, int], int] = defaultdict(int)
    for a in alerts:
        counts[(a.opened_at - start) // hour, a.priority] += 1
    return [
        HourCount(
            start=start + i * hour,
            end=min(start + (i + 1) * hour, end),
            alerts=sum(counts[i, p] for p in priorities),
            by_priority=[PriorityCount(priority=p, count=counts[i, p]) for p in priorities],
        )
        for i in range(hours)
    ]


def by_priority(alerts: Sequence[AlertTiming]) -> list[PriorityTimes]:
    """Time to acknowledge and to arrival per priority, highest first."""
    groups: defaultdict[int, list[AlertTiming]] = defaultdict(list)
    for a in alerts:
        groups[a.priority].append(a)
    return [
        PriorityTimes(
            priority=p,
            alerts=len(group),
            acknowledge=summarize(time_to_acknowledge(a) for a in group),
            arrival=summarize(time_to_arrival(a) for a in group),
        )
        for p, group in sorted(groups.items())
    ]


def _ref(a: AlertTiming) -> dict[str, object]:
    return {
        "alert_id": a.alert_id,
        "device_id": a.device_id,
        "rule_id": a.rule_id,
        "kind": a.kind,
        "priority": a.priority,
        "opened_at": a.opened_at,
    }


def floods(
    acks: Iterable[Acknowledgement],
    *,
    threshold: int = FLOOD_COUNT,
    window: timedelta = FLOOD_WINDOW,
) -> list[Flood]:
    """Windows in which one staff member acknowledged more than ``threshold`` alerts."""
    per_actor: defaultdict[str, list[datetime]] = defaultdict(list)
    for ack in acks:
        if is_staff(ack.actor):
            per_actor[ack.actor].append(ack.at)
    found: list[Flood] = []
    for actor, times in per_actor.items():
        times.sort()
        i = 0
        while i < len(times):
            start = times[i]
            j = bisect_left(times, start + window)  # the first one outside [start, start+window)
            if j - i > threshold:
                found.append(Flood(actor=actor, start=start, end=start + window, count=j - i))
                i = j
            else:
                i += 1
    return sorted(found, key=lambda f: (f.start, f.actor))


def stale_alerts(
    alerts: Iterable[AlertTiming], *, limit: timedelta, as_of: datetime
) -> list[StaleAlert]:
    """Alerts that waited unacknowledged longer than ``limit``, oldest first."""
    found = []
    for a in alerts:
        ended = a.acknowledged_at or a.closed_at
        waited = (ended or as_of) - a.waiting_from
        if waited > limit:
            found.append(
                StaleAlert.model_validate(
                    _ref(a)
                    | {
                        "acknowledged_at": a.acknowledged_at,
                        "waited_s": _seconds(waited),
                        "still_open": ended is None,
                    }
                )
            )
    return sorted(found, key=lambda s: (s.opened_at, s.alert_id))


def chattering_devices(alerts: Iterable[AlertTiming]) -> list[ChatteringDevice]:
    """Devices with an alert flagged chattering, the most repeats first."""
    per_device: defaultdict[str, list[AlertTiming]] = defaultdict(list)
    for a in alerts:
        if a.chattering:
            per_device[a.device_id].append(a)
    devices = [
        ChatteringDevice(
            device_id=device,
            kinds=sorted({a.kind for a in group}),
            rules=[
                RuleKind(rule_id=r, kind=k) for k, r in sorted({(a.kind, a.rule_id) for a in group})
            ],
            alerts=len(group),
            repeats=sum(a.count for a in group),
        )
        for device, group in per_device.items()
    ]
    return sorted(devices, key=lambda d: (-d.repeats, d.device_id))


def build_report(
    *,
    org: str,
    day: date,
    window: DailyWindow,
    alerts: Sequence[AlertTiming],
    acks: Sequence[Acknowledgement],
    stale_after: timedelta,
    as_of: datetime,
    tz: ZoneInfo = STOCKHOLM,
    titles: Mapping[str, Titles] | None = None,
) -> NightReport:
    """Put one night's figures together; times are shown on the rule set's wall clock.

    ``titles`` names the rules by id (the rule set's presentation); those of the
    night's alerts are kept with the report.
    """
    start, end = night_window(day, window, tz)
    report = NightReport(
        org=org,
        date=day,
        start=start,
        end=end,
        window=str(window),
        timezone=str(tz),
        phase=night_phase(as_of, (start, end)),
        tonight=day == tonight(as_of, window, tz),
        as_of=as_of,
        stale_after_min=int(stale_after // timedelta(minutes=1)),
        flood_count=FLOOD_COUNT,
        flood_window_min=int(FLOOD_WINDOW // timedelta(minutes=1)),
        alerts=len(alerts),
        unacknowledged=sum(1 for a in alerts if a.acknowledged_at is None),
        by_kind=by_kind(alerts),
        by_hour=by_hour(alerts, (start, end)),
        acknowledge=summarize(time_to_acknowledge(a) for a in alerts),
        arrival=summarize(time_to_arrival(a) for a in alerts),
        by_priority=by_priority(alerts),
        escalations=[AlertRef.model_validate(_ref(a)) for a in alerts if a.escalated],
        floods=floods(acks),
        stale=stale_alerts(alerts, limit=stale_after, as_of=as_of),
        chattering=chattering_devices(alerts),
        titles={a.rule_id: titles[a.rule_id] for a in alerts if titles and a.rule_id in titles},
    )
    return _localized(report, tz)


def _localized(report: NightReport, tz: ZoneInfo) -> NightReport:
    """Every instant on the local wall clock (with its offset), as staff read times."""

    def local(at: datetime) -> datetime:
        return at.astimezone(tz)

    return report.model_copy(
        update={
            "start": local(report.start),
            "end": local(report.end),
            "as_of": local(report.as_of),
            "by_hour": [
                h.model_copy(update={"start": local(h.start), "end": local(h.end)})
                for h in report.by_hour
            ],
            "escalations": [
                e.model_copy(update={"opened_at": local(e.opened_at)}) for e in report.escalations
            ],
            "floods": [
                f.model_copy(update={"start": local(f.start), "end": local(f.end)})
                for f in report.floods
            ],
            "stale": [
                s.model_copy(
                    update={
                        "opened_at": local(s.opened_at),
                        "acknowledged_at": s.acknowledged_at and local(s.acknowledged_at),
                    }
                )
                for s in report.stale
            ],
        }
    )


# The CSV layout: one row per figure, its kind named in ``section``. Columns a
# section does not use are empty. Sections, in order:
#   night        org, start, end, count = alerts in the night
#   by_kind      priority, kind, count
#   acknowledge  priority (empty = all), count, median_s, worst_s: time to acknowledge
#   arrival      priority (empty = all), count, median_s, worst_s: time to arrival
#   escalation   priority, kind, alert_id, device_id, start = opened
#   flood        actor, start, end (the window), count = acknowledgements in it
#   stale        priority, kind, alert_id, device_id, start = opened,
#                end = acknowledged (empty: never), waited_s, count = 1 if still open
#   chattering   device_id, kind (its kinds, space-separated), count = repeats,
#                rule_id (its rules, space-separated)
# by_kind, escalation and stale rows name the rule in rule_id (last, so the
# columns before it stay where they were).
# Times are ISO 8601 with the local offset; seconds have one decimal.
CSV_FIELDS = (
    "section", "org", "priority", "kind", "alert_id", "device_id", "actor", "start", "end",
    "count", "median_s", "worst_s", "waited_s", "rule_id",
)  # fmt: skip


def _s(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def _t(value: datetime | None) -> str:
    return "" if value is None else value.isoformat()


def csv_rows(report: NightReport) -> list[dict[str, str]]:
    """The report as flat rows in the ``CSV_FIELDS`` layout."""
    org = report.org
    rows: list[dict[str, str]] = [
        {"section": "night", "start": _t(report.start), "end": _t(report.end),
         "count": str(report.alerts)},
    ]  # fmt: skip
    rows += [
        {"section": "by_kind", "priority": str(k.priority), "kind": k.kind, "count": str(k.count),
         "rule_id": k.rule_id}
        for k in report.by_kind
    ]  # fmt: skip
    timings: list[tuple[str, Durations, list[tuple[str, Durations]]]] = [
        ("acknowledge", report.acknowledge,
         [(str(p.priority), p.acknowledge) for p in report.by_priority]),
        ("arrival", report.arrival, [(str(p.priority), p.arrival) for p in report.by_priority]),
    ]  # fmt: skip
    for section, overall, per_priority in timings:
        times = [("", overall), *per_priority]
        rows += [
            {"section": section, "priority": prio, "count": str(d.count),
             "median_s": _s(d.median_s), "worst_s": _s(d.worst_s)}
            for prio, d in times
        ]  # fmt: skip
    rows += [
        {"section": "escalation", "priority": str(e.priority), "kind": e.kind,
         "alert_id": e.alert_id, "device_id": e.device_id, "start": _t(e.opened_at),
         "rule_id": e.rule_id}
        for e in report.escalations
    ]  # fmt: skip
    rows += [
        {"section": "flood", "actor": f.actor, "start": _t(f.start), "end": _t(f.end),
         "count": str(f.count)}
        for f in report.floods
    ]  # fmt: skip
    rows += [
        {"section": "stale", "priority": str(s.priority), "kind": s.kind, "alert_id": s.alert_id,
         "device_id": s.device_id, "start": _t(s.opened_at), "end": _t(s.acknowledged_at),
         "waited_s": _s(s.waited_s), "count": "1" if s.still_open else "0",
         "rule_id": s.rule_id}
        for s in report.stale
    ]  # fmt: skip
    rows += [
        {"section": "chattering", "device_id": c.device_id, "kind": " ".join(c.kinds),
         "count": str(c.repeats), "rule_id": " ".join(r.rule_id for r in c.rules)}
        for c in report.chattering
    ]  # fmt: skip
    return [{f: row.get(f, org if f == "org" else "") for f in CSV_FIELDS} for row in rows]
