"""The named scenarios: each writes its part of a night into a Story, in story time.

Story time 0 is the story's start; the timings assume a story starting at 02:00 local
time (left the bed at 02:10, a key at 03:00), which a test gets by choosing ``start``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta

from core.events import Family
from simulators.fleet import Transport
from simulators.hostile import HOSTILE, targets_for
from simulators.render import STC_TEST_TRANSMISSION
from simulators.story import Story

Scenario = Callable[[Story], None]

MINUTE = 60.0


def quiet_night(story: Story) -> None:
    """Heartbeats, now and then a sensor sees activity or someone back in bed; all valid."""
    story.lasts(30 * MINUTE)
    (retrying,) = story.pick(Family.SENSOR)
    # No id, sent twice: the gateway's derived id must make the second copy a no-op.
    first = story.event(20 * MINUTE, retrying, "sensor.activity", with_id=False, level="notice")
    story.resend(20 * MINUTE + 1.5, first)
    for sensor in story.unused():
        if sensor.family is not Family.SENSOR:
            continue
        for _ in range(story.rng.randint(0, 2)):
            rel = story.rng.uniform(MINUTE, story.duration_s - MINUTE)
            kind = story.rng.choice(("sensor.activity", "sensor.in_bed"))
            story.event(rel, sensor, kind, level="notice")


def fall(story: Story) -> None:
    """A sensor sees a fall (sent twice, as a retrying device does) and a fall detector alarms."""
    story.lasts(10 * MINUTE)
    (sensor,) = story.pick(Family.SENSOR)
    fallen = story.event(3 * MINUTE, sensor, "sensor.fall", with_id=True, level="alarm")
    story.resend(3 * MINUTE + 2, fallen)
    (alarm,) = story.pick(Family.ALARM, transport=Transport.BRIDGE)
    story.scaip(5 * MINUTE, alarm, "alarm.fall", pri="1")


def left_bed_not_back(story: Story) -> None:
    """Someone leaves the bed at 02:10 and is not back 30 minutes later; another is back soon."""
    story.lasts(40 * MINUTE)
    sensors = story.pick(Family.SENSOR, 2)
    story.event(10 * MINUTE, sensors[0], "sensor.left_bed", level="notice")
    if len(sensors) > 1:
        story.event(12 * MINUTE, sensors[1], "sensor.left_bed", level="notice")
        story.event(17 * MINUTE, sensors[1], "sensor.in_bed", level="notice")


def missed_dose(story: Story) -> None:
    """A dose is due and missed 30 minutes later; on another dispenser a dose is taken."""
    story.lasts(45 * MINUTE)
    dispensers = story.pick(Family.DISPENSER, 2)
    missed, taken = dispensers[0], dispensers[-1]
    dose = f"dose-{story.render.token()}"
    story.event(5 * MINUTE, missed, "dispenser.dose_due", dose_id=dose)
    story.event(5 * MINUTE + 2, missed, "dispenser.dose_dispensed", dose_id=dose)
    story.event(35 * MINUTE, missed, "dispenser.dose_missed", dose_id=dose)
    dose = f"dose-{story.render.token()}"
    story.event(5 * MINUTE + 20, taken, "dispenser.dose_due", dose_id=dose)
    story.event(5 * MINUTE + 22, taken, "dispenser.dose_dispensed", dose_id=dose)
    story.event(8 * MINUTE + 30, taken, "dispenser.dose_taken", dose_id=dose)


def lock_outside_shift(story: Story) -> None:
    """A key opens a door at 03:00 (story minute 60): unlock, in, out ten minutes later, lock."""
    story.lasts(72 * MINUTE)
    (lock,) = story.pick(Family.LOCK)
    key = f"key-{story.rng.randint(1, 250):04d}"
    t = 60 * MINUTE
    story.event(t, lock, "lock.unlocked", actor=key)
    story.event(t + 6, lock, "lock.door_opened")
    story.event(t + 14, lock, "lock.door_closed")
    story.event(t + 9 * MINUTE + 30, lock, "lock.door_opened")
    story.event(t + 9 * MINUTE + 36, lock, "lock.door_closed")
    story.event(t + 9 * MINUTE + 40, lock, "lock.locked", actor=key)


def late_lock_sync(story: Story) -> None:
    """A lock syncs its offline log: two visits that happened about six hours before the start."""
    story.lasts(10 * MINUTE)
    (lock,) = story.pick(Family.LOCK)
    lines = []
    for visit_at in (timedelta(hours=-6), timedelta(hours=-5, minutes=-25)):
        key = f"key-{story.rng.randint(1, 250):04d}"
        base = story.start + visit_at
        for after_s, kind, actor in (
            (0, "lock.unlocked", key),
            (5, "lock.door_opened", None),
            (12, "lock.door_closed", None),
            (14 * MINUTE, "lock.door_opened", None),
            (14 * MINUTE + 6, "lock.door_closed", None),
            (14 * MINUTE + 9, "lock.locked", key),
        ):
            lines.append((base + timedelta(seconds=after_s), kind, actor))
    story.lock_log(2 * MINUTE, lock, lines)


def device_silent(story: Story) -> None:
    """A few devices announce offline (their retained will) and stop heartbeating."""
    story.lasts(20 * MINUTE)
    pool = story.unused() or story.devices
    count = max(1, min(5, len(story.devices) // 25))
    for index, device in enumerate(story.rng.sample(pool, min(count, len(pool)))):
        # Six minutes in, every device with an interval up to 300 s has sent a heartbeat.
        story.goes_offline(6 * MINUTE + 45 * index, device)


def hostile(story: Story) -> None:
    """Every kind of malformed or hostile payload once, each a distinct dead letter."""
    story.lasts(10 * MINUTE)
    (sensor,) = story.pick(Family.SENSOR)
    (lock,) = story.pick(Family.LOCK)
    (alarm,) = story.pick(Family.ALARM)
    targets = targets_for(story.devices, sensor, lock, alarm)
    for index, make in enumerate(HOSTILE):
        rel = 30 + 30 * index
        _, when = story.at(rel)
        story.bad(rel, make(targets, story.render.token(), when, story.end))


def alarm_calls(story: Story) -> None:
    """Social alarms in every transport: a call handled to the end, technical alarms, a test."""
    story.lasts(20 * MINUTE)
    (caller,) = story.pick(Family.ALARM, transport=Transport.JSON)
    staff = f"staff-{story.rng.randint(1, 80):04d}"
    story.event(2 * MINUTE, caller, "alarm.button")
    story.event(8 * MINUTE, caller, "alarm.presence", actor=staff)
    story.event(14 * MINUTE, caller, "alarm.intervention_complete", actor=staff)
    story.event(14 * MINUTE + 5, caller, "alarm.reset")
    (direct,) = story.pick(Family.ALARM, transport=Transport.SCAIP)
    story.scaip(4 * MINUTE, direct, "alarm.button", pri="1")
    story.scaip(15 * MINUTE, direct, "alarm.intervention_complete")
    story.scaip(15 * MINUTE + 3, direct, "alarm.reset")
    (bridged,) = story.pick(Family.ALARM, transport=Transport.BRIDGE)
    story.scaip(6 * MINUTE, bridged, "device.battery_low")
    story.scaip(7 * MINUTE, bridged, "device.power_lost")
    story.scaip(9 * MINUTE, bridged, "alarm.unauthorised_access", pri="2")
    story.scaip(11 * MINUTE, bridged, "device.power_restored")
    story.scaip(12 * MINUTE, bridged, "device.heartbeat", mty="IN", stc=STC_TEST_TRANSMISSION)
    (lock,) = story.pick(Family.LOCK)
    story.event(10 * MINUTE, lock, "device.battery_low", battery=9)
    (dispenser,) = story.pick(Family.DISPENSER)
    story.event(13 * MINUTE, dispenser, "device.error", code="tilted")
    story.event(13 * MINUTE + 30, dispenser, "dispenser.refill_low", days_left=2)


def mixed(story: Story) -> None:
    """Everything above in one night: the end-to-end test's workload."""
    # Featured devices first, so the quiet night's background activity avoids them.
    for part in (
        alarm_calls,
        fall,
        left_bed_not_back,
        missed_dose,
        lock_outside_shift,
        late_lock_sync,
        device_silent,
        hostile,
        quiet_night,
    ):
        part(story)


SCENARIOS: Mapping[str, Scenario] = {
    "quiet_night": quiet_night,
    "fall": fall,
    "left_bed_not_back": left_bed_not_back,
    "missed_dose": missed_dose,
    "lock_outside_shift": lock_outside_shift,
    "late_lock_sync": late_lock_sync,
    "device_silent": device_silent,
    "hostile": hostile,
    "alarm_calls": alarm_calls,
    "mixed": mixed,
}
