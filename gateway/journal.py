"""What the spool holds: raw messages per lane, and the rules' journal that storage consumes.

Two lanes take what the broker delivers, classified on receipt by a cheap
look at topic and payload: heartbeats and status messages go to the bulk
lane, everything that may page to the alarm lane. Each lane keeps arrival
order, so a device's rule-relevant events never overtake one another.

The journal is the rules' output in the order they ran: the events of each
decoded slice rendered for storage, its dead letters, the alert work, and the
lane positions it covers. Storage writes journal entries to PostgreSQL in
order and records the journal position in the same transaction; a restart
restores the rules' state from the newest saved snapshot and decodes again
only lane records that no journal entry covers.
"""

from __future__ import annotations

import pickle
import re
import struct
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import IntEnum

from adapters.common import load_json_object
from core.errors import DecodeError, GatewayError
from core.events import RawMessage
from core.rows import DeadLetter, StoredRow, render_rows
from rules.auditlog import is_access_event
from rules.work import AlertWork


class Lane(IntEnum):
    """Where a received message waits for the rules."""

    ALARM = 0  # anything that may page: processed first when the gateway is behind
    BULK = 1  # heartbeats and status: contact only, processed when the alarm lane is empty


# A message is bulk only when it is a heartbeat that rules judge as contact
# and nothing else: a heartbeat carrying an attribute some rule judges (a
# battery reading) stays in the alarm lane, in order with the device's other
# readings. Other attributes (signal strength, firmware) are fine.
_ENVELOPE_KEYS = frozenset({"id", "kind", "event", "ts", "device_id"})
# Keys that make any event more than contact, whatever the rules.
_JUDGED_KEYS = frozenset({"actor", "level", "state"})
_HEARTBEAT_NAMES = frozenset({"device.heartbeat", "heartbeat"})
# SCAIP <mrq> tags a bare heartbeat (<mty>PI</mty>) may have: no status or info code.
_BULK_SCAIP_TAGS = frozenset(
    {b"mrq", b"ref", b"ver", b"mty", b"cid", b"dty", b"did", b"dco", b"crd"}
)
_XML_TAG = re.compile(rb"<([A-Za-z][A-Za-z0-9]*)")
# A larger payload may hold more than a heartbeat.
_BULK_MAX_BYTES = 1024


def lane_of(raw: RawMessage, judged: AbstractSet[str]) -> Lane:
    """Classify a message on receipt; anything doubtful goes to the alarm lane.

    ``judged`` names the attributes some rule judges (RuleSet.judged_attributes).
    Cheap for what pages: only a payload that mentions a heartbeat is parsed,
    with the adapters' own JSON decoder, so classification and decoding agree.
    """
    if raw.topic.endswith("/status"):
        return Lane.BULK
    payload = raw.payload
    if len(payload) > _BULK_MAX_BYTES:
        return Lane.ALARM
    if b"<mty>PI</mty>" in payload:
        tags = set(_XML_TAG.findall(payload))
        return Lane.BULK if tags <= _BULK_SCAIP_TAGS else Lane.ALARM
    if b"heartbeat" not in payload:
        return Lane.ALARM
    try:
        body = load_json_object(raw)
    except DecodeError:
        return Lane.ALARM
    name = body.get("kind", body.get("event"))
    extra = body.keys() - _ENVELOPE_KEYS
    if name in _HEARTBEAT_NAMES and not extra & judged and not extra & _JUDGED_KEYS:
        # "event" names a vendor's kind; alongside "kind" it is one more attribute.
        if "kind" in body and "event" in body:
            return Lane.ALARM
        return Lane.BULK
    return Lane.ALARM


# received_at in microseconds since the epoch, retained flag, topic length.
_RAW = struct.Struct("<qBH")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def encode_raw(raw: RawMessage) -> bytes:
    """A raw message as one spool record."""
    topic = raw.topic.encode("utf-8", "surrogateescape")
    micros = (raw.received_at - _EPOCH) // timedelta(microseconds=1)
    return _RAW.pack(micros, raw.retained, len(topic)) + topic + raw.payload


def decode_raw(record: bytes) -> RawMessage:
    """The raw message a spool record holds."""
    micros, retained, length = _RAW.unpack_from(record)
    start = _RAW.size
    topic = record[start : start + length].decode("utf-8", "surrogateescape")
    return RawMessage(
        topic,
        record[start + length :],
        _EPOCH + timedelta(microseconds=micros),
        bool(retained),
    )


@dataclass(slots=True)
class JournalEntry:
    """One slice of the rules' output, to be committed to PostgreSQL in one go."""

    lanes: tuple[int, int]  # the lane positions (alarm, bulk) processed up to here
    rows: bytes = b""  # events in the events table's text row format (core.rows.render_rows)
    row_count: int = 0
    access: list[StoredRow] = field(default_factory=list)  # events that go to the access log
    dead: list[DeadLetter] = field(default_factory=list)
    work: AlertWork | None = None
    received_at: datetime | None = None  # receipt of the oldest message in it


def make_entry(
    rows: list[StoredRow],
    dead: list[DeadLetter],
    work: AlertWork | None,
    *,
    lanes: tuple[int, int] = (0, 0),
    received_at: datetime | None = None,
) -> JournalEntry:
    """The journal entry for what the rules made of a slice of messages."""
    return JournalEntry(
        lanes=lanes,
        rows=render_rows(rows),
        row_count=len(rows),
        access=[r for r in rows if is_access_event(r)],
        dead=dead,
        work=work if work else None,
        received_at=received_at,
    )


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a spool's journal is stored, kept in PostgreSQL with what it stored."""

    spool_id: str
    journal_seq: int = 0
    alarm_seq: int = 0  # the lane positions the stored journal covers
    bulk_seq: int = 0


# Bumped whenever JournalEntry or what it holds changes shape: a spool written
# by another version is refused with a clear message instead of misread.
_VERSION = b"\x02"  # 2: alerts carry their escalation tier and their handler's name


class JournalFormatError(GatewayError):
    """A journal record was written by another version of the gateway."""


def encode_entry(entry: JournalEntry) -> bytes:
    """A journal entry as one spool record.

    Pickle, because the entry holds the engine's own types and pickle
    restores them at C speed; the spool is the gateway's private state on its
    own disk (a mode-700 directory), never read from anywhere else.
    """
    return _VERSION + pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL)


def decode_entry(record: bytes) -> JournalEntry:
    """The journal entry a spool record holds."""
    if record[:1] != _VERSION:
        raise JournalFormatError(
            "the spool's journal was written by another version of welfare-gateway; "
            "run that version until PostgreSQL has caught up, or move the spool aside"
        )
    # Our own private spool (see encode_entry), never data from elsewhere.
    entry = pickle.loads(record[1:])
    if not isinstance(entry, JournalEntry):
        raise JournalFormatError("a journal record does not hold a journal entry")
    return entry
