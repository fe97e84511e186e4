"""Settings are validated at start-up, and errors name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigError
from gateway.config import load_settings


def test_file_values_and_environment_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "wgw.toml"
    config.write_text('[mqtt]\nport = 1884\nclient_id = "gw-a"\n[ingest]\nbatch_max = 100\n')
    monkeypatch.setenv("WGW_MQTT__PORT", "1999")
    settings = load_settings(config)
    assert (settings.mqtt.port, settings.mqtt.client_id, settings.ingest.batch_max) == (
        1999,
        "gw-a",
        100,
    )


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[mqtt]\nport = 70000\n", "mqtt.port"),
        ("[mqtt]\nprotocol = 3\n", "mqtt.protocol"),
        ("[ingest]\nbatch_linger = 5\n", "ingest.batch_linger"),
        ("[db]\npool_min = 5\npool_max = 2\n", "db.pool_min"),
        ("[typo]\nx = 1\n", "typo"),
        ("[api]\nport = -1\n", "api.port"),
        # Session cookies in clear text are refused beyond this machine.
        ('[api]\nhost = "0.0.0.0"\nsecure_cookies = false\n', "api.secure_cookies"),
    ],
)
def test_invalid_values_name_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    message = str(caught.value)
    assert str(config) in message
    assert key in message


def test_unreadable_and_malformed_files_say_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[mqtt\nport=1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(broken)
