"""The alert detail and open handover in headless Chromium against a real gateway."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.async_api import Browser, Locator, Page, Route, ViewportSize, expect

from gateway.registry import DeviceRecord
from gateway.store.devices import import_devices
from tests.browser.conftest import (
    GUN,
    NORA,
    OLLE,
    SCREENSHOTS,
    SENSORS,
    ConsoleGateway,
    PageErrors,
    open_console,
    open_detail,
    queued,
    section,
)
from tests.utils.services import count, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.db, pytest.mark.slow]

# Invented: no real home's way in.
NOTES = "Nyckelbox vid entrén, kod 2580. Hunden Bamse är snäll."
PHONE: ViewportSize = {"width": 390, "height": 844}


def detail_reads(gateway: ConsoleGateway, actor: str, alert_id: str) -> int:
    """How many views of an alert's detail the access log holds for one account."""
    return count(
        gateway.dsn,
        "SELECT count(*) FROM access_log WHERE actor = %s AND action = 'read'"
        " AND detail->>'alert_id' = %s",
        actor,
        alert_id,
    )


async def wait_reads(gateway: ConsoleGateway, actor: str, alert_id: str) -> None:
    """Wait until the access log holds a view of the alert by ``actor``."""
    await asyncio.to_thread(
        wait_until,
        lambda: detail_reads(gateway, actor, alert_id) > 0,
        timeout=10,
        what=f"{actor}'s view of {alert_id} in the access log",
    )


async def wait_stored(gateway: ConsoleGateway, table: str, alert_id: str, n: int) -> None:
    """Wait until ``table`` (alert_transitions, alert_comments) holds n rows of the alert."""
    await asyncio.to_thread(
        wait_until,
        lambda: (
            count(gateway.dsn, f"SELECT count(*) FROM {table} WHERE alert_id = %s", alert_id) == n
        ),
        timeout=10,
        what=f"{n} rows of {alert_id} in {table}",
    )


async def stored_trail(
    page: Page, gateway: ConsoleGateway, device: DeviceRecord, alert_id: str, n: int
) -> Locator:
    """Once the alert's n transitions are stored, open its detail: the trail's n items."""
    await wait_stored(gateway, "alert_transitions", alert_id, n)
    await open_detail(page, device)
    trail = section(page, "trail").locator("li")
    await expect(trail).to_have_count(n)
    return trail


async def resolve_from_card(page: Page, device: DeviceRecord, outcome: str) -> None:
    """Acknowledge and resolve the device's alert through its card."""
    item = queued(page, device)
    await item.locator('[data-action="acknowledge"]').click()
    await item.locator('[data-action="resolve"]').click()
    await page.locator("#resolve-dialog").get_by_label(outcome).check()
    await page.locator('[data-action="confirm-resolve"]').click()
    await expect(item).to_have_count(0)


async def test_opening_an_alert_shows_its_story_and_a_comment_reaches_another_session(
    browser: Browser, console_gateway: ConsoleGateway
) -> None:
    device = SENSORS[0]
    with_notes = device.model_copy(update={"entry_notes": NOTES})
    await asyncio.to_thread(import_devices, console_gateway.dsn, [with_notes])
    _, nora = await open_console(browser, console_gateway.url, NORA, viewport=PHONE, phone=True)

    # An earlier alarm of the home, handled and closed.
    await asyncio.to_thread(console_gateway.fall, device)
    await expect(queued(nora, device)).to_be_visible(timeout=5000)
    earlier = await queued(nora, device).get_attribute("data-alert-id")
    await resolve_from_card(nora, device, "Falsklarm")
    # An hour before tonight's fall the person left the bed, and went back.
    now = datetime.now(UTC)
    for event, ago in (("left_bed", timedelta(hours=1)), ("in_bed", timedelta(minutes=50))):
        body: dict[str, object] = {"event": event, "ts": (now - ago).isoformat()}
        await asyncio.to_thread(console_gateway.publish, device, body)
    await asyncio.to_thread(console_gateway.fall, device)
    item = queued(nora, device)
    await expect(item).to_be_visible(timeout=5000)
    alert_id = await item.get_attribute("data-alert-id")
    assert alert_id and alert_id != earlier
    await item.locator('[data-action="acknowledge"]').click()
    await expect(item).to_have_attribute("data-state", "acknowledged")
    trail = await stored_trail(nora, console_gateway, device, alert_id, 2)
    await expect(trail.nth(1)).to_contain_text("Kvitterat")
    await expect(trail.nth(1)).to_contain_text("Nora Nattsson")
    await expect(nora.locator("#detail-summary")).to_contain_text("Hanteras av Nora Nattsson")
    bed = section(nora, "events").locator('li[data-kind="sensor.left_bed"]')
    await expect(bed).to_contain_text("Lämnade sängen")
    await expect(
        section(nora, "earlier").locator(f'li[data-alert-id="{earlier}"]')
    ).to_contain_text("Falsklarm")
    await expect(section(nora, "devices")).to_contain_text(device.device_id)
    await expect(section(nora, "entry")).to_contain_text(NOTES)
    await expect(section(nora, "position")).to_have_count(0)  # this alarm carries none

    await nora.fill("#detail-comment", "Ringt dottern, hon är på väg")
    await nora.click("#detail-comment-send")
    comments = section(nora, "comments")
    await expect(comments).to_contain_text("Ringt dottern, hon är på väg")
    await expect(comments).to_contain_text("Nora Nattsson")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await nora.screenshot(path=str(SCREENSHOTS / "detail-phone.png"), full_page=True)

    # Another session, its detail open before the second comment, finds it on a refresh.
    _, olle = await open_console(browser, console_gateway.url, OLLE)
    await wait_stored(console_gateway, "alert_comments", alert_id, 1)
    await open_detail(olle, device)
    await expect(section(olle, "comments")).to_contain_text("Ringt dottern, hon är på väg")
    await nora.fill("#detail-comment", "Dottern är framme")
    await nora.click("#detail-comment-send")
    await wait_stored(console_gateway, "alert_comments", alert_id, 2)
    await olle.click("#detail-refresh")
    await expect(section(olle, "comments").locator("li")).to_have_count(2)
    await expect(section(olle, "comments")).to_contain_text("Dottern är framme")
    await olle.screenshot(path=str(SCREENSHOTS / "detail-desktop.png"), full_page=True)

    # Every view is an access-log read.
    await wait_reads(console_gateway, NORA.username, alert_id)
    await wait_reads(console_gateway, OLLE.username, alert_id)


async def test_an_auditor_sees_the_alert_but_not_the_way_in(
    browser: Browser, console_gateway: ConsoleGateway
) -> None:
    device = SENSORS[2]
    with_notes = device.model_copy(update={"entry_notes": NOTES})
    await asyncio.to_thread(import_devices, console_gateway.dsn, [with_notes])
    await asyncio.to_thread(console_gateway.fall, device)
    _, gun = await open_console(browser, console_gateway.url, GUN)
    await expect(queued(gun, device)).to_be_visible(timeout=5000)
    alert_id = await queued(gun, device).get_attribute("data-alert-id")
    assert alert_id

    await open_detail(gun, device)
    await expect(section(gun, "devices")).to_contain_text(device.device_id)
    await expect(section(gun, "entry")).to_have_count(0)
    assert "2580" not in await gun.locator("#detail-dialog").inner_text()
    await expect(gun.locator("#detail-comment-form")).to_be_hidden()
    await wait_reads(console_gateway, GUN.username, alert_id)


async def test_a_takeover_asks_first_and_the_trail_names_both(
    browser: Browser, console_gateway: ConsoleGateway, page_errors: PageErrors
) -> None:
    page_errors.allow("status of 409 (Conflict)")  # the silent takeover, refused on purpose
    device = SENSORS[4]
    (_, nora), (_, olle) = await asyncio.gather(
        open_console(browser, console_gateway.url, NORA),
        open_console(browser, console_gateway.url, OLLE, viewport=PHONE, phone=True),
    )
    await asyncio.to_thread(console_gateway.fall, device)
    at_nora, at_olle = queued(nora, device), queued(olle, device)
    await expect(at_nora).to_be_visible(timeout=5000)
    await at_nora.locator('[data-action="acknowledge"]').click()
    await expect(at_olle.locator(".handler")).to_have_text("Hanteras av Nora Nattsson")

    # The API refuses a step on Nora's alert that does not say it takes over.
    alert_id = await at_olle.get_attribute("data-alert-id")
    status = await olle.evaluate(
        """async (alertId) => {
            const me = await (await fetch("/api/auth/me")).json();
            const response = await fetch(`/api/alerts/${alertId}/en-route`, {
                method: "POST",
                headers: {"Content-Type": "application/json", "X-CSRF-Token": me.csrf_token},
                body: "{}",
            });
            return response.status;
        }""",
        alert_id,
    )
    assert status == 409

    # The console asks; a no changes nothing.
    await at_olle.locator('[data-action="en-route"]').click()
    question = olle.locator("#takeover-dialog")
    await expect(question).to_be_visible()
    await expect(olle.locator("#takeover-question")).to_have_text("Ta över från Nora Nattsson?")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await olle.screenshot(path=str(SCREENSHOTS / "takeover-phone.png"))
    await olle.click("#takeover-cancel")
    await expect(question).to_be_hidden()
    await expect(at_olle).to_have_attribute("data-state", "acknowledged")

    await at_olle.locator('[data-action="en-route"]').click()
    await olle.click("#takeover-confirm")
    await expect(at_nora).to_have_attribute("data-state", "en_route")
    await expect(at_nora.locator(".handler")).to_have_text("Hanteras av Olle Olsson")
    assert alert_id
    trail = await stored_trail(nora, console_gateway, device, alert_id, 4)
    await expect(trail.nth(2)).to_contain_text("Olle Olsson tog över från Nora Nattsson")
    await expect(trail.nth(3)).to_contain_text("På väg")
    await expect(trail.nth(3)).to_contain_text("Olle Olsson")
    await nora.screenshot(path=str(SCREENSHOTS / "takeover-trail.png"), full_page=True)


async def test_a_position_is_shown_as_coordinates_with_a_geo_link_and_no_map(
    browser: Browser, console_gateway: ConsoleGateway
) -> None:
    device = SENSORS[6]
    await asyncio.to_thread(console_gateway.fall, device)
    context, page = await open_console(
        browser, console_gateway.url, NORA, viewport=PHONE, phone=True
    )
    await expect(queued(page, device)).to_be_visible(timeout=5000)
    # A sensor's fall carries no position (a mobile alarm's SCAIP lge does, parsed by
    # another piece): the real answer gets one added, as that alarm's would have.
    position = {"lat": 59.329323, "lon": 18.068581, "at": "2026-12-02T02:14:05+00:00"}

    async def with_position(route: Route) -> None:
        response = await route.fetch()
        body = await response.json()
        body["alert"]["position"] = position
        await route.fulfill(response=response, json=body)

    await page.route(re.compile(r"/api/alerts/a(:|%3A)[0-9a-f]+$"), with_position)
    # Nothing is fetched from any other host (no map tiles).
    elsewhere: list[str] = []
    context.on(
        "request",
        lambda request: (
            None
            if request.url.startswith(console_gateway.url.rstrip("/"))
            else elsewhere.append(request.url)
        ),
    )
    await open_detail(page, device)
    shown = section(page, "position")
    await expect(shown).to_contain_text("59.32932, 18.06858")
    await expect(shown.locator("a")).to_have_attribute("href", "geo:59.329323,18.068581")
    assert elsewhere == []
