"""The console as an installable app in Chromium: its service worker shows pushed alerts.

No push service is reachable here, so the push message is handed to the
service worker through the DevTools protocol (ServiceWorker.deliverPushMessage),
as the browser does with what its push service brings.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import psycopg
import pytest
from playwright.async_api import Browser, BrowserContext, CDPSession, Page, Worker, expect

from gateway.push import push_payload
from tests.browser.conftest import (
    NORA,
    SCREENSHOTS,
    SENSORS,
    ConsoleGateway,
    log_in,
)
from tests.utils.push_service import BrowserKeys, PushService, vapid_claims
from tests.utils.services import rows

pytestmark = [pytest.mark.broker, pytest.mark.db, pytest.mark.slow]


async def _poll(check: Callable[[], Awaitable[Any]], what: str, within_s: float = 20.0) -> Any:
    """The first truthy result of ``check``, polled; fail naming ``what`` after ``within_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not (result := await check()):
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within_s:.0f} s waiting for {what}")
        await asyncio.sleep(0.1)
    return result


async def _console(
    browser: Browser, url: str, *, fake_clock: bool = False
) -> tuple[BrowserContext, Page]:
    """A logged-in console allowed to show notifications, its service worker active."""
    # A Swedish phone: the worker writes its notifications in the phone's language.
    context = await browser.new_context(
        viewport={"width": 420, "height": 860}, is_mobile=True, locale="sv-SE"
    )
    await context.grant_permissions(["notifications"], origin=url.rstrip("/"))
    page = await context.new_page()
    if fake_clock:
        await page.clock.install()
    await page.goto(url)
    await log_in(page, NORA)
    await expect(page.locator("body")).to_have_attribute("data-connection", "live", timeout=10_000)
    await expect(page.locator("body")).to_have_attribute("data-worker", "registered")
    state = await page.evaluate("navigator.serviceWorker.ready.then((r) => r.active.state)")
    assert state in {"activating", "activated"}
    return context, page


async def _registration_id(cdp: CDPSession, scope: str) -> str:
    """The DevTools id of the service worker registration for ``scope``."""
    found: dict[str, str] = {}

    def seen(event: dict[str, Any]) -> None:
        for registration in event["registrations"]:
            if not registration["isDeleted"]:
                found[registration["scopeURL"]] = registration["registrationId"]

    cdp.on("ServiceWorker.workerRegistrationUpdated", seen)
    await cdp.send("ServiceWorker.enable")

    async def ours() -> str | None:
        return found.get(scope)

    result: str = await _poll(ours, f"the service worker registration of {scope}")
    return result


async def _notifications(page: Page) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = await page.evaluate(
        """navigator.serviceWorker.ready
             .then((r) => r.getNotifications())
             .then((all) => all.map((n) => ({title: n.title, body: n.body, tag: n.tag,
                                              data: n.data,
                                              requireInteraction: n.requireInteraction})))"""
    )
    return result


def _forget_subscriptions(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute("DELETE FROM push_subscriptions")


async def _worker(context: BrowserContext, url: str) -> Worker:
    async def found() -> Worker | None:
        return next((w for w in context.service_workers if w.url == f"{url}sw.js"), None)

    worker: Worker = await _poll(found, "the service worker to be attached")
    return worker


async def _fall(page: Page, gateway: ConsoleGateway, n: int) -> tuple[str, dict[str, Any]]:
    """Raise a fall on sensor ``n``; its alert id and its card's data as the queue has it."""
    device = SENSORS[n]
    await asyncio.to_thread(gateway.fall, device)
    card = page.locator(f'#queue li[data-device-id="{device.device_id}"]')
    await expect(card).to_be_visible(timeout=5000)
    alert_id = await card.get_attribute("data-alert-id")
    assert alert_id
    alert = {"alert_id": alert_id, "title": "Fall", "priority": 1,
             "unit": device.unit, "area": device.area}  # fmt: skip
    return alert_id, alert


async def test_the_console_is_an_installable_app(console_gateway: ConsoleGateway) -> None:
    async with httpx.AsyncClient(base_url=console_gateway.url) as client:
        manifest = await client.get("/manifest.webmanifest")
        worker = await client.get("/sw.js")
        icon = await client.get("/static/icons/icon-192.png")
    assert manifest.headers["content-type"] == "application/manifest+json"
    app = manifest.json()
    assert app["start_url"] == "/" and app["scope"] == "/" and app["display"] == "standalone"
    assert {i["sizes"] for i in app["icons"]} >= {"192x192", "512x512"}
    # Served from the root with a JavaScript type: its scope covers the console at /.
    assert worker.headers["content-type"].startswith("text/javascript")
    assert "notificationclick" in worker.text
    assert icon.headers["content-type"] == "image/png"


async def test_a_priority_1_keeps_sounding_until_it_is_acknowledged_or_muted(
    browser: Browser, console_gateway: ConsoleGateway
) -> None:
    # First in the module: no other open priority 1 of this gateway's may sound meanwhile.
    _, page = await _console(browser, console_gateway.url, fake_clock=True)
    await page.locator("#queue-section").click()  # a touch: the browser lets audio start
    alert_id, _ = await _fall(page, console_gateway, 10)
    body = page.locator("body")
    await expect(body).to_have_attribute("data-pages", "1")
    # From here the page's time moves only when told: each 15 s repeats the page once.
    await page.clock.pause_at(await page.evaluate("Date.now() + 1000"))

    async def counts() -> tuple[int, int]:
        repeats, sounds = await page.evaluate(
            "[document.body.dataset.repeats, document.body.dataset.soundsPlayed]"
        )
        return int(repeats or 0), int(sounds or 0)

    repeats, sounds = await counts()
    await page.clock.run_for(30_000)
    assert (await counts())[0] == repeats + 2
    # (The first repeat may fall within a sound's length of the page itself: one sound.)
    heard = (await counts())[1]
    assert heard >= sounds + 1

    await page.locator("#mute-toggle").click()  # muted: it repeats, silently
    await page.clock.run_for(30_000)
    assert await counts() == (repeats + 4, heard)
    await page.locator("#mute-toggle").click()
    await page.clock.run_for(15_000)
    assert await counts() == (repeats + 5, heard + 1)

    card = page.locator(f'#queue li[data-alert-id="{alert_id}"]')
    await card.locator('[data-action="acknowledge"]').click()
    await expect(card).to_have_attribute("data-state", "acknowledged")
    await page.clock.run_for(60_000)
    assert await counts() == (repeats + 5, heard + 1)


async def test_a_pushed_alert_is_shown_and_a_tap_opens_it(
    browser: Browser, console_gateway: ConsoleGateway
) -> None:
    url = console_gateway.url
    context, page = await _console(browser, url)
    cdp = await context.new_cdp_session(page)
    registration = await _registration_id(cdp, url)
    alert_id, alert = await _fall(page, console_gateway, 11)
    # The page is somewhere else in the queue: the tap must bring the alert forward.
    await page.evaluate("window.scrollTo(0, 0)")

    # What the gateway's Web Push message carries, as the push service would deliver it.
    payload = push_payload(alert, escalated=False, lang="sv")
    await cdp.send(
        "ServiceWorker.deliverPushMessage",
        {"origin": url.rstrip("/"), "registrationId": registration, "data": json.dumps(payload)},
    )

    async def shown() -> list[dict[str, Any]]:
        return [n for n in await _notifications(page) if n["tag"] == f"alert:{alert_id}"]

    [notification] = await _poll(shown, "the notification to be shown")
    assert notification["title"] == "Prio 1 · Fall"
    assert notification["body"] == f"{SENSORS[11].unit}, {SENSORS[11].area}"
    assert notification["requireInteraction"] is True
    assert notification["data"] == {"alert_id": alert_id, "url": payload["url"]}

    # The tap: the worker's notificationclick path, run in the worker itself.
    worker = await _worker(context, url)
    opened = await worker.evaluate(
        """async (tag) => {
             const [n] = await self.registration.getNotifications({ tag });
             const client = await openAlert(n.data);
             n.close();
             return client.url;
           }""",
        f"alert:{alert_id}",
    )
    assert opened.startswith(url)
    card = page.locator(f'#queue li[data-alert-id="{alert_id}"]')
    await expect(card).to_have_class("alert linked")
    # The console opens that alert's detail; closed, the card it came from has the focus.
    await expect(page.locator("#detail-dialog")).to_be_visible()
    await expect(page.locator("#detail-summary")).to_contain_text(SENSORS[11].unit)
    await page.click("#detail-close")
    await expect(card).to_be_focused()
    await expect(card).to_be_in_viewport()
    assert page.url == f"{url}?alert={payload['url'].split('=', 1)[1]}"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "push-opened-alert-phone.png"), full_page=True)


async def test_a_link_to_an_alert_opens_the_console_on_it(
    browser: Browser, console_gateway: ConsoleGateway
) -> None:
    # A tap with no console open opens a window on the alert's URL: the same as this link.
    _, page = await _console(browser, console_gateway.url)
    alert_id, alert = await _fall(page, console_gateway, 12)
    await page.goto(
        console_gateway.url.rstrip("/") + push_payload(alert, escalated=False, lang="sv")["url"]
    )
    card = page.locator(f'#queue li[data-alert-id="{alert_id}"]')
    await expect(card).to_have_class("alert linked", timeout=10_000)
    await expect(page.locator("#detail-dialog")).to_be_visible()
    await expect(page.locator("#detail-summary")).to_contain_text(SENSORS[12].unit)
    await page.click("#detail-close")
    await expect(card).to_be_focused()
    await expect(page.locator("#push-toggle")).to_be_visible()
    await expect(page.locator("#push-toggle")).to_have_text("Avisering av")
    await page.locator("#lang-switch").click()
    await expect(page.locator("#push-toggle")).to_have_text("Notifications off")
    await expect(page.locator("#push-toggle")).to_have_attribute(
        "title", "Alerts on this phone while the console is closed"
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "push-linked-alert-phone.png"), full_page=True)


# The browser's own push service registration (pushManager.subscribe) cannot reach
# a push service from here; this stands in for it, with an endpoint on this machine.
_STAND_IN_SUBSCRIBE = """
  const subscription = %s;
  // Kept like the browser keeps it: across reloads.
  const subscribed = () => localStorage.getItem("stand-in-subscribed") === "1";
  PushManager.prototype.getSubscription = async () => subscribed() ? fake() : null;
  PushManager.prototype.subscribe = async (options) => {
    window.__subscribeOptions = { userVisibleOnly: options.userVisibleOnly,
                                  key: options.applicationServerKey };
    localStorage.setItem("stand-in-subscribed", "1");
    return fake();
  };
  function fake() {
    return { endpoint: subscription.endpoint, toJSON: () => subscription,
             unsubscribe: async () => {
               localStorage.removeItem("stand-in-subscribed");
               return true;
             } };
  }
"""


async def test_turning_notifications_on_brings_the_next_alarm_to_the_phone(
    browser: Browser, console_gateway: ConsoleGateway
) -> None:
    url = console_gateway.url
    keys = BrowserKeys()
    async with PushService().running() as service:
        subscription = keys.subscription(service.endpoint("noras-phone"))
        context = await browser.new_context(locale="sv-SE")
        await context.grant_permissions(["notifications"], origin=url.rstrip("/"))
        await context.add_init_script(_STAND_IN_SUBSCRIBE % json.dumps(subscription))
        page = await context.new_page()
        await page.goto(url)
        await log_in(page, NORA)
        toggle = page.locator("#push-toggle")
        await expect(toggle).to_have_attribute("aria-pressed", "false", timeout=10_000)

        await toggle.click()
        await expect(toggle).to_have_attribute("aria-pressed", "true")
        await expect(toggle).to_have_text("Avisering på")
        await expect(page.locator("#notice")).to_have_text(
            "Larm visas nu i den här enheten även när konsolen är stängd."
        )
        options = await page.evaluate("window.__subscribeOptions")
        assert options["userVisibleOnly"] is True and len(options["key"]) == 87
        assert rows(console_gateway.dsn, "SELECT username, endpoint FROM push_subscriptions"
                    ) == [(NORA.username, subscription["endpoint"])]  # fmt: skip

        alert_id, _ = await _fall(page, console_gateway, 13)

        async def pushed() -> bool:
            return bool(service.to("noras-phone"))

        await _poll(pushed, "the gateway's push to reach the push service")
        [push] = service.to("noras-phone")
        vapid_claims(push.headers["authorization"], options["key"])
        payload = keys.decrypt(push.body)
        assert payload["alert_id"] == alert_id

        # What the push service brought, handed to the worker as the browser would.
        cdp = await context.new_cdp_session(page)
        registration = await _registration_id(cdp, url)
        await cdp.send(
            "ServiceWorker.deliverPushMessage",
            {"origin": url.rstrip("/"), "registrationId": registration,
             "data": json.dumps(payload)},
        )  # fmt: skip

        async def shown() -> list[dict[str, Any]]:
            return [n for n in await _notifications(page) if n["tag"] == f"alert:{alert_id}"]

        [notification] = await _poll(shown, "the notification to be shown")
        assert notification["title"] == "Prio 1 · Fall"
        place = f"{SENSORS[13].unit}, {SENSORS[13].area}"
        assert (payload["lang"], payload["body"]) == ("sv", place)

        # The console switched to English, on a Swedish phone: the gateway is told,
        # and writes the next page in English.
        await page.locator("#lang-switch").click()

        async def english() -> bool:
            return rows(console_gateway.dsn, "SELECT lang FROM push_subscriptions") == [("en",)]

        await _poll(english, "the subscription's language to follow the console")
        next_id, _ = await _fall(page, console_gateway, 14)

        async def pushed_again() -> bool:
            return len(service.to("noras-phone")) == 2

        await _poll(pushed_again, "the second push to reach the push service")
        again = keys.decrypt(service.to("noras-phone")[1].body)
        assert (again["alert_id"], again["lang"], again["title"]) == (
            next_id, "en", "Priority 1 · Fall"
        )  # fmt: skip
        await page.locator("#lang-switch").click()

        # The push service replaced the subscription (pushsubscriptionchange): the
        # worker, which has no CSRF token, tells the open console, which sends it.
        await asyncio.to_thread(_forget_subscriptions, console_gateway.dsn)
        worker = await _worker(context, url)
        await worker.evaluate("() => renewSubscription({ newSubscription: {} })")

        async def renewed() -> bool:
            found = rows(console_gateway.dsn, "SELECT endpoint, lang FROM push_subscriptions")
            return found == [(subscription["endpoint"], "sv")]

        await _poll(renewed, "the console to send the renewed subscription")

        # Dropped by the gateway meanwhile: the next start of the console subscribes again.
        await asyncio.to_thread(_forget_subscriptions, console_gateway.dsn)
        await page.reload()
        await expect(toggle).to_have_attribute("aria-pressed", "true", timeout=10_000)

        async def subscribed_again() -> bool:
            return bool(rows(console_gateway.dsn, "SELECT 1 FROM push_subscriptions"))

        await _poll(subscribed_again, "the console to subscribe again")

        await toggle.click()
        await expect(toggle).to_have_attribute("aria-pressed", "false")
        await expect(page.locator("#notice")).to_have_text("Den här enheten får inte längre larm.")
        assert rows(console_gateway.dsn, "SELECT username FROM push_subscriptions") == []
        await context.close()
