"""Device registry storage: import records, load the slim in-memory registry."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg

from core.events import Family
from gateway.registry import DeviceRecord, SipAccount
from rules.model import DeviceInfo

_UPSERT = """
INSERT INTO devices (device_id, family, org, unit, area, heartbeat_interval_s, scaip_reply,
                     sip_ha1)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (device_id) DO UPDATE SET
    family = EXCLUDED.family, org = EXCLUDED.org, unit = EXCLUDED.unit, area = EXCLUDED.area,
    heartbeat_interval_s = EXCLUDED.heartbeat_interval_s, scaip_reply = EXCLUDED.scaip_reply,
    sip_ha1 = EXCLUDED.sip_ha1, updated_at = now()
WHERE (devices.family, devices.org, devices.unit, devices.area, devices.heartbeat_interval_s,
       devices.scaip_reply, devices.sip_ha1)
      IS DISTINCT FROM (EXCLUDED.family, EXCLUDED.org, EXCLUDED.unit, EXCLUDED.area,
                        EXCLUDED.heartbeat_interval_s, EXCLUDED.scaip_reply, EXCLUDED.sip_ha1)
"""


def import_devices(dsn: str, records: Sequence[DeviceRecord]) -> int:
    """Insert or update devices in one transaction; return how many rows changed."""
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.executemany(
            _UPSERT,
            [
                (
                    r.device_id,
                    r.family.value,
                    r.org,
                    r.unit,
                    r.area,
                    r.heartbeat_interval_s,
                    r.scaip_reply,
                    r.sip_ha1,
                )
                for r in records
            ],
        )
        return max(cur.rowcount, 0)


async def registry_version(conn: psycopg.AsyncConnection[Any]) -> tuple[datetime | None, int]:
    """A cheap fingerprint of the devices table: latest change and row count."""
    cur = await conn.execute("SELECT max(updated_at), count(*) FROM devices")
    row = await cur.fetchone()
    assert row is not None
    return row[0], row[1]


async def load_known_devices(conn: psycopg.AsyncConnection[Any]) -> dict[str, DeviceInfo]:
    """Load every device as the slim form the pipeline and the rules engine check against."""
    families = {f.value: f for f in Family}
    known: dict[str, DeviceInfo] = {}
    # Share one DeviceInfo per (org, family, interval): 100,000 devices cost one dict.
    shared: dict[tuple[str, str, int], DeviceInfo] = {}
    cur = await conn.execute("SELECT device_id, org, family, heartbeat_interval_s FROM devices")
    for device_id, org, family, interval in await cur.fetchall():
        key = (str(org), str(family), int(interval))
        entry = shared.get(key)
        if entry is None:
            entry = shared[key] = DeviceInfo(key[0], families[key[1]], key[2])
        known[str(device_id)] = entry
    return known


async def load_sip_accounts(conn: psycopg.AsyncConnection[Any]) -> dict[str, SipAccount]:
    """Device id → SIP settings, for the devices whose registry entry sets any."""
    cur = await conn.execute(
        "SELECT device_id, scaip_reply, sip_ha1 FROM devices"
        " WHERE scaip_reply IS NOT NULL OR sip_ha1 IS NOT NULL"
    )
    return {
        str(device_id): SipAccount(reply, ha1) for device_id, reply, ha1 in await cur.fetchall()
    }


async def load_homes(conn: psycopg.AsyncConnection[Any]) -> dict[str, str]:
    """Device id → home (unit) for every device in a home that has a door lock."""
    cur = await conn.execute(
        "SELECT device_id, unit FROM devices WHERE unit <> '' AND unit IN"
        " (SELECT unit FROM devices WHERE family = 'lock' AND unit <> '')"
    )
    return {str(device_id): str(unit) for device_id, unit in await cur.fetchall()}


def list_device_topics(dsn: str) -> list[tuple[str, str, str]]:
    """Every registered device as (device_id, org, family), ordered by id: the broker's accounts."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT device_id, org, family FROM devices ORDER BY device_id")
        return [(str(d), str(o), str(f)) for d, o, f in rows.fetchall()]
