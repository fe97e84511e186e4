"""Alerts: the live queue, history, one alert with its trail, and the staff actions on it."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import AwareDatetime, BaseModel, Field

from core.errors import StorageUnavailable
from gateway import store
from gateway.api.deps import (
    HANDLERS,
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
from gateway.api.routes.devices import DeviceHealthPublic, judge_health
from gateway.public import AlertPublic, public_alert
from gateway.store import connection
from gateway.store.console import StoredDetail, alert_detail, alert_history
from gateway.store.homes import home_devices, home_events
from gateway.store.users import User
from rules import Alert, TransitionError
from rules.auditlog import Action, DetailValue, EntryDraft
from rules.lifecycle import needs_takeover
from rules.model import AlertState
from rules.work import AlertWork

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/alerts", tags=["alerts"])

# The detail shows the home's events from this long before the alert opened
# (the evening before a night alarm) until it closed, or now.
EVENTS_BEFORE = timedelta(hours=12)
# ... and the home's alerts of this long before it.
EARLIER_ALERTS = timedelta(days=30)
EARLIER_ALERTS_MAX = 50


class TransitionPublic(BaseModel):
    """One row of an alert's trail."""

    at: datetime
    actor: str
    from_state: str | None
    to_state: str
    note: str
    actor_name: str  # the display name of a staff actor; the engine's keep their id
    # A takeover (from_state == to_state) names who handled the alert before.
    took_over_from: str | None = None
    took_over_from_name: str | None = None


class CommentPublic(BaseModel):
    """A note added to an alert."""

    at: datetime
    actor: str
    actor_name: str
    note: str


class EscalationPublic(BaseModel):
    """A tier of escalation the alert reached: when, and whom it named."""

    at: datetime
    tier: int
    recipients: list[str]  # "role:<role>" or "group:<name>", as in the rule set


class HomeEventPublic(BaseModel):
    """An event of the alert's home: bed exit, door, lock (actor: the key), heartbeat gap."""

    at: datetime
    device_id: str
    kind: str  # an event kind, or device.heartbeat_gap from ``at`` to ``until``
    actor: str | None
    until: datetime | None


class AlertDetail(BaseModel):
    """One alert with its whole trail and comments, and its home around it."""

    alert: AlertPublic
    transitions: list[TransitionPublic]
    comments: list[CommentPublic]
    escalations: list[EscalationPublic] = []  # each tier reached, oldest first
    events: list[HomeEventPublic] = []  # newest first
    earlier_alerts: list[AlertPublic] = []  # the home's, newest first
    devices: list[DeviceHealthPublic] = []  # the home's
    # How to get in (key box, door code, pets); None for a role that does not act on alarms.
    entry_notes: list[str] | None = None


class ActionRequest(BaseModel):
    """An optional note with a staff action."""

    model_config = STRICT_BODY

    note: str = Field(default="", max_length=2000, pattern=STORABLE)
    # A step on an alert someone else is handling is refused without this:
    # handing over is said out loud, never done by a stray tap.
    takeover: bool = False


class ResolveRequest(ActionRequest):
    """How the alert ended (an outcome of the rule set) and a note."""

    outcome: str = Field(min_length=1, max_length=64, pattern=STORABLE)


class CommentRequest(BaseModel):
    """A note for the alert's trail."""

    model_config = STRICT_BODY

    note: str = Field(min_length=1, max_length=2000, pattern=STORABLE)


def _public(ctx: Context, alert: Alert, places: dict[str, tuple[str, str]]) -> AlertPublic:
    unit, area = places.get(alert.device_id, ("", ""))
    return public_alert(alert, ctx.console.alerting.rules_of(alert.org), unit=unit, area=area)


def _stored(ctx: Context, row: dict[str, Any]) -> AlertPublic:
    return public_alert(row, ctx.console.alerting.rules_of(str(row["org"])))


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
    result = [_public(ctx, a, places) for a in alerts]
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
    result = [_stored(ctx, r) for r in rows]
    # It names the homes, who handled their alarms and how they ended: a read.
    period: dict[str, DetailValue] = {
        k: v.isoformat() for k, v in (("since", since), ("until", until)) if v is not None
    }
    log_list_read(ctx, user, [(a.org, a.alert_id) for a in result], subject="alert_history",
                  key="alerts", detail=period)  # fmt: skip
    return result


@router.get("/{alert_id}", responses={403: {}, 404: {}})
async def get_alert(alert_id: AlertId, user: AlertReader, ctx: Context) -> AlertDetail:
    """One alert with its trail and its home; the read is written to the access log."""
    live = ctx.console.alerting.find(alert_id)
    detail = StoredDetail(None, [], [], [])
    home = _Home()
    try:
        async with connection(ctx.pool, wait_s=5.0) as conn:
            detail = await alert_detail(conn, alert_id=alert_id)
            if live is not None:
                home = await _home(conn, ctx, user, live.org, live.device_id, live.opened_at, None)
            elif (found := detail.alert) is not None:
                home = await _home(conn, ctx, user, found["org"], found["device_id"],
                                   found["opened_at"], found["closed_at"])  # fmt: skip
    except StorageUnavailable:
        if live is None:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "the database is unreachable and the alert is not open; try again shortly",
            ) from None
        log.warning("alert %s shown without its stored trail: database unreachable", alert_id)
    stored = detail.alert
    if live is not None:
        places = await places_of(ctx, [live.device_id])
        alert = _public(ctx, live, places)
        if stored is not None:
            alert.arrived_at = stored["arrived_at"]
            alert.chattering = stored["chattering"]
    elif stored is not None:
        alert = _stored(ctx, stored)
    else:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert {alert_id!r}")
    _check_scope(user, alert.org)
    entry_notes = home.entry_notes if user.role in HANDLERS else None
    # Door codes are the most sensitive part: the log says whether they were shown.
    log_access(ctx, user, org=alert.org, action=Action.READ, subject=alert.device_id,
               person=alert.unit or None,
               detail={"alert_id": alert_id, "entry_notes": bool(entry_notes)})  # fmt: skip
    return AlertDetail(
        alert=alert,
        transitions=[TransitionPublic.model_validate(t) for t in detail.transitions],
        comments=[CommentPublic.model_validate(c) for c in detail.comments],
        escalations=[EscalationPublic.model_validate(e) for e in detail.escalations],
        events=home.events,
        earlier_alerts=home.earlier_alerts,
        devices=home.devices,
        entry_notes=entry_notes,
    )


class _Home(BaseModel):
    """What the detail shows of an alert's home."""

    events: list[HomeEventPublic] = []
    earlier_alerts: list[AlertPublic] = []
    devices: list[DeviceHealthPublic] = []
    entry_notes: list[str] = []


async def _home(
    conn: store.Connection,
    ctx: Context,
    user: User,
    org: str,
    device_id: str,
    opened_at: datetime,
    closed_at: datetime | None,
) -> _Home:
    # Nothing of a home outside the account's scope is read.
    _check_scope(user, org)
    devices = await home_devices(conn, org=org, device_id=device_id)
    ids = sorted({device_id, *(d.device.device_id for d in devices)})
    events = await home_events(conn, device_ids=ids, since=opened_at - EVENTS_BEFORE,
                               until=closed_at or ctx.clock.now())  # fmt: skip
    earlier = await alert_history(conn, orgs=[org], device_ids=ids, limit=EARLIER_ALERTS_MAX,
                                  since=opened_at - EARLIER_ALERTS, until=opened_at)  # fmt: skip
    return _Home(
        events=[HomeEventPublic.model_validate(e, from_attributes=True) for e in events],
        earlier_alerts=[_stored(ctx, a) for a in earlier],
        devices=judge_health(ctx, [d.device for d in devices]),
        entry_notes=sorted({d.entry_notes for d in devices if d.entry_notes}),
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
    takeover: bool,
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
        moved, work = alerting.act(alert_id, to, actor=user.username, note=note, outcome=outcome,
                                   actor_name=user.display_name or user.username,
                                   takeover=takeover)  # fmt: skip
    except TransitionError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    places = await places_of(ctx, [moved.device_id])
    public = _public(ctx, moved, places)
    detail: dict[str, Any] = {"via": "api", "alert_id": alert_id, "to": to.value}
    if outcome is not None:
        detail["outcome"] = outcome
    if needs_takeover(current, user.username):
        detail["took_over_from"] = current.handled_by
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
    return await _act(
        ctx, user, alert_id, AlertState.ACKNOWLEDGED, note=body.note, takeover=body.takeover
    )


@router.post("/{alert_id}/en-route", responses=_MOVE_RESPONSES)
async def en_route(
    alert_id: AlertId, body: ActionRequest, user: Handler, ctx: Context
) -> AlertPublic:
    """På väg: staff are on their way."""
    return await _act(
        ctx, user, alert_id, AlertState.EN_ROUTE, note=body.note, takeover=body.takeover
    )


@router.post("/{alert_id}/on-site", responses=_MOVE_RESPONSES)
async def on_site(
    alert_id: AlertId, body: ActionRequest, user: Handler, ctx: Context
) -> AlertPublic:
    """På plats: staff are with the person."""
    return await _act(
        ctx, user, alert_id, AlertState.ON_SITE, note=body.note, takeover=body.takeover
    )


@router.post("/{alert_id}/resolve", responses=_MOVE_RESPONSES)
async def resolve(
    alert_id: AlertId, body: ResolveRequest, user: Handler, ctx: Context
) -> AlertPublic:
    """Åtgärdat: close the alert with an outcome from the rule set and a note."""
    return await _act(ctx, user, alert_id, AlertState.RESOLVED, note=body.note,
                      takeover=body.takeover, outcome=body.outcome)  # fmt: skip


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
    public = _public(ctx, alert, places)
    at = ctx.clock.now()
    work = AlertWork(comments=[(alert_id, at, user.username, body.note)])
    detail = {"via": "api", "alert_id": alert_id, "to": "comment"}
    work.access.append(_draft(ctx, user, public, Action.CHANGE, detail))
    ctx.gateway.stage(work)
    return CommentPublic(
        at=at, actor=user.username, actor_name=user.display_name or user.username, note=body.note
    )
