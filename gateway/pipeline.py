"""Turns raw broker messages into stored rows or dead letters: route, decode, check, time."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from adapters import spec_for_topic
from core.errors import DecodeError
from core.events import Event, RawMessage
from core.rows import DeadLetter, StoredRow
from gateway.config import IngestSettings
from gateway.metrics import IngestMetrics
from rules.model import DeviceInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one message: rows to store, or one dead letter, or neither (ignored)."""

    rows: tuple[StoredRow, ...] = ()
    dead_letter: DeadLetter | None = None


_IGNORED = Outcome()


class _Refused(Exception):
    """An event failed a gateway-side check; carries the dead-letter reason."""

    def __init__(self, reason: str, detail: str, device_id: str | None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.device_id = device_id


class Pipeline:
    """Pure per-message logic: no I/O and no clock of its own (time is the message's receipt)."""

    def __init__(
        self,
        *,
        registry: Mapping[str, DeviceInfo],
        settings: IngestSettings,
        metrics: IngestMetrics | None = None,
    ) -> None:
        self._registry = registry
        self._future = timedelta(seconds=settings.max_future_skew_s)
        self._max_age = timedelta(days=settings.max_age_days)
        self.metrics = metrics or IngestMetrics()

    def set_registry(self, registry: Mapping[str, DeviceInfo]) -> None:
        """Swap in a refreshed registry (a new mapping, never mutated in place)."""
        self._registry = registry

    def process(self, raw: RawMessage) -> Outcome:
        """Route, decode and check one message."""
        self.metrics.messages += 1
        parts = raw.topic.split("/", 3)
        org = parts[1] if len(parts) > 1 and parts[1] else None
        if len(parts) > 2 and parts[0] == "wgw" and parts[2] == "alerts":
            # Alerts are the gateway's own output on the same tree, not device traffic.
            self.metrics.ignored += 1
            return _IGNORED
        spec = spec_for_topic(raw.topic)
        try:
            if spec is None:
                raise DecodeError("bad_topic", f"no adapter handles topic {raw.topic!r}")
            events = spec.decode(raw)
            rows = tuple(StoredRow(self._check(event, org, raw), org or "") for event in events)
        except DecodeError as exc:
            return self._dead(raw, exc.reason, str(exc), org, None)
        except _Refused as exc:
            return self._dead(raw, exc.reason, exc.detail, org, exc.device_id)
        except Exception as exc:
            # A decoder bug must cost one message (kept, with its bytes), not the gateway.
            log.exception("decoder failed on a message on %s", raw.topic)
            return self._dead(raw, "decoder_error", f"{type(exc).__name__}: {exc}", org, None)
        if not rows:
            # An empty retained status (clearing it) or an empty batch: nothing happened.
            self.metrics.ignored += 1
            return _IGNORED
        for row in rows:
            self.metrics.events_in[row.event.family.value] += 1
        return Outcome(rows=rows)

    def _check(self, event: Event, org: str | None, raw: RawMessage) -> Event:
        known = self._registry.get(event.device_id)
        if known is None:
            raise _Refused(
                "unknown_device",
                f"device {event.device_id!r} is not registered; add it with 'wgw devices import'",
                event.device_id,
            )
        if known.org != org:
            raise _Refused(
                "wrong_org",
                f"device {event.device_id!r} belongs to {known.org!r}, "
                f"not to topic organisation {org!r}",
                event.device_id,
            )
        if known.family is not event.family:
            raise _Refused(
                "wrong_family",
                f"device {event.device_id!r} is registered as {known.family.value}, "
                f"not {event.family.value}",
                event.device_id,
            )
        # Device time is judged against the gateway clock at receipt, read once
        # per message by the source (not again per event).
        now = raw.received_at
        if event.occurred_at > now + self._future:
            raise _Refused(
                "clock_skew",
                f"device time {event.occurred_at.isoformat()} is "
                f"{(event.occurred_at - now).total_seconds():.0f} s ahead of the gateway clock; "
                "check the device's time source",
                event.device_id,
            )
        if event.occurred_at < now - self._max_age:
            raise _Refused(
                "too_old",
                f"device time {event.occurred_at.isoformat()} is older than "
                f"{self._max_age.days} days",
                event.device_id,
            )
        # The adapters refuse these in the payload; this is the last check before storage,
        # so that PostgreSQL never refuses a batch for text it cannot hold.
        bad = _unstorable_text(event)
        if bad is not None:
            raise _Refused(bad, f"a text field holds {_WHAT[bad]}", event.device_id)
        return event

    def _dead(
        self, raw: RawMessage, reason: str, detail: str, org: str | None, device_id: str | None
    ) -> Outcome:
        # Counted as decided; IngestMetrics.dead_letters counts what storage committed.
        self.metrics.dead_letters_decoded[reason] += 1
        log.debug("dead letter on %s: %s (%s)", raw.topic, reason, detail)
        return Outcome(
            dead_letter=DeadLetter(
                received_at=raw.received_at,
                topic=raw.topic,
                payload=raw.payload,
                reason=reason,
                detail=detail,
                org=org,
                device_id=device_id,
            )
        )


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_WHAT = {"nul_character": "a NUL character", "lone_surrogate": "a lone surrogate"}


def _unstorable_text(event: Event) -> str | None:
    """The reason a text of the event cannot be stored (NUL, lone surrogate), or None."""
    search = _UNSTORABLE.search
    texts = [event.event_id, event.actor or ""]
    for key, value in event.attributes.items():
        texts.append(key)
        if isinstance(value, str):
            texts.append(value)
    for text in texts:
        found = search(text)
        if found is not None:
            return "nul_character" if found.group() == "\x00" else "lone_surrogate"
    return None
