"""Pieces shared by every adapter: the DeviceSpec, topic matching, JSON and timestamp parsing."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from core.errors import DecodeError
from core.events import (
    DEVICE_KINDS,
    FAMILY_KINDS,
    AttributeValue,
    Event,
    Family,
    RawMessage,
    stable_event_id,
)

# Largest payload any adapter accepts. A lock syncing a long offline log is the
# largest legitimate message (a few hundred entries of ~150 bytes); anything
# bigger is hostile or broken and goes to the dead-letter table unread.
MAX_PAYLOAD_BYTES = 256 * 1024

Decoder = Callable[[RawMessage], list[Event]]


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """How one device family arrives: its topic filters and its pure decode function."""

    family: Family
    topic_filters: tuple[str, ...]
    decode: Decoder
    description: str


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Tell whether an MQTT topic matches a filter with ``+`` and ``#`` wildcards."""
    f_levels = topic_filter.split("/")
    t_levels = topic.split("/")
    for i, level in enumerate(f_levels):
        if level == "#":
            return True
        if i >= len(t_levels):
            return False
        if level not in ("+", t_levels[i]):
            return False
    return len(f_levels) == len(t_levels)


@dataclass(frozen=True, slots=True)
class TopicAddress:
    """What the topic says about a message: organisation, family, device and channel."""

    org: str
    family: str
    device_id: str
    channel: str  # "event" or "status"


def parse_topic(topic: str) -> TopicAddress:
    """Split ``wgw/{org}/{family}/{device_id}/{event|status}`` into its parts."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "wgw" or not all(parts):
        raise DecodeError(
            "bad_topic", f"topic {topic!r} is not wgw/{{org}}/{{family}}/{{device_id}}/event"
        )
    return TopicAddress(org=parts[1], family=parts[2], device_id=parts[3], channel=parts[4])


def check_size(raw: RawMessage, limit: int = MAX_PAYLOAD_BYTES) -> None:
    """Refuse payloads over the size cap before any parser sees them."""
    if len(raw.payload) > limit:
        raise DecodeError(
            "oversized", f"payload of {len(raw.payload)} bytes exceeds the {limit}-byte limit"
        )


# JSON limits, checked before the parser (which recurses per nesting level) sees the text.
# The deepest legitimate payload is a lock batch: object → entries list → entry object
# (depth 3); attribute values are scalars.
MAX_JSON_DEPTH = 8
# Every JSON number (attribute, battery, epoch time) is finite with |x| ≤ 10^15: exact as
# an IEEE double and as a 64-bit integer, and far beyond any reading a device sends.
MAX_JSON_NUMBER = 10**15
_MAX_INT_DIGITS = len(str(MAX_JSON_NUMBER))

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_INNER_PAIR = re.compile(rb"\[\]|\{\}")
_OPENS = {ord("]"): ord("["), ord("}"): ord("{")}
# In valid UTF-8 JSON text a NUL or a lone surrogate can only come from a \u escape.
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")


class _NumberOutOfRange(ValueError):
    """A JSON number outside ±MAX_JSON_NUMBER (raised from the decoder's hooks)."""


def check_json_depth(payload: bytes, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse JSON nested deeper than ``limit`` without recursing (json_too_deep).

    Strings are cut out, then innermost ``[]``/``{}`` pairs are removed ``limit``
    times (each pass one C-speed regex); what is left is walked once with a
    stack, stopping at the first level over the limit or the first mismatch.
    """
    brackets = _JSON_STRING.sub(b"", payload).translate(None, _NOT_BRACKETS)
    for _ in range(limit):
        if not brackets:
            return
        brackets = _INNER_PAIR.sub(b"", brackets)
    stack: list[int] = []
    for byte in brackets:
        opener = _OPENS.get(byte)
        if opener is None:
            stack.append(byte)
            if len(stack) > limit:
                raise DecodeError("json_too_deep", f"JSON is nested more than {limit} levels deep")
        elif not stack or stack.pop() != opener:
            return  # unbalanced: the parser says where


def check_text(value: str, field: str) -> None:
    """Refuse a string PostgreSQL cannot store: a NUL, or a lone surrogate (not Unicode)."""
    found = _BAD_CHARS.search(value)
    if found is None:
        return
    if found.group() == "\x00":
        raise DecodeError("nul_character", f"{field} holds a NUL character (\\u0000)")
    raise DecodeError(
        "lone_surrogate",
        f"{field} holds the lone surrogate \\u{ord(found.group()):04x}; text must be valid Unicode",
    )


def _check_strings(value: object, where: str) -> None:
    # Nesting is bounded by check_json_depth, so this recursion is too.
    if isinstance(value, str):
        check_text(value, where)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(key, "a field name")
            _check_strings(item, f"field {key[:40]!r}")
    elif isinstance(value, list):
        for item in value:
            _check_strings(item, where)


def load_json_object(raw: RawMessage) -> dict[str, Any]:
    """Parse a payload as a UTF-8 JSON object, or raise DecodeError with the reason.

    In order: size cap, UTF-8, nesting depth (before any recursion), the parser
    (numbers finite and within ±MAX_JSON_NUMBER), then every string free of NUL
    and lone surrogates.
    """
    check_size(raw)
    try:
        text = raw.payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError("invalid_utf8", f"payload is not UTF-8: {exc}") from exc
    check_json_depth(raw.payload)
    try:
        value = _DECODER.decode(text)
    except _NumberOutOfRange as exc:
        raise DecodeError("number_out_of_range", str(exc)) from exc
    except RecursionError as exc:  # pragma: no cover - check_json_depth comes first
        raise DecodeError("json_too_deep", "payload is nested too deeply") from exc
    except ValueError as exc:
        # JSONDecodeError, and also our NaN/Infinity refusal.
        raise DecodeError("invalid_json", f"payload is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise DecodeError("invalid_json", f"payload is JSON {type(value).__name__}, not an object")
    if "\\u" in text:
        _check_strings(value, "payload")
    return value


def _reject_constant(name: str) -> float:
    # NaN and Infinity are not JSON and PostgreSQL jsonb refuses them.
    raise ValueError(f"{name} is not a JSON number")


def _out_of_range(text: str) -> _NumberOutOfRange:
    shown = text if len(text) <= 24 else text[:23] + "…"
    return _NumberOutOfRange(f"number {shown} is outside the accepted range of ±1e15")


def _bounded_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or abs(value) > MAX_JSON_NUMBER:  # 1e400 parses to inf
        raise _out_of_range(text)
    return value


def _bounded_int(text: str) -> int:
    # Length first: int() of thousands of digits is slow, and no valid number is that long.
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        raise _out_of_range(text)
    value = int(text)
    if abs(value) > MAX_JSON_NUMBER:
        raise _out_of_range(text)
    return value


# Built once: json.loads with hooks would build a new decoder for every message.
_DECODER = json.JSONDecoder(
    parse_constant=_reject_constant, parse_float=_bounded_float, parse_int=_bounded_int
)

# Epoch numbers above this are taken as milliseconds (2286 in seconds).
_EPOCH_MS_THRESHOLD = 10_000_000_000


def parse_timestamp(value: object, field: str = "ts") -> datetime:
    """Turn an ISO 8601 string with offset, or epoch seconds/milliseconds, into aware UTC."""
    if isinstance(value, bool):
        raise DecodeError("invalid_timestamp", f"{field} is a boolean, not a time")
    if isinstance(value, int | float):
        seconds = value / 1000 if value > _EPOCH_MS_THRESHOLD else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise DecodeError("invalid_timestamp", f"{field}={value!r} is out of range") from exc
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise DecodeError(
                "invalid_timestamp", f"{field}={value!r} is not an ISO 8601 time"
            ) from exc
        if parsed.tzinfo is None:
            raise DecodeError(
                "naive_timestamp", f"{field}={value!r} has no UTC offset; send one (e.g. +01:00)"
            )
        return parsed.astimezone(UTC)
    raise DecodeError("invalid_timestamp", f"{field} is {type(value).__name__}, not a time")


# --- Topics ---------------------------------------------------------------------------------

EVENT_CHANNEL = "event"
STATUS_CHANNEL = "status"
_CHANNELS = frozenset({EVENT_CHANNEL, STATUS_CHANNEL})

# The device id rule from docs/payloads.md, the same as core.events.DeviceId.
DEVICE_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def address_for(topic: str, family: Family) -> TopicAddress:
    """Parse a wgw topic and check that it is this family's event or status topic."""
    address = parse_topic(topic)
    if address.family != family.value:
        raise DecodeError("bad_topic", f"topic {topic!r} is not a {family.value} topic (misrouted)")
    if address.channel not in _CHANNELS:
        raise DecodeError("bad_topic", f"topic {topic!r} ends in neither /event nor /status")
    if DEVICE_ID_RE.fullmatch(address.device_id) is None:
        raise DecodeError(
            "bad_topic",
            f"topic device id {_short(address.device_id)} is not 1–64 of A–Z a–z 0–9 . _ : -",
        )
    return address


def check_device_id(claimed: str | None, device_id: str, field: str = "device_id") -> None:
    """Refuse a payload whose own device id differs from the one the topic names."""
    if claimed is not None and claimed != device_id:
        raise DecodeError(
            "device_mismatch", f"{field}={_short(claimed)} but the topic names {device_id!r}"
        )


# --- Payload validation ---------------------------------------------------------------------

Level = Literal["notice", "alarm"]
Battery = Annotated[int, Field(ge=0, le=100)]  # percent
ShortText = Annotated[str, Field(min_length=1, max_length=128)]  # ids and actors, as in Event
AttributeScalar = str | int | float | bool  # no null: docs/payloads.md

# Bounds on free-form attributes, so one payload cannot bloat every row and index.
MAX_ATTRIBUTES = 32
MAX_ATTRIBUTE_TEXT = 1024
ATTRIBUTE_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class EventPayload(BaseModel):
    """The JSON event form every family shares (docs/payloads.md); other fields are attributes."""

    # strict: a battery of "80" or 80.0, or an actor of 42, is a device bug to be seen, not fixed.
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)
    __pydantic_extra__: dict[str, AttributeScalar] = Field(init=False)

    id: ShortText | None = None
    kind: str | None = None
    ts: Any  # required; parse_timestamp gives the finer reasons (naive, out of range)
    device_id: str | None = None
    actor: ShortText | None = None
    level: Level | None = None
    battery: Battery | None = None


# What a wrong value of each known field should have been; anything else is an attribute.
_FIELD_HINTS: Mapping[str, str] = {
    "id": "must be a string of 1–128 characters",
    "kind": "must be a string",
    "event": "must be a string",
    "device_id": "must be a string",
    "actor": "must be a string of 1–128 characters",
    "level": "must be 'notice' or 'alarm'",
    "battery": "must be an integer percentage 0–100",
    "state": "must be 'online' or 'offline'",
}
_ATTRIBUTE_HINT = "must be a string, number or boolean"


def _short(value: object, limit: int = 60) -> str:
    # Never repr a container: its repr recurses and may be as large as the payload.
    if isinstance(value, dict | list | tuple):
        return f"{type(value).__name__} of {len(value)} items"
    if isinstance(value, str) and len(value) > limit:
        value = value[:limit]
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# Fields whose explicit null has a reason of its own: null is not a string ("id": null
# would otherwise silently get a derived id, "device_id": null skip the topic check).
_NULL_REASONS: Mapping[str, str] = {"id": "null_id", "device_id": "null_device_id"}
_KNOWN_FIELDS = frozenset({"kind", "event", "ts", "actor", "level", "battery", "state"})


def check_no_nulls(data: Mapping[str, Any]) -> None:
    """Refuse an explicit JSON null anywhere at the top of an event or status object.

    An absent optional field means "not sent"; null is not one of the documented
    types, so it is refused: null_id, null_device_id, null_field (another known
    field) or null_attribute.
    """
    for name, value in data.items():
        if value is None:
            reason = _NULL_REASONS.get(name)
            if reason is not None:
                raise DecodeError(reason, f"field {name!r} is null; send a string or leave it out")
            if name in _KNOWN_FIELDS:
                raise DecodeError("null_field", f"field {name!r} is null")
            raise DecodeError(
                "null_attribute",
                f"attribute {_short(name)} is null; attributes are strings, numbers or booleans",
            )


def _describe(error: ErrorDetails) -> str:
    name = str(error["loc"][0]) if error["loc"] else "payload"
    if error["type"] == "missing":
        return f"required field {name!r} is missing"
    hint = _FIELD_HINTS.get(name, _ATTRIBUTE_HINT)
    return f"field {name!r} {hint} (got {_short(error.get('input'))})"


M = TypeVar("M", bound=BaseModel)


def validate_payload(model: type[M], data: Mapping[str, Any]) -> M:
    """Validate a parsed JSON object against a payload model; errors become invalid_event."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        # A union (attribute values) reports one error per member: count fields, not errors.
        fields = {error["loc"][:1] for error in errors}
        more = f" (and {len(fields) - 1} more fields)" if len(fields) > 1 else ""
        raise DecodeError("invalid_event", _describe(errors[0]) + more) from exc


def check_attributes(attributes: Mapping[str, AttributeValue]) -> None:
    """Refuse too many attributes, odd attribute names and over-long attribute text."""
    if len(attributes) > MAX_ATTRIBUTES:
        raise DecodeError(
            "invalid_event", f"{len(attributes)} attributes; at most {MAX_ATTRIBUTES} are accepted"
        )
    for name, value in attributes.items():
        if ATTRIBUTE_NAME_RE.fullmatch(name) is None:
            raise DecodeError(
                "invalid_event",
                f"attribute name {_short(name)} is not 1–64 of A–Z a–z 0–9 _ . -",
            )
        if isinstance(value, str) and len(value) > MAX_ATTRIBUTE_TEXT:
            raise DecodeError(
                "invalid_event",
                f"attribute {name!r} is {len(value)} characters; at most {MAX_ATTRIBUTE_TEXT}",
            )


# --- Kinds and events -----------------------------------------------------------------------

_ALLOWED_KINDS: Mapping[Family, frozenset[str]] = {
    family: DEVICE_KINDS | kinds for family, kinds in FAMILY_KINDS.items()
}
_KIND_FAMILY: Mapping[str, Family] = {
    kind: family for family, kinds in FAMILY_KINDS.items() for kind in kinds
}


def resolve_kind(kind: str, family: Family) -> str:
    """Check a kind against the family's vocabulary: unknown_kind or wrong_family_kind if not."""
    if kind in _ALLOWED_KINDS[family]:
        return kind
    owner = _KIND_FAMILY.get(kind)
    if owner is not None:
        raise DecodeError(
            "wrong_family_kind",
            f"kind {kind!r} belongs to the {owner.value} family, not to {family.value}",
        )
    raise DecodeError(
        "unknown_kind", f"kind {_short(kind)} is not in the {family.value} vocabulary"
    )


def build_event(
    *,
    event_id: str | None,
    device_id: str,
    family: Family,
    kind: str,
    occurred_at: datetime,
    received_at: datetime,
    actor: str | None = None,
    attributes: dict[str, AttributeValue],
    device_time: bool = True,
) -> Event:
    """Construct the Event once, deriving a stable id when the device sent none."""
    if event_id is None:
        # sort_keys inside stable_event_id orders the attributes, so field order never matters.
        event_id = stable_event_id(device_id, kind, occurred_at, extra=[actor, attributes])
    try:
        return Event(
            event_id=event_id,
            device_id=device_id,
            family=family,
            kind=kind,
            occurred_at=occurred_at,
            received_at=received_at,
            actor=actor,
            attributes=attributes,
            device_time=device_time,
        )
    except ValidationError as exc:
        # Adapters check everything first; this is the envelope's last line of defence.
        raise DecodeError("invalid_event", f"event does not validate: {exc}") from exc


@dataclass(frozen=True, slots=True)
class JsonForm:
    """How one family reads the JSON event form: name aliases, required actors, default level."""

    family: Family
    # Vendor names accepted in the "event" field instead of "kind" (e.g. Roommate's left_bed).
    aliases: Mapping[str, str] = field(default_factory=dict)
    # Kinds refused without an actor (reason missing_actor).
    actor_required: frozenset[str] = frozenset()
    # The level attribute a kind gets when the payload carries none.
    default_level: Mapping[str, Level] = field(default_factory=dict)


def event_from_json(
    form: JsonForm, data: Mapping[str, Any], *, device_id: str, received_at: datetime
) -> Event:
    """Turn one parsed JSON event object into an Event, or raise DecodeError naming the field."""
    check_no_nulls(data)
    payload = validate_payload(EventPayload, data)
    check_device_id(payload.device_id, device_id)
    extra = payload.model_extra
    attributes: dict[str, AttributeValue] = dict(extra) if extra else {}
    kind = payload.kind
    if form.aliases and "event" in attributes:
        name = attributes.pop("event")
        if not isinstance(name, str):
            raise DecodeError(
                "invalid_event", f"field 'event' must be a string (got {_short(name)})"
            )
        aliased = form.aliases.get(name)
        if aliased is None:
            raise DecodeError(
                "unknown_kind", f"event {_short(name)} is not a known {form.family.value} event"
            )
        if kind is not None and kind != aliased:
            raise DecodeError(
                "invalid_event",
                f"kind {_short(kind)} and event {_short(name)} name different events",
            )
        kind = aliased
    if kind is None:
        raise DecodeError("invalid_event", "required field 'kind' is missing")
    kind = resolve_kind(kind, form.family)
    occurred_at = parse_timestamp(payload.ts)
    check_attributes(attributes)
    if payload.level is not None:
        attributes["level"] = payload.level
    elif (level := form.default_level.get(kind)) is not None:
        attributes["level"] = level
    if payload.battery is not None:
        attributes["battery"] = payload.battery
    if payload.actor is None and kind in form.actor_required:
        raise DecodeError("missing_actor", f"{kind} needs an actor (the key or staff id)")
    return build_event(
        event_id=payload.id,
        device_id=device_id,
        family=form.family,
        kind=kind,
        occurred_at=occurred_at,
        received_at=received_at,
        actor=payload.actor,
        attributes=attributes,
    )
