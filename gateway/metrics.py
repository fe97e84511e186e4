"""In-process counters for ingest, read by the demo's status line and (later) /metrics."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class IngestMetrics:
    """Running totals since start; cheap enough to bump per message."""

    messages: int = 0
    events_in: Counter[str] = field(default_factory=Counter)  # decoded, per family
    events_stored: int = 0  # new rows committed
    duplicates: int = 0  # redeliveries the idempotency key absorbed
    dead_letters: Counter[str] = field(default_factory=Counter)  # per reason
    batches: int = 0
    batch_rows_max: int = 0
    write_failures: int = 0
    ignored: int = 0  # messages on topics that are not device traffic (our own alerts)

    def snapshot(self) -> dict[str, object]:
        """A plain copy for printing or JSON."""
        return {
            "messages": self.messages,
            "events_in": dict(self.events_in),
            "events_stored": self.events_stored,
            "duplicates": self.duplicates,
            "dead_letters": dict(self.dead_letters),
            "batches": self.batches,
            "batch_rows_max": self.batch_rows_max,
            "write_failures": self.write_failures,
            "ignored": self.ignored,
        }
