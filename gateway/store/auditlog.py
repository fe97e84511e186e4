"""The access log in PostgreSQL: append hash-chained entries in the writer's transaction, verify."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg

from rules.access import AccessDecision, AccessDirectory, remote_view_entry
from rules.auditlog import (
    GENESIS_HASH,
    AccessEntry,
    Action,
    BrokenEntry,
    ChainVerifier,
    EntryDraft,
    VerifyResult,
    append,
    event_action,
)

if TYPE_CHECKING:
    from core.rows import StoredRow

_COLUMNS = "org, seq, at, actor, action, subject, person, detail, prev_hash, hash"
_INSERT = f"INSERT INTO access_log ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"


def _entry(row: tuple[Any, ...]) -> AccessEntry:
    org, seq, at, actor, action, subject, person, detail, prev_hash, hash_ = row
    return AccessEntry(
        org=org,
        seq=seq,
        at=at,
        actor=actor,
        action=Action(action),
        subject=subject,
        person=person,
        detail=detail,
        prev_hash=prev_hash,
        hash=hash_,
    )


def _params(e: AccessEntry) -> tuple[object, ...]:
    return (
        e.org, e.seq, e.at, e.actor, e.action.value, e.subject, e.person,
        json.dumps(e.detail), e.prev_hash, e.hash,
    )  # fmt: skip


async def append_drafts(cur: psycopg.AsyncCursor[Any], drafts: Sequence[EntryDraft]) -> int:
    """Number, chain and insert entries per organisation, in the caller's transaction."""
    by_org: dict[str, list[EntryDraft]] = {}
    for draft in drafts:
        by_org.setdefault(draft.org, []).append(draft)
    entries: list[AccessEntry] = []
    # A fixed order of organisations: two gateways never wait on each other in a cycle.
    for org in sorted(by_org):
        prev = await _lock_head(cur, org)
        for d in by_org[org]:
            prev = append(
                prev, org=org, at=d.at, actor=d.actor, action=d.action, subject=d.subject,
                person=d.person, detail=d.detail,
            )  # fmt: skip
            entries.append(prev)
        assert prev is not None  # by_org holds no empty lists
        await cur.execute(
            "UPDATE access_log_heads SET seq = %s, hash = %s WHERE org = %s",
            (prev.seq, prev.hash, org),
        )
    await cur.executemany(_INSERT, [_params(e) for e in entries])
    return len(entries)


async def _units(cur: psycopg.AsyncCursor[Any], device_ids: set[str]) -> dict[str, str]:
    await cur.execute(
        "SELECT device_id, unit FROM devices WHERE device_id = ANY(%s)", (sorted(device_ids),)
    )
    return {d: u for d, u in await cur.fetchall() if u}


async def append_events(cur: psycopg.AsyncCursor[Any], rows: Sequence[StoredRow]) -> int:
    """Append one entry per access event, in the caller's transaction."""
    units = await _units(cur, {r.event.device_id for r in rows})
    drafts = []
    for row in rows:
        e = row.event
        assert e.actor is not None
        drafts.append(
            EntryDraft(
                row.org, e.occurred_at, e.actor, event_action(e.kind), e.device_id,
                units.get(e.device_id), {"event_id": e.event_id, "kind": e.kind},
            )
        )  # fmt: skip
    return await append_drafts(cur, drafts)


async def record_remote_view(
    dsn: str,
    directory: AccessDirectory,
    *,
    org: str,
    device_id: str,
    staff_id: str,
    at: datetime,
) -> AccessDecision:
    """Judge a remote-supervision view and log it, allowed or refused, before it happens."""
    async with await psycopg.AsyncConnection.connect(dsn) as conn, conn.cursor() as cur:
        units = await _units(cur, {device_id})
        decision, draft = remote_view_entry(
            directory, org=org, device_id=device_id, staff_id=staff_id, at=at,
            person=units.get(device_id),
        )  # fmt: skip
        await append_drafts(cur, [draft])
    return decision


async def _lock_head(cur: psycopg.AsyncCursor[Any], org: str) -> AccessEntry | None:
    await cur.execute(
        "INSERT INTO access_log_heads (org, seq, hash) VALUES (%s, 0, %s) ON CONFLICT DO NOTHING",
        (org, GENESIS_HASH),
    )
    await cur.execute("SELECT seq FROM access_log_heads WHERE org = %s FOR UPDATE", (org,))
    head = await cur.fetchone()
    assert head is not None
    if head[0] == 0:
        return None
    await cur.execute(
        f"SELECT {_COLUMNS} FROM access_log WHERE org = %s AND seq = %s", (org, head[0])
    )
    last = await cur.fetchone()
    if last is None:
        raise psycopg.DataError(
            f"access log of {org!r} has lost its newest entry {head[0]}; run `wgw audit verify`"
        )
    return _entry(last)


@dataclass(frozen=True)
class ChainReport:
    """What `wgw audit verify` found."""

    result: VerifyResult
    heads_checked: int

    @property
    def ok(self) -> bool:
        """Whether every organisation's chain is intact up to its recorded head."""
        return self.result.ok


# Both verifiers walk the same rows: every chain in order, then its recorded head.
_HEADS = (
    "SELECT org, seq FROM access_log_heads WHERE %(orgs)s::text[] IS NULL OR org = ANY(%(orgs)s)"
)
_WALK = (
    f"SELECT {_COLUMNS} FROM access_log"
    " WHERE %(orgs)s::text[] IS NULL OR org = ANY(%(orgs)s) ORDER BY org, seq"
)
# Rows fetched per round trip while walking; the walk never holds the whole log.
_WALK_CHUNK = 2000


class _Walk:
    """One verification in progress: the chain check plus where each chain ended."""

    def __init__(self) -> None:
        self.verifier = ChainVerifier()
        self.last_seen: dict[str, int] = {}

    def feed(self, row: tuple[Any, ...]) -> None:
        entry = _entry(row)
        self.last_seen[entry.org] = entry.seq
        self.verifier.feed(entry)

    def report(self, heads: dict[str, int]) -> ChainReport:
        result = self.verifier.result()
        broken = {b.org: b for b in result.broken}
        for name, head_seq in sorted(heads.items()):
            end = self.last_seen.get(name, 0)
            if name not in broken and head_seq > end:
                broken[name] = BrokenEntry(
                    name,
                    end + 1,
                    f"entries {end + 1}..{head_seq} are missing (the chain ends early)",
                )
        return ChainReport(
            VerifyResult(result.checked, tuple(broken[k] for k in sorted(broken))), len(heads)
        )


def verify(dsn: str, *, org: str | None = None) -> ChainReport:
    """Walk the access log (streamed, in order) and compare each chain's end with its head."""
    params = {"orgs": None if org is None else [org]}
    walk = _Walk()
    with psycopg.connect(dsn) as conn:
        heads: dict[str, int] = dict(conn.execute(_HEADS, params).fetchall())
        with conn.cursor(name="access_log_walk") as cur:
            cur.itersize = _WALK_CHUNK
            cur.execute(_WALK, params)
            for row in cur:
                walk.feed(row)
    return walk.report(heads)


async def verify_chains(
    conn: psycopg.AsyncConnection[Any], *, orgs: Sequence[str] | None = None
) -> ChainReport:
    """Like ``verify``, on a pooled connection, for the organisations given (None: all)."""
    params = {"orgs": None if orgs is None else list(orgs)}
    walk = _Walk()
    cur = await conn.execute(_HEADS, params)
    heads: dict[str, int] = dict(await cur.fetchall())
    async with conn.cursor(name="access_log_walk") as named:
        named.itersize = _WALK_CHUNK
        await named.execute(_WALK, params)
        async for row in named:
            walk.feed(row)
    return walk.report(heads)


@dataclass(frozen=True)
class AccessQuery:
    """Filters for an audit query; None means any."""

    org: str | None = None
    subject: str | None = None  # door, cabinet or sensor device id
    actor: str | None = None  # key or staff
    person: str | None = None  # unit pseudonym
    since: datetime | None = None
    until: datetime | None = None
    orgs: tuple[str, ...] | None = None  # the caller's scope, on top of ``org``
    actions: tuple[Action, ...] | None = None  # e.g. only the openings


def _select(q: AccessQuery, limit: int | None) -> tuple[bytes, list[object]]:
    """The SQL and parameters of an audit query, shared by the CLI and the API."""
    clauses = []
    params: list[object] = []
    for column, value in (
        ("org", q.org), ("subject", q.subject), ("actor", q.actor), ("person", q.person),
    ):  # fmt: skip
        if value is not None:
            clauses.append(f"{column} = %s")
            params.append(value)
    if q.orgs is not None:
        clauses.append("org = ANY(%s)")
        params.append(list(q.orgs))
    if q.actions is not None:
        clauses.append("action = ANY(%s)")
        params.append([a.value for a in q.actions])
    if q.since is not None:
        clauses.append("at >= %s")
        params.append(q.since)
    if q.until is not None:
        clauses.append("at < %s")
        params.append(q.until)
    where = " AND ".join(clauses) or "true"
    sql = f"SELECT {_COLUMNS} FROM access_log WHERE {where} ORDER BY at, org, seq"
    if limit is not None:
        sql += " LIMIT %s"
        params.append(limit)
    return sql.encode(), params


def query(dsn: str, q: AccessQuery) -> list[AccessEntry]:
    """Access-log entries matching the filters, oldest first."""
    sql, params = _select(q, None)
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(sql, params).fetchall()
    return [_entry(r) for r in rows]


async def query_entries(
    conn: psycopg.AsyncConnection[Any], *, q: AccessQuery, limit: int | None = None
) -> list[AccessEntry]:
    """Like ``query``, on a pooled connection: at most ``limit`` entries, oldest first."""
    sql, params = _select(q, limit)
    cur = await conn.execute(sql, params)
    return [_entry(r) for r in await cur.fetchall()]
