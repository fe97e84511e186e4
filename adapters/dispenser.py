"""Medicine dispensers and cabinets (Evondos-style): JSON dose, refill and cabinet events."""

from __future__ import annotations

from adapters.common import (
    STATUS_CHANNEL,
    DeviceSpec,
    JsonForm,
    address_for,
    event_from_json,
    load_json_object,
)
from adapters.status import decode_status
from gateway.events import Event, Family, RawMessage

# A cabinet opening is logged like a door unlock, so who opened it must be known.
# Closing needs no key, so it carries an actor only when the cabinet knows one.
FORM = JsonForm(family=Family.DISPENSER, actor_required=frozenset({"dispenser.cabinet_opened"}))


def decode(raw: RawMessage) -> list[Event]:
    """Decode a dispenser or medicine-cabinet event or status message."""
    address = address_for(raw.topic, Family.DISPENSER)
    if address.channel == STATUS_CHANNEL:
        return decode_status(raw, address.device_id, Family.DISPENSER)
    data = load_json_object(raw)
    return [event_from_json(FORM, data, device_id=address.device_id, received_at=raw.received_at)]


SPEC = DeviceSpec(
    family=Family.DISPENSER,
    topic_filters=("wgw/+/dispenser/+/event", "wgw/+/dispenser/+/status"),
    decode=decode,
    description="Medicine dispenser or cabinet: JSON dose, refill, lid and cabinet events",
)
