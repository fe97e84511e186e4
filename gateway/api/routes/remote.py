"""Remote supervision (fjärrtillsyn): the night's planned checks, a check's decision, its result.

A check is judged by the same function as `wgw access remote-view` (consent,
agreed times, shift, grant) and is an access-log entry whether it is allowed
or refused. The gateway shows no video: the vendor's viewer does; the console
records the decision and what the staff member saw.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import AwareDatetime, BaseModel

from core.events import DeviceId
from gateway.api.deps import STRICT_BODY, Context, Handler, log_accesses, log_list_read
from gateway.api.places import places_of
from gateway.store.users import User
from rules.access import (
    OVERDUE_GRACE,
    REASON_LABELS,
    AccessDecision,
    AccessDirectory,
    CheckResult,
    PlannedCheck,
    night_of,
    planned_checks,
    remote_view_entry,
)
from rules.auditlog import DetailValue
from rules.model import DeviceInfo

router = APIRouter(prefix="/api/remote", tags=["remote"])

CheckStatus = Literal["pending", "seen", "not_seen", "alerted"]


class PlannedCheckPublic(BaseModel):
    """One planned remote check of the night, with its latest result."""

    device_id: str
    org: str
    unit: str
    area: str
    planned_at: datetime
    consent_on_record: bool
    windows: list[str]  # the agreed daily windows, "22:00-06:00"
    status: CheckStatus  # not_seen: try again; alerted: the patrol has an alert
    not_seen: int  # tries that did not see the person
    overdue: bool  # not seen and well by the planned time plus the grace
    last_at: datetime | None
    last_by: str | None
    alert_id: str | None


class PlannedChecksPublic(BaseModel):
    """The night's planned checks, earliest first."""

    night: date  # the evening's date; the night runs noon to noon
    grace_min: int  # minutes after the planned time before a check shows as overdue
    # False until `wgw access import` has stored a directory: nothing is planned then.
    directory_imported: bool
    checks: list[PlannedCheckPublic]


class ViewRequest(BaseModel):
    """Ask to look: the sensor and, for a planned check, its planned time."""

    model_config = STRICT_BODY

    device_id: DeviceId
    planned_at: AwareDatetime | None = None


class ResultRequest(BaseModel):
    """What the check found: seen and well, or not seen (try again)."""

    model_config = STRICT_BODY

    device_id: DeviceId
    planned_at: AwareDatetime
    outcome: Literal["seen", "not_seen"]


class DecisionPublic(BaseModel):
    """Whether the view is allowed; the reasons (stable codes) when it is refused."""

    device_id: str
    at: datetime
    allowed: bool
    reasons: list[str]
    message: str  # the reasons in Swedish, as the CLI prints them


class ResultPublic(BaseModel):
    """The judgement of the result and the check after it (unchanged when refused)."""

    decision: DecisionPublic
    recorded: bool  # false when the decision refused it: nothing was recorded
    check: PlannedCheckPublic


def _directory(ctx: Context) -> AccessDirectory:
    directory = ctx.console.alerting.directory
    if directory is None:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            "no access directory imported yet, so no remote check can be judged: "
            "run `wgw access import FILE` with the consents and agreed times",
        )
    return directory


def _sensor(ctx: Context, user: User, device_id: str) -> DeviceInfo:
    info = ctx.console.alerting.device(device_id)
    if info is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no registered device {device_id!r}")
    if not user.sees(info.org):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "this sensor belongs to an organisation outside your scope"
        )
    return info


def _planned(directory: AccessDirectory, device_id: str, at: datetime) -> PlannedCheck:
    """The planned check of ``device_id`` at ``at``; 422 naming the way to find them if none."""
    for check in planned_checks(directory, night_of(at)):
        if check.device_id == device_id and check.planned_at == at:
            return check
    raise HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        f"no remote check of {device_id} is planned at {at.isoformat()}: "
        "take planned_at from GET /api/remote/checks",
    )


def _judge(
    ctx: Context,
    user: User,
    info: DeviceInfo,
    device_id: str,
    unit: str,
    detail: dict[str, DetailValue],
) -> tuple[AccessDecision, datetime]:
    """Judge the view as the CLI does and stage its access-log entry, allowed or refused."""
    directory = _directory(ctx)
    at = ctx.clock.now()
    # The console account stands for a staff member of the directory; an
    # account that stands for none is judged (and refused) as unknown staff.
    staff = directory.staff_of_account(user.username)
    org, staff_id = (info.org, user.username) if staff is None else (staff.org, staff.staff_id)
    decision, draft = remote_view_entry(
        directory, org=org, device_id=device_id, staff_id=staff_id, at=at,
        person=unit or None, detail={"via": "api", "account": user.username, **detail},
    )  # fmt: skip
    log_accesses(ctx, [draft])
    return decision, at


def _message(decision: AccessDecision) -> str:
    if decision.allowed:
        return "tillåten"
    return "nekad: " + ", ".join(REASON_LABELS[r] for r in decision.reasons)


def _public(
    check: PlannedCheck,
    info: DeviceInfo,
    place: tuple[str, str],
    result: CheckResult | None,
    now: datetime,
) -> PlannedCheckPublic:
    state: CheckStatus = "pending"
    if result is not None:
        state = "seen" if result.seen else "alerted" if result.alert_id else "not_seen"
    return PlannedCheckPublic(
        device_id=check.device_id,
        org=info.org,
        unit=place[0],
        area=place[1],
        planned_at=check.planned_at,
        consent_on_record=check.consent_on_record,
        windows=[str(w) for w in check.windows],
        status=state,
        not_seen=0 if result is None else result.not_seen,
        overdue=state != "seen" and check.overdue(now),
        last_at=None if result is None else result.at,
        last_by=None if result is None else result.actor,
        alert_id=None if result is None else result.alert_id,
    )


def _results(ctx: Context) -> dict[tuple[str, datetime], CheckResult]:
    return {(r.device_id, r.planned_at): r for r in ctx.console.alerting.remote_checks()}


@router.get("/checks")
async def list_checks(
    user: Handler, ctx: Context, night: Annotated[date | None, Query()] = None
) -> PlannedChecksPublic:
    """The planned remote checks of a night (default: the night in progress), earliest first."""
    directory = ctx.console.alerting.directory
    now = ctx.clock.now()
    night = night or night_of(now)
    alerting = ctx.console.alerting
    planned = [
        (c, info)
        for c in ([] if directory is None else planned_checks(directory, night))
        if (info := alerting.device(c.device_id)) is not None and user.sees(info.org)
    ]
    places = await places_of(ctx, [c.device_id for c, _ in planned])
    results = _results(ctx)
    checks = [
        _public(
            c,
            info,
            places.get(c.device_id, ("", "")),
            results.get((c.device_id, c.planned_at)),
            now,
        )
        for c, info in planned
    ]
    # It names the homes under supervision and who looked: a read.
    log_list_read(ctx, user, [(c.org, c.device_id) for c in checks], subject="remote_checks",
                  key="devices", detail={"night": night.isoformat()})  # fmt: skip
    return PlannedChecksPublic(
        night=night,
        grace_min=OVERDUE_GRACE // timedelta(minutes=1),
        directory_imported=directory is not None,
        checks=checks,
    )


@router.post("/checks/view", responses={403: {}, 404: {}, 409: {}, 422: {}})
async def view(body: ViewRequest, user: Handler, ctx: Context) -> DecisionPublic:
    """Ask for a remote view now: judged as `wgw access remote-view`, logged either way."""
    info = _sensor(ctx, user, body.device_id)
    detail: dict[str, DetailValue] = {}
    if body.planned_at is not None:
        _planned(_directory(ctx), body.device_id, body.planned_at)
        detail["planned_at"] = body.planned_at.isoformat()
    unit, _ = (await places_of(ctx, [body.device_id])).get(body.device_id, ("", ""))
    decision, at = _judge(ctx, user, info, body.device_id, unit, detail)
    return _decision(body.device_id, decision, at)


def _decision(device_id: str, decision: AccessDecision, at: datetime) -> DecisionPublic:
    return DecisionPublic(
        device_id=device_id,
        at=at,
        allowed=decision.allowed,
        reasons=[r.value for r in decision.reasons],
        message=_message(decision),
    )


@router.post("/checks/result", responses={403: {}, 404: {}, 409: {}, 422: {}})
async def result(body: ResultRequest, user: Handler, ctx: Context) -> ResultPublic:
    """Record what a planned check found; a second "not seen" raises an alert to the patrol.

    The result is judged like a view (a result cannot be entered outside the
    agreed times or off shift); a refusal is answered like a view's, with
    ``recorded`` false and the reasons, and is logged too.
    """
    info = _sensor(ctx, user, body.device_id)
    check = _planned(_directory(ctx), body.device_id, body.planned_at)
    place = (await places_of(ctx, [body.device_id])).get(body.device_id, ("", ""))
    # Recording what was seen is looking: judged and logged like the view itself,
    # so a result cannot be entered outside the agreed times or off shift.
    detail: dict[str, DetailValue] = {
        "planned_at": body.planned_at.isoformat(),
        "outcome": body.outcome,
    }
    decision, now = _judge(ctx, user, info, body.device_id, place[0], detail)
    judged = _decision(body.device_id, decision, now)
    if not decision.allowed:
        earlier = _results(ctx).get((check.device_id, check.planned_at))
        return ResultPublic(
            decision=judged, recorded=False, check=_public(check, info, place, earlier, now)
        )
    latest, work = ctx.console.alerting.remote_check(
        body.device_id, check.planned_at, seen=body.outcome == "seen", actor=user.username
    )
    ctx.gateway.stage(work)
    return ResultPublic(
        decision=judged, recorded=True, check=_public(check, info, place, latest, now)
    )
