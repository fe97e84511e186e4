"""Web Push: subscriptions per account, pages encrypted for each browser and signed with VAPID.

The push service is the only part replaced: a local HTTP endpoint receives
the gateway's real requests, and the test decrypts them with the keys of the
subscription it made (tests/utils/push_service.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.clock import FrozenClock
from core.errors import ConfigError
from gateway import store
from gateway.config import StaffRole, load_settings
from gateway.push import load_vapid_keys, page_recipients, resolve_recipients
from tests.api.conftest import (
    ADMIN_A,
    ADMIN_ALL,
    AUDITOR_A,
    COORDINATOR_A,
    OPERATOR_A,
    OPERATOR_B,
    ORG_A,
    SENSOR_A1,
    SENSOR_A2,
    UNIT,
    RunningApi,
    db_rows,
    eventually,
    running_api,
)
from tests.utils.push_service import BrowserKeys, PushService, vapid_claims

pytestmark = pytest.mark.db


@pytest.fixture
async def service() -> AsyncIterator[PushService]:
    """The stand-in push service on a free local port."""
    async with PushService().running() as running:
        yield running


@pytest.fixture
async def push_api(prepared_dsn: str) -> AsyncIterator[RunningApi]:
    """A gateway whose pushes may go to this machine (the stand-in push service)."""
    async with running_api(prepared_dsn, push={"service_hosts": ["127.0.0.1"]}) as running:
        yield running


async def _subscribe(
    api: RunningApi, username: str, endpoint: str, keys: BrowserKeys | None = None
) -> tuple[httpx.AsyncClient, BrowserKeys]:
    keys = keys or BrowserKeys()
    client = await api.login(username)
    response = await client.post("/api/push/subscribe", json=keys.subscription(endpoint))
    assert response.status_code == 201, response.text
    return client, keys


async def _subscriptions(api: RunningApi) -> list[tuple[Any, ...]]:
    return await db_rows(
        api.dsn, "SELECT username, endpoint FROM push_subscriptions ORDER BY username"
    )


async def test_a_priority_1_alert_reaches_the_subscribed_phone_encrypted_and_signed(
    push_api: RunningApi, service: PushService
) -> None:
    client, keys = await _subscribe(push_api, OPERATOR_A, service.endpoint("nora"))
    public_key = (await client.get("/api/push/key")).json()["public_key"]
    # Another phone of hers, whose console was in English when it subscribed.
    english = BrowserKeys()
    response = await client.post(
        "/api/push/subscribe",
        json=english.subscription(service.endpoint("nora-en")) | {"lang": "en"},
    )
    assert response.status_code == 201, response.text

    alert_id = await push_api.raise_alert(SENSOR_A1)  # a fall: priority 1
    await eventually(lambda: bool(service.to("nora")), what="the push to arrive")
    await eventually(lambda: bool(service.to("nora-en")), what="the English push to arrive")

    [push] = service.to("nora")
    assert push.headers["content-encoding"] == "aes128gcm"
    assert push.headers["urgency"] == "high"
    assert int(push.headers["ttl"]) == 900
    # The body is ciphertext: neither the push service nor anyone between reads the alert.
    assert alert_id.encode() not in push.body
    payload = keys.decrypt(push.body)
    assert payload["alert_id"] == alert_id
    assert payload["priority"] == 1
    # Written by the gateway in the language of the console that subscribed.
    assert (payload["lang"], payload["title"]) == ("sv", "Prio 1 · Fall")
    assert payload["body"] == f"{UNIT[SENSOR_A1]}, Norr"
    [other] = service.to("nora-en")
    assert {k: v for k, v in english.decrypt(other.body).items() if k in {"lang", "title"}} == {
        "lang": "en", "title": "Priority 1 · Fall"
    }  # fmt: skip
    assert payload["url"] == "/?alert=" + alert_id.replace(":", "%3A")
    claims = vapid_claims(push.headers["authorization"], public_key)
    assert claims["aud"] == service.url
    assert claims["sub"] == "mailto:drift@localhost"
    assert claims["exp"] > time.time()

    # The alert reached that account's phone: a read, in the access log like the stream's.
    async def logged() -> bool:
        entries = await db_rows(
            push_api.dsn,
            "SELECT subject, person, detail FROM access_log WHERE actor = %s "
            "AND detail->>'via' = 'push'",
            OPERATOR_A,
        )
        # One for each of her two phones.
        return entries == [(SENSOR_A1, UNIT[SENSOR_A1], {"via": "push", "alert_id": alert_id})] * 2

    await eventually(logged, what="the push's access-log entry")


async def test_an_escalation_is_pushed_again_marked_as_escalated(
    prepared_dsn: str, service: PushService
) -> None:
    clock = FrozenClock(datetime.now(UTC).replace(microsecond=0))
    async with running_api(
        prepared_dsn, clock=clock, push={"service_hosts": ["127.0.0.1"]}, rules={"tick_s": 60}
    ) as api:
        _, keys = await _subscribe(api, COORDINATOR_A, service.endpoint("boss"))
        alert_id = await api.raise_alert(SENSOR_A1)
        await eventually(lambda: len(service.to("boss")) == 1, what="the first page")
        # Unacknowledged past a priority 1's limit (2 minutes in the default rule set; the
        # fall's own time is the wall clock's, a few seconds after the frozen start).
        clock.advance(timedelta(minutes=3))
        api.gateway.tick_now()
        await eventually(lambda: len(service.to("boss")) == 2, what="the escalation's page")
    first, escalation = (keys.decrypt(r.body) for r in service.to("boss"))
    assert (first["alert_id"], first["escalated"]) == (alert_id, False)
    assert (escalation["alert_id"], escalation["escalated"]) == (alert_id, True)
    assert escalation["title"] == "Eskalerat: Prio 1 · Fall"


async def test_a_subscription_the_push_service_calls_gone_or_that_is_unusable_is_removed(
    push_api: RunningApi, service: PushService
) -> None:
    service.status["old-phone"] = 410
    service.status["lost-phone"] = 404
    await _subscribe(push_api, OPERATOR_A, service.endpoint("old-phone"))
    await _subscribe(push_api, OPERATOR_A, service.endpoint("lost-phone"))
    await _subscribe(push_api, OPERATOR_A, service.endpoint("new-phone"))
    # Keys of the right shape that are no point on the curve: nothing can be encrypted for them.
    client = await push_api.login(OPERATOR_A)
    forged = {"p256dh": "B" + "A" * 86, "auth": "A" * 22}
    body = {"endpoint": service.endpoint("forged"), "keys": forged}
    assert (await client.post("/api/push/subscribe", json=body)).status_code == 201

    await push_api.raise_alert(SENSOR_A1)

    async def only_the_live_one_left() -> bool:
        return await _subscriptions(push_api) == [(OPERATOR_A, service.endpoint("new-phone"))]

    await eventually(only_the_live_one_left, what="the gone subscriptions to be removed")
    assert service.to("old-phone") and service.to("lost-phone") and service.to("new-phone")
    assert service.to("forged") == []  # never sent: it could not be encrypted
    notifier = push_api.context.push
    assert notifier is not None
    await eventually(lambda: notifier.outcomes["sent"] == 1, what="the live one's push")
    metrics = (await push_api.client().get("/metrics")).text
    assert 'wgw_push_total{outcome="gone"} 3.0' in metrics
    assert 'wgw_push_total{outcome="sent"} 1.0' in metrics


async def test_a_push_service_that_does_not_answer_holds_up_no_alarm(
    push_api: RunningApi, service: PushService
) -> None:
    service.held["stuck"] = asyncio.Event()
    client, _ = await _subscribe(push_api, OPERATOR_A, service.endpoint("stuck"))

    first = await push_api.raise_alert(SENSOR_A1)
    await eventually(lambda: bool(service.to("stuck")), what="the push to be under way")
    # While that push waits for an answer, alarms are raised and handled as ever.
    second = await push_api.raise_alert(SENSOR_A2)
    response = await client.post(f"/api/alerts/{first}/acknowledge", json={})
    assert response.status_code == 200, response.text
    assert second != first
    service.held["stuck"].set()


async def test_subscriptions_are_kept_per_account_and_removed_only_by_their_owner(
    push_api: RunningApi, service: PushService
) -> None:
    nora, _ = await _subscribe(push_api, OPERATOR_A, service.endpoint("a"))
    boss, _ = await _subscribe(push_api, COORDINATOR_A, service.endpoint("b"))
    # The same browser subscribing again (new keys) replaces its subscription.
    await _subscribe(push_api, COORDINATOR_A, service.endpoint("b"), BrowserKeys())
    assert await _subscriptions(push_api) == [
        (COORDINATOR_A, service.endpoint("b")),
        (OPERATOR_A, service.endpoint("a")),
    ]
    refused = await nora.post("/api/push/unsubscribe", json={"endpoint": service.endpoint("b")})
    assert refused.status_code == 404
    assert "no push subscription" in refused.json()["detail"]
    gone = await boss.post("/api/push/unsubscribe", json={"endpoint": service.endpoint("b")})
    assert gone.status_code == 204
    assert await _subscriptions(push_api) == [(OPERATOR_A, service.endpoint("a"))]


@pytest.mark.parametrize(
    ("change", "status", "reason"),
    [
        ({"endpoint": "https://push.example.org/x"}, 403, "is not a push service"),
        ({"endpoint": "http://fcm.googleapis.com/x"}, 403, "must use https"),
        ({"endpoint": "https://[::1/x"}, 403, "https URL of a push service"),
        ({"endpoint": "ftp://127.0.0.1/x"}, 422, "String should match pattern"),
        ({"keys": {"p256dh": "A" * 87, "auth": "A" * 22}}, 422, "String should match pattern"),
        ({"lang": "de"}, 422, "Input should be 'sv' or 'en'"),
    ],
    ids=["unknown host", "plain http", "no host", "not http", "not a key", "no such language"],
)
async def test_a_subscription_that_cannot_be_used_is_refused_with_the_reason(
    push_api: RunningApi, service: PushService, change: dict[str, Any], status: int, reason: str
) -> None:
    client = await push_api.login(OPERATOR_A)
    body = BrowserKeys().subscription(service.endpoint("x")) | change
    response = await client.post("/api/push/subscribe", json=body)
    assert response.status_code == status, response.text
    assert reason in str(response.json()["detail"])
    assert await _subscriptions(push_api) == []


async def test_the_key_route_says_what_the_role_is_paged_for(push_api: RunningApi) -> None:
    operator = (await (await push_api.login(OPERATOR_A)).get("/api/push/key")).json()
    auditor = (await (await push_api.login(AUDITOR_A)).get("/api/push/key")).json()
    assert operator["paged_priorities"] == [1, 2]
    assert auditor["paged_priorities"] == []
    assert operator["public_key"] == auditor["public_key"] == push_api.context.push.keys.public_key  # type: ignore[union-attr]


async def test_recipients_resolve_to_the_accounts_of_the_organisation(
    push_api: RunningApi,
) -> None:
    async with store.connection(push_api.context.pool, wait_s=5) as conn:
        paged = await resolve_recipients(conn, ["role:operator", "role:coordinator"], ORG_A)
        admins = await resolve_recipients(conn, ["role:admin"], ORG_A)
        other = await resolve_recipients(conn, ["role:operator"], "norrby")
        group = await resolve_recipients(conn, ["group:nattledning"], ORG_A)
        nobody = await resolve_recipients(conn, ["group:unknown"], ORG_A)
    assert [u.username for u in paged] == [COORDINATOR_A, OPERATOR_A]
    # An account of every organisation ("*") is reached for each of them.
    assert [u.username for u in admins] == [ADMIN_ALL, ADMIN_A]
    assert [u.username for u in other] == [OPERATOR_B]
    # A group reaches its members (the coordinator is in nattledning), an unknown one nobody.
    assert [u.username for u in group] == [COORDINATOR_A]
    assert nobody == []


def _change(effect: str, priority: int, *, pages: bool = True, **alert: Any) -> dict[str, Any]:
    return {"type": "alert", "effect": effect, "pages": pages,
            "alert": {"priority": priority, **alert}}  # fmt: skip


def test_who_is_paged_follows_the_priority_and_the_escalation() -> None:
    paged: dict[StaffRole, tuple[int, ...]] = {"operator": (1, 2), "coordinator": (1,)}
    both = ["role:operator", "role:coordinator"]
    assert page_recipients(_change("AlertOpened", 1), paged) == both
    assert page_recipients(_change("AlertOpened", 2), paged) == ["role:operator"]
    assert page_recipients(_change("AlertOpened", 3), paged) == []
    assert page_recipients(_change("AlertOpened", 1, pages=False), paged) == []  # a late alert
    assert page_recipients(_change("AlertTransitioned", 1, pages=False), paged) == []
    assert page_recipients(_change("AlertRepeated", 2), paged) == ["role:operator"]  # promoted
    # An escalation goes to whom it names, whatever the priority; without names, as opened.
    named = {"tier": 2, "to": ["group:jour", "role:admin"], "next_at": None, "next_to": None}
    assert page_recipients(_change("AlertEscalated", 3, escalation=named), paged) == [
        "group:jour", "role:admin"]  # fmt: skip
    assert page_recipients(_change("AlertEscalated", 1), paged) == both


def test_the_vapid_key_is_made_once_and_kept_beside_the_spool(spool_dir: Path) -> None:
    settings = load_settings(None)
    assert settings.spool.dir == spool_dir
    first = load_vapid_keys(settings)
    again = load_vapid_keys(settings)
    assert first.path == spool_dir.parent / "vapid_private_key.pem"
    assert first.path.stat().st_mode & 0o777 == 0o600
    assert again.public_key == first.public_key
    assert len(first.public_key) == 87  # 65 bytes, base64url


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "cannot read"),
        (b"not a key", "is not an unencrypted PEM private key"),
    ],
    ids=["missing", "garbage"],
)
def test_a_configured_vapid_key_that_cannot_be_used_stops_the_start_naming_file_and_key(
    tmp_path: Path, content: bytes | None, reason: str
) -> None:
    path = tmp_path / "vapid.pem"
    if content is not None:
        path.write_bytes(content)
    settings = load_settings(None, push={"vapid_private_key_file": str(path)})
    with pytest.raises(ConfigError) as caught:
        load_vapid_keys(settings)
    assert "push.vapid_private_key_file" in str(caught.value)
    assert str(path) in str(caught.value)
    assert reason in str(caught.value)


async def test_with_push_turned_off_the_routes_say_so(prepared_dsn: str) -> None:
    async with running_api(prepared_dsn, push={"enabled": False}) as api:
        client = await api.login(OPERATOR_A)
        response = await client.get("/api/push/key")
        assert response.status_code == 404
        assert "push.enabled" in response.json()["detail"]
