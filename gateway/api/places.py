"""Unit and area of devices for the console, cached: they change only with a registry import."""

from __future__ import annotations

import logging
import time

from core.errors import StorageUnavailable
from gateway.api.context import ApiContext
from gateway.store import connection
from gateway.store.console import device_places

log = logging.getLogger(__name__)


async def places_of(ctx: ApiContext, device_ids: list[str]) -> dict[str, tuple[str, str]]:
    """Device id → (unit, area); devices whose place cannot be read now are left out."""
    cache = ctx.places
    if ctx.places_loads != ctx.gateway.registry_loads:
        cache.clear()  # a registry import may have moved devices to other units or areas
        ctx.places_loads = ctx.gateway.registry_loads
    missing = sorted({d for d in device_ids if d not in cache})
    # While storage knows PostgreSQL is away no lookup is tried at all: an
    # alert on the live stream must not wait for a connection that cannot come.
    if missing and ctx.gateway.storage_up and time.monotonic() >= ctx.db_retry_at:
        try:
            async with connection(ctx.pool, wait_s=2.0) as conn:
                found = await device_places(conn, device_ids=missing)
        except StorageUnavailable as exc:
            # The queue still works while PostgreSQL is down, by device id; the
            # alerts after this one do not each wait for the pool's timeout.
            log.warning("device places unavailable: %s", exc)
            ctx.db_retry_at = time.monotonic() + DB_RETRY_AFTER_S
            found = {}
        if len(cache) + len(found) > _CACHE_MAX:
            cache.clear()
        cache.update(found)
    return {d: cache[d] for d in device_ids if d in cache}


# Devices that raised alerts lately; a night has far fewer.
_CACHE_MAX = 20_000
# After a failed lookup (the database is down), none is tried again for this long.
DB_RETRY_AFTER_S = 10.0
