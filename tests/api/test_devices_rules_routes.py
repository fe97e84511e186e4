"""The device-health panel, the areas filter and the rule set in force, per organisation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.clock import FrozenClock
from tests.api.conftest import (
    ADMIN_ALL,
    AUDITOR_A,
    OPERATOR_A,
    OPERATOR_B,
    ORG_B,
    SENSOR_A1,
    SENSOR_A2,
    SENSOR_A3,
    SENSOR_B1,
    Shared,
    device_message,
    eventually,
    running_api,
)

pytestmark = pytest.mark.db


def _health(devices: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(d["device_id"], d["battery"], d["battery_low"], d["offline"]) for d in devices]


async def test_the_device_panel_shows_contact_battery_and_silence(prepared_dsn: str) -> None:
    start = datetime.now(UTC).replace(microsecond=0)
    clock = FrozenClock(start)
    async with running_api(prepared_dsn, clock=clock) as api:
        operator = await api.login(OPERATOR_A)
        api.source.feed([device_message(SENSOR_A3, "device.heartbeat", at=start, battery=90)])
        # Two hours later the others report; the first sensor stays silent from now on.
        clock.advance(timedelta(hours=2))
        later = clock.now()
        api.source.feed(
            [
                device_message(SENSOR_A1, "device.heartbeat", at=later, battery=80),
                device_message(SENSOR_A2, "device.heartbeat", at=later, battery=15),
                device_message(SENSOR_B1, "device.heartbeat", at=later, battery=5),
            ]
        )
        await eventually(lambda: len(api.source.acked) == 4, what="the heartbeats")

        devices = (await operator.get("/api/devices")).json()
        assert [(d["device_id"], d["unit"], d["area"], d["family"]) for d in devices] == [
            (SENSOR_A1, "Lgh 1101", "Norr", "sensor"),
            (SENSOR_A2, "Lgh 1102", "Norr", "sensor"),
            (SENSOR_A3, "Lgh 2201", "Söder", "sensor"),
        ]
        assert _health(devices) == [
            (SENSOR_A1, 80, False, False),
            (SENSOR_A2, 15, True, False),  # at or below api.battery_low_percent (20)
            (SENSOR_A3, 90, False, False),
        ]
        contact = {d["device_id"]: d["last_contact"] for d in devices}
        assert datetime.fromisoformat(contact[SENSOR_A1]) == later
        assert datetime.fromisoformat(contact[SENSOR_A3]) == start

        # Three missed heartbeats (an hour each) and the outage window: no contact.
        clock.advance(timedelta(hours=1, minutes=5))

        def silent() -> bool:
            return any(a.device_id == SENSOR_A3 for a in api.open_alerts())

        await eventually(silent, what="the no-contact alert")
        problems = (await operator.get("/api/devices?problems_only=true")).json()
        assert _health(problems) == [(SENSOR_A2, 15, True, False), (SENSOR_A3, 90, False, True)]
        south = (await operator.get("/api/devices?area=Söder")).json()
        assert [d["device_id"] for d in south] == [SENSOR_A3]
        everyone = (await (await api.login(ADMIN_ALL)).get("/api/devices")).json()
        assert [d["device_id"] for d in everyone] == [SENSOR_B1, SENSOR_A1, SENSOR_A2, SENSOR_A3]


async def test_the_device_panel_of_another_organisation_is_not_shown(shared: Shared) -> None:
    operator_b = await shared.login(OPERATOR_B)
    devices = (await operator_b.get("/api/devices")).json()
    assert [(d["device_id"], d["org"]) for d in devices] == [(SENSOR_B1, ORG_B)]
    assert (await operator_b.get("/api/devices?org=vallby")).status_code == 403


@pytest.mark.parametrize(
    ("username", "areas"),
    [
        (OPERATOR_A, ["Norr", "Söder"]),
        (OPERATOR_B, ["Centrum"]),
        (ADMIN_ALL, ["Centrum", "Norr", "Söder"]),
    ],
)
async def test_the_area_filter_offers_the_accounts_own_areas(
    shared: Shared, username: str, areas: list[str]
) -> None:
    client = await shared.login(username)
    response = await client.get("/api/devices/areas")
    assert response.status_code == 200
    assert response.json() == areas


@pytest.mark.parametrize("username", [OPERATOR_A, AUDITOR_A])
async def test_every_role_reads_the_rule_set_in_force(shared: Shared, username: str) -> None:
    client = await shared.login(username)
    [ruleset] = (await client.get("/api/rules")).json()
    assert ruleset["org"] is None  # the shared rule set: no organisation has its own here
    assert "help_given" in ruleset["outcomes"]
    assert ruleset["ruleset"]["rules"]["fall"]["priority"] == 1
    # How the console shows each rule's alerts, in both languages.
    assert ruleset["presentation"]["not_back_in_bed"] == {
        "category": "bed",
        "icon": "bed",
        "titles": {"sv": "Ej tillbaka i sängen", "en": "Not back in bed"},
    }
    assert set(ruleset["presentation"]) == set(ruleset["ruleset"]["rules"])


async def test_an_organisations_own_rule_set_is_shown_to_it_and_in_force_for_it(
    prepared_dsn: str, tmp_path: Path
) -> None:
    own = tmp_path / "norrby.yaml"
    # An older file that renames a rule with `title` only.
    own.write_text("outcomes: [help_given, ambulance_called]\nrules:\n  fall: {title: Fallarm}\n")
    async with running_api(prepared_dsn, rules={"org_files": {ORG_B: str(own)}}) as api:
        operator_a = await api.login(OPERATOR_A)
        operator_b = await api.login(OPERATOR_B)
        admin = await api.login(ADMIN_ALL)
        assert [r["org"] for r in (await operator_a.get("/api/rules")).json()] == [None]
        seen_by_b = {r["org"]: r["outcomes"] for r in (await operator_b.get("/api/rules")).json()}
        assert seen_by_b[ORG_B] == ["help_given", "ambulance_called"]
        shown_to_b = {
            r["org"]: r["presentation"] for r in (await operator_b.get("/api/rules")).json()
        }
        assert shown_to_b[ORG_B]["fall"]["titles"] == {"sv": "Fallarm", "en": "Fall"}
        assert shown_to_b[None]["fall"]["titles"] == {"sv": "Fall", "en": "Fall"}
        assert set(seen_by_b) == {None, ORG_B}
        assert len((await admin.get("/api/rules")).json()) == 2

        # The outcome exists for the organisation whose rule set has it, and only there.
        for client, device in ((operator_a, SENSOR_A1), (operator_b, SENSOR_B1)):
            alert_id = await api.raise_alert(device)
            acked = await client.post(f"/api/alerts/{alert_id}/acknowledge", json={})
            assert acked.status_code == 200
            # The public alert carries its rule's look from the rule set in force for it.
            assert (acked.json()["category"], acked.json()["icon"]) == ("fall", "fall")
        listed = {a["device_id"]: a["title"] for a in (await admin.get("/api/alerts")).json()}
        assert (listed[SENSOR_A1], listed[SENSOR_B1]) == ("Fall", "Fallarm")
        [a_id] = [a.alert_id for a in api.open_alerts() if a.device_id == SENSOR_A1]
        [b_id] = [a.alert_id for a in api.open_alerts() if a.device_id == SENSOR_B1]
        body = {"outcome": "ambulance_called"}
        assert (await operator_a.post(f"/api/alerts/{a_id}/resolve", json=body)).status_code == 409
        resolved = await operator_b.post(f"/api/alerts/{b_id}/resolve", json=body)
        assert resolved.status_code == 200
        assert resolved.json()["outcome"] == "ambulance_called"
