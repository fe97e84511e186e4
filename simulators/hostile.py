"""Malformed and hostile messages, each with the dead-letter reason the gateway must give it."""

from __future__ import annotations

import random
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
    return BadMessage(event_topic(t.alarm), doc.encode(), "xml_entities")


def external_entity(t: Targets, token: str, at: datetime, now: datetime) -> BadMessage:
    """SCAIP on the bridge topic that tries to read a local file (XXE)."""
    doc = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<!DOCTYPE mrq [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
        f"<mrq><ref>{token}</ref><mty>ME</mty><cid>{t.alarm.device_id}</cid>"
        f"<dty>{DTY_PERSONAL_TRIGGER}</dty><stc>0010</stc><dte>&xxe;</dte></mrq>"
    )
    return BadMessage(bridge_topic(t.alarm.org), doc.encode(), "xml_external_entity")


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


# --- Strict payloads (docs/payloads.md "Limits"): each with a reason of its own -------------


def null_id(t: Targets, token: str, at: datetime, now: datetime) -> BadMessage:
    """``"id": null``: not a string, and must not get a derived id."""
    body = f'{{"id":null,"kind":"sensor.activity","ts":"{device_time(at)}","note":"{token}"}}'
    return BadMessage(event_topic(t.sensor), body.encode(), "null_id")


def null_device_id(t: Targets, token: str, at: datetime, now: datetime) -> BadMessage:
    """``"device_id": null``: must not skip the topic check."""
    payload = _activity(token, device_time(at), device_id=None)
    return BadMessage(event_topic(t.sensor), payload, "null_device_id")


def null_attribute(t: Targets, token: str, at: datetime, now: datetime) -> BadMessage:
    """``"extra": null``: attributes are strings, numbers or booleans."""
    return BadMessage(
        event_topic(t.sensor), _activity(token, device_time(at), extra=None), "null_attribute"
    )


_HUGE = ("1e25", "1e300", "-1e300", "1e16", "12345678901234567890", "-900000000000000000000")


def huge_number(t: Targets, token: str, at: datetime, now: datetime) -> BadMessage:
    """An attribute far outside ±1e15 (1e25, 1e300, past int64)."""
    value = _HUGE[sum(map(ord, token)) % len(_HUGE)]
    body = f'{{"id":"{token}","kind":"sensor.activity","ts":"{device_time(at)}","x":{value}}}'
    return BadMessage(event_topic(t.sensor), body.encode(), "number_out_of_range")


def lone_surrogate(t: Targets, token: str, at: datetime, now: datetime) -> BadMessage:
    """A ``\\ud800`` escape: no Unicode character, and PostgreSQL refuses it."""
    body = f'{{"id":"{token}","kind":"sensor.activity","ts":"{device_time(at)}","x":"a\\ud800"}}'
    return BadMessage(event_topic(t.sensor), body.encode(), "lone_surrogate")


def nul_character(t: Targets, token: str, at: datetime, now: datetime) -> BadMessage:
    """A ``\\u0000`` escape in a lock's actor: PostgreSQL text cannot hold it."""
    body = (
        f'{{"id":"{token}","kind":"lock.unlocked","ts":"{device_time(at)}","actor":"key-\\u0000"}}'
    )
    return BadMessage(event_topic(t.lock), body.encode(), "nul_character")


def deep_nesting(t: Targets, token: str, at: datetime, now: datetime) -> BadMessage:
    """About 2 KB of nested arrays in an attribute (once a RecursionError)."""
    body = (
        f'{{"id":"{token}","kind":"sensor.activity","ts":"{device_time(at)}",'
        f'"x":{"[" * 1000}{"]" * 1000}}}'
    )
    return BadMessage(event_topic(t.sensor), body.encode(), "json_too_deep")


def plain_dtd(t: Targets, token: str, at: datetime, now: datetime) -> BadMessage:
    """SCAIP with a document type declaration and nothing else in it."""
    doc = (
        f"<!DOCTYPE mrq><mrq><ref>{token}</ref><mty>ME</mty><cid>{t.alarm.device_id}</cid>"
        f"<dty>{DTY_PERSONAL_TRIGGER}</dty><stc>0010</stc></mrq>"
    )
    return BadMessage(event_topic(t.alarm), doc.encode(), "xml_dtd")


def small_billion_laughs(t: Targets, token: str, at: datetime, now: datetime) -> BadMessage:
    """The entity-expansion attack, in a few hundred bytes."""
    doc = (
        '<!DOCTYPE mrq [<!ENTITY a "aaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
        '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]>'
        f"<mrq><ref>{token}</ref><mty>ME</mty><cid>{t.alarm.device_id}</cid>"
        f"<dty>{DTY_PERSONAL_TRIGGER}</dty><dte>&c;</dte></mrq>"
    )
    return BadMessage(bridge_topic(t.alarm.org), doc.encode(), "xml_entities")


def external_dtd(t: Targets, token: str, at: datetime, now: datetime) -> BadMessage:
    """SCAIP whose DTD is fetched from elsewhere (an external reference)."""
    doc = (
        '<!DOCTYPE mrq SYSTEM "http://example.invalid/mrq.dtd">'
        f"<mrq><ref>{token}</ref><mty>ME</mty><cid>{t.alarm.device_id}</cid>"
        f"<dty>{DTY_PERSONAL_TRIGGER}</dty></mrq>"
    )
    return BadMessage(event_topic(t.alarm), doc.encode(), "xml_external_entity")


# The strict-payload cases, each a distinct reason (small payloads: cheap to send in bulk).
STRICT: tuple[Maker, ...] = (
    null_id,
    null_device_id,
    null_attribute,
    huge_number,
    lone_surrogate,
    nul_character,
    deep_nesting,
    plain_dtd,
    small_billion_laughs,
    external_dtd,
)

# Reason "" in a fuzzed message: a random mutation, the reason is the gateway's to find.
UNKNOWN_REASON = ""


def _mutate(payload: bytes, rng: random.Random) -> bytes:
    data = bytearray(payload)
    for _ in range(rng.randint(1, 4)):
        action = rng.randrange(4)
        at = rng.randrange(len(data) + 1)
        if action == 0 and data:
            data[min(at, len(data) - 1)] = rng.randrange(256)
        elif action == 1:
            data[at:at] = bytes(rng.choice(_SPLICES))
        elif action == 2 and data:
            del data[at : at + rng.randint(1, 8)]
        else:
            data[at:at] = rng.randbytes(rng.randint(1, 6))
    return bytes(data)


_SPLICES = (
    b"\\u0000", b"\\ud800", b"\\udfff", b"1e999", b"-1e300", b"null", b"[[[[[[[[[[", b"]]]]",
    b'"', b"\\", b"{", b"}", b",", b":", b"NaN", b"\xff", b"\xc3", b"\x00", b"<!DOCTYPE x>",
    b"&x;", b"\xed\xa0\x80",
)  # fmt: skip


def fuzz_messages(
    t: Targets, *, seed: int, count: int, at: datetime, now: datetime
) -> list[BadMessage]:
    """``count`` distinct hostile messages (topic and payload), seeded.

    Most are the known hostile and strict cases with a unique token each (their
    reason known); about a quarter are random mutations of valid payloads (reason
    ``UNKNOWN_REASON``; a mutation may even still be valid). The oversized case
    is sent rarely, to keep the volume small.
    """
    rng = random.Random(seed)
    known = [m for m in (*HOSTILE, *STRICT) if m is not oversized]
    seen: set[tuple[str, bytes]] = set()
    out: list[BadMessage] = []
    n = 0
    while len(out) < count:
        n += 1
        token = f"F{seed % 1000:03d}{n:07d}"
        roll = rng.random()
        if roll < 0.0005:
            message = oversized(t, token, at, now)
        elif roll < 0.75:
            message = rng.choice(known)(t, token, at, now)
        else:
            base = rng.choice(known)(t, token, at, now)
            valid = _activity(token, device_time(at))
            message = BadMessage(
                base.topic if rng.random() < 0.3 else event_topic(t.sensor),
                _mutate(valid if rng.random() < 0.6 else base.payload, rng),
                UNKNOWN_REASON,
            )
        key = (message.topic, message.payload)
        if key in seen:
            continue
        seen.add(key)
        out.append(message)
    return out
