"""An alarm's SCAIP <lge> position on the console: a map link on the alert, in both languages."""

from __future__ import annotations

import asyncio
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from playwright.async_api import Browser, expect

from core.events import Family
from gateway.registry import DeviceRecord
from gateway.store.devices import import_devices
from tests.browser.conftest import NORA, ORG, ConsoleGateway, open_console
from tests.utils.services import count, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.db, pytest.mark.slow]

# An invented social-alarm unit of the home-care organisation; SCAIP on its own topic.
UNIT = DeviceRecord(
    device_id="46799000001",
    family=Family.ALARM,
    org=ORG,
    unit="Norra 99",
    area="Norr",
    heartbeat_interval_s=3600,
)
TOPIC = f"wgw/{ORG}/alarm/{UNIT.device_id}/event"
LGE = "<lge><geo>59.334591,18.063240</geo><tim>2026-11-24T02:09:30+01</tim></lge>"


def _mrq(ref: str, mty: str, more: str = "") -> bytes:
    return (
        f"<mrq><ref>{ref}</ref><mty>{mty}</mty><cid>{UNIT.device_id}</cid><dty>0003</dty>"
        f"{more}</mrq>"
    ).encode()


def _publish(gateway: ConsoleGateway, payload: bytes) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bt-{uuid.uuid4().hex[:8]}")
    client.connect("127.0.0.1", gateway.broker.port)
    client.loop_start()
    try:
        sent = client.publish(TOPIC, payload, qos=1)
        sent.wait_for_publish(timeout=10)
        assert sent.is_published(), f"no PUBACK for {TOPIC}"
    finally:
        client.disconnect()
        client.loop_stop()


def _registered(gateway: ConsoleGateway) -> None:
    """Register the unit and wait until the gateway stores its heartbeats (it knows it)."""
    import_devices(gateway.dsn, [UNIT])
    sent = 0

    def known() -> bool:
        nonlocal sent
        sent += 1
        _publish(gateway, _mrq(f"POSHB{uuid.uuid4().hex[:8]}", "PI"))
        query = "SELECT count(*) FROM events WHERE device_id = %s"
        return count(gateway.dsn, query, UNIT.device_id) > 0

    wait_until(known, timeout=20, what="the gateway to know the new alarm unit")


async def test_an_alarm_with_a_position_shows_it_as_a_map_link(
    browser: Browser, console_gateway: ConsoleGateway
) -> None:
    await asyncio.to_thread(_registered, console_gateway)
    _, page = await open_console(browser, console_gateway.url, NORA)
    await asyncio.to_thread(_publish, console_gateway, _mrq("POS1", "ME", f"<stc>0010</stc>{LGE}"))

    item = page.locator(f'#queue li[data-device-id="{UNIT.device_id}"]')
    await expect(item).to_be_visible(timeout=10_000)
    position = item.locator(".position")
    await expect(position).to_be_visible()
    link = position.locator("a")
    await expect(link).to_have_attribute("href", "geo:59.334591,18.06324")
    await expect(link).to_have_attribute("title", "Öppna positionen i kartan")
    await expect(link).to_have_text("59.33459, 18.06324")
    await expect(position).to_contain_text("Position: 59.33459, 18.06324 (kl. ")

    await page.click("#lang-switch")
    await expect(link).to_have_attribute("title", "Open the position in maps")
    await expect(position).to_contain_text("(at ")
