"""Digital door locks (trygghetslås): JSON events and batches of a synced offline log."""

from __future__ import annotations

from typing import Any

from adapters.common import (
    STATUS_CHANNEL,
    DeviceSpec,
    JsonForm,
    address_for,
    check_device_id,
    event_from_json,
    load_json_object,
)
from adapters.status import decode_status
from core.errors import DecodeError
from core.events import Event, Family, RawMessage

# Door opened/closed are logged without a key and locking can be automatic; an
# unlock without the key that did it would leave a hole in the audit trail.
FORM = JsonForm(family=Family.LOCK, actor_required=frozenset({"lock.unlocked"}))

# A lock syncs at most a few hundred log lines at once; more is a broken or hostile hub.
MAX_ENTRIES = 1000

_BATCH_FIELDS = frozenset({"entries", "device_id"})


def _decode_batch(data: dict[str, Any], device_id: str, raw: RawMessage) -> list[Event]:
    extra = sorted(data.keys() - _BATCH_FIELDS)
    if extra:
        raise DecodeError(
            "invalid_event",
            f"batch field {extra[0][:40]!r} is not accepted; put attributes in the entries",
        )
    if "device_id" in data and data["device_id"] is None:
        raise DecodeError(
            "null_device_id", "field 'device_id' is null; send a string or leave it out"
        )
    claimed = data.get("device_id")
    if claimed is not None and not isinstance(claimed, str):
        raise DecodeError("invalid_event", "field 'device_id' must be a string")
    check_device_id(claimed, device_id)
    entries = data["entries"]
    if not isinstance(entries, list):
        raise DecodeError("invalid_event", "field 'entries' must be a list of event objects")
    if len(entries) > MAX_ENTRIES:
        raise DecodeError(
            "too_many_entries", f"{len(entries)} entries; at most {MAX_ENTRIES} per batch"
        )
    events: list[Event] = []
    for index, entry in enumerate(entries):
        # One bad entry refuses the whole batch: the raw batch is dead-lettered intact,
        # which is easier to repair and replay than a log with silent holes.
        try:
            if not isinstance(entry, dict):
                raise DecodeError("invalid_event", "entry is not a JSON object")
            events.append(
                event_from_json(FORM, entry, device_id=device_id, received_at=raw.received_at)
            )
        except DecodeError as exc:
            raise DecodeError(exc.reason, f"entries[{index}]: {exc}") from exc
    return events


def decode(raw: RawMessage) -> list[Event]:
    """Decode a lock event, a batch of offline-log entries, or a status message."""
    address = address_for(raw.topic, Family.LOCK)
    if address.channel == STATUS_CHANNEL:
        return decode_status(raw, address.device_id, Family.LOCK)
    data = load_json_object(raw)
    if "entries" in data:
        return _decode_batch(data, address.device_id, raw)
    return [event_from_json(FORM, data, device_id=address.device_id, received_at=raw.received_at)]


SPEC = DeviceSpec(
    family=Family.LOCK,
    topic_filters=("wgw/+/lock/+/event", "wgw/+/lock/+/status"),
    decode=decode,
    description="Door lock: JSON events, or {'entries': [...]} when an offline log syncs",
)
