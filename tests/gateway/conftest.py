"""Fixtures for the gateway's command-line tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def config(tmp_path: Path, db_dsn: str) -> Path:
    """A settings file pointing `wgw` at the test's fresh database."""
    path = tmp_path / "wgw.toml"
    path.write_text(f'[db]\ndsn = "{db_dsn}"\n')
    return path
