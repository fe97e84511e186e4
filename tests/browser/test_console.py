"""The night-patrol console in headless Chromium against a real gateway, broker and database."""

from __future__ import annotations

import asyncio
import re

import pytest
from playwright.async_api import Browser, Page, Route, ViewportSize, expect

from gateway.registry import DeviceRecord
from tests.browser.conftest import (
    FAST_SENSOR,
    FOREIGN,
    GUN,
    KARL,
    NORA,
    OLLE,
    SCREENSHOTS,
    SENSORS,
    SIV,
    ConsoleGateway,
    LinkCutter,
    PageErrors,
    log_in,
    open_console,
    open_detail,
    queued,
    section,
)
from tests.utils.services import count, rows, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.db, pytest.mark.slow]


async def not_reloaded(page: Page) -> None:
    """Mark the page, so a later check can tell it was never reloaded."""
    await page.evaluate("window.__sameDocument = true")


async def assert_not_reloaded(page: Page) -> None:
    """The page still holds the mark set by ``not_reloaded``."""
    assert await page.evaluate("window.__sameDocument === true"), "the page was reloaded"


def stored_alert(gateway: ConsoleGateway, device: DeviceRecord) -> tuple[object, ...]:
    """State, outcome and handler of the device's newest stored alert."""
    found = rows(
        gateway.dsn,
        "SELECT state, outcome, handled_by, alert_id FROM alerts WHERE device_id = %s"
        " ORDER BY opened_at DESC LIMIT 1",
        device.device_id,
    )
    return found[0] if found else ()


async def wait_stored(
    gateway: ConsoleGateway, device: DeviceRecord, expected: tuple[object, ...]
) -> None:
    """Wait until the database holds the device's alert with this state, outcome and handler."""
    await asyncio.to_thread(
        wait_until,
        lambda: stored_alert(gateway, device)[:3] == expected,
        timeout=10,
        what=f"{device.device_id}'s alert stored as {expected}",
    )


async def test_logging_in_through_the_form_opens_the_console(
    browser: Browser, console_gateway: ConsoleGateway, page_errors: PageErrors
) -> None:
    base = console_gateway.url.rstrip("/")
    page_errors.allow("status of 429 (Too Many Requests)")
    # The audit page is another page's work; it has no icon, so the browser asks for one.
    page_errors.allow("/favicon.ico)")
    context = await browser.new_context()
    page = await context.new_page()
    page_errors.watch(page)
    # A next= that leads off the site is ignored after the login.
    await page.goto(f"{base}/?next=//evil.example/steal")
    await expect(page.locator("#login")).to_be_visible()
    await expect(page.locator("#console")).to_be_hidden()

    await log_in(page, NORA, "not-the-password")
    await expect(page.locator("#login-error")).to_have_text("Fel användarnamn eller lösenord.")
    await expect(page.locator("#console")).to_be_hidden()

    await log_in(page, NORA)
    await expect(page.locator("#console")).to_be_visible()
    await expect(page.locator("#login")).to_be_hidden()
    assert page.url.startswith(base + "/"), page.url
    await expect(page.locator("#user-name")).to_have_text("Nora Nattsson · Nattpatrull")
    # An operator is not offered the audit view or the report.
    await expect(page.locator("#link-audit")).to_be_hidden()
    await expect(page.locator("#link-report")).to_be_hidden()
    await expect(page.locator("body")).to_have_attribute("data-connection", "live")

    # Logging out ends the session on the server, not only on the screen.
    await page.click("#logout")
    await expect(page.locator("#login")).to_be_visible()
    await page.reload()
    await expect(page.locator("#login")).to_be_visible()
    await expect(page.locator("#console")).to_be_hidden()

    # A rate-limited login shows the server's explanation.
    await page.route(
        "**/api/auth/login",
        lambda route: route.fulfill(
            status=429, json={"detail": "too many failed logins; try again in 900 s"}
        ),
    )
    await log_in(page, NORA)
    await expect(page.locator("#login-error")).to_have_text(
        "För många misslyckade försök. too many failed logins; try again in 900 s"
    )
    await page.unroute("**/api/auth/login")
    await context.close()

    # An auditor sent here from the audit view is taken back there after logging in,
    # and the console offers the audit view and the report.
    context = await browser.new_context()
    page = await context.new_page()
    page_errors.watch(page)
    await page.goto(f"{base}/?next=/audit")
    await log_in(page, GUN)
    await page.wait_for_url(f"{base}/audit")
    await page.goto(f"{base}/")
    await expect(page.locator("#console")).to_be_visible()
    await expect(page.locator("#link-audit")).to_be_visible()
    await expect(page.locator("#link-report")).to_be_visible()
    await context.close()


async def test_a_fall_appears_in_the_queue_within_two_seconds(
    browser: Browser, console_gateway: ConsoleGateway
) -> None:
    device = SENSORS[0]
    _, page = await open_console(browser, console_gateway.url, NORA)
    await not_reloaded(page)
    # Another organisation's fall first: the operator must never see it.
    await asyncio.to_thread(console_gateway.fall, FOREIGN)
    await asyncio.to_thread(console_gateway.fall, device)

    item = queued(page, device)
    await expect(item).to_be_visible(timeout=2000)
    await expect(item).to_have_attribute("data-state", "open")
    await expect(item).to_have_attribute("data-priority", "1")
    await expect(item).to_have_attribute("data-category", "fall")
    await expect(item.locator(".alert-title")).to_have_text("Fall")
    await expect(item.locator(".state-label")).to_have_text("Nytt")
    await expect(item.locator(".handler")).to_have_text("Ingen har kvitterat")
    await expect(item.locator(".unit")).to_have_text("Brukare: Norra 01")
    await expect(item.locator(".area")).to_have_text("Område: Norr")
    await expect(item.locator('[data-action="acknowledge"]')).to_have_text("Kvittera")
    # Screen readers are told; a priority-1 page went through the sound path.
    await expect(page.locator("#announcer")).to_have_text("Nytt larm, Fall, Norra 01, Norr")
    await expect(page.locator("body")).to_have_attribute("data-pages", "1")
    # The age counts up on its own.
    age = await item.locator(".alert-age").inner_text()
    await expect(item.locator(".alert-age")).not_to_have_text(age, timeout=2500)

    await asyncio.to_thread(
        wait_until,
        lambda: (
            count(
                console_gateway.dsn,
                "SELECT count(*) FROM alerts WHERE device_id = %s",
                FOREIGN.device_id,
            )
            == 1
        ),
        timeout=10,
        what="the other organisation's fall to be raised",
    )
    await expect(queued(page, FOREIGN)).to_have_count(0)
    await assert_not_reloaded(page)


async def test_the_next_step_can_be_taken_before_the_last_one_is_answered(
    browser: Browser, console_gateway: ConsoleGateway
) -> None:
    # The live stream shows "på väg" (and its "på plats" button) before the
    # answer to the "på väg" request is back; a tap on "på plats" then must count.
    device = SENSORS[8]
    _, page = await open_console(browser, console_gateway.url, NORA)
    await asyncio.to_thread(console_gateway.fall, device)
    item = queued(page, device)
    await expect(item).to_be_visible(timeout=2000)
    await item.locator('[data-action="acknowledge"]').click()
    await expect(item).to_have_attribute("data-state", "acknowledged")
    answer_held = asyncio.Event()

    async def hold_answer(route: Route) -> None:
        response = await route.fetch()  # the server has made the move by now
        await answer_held.wait()
        await route.fulfill(response=response)

    await page.route("**/en-route", hold_answer)
    await item.locator('[data-action="en-route"]').click()
    await expect(item).to_have_attribute("data-state", "en_route")  # from the stream
    await item.locator('[data-action="on-site"]').click()
    await expect(item).to_have_attribute("data-state", "on_site")
    answer_held.set()
    await expect(item.locator("[data-action]")).to_have_count(1)  # only "åtgärdat" left


async def test_acknowledge_and_resolve_from_the_console(
    browser: Browser, console_gateway: ConsoleGateway
) -> None:
    device = SENSORS[2]
    _, page = await open_console(browser, console_gateway.url, NORA)
    await asyncio.to_thread(console_gateway.fall, device)
    item = queued(page, device)
    await expect(item).to_be_visible(timeout=2000)

    await item.locator('[data-action="acknowledge"]').click()
    await expect(item).to_have_attribute("data-state", "acknowledged")
    await expect(item.locator(".handler")).to_have_text("Hanteras av Nora Nattsson")
    await expect(item.locator(".state-label")).to_have_text("Kvitterat")
    await item.locator('[data-action="en-route"]').click()
    await expect(item).to_have_attribute("data-state", "en_route")
    await item.locator('[data-action="on-site"]').click()
    await expect(item).to_have_attribute("data-state", "on_site")
    await expect(item.locator("[data-action]")).to_have_count(1)

    await item.locator('[data-action="resolve"]').click()
    dialog = page.locator("#resolve-dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog.locator(".outcome")).to_have_text(
        [
            "Hjälp given",
            "Vidare till sjuksköterska, läkare eller ambulans",
            "Ingen åtgärd behövdes",
            "Falsklarm",
            "Tekniskt fel",
        ]
    )
    # An outcome is required: confirming without one resolves nothing.
    await dialog.locator('[data-action="confirm-resolve"]').click()
    await expect(dialog).to_be_visible()
    await expect(item).to_have_attribute("data-state", "on_site")

    await dialog.get_by_label("Hjälp given").check()
    await page.fill("#resolve-note", "Hjälpte upp, inga synliga skador.")
    await dialog.locator('[data-action="confirm-resolve"]').click()
    await expect(dialog).to_be_hidden()
    await expect(item).to_have_count(0)
    await expect(page.locator("#notice")).to_have_text("Larmet är åtgärdat.")

    await wait_stored(console_gateway, device, ("resolved", "help_given", "nora.natt"))
    alert_id = stored_alert(console_gateway, device)[3]
    trail = rows(
        console_gateway.dsn,
        "SELECT actor, to_state, note FROM alert_transitions WHERE alert_id = %s ORDER BY at",
        alert_id,
    )
    assert [t[1] for t in trail] == ["open", "acknowledged", "en_route", "on_site", "resolved"]
    assert {t[0] for t in trail[1:]} == {"nora.natt"}
    assert trail[-1][2] == "Hjälpte upp, inga synliga skador."


async def test_a_second_session_sees_each_change_without_reload(
    browser: Browser, console_gateway: ConsoleGateway, page_errors: PageErrors
) -> None:
    # Olle's late resolve is refused (409) on purpose.
    page_errors.allow("status of 409 (Conflict)")
    device = SENSORS[4]
    (_, nora), (_, olle) = await asyncio.gather(
        open_console(browser, console_gateway.url, NORA),
        open_console(browser, console_gateway.url, OLLE),
    )
    await not_reloaded(olle)
    await not_reloaded(nora)
    await asyncio.to_thread(console_gateway.fall, device)
    at_nora, at_olle = queued(nora, device), queued(olle, device)
    await expect(at_nora).to_be_visible(timeout=2000)
    await expect(at_olle).to_be_visible(timeout=2000)

    await at_nora.locator('[data-action="acknowledge"]').click()
    await expect(at_olle).to_have_attribute("data-state", "acknowledged")
    await expect(at_olle.locator(".handler")).to_have_text("Hanteras av Nora Nattsson")
    await expect(at_olle.locator("[data-action]")).to_have_text(["På väg", "Åtgärdat…"])

    # Olle takes over on the road, saying so; Nora's console follows.
    await at_olle.locator('[data-action="en-route"]').click()
    await expect(olle.locator("#takeover-question")).to_have_text("Ta över från Nora Nattsson?")
    await olle.locator("#takeover-confirm").click()
    await expect(at_nora).to_have_attribute("data-state", "en_route")
    await expect(at_nora.locator(".handler")).to_have_text("Hanteras av Olle Olsson")

    # Both open the resolve dialog; Nora is first (taking it back). Olle is told, not left guessing.
    await at_olle.locator('[data-action="resolve"]').click()
    await at_nora.locator('[data-action="resolve"]').click()
    await nora.locator("#resolve-dialog").get_by_label("Falsklarm").check()
    await nora.locator('[data-action="confirm-resolve"]').click()
    await nora.locator("#takeover-confirm").click()
    await expect(at_nora).to_have_count(0)
    await expect(at_olle).to_have_count(0)
    await olle.locator("#resolve-dialog").get_by_label("Hjälp given").check()
    await olle.locator('[data-action="confirm-resolve"]').click()
    await expect(olle.locator("#notice")).to_contain_text("Någon annan har redan ändrat larmet")
    await expect(olle.locator("#resolve-dialog")).to_be_hidden()

    await wait_stored(console_gateway, device, ("resolved", "false_alarm", "nora.natt"))
    await assert_not_reloaded(olle)
    await assert_not_reloaded(nora)


async def test_switching_to_english_relabels_the_page(
    browser: Browser, console_gateway: ConsoleGateway
) -> None:
    device = SENSORS[6]
    _, page = await open_console(browser, console_gateway.url, NORA)
    await asyncio.to_thread(console_gateway.fall, device)
    item = queued(page, device)
    await expect(item).to_be_visible(timeout=2000)
    swedish = {
        "h1": "Nattpatrullen",
        "#queue-heading > span[data-i18n]": "Öppna larm",
        "#logout": "Logga ut",
        "#lang-switch": "English",
        "#health-heading": "Enhetsstatus",
        "#area-filter option[value='']": "Alla områden",
    }
    english = {
        "h1": "Night patrol",
        "#queue-heading > span[data-i18n]": "Open alerts",
        "#logout": "Log out",
        "#lang-switch": "Svenska",
        "#health-heading": "Device health",
        "#area-filter option[value='']": "All areas",
    }
    for selector, text in swedish.items():
        await expect(page.locator(selector)).to_have_text(text)
    await expect(item.locator(".state-label")).to_have_text("Nytt")
    await expect(page.locator("html")).to_have_attribute("lang", "sv")
    await not_reloaded(page)

    await page.click("#lang-switch")
    for selector, text in english.items():
        await expect(page.locator(selector)).to_have_text(text)
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    # What the script drew itself is relabelled too.
    await expect(item.locator(".state-label")).to_have_text("New")
    await expect(item.locator(".unit")).to_have_text("Care recipient: Norra 07")
    await expect(item.locator('[data-action="acknowledge"]')).to_have_text("Acknowledge")
    await expect(page.locator("#user-name")).to_contain_text("Night patrol")
    await item.locator('[data-action="acknowledge"]').click()
    await expect(item.locator(".handler")).to_have_text("Handled by Nora Nattsson")
    await expect(item.locator("[data-action]")).to_have_text(["En route", "Resolve…"])
    await assert_not_reloaded(page)

    # The choice is remembered on this device.
    await page.reload()
    await expect(page.locator("h1")).to_have_text("Night patrol")
    await page.click("#lang-switch")
    await expect(page.locator("h1")).to_have_text("Nattpatrullen")
    await expect(item.locator(".state-label")).to_have_text("Kvitterat")


async def test_area_filter_and_keyboard_handling(
    browser: Browser, console_gateway: ConsoleGateway
) -> None:
    north, south = SENSORS[10], SENSORS[11]
    _, page = await open_console(browser, console_gateway.url, NORA)
    await asyncio.to_thread(console_gateway.fall, north)
    await asyncio.to_thread(console_gateway.fall, south)
    await expect(queued(page, north)).to_be_visible(timeout=2000)
    await expect(queued(page, south)).to_be_visible(timeout=2000)

    await page.select_option("#area-filter", "Söder")
    await expect(queued(page, north)).to_have_count(0)
    await expect(queued(page, south)).to_be_visible()
    areas = await page.locator("#queue li").evaluate_all("items => items.map(i => i.dataset.area)")
    assert all(a == "Söder" for a in areas), areas
    await page.select_option("#area-filter", "")
    await expect(queued(page, north)).to_be_visible()

    # Keyboard only: reach the queue, move to the alert, Enter takes its next step.
    await page.keyboard.press("j")
    assert await page.evaluate("document.activeElement.matches('#queue li')")
    for _ in range(20):
        focused = await page.evaluate("document.activeElement.dataset.deviceId")
        if focused == south.device_id:
            break
        await page.keyboard.press("ArrowDown")
    else:
        pytest.fail("ArrowDown never reached the alert")
    await page.keyboard.press("Enter")
    await expect(queued(page, south)).to_have_attribute("data-state", "acknowledged")
    # Focus stays on the alert; Tab reaches its buttons, and a pressed button hands
    # focus on to the next step instead of dropping it.
    assert await page.evaluate("document.activeElement.dataset.deviceId") == south.device_id
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.dataset.action") == "en-route"
    await page.keyboard.press("Enter")
    await expect(queued(page, south)).to_have_attribute("data-state", "en_route")
    assert await page.evaluate("document.activeElement.dataset.action") == "on-site"
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.dataset.action") == "resolve"
    await page.keyboard.press("Enter")
    await expect(page.locator("#resolve-dialog")).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(page.locator("#resolve-dialog")).to_be_hidden()
    assert await page.evaluate("document.activeElement.dataset.deviceId") == south.device_id
    # The mute toggle answers its shortcut and is remembered.
    await expect(page.locator("#mute-toggle")).to_have_attribute("aria-pressed", "false")
    await page.keyboard.press("m")
    await expect(page.locator("#mute-toggle")).to_have_attribute("aria-pressed", "true")
    assert await page.evaluate("localStorage.getItem('wgw.mute')") == "1"


async def test_screenshots_on_desktop_and_phone(
    browser: Browser, console_gateway: ConsoleGateway
) -> None:
    fallen, low = SENSORS[12], SENSORS[13]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(console_gateway.fall, fallen)
    await asyncio.to_thread(
        console_gateway.publish, low, {"kind": "device.battery_low", "battery": 9}
    )
    viewports: list[tuple[str, ViewportSize, bool]] = [
        ("console-desktop", {"width": 1280, "height": 800}, False),
        ("console-phone", {"width": 390, "height": 844}, True),
    ]
    for name, viewport, phone in viewports:
        context, page = await open_console(
            browser, console_gateway.url, NORA, viewport=viewport, phone=phone
        )
        await expect(queued(page, fallen)).to_be_visible()
        await expect(queued(page, low)).to_have_attribute("data-category", "battery")
        health = page.locator(f'#health-list li[data-device-id="{low.device_id}"]')
        await expect(health).to_contain_text("Låg batterinivå 9 %", timeout=5000)
        # Fits the screen: nothing scrolls sideways, every button is a finger wide.
        assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), (
            f"{name}: the page scrolls sideways"
        )
        heights = await page.locator("button:visible").evaluate_all(
            "buttons => buttons.map(b => b.getBoundingClientRect().height)"
        )
        assert heights and min(heights) >= 44, heights
        path = SCREENSHOTS / f"{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 10_000
        await context.close()


async def test_connection_lost_banner_and_catch_up(
    browser: Browser, console_gateway: ConsoleGateway, page_errors: PageErrors
) -> None:
    # Last in the module: it restarts the shared gateway.
    before, missed, during = SENSORS[15], SENSORS[16], SENSORS[17]
    async with LinkCutter(console_gateway.port) as link:
        # The broken streams are the point here; any other failure still counts.
        page_errors.allow(f"({link.url}api/stream)", f"({link.url}healthz)")
        _, page = await open_console(browser, link.url, NORA)
        await not_reloaded(page)
        banner = page.locator("#connection-lost")
        await expect(banner).to_be_hidden()
        await asyncio.to_thread(console_gateway.fall, before)
        await expect(queued(page, before)).to_be_visible(timeout=2000)

        # The network drops: the banner says so at once. A fall is raised meanwhile;
        # back online, the stream resumes from its last event id and brings it.
        link.cut()
        await expect(banner).to_be_visible(timeout=3000)
        await expect(banner).to_contain_text("Ingen anslutning — försöker igen…")
        await asyncio.to_thread(console_gateway.fall, missed)
        await asyncio.to_thread(
            wait_until,
            lambda: stored_alert(console_gateway, missed)[:1] == ("open",),
            timeout=10,
            what="the fall to be raised while the console was cut off",
        )
        await expect(queued(page, missed)).to_have_count(0)
        await expect(banner).to_be_visible()
        link.restore()
        await expect(banner).to_be_hidden(timeout=10_000)
        await expect(queued(page, missed)).to_be_visible(timeout=3000)

        # The gateway itself goes down and comes back: a fall made meanwhile waits in
        # the broker and appears once the console has reconnected on its own.
        before_starts = len(console_gateway.process.console_urls())
        assert await asyncio.to_thread(console_gateway.process.stop) == 0
        await expect(banner).to_be_visible(timeout=3000)
        await asyncio.to_thread(console_gateway.fall, during)
        await asyncio.to_thread(console_gateway.process.start)
        await asyncio.to_thread(console_gateway.wait_for_console, before_starts)
        await expect(banner).to_be_hidden(timeout=10_000)
        await expect(queued(page, during)).to_be_visible(timeout=5000)
        await expect(queued(page, before)).to_be_visible()
        await expect(queued(page, missed)).to_be_visible()
        # Each of the three falls paged once: live, replayed, and after the restart.
        await expect(page.locator("body")).to_have_attribute("data-pages", "3")
        await assert_not_reloaded(page)


async def test_an_escalation_counts_down_and_reaches_its_recipients_only(
    browser: Browser, console_gateway: ConsoleGateway
) -> None:
    # FAST_ORG's rule set: a fall escalates after 30 s to group:nattledning (Siv's,
    # not Karl's), and after an hour to every operator.
    (_, siv), (_, karl) = await asyncio.gather(
        open_console(browser, console_gateway.url, SIV),
        open_console(browser, console_gateway.url, KARL),
    )
    await asyncio.to_thread(console_gateway.fall, FAST_SENSOR)
    at_siv, at_karl = queued(siv, FAST_SENSOR), queued(karl, FAST_SENSOR)
    await expect(at_siv).to_be_visible(timeout=5000)
    await expect(at_karl).to_be_visible(timeout=5000)
    # Before the first tier: a countdown to it, on every console, and no highlight.
    for item in (at_siv, at_karl):
        await expect(item.locator(".escalation-next")).to_have_text(
            re.compile(r"^Eskaleras om 00:([0-2]\d|30) till gruppen nattledning$")
        )
        await expect(item.locator(".badge-to-me")).to_be_hidden()
    first = await at_siv.locator(".escalation-next").text_content()
    # It counts down by the second without a word from the server.
    await expect(at_siv.locator(".escalation-next")).not_to_have_text(first or "")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await siv.screenshot(path=str(SCREENSHOTS / "escalation-countdown.png"))

    # The tier is reached: Siv is told it is hers, Karl sees whom it went to.
    await expect(at_siv).to_have_attribute("data-escalation-tier", "1", timeout=45_000)
    await expect(at_siv.locator(".badge-to-me")).to_have_text(
        re.compile("eskalerat till dig", re.IGNORECASE)
    )
    await expect(at_siv).to_have_class(re.compile(r"\bescalated-to-me\b"))
    await expect(at_karl).to_have_attribute("data-escalation-tier", "1", timeout=10_000)
    await expect(at_karl.locator(".badge-to-me")).to_be_hidden()
    await expect(at_karl).not_to_have_class(re.compile(r"\bescalated-to-me\b"))
    await expect(at_karl.locator(".escalation-to")).to_have_text(
        "Eskalerat till gruppen nattledning"
    )
    # The next tier, an hour after the fall, to every operator.
    for item in (at_siv, at_karl):
        await expect(item.locator(".escalation-next")).to_have_text(
            re.compile(r"^Eskaleras om 59:\d\d till Nattpatrull$")
        )
    await siv.screenshot(path=str(SCREENSHOTS / "escalation-to-you.png"))
    await siv.click("#lang-switch")
    await expect(at_siv.locator(".badge-to-me")).to_have_text("Escalated to you")
    await expect(at_siv.locator(".escalation-next")).to_have_text(
        re.compile(r"^Escalates in 59:\d\d to Night patrol$")
    )
    await siv.click("#lang-switch")

    # Karl takes it: the highlight goes and no further tier is counted down.
    await at_karl.locator('[data-action="acknowledge"]').click()
    await expect(at_siv).to_have_attribute("data-state", "acknowledged")
    await expect(at_siv.locator(".badge-to-me")).to_be_hidden()
    await expect(at_siv.locator(".escalation-next")).to_be_hidden()
    await expect(at_siv.locator(".escalation-to")).to_have_text(
        "Eskalerat till gruppen nattledning"
    )
    # The detail's trail has the tier reached, in time order between the moves,
    # named with the card's words for its recipients.
    alert_id = await at_siv.get_attribute("data-alert-id")
    await asyncio.to_thread(
        wait_until,
        lambda: (
            count(
                console_gateway.dsn,
                "SELECT (SELECT count(*) FROM alert_transitions WHERE alert_id = %s)"
                " + (SELECT count(*) FROM alert_escalations WHERE alert_id = %s)",
                alert_id,
                alert_id,
            )
            == 3
        ),
        timeout=10,
        what="the acknowledgement and the tier stored",
    )
    await open_detail(siv, FAST_SENSOR)
    trail = section(siv, "trail").locator("li")
    await expect(trail).to_have_count(3)
    await expect(trail.nth(1)).to_have_attribute("data-tier", "1")
    await expect(trail.nth(1)).to_contain_text("Eskalerat till gruppen nattledning (nivå 1)")
    await expect(trail.nth(2)).to_contain_text("Kvitterat")
    await siv.click("#detail-close")
    await siv.click("#lang-switch")
    await open_detail(siv, FAST_SENSOR)
    await expect(trail.nth(1)).to_contain_text("Escalated to group nattledning (tier 1)")
