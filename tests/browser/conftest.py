"""Fixtures for the console's browser tests: one real gateway per module, headless Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Locator,
    Page,
    ViewportSize,
    async_playwright,
    expect,
)

from core.events import Family
from gateway.api.auth import PasswordHasher
from gateway.embedded import MosquittoServer, PostgresServer, find_mosquitto, temp_dir
from gateway.registry import DeviceRecord
from gateway.store import migrate
from gateway.store.devices import import_devices
from gateway.store.users import Role, User, save_user
from tests.utils.databases import create_database
from tests.utils.services import REPO, GatewayProcess, gateway_env, wait_until

CHROMIUM = Path("/usr/bin/chromium")
# Debian's chromium as it runs in a container: no sandbox (no user namespaces),
# nothing that phones home or updates itself while a test runs.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = REPO / "artifacts" / "screenshots"

# Invented organisations, homes and staff: nothing here is a real person.
ORG = "hemtjanst-norra"
OTHER_ORG = "sabo-tallbacken"
PASSWORD = "nattpass-2026-test"
NORA = User("nora.natt", "Nora Nattsson", Role.OPERATOR, (ORG,))
OLLE = User("olle.patrull", "Olle Olsson", Role.OPERATOR, (ORG,))
GUN = User("gun.granskare", "Gun Granskare", Role.AUDITOR, ("*",))
# An organisation whose own rule set escalates a fall within half a minute, to a
# named group first: SIV is in that group, KARL is not.
FAST_ORG = "hemtjanst-ostra"
FAST_RULES = """\
escalation:
  1:
    - {after_min: 0.5, to: ["group:nattledning"]}
    - {after_min: 60, to: ["role:operator"]}
"""
SIV = User("siv.ledare", "Siv Ledare", Role.OPERATOR, (FAST_ORG,), ("nattledning",))
KARL = User("karl.kvist", "Karl Kvist", Role.OPERATOR, (FAST_ORG,))
USERS = (NORA, OLLE, GUN, SIV, KARL)

# Supervision sensors of the home-care organisation, in two areas; each test
# falls on sensors of its own so the tests share one gateway without meeting.
SENSORS = tuple(
    DeviceRecord(
        device_id=f"rumsensor-{n:02d}",
        family=Family.SENSOR,
        org=ORG,
        unit=f"Norra {n:02d}",
        area="Norr" if n % 2 else "Söder",
        # Long enough that no sensor falls silent during the module.
        heartbeat_interval_s=3600,
    )
    for n in range(1, 21)
)
# A sensor of another organisation: its alerts must never reach NORA's console.
FOREIGN = DeviceRecord(
    device_id="tallbacken-sensor-01",
    family=Family.SENSOR,
    org=OTHER_ORG,
    unit="Tallbacken 3",
    area="Tallbacken",
    heartbeat_interval_s=3600,
)
FAST_SENSOR = DeviceRecord(
    device_id="ostra-sensor-01",
    family=Family.SENSOR,
    org=FAST_ORG,
    unit="Östra 5",
    area="Öster",
    heartbeat_interval_s=3600,
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ConsoleGateway:
    """A `wgw serve` with its console, the broker it reads and the database it writes."""

    url: str
    dsn: str
    broker: MosquittoServer
    process: GatewayProcess

    def publish(self, device: DeviceRecord, body: dict[str, object]) -> None:
        """Publish one device event at QoS 1, as the device would (waits for the PUBACK)."""
        payload = {"id": f"bt-{uuid.uuid4().hex[:12]}", "ts": datetime.now(UTC).isoformat(), **body}
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bt-{uuid.uuid4().hex[:8]}")
        client.connect("127.0.0.1", self.broker.port)
        client.loop_start()
        try:
            topic = f"wgw/{device.org}/{device.family.value}/{device.device_id}/event"
            sent = client.publish(topic, json.dumps(payload), qos=1)
            sent.wait_for_publish(timeout=10)
            assert sent.is_published(), f"no PUBACK for {topic}"
        finally:
            client.disconnect()
            client.loop_stop()

    def fall(self, device: DeviceRecord) -> None:
        """A Roommate-style fall from a supervision sensor."""
        self.publish(device, {"event": "fall", "level": "alarm"})

    @property
    def port(self) -> int:
        """The console's port (the same after a restart)."""
        return int(self.url.rstrip("/").rsplit(":", 1)[1])

    def wait_for_console(self, before: int) -> None:
        """Wait until a start after ``before`` earlier ones has its API listening."""
        try:
            wait_until(
                lambda: len(self.process.console_urls()) > before,
                timeout=30,
                what="the console to listen",
                proc=self.process.proc,
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}; gateway log:\n{self.process.log_text()[-3000:]}") from exc
        assert self.process.console_urls()[-1] == self.url


class LinkCutter:
    """A TCP relay between the browser and the gateway that the test can cut like a lost network.

    Chromium's offline emulation leaves an open event stream alone, so the break
    is made here: every relayed connection is aborted, and new ones are dropped
    on arrival until ``restore``; the gateway itself keeps running throughout.
    """

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.cut_off = False
        self.port = 0

    async def __aenter__(self) -> LinkCutter:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        await self._server.wait_closed()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def url(self) -> str:
        """The address to open the console through."""
        return f"http://127.0.0.1:{self.port}/"

    def cut(self) -> None:
        """Drop every relayed connection and refuse new ones."""
        self.cut_off = True
        for writer in list(self._writers):
            writer.transport.abort()

    def restore(self) -> None:
        """Relay new connections again."""
        self.cut_off = False

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_off:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        await asyncio.gather(*pumps, return_exceptions=True)
        self._tasks.difference_update(pumps)
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Either side closing or the cut ends both directions.
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()


class PageErrors:
    """Script errors, policy (CSP) violations and failed requests of the pages a test opened."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        # Logged out, a page's first /api/auth/me answers 401 by design.
        self.allowed: list[str] = ["status of 401 (Unauthorized)"]

    def watch(self, page: Page) -> None:
        """Collect what this page reports."""
        page.on("pageerror", lambda exc: self.seen.append(f"script error: {exc}"))
        page.on("console", self._console)

    def allow(self, *fragments: str) -> None:
        """Expect console errors containing any of these (a 409 the test provokes)."""
        self.allowed.extend(fragments)

    def unexpected(self) -> list[str]:
        """What was reported and not expected."""
        return [e for e in self.seen if not any(a in e for a in self.allowed)]

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.seen.append(f"{message.text} ({message.location.get('url', '')})")


_errors: list[PageErrors] = []


@pytest.fixture(autouse=True)
def page_errors() -> Iterator[PageErrors]:
    """Fail a test whose console pages logged a script error, CSP violation or failed request."""
    errors = PageErrors()
    _errors.append(errors)
    try:
        yield errors
    finally:
        _errors.remove(errors)
    assert errors.unexpected() == []


def require_chromium() -> None:
    """Skip when Debian's chromium is missing (only acceptable without root)."""
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is missing: run `make test` as root (it installs it), "
            "or apt-get install chromium"
        )


@pytest.fixture(scope="module")
def console_gateway(
    pg_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleGateway]:
    """One gateway with its console for a whole test module, on a fixed port it keeps on restart."""
    require_chromium()
    if find_mosquitto() is None:
        pytest.fail(
            "mosquitto is not installed: run `make test` as root, or apt-get install mosquitto"
        )
    name = f"t_{uuid.uuid4().hex[:12]}"
    create_database(pg_server.dsn, name)
    dsn = pg_server.dsn.rsplit("/", 1)[0] + f"/{name}"
    migrate(dsn)
    import_devices(dsn, [*SENSORS, FOREIGN, FAST_SENSOR])
    hasher = PasswordHasher()
    for user in USERS:
        save_user(dsn, user=user, password_hash=hasher.hash(PASSWORD))
    broker = MosquittoServer(temp_dir("wgw-test-mq-"))
    broker.start()
    # A fixed port, not 0: a console reconnects to the address it was loaded from.
    port = _free_port()
    home = tmp_path_factory.mktemp("console")
    fast_rules = home / "fast-rules.yaml"
    fast_rules.write_text(FAST_RULES, encoding="utf-8")
    env = gateway_env(
        dsn=dsn,
        broker_port=broker.port,
        client_id=f"wgw-{uuid.uuid4().hex[:8]}",
        spool_dir=home / "spool",
        WGW_API__PORT=str(port),
        WGW_RULES__ORG_FILES=json.dumps({FAST_ORG: str(fast_rules)}),
        # Pushes go to the stand-in push service on this machine (see test_push.py).
        WGW_PUSH__SERVICE_HOSTS='["127.0.0.1"]',
    )
    process = GatewayProcess(env, home / "gateway.log")
    gateway = ConsoleGateway(f"http://127.0.0.1:{port}/", dsn, broker, process)
    try:
        process.start()
        gateway.wait_for_console(0)
        yield gateway
    finally:
        process.kill()
        broker.cleanup()
        with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Debian chromium driven by Playwright (never a downloaded browser)."""
    require_chromium()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            await browser.close()


async def open_console(
    browser: Browser,
    url: str,
    user: User,
    *,
    viewport: ViewportSize | None = None,
    phone: bool = False,
    path: str = "/",
) -> tuple[BrowserContext, Page]:
    """A fresh browser session logged in through the form, with its live stream connected."""
    context = await browser.new_context(
        viewport=viewport or {"width": 1280, "height": 800}, is_mobile=phone, has_touch=phone
    )
    page = await context.new_page()
    if _errors:
        _errors[-1].watch(page)
    await page.goto(url.rstrip("/") + path)
    await log_in(page, user)
    if path == "/":
        # Generous: a login verifies an argon2 hash, and the suite may share the machine.
        await expect(page.locator("#console")).to_be_visible(timeout=10_000)
        await expect(page.locator("body")).to_have_attribute(
            "data-connection", "live", timeout=10_000
        )
    return context, page


async def open_page(
    browser: Browser,
    url: str,
    user: User,
    path: str,
    *,
    watch: Callable[[Page], None] | None = None,
) -> Page:
    """Open a page before logging in: it sends the user to the login and back.

    ``watch`` is handed the page before it loads (to follow its errors).
    """
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    if watch is not None:
        watch(page)
    base = url.rstrip("/")
    await page.goto(base + path)
    await expect(page).to_have_url(f"{base}/?next={path}")
    await log_in(page, user)
    await expect(page).to_have_url(base + path)
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    return page


async def log_in(page: Page, user: User, password: str = PASSWORD) -> None:
    """Fill and send the login form."""
    await expect(page.locator("#login")).to_be_visible()
    await page.fill("#login-username", user.username)
    await page.fill("#login-password", password)
    await page.click("#login-submit")


def queued(page: Page, device: DeviceRecord) -> Locator:
    """The queue item of a device's alert."""
    return page.locator(f'#queue li[data-device-id="{device.device_id}"]')


def section(page: Page, name: str) -> Locator:
    """A section of the open detail (trail, comments, events, earlier, devices, entry)."""
    return page.locator(f'#detail-dialog [data-section="{name}"]')


async def open_detail(page: Page, device: DeviceRecord) -> None:
    """Tap the device's card (not a button) and wait for its detail."""
    await queued(page, device).locator(".alert-title").click()
    await expect(page.locator("#detail-dialog")).to_be_visible()
    await expect(section(page, "trail")).to_be_visible(timeout=10_000)
