"""The simulated municipality: a seeded device registry and each device's habits."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from core.events import Family
from gateway.registry import DeviceRecord

DEFAULT_ORGS = ("vallby-hemtjanst", "vallby-sabo")

# Roughly how a municipality's fleet divides (social alarms are by far the most common).
FAMILY_SHARES: Mapping[Family, float] = {
    Family.ALARM: 0.40,
    Family.SENSOR: 0.25,
    Family.LOCK: 0.20,
    Family.DISPENSER: 0.15,
}

# Social alarms are supervised at the level of minutes (DOMAIN.md); the rest report less often.
HEARTBEAT_INTERVAL_S: Mapping[Family, int] = {
    Family.ALARM: 60,
    Family.SENSOR: 300,
    Family.LOCK: 300,
    Family.DISPENSER: 300,
}

_ID_PREFIX: Mapping[Family, str] = {
    Family.SENSOR: "sensor",
    Family.LOCK: "lock",
    Family.DISPENSER: "disp",
}

# Invented places: units are pseudonyms for a home or a room, never a person.
_AREAS = ("Vallby", "Vallby centrum", "Norra Vallby", "Ekbacken", "Tallåsen", "Sjöängen")
_CARE_HOMES = ("Vallbygården", "Solgläntan", "Ekhagens boende")

# Share of devices whose firmware sends its own event id (the rest rely on the derived id).
_SENDS_IDS = 0.8


class Transport(StrEnum):
    """How a social alarm reaches the gateway."""

    BRIDGE = "bridge"  # SCAIP <mrq> bridged from SIP onto scaip/{org}/mrq
    SCAIP = "scaip"  # SCAIP <mrq> straight onto the device's event topic
    JSON = "json"  # the JSON event form on the device's event topic


@dataclass(frozen=True, slots=True)
class DeviceStyle:
    """One device's firmware habits, fixed for a seed."""

    transport: Transport  # social alarms only; JSON for every other family
    sends_ids: bool  # whether its JSON events carry an "id"
    vendor_names: bool  # sensors: Roommate-style "event" names instead of "kind"
    battery: int | None  # locks run on batteries and report the level with each heartbeat


def family_counts(devices: int) -> dict[Family, int]:
    """Split a device count over the families by their shares, at least one of each."""
    if devices < len(FAMILY_SHARES):
        raise ValueError(f"need at least {len(FAMILY_SHARES)} devices, one of each family")
    target = {family: share * devices for family, share in FAMILY_SHARES.items()}
    counts = {family: max(1, int(t)) for family, t in target.items()}
    while sum(counts.values()) < devices:
        counts[max(counts, key=lambda f: target[f] - counts[f])] += 1
    while sum(counts.values()) > devices:
        spare = [f for f in counts if counts[f] > 1]
        counts[max(spare, key=lambda f: counts[f] - target[f])] -= 1
    return counts


def demo_registry(
    devices: int, *, seed: int, orgs: Sequence[str] = DEFAULT_ORGS
) -> list[DeviceRecord]:
    """Invent a municipality's registry: all four families, SCAIP controller ids for alarms."""
    if not orgs:
        raise ValueError("need at least one organisation")
    rng = random.Random(f"registry:{seed}")
    counts = family_counts(devices)
    records: list[DeviceRecord] = []
    cids = rng.sample(range(1, 10**8), counts[Family.ALARM])
    for family, count in counts.items():
        for index in range(count):
            if family is Family.ALARM:
                device_id = f"467{cids[index]:08d}"
            else:
                device_id = f"{_ID_PREFIX[family]}-{index + 1:04d}"
            org_index = rng.randrange(len(orgs))
            unit, area = _unit(rng, care_home=org_index > 0)
            records.append(
                DeviceRecord(
                    device_id=device_id,
                    family=family,
                    org=orgs[org_index],
                    unit=unit,
                    area=area,
                    heartbeat_interval_s=HEARTBEAT_INTERVAL_S[family],
                )
            )
    return records


def _unit(rng: random.Random, *, care_home: bool) -> tuple[str, str]:
    # The first organisation is home care (apartments in districts), the
    # others care homes (rooms); the district or the home is the patrol's area.
    if care_home:
        home = rng.choice(_CARE_HOMES)
        return f"{home} rum {rng.randint(1, 48)}", home
    number = rng.randint(1001, 1899)
    area = rng.choice(_AREAS)
    return f"Lgh {number}, {area}", area


def device_styles(devices: Sequence[DeviceRecord], seed: int) -> dict[str, DeviceStyle]:
    """Give every device its firmware habits; alarms rotate through the three transports."""
    transports = tuple(Transport)
    styles: dict[str, DeviceStyle] = {}
    position: dict[Family, int] = dict.fromkeys(Family, 0)
    for device in devices:
        index = position[device.family]
        position[device.family] += 1
        rng = random.Random(f"style:{seed}:{device.device_id}")
        styles[device.device_id] = DeviceStyle(
            transport=transports[index % 3] if device.family is Family.ALARM else Transport.JSON,
            sends_ids=rng.random() < _SENDS_IDS,
            vendor_names=device.family is Family.SENSOR and index % 3 == 2,
            battery=rng.randint(35, 100) if device.family is Family.LOCK else None,
        )
    return styles


def heartbeat_phases(devices: Sequence[DeviceRecord], seed: int) -> dict[str, float]:
    """Spread first heartbeats evenly over each interval, with a seeded jitter per device."""
    rng = random.Random(f"phase:{seed}")
    count = len(devices)
    return {
        device.device_id: device.heartbeat_interval_s * (index + rng.random()) / count
        for index, device in enumerate(devices)
    }
