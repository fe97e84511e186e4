"""What the pipeline hands to storage: events with their organisation, dead letters, shelves."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one committed write changed."""

    inserted: int
    duplicates: int
    dead_letters: int
    # The dead letters inserted, per reason (those already stored are not counted).
    dead_letter_reasons: Mapping[str, int] = field(default_factory=dict)


# The events table's columns in the order render_rows writes them.
EVENT_COLUMNS = (
    "occurred_at", "device_id", "event_id", "received_at", "org", "family", "kind",
    "actor", "device_time", "attributes",
)  # fmt: skip

# The text row format gives these four characters a meaning; escape them.
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
# One encoder for all rows: json.dumps with options builds a new one per call.
_ATTRIBUTES_JSON = json.JSONEncoder(separators=(",", ":")).encode


def render_rows(rows: Sequence[StoredRow]) -> bytes:
    """Rows as PostgreSQL's COPY text format, one line each, columns as EVENT_COLUMNS.

    Rendered once, when the rules have judged the events: the spool's journal
    keeps these bytes and storage sends them as they are.
    """
    lines: list[str] = []
    append = lines.append
    esc = _ESCAPES
    for row in rows:
        e = row.event
        actor = "\\N" if e.actor is None else e.actor.translate(esc)
        attributes = _ATTRIBUTES_JSON(e.attributes).translate(esc) if e.attributes else "{}"
        # device_id and kind are validated to need no escaping; the rest may.
        append(
            f"{e.occurred_at.isoformat()}\t{e.device_id}\t{e.event_id.translate(esc)}\t"
            f"{e.received_at.isoformat()}\t{row.org.translate(esc)}\t{e.family.value}\t"
            f"{e.kind}\t{actor}\t{'t' if e.device_time else 'f'}\t{attributes}\n"
        )
    # surrogatepass: a lone surrogate reaches PostgreSQL, which refuses that row
    # with a reason (storage then dead-letters it) instead of failing here.
    return "".join(lines).encode("utf-8", "surrogatepass")
