"""Render device messages as real devices send them: topics, JSON events, SCAIP <mrq> documents."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from core.events import Family
from gateway.registry import DeviceRecord
from simulators.fleet import DeviceStyle, Transport, device_styles

STOCKHOLM = ZoneInfo("Europe/Stockholm")

Attribute = str | int | float | bool

# Roommate-style names a vendor-style sensor sends in "event" (docs/payloads.md).
VENDOR_NAMES: Mapping[str, str] = {
    "sensor.fall": "fall",
    "sensor.left_bed": "left_bed",
    "sensor.in_bed": "back_in_bed",
    "sensor.sitting_up": "sitting_up",
    "sensor.left_room": "left_room",
}

DTY_PERSONAL_TRIGGER = "0003"
DTY_FALL_DETECTOR = "0005"
DTY_DOOR_SENSOR = "0014"

# kind → (mty, dty, stc) of the SCAIP request that carries it (DOMAIN.md, docs/payloads.md).
SCAIP_FORMS: Mapping[str, tuple[str, str, str | None]] = {
    "device.heartbeat": ("PI", DTY_PERSONAL_TRIGGER, None),
    "alarm.button": ("ME", DTY_PERSONAL_TRIGGER, "0010"),
    "alarm.fall": ("ME", DTY_FALL_DETECTOR, "0009"),
    "alarm.assistance": ("ME", DTY_PERSONAL_TRIGGER, "0110"),
    "alarm.unauthorised_access": ("ME", DTY_DOOR_SENSOR, "0107"),
    "alarm.intervention_complete": ("ME", DTY_PERSONAL_TRIGGER, "0111"),
    "alarm.reset": ("RE", DTY_PERSONAL_TRIGGER, "0093"),
    "device.battery_low": ("IN", DTY_PERSONAL_TRIGGER, "0016"),
    "device.power_lost": ("IN", DTY_PERSONAL_TRIGGER, "0085"),
    "device.power_restored": ("IN", DTY_PERSONAL_TRIGGER, "0086"),
}
STC_TEST_TRANSMISSION = "0102"  # an IN with this code is a heartbeat too


def device_time(at: datetime) -> str:
    """Format a time as a Stockholm device clock does: ISO 8601, milliseconds, +01:00/+02:00."""
    return at.astimezone(STOCKHOLM).isoformat(timespec="milliseconds")


def event_topic(device: DeviceRecord, *, org: str | None = None, family: str | None = None) -> str:
    """The device's event topic; ``org``/``family`` override what the registry says."""
    return f"wgw/{org or device.org}/{family or device.family.value}/{device.device_id}/event"


def status_topic(device: DeviceRecord) -> str:
    """The device's retained online/offline topic."""
    return f"wgw/{device.org}/{device.family.value}/{device.device_id}/status"


BRIDGE_TOPIC_PREFIX = "scaip/"


def bridge_topic(org: str) -> str:
    """Where the SIP bridge puts an organisation's SCAIP requests."""
    return f"{BRIDGE_TOPIC_PREFIX}{org}/mrq"


def to_json(fields: Mapping[str, object]) -> bytes:
    """Serialise a payload compactly, as embedded firmware does."""
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()


def mrq(
    *,
    ref: str,
    mty: str,
    cid: str | None,
    dty: str,
    stc: str | None = None,
    pri: str | None = None,
    encoding: str = "UTF-8",
) -> bytes:
    """Build a SCAIP <mrq> request (tags in the standard's order; ``cid=None`` leaves it out)."""
    tags = [("ref", ref), ("mty", mty), ("cid", cid), ("dty", dty), ("stc", stc), ("pri", pri)]
    body = "".join(f"<{tag}>{value}</{tag}>" for tag, value in tags if value is not None)
    return f'<?xml version="1.0" encoding="{encoding}"?>\n<mrq>{body}</mrq>'.encode()


@dataclass(frozen=True, slots=True)
class Rendered:
    """One rendered message before it is placed in time, and the events it should store."""

    topic: str
    payload: bytes
    kinds: tuple[str, ...]  # one per stored event; empty for nothing stored
    retain: bool = False


class Renderer:
    """Turns (device, kind, time) into the bytes that device's firmware would publish."""

    def __init__(self, devices: Sequence[DeviceRecord], *, seed: int, tag: str) -> None:
        self.devices = list(devices)
        self.styles: dict[str, DeviceStyle] = device_styles(self.devices, seed)
        # The tag makes ids unique per run, so a second run into the same database is new data.
        self.tag = tag
        self._seq = 0

    def style(self, device: DeviceRecord) -> DeviceStyle:
        """The device's firmware habits."""
        return self.styles[device.device_id]

    def token(self) -> str:
        """A fresh run-unique token of letters and digits (a SCAIP ref, an event id)."""
        self._seq += 1
        return f"{self.tag}{self._seq:08d}"

    def event(
        self,
        device: DeviceRecord,
        kind: str,
        at: datetime,
        *,
        with_id: bool | None = None,
        actor: str | None = None,
        attributes: Mapping[str, Attribute] | None = None,
    ) -> Rendered:
        """A JSON event in the device's style (id or not, vendor event names for sensors)."""
        fields = self.fields(device, kind, at, with_id=with_id, actor=actor, attributes=attributes)
        return Rendered(event_topic(device), to_json(fields), (kind,))

    def fields(
        self,
        device: DeviceRecord,
        kind: str,
        at: datetime,
        *,
        with_id: bool | None = None,
        actor: str | None = None,
        attributes: Mapping[str, Attribute] | None = None,
    ) -> dict[str, object]:
        """The JSON fields of one event (also used for the entries of a lock's log batch)."""
        style = self.style(device)
        fields: dict[str, object] = {}
        if style.sends_ids if with_id is None else with_id:
            fields["id"] = self.token()
        if style.vendor_names and kind in VENDOR_NAMES:
            fields["event"] = VENDOR_NAMES[kind]
        else:
            fields["kind"] = kind
        fields["ts"] = device_time(at)
        if actor is not None:
            fields["actor"] = actor
        fields.update(attributes or {})
        return fields

    def lock_log(
        self, device: DeviceRecord, lines: Sequence[tuple[datetime, str, str | None]]
    ) -> Rendered:
        """A lock's synced offline log: one batch, one entry per (time, kind, key) line."""
        entries = [
            # Every fourth entry has no id, like hubs that number only some records.
            self.fields(device, kind, at, with_id=index % 4 != 3, actor=actor)
            for index, (at, kind, actor) in enumerate(lines)
        ]
        return Rendered(
            event_topic(device), to_json({"entries": entries}), tuple(kind for _, kind, _ in lines)
        )

    def scaip(
        self,
        device: DeviceRecord,
        kind: str,
        *,
        bridged: bool | None = None,
        stc: str | None = None,
        dty: str | None = None,
        mty: str | None = None,
        pri: str | None = None,
    ) -> Rendered:
        """A SCAIP <mrq> for ``kind``, bridged or on the event topic as the device's style says."""
        form_mty, form_dty, form_stc = SCAIP_FORMS[kind]
        payload = mrq(
            ref=self.token(),
            mty=mty or form_mty,
            cid=device.device_id,
            dty=dty or form_dty,
            stc=stc or form_stc,
            pri=pri,
        )
        if bridged is None:
            bridged = self.style(device).transport is Transport.BRIDGE
        topic = bridge_topic(device.org) if bridged else event_topic(device)
        return Rendered(topic, payload, (kind,))

    def status(self, device: DeviceRecord, state: str, at: datetime | None) -> Rendered:
        """A retained status; with a time it is the JSON form, without it the bare word (a will)."""
        if at is None:
            payload = state.encode()
        else:
            # The JSON form carries an id, so a retained copy redelivered on resubscribe is
            # the same event, not a new one.
            payload = to_json({"state": state, "ts": device_time(at), "id": self.token()})
        return Rendered(status_topic(device), payload, (f"device.{state}",), retain=True)

    def heartbeat(self, device: DeviceRecord, at: datetime) -> Rendered:
        """The device's periodic supervision message in its own style."""
        style = self.style(device)
        if device.family is Family.ALARM and style.transport is not Transport.JSON:
            return self.scaip(device, "device.heartbeat")
        if style.battery is not None:
            return self.event(device, "device.heartbeat", at, attributes={"battery": style.battery})
        return self.event(device, "device.heartbeat", at)
