"""The audit view and the night report in headless Chromium, against a real gateway and broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, expect

from core.events import Family
from gateway.registry import DeviceRecord
from gateway.store.access import import_directory
from gateway.store.devices import import_devices
from rules.access import parse_directory
from tests.browser.conftest import GUN, NORA, ORG, SCREENSHOTS, ConsoleGateway, log_in, open_page
from tests.utils.services import count

pytestmark = [pytest.mark.broker, pytest.mark.db, pytest.mark.slow]

DOOR = DeviceRecord(
    device_id="dorr-norra-07",
    family=Family.LOCK,
    org=ORG,
    unit="Norra 07",
    area="Norr",
    heartbeat_interval_s=3600,
)
ALLOWED_KEY = "nyckel-0042"  # Nora's key: granted on the door, on shift
STRAY_KEY = "nyckel-0099"  # Olle's key: no grant, no shift


def directory_text(now: datetime) -> str:
    return f"""
organisations:
  - {{org: {ORG}, visit_plan_enforced: false}}
staff:
  - {{org: {ORG}, staff_id: s-nora, pseudonym: Personal 7}}
  - {{org: {ORG}, staff_id: s-olle, pseudonym: Personal 8}}
keys:
  - {{org: {ORG}, key_id: {ALLOWED_KEY}, staff_id: s-nora}}
  - {{org: {ORG}, key_id: {STRAY_KEY}, staff_id: s-olle}}
shifts:
  - {{org: {ORG}, staff_id: s-nora, start: "{(now - timedelta(hours=2)).isoformat()}",
     end: "{(now + timedelta(hours=6)).isoformat()}"}}
grants:
  - {{org: {ORG}, device_id: {DOOR.device_id}, staff_id: s-nora}}
"""


def unlock(gateway: ConsoleGateway, key: str, event_id: str, at: datetime) -> None:
    """Open the door with a staff key until the access log holds it.

    The gateway learns of the new lock at its next registry refresh; until
    then the event is a dead letter. The same event id makes a repeat harmless.
    """
    body: dict[str, object] = {
        "id": event_id, "kind": "lock.unlocked", "ts": at.isoformat(), "actor": key,
    }  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        gateway.publish(DOOR, body)
        time.sleep(0.3)
        if count(gateway.dsn, "SELECT count(*) FROM access_log WHERE actor = %s", key) == 1:
            return
    raise AssertionError(f"the opening by {key} never reached the access log")


@pytest.fixture(scope="module")
def door_openings(console_gateway: ConsoleGateway) -> Iterator[ConsoleGateway]:
    """A lock in the module's gateway, an access directory, and two real openings over MQTT."""
    now = datetime.now(UTC).replace(microsecond=0)
    import_devices(console_gateway.dsn, [DOOR])
    import_directory(
        console_gateway.dsn, parse_directory(directory_text(now), source="test"), source="test"
    )
    unlock(console_gateway, ALLOWED_KEY, "bt-door-1", now - timedelta(minutes=5))
    unlock(console_gateway, STRAY_KEY, "bt-door-2", now - timedelta(minutes=3))
    yield console_gateway


ERRORS: list[str] = []


@pytest.fixture(autouse=True)
def no_page_errors() -> Iterator[None]:
    """Fail a test whose pages logged a script error or a policy violation."""
    ERRORS.clear()
    yield
    assert ERRORS == []


def _console_error(msg: ConsoleMessage) -> None:
    url = msg.location.get("url", "")
    # The browser asks for a favicon on its own; the 401 before the login is expected.
    if msg.type == "error" and "401" not in msg.text and not url.endswith("/favicon.ico"):
        ERRORS.append(f"{msg.text} ({url})")


def result_row(actor: str) -> str:
    return f'#audit-results tbody tr[data-subject="{DOOR.device_id}"][data-actor="{actor}"]'


def _watch(page: Page) -> None:
    # A script error or a blocked inline style or script (CSP) shows here;
    # the 401 before the login is the expected one.
    page.on("pageerror", lambda exc: ERRORS.append(str(exc)))
    page.on("console", _console_error)


async def test_the_audit_view_finds_the_opening_a_staff_key_made(
    browser: Browser, door_openings: ConsoleGateway
) -> None:
    page = await open_page(browser, door_openings.url, GUN, "/audit", watch=_watch)
    await expect(page.locator("#chain-status")).to_have_attribute("data-state", "ok")
    await expect(page.locator("#chain-text")).to_contain_text("obruten")

    # Who opened this door?
    await page.fill("#f-door", DOOR.device_id)
    await page.click("#audit-submit")
    allowed = page.locator(result_row(ALLOWED_KEY))
    stray = page.locator(result_row(STRAY_KEY))
    await expect(allowed).to_be_visible()
    await expect(stray).to_be_visible()
    await expect(allowed).to_contain_text("Norra 07")
    await expect(allowed).to_contain_text("Upplåst")
    await expect(allowed).not_to_have_class("refused")
    # The opening outside shift and grant is flagged, in words.
    await expect(stray).to_have_class("refused")
    await expect(stray).to_have_attribute("data-refused", "not_granted off_shift")
    await expect(stray).to_contain_text("ej behörig för dörren")
    await expect(stray).to_contain_text("utanför arbetspass")
    # The CSV link carries the same search.
    href = await page.locator("#audit-csv").get_attribute("href")
    assert href is not None
    assert f"door={DOOR.device_id}" in href and "format=csv" in href

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "audit-view.png"), full_page=True)

    # Which doors did this key open? And only what the plan does not allow.
    await page.fill("#f-door", "")
    await page.fill("#f-key", STRAY_KEY)
    await page.check("#f-outside")
    await page.click("#audit-submit")
    await expect(page.locator("#audit-results tbody tr")).to_have_count(1)
    await expect(stray).to_be_visible()

    # English relabels the flags and the headings without a new search.
    await page.click("#lang-switch")
    await expect(stray).to_contain_text("not granted for the door")
    await expect(page.locator("h1")).to_have_text("Access log audit")
    await page.context.close()

    # The auditor's searches are themselves in the access log.
    def logged() -> bool:
        return (
            count(
                door_openings.dsn,
                "SELECT count(*) FROM access_log WHERE actor = %s AND subject = 'access_log'",
                GUN.username,
            )
            >= 2
        )

    for _ in range(100):
        if await asyncio.to_thread(logged):
            break
        await asyncio.sleep(0.1)
    assert await asyncio.to_thread(logged), "the auditor's searches were not logged"


async def test_the_night_patrol_is_turned_away_from_the_audit_view(
    browser: Browser, door_openings: ConsoleGateway
) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(door_openings.url.rstrip("/") + "/audit")
    await log_in(page, NORA)
    await expect(page.locator("#audit-error")).to_contain_text("granskare")
    await expect(page.locator("#audit-submit")).to_be_disabled()
    await context.close()


async def test_the_report_page_shows_a_night_and_offers_its_csv(
    browser: Browser, door_openings: ConsoleGateway
) -> None:
    page = await open_page(browser, door_openings.url, GUN, "/report", watch=_watch)
    await page.select_option("#r-org", ORG)
    await page.click("#report-submit")
    await expect(page.locator("#report")).to_be_visible()
    await expect(page.locator("#report-times tbody tr[data-priority='all']")).to_be_visible()
    href = await page.locator("#report-csv").get_attribute("href")
    assert href is not None
    assert f"org={ORG}" in href and "format=csv" in href
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "night-report.png"), full_page=True)
    await page.context.close()


async def test_a_changed_entry_shows_as_a_broken_chain(
    browser: Browser, door_openings: ConsoleGateway
) -> None:
    # Last in the module: it breaks the log for good. What someone with
    # database rights would do: switch off the guard, then edit an opening.
    with psycopg.connect(door_openings.dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE access_log DISABLE TRIGGER access_log_append_only")
        conn.execute("UPDATE access_log SET actor = %s WHERE actor = %s", (ALLOWED_KEY, STRAY_KEY))
        [(seq,)] = conn.execute(
            "SELECT seq FROM access_log WHERE detail->>'event_id' = 'bt-door-2'"
        ).fetchall()
    page = await open_page(browser, door_openings.url, GUN, "/audit", watch=_watch)
    status = page.locator("#chain-status")
    await expect(status).to_have_attribute("data-state", "broken")
    await expect(status).to_have_attribute("data-broken-seq", str(seq))
    await expect(page.locator("#chain-text")).to_contain_text(f"post {seq}")
    await page.context.close()
