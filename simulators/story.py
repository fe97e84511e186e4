"""A scenario's workbench: places rendered messages in time and keeps the expectation in step."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta

from core.events import Family
from gateway.registry import DeviceRecord
from simulators.fleet import Transport
from simulators.hostile import BadMessage
from simulators.model import Expectation, Plan, SimMessage
from simulators.render import Attribute, Rendered, Renderer

# Every story covers at least one heartbeat of every device at the 300 s interval.
MIN_DURATION_S = 600.0


class Story:
    """Collects one plan's messages in story time (seconds after the story starts).

    The story starts ``lead_s`` after the plan: heartbeats added to reach a message
    count come first, so the scenario's events are the most recent ones.
    """

    def __init__(
        self,
        devices: Sequence[DeviceRecord],
        *,
        seed: int,
        start: datetime,
        lead_s: float,
        end: datetime,
        tag: str,
    ) -> None:
        self.devices = list(devices)
        self.start = start
        self.end = end
        self.lead_s = lead_s
        self.rng = random.Random(f"story:{seed}")
        self.render = Renderer(self.devices, seed=seed, tag=tag)
        self.duration_s = MIN_DURATION_S
        self.used: set[str] = set()
        # Devices that went quiet, and the story time they did.
        self.silent_from: dict[str, float] = {}
        self._placed: list[SimMessage] = []
        self._events: Counter[str] = Counter()
        self._kinds: Counter[str] = Counter()
        self._dead: Counter[str] = Counter()

    def lasts(self, seconds: float) -> None:
        """Make the story at least this long (heartbeats run until its end)."""
        self.duration_s = max(self.duration_s, seconds)

    def at(self, rel: float) -> tuple[float, datetime]:
        """Offset from the plan start and device time of a story time."""
        offset = max(0.0, round(self.lead_s + rel, 3))
        return offset, self.start + timedelta(seconds=offset)

    def pick(
        self, family: Family, count: int = 1, *, transport: Transport | None = None
    ) -> list[DeviceRecord]:
        """Choose up to ``count`` distinct devices, preferring ones no earlier part has used."""
        pool = [d for d in self.devices if d.family is family]
        if transport is not None:
            fitting = [d for d in pool if self.render.style(d).transport is transport]
            pool = fitting or pool
        fresh = [d for d in pool if d.device_id not in self.used]
        chosen = self.rng.sample(fresh, min(count, len(fresh)))
        if len(chosen) < count:
            spare = [d for d in pool if d not in chosen]
            chosen += self.rng.sample(spare, min(count - len(chosen), len(spare)))
        self.used.update(d.device_id for d in chosen)
        return chosen

    def unused(self) -> list[DeviceRecord]:
        """Devices no part of the story has featured yet, in registry order."""
        return [d for d in self.devices if d.device_id not in self.used]

    def place(self, rel: float, rendered: Rendered, family: Family) -> SimMessage:
        """Put a rendered message at a story time and count the events it should store."""
        offset, _ = self.at(rel)
        message = SimMessage(
            rendered.topic, rendered.payload, retain=rendered.retain, offset_s=offset
        )
        self._placed.append(message)
        self._events[family.value] += len(rendered.kinds)
        self._kinds.update(rendered.kinds)
        return message

    def event(
        self,
        rel: float,
        device: DeviceRecord,
        kind: str,
        *,
        with_id: bool | None = None,
        actor: str | None = None,
        **attributes: Attribute,
    ) -> SimMessage:
        """A JSON event at a story time, with that time as its device time."""
        _, when = self.at(rel)
        rendered = self.render.event(
            device, kind, when, with_id=with_id, actor=actor, attributes=attributes
        )
        return self.place(rel, rendered, device.family)

    def scaip(
        self,
        rel: float,
        device: DeviceRecord,
        kind: str,
        *,
        bridged: bool | None = None,
        stc: str | None = None,
        mty: str | None = None,
        pri: str | None = None,
    ) -> SimMessage:
        """A SCAIP request at a story time (bridged or not as the device's style says)."""
        rendered = self.render.scaip(device, kind, bridged=bridged, stc=stc, mty=mty, pri=pri)
        return self.place(rel, rendered, device.family)

    def lock_log(
        self, rel: float, device: DeviceRecord, lines: Sequence[tuple[datetime, str, str | None]]
    ) -> SimMessage:
        """A lock syncing its offline log at a story time; each line keeps its own device time."""
        return self.place(rel, self.render.lock_log(device, lines), device.family)

    def goes_offline(self, rel: float, device: DeviceRecord) -> SimMessage:
        """The device's retained offline status; it sends no heartbeat after this."""
        _, when = self.at(rel)
        self.silent_from[device.device_id] = rel
        self.used.add(device.device_id)
        return self.place(rel, self.render.status(device, "offline", when), device.family)

    def heartbeat(self, rel: float, device: DeviceRecord) -> SimMessage:
        """The device's supervision message at a story time."""
        _, when = self.at(rel)
        return self.place(rel, self.render.heartbeat(device, when), device.family)

    def resend(self, rel: float, message: SimMessage) -> SimMessage:
        """Publish the very same bytes again (a device retrying); stored once, so not counted."""
        offset, _ = self.at(rel)
        again = SimMessage(message.topic, message.payload, retain=message.retain, offset_s=offset)
        self._placed.append(again)
        return again

    def bad(self, rel: float, bad: BadMessage) -> SimMessage:
        """A message that must become a dead letter with its reason."""
        offset, _ = self.at(rel)
        message = SimMessage(bad.topic, bad.payload, offset_s=offset)
        self._placed.append(message)
        self._dead[bad.reason] += 1
        return message

    @property
    def message_count(self) -> int:
        """Messages placed so far."""
        return len(self._placed)

    def plan(self, scenario: str) -> Plan:
        """Freeze the story into a plan, messages in sending order."""
        # sorted() is stable: messages at the same offset keep the order they were placed in.
        messages = tuple(sorted(self._placed, key=lambda m: m.offset_s))
        expected = Expectation(
            events={family.value: self._events[family.value] for family in Family},
            kinds=Counter(self._kinds),
            dead_letters=Counter(self._dead),
        )
        span = (self.end - self.start).total_seconds()
        return Plan(scenario, self.start, span, messages, expected)
