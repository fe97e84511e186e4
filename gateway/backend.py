"""The storage seam: what the gateway needs from its database, and an in-memory double.

The gateway reads its start-up state and periodic refreshes from a
``Backend`` and hands journal entries to its ``Sink``. PostgreSQL's
implementation lives in gateway.store; ``MemoryBackend`` runs the whole
gateway in memory, so tests of alerting and escalation need no database.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from core.errors import StorageUnavailable
from core.rows import Shelf, WriteResult
from gateway.journal import JournalEntry, Progress
from gateway.registry import SipAccount
from rules.access import AccessDirectory
from rules.model import DeviceInfo
from rules.work import AlertWork


@dataclass
class Startup:
    """Everything the gateway needs from storage before it takes messages."""

    devices: dict[str, DeviceInfo]
    version: tuple[datetime | None, int] = (None, 0)
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    directory: AccessDirectory | None = None
    directory_at: datetime | None = None
    homes: dict[str, str] = field(default_factory=dict)
    shelves: list[Shelf] = field(default_factory=list)
    progress: Progress | None = None
    sip: dict[str, SipAccount] = field(default_factory=dict)


@dataclass
class Refresh:
    """What changed since the last look; None where nothing did."""

    version: tuple[datetime | None, int]
    devices: dict[str, DeviceInfo] | None
    homes: dict[str, str] | None
    shelves: list[Shelf]
    directory_at: datetime | None
    directory: AccessDirectory | None
    sip: dict[str, SipAccount] | None = None  # with devices, when they changed


class Sink(Protocol):
    """Where journal entries are stored, exactly once, with the spool position."""

    async def write(
        self, entries: Sequence[JournalEntry], progress: Progress | None = None
    ) -> WriteResult:
        """Store entries; raise StorageUnavailable while storage cannot be reached."""
        ...

    async def probe(self) -> bool:
        """Whether storage answers now."""
        ...

    async def close(self) -> None:
        """Let go of connections."""
        ...


class Backend(Protocol):
    """The database as the gateway process sees it."""

    async def prepare(self) -> str:
        """Wait for the database and bring its schema up to date; say how it stores events."""
        ...

    async def startup(self, *, spool_id: str, now: datetime) -> Startup:
        """The registry, saved rule state, access directory and the spool's stored position."""
        ...

    async def refresh(self, now: datetime) -> Refresh:
        """What changed in the registry, shelves and directory; StorageUnavailable if away."""
        ...

    def sink(self) -> Sink:
        """The sink storage writes the journal to."""
        ...

    async def close(self) -> None:
        """Let go of connections."""
        ...


class MemorySink:
    """Keeps what it is given; ``up = False`` makes it behave like a database that is away."""

    def __init__(self) -> None:
        self.entries: list[JournalEntry] = []
        self.progress: Progress | None = None
        self.up = True

    async def write(
        self, entries: Sequence[JournalEntry], progress: Progress | None = None
    ) -> WriteResult:
        """Record entries (all rows count as new; the key is PostgreSQL's business)."""
        if not self.up:
            raise StorageUnavailable("the in-memory sink is set to be away")
        self.entries.extend(entries)
        if progress is not None:
            self.progress = progress
        rows = sum(e.row_count for e in entries)
        reasons = Counter(d.reason for e in entries for d in e.dead)
        return WriteResult(rows, 0, sum(reasons.values()), dict(reasons))

    async def probe(self) -> bool:
        """Whether ``up`` is set."""
        return self.up

    async def close(self) -> None:
        """Nothing to let go of."""

    def work(self) -> AlertWork:
        """Everything the stored entries changed, merged in order."""
        merged = AlertWork()
        for entry in self.entries:
            if entry.work is not None:
                merged.absorb(entry.work)
        return merged


class MemoryBackend:
    """A backend held in memory: fixed start-up state and a MemorySink."""

    def __init__(self, startup: Startup) -> None:
        self._startup = startup
        self.memory = MemorySink()

    async def prepare(self) -> str:
        """Nothing to wait for."""
        return "memory"

    async def startup(self, *, spool_id: str, now: datetime) -> Startup:
        """The state given at construction, with what the sink stored since: as PostgreSQL would."""
        progress = self.memory.progress
        if progress is None or progress.spool_id != spool_id:
            progress = Progress(spool_id)
        self._startup.progress = progress
        self._startup.states.update(self.memory.work().states)
        return self._startup

    async def refresh(self, now: datetime) -> Refresh:
        """Nothing changes unless a test changes the start-up state's shelves."""
        s = self._startup
        return Refresh(s.version, None, None, s.shelves, s.directory_at, None)

    def sink(self) -> Sink:
        """The in-memory sink."""
        return self.memory

    async def close(self) -> None:
        """Nothing to let go of."""
