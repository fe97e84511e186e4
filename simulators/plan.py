"""Build a seeded plan: a scenario's story plus every device's heartbeats, placed in time."""

from __future__ import annotations

import hashlib
import heapq
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from gateway.registry import DeviceRecord
from simulators.fleet import heartbeat_phases
from simulators.model import Plan
from simulators.scenarios import SCENARIOS
from simulators.story import Story

Beat = tuple[float, DeviceRecord]  # (story time, device)


def build_plan(
    scenario: str,
    *,
    devices: Sequence[DeviceRecord],
    seed: int,
    start: datetime | None = None,
    end: datetime | None = None,
    messages: int | None = None,
) -> Plan:
    """Build a scenario's messages and expected outcome, deterministic for seed and time.

    Give ``start`` (device time of the first message) or ``end`` (device time of the
    last). To publish a plan as fast as possible, anchor it with ``end=now``: a night
    starting now would have device times hours ahead of the gateway's clock. With
    ``messages`` the plan is padded with earlier heartbeats to exactly that many
    messages (if the scenario alone has fewer).
    """
    write = SCENARIOS.get(scenario)
    if write is None:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    if start is not None and end is None:
        anchor = start
    elif end is not None and start is None:
        anchor = end
    else:
        raise ValueError("give exactly one of start or end")
    if anchor.utcoffset() is None:
        raise ValueError("start and end must be timezone-aware")
    # In UTC, adding seconds is elapsed time; with a Europe/Stockholm tzinfo it would be
    # wall-clock arithmetic and every device time after a DST switch an hour off.
    anchor = anchor.astimezone(UTC)
    records = list(devices)
    if not records:
        raise ValueError("a plan needs at least one device")
    # A dry run learns the story's length, who goes quiet and how many messages it has,
    # which fixes how many heartbeats come before it and so where the plan starts.
    probe = Story(records, seed=seed, start=anchor, lead_s=0.0, end=anchor, tag="PROBE")
    write(probe)
    phases = heartbeat_phases(records, seed)
    story_beats = _story_heartbeats(records, phases, probe.duration_s, probe.silent_from)
    wanted = 0 if messages is None else messages - probe.message_count - len(story_beats)
    lead_beats = _lead_heartbeats(records, phases, wanted)
    lead_s = round(-lead_beats[-1][0], 3) if lead_beats else 0.0
    span = timedelta(seconds=lead_s + probe.duration_s)
    first = anchor if start is not None else anchor - span
    story = Story(
        records, seed=seed, start=first, lead_s=lead_s, end=first + span, tag=run_tag(seed, first)
    )
    write(story)
    for rel, device in (*lead_beats, *story_beats):
        story.heartbeat(rel, device)
    return story.plan(scenario)


def run_tag(seed: int, start: datetime) -> str:
    """Six hex digits naming a (seed, start): ids unique across runs, repeatable within one."""
    return hashlib.sha256(f"{seed}|{start.isoformat()}".encode()).hexdigest()[:6].upper()


def _story_heartbeats(
    devices: Sequence[DeviceRecord],
    phases: Mapping[str, float],
    duration_s: float,
    silent_from: Mapping[str, float],
) -> list[Beat]:
    beats: list[Beat] = []
    for device in devices:
        until = min(duration_s, silent_from.get(device.device_id, math.inf))
        t = phases[device.device_id]
        while t < until:
            beats.append((t, device))
            t += device.heartbeat_interval_s
    return beats


def _lead_heartbeats(
    devices: Sequence[DeviceRecord], phases: Mapping[str, float], count: int
) -> list[Beat]:
    # Walk back in time from the story's start, latest beat first, until there are enough.
    heap = [
        (-(phases[d.device_id] - d.heartbeat_interval_s), index) for index, d in enumerate(devices)
    ]
    heapq.heapify(heap)
    beats: list[Beat] = []
    while len(beats) < count:
        negative, index = heapq.heappop(heap)
        device = devices[index]
        beats.append((-negative, device))
        heapq.heappush(heap, (negative + device.heartbeat_interval_s, index))
    return beats
