"""Queries behind the console and API: places of devices, alert history and detail."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """A registered device as the health panel lists it."""

    device_id: str
    family: str
    org: str
    unit: str
    area: str
    heartbeat_interval_s: int


async def device_places(
    conn: psycopg.AsyncConnection[Any], *, device_ids: list[str]
) -> dict[str, tuple[str, str]]:
    """Device id → (unit, area) for the given devices that are registered."""
    cur = await conn.execute(
        "SELECT device_id, unit, area FROM devices WHERE device_id = ANY(%s)", (device_ids,)
    )
    return {str(d): (str(u), str(a)) for d, u, a in await cur.fetchall()}


async def list_devices(
    conn: psycopg.AsyncConnection[Any], *, orgs: list[str] | None, area: str | None
) -> list[DeviceRow]:
    """Registered devices in the given organisations (None: all), optionally of one area."""
    cur = await conn.execute(
        "SELECT device_id, family, org, unit, area, heartbeat_interval_s FROM devices"
        " WHERE (%(orgs)s::text[] IS NULL OR org = ANY(%(orgs)s))"
        " AND (%(area)s::text IS NULL OR area = %(area)s) ORDER BY org, area, device_id",
        {"orgs": orgs, "area": area},
    )
    return [DeviceRow(*row) for row in await cur.fetchall()]


async def list_areas(conn: psycopg.AsyncConnection[Any], *, orgs: list[str] | None) -> list[str]:
    """The distinct non-empty areas of devices in the given organisations."""
    cur = await conn.execute(
        "SELECT DISTINCT area FROM devices WHERE area <> ''"
        " AND (%(orgs)s::text[] IS NULL OR org = ANY(%(orgs)s)) ORDER BY area",
        {"orgs": orgs},
    )
    return [str(a) for (a,) in await cur.fetchall()]


_ALERT_COLUMNS = """
a.alert_id, a.org, a.device_id, a.rule_id, a.title, a.kind, a.priority, a.state,
a.occurred_at, a.opened_at, a.paged_at, a.last_seen_at, a.count, a.escalated, a.late,
a.reason, a.outcome, a.handled_by, a.arrived_at, a.closed_at, a.chattering,
coalesce(d.unit, '') AS unit, coalesce(d.area, '') AS area,
json_build_object('tier', a.escalation_tier, 'to', a.escalated_to, 'next_at', NULL,
                  'next_to', NULL) AS escalation,
coalesce(nullif(u.display_name, ''), a.handled_by) AS handled_by_name,
(SELECT e.attributes -> 'position' FROM events e
  WHERE e.device_id = a.device_id AND e.event_id = a.event_id LIMIT 1) AS position
"""
# A stored alert names the tier it reached; the next tier is the live engine's
# to tell (the API shows an open alert from there), so it is null here.
# position: the opening event's (SCAIP <lge>), found through the events primary key
# (device_id, event_id, ...) rather than copied into a column of its own.
_ALERT_FROM = """
FROM alerts a LEFT JOIN devices d USING (device_id) LEFT JOIN users u ON u.username = a.handled_by
"""
# A staff actor's display name; the engine's own ("rule:fall") keep their id.
_NAME_OF = "coalesce((SELECT nullif(display_name, '') FROM users WHERE username = {0}), {0})"


async def alert_history(
    conn: psycopg.AsyncConnection[Any],
    *,
    orgs: list[str] | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    device_ids: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Stored alerts opened in a period (of some devices: a home's), newest first."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_ALERT_COLUMNS} {_ALERT_FROM}"
            " WHERE (%(orgs)s::text[] IS NULL OR a.org = ANY(%(orgs)s))"
            " AND (%(devices)s::text[] IS NULL OR a.device_id = ANY(%(devices)s))"
            " AND (%(since)s::timestamptz IS NULL OR a.opened_at >= %(since)s)"
            " AND (%(until)s::timestamptz IS NULL OR a.opened_at < %(until)s)"
            " ORDER BY a.opened_at DESC LIMIT %(limit)s",
            {"orgs": orgs, "devices": device_ids, "since": since, "until": until,
             "limit": limit},
        )  # fmt: skip
        return list(await cur.fetchall())


@dataclass(frozen=True, slots=True)
class StoredDetail:
    """A stored alert (None if unknown) and its trail, oldest first."""

    alert: dict[str, Any] | None
    transitions: list[dict[str, Any]]
    comments: list[dict[str, Any]]
    escalations: list[dict[str, Any]]  # each tier reached: at, tier, recipients


async def alert_detail(conn: psycopg.AsyncConnection[Any], *, alert_id: str) -> StoredDetail:
    """A stored alert with its transitions, comments and escalations, oldest first.

    Staff are named by their display names too; a takeover names both.
    """
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_ALERT_COLUMNS} {_ALERT_FROM} WHERE a.alert_id = %s", (alert_id,)
        )
        alert = await cur.fetchone()
        await cur.execute(
            "SELECT at, actor, from_state, to_state, note, took_over_from,"
            f" {_NAME_OF.format('t.actor')} AS actor_name,"
            f" {_NAME_OF.format('t.took_over_from')} AS took_over_from_name"
            " FROM alert_transitions t WHERE alert_id = %s ORDER BY at, id",
            (alert_id,),
        )
        transitions = list(await cur.fetchall())
        await cur.execute(
            f"SELECT at, actor, note, {_NAME_OF.format('c.actor')} AS actor_name"
            " FROM alert_comments c WHERE alert_id = %s ORDER BY at, id",
            (alert_id,),
        )
        comments = list(await cur.fetchall())
        await cur.execute(
            "SELECT at, tier, recipients FROM alert_escalations WHERE alert_id = %s"
            " ORDER BY at, tier",
            (alert_id,),
        )
        escalations = list(await cur.fetchall())
    return StoredDetail(alert, transitions, comments, escalations)
