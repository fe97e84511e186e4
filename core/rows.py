"""What the pipeline hands to storage: events with their organisation, dead letters, shelves."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core.events import Event


@dataclass(frozen=True, slots=True)
class StoredRow:
    """An event ready to store, with the organisation it belongs to."""

    event: Event
    org: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that could not become events, and why."""

    received_at: datetime
    topic: str
    payload: bytes
    reason: str
    detail: str
    org: str | None = None
    device_id: str | None = None


@dataclass(frozen=True, slots=True)
class Shelf:
    """One device out of service: who decided, why, and until when."""

    device_id: str
    reason: str
    shelved_by: str
    starts_at: datetime
    ends_at: datetime
