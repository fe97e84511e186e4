"""Family rules the golden fixtures do not pin down: aliases, levels, batches, status, sniffing."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime

import pytest

from adapters import alarm, dispenser, lock, sensor
from adapters.lock import MAX_ENTRIES
from adapters.sensor import ALIASES, DEFAULT_LEVEL
from core.errors import DecodeError
from core.events import DEVICE_KINDS, FAMILY_KINDS, Event, Family, RawMessage, stable_event_id

RECEIVED_AT = datetime(2026, 11, 23, 1, 14, 7, tzinfo=UTC)
LOCK_TOPIC = "wgw/org-1/lock/lock-0007/event"
SENSOR_TOPIC = "wgw/org-1/sensor/sensor-0012/event"
ALARM_TOPIC = "wgw/org-1/alarm/46700000001/event"
MRQ = b"<mrq><ref>A1</ref><mty>ME</mty><cid>46700000001</cid><dty>0003</dty><stc>0010</stc></mrq>"


def raw(topic: str, payload: bytes | Mapping[str, object], retained: bool = False) -> RawMessage:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return RawMessage(topic, body, RECEIVED_AT, retained)


def refused(decode: object, message: RawMessage) -> DecodeError:
    assert callable(decode)
    with pytest.raises(DecodeError) as info:
        decode(message)
    return info.value


def one(events: list[Event]) -> Event:
    assert len(events) == 1
    return events[0]


# --- sensor -------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "kind"), sorted(ALIASES.items()))
def test_every_roommate_name_decodes_to_its_kind(name: str, kind: str) -> None:
    event = one(sensor.decode(raw(SENSOR_TOPIC, {"event": name, "ts": 1795400000})))
    assert event.kind == kind
    assert kind in FAMILY_KINDS[Family.SENSOR] | DEVICE_KINDS


def test_every_sensor_kind_has_a_default_level() -> None:
    assert set(DEFAULT_LEVEL) == FAMILY_KINDS[Family.SENSOR]
    assert DEFAULT_LEVEL["sensor.fall"] == "alarm"


def test_explicit_level_wins_over_the_default() -> None:
    payload = {"kind": "sensor.fall", "ts": 1795400000, "level": "notice"}
    assert one(sensor.decode(raw(SENSOR_TOPIC, payload))).attributes["level"] == "notice"


def test_device_kinds_get_no_default_level() -> None:
    payload = {"kind": "device.heartbeat", "ts": 1795400000}
    assert "level" not in one(sensor.decode(raw(SENSOR_TOPIC, payload))).attributes


def test_kind_and_event_may_both_be_given_when_they_agree() -> None:
    payload = {"kind": "sensor.in_bed", "event": "back_in_bed", "ts": 1795400000}
    event = one(sensor.decode(raw(SENSOR_TOPIC, payload)))
    assert event.kind == "sensor.in_bed"
    assert "event" not in event.attributes


def test_event_name_must_be_text() -> None:
    error = refused(sensor.decode, raw(SENSOR_TOPIC, {"event": 3, "ts": 1795400000}))
    assert error.reason == "invalid_event"
    assert "'event'" in str(error)


def test_other_families_keep_an_event_field_as_an_attribute() -> None:
    payload = {"kind": "lock.locked", "ts": 1795400000, "event": "auto"}
    assert one(lock.decode(raw(LOCK_TOPIC, payload))).attributes == {"event": "auto"}


# --- lock ---------------------------------------------------------------------------------


def _entries(count: int) -> dict[str, object]:
    return {
        "entries": [
            {"id": f"L-{i:05d}", "kind": "lock.locked", "ts": 1795400000 + i} for i in range(count)
        ]
    }


def test_a_full_batch_is_accepted_entry_by_entry() -> None:
    events = lock.decode(raw(LOCK_TOPIC, _entries(MAX_ENTRIES)))
    assert len(events) == MAX_ENTRIES
    assert [e.event_id for e in events[:2]] == ["L-00000", "L-00001"]
    assert events[-1].occurred_at == datetime.fromtimestamp(1795400000 + MAX_ENTRIES - 1, UTC)


def test_one_entry_too_many_refuses_the_batch() -> None:
    error = refused(lock.decode, raw(LOCK_TOPIC, _entries(MAX_ENTRIES + 1)))
    assert error.reason == "too_many_entries"


def test_a_bad_entry_refuses_the_whole_batch_and_is_named() -> None:
    batch = _entries(5)
    entries = batch["entries"]
    assert isinstance(entries, list)
    entries[3] = {"id": "L-00003", "kind": "lock.unlocked", "ts": 1795400003}
    error = refused(lock.decode, raw(LOCK_TOPIC, batch))
    assert error.reason == "missing_actor"
    assert str(error).startswith("entries[3]:")


def test_entries_without_ids_get_distinct_stable_ids() -> None:
    batch = {
        "entries": [
            {"kind": "lock.door_opened", "ts": 1795400000},
            {"kind": "lock.door_closed", "ts": 1795400000},
            {"kind": "lock.door_opened", "ts": 1795400060},
        ]
    }
    events = lock.decode(raw(LOCK_TOPIC, batch))
    assert len({e.event_id for e in events}) == 3
    assert events == lock.decode(raw(LOCK_TOPIC, batch))


def test_a_late_synced_entry_keeps_its_device_time() -> None:
    entry = {"id": "L-1", "kind": "lock.locked", "ts": "2026-11-22T21:31:05+01:00"}
    event = one(lock.decode(raw(LOCK_TOPIC, {"entries": [entry]})))
    assert event.occurred_at == datetime(2026, 11, 22, 20, 31, 5, tzinfo=UTC)
    assert event.received_at == RECEIVED_AT


@pytest.mark.parametrize("kind", ["lock.locked", "lock.door_opened", "lock.door_closed"])
def test_only_unlock_requires_an_actor(kind: str) -> None:
    assert one(lock.decode(raw(LOCK_TOPIC, {"kind": kind, "ts": 1795400000}))).actor is None


def test_batch_device_id_must_be_text() -> None:
    error = refused(lock.decode, raw(LOCK_TOPIC, {"device_id": 7, "entries": []}))
    assert error.reason == "invalid_event"


# --- dispenser ----------------------------------------------------------------------------


def test_cabinet_closing_needs_no_actor_but_opening_does() -> None:
    topic = "wgw/org-1/dispenser/cabinet-0003/event"
    closed = {"kind": "dispenser.cabinet_closed", "ts": 1795400000}
    assert one(dispenser.decode(raw(topic, closed))).kind == "dispenser.cabinet_closed"
    opened = {"kind": "dispenser.cabinet_opened", "ts": 1795400000}
    assert refused(dispenser.decode, raw(topic, opened)).reason == "missing_actor"
    opened["actor"] = "staff-0311"
    assert one(dispenser.decode(raw(topic, opened))).actor == "staff-0311"


# --- alarm: JSON or SCAIP on one topic ----------------------------------------------------


@pytest.mark.parametrize(
    "payload", [MRQ, b"\n  " + MRQ, b"\xef\xbb\xbf" + MRQ], ids=["plain", "whitespace", "bom"]
)
def test_xml_on_the_event_topic_is_scaip(payload: bytes) -> None:
    event = one(alarm.decode(raw(ALARM_TOPIC, payload)))
    assert (event.kind, event.event_id, event.device_time) == ("alarm.button", "A1", False)


def test_utf16_on_the_event_topic_gets_the_xml_reason() -> None:
    payload = MRQ.decode().encode("utf-16")
    assert refused(alarm.decode, raw(ALARM_TOPIC, payload)).reason == "xml_encoding"


def test_json_on_the_alarm_topic() -> None:
    payload = {"id": "a-1", "kind": "alarm.button", "ts": "2026-11-23T02:14:05+01:00"}
    event = one(alarm.decode(raw("wgw/org-1/alarm/alarm-0003/event", payload)))
    assert (event.kind, event.event_id, event.device_time) == ("alarm.button", "a-1", True)


def test_scaip_occurred_at_is_the_receive_time() -> None:
    event = one(alarm.decode(raw("scaip/org-1/mrq", MRQ)))
    assert event.occurred_at == event.received_at == RECEIVED_AT
    assert event.device_id == "46700000001"


@pytest.mark.parametrize("topic", ["scaip//mrq", "scaip/org-1/mrs", "scaip/org-1/mrq/x"])
def test_bridge_topic_shape(topic: str) -> None:
    assert refused(alarm.decode, raw(topic, MRQ)).reason == "bad_topic"


def test_scaip_oversized_on_the_event_topic() -> None:
    payload = MRQ.replace(b"</mrq>", b"<dte>" + b"x" * 9000 + b"</dte></mrq>")
    assert refused(alarm.decode, raw(ALARM_TOPIC, payload)).reason == "oversized"


# --- status -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "kind"),
    [(b"online", "device.online"), (b" OFFLINE\r\n", "device.offline")],
)
def test_plain_status_words(payload: bytes, kind: str) -> None:
    event = one(lock.decode(raw("wgw/org-1/lock/lock-0007/status", payload)))
    assert event.kind == kind
    assert event.occurred_at == RECEIVED_AT
    assert not event.device_time
    assert event.event_id == stable_event_id("lock-0007", kind, RECEIVED_AT)


def test_json_status_without_ts_uses_the_receive_time_id() -> None:
    payload = {"state": "offline", "battery": 40}
    event = one(sensor.decode(raw("wgw/org-1/sensor/s-1/status", payload)))
    assert event.event_id == stable_event_id("s-1", "device.offline", RECEIVED_AT)
    assert event.attributes == {"battery": 40}


def test_retained_and_live_copies_of_a_timed_status_share_an_id() -> None:
    topic = "wgw/org-1/dispenser/disp-0021/status"
    payload = {"state": "online", "ts": "2026-11-23T02:13:59+01:00"}
    live = one(dispenser.decode(raw(topic, payload)))
    retained = one(dispenser.decode(raw(topic, payload, retained=True)))
    assert live.event_id == retained.event_id
    assert live.device_time
    assert "retained" not in live.attributes
    assert retained.attributes["retained"] is True


def test_status_with_its_own_id() -> None:
    payload = {"state": "online", "id": "st-1"}
    assert one(lock.decode(raw("wgw/org-1/lock/lock-0007/status", payload))).event_id == "st-1"


def test_an_empty_retained_status_is_a_clear_not_an_event() -> None:
    assert lock.decode(raw("wgw/org-1/lock/lock-0007/status", b"", retained=True)) == []


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"state": "asleep"}', "invalid_event"),
        (b'{"ts": 1795400000}', "invalid_event"),
        (b'{"state": "online", "ts": "2026-11-23T02:13:59"}', "naive_timestamp"),
        (b'{"state": "online"', "invalid_json"),
        (b"onl\xffine", "invalid_utf8"),
        (b"1", "invalid_event"),
    ],
)
def test_bad_status_payloads(payload: bytes, reason: str) -> None:
    message = raw("wgw/org-1/sensor/s-1/status", payload)
    assert refused(sensor.decode, message).reason == reason
