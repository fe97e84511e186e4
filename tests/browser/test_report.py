"""The night report in headless Chromium: it opens on tonight and draws its SVG charts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from playwright.async_api import Browser, expect

from gateway.night_report import night_window, tonight
from rules.calendar import DailyWindow
from tests.browser.conftest import GUN, ORG, SCREENSHOTS, ConsoleGateway, open_console
from tests.gateway.test_report_store import insert_alert, move

pytestmark = [pytest.mark.broker, pytest.mark.db, pytest.mark.slow]

# The shipped rule set's night window, which the gateway under test runs.
NIGHT = DailyWindow.parse("22:00-07:00")


@pytest.fixture(scope="module")
def two_nights(console_gateway: ConsoleGateway) -> Iterator[ConsoleGateway]:
    """Four alerts tonight and one the night before, stored as the gateway would store them.

    Tonight is worked out from the real clock the gateway runs on: after
    midnight the night in progress, during the day the coming one (whose
    alerts then lie ahead; the report counts what the store holds).
    """
    start, _ = night_window(tonight(datetime.now(UTC), NIGHT), NIGHT)
    with psycopg.connect(console_gateway.dsn) as conn:
        for n, (minutes, priority) in enumerate([(5, 1), (20, 1), (70, 2), (130, 3)]):
            opened = start + timedelta(minutes=minutes)
            alert_id = f"report-tonight-{n}"
            # The last one's rule is no longer in the rule set: it is shown by its kind.
            insert_alert(conn, alert_id, kind="alarm.button", rule="alarm" if n < 3 else None,
                         priority=priority, opened=opened, org=ORG,
                         closed=opened + timedelta(minutes=30))  # fmt: skip
            move(conn, alert_id, opened + timedelta(minutes=2 + n), "gun.granskare", "open",
                 "acknowledged")  # fmt: skip
        insert_alert(conn, "report-last-night", kind="alarm.button", priority=1,
                     opened=start - timedelta(days=1) + timedelta(minutes=30), org=ORG,
                     closed=start - timedelta(days=1) + timedelta(minutes=40))  # fmt: skip
    yield console_gateway


async def test_the_report_opens_on_tonight_with_its_svg_charts(
    browser: Browser, two_nights: ConsoleGateway
) -> None:
    context, page = await open_console(browser, two_nights.url, GUN, path="/report")
    await expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=15_000)
    expected = tonight(datetime.now(UTC), NIGHT).isoformat()
    # Opened without choosing: tonight's date, tonight's four alerts (the night
    # before had one), and the page says which night it took and why.
    await expect(page.locator("#r-date")).to_have_value(expected)
    await expect(page.locator("#report-night")).to_have_attribute("data-tonight", "true")
    await expect(page.locator("#report-night")).to_contain_text("I natt")
    await expect(page.locator("#report-night")).to_contain_text("22:00-07:00")
    await expect(page.locator("#report-tonight-rule")).to_contain_text("nattfönster")
    await expect(page.locator("#report-summary dd").nth(1)).to_have_text("4")
    hourly = page.locator("#chart-hourly svg[role='img']")
    await expect(hourly).to_be_visible()
    await expect(hourly.locator("title").first).to_have_text("Larm per timme och prioritet")
    counts = await hourly.locator("rect.bar").evaluate_all(
        "bars => bars.map(b => Number(b.dataset.count))"
    )
    assert sum(counts) == 4
    spread = page.locator("#chart-spread svg[role='img']")
    await expect(spread).to_be_visible()
    everyone = spread.locator("g.box[data-measure='acknowledge'][data-priority='all']")
    await expect(everyone).to_have_attribute("data-count", "4")
    # The acknowledgements came after 2, 3, 4 and 5 minutes: a median of 3.5.
    await expect(everyone).to_have_attribute("data-median-s", "210")
    # Rules are named by the rule set's titles, in the page's language.
    by_kind = page.locator("#report-by-kind tbody tr")
    await expect(by_kind.nth(0).locator("td").nth(1)).to_have_text("Larm")
    await expect(by_kind.nth(2).locator("td").nth(1)).to_have_text("alarm.button")
    pdf = await page.locator("#report-pdf").get_attribute("href")
    assert pdf is not None and f"org={ORG}" in pdf and f"date={expected}" in pdf
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "night-report-tonight.png"), full_page=True)

    # In English the charts are drawn again in English.
    await page.click("#lang-switch")
    await expect(hourly.locator("title").first).to_have_text("Alerts per hour and priority")
    await expect(page.locator("#report-night")).to_contain_text("Tonight")
    await expect(by_kind.nth(0).locator("td").nth(1)).to_have_text("Alarm")

    # Another night, then back to tonight with one press.
    previous = (datetime.fromisoformat(expected) - timedelta(days=1)).date().isoformat()
    await page.fill("#r-date", previous)
    await page.click("#report-submit")
    await expect(page.locator("#report-night")).to_have_attribute("data-tonight", "false")
    await expect(page.locator("#report-summary dd").nth(1)).to_have_text("1")
    await page.click("#report-tonight")
    await expect(page.locator("#r-date")).to_have_value(expected)
    await expect(page.locator("#report-summary dd").nth(1)).to_have_text("4")
    await context.close()
