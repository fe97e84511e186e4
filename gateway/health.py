"""Device health for the console: last contact and battery, as ingest sees them."""

from __future__ import annotations

from datetime import datetime

from core.events import Event


class DeviceHealth:
    """Last contact and last reported battery per device, updated with every decoded event."""

    def __init__(self) -> None:
        self.last_contact: dict[str, datetime] = {}
        self.battery: dict[str, int] = {}

    def observe(self, event: Event) -> None:
        """Note that a device was heard from (gateway receipt time) and its battery if it said."""
        self.last_contact[event.device_id] = event.received_at
        level = event.attributes.get("battery")
        if isinstance(level, int) and not isinstance(level, bool):
            self.battery[event.device_id] = level
