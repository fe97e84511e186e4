"""Hostile HTTP clients: unstorable text, forwarded headers, login floods, logged reads, caching."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from gateway.api.app import create_app
from gateway.api.context import ApiContext
from gateway.api.deps import GATEWAY_ORG
from tests.api.conftest import (
    ADMIN_A,
    API_ROUTES,
    OPERATOR_A,
    ORG_A,
    PASSWORD,
    SENSOR_A1,
    SENSOR_A2,
    UNIT,
    USERS,
    ApiRoute,
    RunningApi,
    Shared,
    db_rows,
    eventually,
    open_stream,
    running_api,
)

pytestmark = pytest.mark.db


async def _entries(dsn: str, actor: str) -> list[tuple[Any, ...]]:
    return await db_rows(
        dsn,
        "SELECT org, action, subject, person, detail FROM access_log WHERE actor = %s "
        "ORDER BY org, seq",
        actor,
    )


async def _security(dsn: str) -> list[tuple[Any, ...]]:
    return await db_rows(
        dsn,
        "SELECT org, actor, subject, detail FROM access_log WHERE action = 'security' "
        "ORDER BY org, seq",
    )


# --- Text PostgreSQL cannot store ------------------------------------------------------


def _with_nul(route: ApiRoute) -> str:
    return route.url.replace("a:000000000000000000000000", "a:%00")


@pytest.mark.parametrize("route", API_ROUTES, ids=str)
async def test_a_nul_in_any_query_is_refused_with_422_on_every_route(
    shared: Shared, route: ApiRoute
) -> None:
    admin = await shared.login(ADMIN_A)
    for url in (f"{route.url}?org=%00", f"{route.url}?area=x%00y", f"{route.url}?%00=1"):
        response = await admin.request(route.method, url, json={"note": "n", "outcome": "o"})
        assert response.status_code == 422, (url, response.text)
        assert response.json()["detail"][0]["type"] == "string_unstorable"
    if "{" in route.path:
        response = await admin.request(route.method, _with_nul(route), json={"note": "n"})
        assert response.status_code == 422, response.text


@pytest.mark.parametrize(
    "text", ["a\u0000b", "\ud800", "x\udfffy"], ids=["nul", "high surrogate", "low surrogate"]
)
async def test_unstorable_text_in_a_json_body_is_refused_with_422(
    shared: Shared, text: str
) -> None:
    alert_id = await shared.raise_alert(SENSOR_A1)
    admin = await shared.login(ADMIN_A)
    # json.dumps writes the escapes (\\u0000, \\ud800) a hostile client would send.
    for url, body in [
        (f"/api/alerts/{alert_id}/comment", {"note": text}),
        (f"/api/alerts/{alert_id}/resolve", {"outcome": "help_given", "note": text}),
        (f"/api/alerts/{alert_id}/acknowledge", {"note": "ok", text: "key"}),
        ("/api/auth/login", {"username": text, "password": PASSWORD}),
        ("/api/auth/login", {"username": OPERATOR_A, "password": text}),
    ]:
        response = await admin.post(
            url, content=json.dumps(body), headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422, (url, response.text)
    # FastAPI reads a body without a Content-Type as JSON: it is checked as well.
    bare = admin.build_request(
        "POST", f"/api/alerts/{alert_id}/comment", content=json.dumps({"note": text}).encode()
    )
    assert "content-type" not in bare.headers
    assert (await admin.send(bare)).status_code == 422
    # Nothing was changed or stored: the alert is still open and not acknowledged.
    assert (await admin.get(f"/api/alerts/{alert_id}")).json()["alert"]["state"] == "open"


async def test_the_requests_of_the_report_answer_422_and_never_500(shared: Shared) -> None:
    # The two requests of the report in issue 9 that answered 500 (psycopg.DataError).
    admin = await shared.login(ADMIN_A)
    for url in ("/api/alerts/%00", "/api/devices?area=%00", "/api/audit/extract?person=%00"):
        response = await admin.get(url)
        assert response.status_code == 422, (url, response.text)
    cookie = shared.client(cookies={"wgw_session": '"\\000"'})
    assert (await cookie.get("/api/alerts")).status_code == 422
    assert (await admin.get("/api/auth/me")).status_code == 200  # the gateway runs on


# --- Trusted proxies and the login limiter ---------------------------------------------


async def _fail_login(client: httpx.AsyncClient, username: str, **headers: str) -> int:
    response = await client.post(
        "/api/auth/login", json={"username": username, "password": "wrong"}, headers=headers
    )
    return response.status_code


async def test_forwarded_headers_count_only_from_a_trusted_proxy(prepared_dsn: str) -> None:
    async with running_api(prepared_dsn, api={"trusted_proxies": ["127.0.0.0/8"]}) as api:
        assert await _fail_login(api.client(), OPERATOR_A, **{"X-Forwarded-For": "203.0.113.7"})
        assert await _fail_login(api.client(), "nobody")

        async def both() -> bool:
            return len(await _security(api.dsn)) == 2

        await eventually(both, what="two failed logins in the access log")
        [(org, _, _, nobody), (org_a, actor, event, detail)] = await _security(api.dsn)
        assert (org_a, actor, event) == (ORG_A, OPERATOR_A, "login_failed")
        assert detail["address"] == "203.0.113.7"  # the client behind the proxy
        assert "wrong" not in str(detail)  # never the password
        assert (org, nobody["account"], nobody["address"]) == (GATEWAY_ORG, "nobody", "127.0.0.1")
    async with running_api(prepared_dsn, api={"trusted_proxies": ["192.0.2.1"]}) as api:
        # The peer is not a listed proxy: its X-Forwarded-For is a claim, and is ignored.
        assert await _fail_login(api.client(), ADMIN_A, **{"X-Forwarded-For": "198.51.100.9"})

        async def third() -> bool:
            return any(d["account"] == ADMIN_A for *_, d in await _security(api.dsn))

        await eventually(third, what="the third failed login")
        [detail] = [d for *_, d in await _security(api.dsn) if d["account"] == ADMIN_A]
        assert detail["address"] == "127.0.0.1"


async def test_fifty_parallel_wrong_passwords_for_one_account_lock_out_no_one_else(
    prepared_dsn: str,
) -> None:
    async with running_api(prepared_dsn, api={"trusted_proxies": ["127.0.0.1"]}) as api:
        limits = api.context.settings.api
        attacker = api.client()
        via_proxy = {"X-Forwarded-For": "198.51.100.20"}
        codes = await asyncio.gather(
            *(_fail_login(attacker, OPERATOR_A, **via_proxy) for _ in range(50))
        )
        assert codes.count(401) == limits.login_attempts
        assert codes.count(429) == 50 - limits.login_attempts
        # Every other account logs in from that same address and from the proxy itself.
        for user in USERS:
            if user.username == OPERATOR_A:
                continue
            for headers in (via_proxy, {}):
                response = await api.client().post(
                    "/api/auth/login",
                    json={"username": user.username, "password": PASSWORD},
                    headers=headers,
                )
                assert response.status_code == 200, (user.username, response.text)
        # The attacked account waits, even with its right password.
        assert (
            await api.client().post(
                "/api/auth/login", json={"username": OPERATOR_A, "password": PASSWORD}
            )
        ).status_code == 429
        metrics = (await api.client().get("/metrics")).text
        failed, locked = limits.login_attempts, 51 - limits.login_attempts
        assert f'wgw_security_events_total{{event="login_failed"}} {failed}.0' in metrics
        assert f'wgw_security_events_total{{event="login_locked"}} {locked}.0' in metrics

        # Each failure is in the access log, and the lockout once (not each refused try).
        async def logged() -> bool:
            return len(await _security(api.dsn)) == failed + 1

        await eventually(logged, what="every failure and the lockout in the access log")
        await asyncio.sleep(0.3)  # nothing more comes
        events = [(org, d["event"], d["address"]) for org, _, _, d in await _security(api.dsn)]
        assert sorted(events) == sorted(
            [(ORG_A, "login_failed", "198.51.100.20")] * failed
            + [(GATEWAY_ORG, "login_locked", "198.51.100.20")]
        )


async def test_an_address_trying_many_accounts_is_held_at_its_own_threshold(
    prepared_dsn: str,
) -> None:
    async with running_api(
        prepared_dsn, api={"login_attempts": 3, "login_attempts_per_address": 5}
    ) as api:
        client = api.client()
        codes = [await _fail_login(client, f"guess-{n}") for n in range(5)]
        assert codes == [401] * 5  # five names, each below its own limit of 3
        assert await _fail_login(client, "guess-new") == 429
        refused = await client.post(
            "/api/auth/login", json={"username": ADMIN_A, "password": PASSWORD}
        )
        assert refused.status_code == 429


# --- Every read of personal data is logged ---------------------------------------------

# GET routes under /api and the access-log subject a read of each writes; None: the
# route returns no personal data (the caller's own account, area names, rules).
_READS: dict[str, str | None] = {
    "/api/auth/me": None,
    "/api/alerts": "alert_queue",
    "/api/alerts/history": "alert_history",
    "/api/alerts/{alert_id}": SENSOR_A1,
    "/api/stream": "alert_queue",
    "/api/devices": "device_health",
    "/api/devices/areas": None,
    "/api/rules": None,
    "/api/audit/entries": "access_log",
    "/api/audit/extract": "access_log",
    "/api/audit/verify": "access_log",
    "/api/reports/night": "night_report",
    "/api/reports/night.pdf": "night_report",
    "/api/reports/night.svg": None,  # a chart: counts and times, no device or person
    "/api/reports/organisations": None,
    "/api/remote/checks": "remote_checks",
    "/api/push/key": None,
}
_QUERIES = {"/api/audit/extract": {"person": UNIT[SENSOR_A1]}, "/api/reports/night": {
    "date": "2026-01-10"}, "/api/reports/night.svg": {"chart": "spread"}}  # fmt: skip


def test_every_read_route_is_classified() -> None:
    reads = {r.path for r in API_ROUTES if r.method == "GET"}
    assert reads == set(_READS), "say whether the new route returns personal data"


async def test_each_route_that_returns_personal_data_writes_an_access_log_entry(
    api: RunningApi,
) -> None:
    alert_id = await api.raise_alert(SENSOR_A1)
    admin = await api.login(ADMIN_A)
    missing = []
    for path, subject in _READS.items():
        before = len(await _entries(api.dsn, ADMIN_A))
        url = path.replace("{alert_id}", alert_id)
        if path == "/api/stream":
            async with open_stream(admin) as stream:
                assert (await stream.next()).event == "snapshot"
        else:
            response = await admin.get(url, params=_QUERIES.get(path))
            assert response.status_code == 200, (path, response.text)
            assert response.headers["cache-control"] == "no-store", path
        if subject is None:
            await asyncio.sleep(0.2)  # staged writes land within a tick
            assert len(await _entries(api.dsn, ADMIN_A)) == before, path
            continue

        async def grew(count: int = before) -> bool:
            return len(await _entries(api.dsn, ADMIN_A)) > count

        try:
            await eventually(grew, within_s=5, what=path)
        except AssertionError:
            missing.append(path)
            continue
        subjects = {row[2] for row in (await _entries(api.dsn, ADMIN_A))}
        assert subject in subjects, path
    assert missing == []


async def test_stream_pushes_and_replays_are_logged_per_alert(api: RunningApi) -> None:
    operator = await api.login(OPERATOR_A)
    async with open_stream(operator) as stream:
        snapshot = await stream.next()
        first = await api.raise_alert(SENSOR_A1)
        pushed = await stream.next()
        assert pushed.data["alert"]["alert_id"] == first
    second = await api.raise_alert(SENSOR_A2)
    async with open_stream(operator, last_event_id=pushed.id) as stream:
        replayed = await stream.next()
        assert replayed.data["alert"]["alert_id"] == second
    assert snapshot.id is not None

    async def both() -> bool:
        rows = await _entries(api.dsn, OPERATOR_A)
        return len([r for r in rows if r[4].get("via") == "stream"]) == 2

    await eventually(both, what="the push and the replay in the access log")
    streamed = [r for r in await _entries(api.dsn, OPERATOR_A) if r[4].get("via") == "stream"]
    assert [(r[1], r[2], r[3], r[4]["alert_id"], r[4]["replay"]) for r in streamed] == [
        ("read", SENSOR_A1, UNIT[SENSOR_A1], first, False),
        ("read", SENSOR_A2, UNIT[SENSOR_A2], second, True),
    ]


async def test_a_failed_login_and_a_403_are_security_events_in_the_log_and_metrics(
    api: RunningApi,
) -> None:
    assert await _fail_login(api.client(), OPERATOR_A) == 401
    operator = await api.login(OPERATOR_A)
    assert (await operator.get("/api/audit/entries")).status_code == 403
    assert (await operator.get("/api/alerts", params={"org": "norrby"})).status_code == 403
    no_csrf = api.client(cookies=operator.cookies)
    assert (await no_csrf.post("/api/auth/logout")).status_code == 403

    async def four() -> bool:
        return len(await _security(api.dsn)) == 4

    await eventually(four, what="four security events")
    rows = await _security(api.dsn)
    assert {(org, actor) for org, actor, _, _ in rows} == {(ORG_A, OPERATOR_A)}
    assert [(s, d["address"]) for _, _, s, d in rows] == [
        ("login_failed", "127.0.0.1"),
        ("forbidden", "127.0.0.1"),
        ("forbidden", "127.0.0.1"),
        ("forbidden", "127.0.0.1"),
    ]
    assert [d["path"] for *_, d in rows[1:]] == ["/api/audit/entries", "/api/alerts",
                                                "/api/auth/logout"]  # fmt: skip
    metrics = (await api.client().get("/metrics")).text
    assert 'wgw_security_events_total{event="forbidden"} 3.0' in metrics
    assert 'wgw_security_events_total{event="login_failed"} 1.0' in metrics


# --- Caching and HSTS ------------------------------------------------------------------


async def test_personal_answers_are_not_stored_and_hsts_follows_secure_cookies(
    api: RunningApi,
) -> None:
    admin = await api.login(ADMIN_A)
    csv = await admin.get("/api/audit/entries", params={"format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.headers["cache-control"] == "no-store"
    refused = await api.client().get("/api/alerts")
    assert refused.headers["cache-control"] == "no-store"
    async with open_stream(admin) as stream:
        assert stream.response.headers["cache-control"] == "no-store"
    assert "strict-transport-security" not in csv.headers  # plain-HTTP test settings
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
        response = await client.get("/healthz")
    assert response.headers["strict-transport-security"].startswith("max-age=")
