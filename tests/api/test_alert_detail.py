"""The alert detail (trail, the home around it, entry notes) and open handover."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.clock import FrozenClock
from core.events import Family, RawMessage
from gateway.registry import DeviceRecord
from gateway.store.devices import import_devices
from tests.api.conftest import (
    AUDITOR_A,
    COORDINATOR_A,
    DEVICES,
    OPERATOR_A,
    ORG_A,
    SENSOR_A1,
    SENSOR_A2,
    RunningApi,
    db_rows,
    device_message,
    eventually,
    running_api,
)

pytestmark = pytest.mark.db

# Invented: no real home's way in.
NOTES = "Nyckelbox vid porten, kod 4711. Katten Misse får inte gå ut."


LOCK_A1 = "lock-a001"


def _lock_message(kind: str, at: datetime, *, actor: str) -> RawMessage:
    """A door lock's JSON event: the key that acted is its actor."""
    body = {"id": f"L-{uuid.uuid4().hex[:8]}", "kind": kind, "ts": at.isoformat(), "actor": actor}
    return RawMessage(f"wgw/{ORG_A}/lock/{LOCK_A1}/event", json.dumps(body).encode(), at)


async def _reads(api: RunningApi, actor: str, alert_id: str) -> list[dict[str, Any]]:
    found = await db_rows(
        api.dsn,
        "SELECT detail FROM access_log WHERE actor = %s AND action = 'read'"
        " AND detail->>'alert_id' = %s ORDER BY seq",
        actor,
        alert_id,
    )
    return [dict(d) for (d,) in found]  # type: ignore[call-overload]


async def _resolved(api: RunningApi, alert_id: str) -> None:
    async def stored() -> bool:
        rows = await db_rows(api.dsn, "SELECT state FROM alerts WHERE alert_id = %s", alert_id)
        return rows == [("resolved",)]

    await eventually(stored, what=f"{alert_id} resolved in PostgreSQL")


async def test_the_detail_shows_trail_comments_home_events_earlier_alerts_devices_and_notes(
    prepared_dsn: str,
) -> None:
    # The home has a door lock beside its sensor; the notes are kept with the sensor.
    # Both are registered before the gateway starts, so it knows the lock at once.
    sensor = next(d for d in DEVICES if d.device_id == SENSOR_A1)
    lock = DeviceRecord(device_id=LOCK_A1, family=Family.LOCK, org=ORG_A, unit=sensor.unit)
    notes = sensor.model_copy(update={"entry_notes": NOTES})
    await asyncio.to_thread(import_devices, prepared_dsn, [notes, lock])
    async with running_api(prepared_dsn) as api:
        await _detail_of_a_home(api)


async def _detail_of_a_home(api: RunningApi) -> None:
    operator = await api.login(OPERATOR_A)

    # An earlier alarm of the home, handled and closed.
    earlier = await api.raise_alert(SENSOR_A1)
    for step, body in (("acknowledge", {}), ("resolve", {"outcome": "false_alarm"})):
        assert (await operator.post(f"/api/alerts/{earlier}/{step}", json=body)).is_success
    await _resolved(api, earlier)
    # The evening before: contact five hours ago, then nothing until the bed exit an hour ago.
    now = datetime.now(UTC)
    api.source.feed(
        [
            device_message(SENSOR_A1, "device.heartbeat", at=now - timedelta(hours=5)),
            device_message(SENSOR_A1, "sensor.left_bed", at=now - timedelta(hours=1)),
            device_message(SENSOR_A1, "sensor.in_bed", at=now - timedelta(minutes=50)),
            _lock_message("lock.unlocked", now - timedelta(hours=2), actor="key-0042"),
            # Another home's event is not this home's story.
            device_message(SENSOR_A2, "sensor.left_bed", at=now - timedelta(hours=1)),
        ]
    )
    alert_id = await api.raise_alert(SENSOR_A1)
    assert (await operator.post(f"/api/alerts/{alert_id}/acknowledge", json={})).is_success
    posted = await operator.post(f"/api/alerts/{alert_id}/comment", json={"note": "ringt anhörig"})
    assert posted.json()["actor_name"] == "Natt Patrull A"

    detail: dict[str, Any] = {}

    async def complete() -> bool:
        detail.update((await operator.get(f"/api/alerts/{alert_id}")).json())
        return len(detail["transitions"]) == 2 and len(detail["comments"]) == 1

    await eventually(complete, what="the acknowledgement and comment in the detail")
    assert detail["alert"]["handled_by_name"] == "Natt Patrull A"
    assert [(t["to_state"], t["actor_name"]) for t in detail["transitions"]] == [
        ("open", "rule:fall"),
        ("acknowledged", "Natt Patrull A"),
    ]
    assert [(c["actor_name"], c["note"]) for c in detail["comments"]] == [
        ("Natt Patrull A", "ringt anhörig")
    ]
    events = [(e["device_id"], e["kind"]) for e in detail["events"]]
    assert (SENSOR_A1, "sensor.left_bed") in events
    assert (SENSOR_A2, "sensor.left_bed") not in events
    assert "device.heartbeat" not in {kind for _, kind in events}
    unlocked = next(e for e in detail["events"] if e["kind"] == "lock.unlocked")
    assert (unlocked["device_id"], unlocked["actor"]) == (LOCK_A1, "key-0042")
    bed = next(e for e in detail["events"] if e["kind"] == "sensor.left_bed")
    assert datetime.fromisoformat(bed["at"]) == (now - timedelta(hours=1))
    [gap] = [e for e in detail["events"] if e["kind"] == "device.heartbeat_gap"]
    assert datetime.fromisoformat(gap["at"]) == (now - timedelta(hours=5))
    assert datetime.fromisoformat(gap["until"]) == (now - timedelta(hours=1))
    assert [
        (a["alert_id"], a["state"], a["handled_by_name"]) for a in detail["earlier_alerts"]
    ] == [(earlier, "resolved", "Natt Patrull A")]
    assert [(d["device_id"], d["offline"]) for d in detail["devices"]] == [
        (LOCK_A1, False),
        (SENSOR_A1, False),
    ]
    assert all(d["last_contact"] is not None for d in detail["devices"])
    assert detail["entry_notes"] == [NOTES]

    # An auditor reads the alert, never the way in.
    auditor = await api.login(AUDITOR_A)
    audited = await auditor.get(f"/api/alerts/{alert_id}")
    assert audited.status_code == 200
    assert audited.json()["entry_notes"] is None
    assert "4711" not in audited.text

    # Every view is a read in the access log, saying whether the notes were shown.
    async def logged() -> bool:
        return bool(await _reads(api, AUDITOR_A, alert_id))

    await eventually(logged, what="the auditor's read")
    assert [r["entry_notes"] for r in await _reads(api, AUDITOR_A, alert_id)] == [False]
    operator_reads = await _reads(api, OPERATOR_A, alert_id)
    assert operator_reads and all(r["entry_notes"] is True for r in operator_reads)


async def test_a_takeover_must_be_said_and_is_a_transition_naming_both(api: RunningApi) -> None:
    alert_id = await api.raise_alert(SENSOR_A2, "sensor.bathroom_too_long")
    base = f"/api/alerts/{alert_id}"
    operator = await api.login(OPERATOR_A)
    coordinator = await api.login(COORDINATOR_A)
    assert (await operator.post(f"{base}/acknowledge", json={})).is_success

    silent = await coordinator.post(f"{base}/en-route", json={})
    assert silent.status_code == 409
    assert "Natt Patrull A" in silent.json()["detail"]
    assert "takeover" in silent.json()["detail"]
    # A refused step with takeover leaves no takeover behind.
    wrong = await coordinator.post(f"{base}/on-site", json={"takeover": True})
    assert wrong.status_code == 409
    assert "cannot go from acknowledged to on_site" in wrong.json()["detail"]
    [still] = api.open_alerts()
    assert (still.state.value, still.handled_by) == ("acknowledged", OPERATOR_A)

    taken = await coordinator.post(f"{base}/en-route", json={"takeover": True, "note": "jag tar"})
    assert taken.status_code == 200, taken.text
    moved = taken.json()
    assert (moved["state"], moved["handled_by"], moved["handled_by_name"]) == (
        "en_route", COORDINATOR_A, "Samordnare A",
    )  # fmt: skip
    # The one handling it now needs no takeover; the one before does.
    assert (await coordinator.post(f"{base}/on-site", json={})).is_success
    back = await operator.post(f"{base}/resolve", json={"outcome": "help_given"})
    assert back.status_code == 409

    trail: list[dict[str, Any]] = []

    async def stored() -> bool:
        trail[:] = (await coordinator.get(base)).json()["transitions"]
        return len(trail) == 5

    await eventually(stored, what="the takeover in the trail")
    assert [
        (t["from_state"], t["to_state"], t["actor_name"], t["took_over_from_name"]) for t in trail
    ] == [
        (None, "open", "rule:bathroom_too_long", None),
        ("open", "acknowledged", "Natt Patrull A", None),
        ("acknowledged", "acknowledged", "Samordnare A", "Natt Patrull A"),
        ("acknowledged", "en_route", "Samordnare A", None),
        ("en_route", "on_site", "Samordnare A", None),
    ]
    assert trail[2]["took_over_from"] == OPERATOR_A
    assert trail[3]["note"] == "jag tar"
    # The access log says whose alert the coordinator took.
    changes = await db_rows(
        api.dsn,
        "SELECT detail FROM access_log WHERE actor = %s AND action = 'change' ORDER BY seq",
        COORDINATOR_A,
    )
    assert [dict(d).get("took_over_from") for (d,) in changes] == [OPERATOR_A, None]  # type: ignore[call-overload]


async def test_the_trail_has_each_escalation_tier_reached_with_whom_it_named(
    prepared_dsn: str,
) -> None:
    clock = FrozenClock(datetime.now(UTC))
    async with running_api(prepared_dsn, clock=clock) as api:
        fall = await api.raise_alert(SENSOR_A1)
        (alert,) = api.open_alerts()
        paged = alert.opened_at
        # Unacknowledged for 2, then 5 minutes by the gateway's clock: both tiers.
        for minutes, tier in ((2, 1), (5, 2)):
            clock.advance(paged + timedelta(minutes=minutes) - clock.now())

            async def stored(tier: int = tier) -> bool:
                rows = await db_rows(
                    api.dsn, "SELECT count(*) FROM alert_escalations WHERE alert_id = %s", fall
                )
                return rows == [(tier,)]

            await eventually(stored, what=f"tier {tier} stored")
        operator = await api.login(OPERATOR_A)
        assert (await operator.post(f"/api/alerts/{fall}/acknowledge", json={})).is_success
        detail = (await operator.get(f"/api/alerts/{fall}")).json()
        assert [(e["tier"], datetime.fromisoformat(e["at"]), e["recipients"])
                for e in detail["escalations"]] == [
            (1, paged + timedelta(minutes=2), ["role:coordinator"]),
            (2, paged + timedelta(minutes=5), ["role:operator"]),
        ]  # fmt: skip
        # The acknowledgement came after both: the trail in time order puts it last.
        assert [t["to_state"] for t in detail["transitions"]] == ["open", "acknowledged"]
        assert datetime.fromisoformat(detail["transitions"][-1]["at"]) >= paged + timedelta(
            minutes=5
        )
