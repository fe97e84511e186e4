"""What a simulation produces: messages placed in time, and what the gateway should make of them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class SimMessage:
    """One MQTT message a simulated device publishes."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False
    # When to send, in seconds after publishing starts (real-time mode); device time is
    # the plan's start plus this offset.
    offset_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Expectation:
    """What the gateway must hold once a plan is ingested: events and dead letters, counted."""

    # Unique stored events per family ("alarm", "sensor", "lock", "dispenser"); a message
    # deliberately sent twice counts once.
    events: dict[str, int]
    # Unique stored events per kind ("device.heartbeat", "sensor.fall", ...).
    kinds: Counter[str]
    # Dead letters per reason code; every bad message is distinct, so none collapse.
    dead_letters: Counter[str]

    @property
    def total_events(self) -> int:
        """All events the gateway should store."""
        return sum(self.events.values())

    @property
    def total_dead_letters(self) -> int:
        """All dead letters the gateway should keep."""
        return sum(self.dead_letters.values())


@dataclass(frozen=True, slots=True)
class Plan:
    """A seeded night of traffic: messages in sending order and the expected outcome."""

    scenario: str
    start: datetime  # device time of offset 0
    span_s: float  # device time covered, from start
    messages: tuple[SimMessage, ...]
    expected: Expectation

    @property
    def end(self) -> datetime:
        """Device time at the end of the plan; no ordinary message is later."""
        return self.start + timedelta(seconds=self.span_s)
