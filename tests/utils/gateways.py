"""Running a gateway in a test: in-process on a MemorySource, ticked only when the test says."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from core.clock import FrozenClock
from gateway.backend import Backend
from gateway.config import Settings, load_settings
from gateway.ingest import MemorySource
from gateway.service import Gateway


async def until(
    predicate: Callable[[], bool], within_s: float = 30, *, poll_s: float = 0.01
) -> None:
    """Poll ``predicate`` until it holds; TimeoutError after ``within_s``."""
    async with asyncio.timeout(within_s):
        while not predicate():
            await asyncio.sleep(poll_s)


def ticked_settings(dsn: str, *, spool: str | None = None) -> Settings:
    """Settings whose timers, supervision and escalation fire only on ``tick_now()``.

    The tick loop's period (its maximum) outlasts any test. ``spool`` names a
    spool directory of its own beside the test's, for a second gateway.
    """
    loaded = load_settings(None, db={"dsn": dsn}, rules={"tick_s": 60})
    if spool is None:
        return loaded
    own = loaded.spool.model_copy(update={"dir": loaded.spool.dir.with_name(spool)})
    return loaded.model_copy(update={"spool": own})


@asynccontextmanager
async def running_gateway(
    settings: Settings,
    clock: FrozenClock,
    *,
    batch_max: int = 100,
    backend: Backend | None = None,
) -> AsyncIterator[tuple[Gateway, MemorySource]]:
    """A gateway fed by a MemorySource, started and stopped around the block."""
    source = MemorySource(batch_max=batch_max)
    gateway = Gateway(settings, clock=clock, source_factory=lambda: source, backend=backend)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    await until(gateway.ready.is_set, within_s=60)
    try:
        yield gateway, source
    finally:
        stop.set()
        await task


async def judged(gateway: Gateway, fed: int) -> None:
    """Wait until the rules have judged all ``fed`` messages this gateway was given."""
    await until(
        lambda: gateway.metrics.messages == fed and gateway.spool_status().waiting_rules == 0
    )


async def stored(gateway: Gateway) -> None:
    """Wait until everything the rules journalled is in storage."""
    await until(lambda: gateway.spool_status().waiting_storage == 0)
