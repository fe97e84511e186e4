"""Malformed and hostile messages, each with the dead-letter reason the gateway must give it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.events import Family
from gateway.registry import DeviceRecord
from simulators.render import (
    DTY_PERSONAL_TRIGGER,
    STOCKHOLM,
    bridge_topic,
    device_time,
    event_topic,
    mrq,
    to_json,
)

# The gateway refuses larger payloads unread (adapters.common.MAX_PAYLOAD_BYTES).
PAYLOAD_LIMIT = 256 * 1024


@dataclass(frozen=True, slots=True)
class BadMessage:
    """A message that must end in the dead-letter table with ``reason``."""

    topic: str
    payload: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class Targets:
    """Registered devices to aim at, and names that are deliberately not registered."""

    sensor: DeviceRecord
    lock: DeviceRecord
    alarm: DeviceRecord
    other_device_id: str  # a different device id, for the device-mismatch case
    foreign_org: str  # an organisation the sensor does not belong to
    registered: frozenset[str]


def targets_for(
    devices: Sequence[DeviceRecord], sensor: DeviceRecord, lock: DeviceRecord, alarm: DeviceRecord
) -> Targets:
    """Pick the names the hostile messages need, given the devices they impersonate."""
    others = [d.device_id for d in devices if d.device_id != sensor.device_id]
    orgs = sorted({d.org for d in devices} - {sensor.org})
    return Targets(
        sensor=sensor,
        lock=lock,
        alarm=alarm,
        other_device_id=others[0] if others else f"{sensor.device_id}-2",
        foreign_org=orgs[0] if orgs else f"{sensor.org}-annan",
        registered=frozenset(d.device_id for d in devices),
    )


# (targets, token unique per message, device time of sending, the gateway's "now") → message.
Maker = Callable[[Targets, str, datetime, datetime], BadMessage]


def _activity(token: str, ts: str, **extra: object) -> bytes:
    return to_json({"id": token, "kind": "sensor.activity", "ts": ts, "level": "notice", **extra})


def invalid_json(t: Targets, token: str, at: datetime, now: datetime) -> BadMessage:
    """A payload cut off mid-object."""
    body = f'{{"id":"{token}","kind":"sensor.activity","ts":"{device_time(at)}","lev'
    return BadMessage(event_topic(t.sensor), body.encode(), "invalid_json")


def invalid_utf8(t: Targets, token: str, at: datetime, now: datetime) -> BadMessage:
    """Latin-1 bytes where UTF-8 belongs."""
    body = f'{{"id":"{token}","kind":"lock.unlocked","ts":"{device_time(at)}","actor":"nyckel-'
    return BadMessage(event_topic(t.lock), body.encode() + b'\xe5\xe4\xf6"}', "invalid_utf8")


def wrong_type(t: Targets, token: str, at: datetime, now: datetime) -> BadMessage:
    """A battery level as a word instead of a percentage."""
    payload = to_json(
        {"id": token, "kind": "device.battery_low", "ts": device_time(at), "battery": "high"}
    )
    return BadMessage(event_topic(t.lock), payload, "invalid_event")


def naive_timestamp(t: Targets, token: str, at: datetime, now: datetime) -> BadMessage:
    """A local time without its UTC offset."""
    naive = at.astimezone(STOCKHOLM).replace(tzinfo=None).isoformat(timespec="milliseconds")
    return BadMessage(event_topic(t.sensor), _activity(token, naive), "naive_timestamp")


def unknown_kind(t: Targets, token: str, at: datetime, now: datetime) -> BadMessage:
    """A kind that is in no vocabulary."""
    payload = to_json(
        {"id": token, "kind": "sensor.levitating", "ts": device_time(at), "level": "notice"}
    )
    return BadMessage(event_topic(t.sensor), payload, "unknown_kind")


def device_mismatch(t: Targets, token: str, at: datetime, now: datetime) -> BadMessage:
    """A payload naming another device than its topic."""
    payload = _activity(token, device_time(at), device_id=t.other_device_id)
    return BadMessage(event_topic(t.sensor), payload, "device_mismatch")


def unknown_device(t: Targets, token: str, at: datetime, now: datetime) -> BadMessage:
    """A device nobody registered."""
    device_id = f"ghost-{token}"
    while device_id in t.registered:
        device_id += "x"
    topic = f"wgw/{t.sensor.org}/sensor/{device_id}/event"
    return BadMessage(topic, _activity(token, device_time(at)), "unknown_device")


def wrong_org(t: Targets, token: str, at: datetime, now: datetime) -> BadMessage:
    """A registered device publishing under another organisation."""
    topic = event_topic(t.sensor, org=t.foreign_org)
    return BadMessage(topic, _activity(token, device_time(at)), "wrong_org")


def wrong_family(t: Targets, token: str, at: datetime, now: datetime) -> BadMessage:
    """A sensor's id under the lock family, with a valid lock event."""
    payload = to_json(
        {"id": token, "kind": "lock.unlocked", "ts": device_time(at), "actor": "key-0666"}
    )
    return BadMessage(event_topic(t.sensor, family=Family.LOCK.value), payload, "wrong_family")


def clock_skew(t: Targets, token: str, at: datetime, now: datetime) -> BadMessage:
    """A device clock an hour fast."""
    ts = device_time(now + timedelta(hours=1))
    return BadMessage(event_topic(t.sensor), _activity(token, ts), "clock_skew")


def too_old(t: Targets, token: str, at: datetime, now: datetime) -> BadMessage:
    """A device clock sixty days slow."""
    ts = device_time(now - timedelta(days=60))
    return BadMessage(event_topic(t.sensor), _activity(token, ts), "too_old")


def oversized(t: Targets, token: str, at: datetime, now: datetime) -> BadMessage:
    """An otherwise valid event padded past the size cap."""
    payload = _activity(token, device_time(at), note="A" * PAYLOAD_LIMIT)
    return BadMessage(event_topic(t.sensor), payload, "oversized")


def billion_laughs(t: Targets, token: str, at: datetime, now: datetime) -> BadMessage:
    """SCAIP with nested entities that expand to gigabytes if a parser lets them."""
    entities = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
    ]
    doc = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<!DOCTYPE mrq [{''.join(entities)}]>\n"
        f"<mrq><ref>{token}</ref><mty>ME</mty><cid>{t.alarm.device_id}</cid>"
        f"<dty>{DTY_PERSONAL_TRIGGER}</dty><stc>0010</stc><dte>&lol9;</dte></mrq>"
    )
    return BadMessage(event_topic(t.alarm), doc.encode(), "xml_forbidden")


def external_entity(t: Targets, token: str, at: datetime, now: datetime) -> BadMessage:
    """SCAIP on the bridge topic that tries to read a local file (XXE)."""
    doc = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<!DOCTYPE mrq [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
        f"<mrq><ref>{token}</ref><mty>ME</mty><cid>{t.alarm.device_id}</cid>"
        f"<dty>{DTY_PERSONAL_TRIGGER}</dty><stc>0010</stc><dte>&xxe;</dte></mrq>"
    )
    return BadMessage(bridge_topic(t.alarm.org), doc.encode(), "xml_forbidden")


def wrong_encoding(t: Targets, token: str, at: datetime, now: datetime) -> BadMessage:
    """SCAIP that declares UTF-16 but is UTF-8 bytes."""
    payload = mrq(
        ref=token, mty="ME", cid=t.alarm.device_id, dty=DTY_PERSONAL_TRIGGER, stc="0010",
        encoding="UTF-16",
    )  # fmt: skip
    return BadMessage(event_topic(t.alarm), payload, "xml_encoding")


def missing_cid(t: Targets, token: str, at: datetime, now: datetime) -> BadMessage:
    """A bridged SCAIP request without the controller id that names its device."""
    payload = mrq(ref=token, mty="ME", cid=None, dty=DTY_PERSONAL_TRIGGER, stc="0010")
    return BadMessage(bridge_topic(t.alarm.org), payload, "scaip_missing_tag")


def bad_topic(t: Targets, token: str, at: datetime, now: datetime) -> BadMessage:
    """A topic under wgw/ with one level missing."""
    payload = to_json({"id": token, "kind": "alarm.button", "ts": device_time(at)})
    return BadMessage(f"wgw/{t.alarm.org}/alarm/x", payload, "bad_topic")


# Every kind of bad input the hostile scenario sends, in sending order.
HOSTILE: tuple[Maker, ...] = (
    invalid_json,
    invalid_utf8,
    wrong_type,
    naive_timestamp,
    unknown_kind,
    device_mismatch,
    unknown_device,
    wrong_org,
    wrong_family,
    clock_skew,
    too_old,
    oversized,
    billion_laughs,
    external_entity,
    wrong_encoding,
    missing_cid,
    bad_topic,
)
