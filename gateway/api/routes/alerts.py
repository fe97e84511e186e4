"""Alerts: the live queue, history, one alert with its trail, and the staff actions on it."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import AwareDatetime, BaseModel, Field

from core.errors import StorageUnavailable
from gateway.alerting import alert_json
from gateway.api.deps import (
    STORABLE,
    STRICT_BODY,
    AlertId,
    AlertReader,
    AreaFilter,
    Connection,
    Context,
    Handler,
    OrgFilter,
    check_org,
    log_access,
    log_list_read,
    log_queue_read,
)
from gateway.api.places import places_of
from gateway.store import connection
from gateway.store.console import alert_detail, alert_history
from gateway.store.users import User
from rules import Alert, TransitionError
from rules.auditlog import Action, DetailValue, EntryDraft
from rules.model import AlertState
from rules.work import AlertWork

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/alerts", tags=["alerts"])


class PositionPublic(BaseModel):
    """Where the alarm unit was (WGS84 decimal degrees) and when it fixed that position."""

    lat: float
    lon: float
    at: datetime | None


class AlertPublic(BaseModel):
    """An alert as the console shows it."""

    alert_id: str
    org: str
    device_id: str
    rule_id: str
    title: str
    kind: str
    priority: int
    state: AlertState
    occurred_at: datetime
    opened_at: datetime
    last_seen_at: datetime
    count: int
    escalated: bool
    late: bool
    reason: str
    outcome: str | None
    handled_by: str | None
    position: PositionPublic | None = None
    unit: str = ""
    area: str = ""
    arrived_at: datetime | None = None
    closed_at: datetime | None = None
    chattering: bool = False


class TransitionPublic(BaseModel):
    """One row of an alert's trail."""

    at: datetime
    actor: str
    from_state: str | None
    to_state: str
    note: str


class CommentPublic(BaseModel):
    """A note added to an alert."""

    at: datetime
    actor: str
    note: str


class AlertDetail(BaseModel):
    """One alert with its whole trail and comments."""

    alert: AlertPublic
    transitions: list[TransitionPublic]
    comments: list[CommentPublic]


class ActionRequest(BaseModel):
    """An optional note with a staff action."""

    model_config = STRICT_BODY

    note: str = Field(default="", max_length=2000, pattern=STORABLE)


class ResolveRequest(BaseModel):
    """How the alert ended (an outcome of the rule set) and a note."""

    model_config = STRICT_BODY

    outcome: str = Field(min_length=1, max_length=64, pattern=STORABLE)
    note: str = Field(default="", max_length=2000, pattern=STORABLE)


class CommentRequest(BaseModel):
    """A note for the alert's trail."""

    model_config = STRICT_BODY

    note: str = Field(min_length=1, max_length=2000, pattern=STORABLE)


def _public(alert: Alert, places: dict[str, tuple[str, str]]) -> AlertPublic:
    unit, area = places.get(alert.device_id, ("", ""))
    return AlertPublic.model_validate(alert_json(alert) | {"unit": unit, "area": area})


@router.get("")
async def list_alerts(
    user: AlertReader,
    ctx: Context,
    org: OrgFilter = None,
    area: AreaFilter = None,
    priority: Annotated[int | None, Query(ge=1, le=4)] = None,
) -> list[AlertPublic]:
    """The open alerts (live), highest priority first, then oldest first."""
    orgs = check_org(user, org)
    alerts = [
        a
        for a in ctx.console.alerting.open_alerts()
        if (orgs is None or a.org in orgs) and (priority is None or a.priority == priority)
    ]
    places = await places_of(ctx, [a.device_id for a in alerts])
    result = [_public(a, places) for a in alerts]
    if area is not None:
        result = [a for a in result if a.area == area]
    log_queue_read(ctx, user, [(a.org, a.alert_id) for a in result])
    return result


@router.get("/history", responses={503: {}})
async def history(
    user: AlertReader,
    ctx: Context,
    conn: Connection,
    org: OrgFilter = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[AlertPublic]:
    """Stored alerts opened in a period, open and closed, newest first."""
    orgs = check_org(user, org)
    rows = await alert_history(conn, orgs=orgs, since=since, until=until, limit=limit)
    result = [AlertPublic.model_validate(r) for r in rows]
    # It names the homes, who handled their alarms and how they ended: a read.
    period: dict[str, DetailValue] = {
        k: v.isoformat() for k, v in (("since", since), ("until", until)) if v is not None
    }
    log_list_read(ctx, user, [(a.org, a.alert_id) for a in result], subject="alert_history",
                  key="alerts", detail=period)  # fmt: skip
    return result


@router.get("/{alert_id}", responses={403: {}, 404: {}})
async def get_alert(alert_id: AlertId, user: AlertReader, ctx: Context) -> AlertDetail:
    """One alert with its trail; the read is written to the access log."""
    live = ctx.console.alerting.find(alert_id)
    stored: dict[str, Any] | None = None
    transitions: list[dict[str, Any]] = []
    comments: list[dict[str, Any]] = []
    try:
        async with connection(ctx.pool, wait_s=5.0) as conn:
            stored, transitions, comments = await alert_detail(conn, alert_id=alert_id)
    except StorageUnavailable:
        if live is None:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "the database is unreachable and the alert is not open; try again shortly",
            ) from None
        log.warning("alert %s shown without its stored trail: database unreachable", alert_id)
    if live is not None:
        places = await places_of(ctx, [live.device_id])
        alert = _public(live, places)
        if stored is not None:
            alert.arrived_at = stored["arrived_at"]
            alert.chattering = stored["chattering"]
    elif stored is not None:
        alert = AlertPublic.model_validate(stored)
    else:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert {alert_id!r}")
    _check_scope(user, alert.org)
    log_access(ctx, user, org=alert.org, action=Action.READ, subject=alert.device_id,
               person=alert.unit or None, detail={"alert_id": alert_id})  # fmt: skip
    return AlertDetail(
        alert=alert,
        transitions=[TransitionPublic.model_validate(t) for t in transitions],
        comments=[CommentPublic.model_validate(c) for c in comments],
    )


def _check_scope(user: User, org: str) -> None:
    if not user.sees(org):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "this alert belongs to an organisation outside your scope"
        )


_ACTIONS = {
    AlertState.ACKNOWLEDGED: Action.ACKNOWLEDGE,
    AlertState.EN_ROUTE: Action.CHANGE,
    AlertState.ON_SITE: Action.CHANGE,
    AlertState.RESOLVED: Action.RESOLVE,
}


async def _act(
    ctx: Context,
    user: User,
    alert_id: str,
    to: AlertState,
    *,
    note: str,
    outcome: str | None = None,
) -> AlertPublic:
    alerting = ctx.console.alerting
    current = alerting.find(alert_id)
    if current is None:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"alert {alert_id} is not open (already resolved or cleared, or unknown)",
        )
    _check_scope(user, current.org)
    try:
        moved, work = alerting.act(alert_id, to, actor=user.username, note=note, outcome=outcome)
    except TransitionError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    places = await places_of(ctx, [moved.device_id])
    public = _public(moved, places)
    detail: dict[str, Any] = {"via": "api", "alert_id": alert_id, "to": to.value}
    if outcome is not None:
        detail["outcome"] = outcome
    work.access.append(_draft(ctx, user, public, _ACTIONS[to], detail))
    ctx.gateway.stage(work)
    return public


def _draft(
    ctx: Context, user: User, alert: AlertPublic, action: Action, detail: dict[str, Any]
) -> EntryDraft:
    return EntryDraft(
        alert.org, ctx.clock.now(), user.username, action, alert.device_id, alert.unit or None,
        detail,
    )  # fmt: skip


_MOVE_RESPONSES: dict[int | str, dict[str, Any]] = {403: {}, 409: {}}


@router.post("/{alert_id}/acknowledge", responses=_MOVE_RESPONSES)
async def acknowledge(
    alert_id: AlertId, body: ActionRequest, user: Handler, ctx: Context
) -> AlertPublic:
    """Kvittera: take responsibility for an open alert."""
    return await _act(ctx, user, alert_id, AlertState.ACKNOWLEDGED, note=body.note)


@router.post("/{alert_id}/en-route", responses=_MOVE_RESPONSES)
async def en_route(
    alert_id: AlertId, body: ActionRequest, user: Handler, ctx: Context
) -> AlertPublic:
    """På väg: staff are on their way."""
    return await _act(ctx, user, alert_id, AlertState.EN_ROUTE, note=body.note)


@router.post("/{alert_id}/on-site", responses=_MOVE_RESPONSES)
async def on_site(
    alert_id: AlertId, body: ActionRequest, user: Handler, ctx: Context
) -> AlertPublic:
    """På plats: staff are with the person."""
    return await _act(ctx, user, alert_id, AlertState.ON_SITE, note=body.note)


@router.post("/{alert_id}/resolve", responses=_MOVE_RESPONSES)
async def resolve(
    alert_id: AlertId, body: ResolveRequest, user: Handler, ctx: Context
) -> AlertPublic:
    """Åtgärdat: close the alert with an outcome from the rule set and a note."""
    return await _act(
        ctx, user, alert_id, AlertState.RESOLVED, note=body.note, outcome=body.outcome
    )


@router.post("/{alert_id}/comment", status_code=201, responses=_MOVE_RESPONSES)
async def comment(
    alert_id: AlertId, body: CommentRequest, user: Handler, ctx: Context
) -> CommentPublic:
    """Add a note to an open alert's trail."""
    alert = ctx.console.alerting.find(alert_id)
    if alert is None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"alert {alert_id} is not open")
    _check_scope(user, alert.org)
    places = await places_of(ctx, [alert.device_id])
    public = _public(alert, places)
    at = ctx.clock.now()
    work = AlertWork(comments=[(alert_id, at, user.username, body.note)])
    detail = {"via": "api", "alert_id": alert_id, "to": "comment"}
    work.access.append(_draft(ctx, user, public, Action.CHANGE, detail))
    ctx.gateway.stage(work)
    return CommentPublic(at=at, actor=user.username, note=body.note)
