"""Remote supervision from the console: planned checks, judged views, results, the alert."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from core.clock import FrozenClock
from tests.api.conftest import (
    ADMIN_ALL,
    OPERATOR_A,
    OPERATOR_B,
    SENSOR_A1,
    SENSOR_A2,
    RunningApi,
    db_rows,
    eventually,
    running_api,
)
from tests.utils.remote import CHECK_1, CHECK_2, CHECK_REFUSING, SE, import_remote_directory

pytestmark = pytest.mark.db


@pytest.fixture
def clock() -> FrozenClock:
    """Five past eleven on the night: the first planned check is due."""
    return FrozenClock(datetime(2026, 11, 24, 23, 5, tzinfo=SE))


@pytest.fixture
async def remote(prepared_dsn: str, clock: FrozenClock) -> AsyncIterator[RunningApi]:
    """A gateway whose access directory holds the consents and agreed times above."""
    import_remote_directory(prepared_dsn)
    async with running_api(prepared_dsn, clock=clock) as running:
        yield running


async def _logged_views(api: RunningApi, count: int) -> list[tuple[Any, ...]]:
    query = (
        "SELECT actor, subject, person, detail->>'allowed', detail->'reasons',"
        " detail->>'account', detail->>'outcome' FROM access_log"
        " WHERE action = 'remote_view' ORDER BY seq"
    )

    async def enough() -> bool:
        return len(await db_rows(api.dsn, query)) >= count

    await eventually(enough, what=f"{count} remote views in the access log")
    return await db_rows(api.dsn, query)


async def test_a_check_inside_the_agreed_times_is_allowed_and_logged(remote: RunningApi) -> None:
    operator = await remote.login(OPERATOR_A)
    answer = await operator.post(
        "/api/remote/checks/view",
        json={"device_id": SENSOR_A1, "planned_at": CHECK_1.isoformat()},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["allowed"] is True
    assert answer.json()["reasons"] == []
    assert await _logged_views(remote, 1) == [
        ("s-anna", SENSOR_A1, "Lgh 1101", "true", [], OPERATOR_A, None)
    ]


async def test_a_check_outside_them_or_off_shift_is_refused_with_the_reason_and_logged(
    remote: RunningApi, clock: FrozenClock
) -> None:
    operator = await remote.login(OPERATOR_A)
    # No consent on record: refused whatever the time.
    refused = await operator.post(
        "/api/remote/checks/view",
        json={"device_id": SENSOR_A2, "planned_at": CHECK_REFUSING.isoformat()},
    )
    assert refused.json() | {"at": None} == {
        "device_id": SENSOR_A2,
        "at": None,
        "allowed": False,
        "reasons": ["no_consent"],
        "message": "nekad: samtycke saknas",
    }
    # Half past six: the agreed window closed at six.
    clock.advance(timedelta(hours=7, minutes=25))
    late = await operator.post("/api/remote/checks/view", json={"device_id": SENSOR_A1})
    assert late.json()["allowed"] is False
    assert late.json()["reasons"] == ["outside_agreed_times"]
    # A result cannot be entered outside them either; the attempt is logged too.
    result = await operator.post(
        "/api/remote/checks/result",
        json={"device_id": SENSOR_A1, "planned_at": CHECK_2.isoformat(), "outcome": "seen"},
    )
    assert result.status_code == 200
    assert result.json()["recorded"] is False
    assert result.json()["decision"]["reasons"] == ["outside_agreed_times"]
    assert result.json()["check"]["status"] == "pending"
    # The next evening, inside the agreed window but after Anna's shift ended.
    clock.advance(timedelta(hours=16))
    operator = await remote.login(OPERATOR_A)  # the night's session has ended
    off_shift = await operator.post("/api/remote/checks/view", json={"device_id": SENSOR_A1})
    assert off_shift.json()["reasons"] == ["off_shift"]
    assert off_shift.json()["message"] == "nekad: utanför arbetspass"
    assert await _logged_views(remote, 4) == [
        ("s-anna", SENSOR_A2, "Lgh 1102", "false", ["no_consent"], OPERATOR_A, None),
        ("s-anna", SENSOR_A1, "Lgh 1101", "false", ["outside_agreed_times"], OPERATOR_A, None),
        ("s-anna", SENSOR_A1, "Lgh 1101", "false", ["outside_agreed_times"], OPERATOR_A, "seen"),
        ("s-anna", SENSOR_A1, "Lgh 1101", "false", ["off_shift"], OPERATOR_A, None),
    ]


async def test_an_account_that_is_no_staff_member_is_refused_as_unknown_staff(
    remote: RunningApi,
) -> None:
    admin = await remote.login(ADMIN_ALL)
    answer = await admin.post("/api/remote/checks/view", json={"device_id": SENSOR_A1})
    assert answer.json()["reasons"] == ["unknown_staff"]
    assert (await _logged_views(remote, 1))[0][:4] == (ADMIN_ALL, SENSOR_A1, "Lgh 1101", "false")


async def test_two_not_seen_results_raise_the_alert_to_the_patrol(remote: RunningApi) -> None:
    operator = await remote.login(OPERATOR_A)
    body = {"device_id": SENSOR_A1, "planned_at": CHECK_1.isoformat(), "outcome": "not_seen"}
    first = await operator.post("/api/remote/checks/result", json=body)
    assert first.status_code == 200, first.text
    assert first.json()["check"] | {"last_at": None} == first.json()["check"] | {
        "status": "not_seen",
        "not_seen": 1,
        "alert_id": None,
        "last_by": OPERATOR_A,
        "last_at": None,
    }
    assert not [a for a in remote.open_alerts() if a.rule_id == "remote_check_not_seen"]

    second = (await operator.post("/api/remote/checks/result", json=body)).json()["check"]
    assert (second["status"], second["not_seen"]) == ("alerted", 2)
    [alert] = [a for a in remote.open_alerts() if a.rule_id == "remote_check_not_seen"]
    assert (alert.alert_id, alert.device_id, alert.priority) == (second["alert_id"], SENSOR_A1, 2)
    # Shown like any alert: in the queue, and stored with its opening transition.
    queue = (await operator.get("/api/alerts")).json()
    assert [a["title"] for a in queue if a["alert_id"] == alert.alert_id] == [
        "Ej sedd vid fjärrtillsyn"
    ]

    async def stored() -> bool:
        found = await db_rows(
            remote.dsn, "SELECT rule_id FROM alerts WHERE alert_id = %s", alert.alert_id
        )
        return found == [("remote_check_not_seen",)]

    await eventually(stored, what="the stored alert")


async def test_the_nights_checks_show_consent_results_and_overdue(
    remote: RunningApi, clock: FrozenClock
) -> None:
    operator = await remote.login(OPERATOR_A)
    clock.advance(timedelta(minutes=20))  # 23:25: the 23:00 check is past its grace

    async def listed() -> list[tuple[Any, ...]]:
        answer = await operator.get("/api/remote/checks")
        assert answer.status_code == 200, answer.text
        assert answer.json()["night"] == "2026-11-24"
        assert answer.json()["grace_min"] == 15
        return [
            (c["device_id"], datetime.fromisoformat(c["planned_at"]), c["consent_on_record"],
             c["status"], c["overdue"])
            for c in answer.json()["checks"]
        ]  # fmt: skip

    assert await listed() == [
        (SENSOR_A1, CHECK_1, True, "pending", True),
        (SENSOR_A2, CHECK_REFUSING, False, "pending", False),
        (SENSOR_A1, CHECK_2, True, "pending", False),
    ]
    seen = {"device_id": SENSOR_A1, "planned_at": CHECK_1.isoformat(), "outcome": "seen"}
    assert (await operator.post("/api/remote/checks/result", json=seen)).status_code == 200
    assert (await listed())[0] == (SENSOR_A1, CHECK_1, True, "seen", False)
    # Another organisation's patrol sees none of these homes.
    other = await remote.login(OPERATOR_B)
    assert (await other.get("/api/remote/checks")).json()["checks"] == []
    refused = await other.post("/api/remote/checks/view", json={"device_id": SENSOR_A1})
    assert refused.status_code == 403


async def test_a_result_names_a_planned_check(remote: RunningApi) -> None:
    operator = await remote.login(OPERATOR_A)
    wrong = CHECK_1 + timedelta(minutes=10)
    answer = await operator.post(
        "/api/remote/checks/result",
        json={"device_id": SENSOR_A1, "planned_at": wrong.isoformat(), "outcome": "seen"},
    )
    assert answer.status_code == 422
    assert "GET /api/remote/checks" in answer.json()["detail"]


async def test_the_not_seen_count_survives_a_restart_of_the_gateway(
    prepared_dsn: str, clock: FrozenClock
) -> None:
    import_remote_directory(prepared_dsn)
    body = {"device_id": SENSOR_A1, "planned_at": CHECK_1.isoformat(), "outcome": "not_seen"}
    async with running_api(prepared_dsn, clock=clock) as first:
        operator = await first.login(OPERATOR_A)
        assert (await operator.post("/api/remote/checks/result", json=body)).status_code == 200
        await eventually(
            lambda: first.gateway.spool_status().waiting_storage == 0, what="the journal stored"
        )
    clock.advance(timedelta(minutes=2))
    async with running_api(prepared_dsn, clock=clock) as second:
        operator = await second.login(OPERATOR_A)
        [listed, *_] = (await operator.get("/api/remote/checks")).json()["checks"]
        assert (listed["status"], listed["not_seen"]) == ("not_seen", 1)
        again = (await operator.post("/api/remote/checks/result", json=body)).json()["check"]
        assert (again["status"], again["not_seen"]) == ("alerted", 2)
        assert [a.rule_id for a in second.open_alerts()] == ["remote_check_not_seen"]
