"""The tamper-evident access log: a hash chain per organisation, and its retention floor."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, NamedTuple

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from core.errors import ConfigError
from core.ids import OrgId
from core.rows import StoredRow

logger = logging.getLogger(__name__)

# HSLF-FS 2016:40 requires access logs on patient data to be kept at least
# five years (DOMAIN.md section 5); the medicine and supervision data the log
# covers fall under it, so the default never goes below.
ACCESS_LOG_RETENTION_YEARS = 5

GENESIS_HASH = "0" * 64

Hash = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
# Floats are left out on purpose: their text form differs between languages,
# and the canonical bytes must be reproducible outside Python.
DetailValue = str | int | bool | None | list[str]


class Action(StrEnum):
    """What was done, in the terms of the lock logs and of HSLF-FS 2016:40."""

    UNLOCK = "unlock"
    LOCK = "lock"
    DOOR_OPENED = "door_opened"
    DOOR_CLOSED = "door_closed"
    CABINET_OPENED = "cabinet_opened"  # medicine cabinet
    CABINET_CLOSED = "cabinet_closed"
    READ = "read"  # a person's data opened in the console or the API
    ACKNOWLEDGE = "acknowledge"  # kvittera
    RESOLVE = "resolve"  # åtgärdat
    CHANGE = "change"  # another console change to a person's alert: på väg, på plats, a comment
    REMOTE_VIEW = "remote_view"  # allowed or refused; the detail says which
    EXPORT = "export"  # an extract or CSV export left the system
    # A failed login, a lockout or a refused (403) request: the detail says which,
    # the account and the client address (never a password).
    SECURITY = "security"


# Lock and cabinet events that are access: with an actor they are logged.
_EVENT_ACTIONS: dict[str, Action] = {
    "lock.unlocked": Action.UNLOCK,
    "lock.locked": Action.LOCK,
    "lock.door_opened": Action.DOOR_OPENED,
    "lock.door_closed": Action.DOOR_CLOSED,
    "dispenser.cabinet_opened": Action.CABINET_OPENED,
    "dispenser.cabinet_closed": Action.CABINET_CLOSED,
}


def is_access_event(row: StoredRow) -> bool:
    """Tell whether a stored event is a door or cabinet access that the log must hold."""
    return row.event.actor is not None and row.event.kind in _EVENT_ACTIONS


def event_action(kind: str) -> Action:
    """The access-log action of an access event's kind."""
    return _EVENT_ACTIONS[kind]


class AccessEntry(BaseModel):
    """One access-log entry; ``hash`` chains it to the previous entry of its organisation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    org: OrgId
    seq: Annotated[int, Field(ge=1)]  # 1, 2, 3… per organisation, no gaps
    at: AwareDatetime  # when it happened (device time for locks, which may sync late)
    actor: Annotated[str, Field(min_length=1, max_length=128)]  # staff id, key id or user
    action: Action
    # What was touched: the lock, cabinet or sensor's device id, or for an
    # export its scope.
    subject: Annotated[str, Field(min_length=1, max_length=128)]
    person: Annotated[str, Field(max_length=200)] | None = None  # pseudonym or unit, never a name
    detail: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")], DetailValue] = Field(
        default_factory=dict
    )
    prev_hash: Hash
    hash: Hash


class EntryDraft(NamedTuple):
    """An access-log entry before it is numbered and chained."""

    org: str
    at: datetime
    actor: str
    action: Action
    subject: str
    person: str | None
    detail: dict[str, DetailValue]


def _utc_text(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_bytes(entry: AccessEntry) -> bytes:
    """The bytes an entry's hash covers: canonical JSON of every field but ``hash``."""
    # The form, so that a verifier in another language (or SQL) can rebuild it:
    # a JSON object of org, seq, at, actor, action, subject, person, detail
    # and prev_hash; keys sorted (detail's too), no whitespace, separators
    # "," and ":", UTF-8 without \u escapes except control characters; absent
    # optional fields as null; ``at`` in UTC as YYYY-MM-DDTHH:MM:SS.ffffffZ
    # (always six fractional digits, PostgreSQL's timestamptz precision).
    fields = entry.model_dump(mode="json", exclude={"hash"})
    fields["at"] = _utc_text(entry.at)
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(prev_hash: str, canonical: bytes) -> str:
    """SHA-256 over the previous hash (64 hex characters) followed by the canonical bytes."""
    return hashlib.sha256(prev_hash.encode("ascii") + canonical).hexdigest()


def append(
    prev: AccessEntry | None,
    *,
    org: str,
    at: datetime,
    actor: str,
    action: Action,
    subject: str,
    person: str | None = None,
    detail: dict[str, DetailValue] | None = None,
) -> AccessEntry:
    """Build the entry that follows ``prev`` (None: the first of ``org``'s chain)."""
    if prev is not None and prev.org != org:
        raise ValueError(f"cannot chain an entry of {org!r} after one of {prev.org!r}")
    unsealed = AccessEntry(
        org=org,
        seq=1 if prev is None else prev.seq + 1,
        at=at,
        actor=actor,
        action=action,
        subject=subject,
        person=person,
        detail=detail or {},
        prev_hash=GENESIS_HASH if prev is None else prev.hash,
        hash=GENESIS_HASH,  # placeholder: the hash does not cover itself
    )
    return unsealed.model_copy(
        update={"hash": chain_hash(unsealed.prev_hash, canonical_bytes(unsealed))}
    )


@dataclass(frozen=True, slots=True)
class BrokenEntry:
    """The first entry of one organisation's chain that does not verify, and why."""

    org: str
    seq: int
    why: str


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome of walking the chains: entries checked and the first break of each org."""

    checked: int
    broken: tuple[BrokenEntry, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether every chain is intact."""
        return not self.broken

    @property
    def first_broken(self) -> BrokenEntry | None:
        """The earliest break in walk order, if any."""
        return self.broken[0] if self.broken else None


def _why_broken(entry: AccessEntry, expected_seq: int, expected_prev: str) -> str | None:
    if chain_hash(entry.prev_hash, canonical_bytes(entry)) != entry.hash:
        return "contents do not match the entry's hash (a field was changed)"
    if entry.seq > expected_seq:
        return f"expected seq {expected_seq}: an entry before this one is missing or moved"
    if entry.seq < expected_seq:
        return f"expected seq {expected_seq}: this entry is repeated, moved or inserted"
    if entry.prev_hash != expected_prev:
        return "prev_hash does not match the previous entry (removed, reordered or inserted)"
    return None


class ChainVerifier:
    """Walk entries one at a time (so an async reader can stream them) and collect the breaks."""

    # Each organisation's chain is judged on its own: a break in one does not
    # hide or cause a break in another. After its first break an organisation
    # is not judged further, since every later entry would fail with it.
    # The chain alone cannot show that its newest entries were cut off; that
    # needs the last hash kept somewhere else.

    def __init__(self) -> None:
        self._expected: dict[str, tuple[int, str]] = {}
        self._broken: dict[str, BrokenEntry] = {}
        self._checked = 0

    def feed(self, entry: AccessEntry) -> None:
        """Check the next entry in stored order."""
        if entry.org in self._broken:
            return
        self._checked += 1
        seq, prev = self._expected.get(entry.org, (1, GENESIS_HASH))
        why = _why_broken(entry, seq, prev)
        if why is None:
            self._expected[entry.org] = (entry.seq + 1, entry.hash)
        else:
            self._broken[entry.org] = BrokenEntry(entry.org, entry.seq, why)

    def result(self) -> VerifyResult:
        """What the entries fed so far show."""
        return VerifyResult(checked=self._checked, broken=tuple(self._broken.values()))


def verify_chain(entries: Iterable[AccessEntry]) -> VerifyResult:
    """Walk entries in stored order and name the first broken entry of each organisation."""
    verifier = ChainVerifier()
    for entry in entries:
        verifier.feed(entry)
    return verifier.result()


def check_retention_years(years: int, *, force: bool = False) -> int:
    """Return a configured access-log retention, refusing less than five years unless forced."""
    if years < 1:
        raise ConfigError(f"access log retention must be at least 1 year, got {years}")
    if years < ACCESS_LOG_RETENTION_YEARS:
        if not force:
            raise ConfigError(
                f"access log retention of {years} years is below the "
                f"{ACCESS_LOG_RETENTION_YEARS} years HSLF-FS 2016:40 requires; "
                "refused unless explicitly forced"
            )
        logger.warning(
            "access log retention forced to %d years, below the legal %d",
            years,
            ACCESS_LOG_RETENTION_YEARS,
        )
    return years
