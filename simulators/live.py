"""Live mode for the demo: every device heartbeats and lives its night until told to stop."""

from __future__ import annotations

import heapq
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial

from core.events import Family
from gateway.registry import DeviceRecord
from simulators.fleet import Transport, heartbeat_phases
from simulators.hostile import HOSTILE, Targets, targets_for
from simulators.model import SimMessage
from simulators.plan import run_tag
from simulators.publisher import PublishReport, open_session
from simulators.render import STC_TEST_TRANSMISSION, Attribute, Rendered, Renderer

log = logging.getLogger(__name__)

# Mean seconds between incidents (falls, alarms, missed doses, bad payloads, outages):
# frequent enough to watch, rare enough that the console is not a wall of alarms.
INCIDENT_EVERY_S = 15.0
# The first comes within seconds, so a newcomer sees the console react at once.
FIRST_INCIDENT_S = (2.0, 4.0)
MINUTE = 60.0

# (monotonic time, device time) → messages to send now.
Action = Callable[[float, datetime], list[Rendered]]


class LiveTraffic:
    """Decides what every device sends when; pure (time is passed in), so tests need no clock.

    Heartbeats follow each device's interval; routine episodes (activity, restless
    nights, door visits, doses taken) fill the message rate; incidents come about
    every ``INCIDENT_EVERY_S`` seconds whatever the rate.
    """

    def __init__(
        self, devices: Sequence[DeviceRecord], *, seed: int, rate: float, now: float, tag: str
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.render = Renderer(devices, seed=seed, tag=tag)
        self.rng = random.Random(f"live:{seed}")
        self._started = now
        self._last = now
        self._credit = 0.0
        self._queue: list[tuple[float, int, Action]] = []
        self._order = 0
        self._quiet_until: dict[str, float] = {}
        self._next_incident = now + self.rng.uniform(*FIRST_INCIDENT_S)
        self._family: dict[Family, list[DeviceRecord]] = {f: [] for f in Family}
        for device in devices:
            self._family[device.family].append(device)
        self._targets: Targets | None = None
        if all(self._family[f] for f in (Family.SENSOR, Family.LOCK, Family.ALARM)):
            self._targets = targets_for(
                devices,
                self._family[Family.SENSOR][0],
                self._family[Family.LOCK][0],
                self._family[Family.ALARM][0],
            )
        phases = heartbeat_phases(devices, seed)
        for device in devices:
            first = now + phases[device.device_id]
            self._later(first, partial(self._heartbeat, device, first))
        self._routine: tuple[tuple[float, Action], ...] = (
            (30, self._activity),
            (10, self._restless),
            (8, self._door_visit),
            (8, self._dose_taken),
            (3, self._test_transmission),
        )
        self._incidents: tuple[tuple[float, Action], ...] = (
            (3, self._sensor_fall),
            (2, self._fall_detector),
            (4, self._alarm_call),
            (2, self._not_back_in_bed),
            (2, self._dose_missed),
            (1, self._battery_low),
            (2, self._hostile),
            (1, self._outage),
        )

    def due(self, now: float, wall: datetime) -> list[SimMessage]:
        """Everything to send at monotonic time ``now``; ``wall`` is the device time."""
        # A token bucket holding at most one second's worth: no burst after a stall.
        self._credit = min(self._credit + (now - self._last) * self.rate, max(self.rate, 1.0))
        self._last = now
        out: list[Rendered] = []
        while self._queue and self._queue[0][0] <= now:
            _, _, action = heapq.heappop(self._queue)
            out += action(now, wall)
        if now >= self._next_incident:
            # The first is always a fall: what the console is for, seen at once.
            first = self._next_incident - self._started <= FIRST_INCIDENT_S[1]
            self._next_incident = now + INCIDENT_EVERY_S * self.rng.uniform(0.5, 1.5)
            out += (self._sensor_fall if first else self._choose(self._incidents))(now, wall)
        # Heartbeats and follow-ups spend credit too; the debt is capped like the credit.
        self._credit = max(self._credit - len(out), -max(self.rate, 1.0))
        while self._credit >= 1:
            routine = self._choose(self._routine)(now, wall)
            out += routine
            self._credit -= max(1, len(routine))
        offset = round(now - self._started, 3)
        return [SimMessage(r.topic, r.payload, retain=r.retain, offset_s=offset) for r in out]

    def next_due(self) -> float:
        """The monotonic time something is next due (at most a second after the last call)."""
        soonest = min(self._next_incident, self._last + 1.0)
        if self._queue:
            soonest = min(soonest, self._queue[0][0])
        if self._credit < 1:
            soonest = min(soonest, self._last + (1 - self._credit) / self.rate)
        return soonest

    # --- scheduling helpers ---------------------------------------------------------------

    def _later(self, when: float, action: Action) -> None:
        self._order += 1
        heapq.heappush(self._queue, (when, self._order, action))

    def _choose(self, weighted: tuple[tuple[float, Action], ...]) -> Action:
        weights = [w for w, _ in weighted]
        return self.rng.choices([a for _, a in weighted], weights=weights)[0]

    def _pick(self, family: Family) -> DeviceRecord | None:
        devices = self._family[family]
        return self.rng.choice(devices) if devices else None

    def _event(
        self,
        device: DeviceRecord,
        kind: str,
        attributes: Mapping[str, Attribute],
        now: float,
        wall: datetime,
        *,
        actor: str | None = None,
    ) -> list[Rendered]:
        return [self.render.event(device, kind, wall, actor=actor, attributes=attributes)]

    def _then(
        self,
        delay_s: float,
        device: DeviceRecord,
        kind: str,
        now: float,
        *,
        actor: str | None = None,
        **attributes: Attribute,
    ) -> None:
        action = partial(self._event, device, kind, attributes, actor=actor)
        self._later(now + delay_s, action)

    def _alarm(self, device: DeviceRecord, kind: str, wall: datetime) -> list[Rendered]:
        # A social alarm speaks JSON or SCAIP, whichever its firmware does.
        if self.render.style(device).transport is Transport.JSON:
            return [self.render.event(device, kind, wall)]
        return [self.render.scaip(device, kind)]

    def _then_alarm(self, delay_s: float, device: DeviceRecord, kind: str, now: float) -> None:
        self._later(now + delay_s, lambda _n, wall: self._alarm(device, kind, wall))

    # --- heartbeats -----------------------------------------------------------------------

    def _heartbeat(
        self, device: DeviceRecord, due: float, now: float, wall: datetime
    ) -> list[Rendered]:
        # Scheduled from the due time, not from now, so a late loop does not drift the rhythm.
        following = due + device.heartbeat_interval_s
        self._later(following, partial(self._heartbeat, device, following))
        if self._quiet_until.get(device.device_id, 0.0) > now:
            return []
        return [self.render.heartbeat(device, wall)]

    # --- routine episodes -----------------------------------------------------------------

    def _activity(self, now: float, wall: datetime) -> list[Rendered]:
        sensor = self._pick(Family.SENSOR)
        if sensor is None:
            return []
        return self._event(sensor, "sensor.activity", {"level": "notice"}, now, wall)

    def _restless(self, now: float, wall: datetime) -> list[Rendered]:
        sensor = self._pick(Family.SENSOR)
        if sensor is None:
            return []
        self._then(20, sensor, "sensor.left_bed", now, level="notice")
        self._then(self.rng.uniform(1, 8) * MINUTE, sensor, "sensor.in_bed", now, level="notice")
        return self._event(sensor, "sensor.sitting_up", {"level": "notice"}, now, wall)

    def _door_visit(self, now: float, wall: datetime) -> list[Rendered]:
        lock = self._pick(Family.LOCK)
        if lock is None:
            return []
        key = f"key-{self.rng.randint(1, 250):04d}"
        stay = self.rng.uniform(4, 15) * MINUTE
        self._then(5, lock, "lock.door_opened", now)
        self._then(12, lock, "lock.door_closed", now)
        self._then(stay, lock, "lock.door_opened", now)
        self._then(stay + 6, lock, "lock.door_closed", now)
        self._then(stay + 9, lock, "lock.locked", now, actor=key)
        return self._event(lock, "lock.unlocked", {}, now, wall, actor=key)

    def _dose_taken(self, now: float, wall: datetime) -> list[Rendered]:
        dispenser = self._pick(Family.DISPENSER)
        if dispenser is None:
            return []
        dose = f"dose-{self.render.token()}"
        self._then(2, dispenser, "dispenser.dose_dispensed", now, dose_id=dose)
        taken_after = self.rng.uniform(1, 10) * MINUTE
        self._then(taken_after, dispenser, "dispenser.dose_taken", now, dose_id=dose)
        return self._event(dispenser, "dispenser.dose_due", {"dose_id": dose}, now, wall)

    def _test_transmission(self, now: float, wall: datetime) -> list[Rendered]:
        alarm = self._pick(Family.ALARM)
        if alarm is None:
            return []
        test = self.render.scaip(alarm, "device.heartbeat", mty="IN", stc=STC_TEST_TRANSMISSION)
        return [test]

    # --- incidents ------------------------------------------------------------------------

    def _sensor_fall(self, now: float, wall: datetime) -> list[Rendered]:
        sensor = self._pick(Family.SENSOR)
        if sensor is None:
            return []
        return self._event(sensor, "sensor.fall", {"level": "alarm"}, now, wall)

    def _fall_detector(self, now: float, wall: datetime) -> list[Rendered]:
        alarm = self._pick(Family.ALARM)
        if alarm is None:
            return []
        self._then_alarm(self.rng.uniform(4, 9) * MINUTE, alarm, "alarm.reset", now)
        return self._alarm(alarm, "alarm.fall", wall)

    def _alarm_call(self, now: float, wall: datetime) -> list[Rendered]:
        alarm = self._pick(Family.ALARM)
        if alarm is None:
            return []
        staff = f"staff-{self.rng.randint(1, 80):04d}"
        present = self.rng.uniform(1, 3) * MINUTE
        done = present + self.rng.uniform(3, 8) * MINUTE
        # Presence and completion come from the staff's phone app, with the staff id.
        self._then(present, alarm, "alarm.presence", now, actor=staff)
        self._then(done, alarm, "alarm.intervention_complete", now, actor=staff)
        self._then_alarm(done + 5, alarm, "alarm.reset", now)
        return self._alarm(alarm, "alarm.button", wall)

    def _not_back_in_bed(self, now: float, wall: datetime) -> list[Rendered]:
        sensor = self._pick(Family.SENSOR)
        if sensor is None:
            return []
        return self._event(sensor, "sensor.left_bed", {"level": "notice"}, now, wall)

    def _dose_missed(self, now: float, wall: datetime) -> list[Rendered]:
        dispenser = self._pick(Family.DISPENSER)
        if dispenser is None:
            return []
        dose = f"dose-{self.render.token()}"
        self._then(2, dispenser, "dispenser.dose_dispensed", now, dose_id=dose)
        self._then(30 * MINUTE, dispenser, "dispenser.dose_missed", now, dose_id=dose)
        return self._event(dispenser, "dispenser.dose_due", {"dose_id": dose}, now, wall)

    def _battery_low(self, now: float, wall: datetime) -> list[Rendered]:
        lock = self._pick(Family.LOCK)
        if lock is None:
            return []
        return self._event(
            lock, "device.battery_low", {"battery": self.rng.randint(3, 12)}, now, wall
        )

    def _hostile(self, now: float, wall: datetime) -> list[Rendered]:
        if self._targets is None:
            return []
        bad = self.rng.choice(HOSTILE)(self._targets, self.render.token(), wall, wall)
        return [Rendered(bad.topic, bad.payload, ())]

    def _outage(self, now: float, wall: datetime) -> list[Rendered]:
        device = self.rng.choice(self.render.devices)
        back = self.rng.uniform(2, 5) * MINUTE
        self._quiet_until[device.device_id] = now + back
        # The bare words, as an MQTT will and a reconnecting device publish them.
        self._later(now + back, lambda _n, _w: [self.render.status(device, "online", None)])
        return [self.render.status(device, "offline", None)]


def run_live(
    devices: Sequence[DeviceRecord],
    broker_url: str,
    *,
    seed: int,
    rate: float,
    stop: threading.Event,
    on_sent: Callable[[SimMessage], None] | None = None,
    client_id: str | None = None,
    protocol: int = 5,
    scaip_sip: str | None = None,
) -> PublishReport:
    """Publish live traffic at about ``rate`` messages/s in total until ``stop`` is set.

    With ``scaip_sip`` the bridged social alarms go to that SIP receiver as MESSAGE.
    """
    started = time.monotonic()
    traffic = LiveTraffic(
        devices, seed=seed, rate=rate, now=started, tag=run_tag(seed, datetime.now(UTC))
    )
    sessions = open_session(broker_url, client_id=client_id, protocol=protocol, scaip_sip=scaip_sip)
    with sessions as session:
        while not stop.is_set():
            for message in traffic.due(time.monotonic(), datetime.now(UTC)):
                session.send(message)
                if on_sent is not None:
                    on_sent(message)
            stop.wait(max(0.0, traffic.next_due() - time.monotonic()))
        if not session.drain(timeout_s=5.0):
            log.warning("stopped with %d messages unacknowledged", session.unfinished)
        return session.report(time.monotonic() - started)
