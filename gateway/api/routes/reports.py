"""The alarm-handling report per night and organisation, as JSON or CSV, for deviation reports."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import date, time, timedelta
from typing import Annotated, Any, Literal

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
from gateway.charts import CHARTS
from gateway.night_report import (
    CSV_FIELDS,
    NightReport,
    build_report,
    csv_rows,
    night_window,
    tonight,
)
from gateway.report_pdf import night_pdf
from gateway.store.reports import known_organisations, night_alerts, staff_acknowledgements
from gateway.store.users import User
from rules.auditlog import Action
from rules.calendar import STOCKHOLM, DailyWindow
from rules.ruleset import Lang, Titles

router = APIRouter(prefix="/api/reports", tags=["reports"])

# Nights a report can be about: a night needs the next morning to exist.
_FIRST_DAY, _LAST_DAY = date(1970, 1, 1), date(9999, 12, 30)
# The rule set's window that is the report's night.
NIGHT = "night"

NightDate = Annotated[
    date | None,
    Query(
        alias="date",
        description="the evening the night starts; without it tonight: the night in progress,"
        " or else the next to start (during the day the coming night, after midnight the"
        " one begun the evening before), by the rule set's night window",
    ),
]
ReportLang = Annotated[Lang, Query(description="the language of the text")]
# What every route of one night's report may answer besides its 200.
_NIGHT_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {},
    404: {"description": "no report: a night out of range, or no organisation chosen"},
    503: {},
}


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


async def _night_report(
    user: User, ctx: Context, conn: Connection, day: date | None, org: str | None
) -> NightReport:
    """The report of one night of one organisation in scope; no date: tonight's."""
    name = _one_org(user, org)
    if day is not None and not _FIRST_DAY <= day <= _LAST_DAY:
        # A valid date, but no night the calendar can hold starts on it: no such report.
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"no report for that night: date must be between {_FIRST_DAY} and {_LAST_DAY}",
        )
    api = ctx.settings.api
    alerting = ctx.console.alerting
    engine = alerting.engines.get(alerting.engine_key(name))
    # The night is the organisation's rule-set night window, on its own wall
    # clock; the api settings' hours serve an organisation without a rule set
    # (or one that names no night).
    window = DailyWindow(time(api.night_starts_hour), time(api.night_ends_hour))
    tz = STOCKHOLM
    titles: dict[str, Titles] = {}
    if engine is not None:
        ruleset = engine.ruleset
        tz = ruleset.tz
        window = ruleset.windows.get(NIGHT, window)
        titles = {rid: p.titles for rid in ruleset.rules if (p := ruleset.presentation(rid))}
    now = ctx.clock.now()
    day = tonight(now, window, tz) if day is None else day
    start, end = night_window(day, window, tz)
    orgs = [name]
    return build_report(
        org=name,
        day=day,
        window=window,
        alerts=await night_alerts(conn, orgs=orgs, start=start, end=end),
        acks=await staff_acknowledgements(conn, orgs=orgs, start=start, end=end),
        stale_after=timedelta(minutes=api.stale_after_min),
        as_of=now,
        tz=tz,
        titles=titles,
    )


def _log_read(ctx: Context, user: User, report: NightReport, fmt: str) -> None:
    # It names devices and the staff who handled their alerts: a read like any
    # other, and a file taken away (CSV, PDF) an export.
    log_access(ctx, user, org=report.org, action=Action.READ if fmt == "json" else Action.EXPORT,
               subject="night_report",
               detail={"date": report.date.isoformat(), "format": fmt})  # fmt: skip


@router.get(
    "/night",
    response_model=NightReport,
    responses={
        200: {"content": {"text/csv": {}}, "description": "the report, or CSV with format=csv"},
        **_NIGHT_ERRORS,
    },
)
async def night(
    user: ReportReader,
    ctx: Context,
    conn: Connection,
    day: NightDate = None,
    org: OrgFilter = None,
    fmt: Format = "json",
) -> Response:
    """One night's alarm handling: counts, time to acknowledge and arrive, floods, stale alerts."""
    report = await _night_report(user, ctx, conn, day, org)
    _log_read(ctx, user, report, fmt)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(csv_rows(report))
        return csv_download(out.getvalue(), _stem(report))
    return JSONResponse(report.model_dump(mode="json"))


@router.get(
    "/night.pdf",
    response_class=Response,
    responses={
        200: {"content": {"application/pdf": {}}, "description": "the report as a PDF"},
        **_NIGHT_ERRORS,
    },
)
async def night_pdf_file(
    user: ReportReader,
    ctx: Context,
    conn: Connection,
    day: NightDate = None,
    org: OrgFilter = None,
    lang: ReportLang = "sv",
) -> Response:
    """The night's report as a PDF for the deviation report: the page's figures and charts."""
    report = await _night_report(user, ctx, conn, day, org)
    _log_read(ctx, user, report, "pdf")
    # fpdf2 is pure Python and CPU-bound: off the event loop, like a query.
    body = await asyncio.to_thread(night_pdf, report, lang)
    return Response(
        body,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{_stem(report)}.pdf"'},
    )


@router.get(
    "/night.svg",
    response_class=Response,
    responses={
        200: {"content": {"image/svg+xml": {}}, "description": "one chart of the report"},
        **_NIGHT_ERRORS,
    },
)
async def night_chart(
    user: ReportReader,
    ctx: Context,
    conn: Connection,
    chart: Annotated[Literal["hourly", "spread"], Query(description="which chart")],
    day: NightDate = None,
    org: OrgFilter = None,
    lang: ReportLang = "sv",
) -> Response:
    """One chart of the night: alerts per hour by priority, or the spread of the times."""
    report = await _night_report(user, ctx, conn, day, org)
    # Not an access-log read: a chart shows counts and times only, no device or
    # person, and the page's report read beside it is logged.
    return Response(CHARTS[chart](report, lang), media_type="image/svg+xml")


def _stem(report: NightReport) -> str:
    return f"night-report-{report.org}-{report.date.isoformat()}"


@router.get("/organisations", responses={503: {}})
async def organisations(user: ReportReader, conn: Connection) -> list[str]:
    """The organisations a report can be made for (those with devices or alerts, in scope)."""
    return await known_organisations(conn, orgs=user.scope())
