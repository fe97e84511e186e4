"""The spool's record formats: lanes chosen on receipt, raw messages and journal entries."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from core.events import Family, RawMessage
from gateway.config import load_settings
from gateway.journal import (
    JournalEntry,
    JournalFormatError,
    Lane,
    decode_entry,
    decode_raw,
    encode_entry,
    encode_raw,
    lane_of,
    make_entry,
)
from gateway.pipeline import Pipeline
from rules import default_rules_text, load_ruleset
from rules.model import DeviceInfo

# The attributes the default rule set judges (battery), as the gateway derives them.
JUDGED = load_ruleset(default_rules_text(), None).judged_attributes()


def lane(message: RawMessage) -> Lane:
    return lane_of(message, JUDGED)


FIXTURES = Path(__file__).parent.parent / "adapters" / "fixtures"
AT = datetime(2026, 11, 24, 1, 10, 5, 123456, tzinfo=UTC)


def raw(topic: str, payload: bytes | str, *, retained: bool = False) -> RawMessage:
    data = payload.encode() if isinstance(payload, str) else payload
    return RawMessage(topic, data, AT, retained)


def fixture(family: str, name: str) -> bytes:
    return (FIXTURES / family / name).read_bytes()


def event_topic(family: str, device: str = "dev-1") -> str:
    return f"wgw/vallby/{family}/{device}/event"


def status_topic(family: str, device: str = "dev-1") -> str:
    return f"wgw/vallby/{family}/{device}/status"


# -- lanes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "name", "expected"),
    [
        ("alarm", "scaip_heartbeat.xml", Lane.BULK),  # <mty>PI</mty>, nothing else to judge
        # {"event": "heartbeat", ..., "battery": 87}: the battery rule judges its reading,
        # in order with the device's other readings, so it is no bare heartbeat.
        ("sensor", "heartbeat_epoch_ms.json", Lane.ALARM),
    ],
)
def test_the_fixtures_heartbeats_go_to_the_lane_their_content_needs(
    family: str, name: str, expected: Lane
) -> None:
    assert lane(raw(event_topic(family), fixture(family, name))) is expected


@pytest.mark.parametrize("family", ["alarm", "sensor", "lock", "dispenser"])
def test_the_json_heartbeat_of_every_family_goes_to_the_bulk_lane(family: str) -> None:
    for body in (
        {"kind": "device.heartbeat", "ts": AT.isoformat()},
        {"id": "hb-1", "kind": "device.heartbeat", "ts": 1795400000123},
        {"event": "heartbeat", "ts": AT.isoformat()},
    ):
        assert lane(raw(event_topic(family), json.dumps(body))) is Lane.BULK, body
    # A reading rides along: judged in order with the device's other events.
    with_battery = {"kind": "device.heartbeat", "ts": 1795400000123, "battery": 87}
    assert lane(raw(event_topic(family), json.dumps(with_battery))) is Lane.ALARM
    # Spacing is the device's own choice.
    spaced = '{ "kind" : "device.heartbeat" , "ts" : 1795400000 }'
    assert lane(raw(event_topic(family), spaced)) is Lane.BULK


def test_a_scaip_heartbeat_bridged_from_sip_goes_to_the_bulk_lane() -> None:
    assert lane(raw("scaip/vallby/mrq", fixture("alarm", "scaip_heartbeat.xml"))) is Lane.BULK


@pytest.mark.parametrize(
    ("family", "name"),
    [
        ("alarm", "status_online.json"),
        ("alarm", "status_offline_retained.txt"),
        ("sensor", "status_online.txt"),
        ("lock", "status_offline.json"),
        ("dispenser", "status_offline_will.json"),
    ],
)
def test_status_messages_go_to_the_bulk_lane(family: str, name: str) -> None:
    message = raw(status_topic(family), fixture(family, name), retained=True)
    assert lane(message) is Lane.BULK
    # Clearing a retained status is an empty payload.
    assert lane(raw(status_topic(family), b"", retained=True)) is Lane.BULK


def _fixture_cases() -> list[tuple[str, str]]:
    """Every good fixture of every family that is neither a heartbeat nor a status."""
    cases = []
    for path in sorted(FIXTURES.glob("*/*")):
        if path.name.endswith(".expected.json") or path.name.startswith(("bad_", "status_")):
            continue
        expected = json.loads(path.with_name(path.stem + ".expected.json").read_text())
        if any(e["kind"] == "device.heartbeat" for e in expected["events"]):
            continue
        cases.append((path.parent.name, path.name))
    return cases


@pytest.mark.parametrize(("family", "name"), _fixture_cases())
def test_every_event_that_is_not_a_heartbeat_goes_to_the_alarm_lane(family: str, name: str) -> None:
    assert lane(raw(event_topic(family), fixture(family, name))) is Lane.ALARM


def test_the_fixture_cases_cover_what_pages() -> None:
    names = {name for _, name in _fixture_cases()}
    # Guards the parametrisation above against a fixture directory moved away.
    assert {"fall.json", "left_bed.json", "back_in_bed.json", "scaip_fall_detector.xml"} <= names
    assert {"offline_log_sync.json", "dose_missed.json", "scaip_button.xml"} <= names


def test_a_lock_log_batch_mentioning_a_heartbeat_stays_in_the_alarm_lane() -> None:
    # A synced log is an array of entries: a heartbeat among them must not
    # carry the openings with it into the bulk lane.
    entries = [
        {"kind": "device.heartbeat", "ts": AT.isoformat()},
        {"id": "L-1", "kind": "lock.unlocked", "ts": AT.isoformat(), "actor": "key-0099"},
    ]
    payload = json.dumps({"entries": entries})
    assert lane(raw(event_topic("lock"), payload)) is Lane.ALARM
    logged = json.loads(fixture("lock", "offline_log_sync.json"))
    logged["entries"].append({"kind": "device.heartbeat", "ts": AT.isoformat()})
    assert lane(raw(event_topic("lock"), json.dumps(logged))) is Lane.ALARM


def test_a_large_alarm_stays_in_the_alarm_lane_whatever_it_mentions() -> None:
    body = {"id": "f-1", "kind": "sensor.fall", "ts": AT.isoformat(), "level": "alarm",
            "note": "x" * 1000, "last": "heartbeat"}  # fmt: skip
    payload = json.dumps(body)
    assert len(payload) > 1024
    assert lane(raw(event_topic("sensor"), payload)) is Lane.ALARM
    # A large heartbeat is doubtful too: it may hold more than a heartbeat.
    big = json.dumps({"kind": "device.heartbeat", "ts": AT.isoformat(), "pad": "y" * 1100})
    assert lane(raw(event_topic("sensor"), big)) is Lane.ALARM


def test_doubtful_payloads_go_to_the_alarm_lane() -> None:
    sensor = event_topic("sensor")
    for payload in (
        b"",  # empty event
        b"\xff\xfe heartbeat",  # not UTF-8
        b"heartbeat",  # a bare word, not the JSON string
        b'{"kind": "device.heartbeats"}',  # not the marker
        b'{"kind": "device.\\u0068eartbeat"}',  # escaped: decodes to a heartbeat, still alarm
        b"<mrq><mty>ME</mty><stc>0010</stc></mrq>",
        b"<mrq><mty> PI </mty></mrq>",
    ):
        assert lane(raw(sensor, payload)) is Lane.ALARM, payload
    # A topic that merely contains "status" is no status topic.
    assert lane(raw("wgw/vallby/sensor/status/event", b'{"kind": "sensor.fall"}')) is Lane.ALARM
    assert lane(raw("wgw/vallby/sensor/dev/statusx", b"offline")) is Lane.ALARM


@pytest.mark.parametrize(
    "body",
    [
        {"id": "f-1", "kind": "sensor.fall", "ts": AT.isoformat(), "heartbeat": 60},
        {"id": "f-2", "kind": "sensor.fall", "ts": AT.isoformat(), "trigger": "heartbeat"},
        {"id": "b-1", "kind": "alarm.button", "ts": AT.isoformat(), "via": "device.heartbeat"},
    ],
)
def test_an_alarm_with_an_attribute_saying_heartbeat_stays_in_the_alarm_lane(
    body: dict[str, object],
) -> None:
    # Attribute names and text values are the device's own (docs/payloads.md):
    # a word among them does not make the message a heartbeat.
    assert lane(raw(event_topic("sensor"), json.dumps(body))) is Lane.ALARM


# -- raw records -----------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        RawMessage("wgw/vallby/sensor/s-1/event", b'{"kind": "sensor.fall"}', AT),
        RawMessage("wgw/vallby/sensor/s-1/status", b"offline", AT, True),
        RawMessage("wgw/vallby/sensor/s-1/event", b"", AT),
        RawMessage("wgw/vallby/sensor/s-1/event", bytes(range(256)) * 10, AT),
        # A topic that was not UTF-8 on the wire, decoded with surrogateescape.
        RawMessage(b"wgw/v\xe4llby/\xff/event".decode("utf-8", "surrogateescape"), b"x", AT),
        RawMessage("wgw/vällby/sensor/ö-1/event", "åäö".encode(), AT),
        RawMessage("", b"x", datetime(1970, 1, 1, tzinfo=UTC)),
        RawMessage("t", b"x", datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        RawMessage("t", b"x", datetime(2106, 2, 7, 6, 28, 16, 1, tzinfo=UTC)),
    ],
)
def test_a_raw_message_comes_back_from_its_record_exactly(message: RawMessage) -> None:
    back = decode_raw(encode_raw(message))
    assert back == message
    assert back.received_at.microsecond == message.received_at.microsecond
    assert back.received_at.utcoffset() == timedelta(0)
    assert back.topic.encode("utf-8", "surrogateescape") == message.topic.encode(
        "utf-8", "surrogateescape"
    )


def test_a_raw_record_keeps_the_instant_of_an_aware_time_in_another_zone() -> None:
    local = datetime(2026, 11, 24, 2, 10, 5, 654321, tzinfo=ZoneInfo("Europe/Stockholm"))
    back = decode_raw(encode_raw(RawMessage("t", b"x", local)))
    assert back.received_at == local
    assert back.received_at.microsecond == 654321


def test_a_retained_flag_survives_the_record() -> None:
    for retained in (False, True):
        message = RawMessage("wgw/vallby/alarm/a-1/status", b"online", AT, retained)
        assert decode_raw(encode_raw(message)).retained is retained


# -- journal entries -------------------------------------------------------------


def test_a_journal_entry_comes_back_from_its_record() -> None:
    entry = JournalEntry(lanes=(12, 3456), received_at=AT)
    back = decode_entry(encode_entry(entry))
    assert back == entry
    empty = make_entry([], [], None, lanes=(1, 2), received_at=AT)
    assert decode_entry(encode_entry(empty)) == empty
    assert empty.work is None and empty.row_count == 0


def test_a_journal_entry_with_rows_and_dead_letters_comes_back() -> None:
    info = DeviceInfo(org="vallby", family=Family.SENSOR, heartbeat_interval_s=60)
    pipeline = Pipeline(registry={"sensor-0001": info}, settings=load_settings(None).ingest)
    body = {"id": "f-1", "kind": "sensor.fall", "ts": AT.isoformat(), "level": "alarm"}
    good = pipeline.process(
        RawMessage("wgw/vallby/sensor/sensor-0001/event", json.dumps(body).encode(), AT)
    )
    bad = pipeline.process(RawMessage("wgw/vallby/sensor/sensor-0001/event", b"{not", AT))
    assert good.rows and bad.dead_letter is not None
    entry = make_entry(list(good.rows), [bad.dead_letter], None, lanes=(7, 0), received_at=AT)
    back = decode_entry(encode_entry(entry))
    assert back == entry
    assert back.row_count == 1 and back.rows == entry.rows and back.dead == [bad.dead_letter]


def test_a_journal_record_of_another_version_is_refused_clearly() -> None:
    record = encode_entry(JournalEntry(lanes=(1, 1)))
    other = bytes([record[0] + 1]) + record[1:]  # the next version's mark
    with pytest.raises(JournalFormatError, match="another version"):
        decode_entry(other)
    with pytest.raises(JournalFormatError):
        decode_entry(b"")


def test_a_journal_record_holding_something_else_is_refused() -> None:
    record = encode_entry(JournalEntry(lanes=(1, 1)))
    foreign = record[:1] + pickle.dumps({"lanes": (1, 1)})
    with pytest.raises(JournalFormatError, match="does not hold a journal entry"):
        decode_entry(foreign)


def test_a_heartbeat_with_attributes_no_rule_judges_stays_bulk() -> None:
    sensor = event_topic("sensor")
    quiet = {"kind": "device.heartbeat", "ts": AT.isoformat(), "rssi": -67, "fw": "2.4.1"}
    assert lane(raw(sensor, json.dumps(quiet))) is Lane.BULK
    # Which attributes count comes from the rule set, not from the classifier.
    assert lane_of(raw(sensor, json.dumps(quiet)), frozenset({"rssi"})) is Lane.ALARM
    for key, value in (("actor", "key-1"), ("level", "alarm"), ("battery", 12)):
        assert lane(raw(sensor, json.dumps({**quiet, key: value}))) is Lane.ALARM, key
