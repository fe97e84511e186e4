"""Dependencies shared by the routes: the context, the session, roles, CSRF and access logging."""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Path, Query, Request, Response, status
from pydantic import ConfigDict

from core.errors import StorageUnavailable
from core.ids import ORG_ID_PATTERN, is_org_id
from gateway import store
from gateway.api.context import ApiContext
from gateway.api.places import DB_RETRY_AFTER_S
from gateway.store.users import Role, Session, User, find_session, token_digest
from rules.auditlog import Action, DetailValue, EntryDraft
from rules.work import AlertWork

SESSION_COOKIE = "wgw_session"
# The access-log chain of security events that belong to no organisation: a
# failed login for an unknown account, or one by an account of every organisation.
GATEWAY_ORG = "_gateway"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_context(request: Request) -> ApiContext:
    """The API context the app was created with."""
    ctx: ApiContext = request.app.state.ctx
    return ctx


Context = Annotated[ApiContext, Depends(get_context)]


async def get_connection(ctx: Context) -> AsyncIterator[store.Connection]:
    """A pooled connection for one request, committed when the route returns."""
    try:
        async with store.connection(ctx.pool, wait_s=5.0) as conn:
            yield conn
    except StorageUnavailable as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the database is unreachable; live alerts still work, try this again shortly",
        ) from exc


# Committed before the response leaves ("function" scope): a client that logs in
# and at once sends its next request must find its session stored.
Connection = Annotated[store.Connection, Depends(get_connection, scope="function")]


async def current_session(request: Request, ctx: Context) -> Session:
    """The caller's session; 401 without one, 403 on a state change without its CSRF token."""
    token = request.cookies.get(SESSION_COOKIE)
    session = await _lookup_session(ctx, token) if token else None
    if session is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "not logged in, or the session has ended: log in with POST /api/auth/login",
        )
    request.state.user = session.user  # for the security log of a refusal (see app.py)
    if request.method not in _SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"missing or wrong {CSRF_HEADER} header: send the csrf_token from the login "
                "or GET /api/auth/me",
            )
    return session


CurrentSession = Annotated[Session, Depends(current_session)]

# An organisation id as the registry allows it (reads are logged in its chain).
OrgFilter = Annotated[str | None, Query(min_length=1, max_length=64, pattern=ORG_ID_PATTERN)]
Format = Annotated[Literal["json", "csv"], Query(alias="format")]

# Text PostgreSQL can store (no NUL), said in the schema as well; the guard in
# gateway.api.guards refuses NUL and lone surrogates anywhere with 422 anyway.
STORABLE = r"^[^\x00]*$"
AreaFilter = Annotated[str | None, Query(max_length=200, pattern=STORABLE)]
AlertId = Annotated[str, Path(min_length=1, max_length=200, pattern=STORABLE)]
# Request bodies name every field they take; anything else is refused (422).
STRICT_BODY = ConfigDict(extra="forbid")


def csv_download(text: str, stem: str) -> Response:
    """A CSV attachment whose file name is ``stem`` made safe, plus ``.csv``."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("_") or "export"
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


# Sessions remembered for outages; beyond this many, expired ones are dropped.
_SESSIONS_KEPT = 10_000


async def _lookup_session(ctx: ApiContext, token: str) -> Session | None:
    """The session from PostgreSQL; while it is down, the one it last vouched for."""
    digest = token_digest(token)
    now = ctx.clock.now()
    if time.monotonic() >= ctx.db_retry_at:
        try:
            async with store.connection(ctx.pool, wait_s=2.0) as conn:
                session = await find_session(conn, token=token, now=now)
        except StorageUnavailable:
            ctx.db_retry_at = time.monotonic() + DB_RETRY_AFTER_S
        else:
            if session is None:
                ctx.sessions.pop(digest, None)
            else:
                if len(ctx.sessions) >= _SESSIONS_KEPT:
                    ctx.sessions = {d: s for d, s in ctx.sessions.items() if s.expires_at > now}
                ctx.sessions[digest] = session
            return session
    # The night patrol must go on handling alarms while PostgreSQL is away: a
    # session it confirmed earlier stays good until it expires (a logout here
    # forgets it at once; one made elsewhere counts when the database is back).
    cached = ctx.sessions.get(digest)
    if cached is not None and cached.expires_at > now:
        return cached
    raise HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        "the database is unreachable, so this session cannot be checked; try again shortly",
    )


def require(*roles: Role) -> Callable[[Session], Awaitable[User]]:
    """A dependency that lets only these roles through (403 for the others)."""

    async def check(session: CurrentSession) -> User:
        if session.user.role not in roles:
            allowed = ", ".join(r.value for r in roles)
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"role {session.user.role.value} may not do this (needs one of: {allowed})",
            )
        return session.user

    return check


# Who may do what (DESIGN.md, Interfaces; DOMAIN.md, section 5 on access to logs).
HANDLERS = (Role.OPERATOR, Role.COORDINATOR, Role.ADMIN)
ALERT_READERS = (*HANDLERS, Role.AUDITOR)
LOG_READERS = (Role.AUDITOR, Role.ADMIN)
REPORT_READERS = (Role.COORDINATOR, Role.AUDITOR, Role.ADMIN)

Handler = Annotated[User, Depends(require(*HANDLERS))]
AlertReader = Annotated[User, Depends(require(*ALERT_READERS))]
LogReader = Annotated[User, Depends(require(*LOG_READERS))]
ReportReader = Annotated[User, Depends(require(*REPORT_READERS))]
AnyUser = Annotated[User, Depends(require(*Role))]


def check_org(user: User, org: str | None) -> list[str] | None:
    """The organisations a query may cover: the one asked for (403 if out of scope) or all."""
    if org is None:
        return user.scope()
    if not is_org_id(org):
        # Reads are logged under the organisation asked for: it must be one that can exist.
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"{org[:64]!r} is not an organisation id (1-64 of A-Z a-z 0-9 . _ -)",
        )
    if not user.sees(org):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"organisation {org!r} is outside this account's scope"
        )
    return [org]


def log_access(
    ctx: ApiContext,
    user: User,
    *,
    org: str,
    action: Action,
    subject: str,
    person: str | None = None,
    detail: dict[str, DetailValue] | None = None,
) -> None:
    """Write an access-log entry for a read or change made through the API."""
    log_accesses(ctx, [EntryDraft(org, ctx.clock.now(), user.username, action, subject, person,
                                  {"via": "api", **(detail or {})})])  # fmt: skip


def log_queue_read(ctx: ApiContext, user: User, shown: Sequence[tuple[str, str]]) -> None:
    """Log a read of the alert queue: one entry per organisation, naming its alerts shown."""
    log_list_read(ctx, user, shown, subject="alert_queue", key="alerts")


def log_list_read(
    ctx: ApiContext,
    user: User,
    shown: Sequence[tuple[str, str]],
    *,
    subject: str,
    key: str,
    detail: dict[str, DetailValue] | None = None,
) -> None:
    """Log a read of a list: one entry per organisation shown, naming its items (org, id).

    A list that showed nothing is logged too, under the account's organisations:
    the search itself (its filters) is what an auditor asks about.
    """
    by_org: dict[str, list[str]] = {}
    for org, item in shown:
        by_org.setdefault(org, []).append(item)
    if not by_org and subject != "alert_queue":
        by_org = {org: [] for org in (user.scope() or [GATEWAY_ORG])}
    for org, ids in sorted(by_org.items()):
        log_access(ctx, user, org=org, action=Action.READ, subject=subject,
                   detail={key: ids, **(detail or {})})  # fmt: skip


def client_address(request: Request) -> str:
    """The real client's address (a trusted proxy's X-Forwarded-For already applied)."""
    return request.client.host if request.client else "unknown"


def log_security(
    ctx: ApiContext,
    event: str,
    *,
    account: str,
    address: str,
    user: User | None = None,
    detail: dict[str, DetailValue] | None = None,
) -> None:
    """Log a security event (failed login, lockout, 403) and count it for /metrics.

    It goes to the chain of each organisation of the account, or to GATEWAY_ORG
    when the account is unknown or covers every organisation.
    """
    ctx.security_events.labels(event=event).inc()
    orgs = (user.scope() if user is not None else None) or [GATEWAY_ORG]
    now = ctx.clock.now()
    info: dict[str, DetailValue] = {
        "via": "api", "event": event, "account": account, "address": address, **(detail or {})
    }  # fmt: skip
    log_accesses(ctx, [EntryDraft(org, now, account or "anonymous", Action.SECURITY, event,
                                  None, info) for org in orgs])  # fmt: skip


def log_accesses(ctx: ApiContext, drafts: Sequence[EntryDraft]) -> None:
    """Stage access-log entries; they are chained and stored with the next write."""
    if drafts:
        ctx.gateway.stage(AlertWork(access=list(drafts)))
