"""Fixtures for the API tests: a prepared database, accounts of every role, a running gateway.

The gateway runs in the test's event loop, fed from memory (``MemorySource``),
on a real PostgreSQL, with its uvicorn server on a free port; tests talk to it
over HTTP with httpx like a browser would.

Names a test module needs:

- ``api`` (fixture): a ``RunningApi`` on a fresh database holding ``DEVICES``
  and ``USERS``; ``api.login(name)`` gives a logged-in client, ``api.client()``
  an anonymous one, ``api.raise_alert(device)`` feeds a fall and returns the
  open alert's id.
- ``shared`` (fixture): one gateway for the whole session, for checks that
  change nothing (refusals); ``shared.login``, ``shared.raise_alert`` as above.
- ``prepared_dsn`` (fixture): a fresh prepared database without a gateway.
- ``running_api(dsn)``: start another gateway and API (a database of the
  test's own, other settings).
- ``eventually(check)``: poll until a staged write or a live change shows.
- ``db_rows(dsn, query)``: read PostgreSQL without blocking the event loop.
- ``open_stream(client, last_event_id)``: the live stream, frame by frame.
- ``API_ROUTES``: every route under /api as the application declares it, so a
  table of checks over it cannot miss a route added later.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import re
import threading
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple, cast

import httpx
import pytest
from prometheus_client import CollectorRegistry

from core.clock import Clock
from core.events import Family, RawMessage
from gateway.api.app import create_app
from gateway.api.auth import PasswordHasher
from gateway.api.context import ApiContext
from gateway.api.deps import CSRF_HEADER, SESSION_COOKIE
from gateway.api.server import ApiServer, run_gateway
from gateway.config import load_settings
from gateway.embedded import PostgresServer
from gateway.ingest import MemorySource
from gateway.registry import DeviceRecord
from gateway.service import Gateway
from gateway.store import migrate
from gateway.store.devices import import_devices
from gateway.store.users import ALL_ORGS, Role, User, save_user
from rules import Alert
from tests.utils.databases import create_database, drop_database, seal_template
from tests.utils.services import rows

ORG_A = "vallby"
ORG_B = "norrby"
PASSWORD = "nattpatrull-2026"

SENSOR_A1 = "sensor-a001"
SENSOR_A2 = "sensor-a002"
SENSOR_A3 = "sensor-a003"
SENSOR_B1 = "sensor-b001"


def _sensor(device_id: str, org: str, unit: str, area: str) -> DeviceRecord:
    # An hour between heartbeats: no "no contact" alert appears during a test.
    return DeviceRecord(
        device_id=device_id,
        family=Family.SENSOR,
        org=org,
        unit=unit,
        area=area,
        heartbeat_interval_s=3600,
    )


DEVICES = (
    _sensor(SENSOR_A1, ORG_A, "Lgh 1101", "Norr"),
    _sensor(SENSOR_A2, ORG_A, "Lgh 1102", "Norr"),
    _sensor(SENSOR_A3, ORG_A, "Lgh 2201", "Söder"),
    _sensor(SENSOR_B1, ORG_B, "Rum 7", "Centrum"),
)
UNIT = {d.device_id: d.unit for d in DEVICES}

OPERATOR_A = "operator-a"
COORDINATOR_A = "coordinator-a"
AUDITOR_A = "auditor-a"
ADMIN_A = "admin-a"
OPERATOR_B = "operator-b"
ADMIN_ALL = "admin"

USERS = (
    User(OPERATOR_A, "Natt Patrull A", Role.OPERATOR, (ORG_A,)),
    User(COORDINATOR_A, "Samordnare A", Role.COORDINATOR, (ORG_A,), ("nattledning",)),
    User(AUDITOR_A, "Granskare A", Role.AUDITOR, (ORG_A,)),
    User(ADMIN_A, "Admin A", Role.ADMIN, (ORG_A,)),
    User(OPERATOR_B, "Natt Patrull B", Role.OPERATOR, (ORG_B,)),
    User(ADMIN_ALL, "Admin alla", Role.ADMIN, (ALL_ORGS,)),
)

# Settings every test gateway runs with; a test may override any key.
BASE_SETTINGS: dict[str, dict[str, Any]] = {
    "api": {"port": 0, "secure_cookies": False},
    # Staged console writes (actions, logged reads) land within a tick.
    "rules": {"tick_s": 0.05},
    "ingest": {"registry_refresh_s": 60, "storage_retry_s": 0.1},
    "db": {"connect_timeout_s": 20},
}


class ApiRoute(NamedTuple):
    """One method of one route under /api."""

    method: str
    path: str  # as declared, with {placeholders}
    tag: str

    @property
    def url(self) -> str:
        """The path with every parameter filled in (an alert id that does not exist)."""
        return re.sub(r"\{[^}]+\}", "a:000000000000000000000000", self.path)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _api_routes() -> tuple[ApiRoute, ...]:
    # Read from the app's own OpenAPI description (every route it serves under /api);
    # only the route table is used, so the app is built around a stand-in context.
    app = create_app(cast(ApiContext, SimpleNamespace(metrics_registry=CollectorRegistry())))
    paths: dict[str, dict[str, Any]] = app.openapi()["paths"]
    return tuple(
        ApiRoute(method.upper(), path, str(operation.get("tags", [""])[0]))
        for path, operations in paths.items()
        if path.startswith("/api/")
        for method, operation in operations.items()
    )


API_ROUTES = _api_routes()


@pytest.fixture(scope="session")
def password_hash() -> str:
    """One argon2id hash of PASSWORD, shared by every account (hashing costs ~0.1 s)."""
    return PasswordHasher().hash(PASSWORD)


def prepare_database(dsn: str, password_hash: str) -> None:
    """Migrate a database and add DEVICES and USERS to it."""
    migrate(dsn)
    import_devices(dsn, DEVICES)
    for user in USERS:
        save_user(dsn, user=user, password_hash=password_hash)


def _create_database(server: PostgresServer, template: str | None = None) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    create_database(server.dsn, name, template or "template0")
    return server.dsn.rsplit("/", 1)[0] + f"/{name}"


def _drop_database(server: PostgresServer, dsn: str) -> None:
    drop_database(server.dsn, dsn.rsplit("/", 1)[1])


@contextmanager
def _database(server: PostgresServer, template: str | None = None) -> Iterator[str]:
    dsn = _create_database(server, template)
    try:
        yield dsn
    finally:
        _drop_database(server, dsn)


class _DatabaseSupply:
    """Copies of the prepared template made and dropped in a thread beside the tests.

    CREATE DATABASE waits for fsync (a third of a second here); made ahead,
    a test finds its database ready.
    """

    def __init__(self, server: PostgresServer, template: str, *, ahead: int = 2) -> None:
        self._server = server
        self._template = template
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-databases")
        self._ready = deque(self._worker.submit(self._create) for _ in range(ahead))

    def _create(self) -> str:
        return _create_database(self._server, self._template)

    def take(self) -> str:
        """A fresh copy of the template (and start making the next one)."""
        future = self._ready.popleft()
        self._ready.append(self._worker.submit(self._create))
        return future.result(timeout=60)

    def give_back(self, dsn: str) -> None:
        """Drop a database once a test is done with it."""
        self._worker.submit(_drop_database, self._server, dsn)

    def close(self) -> None:
        """Finish the work under way; databases made ahead go with the cluster."""
        self._worker.shutdown(wait=True)


@pytest.fixture(scope="session")
def prepared_template(pg_server: PostgresServer, password_hash: str) -> Iterator[str]:
    """The name of a database prepared once (migrated, DEVICES, USERS) that tests copy."""
    with _database(pg_server) as dsn:
        prepare_database(dsn, password_hash)
        # Copied while TimescaleDB's scheduler would sit in it: keep everyone out.
        seal_template(pg_server.dsn, dsn.rsplit("/", 1)[1])
        yield dsn.rsplit("/", 1)[1]


@pytest.fixture(scope="session")
def _database_supply(
    pg_server: PostgresServer, prepared_template: str
) -> Iterator[_DatabaseSupply]:
    supply = _DatabaseSupply(pg_server, prepared_template)
    yield supply
    supply.close()


@pytest.fixture
def prepared_dsn(_database_supply: _DatabaseSupply) -> Iterator[str]:
    """A fresh database of this test's own: migrated, DEVICES in both organisations, USERS."""
    dsn = _database_supply.take()
    yield dsn
    _database_supply.give_back(dsn)


async def eventually(
    check: Callable[[], bool] | Callable[[], Awaitable[bool]],
    *,
    within_s: float = 10.0,
    what: str = "the condition",
) -> None:
    """Poll ``check`` (sync or async) until it is true; fail naming ``what`` after ``within_s``."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {within_s:.0f} s waiting for {what}")
        await asyncio.sleep(0.03)


async def db_rows(dsn: str, query: str, *params: object) -> list[tuple[object, ...]]:
    """Run a query in a thread, so the gateway in this event loop keeps running meanwhile."""
    return await asyncio.to_thread(rows, dsn, query, *params)


_event_numbers = itertools.count(1)


def device_message(
    device_id: str, kind: str, *, at: datetime | None = None, **fields: object
) -> RawMessage:
    """A supervision sensor's JSON event as it arrives from the broker (a unique event id)."""
    org = next(d.org for d in DEVICES if d.device_id == device_id)
    at = at or datetime.now(UTC)
    event_id = f"ev-{next(_event_numbers)}-{uuid.uuid4().hex[:6]}"
    body = {"id": event_id, "kind": kind, "ts": at.isoformat(), **fields}
    return RawMessage(f"wgw/{org}/sensor/{device_id}/event", json.dumps(body).encode(), at)


@dataclass(frozen=True)
class Frame:
    """One server-sent event: its id, its event name and its JSON data."""

    id: str | None
    event: str | None
    data: Any


class EventStream:
    """Reads a text/event-stream response frame by frame (comments and bare retry skipped)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self, within_s: float = 5.0) -> Frame:
        """The next frame with data; fail if none comes within ``within_s``."""
        fields: dict[str, str] = {}
        data: list[str] = []
        async with asyncio.timeout(within_s):
            while True:
                line = await anext(self._lines)
                if line == "":
                    if data:
                        return Frame(
                            fields.get("id"), fields.get("event"), json.loads("\n".join(data))
                        )
                    fields.clear()  # e.g. the "retry:" frame
                    continue
                if line.startswith(":"):
                    continue  # a keepalive comment
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "data":
                    data.append(value)
                else:
                    fields[name] = value


@asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient, last_event_id: str | None = None
) -> AsyncIterator[EventStream]:
    """Connect to /api/stream (resuming after ``last_event_id``); disconnect at the end."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    async with client.stream("GET", "/api/stream", headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield EventStream(response)


class ApiClients:
    """httpx clients for one API, made in the test's event loop and closed together."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._clients: list[httpx.AsyncClient] = []

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An anonymous client for this API."""
        client = httpx.AsyncClient(base_url=self.url, timeout=10.0, **kwargs)
        self._clients.append(client)
        return client

    async def login(self, username: str, password: str = PASSWORD) -> httpx.AsyncClient:
        """A client logged in as ``username``, sending its CSRF token with every request."""
        client = self.client()
        response = await client.post(
            "/api/auth/login", json={"username": username, "password": password}
        )
        assert response.status_code == 200, response.text
        assert client.cookies.get(SESSION_COOKIE)
        client.headers[CSRF_HEADER] = response.json()["csrf_token"]
        return client

    async def aclose(self) -> None:
        """Close every client made here (open streams end with them)."""
        for client in self._clients:
            await client.aclose()
        self._clients.clear()


@dataclass
class RunningApi:
    """A gateway fed from memory, with its API on ``url``, running in the test's event loop."""

    url: str
    dsn: str
    gateway: Gateway
    source: MemorySource
    server: ApiServer
    clients: ApiClients

    @property
    def context(self) -> ApiContext:
        """The API's shared state (settings, pool, console with its live feed)."""
        assert self.server.context is not None
        return self.server.context

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An anonymous client for this API."""
        return self.clients.client(**kwargs)

    async def login(self, username: str, password: str = PASSWORD) -> httpx.AsyncClient:
        """A client logged in as ``username``, sending its CSRF token with every request."""
        return await self.clients.login(username, password)

    def feed(
        self, device_id: str, kind: str, *, at: datetime | None = None, **fields: object
    ) -> None:
        """Deliver one device event (extra JSON fields: level, battery), as the broker would."""
        self.source.feed([device_message(device_id, kind, at=at, **fields)])

    def open_alerts(self) -> list[Alert]:
        """The gateway's open alerts, as its engines hold them."""
        assert self.gateway.alerting is not None
        return self.gateway.alerting.open_alerts()

    async def raise_alert(self, device_id: str, kind: str = "sensor.fall") -> str:
        """Feed an alarm-level event and wait until its alert is open (new or repeated); its id.

        A fall or ``sensor.lost``/``sensor.bathroom_too_long`` opens an alert
        of priority 1 or 2 (the default rule set).
        """

        def matching() -> dict[str, int]:
            return {
                a.alert_id: a.count
                for a in self.open_alerts()
                if a.device_id == device_id and a.kind == kind
            }

        before = matching()
        self.feed(device_id, kind, level="alarm")
        found: list[str] = []

        def opened() -> bool:
            found[:] = [i for i, n in matching().items() if n > before.get(i, 0)]
            return bool(found)

        await eventually(opened, what=f"a {kind} alert from {device_id}")
        return found[0]


def _settings(dsn: str, overrides: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    merged = {section: dict(values) for section, values in BASE_SETTINGS.items()}
    merged["db"]["dsn"] = dsn
    for section, values in overrides.items():
        merged.setdefault(section, {}).update(values)
    return merged


@asynccontextmanager
async def running_api(
    dsn: str, *, clock: Clock | None = None, **overrides: dict[str, Any]
) -> AsyncIterator[RunningApi]:
    """Run a gateway and its API on ``dsn`` (already prepared) until the block ends.

    ``overrides`` are settings sections, e.g. ``api={"login_attempts": 2}``;
    ``clock`` a FrozenClock for tests of time (the wall clock otherwise).
    """
    settings = load_settings(None, **_settings(dsn, overrides))
    source = MemorySource(batch_max=100)
    gateway = Gateway(settings, clock=clock, source_factory=lambda: source)
    server = ApiServer(gateway)
    stop = asyncio.Event()
    task = asyncio.create_task(run_gateway(gateway, stop, server), name="test-gateway")
    ready = asyncio.create_task(server.ready.wait())
    await asyncio.wait([task, ready], timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if not server.ready.is_set():
        ready.cancel()
        stop.set()
        await task  # raises what stopped it
        raise AssertionError("the API did not start within 30 s")
    running = RunningApi(server.url, dsn, gateway, source, server, ApiClients(server.url))
    try:
        yield running
    finally:
        await running.clients.aclose()
        stop.set()
        await asyncio.wait_for(task, 30)


@pytest.fixture
async def api(prepared_dsn: str) -> AsyncIterator[RunningApi]:
    """A gateway and API of this test's own, on ``prepared_dsn``: DEVICES, USERS, no alerts."""
    async with running_api(prepared_dsn) as running:
        yield running


class SharedApi:
    """One gateway and API for many tests, run in a thread with its own event loop.

    For checks that change nothing (401, 403, CSRF refusals): they need no
    database of their own, and a gateway per check costs most of a second.
    Whatever a test raises here stays for the rest of the session.
    """

    def __init__(self, dsn: str, spool_dir: Path) -> None:
        self.dsn = dsn
        # Its own: it starts before the per-test WGW_SPOOL__DIR is set.
        self.spool_dir = spool_dir
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._running: RunningApi | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="shared-api", daemon=True)
        # Username → (session cookie, CSRF token): shared tests never log out.
        self.sessions: dict[str, tuple[str, str]] = {}

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._serve())
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        except BaseException as exc:  # re-raised in the tests' thread
            self._error = exc
        finally:
            self._started.set()
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with running_api(self.dsn, spool={"dir": str(self.spool_dir)}) as running:
            self._running = running
            self._started.set()
            await self._stop.wait()

    def start(self) -> None:
        """Start the gateway and wait until its API listens."""
        self._thread.start()
        self._started.wait(60)
        if self._running is None:
            raise AssertionError(f"the shared API did not start: {self._error!r}")

    def stop(self) -> None:
        """Stop the gateway; raise what went wrong in its thread, if anything did."""
        if self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
        if self._error is not None:
            raise self._error

    @property
    def url(self) -> str:
        """Where the API listens."""
        assert self._running is not None
        return self._running.url

    async def raise_alert(self, device_id: str, kind: str = "sensor.fall") -> str:
        """As ``RunningApi.raise_alert``, run in the gateway's own loop."""
        assert self._running is not None
        future = asyncio.run_coroutine_threadsafe(
            self._running.raise_alert(device_id, kind), self._loop
        )
        return await asyncio.wrap_future(future)


@pytest.fixture(scope="session")
def shared_api(
    pg_server: PostgresServer, prepared_template: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SharedApi]:
    """One gateway and API for the whole session, on a database of its own (see SharedApi)."""
    with _database(pg_server, prepared_template) as dsn:
        shared = SharedApi(dsn, tmp_path_factory.mktemp("shared-api") / "spool")
        shared.start()
        try:
            yield shared
        finally:
            shared.stop()


@dataclass
class Shared:
    """The shared API as one test sees it: its URL, alerts, and clients of this test."""

    api: SharedApi
    clients: ApiClients

    async def login(self, username: str) -> httpx.AsyncClient:
        """A client with ``username``'s session, sending its CSRF token with every request.

        One login per account for the whole session: argon2 costs a tenth of a second.
        """
        session = self.api.sessions.get(username)
        if session is None:
            client = await self.clients.login(username)
            self.api.sessions[username] = (
                client.cookies[SESSION_COOKIE],
                client.headers[CSRF_HEADER],
            )
            return client
        token, csrf = session
        return self.clients.client(cookies={SESSION_COOKIE: token}, headers={CSRF_HEADER: csrf})

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An anonymous client."""
        return self.clients.client(**kwargs)

    async def raise_alert(self, device_id: str, kind: str = "sensor.fall") -> str:
        """Raise (or repeat) an alert in the shared gateway; its id."""
        return await self.api.raise_alert(device_id, kind)


@pytest.fixture
async def shared(shared_api: SharedApi) -> AsyncIterator[Shared]:
    """The session's shared gateway and API, for checks that change nothing; clients per test."""
    clients = ApiClients(shared_api.url)
    try:
        yield Shared(shared_api, clients)
    finally:
        await clients.aclose()
