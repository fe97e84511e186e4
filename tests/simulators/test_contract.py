"""The contract with the gateway: its own pipeline makes of every plan exactly what it expects."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest

from core.events import Event, RawMessage
from gateway.config import IngestSettings
from gateway.pipeline import Pipeline
from rules.model import DeviceInfo
from simulators import SCENARIOS, Plan, build_plan, demo_registry

REGISTRY = demo_registry(80, seed=3)
NOW = datetime(2026, 11, 24, 5, 0, tzinfo=UTC)


def ingest(plan: Plan, now: datetime) -> tuple[list[Event], Counter[str]]:
    """What the gateway keeps: events once per (device, id), a dead letter per distinct message."""
    known = {r.device_id: DeviceInfo(r.org, r.family, r.heartbeat_interval_s) for r in REGISTRY}
    pipeline = Pipeline(registry=known, settings=IngestSettings())
    events: dict[tuple[str, str], Event] = {}
    letters: dict[tuple[str, bytes], str] = {}
    for message in plan.messages:
        outcome = pipeline.process(RawMessage(message.topic, message.payload, now, message.retain))
        for row in outcome.rows:
            events.setdefault((row.event.device_id, row.event.event_id), row.event)
        if outcome.dead_letter is not None:
            letters[(message.topic, message.payload)] = outcome.dead_letter.reason
    return list(events.values()), Counter(letters.values())


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_the_gateway_pipeline_stores_exactly_what_the_plan_expects(scenario: str) -> None:
    plan = build_plan(scenario, devices=REGISTRY, seed=3, end=NOW, messages=4_000)
    events, dead_letters = ingest(plan, NOW)
    assert Counter(e.family.value for e in events) == plan.expected.events
    assert Counter(e.kind for e in events) == plan.expected.kinds
    assert dead_letters == plan.expected.dead_letters


def test_a_long_night_starting_now_would_be_refused_as_clock_skew_if_sent_at_once() -> None:
    # Why end=now exists: this plan's device times run hours ahead of the gateway's clock.
    plan = build_plan("quiet_night", devices=REGISTRY, seed=3, start=NOW, messages=4_000)
    _, dead_letters = ingest(plan, NOW)
    assert dead_letters["clock_skew"] > 1_000
