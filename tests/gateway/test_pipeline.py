"""The pipeline's per-message checks, without broker or database."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pytest

from core.events import Event, Family, RawMessage
from gateway.config import IngestSettings
from gateway.pipeline import Pipeline
from rules.model import DeviceInfo

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
REGISTRY = {
    "sensor-0001": DeviceInfo("vallby", Family.SENSOR, 60),
    "lock-0001": DeviceInfo("vallby", Family.LOCK, 60),
}


def pipeline() -> Pipeline:
    return Pipeline(registry=REGISTRY, settings=IngestSettings())


def raw(topic: str, body: object) -> RawMessage:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return RawMessage(topic=topic, payload=payload, received_at=NOW)


def heartbeat(at: datetime = NOW) -> dict[str, object]:
    return {"kind": "device.heartbeat", "ts": at.isoformat()}


def test_a_registered_device_event_becomes_a_row_for_its_org() -> None:
    p = pipeline()
    outcome = p.process(raw("wgw/vallby/sensor/sensor-0001/event", heartbeat()))
    assert outcome.dead_letter is None
    assert [(r.org, r.event.device_id, r.event.kind) for r in outcome.rows] == [
        ("vallby", "sensor-0001", "device.heartbeat")
    ]
    assert p.metrics.events_in == {"sensor": 1}


@pytest.mark.parametrize(
    ("topic", "body", "reason"),
    [
        ("wgw/vallby/sensor/sensor-9999/event", heartbeat(), "unknown_device"),
        ("wgw/other-org/sensor/sensor-0001/event", heartbeat(), "wrong_org"),
        ("wgw/vallby/dispenser/lock-0001/event", heartbeat(), "wrong_family"),
        (
            "wgw/vallby/sensor/sensor-0001/event",
            heartbeat(NOW + timedelta(minutes=6)),
            "clock_skew",
        ),
        ("wgw/vallby/sensor/sensor-0001/event", heartbeat(NOW - timedelta(days=31)), "too_old"),
        ("wgw/vallby/sensor/sensor-0001", heartbeat(), "bad_topic"),
        ("elsewhere/vallby/sensor/sensor-0001/event", heartbeat(), "bad_topic"),
        ("wgw/vallby/sensor/sensor-0001/event", b"{not json", "invalid_json"),
        (
            "wgw/vallby/sensor/sensor-0001/event",
            {**heartbeat(), "id": "nul\u0000inside"},
            "nul_character",
        ),
    ],
)
def test_bad_messages_become_dead_letters_with_a_reason(
    topic: str, body: object, reason: str
) -> None:
    p = pipeline()
    message = raw(topic, body)
    outcome = p.process(message)
    assert outcome.rows == ()
    assert outcome.dead_letter is not None
    assert outcome.dead_letter.reason == reason
    assert outcome.dead_letter.payload == message.payload
    assert outcome.dead_letter.topic == topic
    assert outcome.dead_letter.detail  # a sentence for the person reading the table
    assert p.metrics.dead_letters_decoded == {reason: 1}


def test_device_time_within_the_skew_allowance_is_accepted() -> None:
    outcome = pipeline().process(
        raw("wgw/vallby/sensor/sensor-0001/event", heartbeat(NOW + timedelta(minutes=4)))
    )
    assert len(outcome.rows) == 1


def test_a_six_hour_late_lock_log_is_accepted() -> None:
    late = NOW - timedelta(hours=6)
    body = {
        "entries": [
            {"id": "L1", "kind": "lock.unlocked", "ts": late.isoformat(), "actor": "key-0042"},
            {"id": "L2", "kind": "lock.locked", "ts": (late + timedelta(minutes=9)).isoformat()},
        ]
    }
    outcome = pipeline().process(raw("wgw/vallby/lock/lock-0001/event", body))
    assert [r.event.occurred_at for r in outcome.rows] == [late, late + timedelta(minutes=9)]


def test_one_bad_entry_dead_letters_the_whole_batch() -> None:
    late = NOW - timedelta(hours=6)
    body = {
        "entries": [
            {"id": "L1", "kind": "lock.unlocked", "ts": late.isoformat(), "actor": "key-0042"},
            {"id": "L2", "kind": "lock.locked", "ts": (NOW + timedelta(hours=2)).isoformat()},
        ]
    }
    outcome = pipeline().process(raw("wgw/vallby/lock/lock-0001/event", body))
    assert outcome.rows == ()
    assert outcome.dead_letter is not None and outcome.dead_letter.reason == "clock_skew"


def test_the_gateways_own_alert_topic_is_not_device_traffic() -> None:
    p = pipeline()
    outcome = p.process(raw("wgw/vallby/alerts/123", {"alert": 1}))
    assert outcome.rows == () and outcome.dead_letter is None
    assert p.metrics.ignored == 1


def test_a_refreshed_registry_takes_effect_for_the_next_message() -> None:
    p = pipeline()
    message = raw("wgw/vallby/sensor/sensor-0002/event", heartbeat())
    assert p.process(message).dead_letter is not None
    p.set_registry({**REGISTRY, "sensor-0002": DeviceInfo("vallby", Family.SENSOR, 60)})
    assert len(p.process(message).rows) == 1


def test_a_decoder_bug_costs_one_message_not_the_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    from adapters import sensor

    def broken(raw: RawMessage) -> list[Event]:
        raise KeyError("surprise")

    broken_spec = dataclasses.replace(sensor.SPEC, decode=broken)
    monkeypatch.setattr("gateway.pipeline.spec_for_topic", lambda topic: broken_spec)
    p = pipeline()
    outcome = p.process(raw("wgw/vallby/sensor/sensor-0001/event", heartbeat()))
    assert outcome.dead_letter is not None
    assert outcome.dead_letter.reason == "decoder_error"
    assert "KeyError" in outcome.dead_letter.detail


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"kind": "device.heartbeat", "ts": 1795400000, "id": null}', "null_id"),
        (b'{"kind": "device.heartbeat", "ts": 1795400000, "x": "\\ud800"}', "lone_surrogate"),
        (b'{"kind": "device.heartbeat", "ts": 1795400000, "x": 1e300}', "number_out_of_range"),
        (b'{"kind": "device.heartbeat", "ts": 1795400000, "x": ' + b"[" * 1000 + b"]" * 1000
         + b"}", "json_too_deep"),
    ],
    ids=["null-id", "surrogate", "1e300", "deep"],
)  # fmt: skip
def test_strict_refusals_keep_the_raw_bytes(body: bytes, reason: str) -> None:
    p = pipeline()
    message = RawMessage("wgw/vallby/sensor/sensor-0001/event", body, NOW)
    outcome = p.process(message)
    assert outcome.dead_letter is not None and outcome.dead_letter.reason == reason
    assert outcome.dead_letter.payload == body
    assert p.metrics.dead_letters_decoded == {reason: 1}
    assert p.metrics.dead_letters == {}  # counted when storage commits it


def test_text_postgresql_cannot_hold_is_refused_before_storage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An adapter that let a lone surrogate through: the pipeline still refuses it.
    from adapters import sensor

    def leaky(message: RawMessage) -> list[Event]:
        event = sensor.decode(
            dataclasses.replace(message, payload=json.dumps(heartbeat()).encode())
        )
        return [event[0].model_copy(update={"attributes": {"x": "a\ud800"}})]

    monkeypatch.setattr(
        "gateway.pipeline.spec_for_topic",
        lambda topic: dataclasses.replace(sensor.SPEC, decode=leaky),
    )
    outcome = pipeline().process(raw("wgw/vallby/sensor/sensor-0001/event", heartbeat()))
    assert outcome.dead_letter is not None and outcome.dead_letter.reason == "lone_surrogate"


def test_a_message_with_no_events_is_counted_as_ignored() -> None:
    p = pipeline()
    message = RawMessage("wgw/vallby/sensor/sensor-0001/status", b"", NOW, retained=True)
    outcome = p.process(message)
    assert outcome.rows == () and outcome.dead_letter is None
    assert p.metrics.ignored == 1
