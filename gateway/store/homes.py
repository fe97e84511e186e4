"""Queries behind the alert detail: a home's devices, entry notes and recent events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from gateway.store.console import DeviceRow

# Routine contact says nothing about the night; silence does (see the gaps below).
_ROUTINE_KINDS = ["device.heartbeat"]
# More than this many heartbeat intervals without any message is a gap worth showing.
_GAP_INTERVALS = 2
# A phone screen's worth and then some; a chattering device must not flood it.
_EVENTS_MAX = 200

HEARTBEAT_GAP = "device.heartbeat_gap"


@dataclass(frozen=True, slots=True)
class HomeDevice:
    """A device of the home with the entry notes kept with it in the registry."""

    device: DeviceRow
    entry_notes: str


@dataclass(frozen=True, slots=True)
class HomeEvent:
    """One event of the home: a bed exit, a door or lock use (``actor`` is the key), or a gap."""

    at: datetime
    device_id: str
    kind: str
    actor: str | None
    until: datetime | None = None  # the end of a heartbeat gap


async def home_devices(
    conn: psycopg.AsyncConnection[Any], *, org: str, device_id: str
) -> list[HomeDevice]:
    """The registered devices sharing ``device_id``'s unit (just that device without a unit)."""
    cur = await conn.execute(
        "SELECT device_id, family, org, unit, area, heartbeat_interval_s, entry_notes"
        " FROM devices WHERE org = %(org)s AND (device_id = %(device)s OR (unit <> '' AND unit ="
        " (SELECT unit FROM devices WHERE device_id = %(device)s AND org = %(org)s)))"
        " ORDER BY family, device_id",
        {"org": org, "device": device_id},
    )
    return [HomeDevice(DeviceRow(*row[:6]), str(row[6])) for row in await cur.fetchall()]


async def home_events(
    conn: psycopg.AsyncConnection[Any], *, device_ids: list[str], since: datetime, until: datetime
) -> list[HomeEvent]:
    """The devices' events in [since, until] with their heartbeat gaps, newest first."""
    cur = await conn.execute(
        "SELECT occurred_at, device_id, kind, actor FROM events"
        " WHERE device_id = ANY(%s) AND occurred_at BETWEEN %s AND %s AND kind <> ALL(%s)"
        " ORDER BY occurred_at DESC LIMIT %s",
        (device_ids, since, until, _ROUTINE_KINDS, _EVENTS_MAX),
    )
    events = [
        HomeEvent(at, str(d), str(kind), actor) for at, d, kind, actor in await cur.fetchall()
    ]
    # Any message is contact, so gaps are measured between consecutive messages of a device.
    cur = await conn.execute(
        "SELECT prev_at, device_id, occurred_at FROM ("
        "  SELECT e.device_id, e.occurred_at, d.heartbeat_interval_s,"
        "         lag(e.occurred_at) OVER (PARTITION BY e.device_id ORDER BY e.occurred_at)"
        "           AS prev_at"
        "  FROM events e JOIN devices d USING (device_id)"
        "  WHERE e.device_id = ANY(%s) AND e.occurred_at BETWEEN %s AND %s) g"
        " WHERE occurred_at - prev_at > make_interval(secs => %s * heartbeat_interval_s)",
        (device_ids, since, until, _GAP_INTERVALS),
    )
    gaps = [HomeEvent(at, str(d), HEARTBEAT_GAP, None, end) for at, d, end in await cur.fetchall()]
    return sorted([*events, *gaps], key=lambda e: e.at, reverse=True)[:_EVENTS_MAX]
