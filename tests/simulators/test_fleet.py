"""The invented municipality: families, ids, units and intervals, fixed by the seed."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from core.events import Family
from gateway.registry import dump_registry_yaml, parse_registry
from simulators import demo_registry
from simulators.fleet import Transport, device_styles


def test_a_hundred_devices_split_forty_twenty_five_twenty_fifteen() -> None:
    counts = Counter(r.family for r in demo_registry(100, seed=7))
    assert counts == {Family.ALARM: 40, Family.SENSOR: 25, Family.LOCK: 20, Family.DISPENSER: 15}


@pytest.mark.parametrize("size", [4, 5, 7, 13, 120, 1001])
def test_every_size_has_every_family_and_exactly_that_many_devices(size: int) -> None:
    registry = demo_registry(size, seed=1)
    assert len(registry) == size
    assert set(Counter(r.family for r in registry)) == set(Family)
    assert len({r.device_id for r in registry}) == size


def test_fewer_devices_than_families_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 4"):
        demo_registry(3, seed=1)


def test_the_registry_round_trips_through_the_import_format() -> None:
    registry = demo_registry(60, seed=3)
    assert parse_registry(dump_registry_yaml(registry), source="demo.yaml") == registry


def test_alarms_are_scaip_controller_ids_and_others_are_named_by_family() -> None:
    for record in demo_registry(120, seed=11):
        if record.family is Family.ALARM:
            assert re.fullmatch(r"467[0-9]{8}", record.device_id)
            assert record.heartbeat_interval_s == 60
        else:
            prefix = {Family.SENSOR: "sensor", Family.LOCK: "lock", Family.DISPENSER: "disp"}
            assert re.fullmatch(rf"{prefix[record.family]}-[0-9]{{4}}", record.device_id)
            assert record.heartbeat_interval_s == 300


def test_units_are_pseudonyms_for_apartments_and_care_home_rooms() -> None:
    registry = demo_registry(200, seed=5)
    for record in registry:
        if record.org == "vallby-hemtjanst":
            assert re.fullmatch(r"Lgh 1[0-9]{3}, [^\d]+", record.unit)
        else:
            assert re.fullmatch(r"[^\d]+ rum [0-9]{1,2}", record.unit)
    assert {r.org for r in registry} == {"vallby-hemtjanst", "vallby-sabo"}


def test_the_seed_decides_the_registry() -> None:
    assert demo_registry(50, seed=1) == demo_registry(50, seed=1)
    assert demo_registry(50, seed=1) != demo_registry(50, seed=2)


def test_the_organisations_can_be_chosen() -> None:
    assert {r.org for r in demo_registry(20, seed=1, orgs=("ort-a",))} == {"ort-a"}


def test_alarms_use_all_three_transports() -> None:
    registry = demo_registry(30, seed=1)
    styles = device_styles(registry, seed=1)
    transports = {styles[r.device_id].transport for r in registry if r.family is Family.ALARM}
    assert transports == set(Transport)
