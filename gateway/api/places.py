"""Unit and area of devices for the console, cached: they change only with a registry import."""

from __future__ import annotations

import logging

import psycopg

from gateway.api.context import ApiContext
from gateway.store.console import device_places

log = logging.getLogger(__name__)


async def places_of(ctx: ApiContext, device_ids: list[str]) -> dict[str, tuple[str, str]]:
    """Device id → (unit, area); devices whose place cannot be read now are left out."""
    cache = ctx.places
    if ctx.places_loads != ctx.gateway.registry_loads:
        cache.clear()  # a registry import may have moved devices to other units or areas
        ctx.places_loads = ctx.gateway.registry_loads
    missing = sorted({d for d in device_ids if d not in cache})
    if missing:
        try:
            async with ctx.pool.connection(timeout=2.0) as conn:
                found = await device_places(conn, device_ids=missing)
        except psycopg.OperationalError as exc:
            # The queue still works while PostgreSQL is down, by device id.
            log.warning("device places unavailable: %s", exc)
            found = {}
        if len(cache) + len(found) > _CACHE_MAX:
            cache.clear()
        cache.update(found)
    return {d: cache[d] for d in device_ids if d in cache}


# Devices that raised alerts lately; a night has far fewer.
_CACHE_MAX = 20_000
