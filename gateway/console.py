"""What the console sees of the running gateway: open alerts, staff actions and the live feed."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.clock import Clock
from gateway.alerting import Alerting, alert_json, incident_json
from gateway.metrics import IngestMetrics
from rules import (
    AlertCleared,
    AlertOpened,
    AlertTransitioned,
    Effect,
    IncidentCleared,
    IncidentOpened,
    IncidentUpdated,
)

# Changes kept for clients that reconnect; at a change a second this is hours.
FEED_CAPACITY = 10_000
# A client this far behind is cut off; it reconnects and catches up from the ring.
_CLIENT_QUEUE = 1_000


@dataclass(frozen=True, slots=True)
class FeedItem:
    """One alert or incident change as the live stream sends it."""

    seq: int
    event_id: str  # "<epoch>-<seq>": the SSE id a client sends back as Last-Event-ID
    org: str
    data: dict[str, Any]


class LiveFeed:
    """A numbered ring of recent changes, fanned out to subscribers.

    Ids carry an epoch chosen at start-up, so an id from before a restart is
    recognised as unknown and the client is sent the whole current state.
    """

    def __init__(self, *, capacity: int = FEED_CAPACITY) -> None:
        self.epoch = secrets.token_hex(4)
        self._seq = 0
        self._ring: deque[FeedItem] = deque(maxlen=capacity)
        self._subscribers: set[asyncio.Queue[FeedItem | None]] = set()

    @property
    def last_id(self) -> str:
        """The id of the newest change (the position a snapshot stands for)."""
        return f"{self.epoch}-{self._seq}"

    def publish(self, org: str, data: dict[str, Any]) -> FeedItem:
        """Number a change, keep it, and hand it to every subscriber."""
        self._seq += 1
        item = FeedItem(self._seq, f"{self.epoch}-{self._seq}", org, data)
        self._ring.append(item)
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(item)
            except asyncio.QueueFull:
                # Too slow to follow: end its stream; it resumes from the ring.
                self._end(queue)
        return item

    def close(self) -> None:
        """End every subscriber's stream (the server is stopping)."""
        for queue in list(self._subscribers):
            self._end(queue)

    def _end(self, queue: asyncio.Queue[FeedItem | None]) -> None:
        self._subscribers.discard(queue)
        if queue.full():
            queue.get_nowait()  # make room for the end marker
        queue.put_nowait(None)

    def since(self, last_event_id: str) -> list[FeedItem] | None:
        """The changes after a client's last id, or None if they are not all still held."""
        epoch, _, seq_text = last_event_id.partition("-")
        if epoch != self.epoch or not seq_text.isdigit():
            return None
        seq = int(seq_text)
        if seq > self._seq:
            return None
        oldest = self._ring[0].seq if self._ring else self._seq + 1
        if seq + 1 < oldest:
            return None  # some of what it missed has left the ring
        return [item for item in self._ring if item.seq > seq]

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[FeedItem | None]]:
        """A queue of changes from now on; None in it means the stream must end."""
        queue: asyncio.Queue[FeedItem | None] = asyncio.Queue(maxsize=_CLIENT_QUEUE)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)


def feed_data(effect: Effect, alerting: Alerting) -> tuple[str, dict[str, Any]]:
    """The organisation and live-stream body of an engine effect."""
    body: dict[str, Any] = {"effect": type(effect).__name__, "pages": effect.pages}
    if isinstance(effect, IncidentOpened | IncidentUpdated | IncidentCleared):
        return effect.incident.org, {"type": "incident", **body,
                                     "incident": incident_json(effect.incident)}  # fmt: skip
    alert = effect.alert
    body |= {"type": "alert", "alert": alert_json(alert, alerting.rules_of(alert.org))}
    if isinstance(effect, AlertOpened | AlertCleared | AlertTransitioned):
        t = effect.transition
        body["transition"] = {
            "at": t.at.isoformat(),
            "actor": t.actor,
            "from_state": t.from_state.value if t.from_state else None,
            "to_state": t.to_state.value,
            "note": t.note,
        }
    return effect.alert.org, body


class Console:
    """Connects the alerting of a running gateway to the live feed and the latency measure."""

    def __init__(self, alerting: Alerting, *, clock: Clock, metrics: IngestMetrics) -> None:
        self.alerting = alerting
        self.feed = LiveFeed()
        self._clock = clock
        self._metrics = metrics
        alerting.listeners.append(self._on_effect)

    def _on_effect(self, effect: Effect, received_at: datetime | None) -> None:
        org, data = feed_data(effect, self.alerting)
        self.feed.publish(org, data)
        if received_at is not None and isinstance(effect, AlertOpened):
            latency = (self._clock.now() - received_at).total_seconds()
            self._metrics.alert_latency.observe(max(latency, 0.0))
