"""The console's gateway-health banner, in Chromium, against a `wgw serve` whose database stops."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from playwright.async_api import Browser, expect

from gateway.api.auth import PasswordHasher
from gateway.embedded import MosquittoServer, PostgresServer
from gateway.store import migrate
from gateway.store.devices import import_devices
from gateway.store.users import save_user
from tests.browser.conftest import (
    NORA,
    PASSWORD,
    SCREENSHOTS,
    SENSORS,
    ConsoleGateway,
    PageErrors,
    _free_port,
    open_console,
    require_chromium,
)
from tests.utils.services import GatewayProcess, gateway_env

pytestmark = [pytest.mark.broker, pytest.mark.db, pytest.mark.slow]

SWEDISH = {
    "database_down": "Databasen nås inte – larm visas ändå, händelser sparas lokalt",
    "spool_full": "Gatewayn: lokal buffert full – larm tas inte emot förrän databasen är ikapp",
}
ENGLISH = {
    "database_down": (
        "The database cannot be reached – alerts are still shown, events are kept locally"
    ),
    "spool_full": (
        "Gateway: local buffer full – alarms are not received until the database has caught up"
    ),
}


@pytest.fixture
def small_spool_gateway(
    own_pg: PostgresServer, mosquitto: MosquittoServer, tmp_path: Path
) -> Iterator[ConsoleGateway]:
    """A `wgw serve` with a 1 MiB spool, on a PostgreSQL of the test's own that it may stop."""
    require_chromium()
    dsn = own_pg.dsn
    migrate(dsn)
    import_devices(dsn, SENSORS)
    save_user(dsn, user=NORA, password_hash=PasswordHasher().hash(PASSWORD))
    port = _free_port()
    env = gateway_env(
        dsn=dsn,
        broker_port=mosquitto.port,
        client_id=f"wgw-{uuid.uuid4().hex[:8]}",
        spool_dir=tmp_path / "spool",
        WGW_API__PORT=str(port),
        WGW_SPOOL__MAX_BYTES=str(1024 * 1024),
        WGW_SPOOL__SEGMENT_BYTES=str(64 * 1024),
    )
    process = GatewayProcess(env, tmp_path / "gateway.log")
    gateway = ConsoleGateway(f"http://127.0.0.1:{port}/", dsn, mosquitto, process)
    try:
        process.start()
        gateway.wait_for_console(0)
        yield gateway
    finally:
        process.kill()


def publish_heartbeats(gateway: ConsoleGateway, n: int) -> None:
    """Publish ``n`` heartbeats of one sensor at QoS 1 on one connection (waits for the PUBACKs)."""
    device = SENSORS[1]
    topic = f"wgw/{device.org}/{device.family.value}/{device.device_id}/event"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bt-{uuid.uuid4().hex[:8]}")
    client.max_inflight_messages_set(100)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", gateway.broker.port)
    client.loop_start()
    try:
        now = datetime.now(UTC).isoformat()
        bodies = [
            {"id": f"hb-{uuid.uuid4().hex}", "kind": "device.heartbeat", "ts": now, "battery": 80}
            for _ in range(n)
        ]
        sent = [client.publish(topic, json.dumps(body), qos=1) for body in bodies]
        for info in sent:
            info.wait_for_publish(timeout=30)
    finally:
        client.disconnect()
        client.loop_stop()


async def problem_codes(gateway: ConsoleGateway) -> list[str]:
    """The problem codes /healthz reports now."""
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        health = (await client.get("/healthz")).json()
    return [p["code"] for p in health["problems"]]


async def test_the_console_shows_the_gateway_health_alert_until_the_problem_is_gone(
    browser: Browser,
    small_spool_gateway: ConsoleGateway,
    own_pg: PostgresServer,
    page_errors: PageErrors,
) -> None:
    gateway = small_spool_gateway
    # /healthz answers 503 while the spool is full, and device health while PostgreSQL is away.
    page_errors.allow("status of 503 (Service Unavailable)")
    context, page = await open_console(
        browser, gateway.url, NORA, viewport={"width": 390, "height": 844}, phone=True
    )
    banner = page.locator("#gateway-health")
    await expect(banner).to_be_hidden()
    await expect(banner).to_have_attribute("role", "alert")

    # PostgreSQL goes away: a warning, not a P1; alerts still reach the queue.
    await asyncio.to_thread(own_pg.stop, "immediate")
    problem = banner.locator('p[data-code="database_down"]')
    await expect(problem).to_have_text(SWEDISH["database_down"], timeout=10_000)
    await expect(banner).to_be_visible()
    await expect(banner).to_have_attribute("data-severity", "warning")
    fallen = SENSORS[0]
    await asyncio.to_thread(gateway.fall, fallen)
    await expect(page.locator(f'#queue li[data-device-id="{fallen.device_id}"]')).to_be_visible(
        timeout=2000
    )

    # Heartbeats fill the 1 MiB spool: acknowledgements stop, and the banner turns red.
    for _ in range(30):
        if "spool_full" in await problem_codes(gateway):
            break
        await asyncio.to_thread(publish_heartbeats, gateway, 1000)
    else:
        pytest.fail(f"the spool never filled; gateway log:\n{gateway.process.log_text()[-3000:]}")
    full = banner.locator('p[data-code="spool_full"]')
    await expect(full).to_have_text(SWEDISH["spool_full"], timeout=10_000)
    await expect(banner.locator("p")).to_have_text(
        [SWEDISH["spool_full"], SWEDISH["database_down"]]
    )
    await expect(banner).to_have_attribute("data-severity", "critical")
    await expect(page.get_by_role("alert").filter(has_text="lokal buffert full")).to_be_visible()
    # Readable on a phone: inside the screen, nothing scrolls sideways.
    box = await full.bounding_box()
    assert box is not None and box["width"] > 0 and box["x"] + box["width"] <= 390, box
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / "console-phone-gateway-health.png"
    await page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000

    await page.click("#lang-switch")
    await expect(banner.locator("p")).to_have_text(
        [ENGLISH["spool_full"], ENGLISH["database_down"]]
    )

    # PostgreSQL back: the spool drains, acknowledgements resume, and the banner goes.
    await asyncio.to_thread(own_pg.start)
    await expect(banner).to_be_hidden(timeout=60_000)
    assert await problem_codes(gateway) == []
    await context.close()  # before the gateway stops under its live stream
