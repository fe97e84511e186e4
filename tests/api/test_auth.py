"""Logging in and out, the session cookie, CSRF, roles, and the login limiter and hasher."""

from __future__ import annotations

import asyncio
import time
from http.cookies import SimpleCookie
from types import SimpleNamespace
from typing import Any

import argon2
import httpx
import pytest

from gateway.api import auth
from gateway.api.app import create_app
from gateway.api.auth import LoginLimiter, PasswordHasher
from gateway.api.context import ApiContext
from gateway.api.deps import CSRF_HEADER, SESSION_COOKIE
from gateway.store.users import Role, User, save_user
from tests.api.conftest import (
    ADMIN_A,
    ADMIN_ALL,
    API_ROUTES,
    AUDITOR_A,
    COORDINATOR_A,
    OPERATOR_A,
    OPERATOR_B,
    ORG_A,
    PASSWORD,
    SENSOR_A1,
    ApiRoute,
    RunningApi,
    Shared,
    db_rows,
)

# A body every state-changing route accepts (a note, and an outcome for resolve).
BODY = {"note": "test", "outcome": "help_given"}

PROTECTED = [r for r in API_ROUTES if r.path != "/api/auth/login"]
CHANGES = [r for r in PROTECTED if r.method not in {"GET", "HEAD", "OPTIONS"}]


def _json(route: ApiRoute) -> dict[str, str] | None:
    return None if route.method == "GET" else BODY


def _cookie(response: httpx.Response) -> Any:
    [header] = response.headers.get_list("set-cookie")
    jar: SimpleCookie = SimpleCookie()
    jar.load(header)
    return jar[SESSION_COOKIE]


def test_the_route_table_holds_the_console_routes() -> None:
    declared = {(r.method, r.path) for r in API_ROUTES}
    assert {
        ("POST", "/api/auth/login"),
        ("POST", "/api/auth/logout"),
        ("GET", "/api/auth/me"),
        ("GET", "/api/alerts"),
        ("GET", "/api/alerts/history"),
        ("GET", "/api/alerts/{alert_id}"),
        ("POST", "/api/alerts/{alert_id}/acknowledge"),
        ("POST", "/api/alerts/{alert_id}/en-route"),
        ("POST", "/api/alerts/{alert_id}/on-site"),
        ("POST", "/api/alerts/{alert_id}/resolve"),
        ("POST", "/api/alerts/{alert_id}/comment"),
        ("GET", "/api/stream"),
        ("GET", "/api/devices"),
        ("GET", "/api/devices/areas"),
        ("GET", "/api/rules"),
    } <= declared
    # The access log and the report: the tables of refusals below are not empty.
    assert [r for r in API_ROUTES if r.path.startswith("/api/audit")]
    assert [r for r in API_ROUTES if r.path.startswith("/api/report")]


# --- 401: not logged in ----------------------------------------------------------------


@pytest.mark.db
@pytest.mark.parametrize("route", PROTECTED, ids=str)
async def test_every_api_route_refuses_a_caller_who_is_not_logged_in(
    shared: Shared, route: ApiRoute
) -> None:
    anonymous = shared.client()
    response = await anonymous.request(route.method, route.url, json=_json(route))
    assert response.status_code == 401, response.text
    assert "log in" in response.json()["detail"]


@pytest.mark.db
async def test_a_made_up_session_cookie_is_refused(shared: Shared) -> None:
    forged = shared.client(cookies={SESSION_COOKIE: "not-a-session"})
    response = await forged.get("/api/alerts")
    assert response.status_code == 401


# --- Logging in ------------------------------------------------------------------------


@pytest.mark.db
async def test_login_sets_a_strict_httponly_session_cookie_and_tells_who_is_logged_in(
    api: RunningApi,
) -> None:
    client = api.client()
    response = await client.post(
        "/api/auth/login", json={"username": COORDINATOR_A, "password": PASSWORD}
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["username"], body["role"], body["orgs"]) == (COORDINATOR_A, "coordinator", [ORG_A])
    cookie = _cookie(response)
    assert cookie["httponly"] is True
    assert cookie["samesite"].lower() == "strict"
    assert cookie["path"] == "/"
    assert not cookie["secure"]  # api.secure_cookies = false in these tests (plain HTTP)
    assert cookie.value not in response.text  # the token only travels in the cookie
    assert body["groups"] == ["nattledning"]
    me = await client.get("/api/auth/me")
    assert me.status_code == 200
    assert me.json()["username"] == COORDINATOR_A
    assert me.json()["csrf_token"] == body["csrf_token"]
    # The console highlights an alert escalated to a group of the account's.
    assert me.json()["groups"] == ["nattledning"]


@pytest.mark.db
async def test_the_cookie_is_secure_when_the_setting_asks_for_it(api: RunningApi) -> None:
    running = api.context
    settings = running.settings.model_copy(
        update={"api": running.settings.api.model_copy(update={"secure_cookies": True})}
    )
    context = ApiContext(
        settings=settings,
        pool=running.pool,
        gateway=running.gateway,
        console=running.console,
        clock=running.clock,
    )
    transport = httpx.ASGITransport(app=create_app(context))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        response = await client.post(
            "/api/auth/login", json={"username": OPERATOR_A, "password": PASSWORD}
        )
    assert response.status_code == 200
    cookie = _cookie(response)
    assert cookie["secure"] is True
    assert cookie["httponly"] is True


@pytest.mark.db
@pytest.mark.parametrize(
    ("username", "password"),
    [(OPERATOR_A, "wrong password"), ("nobody", PASSWORD), (OPERATOR_A, PASSWORD.upper())],
    ids=["wrong password", "unknown user", "password case"],
)
async def test_a_wrong_login_gets_401_and_no_cookie(
    api: RunningApi, username: str, password: str
) -> None:
    response = await api.client().post(
        "/api/auth/login", json={"username": username, "password": password}
    )
    assert response.status_code == 401
    assert response.json()["detail"] == "wrong user name or password"
    assert "set-cookie" not in response.headers


@pytest.mark.db
async def test_passwords_are_stored_as_argon2id_and_weak_hashes_are_upgraded_at_login(
    api: RunningApi,
) -> None:
    [(stored,)] = await db_rows(api.dsn, "SELECT password_hash FROM users WHERE username = %s",
                                OPERATOR_A)  # fmt: skip
    assert isinstance(stored, str)
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    # An account saved when the parameters were weaker gets today's hash at its next login.
    weak = argon2.PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    user = User(OPERATOR_B, "Natt Patrull B", Role.OPERATOR, ("norrby",))
    save_user(api.dsn, user=user, password_hash=weak)
    await api.login(OPERATOR_B)
    [(upgraded,)] = await db_rows(api.dsn, "SELECT password_hash FROM users WHERE username = %s",
                                  OPERATOR_B)  # fmt: skip
    assert isinstance(upgraded, str)
    assert upgraded != weak
    assert not PasswordHasher().needs_rehash(upgraded)
    assert PasswordHasher().verify(upgraded, PASSWORD)


class _SlowHasher(PasswordHasher):
    """argon2 on a busy machine: each check takes a second."""

    def verify(self, password_hash: str | None, password: str) -> bool:
        time.sleep(1.0)
        return super().verify(password_hash, password)


@pytest.mark.db
async def test_checking_a_password_does_not_hold_up_the_gateway(api: RunningApi) -> None:
    # Alerts and the live stream share the event loop with the login route.
    api.context.hasher = _SlowHasher()
    loop = asyncio.get_running_loop()
    gaps: list[float] = []

    async def tick() -> None:
        last = loop.time()
        while True:
            await asyncio.sleep(0.01)
            gaps.append(loop.time() - last)
            last = loop.time()

    ticker = asyncio.create_task(tick())
    try:
        client = await api.login(OPERATOR_A)
    finally:
        ticker.cancel()
    assert (await client.get("/api/auth/me")).status_code == 200
    assert max(gaps) < 0.5, f"the event loop stood still for {max(gaps):.2f} s during a login"


@pytest.mark.db
async def test_repeated_failures_are_refused_for_a_while_even_with_the_right_password(
    api: RunningApi,
) -> None:
    limits = api.context.settings.api
    client = api.client()
    for _ in range(limits.login_attempts):
        wrong = await client.post(
            "/api/auth/login", json={"username": OPERATOR_A, "password": "guess"}
        )
        assert wrong.status_code == 401
    refused = await client.post(
        "/api/auth/login", json={"username": OPERATOR_A, "password": PASSWORD}
    )
    assert refused.status_code == 429
    retry_after = int(refused.headers["retry-after"])
    assert 0 < retry_after <= limits.login_window_s + 1
    assert "too many failed logins" in refused.json()["detail"]
    assert "set-cookie" not in refused.headers
    # One account's failures do not lock out the others at the same address (a
    # patrol behind one proxy): the address has a threshold of its own, higher.
    other = await client.post("/api/auth/login", json={"username": ADMIN_A, "password": PASSWORD})
    assert other.status_code == 200


@pytest.mark.db
async def test_guesses_sent_all_at_once_get_no_more_tries_than_one_by_one(
    api: RunningApi,
) -> None:
    limits = api.context.settings.api
    client = api.client()
    guesses = [
        client.post("/api/auth/login", json={"username": OPERATOR_A, "password": f"guess-{n}"})
        for n in range(4 * limits.login_attempts)
    ]
    codes = sorted(r.status_code for r in await asyncio.gather(*guesses))
    assert codes.count(401) == limits.login_attempts
    assert set(codes) == {401, 429}
    right = await client.post(
        "/api/auth/login", json={"username": OPERATOR_A, "password": PASSWORD}
    )
    assert right.status_code == 429


@pytest.mark.db
async def test_logout_ends_the_session(api: RunningApi) -> None:
    client = await api.login(OPERATOR_A)
    token = client.cookies[SESSION_COOKIE]
    assert (await client.get("/api/auth/me")).status_code == 200
    response = await client.post("/api/auth/logout")
    assert response.status_code == 204
    assert _cookie(response)["max-age"] == "0"
    # Even a client that kept the cookie is no longer let in.
    kept = api.client(cookies={SESSION_COOKIE: token})
    assert (await kept.get("/api/auth/me")).status_code == 401
    assert (await kept.get("/api/alerts")).status_code == 401
    assert await db_rows(api.dsn, "SELECT 1 FROM sessions WHERE username = %s", OPERATOR_A) == []


# --- CSRF ------------------------------------------------------------------------------


@pytest.mark.db
@pytest.mark.parametrize("route", CHANGES, ids=str)
async def test_every_change_needs_the_sessions_csrf_token(shared: Shared, route: ApiRoute) -> None:
    alert_id = await shared.raise_alert(SENSOR_A1)
    client = await shared.login(ADMIN_ALL)
    url = route.path.replace("{alert_id}", alert_id)
    token = client.headers.pop(CSRF_HEADER)
    missing = await client.request(route.method, url, json=_json(route))
    assert missing.status_code == 403, missing.text
    assert CSRF_HEADER in missing.json()["detail"]
    forged = await client.request(
        route.method, url, json=_json(route), headers={CSRF_HEADER: token[::-1]}
    )
    assert forged.status_code == 403, forged.text
    # Nothing changed, and the session still works.
    client.headers[CSRF_HEADER] = token
    shown = await client.get(f"/api/alerts/{alert_id}")
    assert shown.status_code == 200
    assert shown.json()["alert"]["state"] == "open"
    assert shown.json()["comments"] == []


@pytest.mark.db
async def test_the_csrf_token_of_another_session_does_not_count(api: RunningApi) -> None:
    alert_id = await api.raise_alert(SENSOR_A1)
    mine = await api.login(OPERATOR_A)
    theirs = await api.login(ADMIN_A)
    response = await mine.post(
        f"/api/alerts/{alert_id}/acknowledge",
        json={},
        headers={CSRF_HEADER: theirs.headers[CSRF_HEADER]},
    )
    assert response.status_code == 403
    ok = await mine.post(f"/api/alerts/{alert_id}/acknowledge", json={})
    assert ok.status_code == 200


# --- Roles -----------------------------------------------------------------------------


@pytest.mark.db
async def test_an_auditor_reads_alerts_but_handles_none_and_sees_no_device_panel(
    api: RunningApi,
) -> None:
    alert_id = await api.raise_alert(SENSOR_A1)
    auditor = await api.login(AUDITOR_A)
    assert [a["alert_id"] for a in (await auditor.get("/api/alerts")).json()] == [alert_id]
    assert (await auditor.get(f"/api/alerts/{alert_id}")).status_code == 200
    assert (await auditor.get("/api/rules")).status_code == 200
    for action in ("acknowledge", "en-route", "on-site", "resolve", "comment"):
        response = await auditor.post(f"/api/alerts/{alert_id}/{action}", json=BODY)
        assert response.status_code == 403, action
        assert "role auditor may not" in response.json()["detail"]
    for path in ("/api/devices", "/api/devices/areas"):
        assert (await auditor.get(path)).status_code == 403, path
    [alert] = api.open_alerts()
    assert alert.state.value == "open"
    assert alert.handled_by is None


@pytest.mark.db
@pytest.mark.parametrize("username", [OPERATOR_A, COORDINATOR_A, ADMIN_A, ADMIN_ALL])
async def test_operators_coordinators_and_admins_handle_alerts(
    api: RunningApi, username: str
) -> None:
    alert_id = await api.raise_alert(SENSOR_A1)
    client = await api.login(username)
    response = await client.post(f"/api/alerts/{alert_id}/acknowledge", json={})
    assert response.status_code == 200
    assert response.json()["handled_by"] == username


# The access log and the alarm-handling report: who may not read them.
LOG_ROUTES = [r for r in API_ROUTES if r.path.startswith("/api/audit")]
REPORT_ROUTES = [r for r in API_ROUTES if r.path.startswith("/api/report")]
REFUSED = [(OPERATOR_A, r) for r in LOG_ROUTES + REPORT_ROUTES] + [
    (COORDINATOR_A, r) for r in LOG_ROUTES
]


@pytest.mark.db
@pytest.mark.parametrize(("username", "route"), REFUSED, ids=str)
async def test_the_access_log_and_report_are_closed_to_the_night_patrol(
    shared: Shared, username: str, route: ApiRoute
) -> None:
    client = await shared.login(username)
    response = await client.request(route.method, route.url, json=_json(route))
    assert response.status_code == 403, response.text


# --- Unit: the limiter and the hasher, without I/O -------------------------------------


class _Time:
    """A stand-in for the time module's monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> _Time:
    clock = _Time()
    monkeypatch.setattr(auth, "time", SimpleNamespace(monotonic=clock.monotonic))
    return clock


def test_the_limiter_lets_attempts_through_until_the_limit(fake_time: _Time) -> None:
    limiter = LoginLimiter(attempts=3, address_attempts=3, window_s=60)
    for _ in range(2):
        limiter.failed("user:anna", "addr:10.0.0.1")
        assert limiter.retry_after("user:anna", "addr:10.0.0.1") == 0
    limiter.failed("user:anna", "addr:10.0.0.1")
    assert limiter.retry_after("user:anna") == 60
    assert limiter.retry_after("addr:10.0.0.1") == 60
    assert limiter.retry_after("user:bertil", "addr:10.0.0.2") == 0  # others are not held


def test_the_limiter_forgets_failures_once_they_leave_the_window(fake_time: _Time) -> None:
    limiter = LoginLimiter(attempts=2, address_attempts=2, window_s=60)
    limiter.failed("user:anna")
    fake_time.now += 30
    limiter.failed("user:anna")
    assert limiter.retry_after("user:anna") == pytest.approx(30)  # the first leaves at +60
    fake_time.now += 30
    assert limiter.retry_after("user:anna") == 0
    limiter.failed("user:anna")  # one old failure in the window, one new: held again
    assert limiter.retry_after("user:anna") == pytest.approx(30)


def test_a_good_login_forgives_the_account_but_not_the_address(fake_time: _Time) -> None:
    limiter = LoginLimiter(attempts=2, address_attempts=2, window_s=60)
    limiter.failed("user:anna", "addr:10.0.0.1")  # a wrong password
    fake_time.now += 1
    good = limiter.failed("user:anna", "addr:10.0.0.1")  # counted until it proves good
    limiter.succeeded(good, forgive="user:anna", keep="addr:10.0.0.1")
    limiter.failed("user:anna", "addr:10.0.0.1")
    assert limiter.retry_after("user:anna") == 0
    # The first wrong password still counts for the address; the good login does not.
    assert limiter.retry_after("addr:10.0.0.1") == pytest.approx(59)


def test_an_address_is_held_at_its_own_higher_threshold(fake_time: _Time) -> None:
    limiter = LoginLimiter(attempts=2, address_attempts=4, window_s=60)
    for name in ("anna", "bertil"):
        for _ in range(2):
            limiter.failed(*limiter.keys(name, "10.0.0.1"))
        assert limiter.retry_after(limiter.keys(name, "10.0.0.1")[0]) == 60
    assert limiter.retry_after(*limiter.keys("cecilia", "10.0.0.2")) == 0
    assert limiter.retry_after(*limiter.keys("cecilia", "10.0.0.1")) == 60  # four from there


def test_a_lockout_is_logged_once_not_per_refused_try(fake_time: _Time) -> None:
    limiter = LoginLimiter(attempts=2, address_attempts=10, window_s=60)
    keys = limiter.keys("anna", "10.0.0.1")
    assert not limiter.first_refusal(*keys)  # not locked: nothing to log
    limiter.failed(*keys)
    limiter.failed(*keys)
    assert limiter.retry_after(*keys) == 60
    assert limiter.first_refusal(*keys)
    assert not limiter.first_refusal(*keys)
    fake_time.now += 61
    assert limiter.retry_after(*keys) == 0  # the lockout is over and forgotten
    limiter.failed(*keys)
    limiter.failed(*keys)
    assert limiter.first_refusal(*keys)  # a new lockout is logged again


def test_the_hasher_uses_argon2id_and_rejects_what_does_not_match() -> None:
    hasher = PasswordHasher()
    stored = hasher.hash(PASSWORD)
    assert stored.startswith("$argon2id$")
    assert hasher.verify(stored, PASSWORD)
    assert not hasher.verify(stored, PASSWORD + " ")
    assert not hasher.verify(None, "not-a-password")  # unknown account: never a match
    assert not hasher.verify("not a hash", PASSWORD)
