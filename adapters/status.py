"""Decode the status topic every family shares: ``online``/``offline`` as text or JSON."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from adapters.common import (
    STATUS_CHANNEL,
    AttributeScalar,
    Battery,
    Decoder,
    JsonForm,
    ShortText,
    address_for,
    build_event,
    check_attributes,
    check_device_id,
    check_no_nulls,
    check_size,
    event_from_json,
    load_json_object,
    parse_timestamp,
    validate_payload,
)
from core.errors import DecodeError
from core.events import AttributeValue, Event, Family, RawMessage, stable_event_id

# A status is a word or a small object; anything larger is not a status.
MAX_STATUS_BYTES = 4096

_KINDS = {"online": "device.online", "offline": "device.offline"}


class StatusPayload(BaseModel):
    """The JSON status form: ``{"state": "online"|"offline", "ts": ...}`` plus attributes."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)
    __pydantic_extra__: dict[str, AttributeScalar] = Field(init=False)

    state: Literal["online", "offline"]
    ts: object = None  # optional: an MQTT will message is written long before it is sent
    id: ShortText | None = None
    device_id: str | None = None
    battery: Battery | None = None


def decode_status(raw: RawMessage, device_id: str, family: Family) -> list[Event]:
    """Decode one status message into a device.online or device.offline event."""
    check_size(raw, MAX_STATUS_BYTES)
    body = raw.payload.strip()
    if not body:
        # An empty retained message is how MQTT clears a retained status: nothing happened.
        return []
    attributes: dict[str, AttributeValue] = {}
    event_id: str | None = None
    if body.startswith(b"{"):
        data = load_json_object(raw)
        check_no_nulls(data)
        payload = validate_payload(StatusPayload, data)
        check_device_id(payload.device_id, device_id)
        if payload.model_extra:
            attributes.update(payload.model_extra)
            check_attributes(attributes)
        if payload.battery is not None:
            attributes["battery"] = payload.battery
        kind = _KINDS[payload.state]
        event_id = payload.id
        has_device_time = payload.ts is not None
        occurred_at = parse_timestamp(payload.ts) if has_device_time else raw.received_at
    else:
        try:
            word = body.decode("utf-8").lower()
        except UnicodeDecodeError as exc:
            raise DecodeError("invalid_utf8", f"status payload is not UTF-8: {exc}") from exc
        found = _KINDS.get(word)
        if found is None:
            raise DecodeError(
                "invalid_event",
                f"status payload {word[:40]!r} is neither 'online', 'offline' nor a JSON object",
            )
        kind = found
        has_device_time = False
        occurred_at = raw.received_at
    if event_id is None:
        if not has_device_time:
            # No device time: the receive time is all there is, so a retained copy
            # delivered again after a reconnect is (rightly) a new observation.
            event_id = stable_event_id(device_id, kind, occurred_at)
        else:
            event_id = stable_event_id(device_id, kind, occurred_at, extra=[None, attributes])
    if raw.retained:
        # Added after the id: the live and the retained copy of one status are one event.
        # Rules use it to tell an old retained "offline" from a fresh one.
        attributes["retained"] = True
    return [
        build_event(
            event_id=event_id,
            device_id=device_id,
            family=family,
            kind=kind,
            occurred_at=occurred_at,
            received_at=raw.received_at,
            attributes=attributes,
            device_time=has_device_time,
        )
    ]


def json_family_decoder(form: JsonForm) -> Decoder:
    """The decode function of a family whose events are one JSON object each, plus status."""

    def decode(raw: RawMessage) -> list[Event]:
        address = address_for(raw.topic, form.family)
        if address.channel == STATUS_CHANNEL:
            return decode_status(raw, address.device_id, form.family)
        data = load_json_object(raw)
        return [
            event_from_json(form, data, device_id=address.device_id, received_at=raw.received_at)
        ]

    return decode
