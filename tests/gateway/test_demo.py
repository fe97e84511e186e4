"""`wgw demo` brings everything up and shows events of all four families flowing."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.utils.services import REPO

pytestmark = [pytest.mark.broker, pytest.mark.db, pytest.mark.slow]

_STATUS = re.compile(
    r"events: alarm\s+([\d.]+)/s\s+sensor\s+([\d.]+)/s\s+lock\s+([\d.]+)/s\s+dispenser\s+([\d.]+)/s"
    r"\s+\| stored (\d+)"
)


@pytest.mark.parametrize("broker", ["mosquitto", "builtin"])
def test_demo_shows_all_four_families_flowing_and_stops_cleanly(broker: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "demo", "--duration", "6", "--devices", "60",
         "--rate", "40", "--broker", broker],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "ready in" in out
    lines = [m.groups() for m in _STATUS.finditer(out)]
    assert lines, out
    # Every family is seen flowing at some point, and stored rows keep growing.
    for family_index in range(4):
        assert any(float(line[family_index]) > 0 for line in lines), out
    stored = [int(line[4]) for line in lines]
    assert stored == sorted(stored) and stored[-1] > 0
    assert "demo stopped" in out
