"""The `wgw` command line against a real PostgreSQL: migrate, import devices, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from tests.utils.services import rows

pytestmark = pytest.mark.db


def test_migrate_then_import_devices(
    config: Path,
    db_dsn: str,
    pg_variant: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["migrate", "--config", str(config)]) == 0
    assert f"storage variant: {pg_variant}" in capsys.readouterr().out
    registry = tmp_path / "devices.csv"
    registry.write_text(
        "device_id,family,org,unit,heartbeat_interval_s\n"
        "46700000001,alarm,vallby,Lgh 1,60\n"
        "lock-0001,lock,vallby,Lgh 1,300\n"
    )
    assert main(["devices", "import", str(registry), "--config", str(config)]) == 0
    assert "2 devices read" in capsys.readouterr().out
    # Importing again changes nothing; a changed unit is updated in place.
    registry.write_text(
        registry.read_text().replace("lock-0001,lock,vallby,Lgh 1", "lock-0001,lock,vallby,Lgh 2")
    )
    assert main(["devices", "import", str(registry), "--config", str(config)]) == 0
    assert "1 added or changed" in capsys.readouterr().out
    assert rows(db_dsn, "SELECT device_id, family, unit FROM devices ORDER BY 1") == [
        ("46700000001", "alarm", "Lgh 1"),
        ("lock-0001", "lock", "Lgh 2"),
    ]


def test_a_bad_registry_file_is_refused_with_its_name(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = tmp_path / "devices.yaml"
    registry.write_text("devices:\n  - {device_id: x1, family: toaster, org: o}\n")
    assert main(["devices", "import", str(registry), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert str(registry) in err and "'family'" in err


def test_a_bad_config_file_is_refused_with_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[mqtt]\nport = 0\n")
    assert main(["migrate", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "mqtt.port" in err
