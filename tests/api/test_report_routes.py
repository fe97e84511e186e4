"""The alarm-handling report over HTTP: roles and scope, exact figures, CSV, and the read logged."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import date, datetime
from typing import Any

import httpx
import pypdf
import pytest

from core.clock import FrozenClock
from gateway.night_report import CSV_FIELDS
from gateway.report_text import duration
from rules.calendar import STOCKHOLM
from tests.api.conftest import (
    ADMIN_A,
    ADMIN_ALL,
    AUDITOR_A,
    COORDINATOR_A,
    OPERATOR_A,
    OPERATOR_B,
    ORG_A,
    ORG_B,
    RunningApi,
    Shared,
    db_rows,
    eventually,
    running_api,
)
from tests.gateway.test_report_store import NIGHT, build_night

pytestmark = pytest.mark.db

NIGHT_URL = "/api/reports/night"


@pytest.fixture
async def night_api(api: RunningApi) -> RunningApi:
    """The running API over a database holding the hand-built DST night of the store tests."""
    await asyncio.to_thread(build_night, api.dsn)
    return api


async def report_of(
    client: httpx.AsyncClient, night: date | None = NIGHT, **params: str
) -> dict[str, Any]:
    """The JSON report of a night (None: without a date, tonight's)."""
    night_param = {} if night is None else {"date": night.isoformat()}
    response = await client.get(NIGHT_URL, params=night_param | params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


REPORT_READS = [f"{NIGHT_URL}?date={NIGHT.isoformat()}", "/api/reports/organisations"]


@pytest.mark.parametrize("path", REPORT_READS)
@pytest.mark.parametrize("username", [OPERATOR_A, OPERATOR_B])
async def test_the_night_patrol_may_not_read_the_report(
    shared: Shared, path: str, username: str
) -> None:
    client = await shared.login(username)
    response = await client.get(path)
    assert response.status_code == 403, response.text


async def test_coordinators_auditors_and_admins_read_the_report(api: RunningApi) -> None:
    for username in (COORDINATOR_A, AUDITOR_A, ADMIN_A):
        client = await api.login(username)
        for path in REPORT_READS:
            response = await client.get(path)
            assert response.status_code == 200, (username, path, response.text)


async def test_the_report_is_for_one_organisation_in_scope(api: RunningApi) -> None:
    coordinator = await api.login(COORDINATOR_A)
    outside = await coordinator.get(NIGHT_URL, params={"date": NIGHT.isoformat(), "org": ORG_B})
    assert outside.status_code == 403
    # An account of one organisation need not name it.
    assert (await report_of(coordinator))["org"] == ORG_A
    admin = await api.login(ADMIN_ALL)
    unnamed = await admin.get(NIGHT_URL, params={"date": NIGHT.isoformat()})
    assert unnamed.status_code == 404  # well formed: there is no report of every org
    assert "choose one with org=" in unnamed.json()["detail"]
    assert (await report_of(admin, org=ORG_B))["org"] == ORG_B
    assert (await admin.get("/api/reports/organisations")).json() == [ORG_B, ORG_A]
    assert (await coordinator.get("/api/reports/organisations")).json() == [ORG_A]
    beyond = await admin.get("/api/reports/night", params={"date": "9999-12-31", "org": ORG_A})
    assert beyond.status_code == 404
    # The read is logged in the organisation's chain, which needs a valid id.
    invalid = await admin.get(NIGHT_URL, params={"date": NIGHT.isoformat(), "org": "no such org"})
    assert invalid.status_code == 422


async def test_the_figures_of_a_constructed_dst_night_are_exact(night_api: RunningApi) -> None:
    report = await report_of(await night_api.login(COORDINATOR_A))
    assert (report["start"], report["end"]) == (
        "2025-10-25T22:00:00+02:00", "2025-10-26T07:00:00+01:00",
    )  # fmt: skip
    assert (report["alerts"], report["unacknowledged"]) == (4, 2)
    assert [(k["priority"], k["kind"], k["count"]) for k in report["by_kind"]] == [
        (1, "alarm.button", 1),
        (1, "sensor.fall", 1),
        (2, "dispenser.dose_missed", 1),
        (2, "sensor.not_back_in_bed", 1),
    ]
    assert report["acknowledge"] == {
        "count": 2, "median_s": 210.0, "worst_s": 300.0,
        "best_s": 120.0, "q1_s": 165.0, "q3_s": 255.0, "p90_s": 282.0,
    }  # fmt: skip
    assert report["arrival"] == {
        "count": 2, "median_s": 1080.0, "worst_s": 1200.0,
        "best_s": 960.0, "q1_s": 1020.0, "q3_s": 1140.0, "p90_s": 1176.0,
    }  # fmt: skip
    assert [e["alert_id"] for e in report["escalations"]] == ["a2"]
    assert report["floods"] == [
        {"actor": "bo", "start": "2025-10-26T04:00:00+01:00",
         "end": "2025-10-26T04:10:00+01:00", "count": 11},
    ]  # fmt: skip
    a3, a4 = report["stale"]
    assert (a3["alert_id"], a3["waited_s"], a3["still_open"]) == ("a3", 2400.0, False)
    # Still open: it has waited from 06:45 CET that morning until now, long past the limit.
    assert (a4["alert_id"], a4["still_open"]) == ("a4", True)
    assert a4["waited_s"] > 4500.0
    assert report["chattering"] == [
        {"device_id": "dev-a4", "kinds": ["dispenser.dose_missed"],
         "rules": [{"rule_id": "dose_not_taken", "kind": "dispenser.dose_missed"}],
         "alerts": 1, "repeats": 6}
    ]  # fmt: skip
    assert (report["stale_after_min"], report["flood_count"], report["flood_window_min"]) == (
        30, 10, 10,
    )  # fmt: skip


async def test_the_csv_is_one_flat_table_with_a_section_column(night_api: RunningApi) -> None:
    client = await night_api.login(AUDITOR_A)
    response = await client.get(NIGHT_URL, params={"date": NIGHT.isoformat(), "format": "csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == (
        f'attachment; filename="night-report-{ORG_A}-2025-10-25.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert tuple(rows[0]) == CSV_FIELDS
    sections = [r["section"] for r in rows]
    assert sections == [
        "night", "by_kind", "by_kind", "by_kind", "by_kind",
        "acknowledge", "acknowledge", "acknowledge", "arrival", "arrival", "arrival",
        "escalation", "flood", "stale", "stale", "chattering",
    ]  # fmt: skip
    night = rows[0]
    assert (night["org"], night["start"], night["count"]) == (
        ORG_A, "2025-10-25T22:00:00+02:00", "4",
    )  # fmt: skip
    everyone = rows[5]
    assert (everyone["priority"], everyone["count"], everyone["median_s"], everyone["worst_s"]) == (
        "", "2", "210.0", "300.0",
    )  # fmt: skip
    flood = rows[12]
    assert (flood["actor"], flood["count"], flood["start"]) == (
        "bo", "11", "2025-10-26T04:00:00+01:00",
    )  # fmt: skip
    stale = rows[13]
    assert (stale["alert_id"], stale["waited_s"], stale["end"], stale["count"]) == (
        "a3", "2400.0", "", "0",
    )  # fmt: skip
    # Each alert's rule, so that two rules of one kind stay apart.
    assert [(r["kind"], r["rule_id"]) for r in rows[1:5]] == [
        ("alarm.button", "alarm"), ("sensor.fall", "sensor.fall"),
        ("dispenser.dose_missed", "dose_not_taken"), ("sensor.not_back_in_bed", "not_back_in_bed"),
    ]  # fmt: skip
    assert (stale["rule_id"], rows[-1]["rule_id"]) == ("not_back_in_bed", "dose_not_taken")


async def test_reading_and_downloading_the_report_are_logged(night_api: RunningApi) -> None:
    client = await night_api.login(COORDINATOR_A)
    await report_of(client)
    night = {"date": NIGHT.isoformat()}
    await client.get(NIGHT_URL, params={**night, "format": "csv"})
    # A chart shows no device or person: not logged. The PDF is an export.
    assert (await client.get(CHART_URL, params={**night, "chart": "spread"})).status_code == 200
    assert (await client.get(PDF_URL, params=night)).status_code == 200
    logged: list[tuple[Any, ...]] = []

    async def all_three() -> bool:
        logged[:] = await db_rows(
            night_api.dsn,
            "SELECT org, action, subject, detail FROM access_log WHERE actor = %s ORDER BY seq",
            COORDINATOR_A,
        )
        return len(logged) == 3

    await eventually(all_three, what="the report reads in the access log")
    assert logged == [
        (ORG_A, "read", "night_report", {"via": "api", "date": "2025-10-25", "format": "json"}),
        (ORG_A, "export", "night_report", {"via": "api", "date": "2025-10-25", "format": "csv"}),
        (ORG_A, "export", "night_report", {"via": "api", "date": "2025-10-25", "format": "pdf"}),
    ]


PDF_URL = "/api/reports/night.pdf"
CHART_URL = "/api/reports/night.svg"


def stockholm(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=STOCKHOLM)


@pytest.fixture
async def frozen_night(prepared_dsn: str) -> AsyncIterator[tuple[RunningApi, FrozenClock]]:
    """The DST night in the database and an API whose clock stands at 04:30 that night."""
    await asyncio.to_thread(build_night, prepared_dsn)
    clock = FrozenClock(stockholm("2025-10-26T04:30"))
    async with running_api(prepared_dsn, clock=clock) as running:
        yield running, clock


async def test_without_a_date_the_report_is_tonight_not_the_night_before(
    frozen_night: tuple[RunningApi, FrozenClock],
) -> None:
    api, clock = frozen_night
    client = await api.login(COORDINATOR_A)
    # 04:30, after midnight: the night in progress began the evening before and
    # has its four alerts; the night before that had none.
    report = await report_of(client, None)
    assert (report["date"], report["phase"], report["tonight"]) == (
        "2025-10-25", "in_progress", True,
    )  # fmt: skip
    assert (report["window"], report["timezone"]) == ("22:00-07:00", "Europe/Stockholm")
    assert report["alerts"] == 4
    previous = await report_of(client, date(2025, 10, 24))
    assert (previous["alerts"], previous["tonight"], previous["phase"]) == (0, False, "ended")
    # During the day tonight is the coming night: on the 26th, the night of the 26th.
    clock.advance(stockholm("2025-10-26T14:00") - clock.now())
    later = await report_of(client, None)
    assert (later["date"], later["phase"], later["alerts"]) == ("2025-10-26", "coming", 0)


def pdf_text(body: bytes) -> str:
    """The PDF's text, its whitespace made single spaces."""
    reader = pypdf.PdfReader(io.BytesIO(body))
    return re.sub(r"\s+", " ", " ".join(page.extract_text() for page in reader.pages))


async def test_the_pdf_has_the_figures_of_the_json_report(
    frozen_night: tuple[RunningApi, FrozenClock],
) -> None:
    api, _ = frozen_night
    client = await api.login(COORDINATOR_A)
    report = await report_of(client)
    response = await client.get(PDF_URL, params={"date": NIGHT.isoformat()})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="night-report-{ORG_A}-2025-10-25.pdf"'
    )
    text = pdf_text(response.content)
    summary = [
        f"Organisation {ORG_A}",
        "Natten 2025-10-25 22:00 - 2025-10-26 07:00",
        "Nattfönster 22:00-07:00 (Europe/Stockholm)",
        f"Larm {report['alerts']}",
        f"Aldrig kvitterade {report['unacknowledged']}",
        f"Eskalerade {len(report['escalations'])}",
        f"Larmstormar {len(report['floods'])}",
        f"Väntade över 30 min {len(report['stale'])}",
    ]
    for figure in summary:
        assert figure in text, figure

    def times(who: str, alerts: int, ack: dict[str, Any], arr: dict[str, Any]) -> str:
        spans = [duration(d[k]) for d in (ack, arr) for k in ("median_s", "p90_s", "worst_s")]
        return " ".join([who, str(alerts), str(ack["count"]), *spans[:3], str(arr["count"]),
                         *spans[3:]])  # fmt: skip

    # Every row of the times table, with the JSON's figures, in the PDF's words.
    assert times("Alla", report["alerts"], report["acknowledge"], report["arrival"]) in text
    for p in report["by_priority"]:
        assert times(str(p["priority"]), p["alerts"], p["acknowledge"], p["arrival"]) in text
    # Rules by the rule set's title in the PDF's language; one no longer in the set by its kind.
    titles = {rule: words["sv"] for rule, words in report["titles"].items()}
    assert titles == {"alarm": "Larm", "not_back_in_bed": "Ej tillbaka i sängen",
                      "dose_not_taken": "Missad dos"}  # fmt: skip
    for k in report["by_kind"]:
        assert f"{k['priority']} {titles.get(k['rule_id'], k['kind'])} {k['count']}" in text
    assert "1 sensor.fall 1" in text and "alarm.button" not in text
    [escalation] = report["escalations"]
    assert f"1 sensor.fall {escalation['device_id']}" in text
    for s in report["stale"]:
        assert f"{titles[s['rule_id']]} {s['device_id']} {duration(s['waited_s'])}" in text
    [flood] = report["floods"]
    assert f"{flood['actor']} 2025-10-26 04:00 {flood['count']}" in text
    [chatter] = report["chattering"]
    assert f"{chatter['device_id']} Missad dos {chatter['alerts']} {chatter['repeats']}" in text
    # The charts are drawn into it too: their axis words are text in the PDF.
    assert "Antal larm" in text and "Timme (Europe/Stockholm)" in text and "Minuter" in text
    english = pdf_text((await client.get(PDF_URL, params={"lang": "en"})).content)
    assert f"Alerts {report['alerts']}" in english and "Never acknowledged 2" in english
    assert "1 Alarm 1" in english and "2 Not back in bed 1" in english
    assert "Missed dose" in english and "Missad dos" not in english


async def test_the_charts_are_svg_of_the_nights_figures(night_api: RunningApi) -> None:
    client = await night_api.login(AUDITOR_A)
    night = {"date": NIGHT.isoformat()}
    response = await client.get(CHART_URL, params={**night, "chart": "hourly", "lang": "en"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(response.text)
    svg = "{http://www.w3.org/2000/svg}"
    bars = [
        int(b.get("data-count", "")) for b in root.iter(f"{svg}rect") if b.get("class") == "bar"
    ]
    assert sum(bars) == 4  # the night's four alerts
    title = root.find(f"{svg}title")
    assert title is not None and title.text == "Alerts per hour and priority"
    wrong = await client.get(CHART_URL, params={**night, "chart": "pie"})
    assert wrong.status_code == 422
    assert "hourly" in wrong.text


async def test_the_rule_sets_night_window_wins_over_the_api_settings(prepared_dsn: str) -> None:
    # The settings' hours are only for an organisation whose rule set names no night.
    async with running_api(
        prepared_dsn, api={"night_starts_hour": 20, "night_ends_hour": 6}
    ) as api:
        report = await report_of(await api.login(COORDINATOR_A))
    assert report["window"] == "22:00-07:00"
    assert (report["start"], report["end"]) == (
        "2025-10-25T22:00:00+02:00", "2025-10-26T07:00:00+01:00",
    )  # fmt: skip
