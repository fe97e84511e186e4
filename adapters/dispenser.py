"""Medicine dispensers and cabinets (Evondos-style): JSON dose, refill and cabinet events."""

from __future__ import annotations

from adapters.common import (
    DeviceSpec,
    JsonForm,
)
from adapters.status import json_family_decoder
from core.events import Family

# A cabinet opening is logged like a door unlock, so who opened it must be known.
# Closing needs no key, so it carries an actor only when the cabinet knows one.
FORM = JsonForm(family=Family.DISPENSER, actor_required=frozenset({"dispenser.cabinet_opened"}))


decode = json_family_decoder(FORM)


SPEC = DeviceSpec(
    family=Family.DISPENSER,
    topic_filters=("wgw/+/dispenser/+/event", "wgw/+/dispenser/+/status"),
    decode=decode,
    description="Medicine dispenser or cabinet: JSON dose, refill, lid and cabinet events",
)
