"""Registry files: YAML and CSV give the same devices; mistakes name file, device and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import RegistryError
from core.events import Family
from gateway.registry import DeviceRecord, dump_registry_yaml, load_registry_file, parse_registry

YAML = """
devices:
  - device_id: "46700000001"
    family: alarm
    org: vallby-hemtjanst
    unit: "Lgh 1204, Vallby"
    heartbeat_interval_s: 60
  - device_id: lock-0007
    family: lock
    org: vallby-hemtjanst
"""

CSV = """device_id,family,org,unit,heartbeat_interval_s
46700000001,alarm,vallby-hemtjanst,"Lgh 1204, Vallby",60
lock-0007,lock,vallby-hemtjanst,,
"""


def test_yaml_and_csv_give_the_same_devices() -> None:
    from_yaml = parse_registry(YAML, source="devices.yaml")
    from_csv = parse_registry(CSV, source="devices.csv")
    assert from_yaml == from_csv
    assert from_yaml[1] == DeviceRecord(
        device_id="lock-0007", family=Family.LOCK, org="vallby-hemtjanst"
    )
    assert from_yaml[1].heartbeat_interval_s == 60  # the documented default


def test_dump_and_load_round_trip(tmp_path: Path) -> None:
    records = parse_registry(YAML, source="devices.yaml")
    path = tmp_path / "out.yaml"
    path.write_text(dump_registry_yaml(records))
    assert load_registry_file(path) == records


def test_entry_notes_travel_with_the_unit_through_yaml_csv_and_export(tmp_path: Path) -> None:
    csv_text = (
        "device_id,family,org,unit,entry_notes\n"
        'lock-0007,lock,vallby-hemtjanst,Lgh 1204,"Nyckelbox vid porten, kod 1234. Katt."\n'
    )
    [record] = parse_registry(csv_text, source="devices.csv")
    assert record.entry_notes == "Nyckelbox vid porten, kod 1234. Katt."
    path = tmp_path / "out.yaml"
    path.write_text(dump_registry_yaml([record]))
    assert load_registry_file(path) == [record]
    assert parse_registry(YAML, source="devices.yaml")[0].entry_notes == ""  # optional


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("devices:\n  - {device_id: a1, family: toaster, org: o}\n", "'family'"),
        ("devices:\n  - {device_id: 'bad id', family: lock, org: o}\n", "'device_id'"),
        (
            "devices:\n  - {device_id: a1, family: lock, org: o, heartbeat_interval_s: 0}\n",
            "'heartbeat_interval_s'",
        ),
        ("devices:\n  - {device_id: a1, family: lock, org: o, colour: red}\n", "'colour'"),
        (
            f"devices:\n  - {{device_id: a1, family: lock, org: o, entry_notes: {'x' * 1001}}}\n",
            "'entry_notes'",
        ),
        (
            "devices:\n  - {device_id: a1, family: lock, org: o}\n"
            "  - {device_id: a1, family: lock, org: o}\n",
            "appears twice",
        ),
        ("just a string\n", "'devices' list"),
        ("devices: [\n", "not valid YAML"),
    ],
)
def test_mistakes_name_the_file_and_the_key(text: str, needle: str) -> None:
    with pytest.raises(RegistryError) as caught:
        parse_registry(text, source="site/devices.yaml")
    assert "site/devices.yaml" in str(caught.value)
    assert needle in str(caught.value)


def test_a_missing_file_says_which(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="cannot read registry file"):
        load_registry_file(tmp_path / "nope.yaml")
