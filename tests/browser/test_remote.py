"""Remote supervision in the console, in headless Chromium, on a gateway with an injected clock.

The planned checks are agreed on the wall clock, so this gateway runs in the
test's event loop (as the API tests run theirs) with a FrozenClock set inside
the night, instead of the module's `wgw serve` on the real clock.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from playwright.async_api import Browser, Locator, Page, expect

from core.clock import FrozenClock
from gateway.api.auth import PasswordHasher
from gateway.embedded import PostgresServer
from gateway.store.users import Role, User
from tests.api.conftest import PASSWORD, RunningApi, prepare_database, running_api
from tests.browser.conftest import SCREENSHOTS, PageErrors, log_in, require_chromium
from tests.utils.databases import create_database
from tests.utils.remote import (
    CHECK_1,
    CHECK_2,
    CHECK_REFUSING,
    CONSENTING,
    OPERATOR,
    REFUSING,
    SE,
    import_remote_directory,
)

pytestmark = [pytest.mark.db, pytest.mark.slow]

# The API tests' operator of vallby, who is staff member s-anna in the directory.
ANNA = User(OPERATOR, "Natt Patrull A", Role.OPERATOR, ("vallby",))


@pytest.fixture
def remote_dsn(pg_server: PostgresServer) -> Iterator[str]:
    """A database of this test's own with the API tests' devices, users and the directory."""
    require_chromium()
    name = f"t_{uuid.uuid4().hex[:12]}"
    create_database(pg_server.dsn, name)
    dsn = pg_server.dsn.rsplit("/", 1)[0] + f"/{name}"
    prepare_database(dsn, PasswordHasher().hash(PASSWORD))
    import_remote_directory(dsn)
    yield dsn
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


@pytest.fixture
def clock() -> FrozenClock:
    """23:25 on the night: the 23:00 check is past its 15-minute grace."""
    return FrozenClock(datetime(2026, 11, 24, 23, 25, tzinfo=SE))


@pytest.fixture
async def night_gateway(remote_dsn: str, clock: FrozenClock) -> AsyncIterator[RunningApi]:
    """The gateway on the injected clock."""
    async with running_api(remote_dsn, clock=clock) as running:
        yield running


def check_item(page: Page, device_id: str, planned_at: datetime) -> Locator:
    """The panel's row of one planned check (the API gives planned times in UTC)."""
    utc = planned_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return page.locator(f'#remote-list li[data-device-id="{device_id}"][data-planned-at="{utc}"]')


async def test_a_remote_check_shows_overdue_the_refusal_reason_and_raises_the_alert(
    browser: Browser, night_gateway: RunningApi, page_errors: PageErrors, clock: FrozenClock
) -> None:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    page_errors.watch(page)
    await page.goto(night_gateway.url)
    await log_in(page, ANNA, PASSWORD)
    await expect(page.locator("#remote-checks")).to_be_visible(timeout=10_000)
    items = page.locator("#remote-list li")
    await expect(items).to_have_count(3, timeout=10_000)
    # Times on the Swedish wall clock, earliest first.
    await expect(page.locator("#remote-list .remote-time")).to_have_text(
        ["23:00", "23:30", "02:00"]
    )

    first = check_item(page, CONSENTING, CHECK_1)
    refusing = check_item(page, REFUSING, CHECK_REFUSING)
    await expect(first).to_have_attribute("data-overdue", "true")
    await expect(first.locator(".flag-overdue")).to_have_text("Försenad")
    await expect(refusing).to_have_attribute("data-overdue", "false")
    await expect(refusing.locator(".flag-no-consent")).to_have_text("Samtycke saknas")

    # No consent on record: refused, and the reason is said.
    await refusing.get_by_role("button", name="Fjärrtillsyn").click()
    await expect(refusing.locator(".remote-refused")).to_have_text("Nekad: samtycke saknas")

    # Allowed: not seen, try again, not seen again — the patrol gets an alert.
    for tries in (1, 2):
        await first.get_by_role("button", name="Fjärrtillsyn").click()
        await expect(first.locator(".remote-allowed")).to_contain_text("Tillåten 23:25")
        await first.get_by_role("button", name="Ej sedd").click()
        if tries == 1:
            await expect(first.locator(".flag-not_seen")).to_have_text("Ej sedd – försök igen (1)")
            # The next try is one key press away: the focus stays on the check.
            await expect(first.get_by_role("button", name="Fjärrtillsyn")).to_be_focused()
    await expect(first.locator(".flag-alerted")).to_have_text("Ej sedd – larm till patrullen")
    card = page.locator(f'#queue li[data-device-id="{CONSENTING}"]')
    await expect(card).to_have_attribute("data-rule", "remote_check_not_seen", timeout=10_000)
    await expect(card).to_contain_text("Ej sedd vid fjärrtillsyn")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "remote-check-sv.png"), full_page=True)

    # Allowed at 02:00, but the result comes after the agreed window closed at six.
    clock.advance(timedelta(hours=2, minutes=35))
    later = check_item(page, CONSENTING, CHECK_2)
    await later.get_by_role("button", name="Fjärrtillsyn").click()
    await expect(later.locator(".remote-allowed")).to_contain_text("Tillåten 02:00")
    clock.advance(timedelta(hours=4, minutes=30))
    await later.get_by_role("button", name="Sedd och välmående").click()
    await expect(later.locator(".remote-refused")).to_have_text("Nekad: utanför överenskommen tid")
    await expect(later.locator(".flag-pending")).to_have_text("Planerad")

    # In English the refusal, the overdue mark and the alert read in English.
    await page.click("#lang-switch")
    await expect(refusing.locator(".remote-refused")).to_have_text("Refused: no consent on record")
    await expect(first.locator(".flag-alerted")).to_have_text("Not seen – patrol alerted")
    await expect(later.locator(".remote-refused")).to_have_text("Refused: outside the agreed times")
    await expect(card).to_contain_text("Not seen at remote check")
    await page.screenshot(path=str(SCREENSHOTS / "remote-check-en.png"), full_page=True)
    await context.close()
