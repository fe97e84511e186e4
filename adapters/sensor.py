"""Supervision sensors (Roommate-style, fjärrtillsyn): JSON events with a notice/alarm level."""

from __future__ import annotations

from collections.abc import Mapping

from adapters.common import (
    DeviceSpec,
    JsonForm,
    Level,
)
from adapters.status import json_family_decoder
from core.events import FAMILY_KINDS, Family

# Roommate-style event names, accepted in the "event" field instead of "kind".
ALIASES: Mapping[str, str] = {
    "fall": "sensor.fall",
    "left_bed": "sensor.left_bed",
    "back_in_bed": "sensor.in_bed",
    "in_bed": "sensor.in_bed",
    "sitting_up": "sensor.sitting_up",
    "left_room": "sensor.left_room",
    "left_chair": "sensor.left_chair",
    "bathroom_too_long": "sensor.bathroom_too_long",
    "loud_sound": "sensor.sound",
    "activity": "sensor.activity",
    "sensor_lost": "sensor.lost",
    "heartbeat": "device.heartbeat",
}

# The level a sensor event gets when the device sends none. The sensor decides the
# level per person; a device that omits it gets the cautious reading for a fall
# (a fall is never only a notice) and "notice" otherwise, so "left the bed" does
# not page the night patrol unless the sensor or a rule says so.
DEFAULT_LEVEL: Mapping[str, Level] = {
    kind: ("alarm" if kind == "sensor.fall" else "notice") for kind in FAMILY_KINDS[Family.SENSOR]
}

FORM = JsonForm(family=Family.SENSOR, aliases=ALIASES, default_level=DEFAULT_LEVEL)


decode = json_family_decoder(FORM)


SPEC = DeviceSpec(
    family=Family.SENSOR,
    topic_filters=("wgw/+/sensor/+/event", "wgw/+/sensor/+/status"),
    decode=decode,
    description="Supervision sensor: JSON events (kind or Roommate-style event name) with level",
)
