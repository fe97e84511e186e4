"""Live traffic on a fake clock: deterministic, at the asked rate, valid but for the hostile."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta

from core.events import RawMessage
from gateway.config import IngestSettings
from gateway.pipeline import Pipeline
from rules.model import DeviceInfo
from simulators import LiveTraffic, SimMessage, demo_registry

REGISTRY = demo_registry(100, seed=4)
WALL = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)


def drive(seed: int, rate: float, seconds: float, step: float = 0.05) -> list[SimMessage]:
    traffic = LiveTraffic(REGISTRY, seed=seed, rate=rate, now=1000.0, tag="LIVE01")
    sent: list[SimMessage] = []
    now = 1000.0
    while now < 1000.0 + seconds:
        sent += traffic.due(now, WALL + timedelta(seconds=now - 1000.0))
        now = max(now + step, traffic.next_due())
    return sent


def test_the_same_seed_gives_the_same_stream() -> None:
    assert drive(1, 20, 120) == drive(1, 20, 120)
    assert drive(1, 20, 120) != drive(2, 20, 120)


def test_the_total_rate_holds_heartbeats_included() -> None:
    sent = drive(1, 20, 600)
    assert 0.9 * 20 * 600 <= len(sent) <= 1.1 * 20 * 600


def test_every_device_heartbeats_within_its_interval() -> None:
    sent = drive(1, 5, 301)
    beating = set()
    for m in sent:
        if b"<mty>PI</mty>" in m.payload:
            cid = re.search(rb"<cid>([0-9]+)</cid>", m.payload)
            assert cid is not None
            beating.add(cid.group(1).decode())
        elif b'"kind":"device.heartbeat"' in m.payload:
            beating.add(m.topic.split("/")[3])
    # A device in an outage stays quiet; every other one has beaten once in 300 s.
    assert len(beating) >= len(REGISTRY) - 2


def test_everything_but_the_hostile_payloads_is_stored() -> None:
    known = {r.device_id: DeviceInfo(r.org, r.family, r.heartbeat_interval_s) for r in REGISTRY}
    end = WALL + timedelta(minutes=20)
    pipeline = Pipeline(registry=known, settings=IngestSettings())
    kinds: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for message in drive(3, 10, 20 * 60, step=0.2):
        outcome = pipeline.process(RawMessage(message.topic, message.payload, end, message.retain))
        kinds.update(row.event.kind for row in outcome.rows)
        if outcome.dead_letter is not None:
            reasons[outcome.dead_letter.reason] += 1
    # About one incident in twenty seconds, and a few of those hostile.
    assert 0 < reasons.total() < 20
    assert set(reasons) <= {
        "invalid_json", "invalid_utf8", "invalid_event", "naive_timestamp", "unknown_kind",
        "device_mismatch", "unknown_device", "wrong_org", "wrong_family", "clock_skew",
        "too_old", "oversized", "xml_entities", "xml_external_entity", "xml_encoding",
        "scaip_missing_tag", "bad_topic",
    }  # fmt: skip
    for kind in ("device.heartbeat", "sensor.activity", "lock.unlocked", "dispenser.dose_taken"):
        assert kinds[kind] > 0
    assert kinds["sensor.fall"] + kinds["alarm.fall"] + kinds["alarm.button"] > 0
