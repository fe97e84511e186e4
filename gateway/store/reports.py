"""Queries behind the alarm-handling report: a night's alerts with their moments, and the acks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg

from gateway.night_report import SYSTEM_ACTOR_PREFIXES, Acknowledgement, AlertTiming

# One row per alert opened in the night. The first acknowledgement and the
# first on-site move come from the alert's trail (an index look-up per alert);
# a recorded arrival (staff opened the home's door) wins over "on site".
_NIGHT_ALERTS = """
SELECT a.alert_id, a.org, a.device_id, a.rule_id, a.kind, a.priority, a.opened_at, a.paged_at,
       t.acknowledged_at, coalesce(a.arrived_at, t.on_site_at), a.closed_at,
       a.escalated, a.chattering, a.count
FROM alerts a
LEFT JOIN LATERAL (
    SELECT min(at) FILTER (WHERE to_state = 'acknowledged') AS acknowledged_at,
           min(at) FILTER (WHERE to_state = 'on_site') AS on_site_at
    FROM alert_transitions WHERE alert_id = a.alert_id
) t ON true
WHERE (%(orgs)s::text[] IS NULL OR a.org = ANY(%(orgs)s))
  AND a.opened_at >= %(start)s AND a.opened_at < %(end)s
ORDER BY a.opened_at, a.alert_id
"""

# Acknowledgements by staff made in the night, whichever night their alert opened in.
_STAFF_ACKS = """
SELECT t.actor, t.at, t.alert_id
FROM alert_transitions t JOIN alerts a USING (alert_id)
WHERE t.to_state = 'acknowledged' AND t.at >= %(start)s AND t.at < %(end)s
  AND (%(orgs)s::text[] IS NULL OR a.org = ANY(%(orgs)s))
  AND NOT starts_with(t.actor, %(rule)s) AND NOT starts_with(t.actor, %(device)s)
ORDER BY t.actor, t.at
"""


def _params(orgs: Sequence[str] | None, start: datetime, end: datetime) -> dict[str, object]:
    rule, device = SYSTEM_ACTOR_PREFIXES
    return {
        "orgs": None if orgs is None else list(orgs),
        "start": start,
        "end": end,
        "rule": rule,
        "device": device,
    }


async def night_alerts(
    conn: psycopg.AsyncConnection[Any],
    *,
    orgs: Sequence[str] | None,
    start: datetime,
    end: datetime,
) -> list[AlertTiming]:
    """Alerts opened in ``[start, end)`` in the given organisations (None: all), oldest first."""
    cur = await conn.execute(_NIGHT_ALERTS, _params(orgs, start, end))
    return [AlertTiming(*row) for row in await cur.fetchall()]


async def staff_acknowledgements(
    conn: psycopg.AsyncConnection[Any],
    *,
    orgs: Sequence[str] | None,
    start: datetime,
    end: datetime,
) -> list[Acknowledgement]:
    """Acknowledgements made by staff (not the engine or a device) in ``[start, end)``."""
    cur = await conn.execute(_STAFF_ACKS, _params(orgs, start, end))
    return [Acknowledgement(*row) for row in await cur.fetchall()]


async def known_organisations(
    conn: psycopg.AsyncConnection[Any], *, orgs: Sequence[str] | None
) -> list[str]:
    """Organisations with registered devices or stored alerts, within a scope (None: all)."""
    cur = await conn.execute(
        "SELECT org FROM devices WHERE %(orgs)s::text[] IS NULL OR org = ANY(%(orgs)s)"
        " UNION SELECT org FROM alerts WHERE %(orgs)s::text[] IS NULL OR org = ANY(%(orgs)s)"
        " ORDER BY org",
        {"orgs": None if orgs is None else list(orgs)},
    )
    return [str(org) for (org,) in await cur.fetchall()]
