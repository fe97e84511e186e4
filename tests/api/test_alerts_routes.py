"""The alert routes end to end: the live queue, the staff actions, the trail in PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from core.clock import FrozenClock
from gateway.store.auditlog import verify
from gateway.store.users import users_for_recipients
from tests.api.conftest import (
    ADMIN_A,
    ADMIN_ALL,
    AUDITOR_A,
    COORDINATOR_A,
    OPERATOR_A,
    OPERATOR_B,
    ORG_A,
    ORG_B,
    SENSOR_A1,
    SENSOR_A2,
    SENSOR_A3,
    SENSOR_B1,
    UNIT,
    RunningApi,
    Shared,
    db_rows,
    eventually,
    running_api,
)

pytestmark = pytest.mark.db


async def _access_rows(api: RunningApi, actor: str) -> list[tuple[Any, ...]]:
    return await db_rows(
        api.dsn,
        "SELECT action, subject, person, detail FROM access_log WHERE actor = %s ORDER BY seq",
        actor,
    )


async def _has_rows(api: RunningApi, actor: str) -> bool:
    return bool(await _access_rows(api, actor))


async def test_the_queue_shows_open_alerts_by_priority_then_age_with_unit_and_area(
    api: RunningApi,
) -> None:
    bathroom = await api.raise_alert(SENSOR_A2, "sensor.bathroom_too_long")  # priority 2, oldest
    lost = await api.raise_alert(SENSOR_A3, "sensor.lost")  # priority 2
    fall = await api.raise_alert(SENSOR_A1)  # priority 1
    fall_b = await api.raise_alert(SENSOR_B1)  # priority 1, the other organisation
    operator = await api.login(OPERATOR_A)

    queue = (await operator.get("/api/alerts")).json()
    assert [(a["alert_id"], a["priority"]) for a in queue] == [(fall, 1), (bathroom, 2), (lost, 2)]
    assert [(a["unit"], a["area"], a["state"]) for a in queue] == [
        ("Lgh 1101", "Norr", "open"),
        ("Lgh 1102", "Norr", "open"),
        ("Lgh 2201", "Söder", "open"),
    ]
    assert [a["alert_id"] for a in (await operator.get("/api/alerts?priority=2")).json()] == [
        bathroom,
        lost,
    ]
    assert [a["alert_id"] for a in (await operator.get("/api/alerts?area=Söder")).json()] == [lost]
    assert len((await operator.get(f"/api/alerts?org={ORG_A}")).json()) == 3

    everyone = await api.login(ADMIN_ALL)
    assert [a["alert_id"] for a in (await everyone.get("/api/alerts")).json()] == [
        fall,
        fall_b,
        bathroom,
        lost,
    ]
    assert [a["alert_id"] for a in (await everyone.get(f"/api/alerts?org={ORG_B}")).json()] == [
        fall_b
    ]


async def test_an_alert_is_handled_from_acknowledge_to_resolve_and_every_step_is_kept(
    api: RunningApi,
) -> None:
    alert_id = await api.raise_alert(SENSOR_A1)
    operator = await api.login(OPERATOR_A)
    base = f"/api/alerts/{alert_id}"

    steps = [
        ("acknowledge", {"note": "tar den"}, "acknowledged"),
        ("en-route", {}, "en_route"),
        ("on-site", {"note": "på plats"}, "on_site"),
        ("resolve", {"outcome": "help_given", "note": "hjälpt upp i sängen"}, "resolved"),
    ]
    for action, body, state in steps:
        response = await operator.post(f"{base}/{action}", json=body)
        assert response.status_code == 200, response.text
        moved = response.json()
        assert (moved["state"], moved["handled_by"]) == (state, OPERATOR_A)
        assert moved["unit"] == "Lgh 1101"
    assert moved["outcome"] == "help_given"
    assert (await operator.get("/api/alerts")).json() == []  # gone from the live queue

    async def stored() -> bool:
        found = await db_rows(api.dsn, "SELECT state FROM alerts WHERE alert_id = %s", alert_id)
        return found == [("resolved",)]

    await eventually(stored, what="the resolved alert in PostgreSQL")
    [(outcome, handled_by, closed)] = await db_rows(
        api.dsn,
        "SELECT outcome, handled_by, closed_at IS NOT NULL FROM alerts WHERE alert_id = %s",
        alert_id,
    )
    assert (outcome, handled_by, closed) == ("help_given", OPERATOR_A, True)
    trail = await db_rows(
        api.dsn,
        "SELECT from_state, to_state, actor, note FROM alert_transitions"
        " WHERE alert_id = %s ORDER BY at, id",
        alert_id,
    )
    assert [row[:3] for row in trail] == [
        (None, "open", "rule:fall"),
        ("open", "acknowledged", OPERATOR_A),
        ("acknowledged", "en_route", OPERATOR_A),
        ("en_route", "on_site", OPERATOR_A),
        ("on_site", "resolved", OPERATOR_A),
    ]
    assert [row[3] for row in trail[1:]] == ["tar den", "", "på plats", "hjälpt upp i sängen"]

    # Each action is in the access log under the staff member, against the person's unit.
    access = await _access_rows(api, OPERATOR_A)
    actions = [(a, s, p, d.get("to")) for a, s, p, d in access if a != "read"]
    assert actions == [
        ("acknowledge", SENSOR_A1, "Lgh 1101", "acknowledged"),
        ("change", SENSOR_A1, "Lgh 1101", "en_route"),
        ("change", SENSOR_A1, "Lgh 1101", "on_site"),
        ("resolve", SENSOR_A1, "Lgh 1101", "resolved"),
    ]
    assert access[-1][3]["outcome"] == "help_given"

    # The closed alert is still shown, from PostgreSQL, with its whole trail.
    detail = (await operator.get(base)).json()
    assert detail["alert"]["state"] == "resolved"
    assert detail["alert"]["handled_by"] == OPERATOR_A
    assert [t["to_state"] for t in detail["transitions"]] == [
        "open", "acknowledged", "en_route", "on_site", "resolved",
    ]  # fmt: skip
    history = (await operator.get("/api/alerts/history")).json()
    assert [(h["alert_id"], h["state"], h["outcome"]) for h in history] == [
        (alert_id, "resolved", "help_given")
    ]


async def test_a_wrong_move_is_refused_with_the_reason_and_changes_nothing(
    api: RunningApi,
) -> None:
    alert_id = await api.raise_alert(SENSOR_A1)
    operator = await api.login(OPERATOR_A)
    base = f"/api/alerts/{alert_id}"

    skipped = await operator.post(f"{base}/resolve", json={"outcome": "help_given"})
    assert skipped.status_code == 409
    assert "cannot go from open to resolved" in skipped.json()["detail"]
    early = await operator.post(f"{base}/on-site", json={})
    assert early.status_code == 409
    assert "cannot go from open to on_site" in early.json()["detail"]

    assert (await operator.post(f"{base}/acknowledge", json={})).status_code == 200
    again = await operator.post(f"{base}/acknowledge", json={})
    assert again.status_code == 409
    assert "cannot go from acknowledged to acknowledged" in again.json()["detail"]
    unknown = await operator.post(f"{base}/resolve", json={"outcome": "teleported"})
    assert unknown.status_code == 409
    assert "expected an outcome from" in unknown.json()["detail"]
    assert "help_given" in unknown.json()["detail"]
    missing = await operator.post(f"{base}/resolve", json={"note": "klart"})
    assert missing.status_code == 422

    shown = (await operator.get(base)).json()
    assert (shown["alert"]["state"], shown["alert"]["outcome"]) == ("acknowledged", None)
    nowhere = await operator.post("/api/alerts/a:ffffffffffffffffffffffff/acknowledge", json={})
    assert nowhere.status_code == 409
    assert "not open" in nowhere.json()["detail"]

    # Resolved, it takes no more moves.
    assert (await operator.post(f"{base}/resolve", json={"outcome": "false_alarm"})).is_success
    late = await operator.post(f"{base}/en-route", json={})
    assert late.status_code == 409
    assert "not open" in late.json()["detail"]

    async def trail() -> list[tuple[object, ...]]:
        return await db_rows(
            api.dsn,
            "SELECT to_state FROM alert_transitions WHERE alert_id = %s ORDER BY at, id",
            alert_id,
        )

    async def resolved_stored() -> bool:
        return ("resolved",) in await trail()

    await eventually(resolved_stored, what="the resolve in PostgreSQL")
    assert await trail() == [("open",), ("acknowledged",), ("resolved",)]


async def test_reading_an_alert_or_the_queue_is_written_to_the_access_log(
    api: RunningApi,
) -> None:
    alert_id = await api.raise_alert(SENSOR_A2)
    coordinator = await api.login(COORDINATOR_A)
    auditor = await api.login(AUDITOR_A)
    assert (await coordinator.get(f"/api/alerts/{alert_id}")).status_code == 200
    assert (await auditor.get(f"/api/alerts/{alert_id}")).status_code == 200
    assert (await coordinator.get("/api/alerts")).status_code == 200

    async def logged() -> bool:
        return len(await _access_rows(api, COORDINATOR_A)) == 2

    await eventually(logged, what="the coordinator's reads in the access log")
    [detail_read, queue_read] = await _access_rows(api, COORDINATOR_A)
    assert detail_read[:3] == ("read", SENSOR_A2, UNIT[SENSOR_A2])
    assert detail_read[3]["alert_id"] == alert_id
    assert detail_read[3]["via"] == "api"
    assert queue_read[:2] == ("read", "alert_queue")
    assert queue_read[3]["alerts"] == [alert_id]
    await eventually(lambda: _has_rows(api, AUDITOR_A), what="the auditor's read")
    [(action, subject, person, _)] = await _access_rows(api, AUDITOR_A)
    assert (action, subject, person) == ("read", SENSOR_A2, UNIT[SENSOR_A2])
    # Staged and chained like every other entry: the chain still verifies.
    report = await asyncio.to_thread(verify, api.dsn, org=ORG_A)
    assert report.ok


async def test_a_comment_joins_the_trail_and_the_access_log(api: RunningApi) -> None:
    alert_id = await api.raise_alert(SENSOR_A1)
    operator = await api.login(OPERATOR_A)
    response = await operator.post(
        f"/api/alerts/{alert_id}/comment", json={"note": "ringde anhörig"}
    )
    assert response.status_code == 201
    assert (response.json()["actor"], response.json()["note"]) == (OPERATOR_A, "ringde anhörig")
    assert (
        await operator.post(f"/api/alerts/{alert_id}/comment", json={"note": ""})
    ).status_code == 422

    async def shown() -> bool:
        detail = (await operator.get(f"/api/alerts/{alert_id}")).json()
        return [(c["actor"], c["note"]) for c in detail["comments"]] == [
            (OPERATOR_A, "ringde anhörig")
        ]

    await eventually(shown, what="the comment on the alert")
    access = await _access_rows(api, OPERATOR_A)
    assert [(a, s, p, d["to"]) for a, s, p, d in access if a == "change"] == [
        ("change", SENSOR_A1, "Lgh 1101", "comment")
    ]
    # A comment does not move the alert.
    assert [a.state.value for a in api.open_alerts()] == ["open"]


async def test_an_unknown_alert_is_404(shared: Shared) -> None:
    operator = await shared.login(OPERATOR_A)
    response = await operator.get("/api/alerts/a:ffffffffffffffffffffffff")
    assert response.status_code == 404
    assert "no alert" in response.json()["detail"]


# --- Other organisations ----------------------------------------------------------------

OTHER_ORG = [
    (OPERATOR_B, "GET", "/api/alerts/{a}"),
    (OPERATOR_B, "POST", "/api/alerts/{a}/acknowledge"),
    (OPERATOR_B, "POST", "/api/alerts/{a}/en-route"),
    (OPERATOR_B, "POST", "/api/alerts/{a}/on-site"),
    (OPERATOR_B, "POST", "/api/alerts/{a}/resolve"),
    (OPERATOR_B, "POST", "/api/alerts/{a}/comment"),
    (OPERATOR_B, "GET", f"/api/alerts?org={ORG_A}"),
    (OPERATOR_B, "GET", f"/api/alerts/history?org={ORG_A}"),
    (OPERATOR_B, "GET", f"/api/devices?org={ORG_A}"),
    (ADMIN_A, "GET", f"/api/alerts?org={ORG_B}"),
    (ADMIN_A, "GET", f"/api/alerts/history?org={ORG_B}"),
    (AUDITOR_A, "GET", f"/api/alerts?org={ORG_B}"),
]


@pytest.mark.parametrize(("username", "method", "path"), OTHER_ORG, ids=str)
async def test_another_organisations_alerts_are_closed(
    shared: Shared, username: str, method: str, path: str
) -> None:
    alert_id = await shared.raise_alert(SENSOR_A3, "sensor.lost")
    client = await shared.login(username)
    body = None if method == "GET" else {"note": "x"}
    if path.endswith("/resolve"):
        body = {"note": "x", "outcome": "help_given"}  # bodies take only their own fields
    response = await client.request(method, path.replace("{a}", alert_id), json=body)
    assert response.status_code == 403, response.text
    # It stays open and nobody's.
    operator = await shared.login(OPERATOR_A)
    detail = await operator.get(f"/api/alerts/{alert_id}")
    assert detail.status_code == 200, detail.text
    shown = detail.json()["alert"]
    assert (shown["state"], shown["handled_by"], shown["org"]) == ("open", None, ORG_A)


async def test_an_operator_sees_only_the_own_organisations_queue(shared: Shared) -> None:
    a = await shared.raise_alert(SENSOR_A1)
    b = await shared.raise_alert(SENSOR_B1)
    operator_b = await shared.login(OPERATOR_B)
    queue = (await operator_b.get("/api/alerts")).json()
    assert b in [x["alert_id"] for x in queue]
    assert a not in [x["alert_id"] for x in queue]
    assert {x["org"] for x in queue} == {ORG_B}
    history = (await operator_b.get("/api/alerts/history")).json()
    assert {x["org"] for x in history} <= {ORG_B}
    assert json.dumps(queue).find("Lgh 1101") == -1  # nothing of the other's persons


# Every route that takes ?org=; an account with every organisation may name any.
ORG_PARAM_ROUTES = [
    "/api/alerts",
    "/api/alerts/history",
    "/api/devices",
    "/api/audit/entries",
    "/api/audit/extract?person=Lgh+1101",
    "/api/audit/verify",
    "/api/reports/night?date=2026-11-20",
]


async def test_a_malformed_organisation_is_refused_and_the_gateway_keeps_running(
    api: RunningApi,
) -> None:
    admin = await api.login(ADMIN_ALL)
    for path in ORG_PARAM_ROUTES:
        separator = "&" if "?" in path else "?"
        response = await admin.get(f"{path}{separator}org=%0Avallby%20%C3%9F")
        assert response.status_code == 422, (path, response.text)
        assert "org" in response.text
    # The staged reads and actions are still written: ingest and alerting are alive.
    alert_id = await api.raise_alert(SENSOR_A1)
    assert (await admin.post(f"/api/alerts/{alert_id}/acknowledge", json={})).is_success

    async def stored() -> bool:
        found = await db_rows(api.dsn, "SELECT state FROM alerts WHERE alert_id = %s", alert_id)
        return found == [("acknowledged",)]

    await eventually(stored, what="the acknowledgement in PostgreSQL")
    assert (await api.client().get("/healthz")).status_code == 200


async def test_an_unacknowledged_fall_reaches_its_tier_for_its_recipients_until_acknowledged(
    prepared_dsn: str,
) -> None:
    clock = FrozenClock(datetime.now(UTC))
    async with running_api(prepared_dsn, clock=clock) as api:
        fall = await api.raise_alert(SENSOR_A1)
        coordinator = await api.login(COORDINATOR_A)
        (alert,) = (await coordinator.get("/api/alerts")).json()
        paged = datetime.fromisoformat(alert["opened_at"])
        escalation = alert["escalation"]
        assert (escalation["tier"], escalation["to"], escalation["next_to"]) == (
            0, [], ["role:coordinator"]
        )  # fmt: skip
        assert datetime.fromisoformat(escalation["next_at"]) == paged + timedelta(minutes=2)
        assert not alert["escalated"]

        # Two minutes unacknowledged by the gateway's clock: the first tier.
        clock.advance(paged + timedelta(minutes=2) - clock.now())
        await eventually(lambda: api.open_alerts()[0].escalated, what="the first tier")
        (alert,) = (await coordinator.get("/api/alerts")).json()
        escalation = alert["escalation"]
        assert alert["escalated"]
        assert (escalation["tier"], escalation["to"], escalation["next_to"]) == (
            1, ["role:coordinator"], ["role:operator"]
        )  # fmt: skip
        assert datetime.fromisoformat(escalation["next_at"]) == paged + timedelta(minutes=5)
        # The tier's recipients are the organisation's coordinators.
        async with await psycopg.AsyncConnection.connect(api.dsn) as conn:
            told = await users_for_recipients(conn, org=ORG_A, recipients=escalation["to"])
        assert [u.username for u in told] == [COORDINATOR_A]

        async def stored() -> bool:
            found = await db_rows(
                api.dsn,
                "SELECT escalation_tier, escalated_to FROM alerts WHERE alert_id = %s",
                fall,
            )
            return found == [(1, ["role:coordinator"])]

        await eventually(stored, what="the tier stored")
        # Each tier reached is a row of its own: when, and whom it named.
        assert await db_rows(
            api.dsn, "SELECT tier, at, recipients FROM alert_escalations WHERE alert_id = %s", fall
        ) == [(1, paged + timedelta(minutes=2), ["role:coordinator"])]

        # Acknowledged: the tier reached stays, no further one comes.
        operator = await api.login(OPERATOR_A)
        acked = (await operator.post(f"/api/alerts/{fall}/acknowledge", json={})).json()
        assert acked["escalation"] == {
            "tier": 1, "to": ["role:coordinator"], "next_at": None, "next_to": None
        }  # fmt: skip
        clock.advance(timedelta(minutes=10))
        api.gateway.tick_now()
        (alert,) = (await operator.get("/api/alerts")).json()
        assert alert["escalation"]["tier"] == 1
        history = (await operator.get("/api/alerts/history")).json()
        assert [
            (a["alert_id"], a["escalation"]["tier"], a["escalation"]["to"]) for a in history
        ] == [(fall, 1, ["role:coordinator"])]
