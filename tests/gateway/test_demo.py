"""`wgw demo` brings everything up and shows events of all four families flowing."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import httpx
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
    # The bridged social alarms went to the demo's SCAIP receiver over SIP: each answered.
    assert "SCAIP receiver at udp+tcp 127.0.0.1:" in out
    sip = _SIP.search(out)
    assert sip, out
    assert sip["sent"] == sip["answered"] == sip["replied"], out
    assert "demo stopped" in out


_SIP = re.compile(
    r"social alarms over SIP: (?P<sent>\d+) MESSAGE, (?P<answered>\d+) answered 2xx, "
    r"(?P<replied>\d+) <mrs>"
)
_CONSOLE = re.compile(r"console: (http://\S+/)")
_LOGIN = re.compile(r"^\s+(\S+)\s+/\s+(\S+)\s+(operator|coordinator|auditor|admin),", re.MULTILINE)


def test_demo_serves_the_console_and_an_alert_appears_within_seconds() -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "demo", "--duration", "20", "--devices", "60",
         "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert demo.stdout is not None
        header = ""
        while "demo logins" not in header or header.count("\n") < header.index("demo logins"):
            line = demo.stdout.readline()
            assert line, f"demo ended early: {header}{demo.communicate(timeout=10)}"
            header += line
            if line.startswith("    admin"):
                break
        url_match = _CONSOLE.search(header)
        assert url_match, header
        url = url_match.group(1)
        logins = {name: (password, role) for name, password, role in _LOGIN.findall(header)}
        assert {role for _, role in logins.values()} == {
            "operator", "coordinator", "auditor", "admin"
        }  # fmt: skip
        with httpx.Client(base_url=url, timeout=5) as client:
            assert client.get("/").status_code == 200  # the console page itself
            # As the night patrol: the first login printed, what a newcomer tries.
            (patrol,) = [name for name, (_, role) in logins.items() if role == "operator"]
            login = client.post(
                "/api/auth/login", json={"username": patrol, "password": logins[patrol][0]}
            )
            assert login.status_code == 200, login.text
            deadline = time.monotonic() + 12
            alerts: list[dict[str, object]] = []
            while not alerts and time.monotonic() < deadline:
                alerts = client.get("/api/alerts").json()
                time.sleep(0.25)
            assert alerts, "no alert reached the console within 12 s of the demo being ready"
    finally:
        demo.send_signal(signal.SIGINT)
        out, err = demo.communicate(timeout=30)
    assert demo.returncode == 0, err
    assert "demo stopped" in out
    # Seconds of traffic: social alarms reached the receiver over SIP and, Ctrl-C or
    # not, every one was answered (the gateway stops after the simulator).
    sip = _SIP.search(out)
    assert sip, out
    assert int(sip["answered"]) > 0, out
    assert sip["sent"] == sip["answered"] == sip["replied"], out
