"""The normalized event envelope every adapter yields, and its kind vocabulary."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

# Pydantic needs typing_extensions' TypedDict before Python 3.12 (it ships with pydantic).
from typing_extensions import TypedDict


class Family(StrEnum):
    """The four device families the gateway understands."""

    ALARM = "alarm"  # social alarm (trygghetslarm), SCAIP or JSON
    SENSOR = "sensor"  # supervision sensor (Roommate-style, fjärrtillsyn)
    LOCK = "lock"  # digital door lock (trygghetslås)
    DISPENSER = "dispenser"  # medicine dispenser or medicine cabinet


# Kinds every family may emit: the device's own health.
DEVICE_KINDS = frozenset(
    {
        "device.heartbeat",  # periodic supervision message (SCAIP PI, test transmission)
        "device.online",  # status topic says online
        "device.offline",  # status topic says offline (often the MQTT will)
        "device.battery_low",  # låg batterinivå
        "device.power_lost",  # mains failure, running on battery
        "device.power_restored",
        "device.connection_lost",  # the device reports a failed IP/mobile path
        "device.connection_restored",
        "device.tamper",  # casing opened or device moved
        "device.error",  # device fault (jam, tilt, internal error)
    }
)

# Kinds per family, from the vocabularies in DOMAIN.md.
FAMILY_KINDS: dict[Family, frozenset[str]] = {
    Family.ALARM: frozenset(
        {
            "alarm.button",  # manual alarm (SCAIP stc 0010)
            "alarm.automatic",  # automatic alarm from a connected trigger (0009)
            "alarm.fall",  # fall detector (dty 0005)
            "alarm.assistance",  # assistance requested (0110)
            "alarm.unauthorised_access",  # door or access controller (0107)
            "alarm.presence",  # staff registered presence at the alarm
            "alarm.intervention_complete",  # staff closed the intervention (0111)
            "alarm.reset",  # alarm reset (SCAIP RE, 0092/0093, restoral 0094)
            "alarm.info",  # information message without a more precise kind
        }
    ),
    Family.SENSOR: frozenset(
        {
            "sensor.fall",  # fall
            "sensor.left_bed",  # lämnat sängen
            "sensor.in_bed",  # back in bed / lying in bed
            "sensor.sitting_up",  # sitting up in bed
            "sensor.left_room",  # left the room
            "sensor.left_chair",  # left the chair
            "sensor.bathroom_too_long",  # too long in the bathroom
            "sensor.sound",  # loud sound
            "sensor.activity",  # activity in the room
            "sensor.lost",  # contact with the sensor lost
        }
    ),
    Family.LOCK: frozenset(
        {
            "lock.unlocked",
            "lock.locked",
            "lock.door_opened",
            "lock.door_closed",
            "lock.jammed",
        }
    ),
    Family.DISPENSER: frozenset(
        {
            "dispenser.dose_due",  # reminder: a dose is due now
            "dispenser.dose_dispensed",  # sachet presented
            "dispenser.dose_taken",  # sachet removed in time
            "dispenser.dose_missed",  # not taken within the window, locked away
            "dispenser.refill_low",  # roll runs low
            "dispenser.lid_opened",  # service lid or door opened
            "dispenser.cabinet_opened",  # medicine cabinet opened (with actor)
            "dispenser.cabinet_closed",
        }
    ),
}

ALL_KINDS: frozenset[str] = DEVICE_KINDS.union(*FAMILY_KINDS.values())

# Kinds a family may carry although another family owns them. A SCAIP social-alarm
# unit reports its connected pill dispenser (dty 0011) with stc 0081/0082/0083
# (DOMAIN.md §1, §4): the message arrives from the alarm unit (its cid, alarm topic,
# registered as alarm), but what happened is a dose event, and the dose rules key on
# the dispenser kind. Only through SCAIP: the JSON alarm form does not accept them.
CARRIED_KINDS: dict[Family, frozenset[str]] = {
    Family.ALARM: frozenset(
        {"dispenser.dose_missed", "dispenser.dose_due", "dispenser.dose_taken"}
    ),
}


class Position(TypedDict):
    """A WGS84 position (decimal degrees) and when it was fixed: the SCAIP ``<lge>``."""

    lat: float
    lon: float
    at: str | None  # ISO 8601 with offset, or None when the device gave no usable time


# Positions are the one structured attribute: adapters build them, never device JSON
# (the JSON event form accepts scalars only, adapters.common.AttributeScalar).
AttributeValue = str | int | float | bool | Position | None

DeviceId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]


class Event(BaseModel):
    """One normalized device event: the unit that is stored, ruled on and audited."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: Annotated[str, Field(min_length=1, max_length=128)]
    device_id: DeviceId
    family: Family
    kind: str
    occurred_at: AwareDatetime
    received_at: AwareDatetime
    actor: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    attributes: dict[str, AttributeValue] = Field(default_factory=dict)
    # False when the device sent no time of its own and occurred_at is the
    # gateway's receive time (SCAIP <mrq>, bare status payloads).
    device_time: bool = True

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        if kind not in ALL_KINDS:
            raise ValueError(f"unknown event kind {kind!r}")
        return kind

    @model_validator(mode="after")
    def _kind_fits_family(self) -> Event:
        if (
            self.kind not in DEVICE_KINDS
            and self.kind not in FAMILY_KINDS[self.family]
            and self.kind not in CARRIED_KINDS.get(self.family, frozenset())
        ):
            raise ValueError(f"kind {self.kind!r} does not belong to family {self.family.value!r}")
        return self


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A message as it came off the broker, before any decoding."""

    topic: str
    payload: bytes
    received_at: datetime
    retained: bool = False


def stable_event_id(device_id: str, kind: str, occurred_at: datetime, extra: object = None) -> str:
    """Derive a deterministic event id for devices that send none (the idempotency key)."""
    material = json.dumps(
        [device_id, kind, occurred_at.isoformat(), extra], sort_keys=True, default=str
    ).encode()
    return "h:" + hashlib.sha256(material).hexdigest()[:32]
