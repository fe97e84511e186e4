"""The access log for auditors: search openings, the per-person extract, CSV, chain status."""

from __future__ import annotations

import io
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel

from gateway.api.context import ApiContext
from gateway.api.deps import (
    GATEWAY_ORG,
    Connection,
    Context,
    Format,
    LogReader,
    OrgFilter,
    check_org,
    csv_download,
    log_access,
)
from gateway.audit_cli import refused_openings, write_entries
from gateway.store.access import load_directory
from gateway.store.auditlog import AccessQuery, query_entries, verify_chains
from gateway.store.users import User
from rules.access import REASON_LABELS, Reason
from rules.auditlog import AccessEntry, Action, DetailValue

router = APIRouter(prefix="/api/audit", tags=["audit"])

# Bounds that keep one request's memory and time small; the CLI
# (`wgw audit query --format csv`) has none, for the rare very large export.
LIST_MAX = 5000  # entries one JSON page may hold
EXPORT_MAX = 50_000  # entries one CSV download or extract may hold
SCAN_MAX = 50_000  # openings an outside-plan search may judge

# What a lock or cabinet log calls an opening; only these are judged against the directory.
OPENINGS = (Action.UNLOCK, Action.DOOR_OPENED, Action.CABINET_OPENED)

# Ids and units as the log holds them; PostgreSQL text cannot hold a NUL.
Filter = Annotated[str | None, Query(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]


class AuditEntryPublic(BaseModel):
    """One access-log entry; an opening the access directory does not allow carries why."""

    at: datetime
    org: str
    seq: int
    actor: str  # key or staff id, or a console user
    action: Action
    subject: str  # door, cabinet or sensor device id; "access_log" for reads of the log
    person: str | None  # the unit (pseudonym), never a name
    detail: dict[str, DetailValue]
    refused: list[Reason] = []  # empty: allowed, or not an opening
    refused_labels: list[str] = []  # the same reasons in Swedish, as the audit view shows them


class AuditPage(BaseModel):
    """The entries of a search, oldest first."""

    entries: list[AuditEntryPublic]
    count: int
    truncated: bool  # more entries matched than ``limit``: narrow the search
    limit: int
    judged: bool  # openings were checked against the access directory
    message: str = ""


class PersonExtract(BaseModel):
    """Every access-log entry about one person: who did what to their data, and when."""

    person: str
    entries: list[AuditEntryPublic]
    count: int


class BrokenPublic(BaseModel):
    """The first entry of one organisation's chain that does not verify."""

    org: str
    seq: int
    why: str


class ChainStatus(BaseModel):
    """Whether the hash chains of the access log are intact."""

    ok: bool
    checked: int  # entries walked
    chains: int  # organisations with a recorded head
    broken: list[BrokenPublic]


_CSV: dict[int | str, dict[str, object]] = {
    200: {"content": {"text/csv": {}}, "description": "the entries, or CSV with format=csv"}
}
_ERRORS: dict[int | str, dict[str, object]] = {403: {}, 409: {}, 422: {}, 503: {}}


def _public(entry: AccessEntry, verdicts: dict[tuple[str, int], str]) -> AuditEntryPublic:
    refused = verdicts.get((entry.org, entry.seq), "")
    reasons = [Reason(code) for code in refused.split("; ")] if refused else []
    return AuditEntryPublic(
        at=entry.at,
        org=entry.org,
        seq=entry.seq,
        actor=entry.actor,
        action=entry.action,
        subject=entry.subject,
        person=entry.person,
        detail=entry.detail,
        refused=reasons,
        refused_labels=[REASON_LABELS[r] for r in reasons],
    )


def _too_many(limit: int, what: str) -> HTTPException:
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        f"more than {limit} {what} match: narrow the time range, door, key or person "
        "(for larger exports use `wgw audit query --format csv`)",
    )


def _csv(
    entries: list[AccessEntry], verdicts: dict[tuple[str, int], str] | None, name: str
) -> Response:
    out = io.StringIO()
    # The CLI's writer, so `wgw audit query --outside-plan --format csv` and
    # this download have the same columns.
    write_entries(entries, "csv", out, verdicts)
    return csv_download(out.getvalue(), name)


def _filename(stem: str, now: datetime) -> str:
    return f"{stem}-{now.strftime('%Y%m%dT%H%M%SZ')}"


def _log_read(
    ctx: ApiContext,
    user: User,
    *,
    org: str | None,
    entries: list[AccessEntry],
    action: Action,
    person: str | None,
    detail: dict[str, DetailValue],
) -> None:
    """Write the read itself to the log of every organisation whose entries it touched."""
    # The log is chained per organisation: each one whose entries were shown
    # (or that was asked for by name) records the read. A search over every
    # organisation that found nothing showed no one's data and has no chain to go in.
    orgs = {e.org for e in entries}
    if org is not None:
        orgs.add(org)
    elif not orgs and (scope := user.scope()) is not None:
        orgs.update(scope)
    for name in sorted(orgs):
        rows = sum(1 for e in entries if e.org == name)
        log_access(ctx, user, org=name, action=action, subject="access_log", person=person,
                   detail={**detail, "rows": rows})  # fmt: skip


def _filters(**values: str | bool | datetime | None) -> dict[str, DetailValue]:
    detail: dict[str, DetailValue] = {}
    for key, value in values.items():
        if isinstance(value, datetime):
            detail[key] = value.isoformat()
        elif value is not None and value is not False:
            detail[key] = value
    return detail


@router.get("/entries", responses={**_CSV, **_ERRORS}, response_model=AuditPage)
async def entries(
    user: LogReader,
    ctx: Context,
    conn: Connection,
    org: OrgFilter = None,
    door: Filter = None,
    key: Filter = None,
    person: Filter = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    outside_plan: bool = False,
    fmt: Format = "json",
    limit: Annotated[int, Query(ge=1, le=LIST_MAX)] = 500,
) -> Response:
    """Search the access log by door, key or staff, person and time; outside_plan keeps refusals."""
    orgs = check_org(user, org)
    # An empty period (since at or after until) is well formed and finds nothing.
    directory = await load_directory(conn)
    if outside_plan and directory is None:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            "no access directory imported yet, so no opening can be judged: "
            "run `wgw access import FILE`",
        )
    q = AccessQuery(
        org=org,
        subject=door,
        actor=key,
        person=person,
        since=since,
        until=until,
        orgs=None if orgs is None else tuple(orgs),
        actions=OPENINGS if outside_plan else None,
    )
    # An outside-plan search judges every opening in range, then keeps the refused.
    cap = SCAN_MAX if outside_plan else (EXPORT_MAX if fmt == "csv" else limit)
    found = await query_entries(conn, q=q, limit=cap + 1)
    truncated = len(found) > cap
    if truncated and (outside_plan or fmt == "csv"):
        raise _too_many(cap, "openings" if outside_plan else "entries")
    found = found[:cap]
    verdicts = {} if directory is None else refused_openings(directory, found)
    if outside_plan:
        found = [e for e in found if (e.org, e.seq) in verdicts]
        if fmt == "json" and len(found) > limit:
            found, truncated = found[:limit], True
    detail = _filters(door=door, key=key, since=since, until=until, outside_plan=outside_plan)
    action = Action.EXPORT if fmt == "csv" else Action.READ
    _log_read(ctx, user, org=org, entries=found, action=action, person=person,
              detail=detail | {"format": fmt})  # fmt: skip
    if fmt == "csv":
        return _csv(found, verdicts, _filename("access-log", ctx.clock.now()))
    page = AuditPage(
        entries=[_public(e, verdicts) for e in found],
        count=len(found),
        truncated=truncated,
        limit=limit,
        judged=directory is not None,
        message=(
            f"showing the first {limit} entries; narrow the search to see the rest"
            if truncated
            else ""
        ),
    )
    return JSONResponse(page.model_dump(mode="json"))


@router.get("/extract", responses={**_CSV, **_ERRORS}, response_model=PersonExtract)
async def extract(
    user: LogReader,
    ctx: Context,
    conn: Connection,
    person: Annotated[str, Query(min_length=1, max_length=200, pattern=r"^[^\x00]+$")],
    org: OrgFilter = None,
    fmt: Format = "json",
) -> Response:
    """The per-person extract (HSLF-FS 2016:40): every entry about one person; logged as export."""
    orgs = check_org(user, org)
    q = AccessQuery(org=org, person=person, orgs=None if orgs is None else tuple(orgs))
    found = await query_entries(conn, q=q, limit=EXPORT_MAX + 1)
    if len(found) > EXPORT_MAX:
        raise _too_many(EXPORT_MAX, "entries")
    _log_read(ctx, user, org=org, entries=found, action=Action.EXPORT, person=person,
              detail={"extract": "person", "format": fmt})  # fmt: skip
    if fmt == "csv":
        return _csv(found, None, _filename(f"extract-{person}", ctx.clock.now()))
    body = PersonExtract(person=person, entries=[_public(e, {}) for e in found], count=len(found))
    return JSONResponse(body.model_dump(mode="json"))


@router.get("/verify", responses={403: {}, 503: {}})
async def verify(
    user: LogReader, ctx: Context, conn: Connection, org: OrgFilter = None
) -> ChainStatus:
    """Walk the hash chains (of one organisation, or all in scope) and name the first break."""
    orgs = check_org(user, org)
    report = await verify_chains(conn, orgs=orgs)
    # Verifying reads every entry of the chains it walks: the read is logged in each.
    for name in orgs or [GATEWAY_ORG]:  # every organisation's: the gateway's own chain
        log_access(ctx, user, org=name, action=Action.READ, subject="access_log",
                   detail={"verify": True, "ok": report.ok})  # fmt: skip
    return ChainStatus(
        ok=report.ok,
        checked=report.result.checked,
        chains=report.heads_checked,
        broken=[BrokenPublic(org=b.org, seq=b.seq, why=b.why) for b in report.result.broken],
    )
