"""The alarm-handling report per night and organisation, as JSON or CSV, for deviation reports."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status
from fastapi.responses import JSONResponse

from gateway.api.deps import (
    Connection,
    Context,
    Format,
    OrgFilter,
    ReportReader,
    check_org,
    csv_download,
    log_access,
)
from gateway.night_report import CSV_FIELDS, NightReport, build_report, csv_rows, night_window
from gateway.store.reports import known_organisations, night_alerts, staff_acknowledgements
from gateway.store.users import User
from rules.auditlog import Action
from rules.calendar import STOCKHOLM

router = APIRouter(prefix="/api/reports", tags=["reports"])

# Nights a report can be about: a night needs the next morning to exist.
_FIRST_DAY, _LAST_DAY = date(1970, 1, 1), date(9999, 12, 30)


def _one_org(user: User, org: str | None) -> str:
    """The organisation a report is about: the one asked for, or the account's only one."""
    check_org(user, org)
    if org is not None:
        return org
    scope = user.scope()
    if scope is not None and len(scope) == 1:
        return scope[0]
    # 404, not 422: the request is well formed, there is just no report of many
    # organisations at once.
    raise HTTPException(
        status.HTTP_404_NOT_FOUND,
        "the report is per organisation: choose one with org=… (GET /api/reports/organisations)",
    )


@router.get(
    "/night",
    response_model=NightReport,
    responses={
        200: {"content": {"text/csv": {}}, "description": "the report, or CSV with format=csv"},
        403: {},
        404: {"description": "no report: a night out of range, or no organisation chosen"},
        503: {},
    },
)
async def night(
    user: ReportReader,
    ctx: Context,
    conn: Connection,
    day: Annotated[date, Query(alias="date", description="the evening the night starts")],
    org: OrgFilter = None,
    fmt: Format = "json",
) -> Response:
    """One night's alarm handling: counts, time to acknowledge and arrive, floods, stale alerts."""
    name = _one_org(user, org)
    if not _FIRST_DAY <= day <= _LAST_DAY:
        # A valid date, but no night the calendar can hold starts on it: no such report.
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"no report for that night: date must be between {_FIRST_DAY} and {_LAST_DAY}",
        )
    api = ctx.settings.api
    alerting = ctx.console.alerting
    engine = alerting.engines.get(alerting.engine_key(name))
    # The night is the organisation's rule-set night, on its own wall clock.
    tz = STOCKHOLM if engine is None else engine.ruleset.tz
    start, end = night_window(
        day, starts_hour=api.night_starts_hour, ends_hour=api.night_ends_hour, tz=tz
    )
    orgs = [name]
    alerts = await night_alerts(conn, orgs=orgs, start=start, end=end)
    acks = await staff_acknowledgements(conn, orgs=orgs, start=start, end=end)
    report = build_report(
        org=name,
        day=day,
        window=(start, end),
        alerts=alerts,
        acks=acks,
        stale_after=timedelta(minutes=api.stale_after_min),
        as_of=ctx.clock.now(),
        tz=tz,
    )
    # It names devices and the staff who handled their alerts: a read like any other.
    log_access(ctx, user, org=name, action=Action.EXPORT if fmt == "csv" else Action.READ,
               subject="night_report", detail={"date": day.isoformat(), "format": fmt})  # fmt: skip
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(csv_rows(report))
        return csv_download(out.getvalue(), f"night-report-{name}-{day.isoformat()}")
    return JSONResponse(report.model_dump(mode="json"))


@router.get("/organisations", responses={503: {}})
async def organisations(user: ReportReader, conn: Connection) -> list[str]:
    """The organisations a report can be made for (those with devices or alerts, in scope)."""
    return await known_organisations(conn, orgs=user.scope())
