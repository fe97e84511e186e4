"""Every page in English mode shows no Swedish text of the dictionaries, after a switch or not."""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import (
    GUN,
    NORA,
    ORG,
    SCREENSHOTS,
    SENSORS,
    USERS,
    ConsoleGateway,
    open_console,
    open_detail,
    open_page,
)
from tests.utils.i18n import swedish_only_texts, text_pattern

pytestmark = [pytest.mark.broker, pytest.mark.db, pytest.mark.slow]

# What a person sees or hears of the page: visible text (screen-reader-only
# text included, it is read out), the tab's title, placeholders, tooltips,
# accessible names and the options of visible lists.
SHOWN_TEXT = """() => {
  const texts = [document.title];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    const text = node.textContent.trim();
    if (text && el && el.checkVisibility({ visibilityProperty: true })) {
      texts.push(text);
    }
  }
  for (const el of document.querySelectorAll("[placeholder], [title], [aria-label]")) {
    if (el.checkVisibility({ visibilityProperty: true })) {
      texts.push(...["placeholder", "title", "aria-label"].map((a) => el.getAttribute(a) || ""));
    }
  }
  for (const option of document.querySelectorAll("select option")) {
    if (option.parentElement.closest("select").checkVisibility()) {
      texts.push(option.textContent.trim());
    }
  }
  return texts.filter(Boolean);
}"""

PATTERNS = [(text, text_pattern(text)) for text in swedish_only_texts()]


async def assert_english(page: Page, name: str) -> None:
    """The page shows none of the dictionaries' Swedish texts; a screenshot is kept."""
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    shown: list[str] = await page.evaluate(SHOWN_TEXT)
    # The invented staff names are data, not texts of the page ("Gun Granskare").
    for user in USERS:
        shown = [text.replace(user.display_name, "") for text in shown]
    swedish = sorted(
        {(sv, text) for text in shown for sv, pattern in PATTERNS if pattern.search(text)}
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}-english.png"), full_page=True)
    assert swedish == [], f"{name}: Swedish texts shown in English mode (text, where)"


async def switch_to_english(page: Page) -> None:
    """Press the language switch of a page shown in Swedish."""
    await expect(page.locator("html")).to_have_attribute("lang", "sv")
    await page.click("#lang-switch")


def test_the_check_knows_swedish_when_it_sees_it() -> None:
    # Without this the browser checks below could pass by matching nothing.
    found = [sv for sv, pattern in PATTERNS if pattern.search("Uppdaterad 21:27")]
    assert found == ["Uppdaterad {time}"]
    assert not any(p.search("Updated 21:27 · Alert resolved.") for _, p in PATTERNS)


async def test_the_console_in_english_shows_no_swedish(
    browser: Browser, console_gateway: ConsoleGateway
) -> None:
    resolved, waiting = SENSORS[0], SENSORS[1]
    _, page = await open_console(browser, console_gateway.url, NORA)
    await asyncio.to_thread(console_gateway.fall, resolved)
    # A rule whose English title differs: it comes from /api/rules, not from i18n.js.
    body: dict[str, object] = {"kind": "sensor.bathroom_too_long", "level": "alarm"}
    await asyncio.to_thread(console_gateway.publish, waiting, body)
    first = page.locator(f'#queue li[data-device-id="{resolved.device_id}"]')
    second = page.locator(f'#queue li[data-device-id="{waiting.device_id}"]')
    await expect(first).to_be_visible(timeout=5000)
    await expect(second).to_be_visible(timeout=5000)
    await expect(second.locator(".alert-title")).to_have_text("För länge i badrummet")
    await expect(page.locator("#health-status")).to_contain_text("Uppdaterad", timeout=10_000)

    # Texts the script drew in Swedish before the switch: a notice, the health line.
    await first.locator('[data-action="acknowledge"]').click()
    await expect(first).to_have_attribute("data-state", "acknowledged")
    await first.locator('[data-action="resolve"]').click()
    await page.locator("#resolve-dialog").get_by_label("Hjälp given").check()
    await page.locator('[data-action="confirm-resolve"]').click()
    await expect(page.locator("#notice")).to_have_text("Larmet är åtgärdat.")
    await second.locator('[data-action="acknowledge"]').click()
    await expect(second).to_have_attribute("data-state", "acknowledged")

    await switch_to_english(page)
    await expect(page.locator("#notice")).to_have_text("Alert acknowledged.")
    await expect(page.locator("#health-status")).to_contain_text("Updated")
    await expect(second.locator(".alert-title")).to_have_text("Too long in the bathroom")
    await expect(second).to_have_attribute("data-category", "time")
    await assert_english(page, "console")
    # The dialog too, with the alert it is about.
    await second.locator('[data-action="resolve"]').click()
    await expect(page.locator("#resolve-dialog")).to_be_visible()
    await assert_english(page, "console-resolve")
    await page.click("#resolve-cancel")
    # And the alert's detail: its trail, the home's events and devices.
    await open_detail(page, waiting)
    await assert_english(page, "console-detail")
    await page.click("#detail-close")

    # Opened in English from the start (the choice is remembered).
    await page.reload()
    await expect(second.locator(".alert-title")).to_have_text(
        "Too long in the bathroom", timeout=10_000
    )
    await expect(page.locator("#health-status")).to_contain_text("Updated", timeout=10_000)
    await assert_english(page, "console-reloaded")


async def test_the_audit_view_in_english_shows_no_swedish(
    browser: Browser, console_gateway: ConsoleGateway
) -> None:
    page = await open_page(browser, console_gateway.url, GUN, "/audit")
    await expect(page.locator("#link-console")).to_have_text("Larmkö")
    await page.click("#audit-submit")
    await expect(page.locator("#audit-status")).to_contain_text("poster")
    await expect(page.locator("#chain-status")).to_have_attribute("data-state", "ok")
    # An error drawn in Swedish is relabelled too.
    await page.fill("#f-until", "2020-01-01T00:00")
    await page.click("#audit-submit")
    await expect(page.locator("#audit-error")).to_have_text("”Från” måste vara före ”Till”.")
    await switch_to_english(page)
    await expect(page.locator("#audit-error")).to_have_text("“From” must be before “To”.")
    await expect(page.locator("#audit-status")).to_contain_text("entries")
    await expect(page.locator("#link-console")).to_have_text("Alert queue")
    await assert_english(page, "audit")
    await page.context.close()


async def test_the_report_in_english_shows_no_swedish(
    browser: Browser, console_gateway: ConsoleGateway
) -> None:
    page = await open_page(browser, console_gateway.url, GUN, "/report")
    await page.select_option("#r-org", ORG)
    await page.click("#report-submit")
    await expect(page.locator("#report")).to_be_visible()
    await switch_to_english(page)
    await expect(page.locator("#report-summary")).to_contain_text("Night")
    # The charts are drawn by the server in the page's language: wait for the redraw.
    for chart in ("hourly", "spread"):
        await expect(page.locator(f"#chart-{chart}")).to_have_attribute("data-lang", "en")
    await assert_english(page, "report")
    await page.context.close()
