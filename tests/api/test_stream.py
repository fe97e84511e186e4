"""The live stream: a snapshot, then changes; after a reconnect, exactly what was missed."""

from __future__ import annotations

import pytest

from gateway.public import AlertPublic
from tests.api.conftest import (
    ADMIN_ALL,
    OPERATOR_A,
    OPERATOR_B,
    ORG_B,
    SENSOR_A1,
    SENSOR_A2,
    SENSOR_A3,
    SENSOR_B1,
    Frame,
    RunningApi,
    db_rows,
    eventually,
    open_stream,
)

pytestmark = pytest.mark.db


def _seq(frame: Frame) -> int:
    assert frame.id is not None
    return int(frame.id.rsplit("-", 1)[1])


def _change(frame: Frame) -> tuple[str | None, str, str, str]:
    """(event, effect, alert id, state) of an alert change."""
    alert = frame.data["alert"]
    return frame.event, frame.data["effect"], alert["alert_id"], alert["state"]


async def test_a_client_that_reconnects_gets_every_change_it_missed_once_in_order(
    api: RunningApi,
) -> None:
    first = await api.raise_alert(SENSOR_A1)
    operator = await api.login(OPERATOR_A)
    async with open_stream(operator) as stream:
        snapshot = await stream.next()
        assert snapshot.event == "snapshot"
        assert [(a["alert_id"], a["unit"]) for a in snapshot.data["alerts"]] == [
            (first, "Lgh 1101")
        ]
        second = await api.raise_alert(SENSOR_A2, "sensor.bathroom_too_long")
        live = await stream.next()
        assert _change(live) == ("alert", "AlertOpened", second, "open")
        assert live.data["alert"]["unit"] == "Lgh 1102"
        # One shape on the stream and in the API: the public alert model (the admin
        # reads the list, so the operator's own reads stay the snapshot's alone).
        admin = await api.login(ADMIN_ALL)
        [listed] = [a for a in (await admin.get("/api/alerts")).json() if a["alert_id"] == second]
        assert set(live.data["alert"]) == set(listed) == set(AlertPublic.model_fields)
        assert (live.data["alert"]["category"], listed["icon"]) == ("time", "time")
        assert snapshot.data["alerts"][0]["category"] == "fall"
        assert _seq(live) > _seq(snapshot)
        last_seen = live.id
    assert last_seen is not None

    # While the client is away: a new alert, two acknowledgements, another organisation's alert.
    third = await api.raise_alert(SENSOR_A3, "sensor.lost")
    await api.raise_alert(SENSOR_B1)
    for alert_id in (first, second):
        moved = await operator.post(f"/api/alerts/{alert_id}/acknowledge", json={})
        assert moved.status_code == 200

    async with open_stream(operator, last_event_id=last_seen) as stream:
        missed = [await stream.next() for _ in range(3)]
        assert [_change(f) for f in missed] == [
            ("alert", "AlertOpened", third, "open"),
            ("alert", "AlertTransitioned", first, "acknowledged"),
            ("alert", "AlertTransitioned", second, "acknowledged"),
        ]
        assert missed[1].data["transition"]["actor"] == OPERATOR_A
        seqs = [_seq(f) for f in missed]
        assert seqs == sorted(set(seqs))
        assert seqs[0] > _seq(live)
        # Then it follows live again, with nothing repeated in between.
        assert (await operator.post(f"/api/alerts/{first}/en-route", json={})).is_success
        after = await stream.next()
        assert _change(after) == ("alert", "AlertTransitioned", first, "en_route")
        assert _seq(after) > seqs[-1]

    # Sending the snapshot showed the queue to the operator: that read is logged.
    async def logged() -> bool:
        found = await db_rows(
            api.dsn,
            "SELECT detail->'alerts' FROM access_log"
            " WHERE actor = %s AND action = 'read' AND subject = 'alert_queue'",
            OPERATOR_A,
        )
        return found == [([first],)]

    await eventually(logged, what="the snapshot's read in the access log")


@pytest.mark.parametrize(
    "last_event_id",
    ["0badbeef-1", "{epoch}-999999", "not-an-id", ""],
    ids=["other epoch (a restart)", "ahead of the feed", "garbage", "empty"],
)
async def test_a_client_with_an_unknown_position_gets_the_whole_state(
    api: RunningApi, last_event_id: str
) -> None:
    first = await api.raise_alert(SENSOR_A1)
    second = await api.raise_alert(SENSOR_A2)
    operator = await api.login(OPERATOR_A)
    feed = api.context.console.feed
    resume_from = last_event_id.format(epoch=feed.epoch)
    async with open_stream(operator, last_event_id=resume_from) as stream:
        snapshot = await stream.next()
        assert snapshot.event == "snapshot"
        assert [a["alert_id"] for a in snapshot.data["alerts"]] == [first, second]
        assert snapshot.id == feed.last_id
        third = await api.raise_alert(SENSOR_A3, "sensor.lost")
        assert _change(await stream.next()) == ("alert", "AlertOpened", third, "open")


async def test_an_operator_never_receives_another_organisations_changes(
    api: RunningApi,
) -> None:
    a_before = await api.raise_alert(SENSOR_A1)
    operator_b = await api.login(OPERATOR_B)
    operator_a = await api.login(OPERATOR_A)
    admin = await api.login(ADMIN_ALL)
    async with open_stream(operator_b) as stream, open_stream(admin) as everything:
        snapshot = await stream.next()
        assert snapshot.data["alerts"] == []
        assert [a["alert_id"] for a in (await everything.next()).data["alerts"]] == [a_before]
        a_live = await api.raise_alert(SENSOR_A2)
        b_live = await api.raise_alert(SENSOR_B1)
        # Org A's alert was published first; operator B's next frame is its own alert.
        frame = await stream.next()
        assert _change(frame) == ("alert", "AlertOpened", b_live, "open")
        assert frame.data["alert"]["org"] == ORG_B
        assert [_change(await everything.next())[2] for _ in range(2)] == [a_live, b_live]
        last_seen = frame.id

    # Missed while away: only org A's changes, then one of its own.
    await api.raise_alert(SENSOR_A3, "sensor.lost")
    assert (await operator_a.post(f"/api/alerts/{a_before}/acknowledge", json={})).is_success
    assert (await operator_b.post(f"/api/alerts/{b_live}/acknowledge", json={})).is_success
    async with open_stream(operator_b, last_event_id=last_seen) as stream:
        frame = await stream.next()
        assert _change(frame) == ("alert", "AlertTransitioned", b_live, "acknowledged")
        assert frame.data["alert"]["org"] == ORG_B
