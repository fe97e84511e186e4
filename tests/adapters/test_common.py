"""Shared pieces: JSON and timestamp parsing, attribute rules, kinds, ids and size caps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from adapters import SPECS
from adapters.common import (
    MAX_ATTRIBUTE_TEXT,
    MAX_ATTRIBUTES,
    MAX_PAYLOAD_BYTES,
    DeviceSpec,
    address_for,
    load_json_object,
    parse_timestamp,
    resolve_kind,
)
from adapters.sensor import decode as sensor_decode
from adapters.status import MAX_STATUS_BYTES
from core.errors import DecodeError
from core.events import Family, RawMessage

RECEIVED_AT = datetime(2026, 11, 23, 1, 14, 7, tzinfo=UTC)
SENSOR_TOPIC = "wgw/org-1/sensor/sensor-0012/event"


def raw(payload: bytes, topic: str = SENSOR_TOPIC) -> RawMessage:
    return RawMessage(topic, payload, RECEIVED_AT)


def reason_of(call: object) -> str:
    assert callable(call)
    with pytest.raises(DecodeError) as info:
        call()
    return info.value.reason


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-23T02:14:05+01:00", datetime(2026, 11, 23, 1, 14, 5, tzinfo=UTC)),
        ("2026-11-23T01:14:05Z", datetime(2026, 11, 23, 1, 14, 5, tzinfo=UTC)),
        ("2026-11-23T01:14:05.250Z", datetime(2026, 11, 23, 1, 14, 5, 250000, tzinfo=UTC)),
        (1795400000, datetime(2026, 11, 23, 2, 13, 20, tzinfo=UTC)),
        (1795400000.5, datetime(2026, 11, 23, 2, 13, 20, 500000, tzinfo=UTC)),
        (1795400000123, datetime(2026, 11, 23, 2, 13, 20, 123000, tzinfo=UTC)),
    ],
)
def test_timestamps_become_aware_utc(value: object, expected: datetime) -> None:
    parsed = parse_timestamp(value)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


def test_dst_offsets_are_honoured() -> None:
    # Swedish summer time: +02:00; the same wall clock in winter is +01:00.
    summer = parse_timestamp("2026-07-01T02:00:00+02:00")
    assert summer == datetime(2026, 7, 1, 2, 0, tzinfo=timezone(timedelta(hours=2)))


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("2026-11-23T02:14:05", "naive_timestamp"),
        ("2026-11-23", "naive_timestamp"),
        ("yesterday", "invalid_timestamp"),
        ("", "invalid_timestamp"),
        (True, "invalid_timestamp"),
        (None, "invalid_timestamp"),
        ([1795400000], "invalid_timestamp"),
        (10**20, "invalid_timestamp"),
    ],
)
def test_bad_timestamps(value: object, reason: str) -> None:
    assert reason_of(lambda: parse_timestamp(value)) == reason


@pytest.mark.parametrize(
    "payload",
    [
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b'{"a": -Infinity}',
        b'{"a": 1} trailing',
        b"\xef\xbb\xbf{}",  # a BOM is not JSON
        b"",
        b"null",
        b'"online"',
        b"[" * 5 + b"]" * 4,  # unbalanced but shallow: the parser's reason
    ],
    ids=["nan", "inf", "-inf", "trailing", "bom", "empty", "null", "string", "unbalanced"],
)
def test_hostile_or_odd_json_is_invalid_json(payload: bytes) -> None:
    assert reason_of(lambda: load_json_object(raw(payload))) == "invalid_json"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"a": 1e400}', "number_out_of_range"),
        (b'{"a": 1e25}', "number_out_of_range"),
        (b'{"a": -1e300}', "number_out_of_range"),
        (b'{"a": 1000000000000001}', "number_out_of_range"),
        (b'{"a": ' + b"1" * 5000 + b"}", "number_out_of_range"),  # beyond the int-digit limit
        (b"[" * 200_000, "json_too_deep"),  # would exhaust the parser's stack
        (b'{"a": ' + b"[" * 1000 + b"]" * 1000 + b"}", "json_too_deep"),  # ~2 KB of nesting
        (b'{"a": "x\\u0000y"}', "nul_character"),
        (b'{"a\\u0000": 1}', "nul_character"),
        (b'{"a": "\\ud800"}', "lone_surrogate"),
        (b'{"a": "\\udc00x"}', "lone_surrogate"),
    ],
    ids=["1e400", "1e25", "-1e300", "int-over", "huge-int", "deep", "nested-2kb", "nul",
         "nul-key", "surrogate", "low-surrogate"],
)  # fmt: skip
def test_json_limits_have_their_own_reasons(payload: bytes, reason: str) -> None:
    assert reason_of(lambda: load_json_object(raw(payload))) == reason


def test_json_within_limits_is_accepted() -> None:
    value = load_json_object(
        raw(b'{"a": 1e15, "b": -1000000000000000, "c": "\\ud83d\\ude00", "d": "\\\\u0000",'
            b' "e": [[[[[[[1]]]]]]]}')
    )  # fmt: skip
    assert value["c"] == "\U0001f600"  # a surrogate pair is one character
    assert value["d"] == "\\u0000"  # an escaped backslash, not a NUL


def test_invalid_utf8() -> None:
    assert reason_of(lambda: load_json_object(raw(b'{"a": "\xc3"}'))) == "invalid_utf8"


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.family.value)
def test_every_family_refuses_oversized_event_payloads(spec: DeviceSpec) -> None:
    topic = f"wgw/org-1/{spec.family.value}/dev-1/event"
    body = b'{"kind": "device.heartbeat", "ts": 1795400000, "pad": "'
    payload = body + b"x" * (MAX_PAYLOAD_BYTES - len(body)) + b'"}'
    assert reason_of(lambda: spec.decode(raw(payload, topic))) == "oversized"


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.family.value)
def test_every_family_refuses_oversized_status_payloads(spec: DeviceSpec) -> None:
    topic = f"wgw/org-1/{spec.family.value}/dev-1/status"
    payload = b"online" + b" " * MAX_STATUS_BYTES
    assert reason_of(lambda: spec.decode(raw(payload, topic))) == "oversized"


def test_attribute_count_is_capped() -> None:
    fields = ", ".join(f'"a{i}": {i}' for i in range(MAX_ATTRIBUTES + 1))
    payload = f'{{"event": "activity", "ts": 1795400000, {fields}}}'.encode()
    assert reason_of(lambda: sensor_decode(raw(payload))) == "invalid_event"


def test_attribute_text_is_capped() -> None:
    ok = f'{{"event": "activity", "ts": 1795400000, "note": "{"x" * MAX_ATTRIBUTE_TEXT}"}}'
    assert sensor_decode(raw(ok.encode()))[0].attributes["note"] == "x" * MAX_ATTRIBUTE_TEXT
    long = ok.replace('"note": "', '"note": "x')
    assert reason_of(lambda: sensor_decode(raw(long.encode()))) == "invalid_event"


@pytest.mark.parametrize("name", ["", "room name", "x" * 65, "rum/1", "ö"])
def test_attribute_names_are_checked(name: str) -> None:
    payload = f'{{"event": "activity", "ts": 1795400000, "{name}": 1}}'.encode()
    with pytest.raises(DecodeError) as info:
        sensor_decode(raw(payload))
    assert info.value.reason == "invalid_event"
    assert "attribute name" in str(info.value)


def test_wrong_type_message_names_the_field() -> None:
    payload = b'{"event": "left_bed", "ts": 1795400000, "battery": "high"}'
    with pytest.raises(DecodeError) as info:
        sensor_decode(raw(payload))
    assert info.value.reason == "invalid_event"
    assert "'battery'" in str(info.value)


@pytest.mark.parametrize("battery", [0, 100])
def test_battery_bounds_are_inclusive(battery: int) -> None:
    payload = f'{{"event": "activity", "ts": 1795400000, "battery": {battery}}}'.encode()
    assert sensor_decode(raw(payload))[0].attributes["battery"] == battery


@pytest.mark.parametrize("battery", ["-1", "101", "80.0", "true", '"80"'])
def test_battery_must_be_an_integer_percentage(battery: str) -> None:
    payload = f'{{"event": "activity", "ts": 1795400000, "battery": {battery}}}'.encode()
    assert reason_of(lambda: sensor_decode(raw(payload))) == "invalid_event"


def test_stable_id_ignores_field_order_but_not_content() -> None:
    a = sensor_decode(raw(b'{"event": "activity", "ts": 1795400000, "x": 1, "y": "b"}'))[0]
    b = sensor_decode(raw(b'{"y": "b", "x": 1, "ts": 1795400000, "event": "activity"}'))[0]
    c = sensor_decode(raw(b'{"event": "activity", "ts": 1795400000, "x": 2, "y": "b"}'))[0]
    assert a.event_id == b.event_id
    assert a.event_id != c.event_id
    assert a.event_id.startswith("h:")


def test_a_redelivery_later_gets_the_same_id() -> None:
    payload = b'{"event": "activity", "ts": 1795400000}'
    first = sensor_decode(raw(payload))[0]
    later = sensor_decode(RawMessage(SENSOR_TOPIC, payload, RECEIVED_AT + timedelta(hours=3)))[0]
    assert first.event_id == later.event_id
    assert first.occurred_at == later.occurred_at


def test_device_id_is_taken_from_the_topic() -> None:
    event = sensor_decode(raw(b'{"event": "activity", "ts": 1795400000}'))[0]
    assert event.device_id == "sensor-0012"
    same = b'{"event": "activity", "ts": 1795400000, "device_id": "sensor-0012"}'
    assert sensor_decode(raw(same))[0].device_id == "sensor-0012"


def test_kind_resolution() -> None:
    assert resolve_kind("device.tamper", Family.LOCK) == "device.tamper"
    assert reason_of(lambda: resolve_kind("sensor.fall", Family.LOCK)) == "wrong_family_kind"
    assert reason_of(lambda: resolve_kind("Sensor.Fall", Family.SENSOR)) == "unknown_kind"


@pytest.mark.parametrize(
    "topic",
    [
        "wgw/org-1/lock/lock-0007/event",  # another family's topic
        "wgw/org-1/sensor/sensor-0012/config",
        "wgw/org-1/sensor//event",
        "wgw/org-1/sensor/" + "s" * 65 + "/event",
        "wgw/org-1/sensor/sensor+0012/event",
        "wgw/org-1/sensor/sensor-0012",
    ],
)
def test_topics_that_are_not_this_family_event_or_status(topic: str) -> None:
    assert reason_of(lambda: address_for(topic, Family.SENSOR)) == "bad_topic"


GOOD = '"kind": "sensor.activity", "ts": "2026-11-23T02:14:05+01:00"'


@pytest.mark.parametrize(
    ("topic", "body", "reason"),
    [
        (SENSOR_TOPIC, '{"id": null, ' + GOOD + "}", "null_id"),
        (SENSOR_TOPIC, '{"device_id": null, ' + GOOD + "}", "null_device_id"),
        (SENSOR_TOPIC, '{"extra": null, ' + GOOD + "}", "null_attribute"),
        (SENSOR_TOPIC, '{"level": null, ' + GOOD + "}", "null_field"),
        (SENSOR_TOPIC, '{"note": 1e25, ' + GOOD + "}", "number_out_of_range"),
        (SENSOR_TOPIC, '{"note": 1e300, ' + GOOD + "}", "number_out_of_range"),
        (SENSOR_TOPIC, '{"note": "\\ud800", ' + GOOD + "}", "lone_surrogate"),
        (SENSOR_TOPIC, '{"note": "a\\u0000", ' + GOOD + "}", "nul_character"),
        (SENSOR_TOPIC, '{"id": "a\\u0000", ' + GOOD + "}", "nul_character"),
        (SENSOR_TOPIC, '{"note": ' + "[" * 1000 + "]" * 1000 + ", " + GOOD + "}",
         "json_too_deep"),
        (SENSOR_TOPIC, '{"note": [1, 2], ' + GOOD + "}", "invalid_event"),
        ("wgw/org-1/sensor/sensor-0012/status", '{"state": "online", "id": null}', "null_id"),
        ("wgw/org-1/sensor/sensor-0012/status", '{"state": "online", "x": null}',
         "null_attribute"),
        ("wgw/org-1/lock/lock-1/event", '{"entries": [], "device_id": null}', "null_device_id"),
        ("wgw/org-1/lock/lock-1/event",
         '{"entries": [{"id": null, "kind": "lock.locked", "ts": 1795400000}]}', "null_id"),
    ],
    ids=["id-null", "device-id-null", "extra-null", "level-null", "1e25", "1e300", "surrogate",
         "nul", "nul-id", "deep-attribute", "list-attribute", "status-id-null",
         "status-extra-null", "batch-device-null", "entry-id-null"],
)  # fmt: skip
def test_strict_payloads_are_refused_with_their_own_reason(
    topic: str, body: str, reason: str
) -> None:
    spec = next(s for s in SPECS if s.family.value == topic.split("/")[2])
    assert reason_of(lambda: spec.decode(raw(body.encode(), topic))) == reason


def test_numbers_at_the_documented_bounds_are_accepted() -> None:
    body = '{"a": 1e15, "b": -1000000000000000, "c": 0.5, ' + GOOD + "}"
    (event,) = sensor_decode(raw(body.encode()))
    assert event.attributes["a"] == 1e15 and event.attributes["b"] == -(10**15)
