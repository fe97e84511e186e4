"""Plans: deterministic bytes, honest expectations, Stockholm device times, the stories' timing."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from simulators import SCENARIOS, Plan, SimMessage, build_plan, demo_registry

STOCKHOLM = ZoneInfo("Europe/Stockholm")
REGISTRY = demo_registry(60, seed=42)
NIGHT = datetime(2026, 11, 24, 2, 0, tzinfo=STOCKHOLM)  # the stories assume 02:00 local
HOSTILE_REASONS = Counter(
    {
        "invalid_json": 1,
        "invalid_utf8": 1,
        "invalid_event": 1,
        "naive_timestamp": 1,
        "unknown_kind": 1,
        "device_mismatch": 1,
        "unknown_device": 1,
        "wrong_org": 1,
        "wrong_family": 1,
        "clock_skew": 1,
        "too_old": 1,
        "oversized": 1,
        "xml_entities": 1,
        "xml_external_entity": 1,
        "xml_encoding": 1,
        "scaip_missing_tag": 1,
        "bad_topic": 1,
    }
)
# Scenarios in which every message is valid.
ALL_VALID = sorted(set(SCENARIOS) - {"hostile", "mixed"})


def plan_for(scenario: str, *, seed: int = 1, start: datetime = NIGHT, **kwargs: Any) -> Plan:
    return build_plan(scenario, devices=REGISTRY, seed=seed, start=start, **kwargs)


def body(message: SimMessage) -> dict[str, Any]:
    value = json.loads(message.payload)
    assert isinstance(value, dict)
    return value


def is_json(message: SimMessage) -> bool:
    return message.payload.startswith(b"{")


def device_of(message: SimMessage) -> str:
    if message.topic.startswith("scaip/"):
        found = re.search(rb"<cid>([0-9]+)</cid>", message.payload)
        assert found is not None
        return found.group(1).decode()
    return message.topic.split("/")[3]


def is_heartbeat(message: SimMessage) -> bool:
    return b"<mty>PI</mty>" in message.payload or b'"kind":"device.heartbeat"' in message.payload


def kind_of(message: SimMessage) -> str | None:
    if not is_json(message):
        return None
    data = body(message)
    return data.get("kind") or {"back_in_bed": "sensor.in_bed"}.get(
        data.get("event", ""), f"sensor.{data.get('event')}"
    )


def local(message: SimMessage) -> datetime:
    return datetime.fromisoformat(body(message)["ts"])


def test_the_same_seed_and_start_give_the_same_bytes() -> None:
    assert plan_for("mixed") == plan_for("mixed")


def test_another_seed_gives_other_bytes() -> None:
    first, second = plan_for("mixed", seed=1), plan_for("mixed", seed=2)
    assert [m.payload for m in first.messages] != [m.payload for m in second.messages]


def test_another_start_gives_other_event_ids_so_runs_never_collide() -> None:
    def ids(plan: Plan) -> set[str]:
        found = set()
        for m in plan.messages:
            found.update(re.findall(rb'"id":"([^"]+)"|<ref>([^<]+)</ref>', m.payload))
        return {b"".join(pair).decode() for pair in found}

    later = plan_for("mixed", start=NIGHT + timedelta(seconds=1))
    assert ids(plan_for("mixed")).isdisjoint(ids(later))


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_scenario_builds_with_heartbeats_from_every_device(scenario: str) -> None:
    plan = plan_for(scenario)
    assert plan.scenario == scenario
    beating = {device_of(m) for m in plan.messages if is_heartbeat(m)}
    assert beating == {r.device_id for r in REGISTRY}
    offsets = [m.offset_s for m in plan.messages]
    assert offsets == sorted(offsets)
    assert offsets[-1] <= plan.span_s
    assert offsets[0] >= 0
    assert {m.qos for m in plan.messages} == {1}


def test_unknown_scenarios_and_unclear_anchors_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        plan_for("earthquake")
    with pytest.raises(ValueError, match="exactly one"):
        build_plan("fall", devices=REGISTRY, seed=1)
    with pytest.raises(ValueError, match="exactly one"):
        build_plan("fall", devices=REGISTRY, seed=1, start=NIGHT, end=NIGHT)
    with pytest.raises(ValueError, match="timezone-aware"):
        build_plan("fall", devices=REGISTRY, seed=1, start=datetime(2026, 11, 24, 2, 0))


def test_messages_pads_the_night_with_earlier_heartbeats_to_the_exact_total() -> None:
    natural = plan_for("mixed")
    padded = plan_for("mixed", messages=10_000)
    assert len(padded.messages) == 10_000
    assert padded.span_s > natural.span_s
    extra = padded.expected.kinds - natural.expected.kinds
    assert extra == Counter({"device.heartbeat": 10_000 - len(natural.messages)})
    assert padded.expected.dead_letters == natural.expected.dead_letters
    # The story comes last: its fall is within the final hour and a quarter.
    fall = next(m for m in padded.messages if b"sensor.fall" in m.payload)
    assert padded.span_s - fall.offset_s < 75 * 60


def test_an_end_anchored_plan_has_no_device_time_after_the_end() -> None:
    end = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
    plan = build_plan("alarm_calls", devices=REGISTRY, seed=1, end=end, messages=3_000)
    assert plan.end == end
    latest = max(local(m) for m in plan.messages if is_json(m))
    assert end - timedelta(minutes=5) < latest <= end


def test_the_hostile_scenario_expects_every_reason_once_and_only_heartbeats_stored() -> None:
    plan = plan_for("hostile")
    assert plan.expected.dead_letters == HOSTILE_REASONS
    heartbeats = sum(1 for m in plan.messages if is_heartbeat(m))
    assert plan.expected.total_events == heartbeats
    assert len(plan.messages) == heartbeats + HOSTILE_REASONS.total()


def test_nothing_repeats_but_two_deliberate_resends_one_with_an_id_one_without() -> None:
    plan = plan_for("mixed")
    copies = Counter((m.topic, m.payload) for m in plan.messages)
    repeated = [json.loads(payload) for (_, payload), n in copies.items() if n > 1]
    assert [n for n in copies.values() if n > 1] == [2, 2]
    assert sorted("id" in event for event in repeated) == [False, True]
    names = {event.get("kind", event.get("event")) for event in repeated}
    assert names in ({"sensor.fall", "sensor.activity"}, {"fall", "sensor.activity"})


@pytest.mark.parametrize("scenario", ALL_VALID)
def test_expected_events_per_family_match_the_distinct_messages(scenario: str) -> None:
    plan = plan_for(scenario)
    counted: Counter[str] = Counter()
    for topic, payload in dict.fromkeys((m.topic, m.payload) for m in plan.messages):
        family = "alarm" if topic.startswith("scaip/") else topic.split("/")[2]
        entries = json.loads(payload).get("entries") if payload.startswith(b"{") else None
        counted[family] += len(entries) if entries else 1
    assert counted == {f: n for f, n in plan.expected.events.items() if n}
    assert plan.expected.total_events == plan.expected.kinds.total()
    assert not plan.expected.dead_letters


def test_every_device_time_carries_the_stockholm_offset_of_its_instant() -> None:
    plan = plan_for("mixed")
    checked = 0
    for message in plan.messages:
        if not is_json(message) or message.topic.endswith("/x"):
            continue
        try:
            data = body(message)
        except ValueError:
            continue  # the hostile invalid JSON
        for stamp in [e["ts"] for e in data.get("entries", [])] or [data.get("ts")]:
            when = datetime.fromisoformat(stamp)
            if when.tzinfo is None:
                continue  # the hostile naive timestamp
            assert when.utcoffset() == when.astimezone(STOCKHOLM).utcoffset(), stamp
            checked += 1
        if "entries" not in data and "kind" in data and data["kind"] == "device.heartbeat":
            assert local(message) == plan.start + timedelta(seconds=message.offset_s)
    assert checked > 1_000


def offsets_seen(plan: Plan) -> set[str]:
    return {body(m)["ts"][-6:] for m in plan.messages if is_json(m)}


def test_the_spring_forward_night_switches_from_plus_one_to_plus_two() -> None:
    plan = plan_for("left_bed_not_back", start=datetime(2026, 3, 29, 1, 35, tzinfo=STOCKHOLM))
    assert offsets_seen(plan) == {"+01:00", "+02:00"}
    for message in filter(is_json, plan.messages):
        stamp = body(message)["ts"]
        assert "T02:" not in stamp  # 02:00-02:59 does not exist that night
        assert stamp.endswith("+01:00") == (local(message) < datetime(2026, 3, 29, 1, tzinfo=UTC))


def test_the_fall_back_night_repeats_two_o_clock_with_both_offsets() -> None:
    start = datetime(2026, 10, 25, 2, 35, tzinfo=STOCKHOLM)  # the first 02:35, summer time
    plan = plan_for("left_bed_not_back", start=start)
    twos = {body(m)["ts"][-6:] for m in filter(is_json, plan.messages) if "T02:" in body(m)["ts"]}
    assert twos == {"+02:00", "+01:00"}
    instants = [local(m) for m in plan.messages if is_json(m)]
    assert instants == sorted(instants)  # no jump back although the wall clock does


def test_left_bed_at_ten_past_two_with_no_return_for_that_person() -> None:
    plan = plan_for("left_bed_not_back")
    left = [m for m in plan.messages if kind_of(m) == "sensor.left_bed"]
    assert local(left[0]) == NIGHT + timedelta(minutes=10)
    assert body(left[0])["ts"] == "2026-11-24T02:10:00.000+01:00"
    back = [m for m in plan.messages if kind_of(m) == "sensor.in_bed"]
    assert all(m.topic != left[0].topic for m in back)
    assert plan.end - local(left[0]) >= timedelta(minutes=20)
    # The other sensor leaves and is back within five minutes.
    assert [m.topic for m in back] == [left[1].topic]


def test_a_missed_dose_follows_its_due_time_by_thirty_minutes() -> None:
    plan = plan_for("missed_dose")
    doses = {kind_of(m): body(m) for m in plan.messages if "dispenser.dose" in (kind_of(m) or "")}
    due = [body(m) for m in plan.messages if kind_of(m) == "dispenser.dose_due"]
    missed = doses["dispenser.dose_missed"]
    (its_due,) = [d for d in due if d["dose_id"] == missed["dose_id"]]
    gap = datetime.fromisoformat(missed["ts"]) - datetime.fromisoformat(its_due["ts"])
    assert gap == timedelta(minutes=30)
    assert doses["dispenser.dose_taken"]["dose_id"] != missed["dose_id"]


def test_a_key_opens_a_door_at_three_and_the_visit_is_logged() -> None:
    plan = plan_for("lock_outside_shift")
    visit = [
        (kind_of(m), local(m)) for m in plan.messages if (kind_of(m) or "").startswith("lock.")
    ]
    assert visit[0] == ("lock.unlocked", NIGHT + timedelta(hours=1))
    assert [k for k, _ in visit] == [
        "lock.unlocked",
        "lock.door_opened",
        "lock.door_closed",
        "lock.door_opened",
        "lock.door_closed",
        "lock.locked",
    ]
    unlocked = next(m for m in plan.messages if kind_of(m) == "lock.unlocked")
    assert re.fullmatch(r"key-[0-9]{4}", body(unlocked)["actor"])


def test_a_late_lock_sync_carries_entries_from_six_hours_before_the_start() -> None:
    plan = plan_for("late_lock_sync")
    (batch,) = [m for m in plan.messages if b'"entries"' in m.payload]
    stamps = [datetime.fromisoformat(e["ts"]) for e in body(batch)["entries"]]
    assert len(stamps) == plan.expected.kinds.total() - plan.expected.kinds["device.heartbeat"]
    assert all(NIGHT - timedelta(hours=6) <= t < NIGHT - timedelta(hours=5) for t in stamps)
    assert sum("id" in e for e in body(batch)["entries"]) < len(stamps)  # some rely on the hash


def test_silent_devices_go_offline_retained_and_send_nothing_after() -> None:
    plan = plan_for("device_silent")
    statuses = [m for m in plan.messages if m.topic.endswith("/status")]
    assert statuses and all(m.retain and body(m)["state"] == "offline" for m in statuses)
    for status in statuses:
        device = device_of(status)
        after = [
            m for m in plan.messages if m.offset_s > status.offset_s and device_of(m) == device
        ]
        assert after == []
    assert plan.expected.kinds["device.offline"] == len(statuses)


def test_social_alarms_arrive_as_json_scaip_on_the_event_topic_and_bridged_scaip() -> None:
    plan = plan_for("alarm_calls")
    alarm = [m for m in plan.messages if "/alarm/" in m.topic or m.topic.startswith("scaip/")]
    forms = {("bridge" if m.topic.startswith("scaip/") else "event", m.payload[:1]) for m in alarm}
    assert forms == {("bridge", b"<"), ("event", b"<"), ("event", b"{")}


def test_a_registry_of_one_device_per_family_still_plays_every_part_of_the_night() -> None:
    tiny = build_plan("mixed", devices=demo_registry(4, seed=9), seed=9, start=NIGHT)
    assert tiny.expected.dead_letters == HOSTILE_REASONS
    # With one sensor, any back-in-bed would contradict the person who is not back.
    assert set(tiny.expected.kinds) == set(plan_for("mixed").expected.kinds) - {"sensor.in_bed"}
