"""A seeded hostile flood through real Mosquitto into `wgw serve`: every message accounted for.

100,000 hostile payloads (simulators.hostile: the known cases with their reasons,
the strict-payload cases, random mutations) mixed with 10,000 valid heartbeats
and a few messages on alert topics, which the gateway ignores. Afterwards:

- events + dead letters + ignored = published, and every known case has its reason;
- /metrics says what the database says (events stored, dead letters per reason);
- every dead letter holds the raw bytes it was published with;
- the gateway logged no traceback;
- publishing the whole set again adds nothing.
"""

from __future__ import annotations

import hashlib
import random
import re
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from core.events import Family
from gateway.embedded import MosquittoServer
from gateway.registry import DeviceRecord
from gateway.store import migrate
from gateway.store.devices import import_devices
from simulators import demo_registry
from simulators.hostile import UNKNOWN_REASON, BadMessage, fuzz_messages, targets_for
from simulators.model import SimMessage
from simulators.publisher import MqttSession
from simulators.render import device_time, event_topic, to_json
from tests.utils.services import (
    GatewayProcess,
    count,
    counts,
    gateway_env,
    rows,
    wait_until,
)

pytestmark = [pytest.mark.broker, pytest.mark.db, pytest.mark.slow]

SEED = 20261202
HOSTILE = 100_000
VALID = 10_000
IGNORED = 50  # on alert topics: the gateway's own output tree, not device traffic

_SAMPLE = re.compile(r'^(wgw_[a-z_]+)(?:\{reason="([^"]*)"\})? (\S+)$', re.M)


def _valid(registry: list[DeviceRecord], rng: random.Random, now: datetime) -> list[BadMessage]:
    """Heartbeats with unique ids from registered devices of every family: one event each."""
    out = []
    for n in range(VALID):
        device = rng.choice(registry)
        at = now - timedelta(seconds=rng.uniform(1, 300))
        body = to_json({"id": f"V{n:06d}", "kind": "device.heartbeat", "ts": device_time(at)})
        out.append(BadMessage(event_topic(device), body, "event"))
    return out


def _sha(topic: str, payload: bytes) -> bytes:
    return hashlib.sha256(topic.encode() + b"\0" + payload).digest()


def _publish(url: str, messages: list[BadMessage]) -> None:
    session = MqttSession(url, max_in_flight=20_000)
    session.open()
    try:
        for m in messages:
            session.send(SimMessage(m.topic, m.payload))
        session.drain()
    finally:
        session.close()


def _metrics(base: str) -> tuple[Counter[str], Counter[str]]:
    text = httpx.get(base + "metrics", timeout=10).text
    plain: Counter[str] = Counter()
    dead: Counter[str] = Counter()
    for name, reason, value in _SAMPLE.findall(text):
        if name == "wgw_dead_letters_total":
            dead[reason] = int(float(value))
        elif not reason:
            plain[name] = int(float(value))
    return plain, dead


def _rss_mb(gateway: GatewayProcess, field: str) -> float:
    assert gateway.proc is not None
    status = Path(f"/proc/{gateway.proc.pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.M).group(1)) / 1024  # type: ignore[union-attr]


def test_a_hostile_flood_is_accounted_for_exactly_and_replays_add_nothing(
    db_dsn: str, mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    started = time.monotonic()
    registry = demo_registry(60, seed=SEED)
    migrate(db_dsn)
    import_devices(db_dsn, registry)

    def first(family: Family) -> DeviceRecord:
        return next(d for d in registry if d.family is family)

    targets = targets_for(registry, first(Family.SENSOR), first(Family.LOCK), first(Family.ALARM))
    now = datetime.now(UTC)
    rng = random.Random(SEED)
    hostile = fuzz_messages(targets, seed=SEED, count=HOSTILE, at=now, now=now)
    valid = _valid(registry, rng, now)
    ignored = [
        BadMessage(f"wgw/{targets.alarm.org}/alerts/forged-{n}", b'{"x":1}', "ignored")
        for n in range(IGNORED)
    ]
    messages = [*hostile, *valid, *ignored]
    rng.shuffle(messages)
    assert len({(m.topic, m.payload) for m in messages}) == len(messages)  # all distinct

    name = f"wgw-{uuid.uuid4().hex[:8]}"
    env = gateway_env(
        dsn=db_dsn, broker_port=mosquitto.port, client_id=name, spool_dir=tmp_path / name
    )
    gateway = GatewayProcess(env, tmp_path / "gateway.log")
    gateway.start()
    try:
        resting = _rss_mb(gateway, "VmRSS")
        _publish(mosquitto.url, messages)
        total = len(messages) - IGNORED

        def stored() -> int:
            return count(db_dsn, "SELECT count(*) FROM events") + count(
                db_dsn, "SELECT count(*) FROM dead_letters"
            )

        wait_until(
            lambda: stored() >= total,
            timeout=180,
            what=f"{total} events and dead letters (log: {gateway.log_text()[-2000:]})",
            proc=gateway.proc,
            interval=0.5,
        )
        (base,) = gateway.console_urls()[-1:]
        events = count(db_dsn, "SELECT count(*) FROM events")
        dead = counts(db_dsn, "SELECT reason, count(*) FROM dead_letters GROUP BY reason")
        # Every message accounted for: events + dead letters + ignored = published.
        assert events + dead.total() + IGNORED == len(messages)
        assert events >= VALID
        assert "decoder_error" not in dead and "storage_rejected" not in dead

        # Every hostile message with a known reason is its dead letter, with that reason.
        by_sha = {
            bytes(sha): reason  # type: ignore[call-overload]
            for sha, reason in rows(db_dsn, "SELECT message_sha256, reason FROM dead_letters")
        }
        wrong = Counter(
            (m.reason, by_sha.get(_sha(m.topic, m.payload), "(none)"))
            for m in hostile
            if m.reason != UNKNOWN_REASON and by_sha.get(_sha(m.topic, m.payload)) != m.reason
        )
        assert not wrong
        # The valid ones are all stored.
        ids = {str(r[0]) for r in rows(db_dsn, "SELECT event_id FROM events WHERE event_id ~ '^V'")}
        assert len(ids) == VALID

        # Dead letters hold the raw bytes: topic and payload hash to the message key.
        assert (
            count(
                db_dsn,
                "SELECT count(*) FROM dead_letters WHERE payload_size <> length(payload)"
                " OR sha256(convert_to(topic, 'UTF8') || '\\x00'::bytea || payload)"
                " <> message_sha256",
            )
            == 0
        )

        # /metrics says what the database says.
        def agree() -> bool:
            plain, per_reason = _metrics(base)
            return plain["wgw_events_stored_total"] == events and per_reason == dead

        wait_until(agree, timeout=30, what=f"/metrics to agree: {_metrics(base)}", interval=0.2)
        plain, _ = _metrics(base)
        assert plain["wgw_messages_total"] == len(messages)
        # Memory stays bounded (docs/payloads.md): the flood waits on disk, not in memory.
        peak = _rss_mb(gateway, "VmHWM")
        print(f"gateway RSS {resting:.0f} MB at rest, peak {peak:.0f} MB during the flood")
        assert peak - resting < 150

        # Replaying the whole set adds nothing, and the counters stay with the database.
        _publish(mosquitto.url, messages)
        wait_until(
            lambda: (
                _metrics(base)[0]["wgw_messages_total"] == 2 * len(messages)
                and _metrics(base)[0]["wgw_duplicates_total"] >= events
            ),
            timeout=180,
            what="the replay to be judged and stored",
            proc=gateway.proc,
            interval=0.5,
        )
        assert count(db_dsn, "SELECT count(*) FROM events") == events
        assert counts(db_dsn, "SELECT reason, count(*) FROM dead_letters GROUP BY reason") == dead
        plain, per_reason = _metrics(base)
        assert plain["wgw_events_stored_total"] == events and per_reason == dead
    finally:
        code = gateway.stop()
    log = gateway.log_text()
    assert "Traceback" not in log, log[-4000:]
    assert code == 0
    print(f"fuzz e2e: {len(messages):,} messages twice in {time.monotonic() - started:.0f} s")
