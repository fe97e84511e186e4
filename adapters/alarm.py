"""Social alarms (trygghetslarm): SCAIP <mrq> XML or the JSON event form."""

from __future__ import annotations

from collections.abc import Mapping

from adapters.common import (
    STATUS_CHANNEL,
    DeviceSpec,
    JsonForm,
    address_for,
    build_event,
    check_device_id,
    check_size,
    event_from_json,
    load_json_object,
)
from adapters.scaip import KEPT_TAGS, Mrq, read_mrq
from adapters.status import decode_status
from core.errors import DecodeError
from core.events import AttributeValue, Event, Family, RawMessage

FORM = JsonForm(family=Family.ALARM)

FALL_DETECTOR = "0005"  # dty

# Status codes (stc) with a kind of their own, whatever the message type (docs/payloads.md).
# Codes not listed (0117 lying in bed, 0118/0127 locked/unlocked, unknown ones) follow the
# message type instead: ME is an alarm, IN is information. The code is always kept as
# scaip_stc, so rules and the console can still tell them apart.
#
# The pill codes map by stc, whatever the dty: the code itself says "pill not taken"
# (DOMAIN.md §1), and a unit may report its dispenser with the dispenser's dty (0011) or
# its own. They are dose kinds carried by the alarm family (core.events.CARRIED_KINDS),
# so the dose rules (missed dose → patrol) apply and a missed dose is never a generic P1.
STC_KINDS: Mapping[str, str] = {
    "0010": "alarm.button",  # manual alarm
    "0009": "alarm.automatic",  # automatic alarm; alarm.fall from a fall detector
    "0016": "device.battery_low",
    "0085": "device.power_lost",
    "0086": "device.power_restored",
    "0023": "device.connection_lost",  # IP connection failed
    "0024": "device.connection_lost",  # mobile connection failed
    "0112": "device.connection_restored",  # IP
    "0113": "device.connection_restored",  # mobile
    "0125": "device.tamper",
    "0110": "alarm.assistance",
    "0111": "alarm.intervention_complete",
    "0107": "alarm.unauthorised_access",
    "0092": "alarm.reset",  # automatic reset
    "0093": "alarm.reset",  # manual reset
    "0094": "alarm.reset",  # restoral
    "0102": "device.heartbeat",  # test transmission
    "0103": "device.heartbeat",  # test transmission
    "0081": "dispenser.dose_missed",  # pill not taken
    "0082": "dispenser.dose_due",  # pill reminder
    "0083": "dispenser.dose_taken",  # pill taken
}


def scaip_kind(fields: Mapping[str, str]) -> str:
    """Choose the event kind for a parsed <mrq> from its mty, stc and dty."""
    mty = fields["mty"]
    if mty == "PI":
        return "device.heartbeat"
    if mty == "RE":
        return "alarm.reset"
    stc = fields.get("stc")
    kind = STC_KINDS.get(stc) if stc is not None else None
    if kind is not None:
        if kind == "alarm.automatic" and fields["dty"] == FALL_DETECTOR:
            return "alarm.fall"
        return kind
    if mty == "IN":
        return "alarm.info"
    # An ME without a code, or with one we cannot name, is still an alarm: never downgrade it.
    if stc is None and fields["dty"] == FALL_DETECTOR:
        return "alarm.fall"
    return "alarm.automatic"


def _scaip_event(mrq: Mrq, device_id: str, raw: RawMessage) -> Event:
    fields = mrq.fields
    attributes: dict[str, AttributeValue] = {
        "scaip_" + tag: fields[tag] for tag in KEPT_TAGS if tag in fields
    }
    if mrq.position is not None:
        attributes["position"] = mrq.position
    if mrq.position_problem is not None:
        attributes["position_problem"] = mrq.position_problem
    return build_event(
        event_id=fields["ref"],
        device_id=device_id,
        family=Family.ALARM,
        kind=scaip_kind(fields),
        # An <mrq> carries no device time (only inside the optional <lge> position),
        # and SIP delivery takes well under a second, so receive time is the best we have.
        occurred_at=raw.received_at,
        received_at=raw.received_at,
        attributes=attributes,
        device_time=False,
    )


def _looks_like_xml(payload: bytes) -> bool:
    # UTF-16 byte-order marks count as XML so they get the precise xml_encoding reason.
    return payload.lstrip(b" \t\r\n\xef\xbb\xbf").startswith(b"<") or payload.startswith(
        (b"\xff\xfe", b"\xfe\xff")
    )


def _decode_bridge(raw: RawMessage) -> list[Event]:
    parts = raw.topic.split("/")
    if len(parts) != 3 or not parts[1] or parts[2] != "mrq":
        raise DecodeError("bad_topic", f"topic {raw.topic!r} is not scaip/{{org}}/mrq")
    mrq = read_mrq(raw.payload)
    return [_scaip_event(mrq, mrq.fields["cid"], raw)]


def decode(raw: RawMessage) -> list[Event]:
    """Decode a social-alarm message: SCAIP from the bridge or device, JSON, or status."""
    if raw.topic.startswith("scaip/"):
        return _decode_bridge(raw)
    address = address_for(raw.topic, Family.ALARM)
    if address.channel == STATUS_CHANNEL:
        return decode_status(raw, address.device_id, Family.ALARM)
    check_size(raw)
    if _looks_like_xml(raw.payload):
        mrq = read_mrq(raw.payload)
        check_device_id(mrq.fields["cid"], address.device_id, "cid")
        return [_scaip_event(mrq, address.device_id, raw)]
    data = load_json_object(raw)
    return [event_from_json(FORM, data, device_id=address.device_id, received_at=raw.received_at)]


SPEC = DeviceSpec(
    family=Family.ALARM,
    topic_filters=("wgw/+/alarm/+/event", "wgw/+/alarm/+/status", "scaip/+/mrq"),
    decode=decode,
    description="Social alarm: SCAIP <mrq> (bridged or on the event topic) or JSON events",
)
