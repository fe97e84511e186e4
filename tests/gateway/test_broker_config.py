"""The shipped production Mosquitto configuration is accepted by the real broker and works."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.embedded import find_mosquitto, free_port, temp_dir, wait_for_port
from tests.utils.services import REPO

pytestmark = pytest.mark.broker

SHIPPED = REPO / "deploy" / "mosquitto.conf"


def _setting(text: str, key: str) -> str:
    match = re.search(rf"^{key} (.+)$", text, re.MULTILINE)
    assert match, f"{key} missing from {SHIPPED}"
    return match.group(1)


def test_every_setting_says_why() -> None:
    lines = SHIPPED.read_text().splitlines()
    for number, line in enumerate(lines):
        if line and not line.startswith("#"):
            above = lines[number - 1]
            # A comment right above, or the same key repeated (log_type) under one.
            explained = above.startswith("#") or above.split()[0] == line.split()[0]
            assert explained, f"line {number + 1} has no reason: {line}"


def test_it_keeps_sessions_and_queues_a_gateway_outage() -> None:
    text = SHIPPED.read_text()
    assert _setting(text, "persistence") == "true"
    assert 0 < int(_setting(text, "autosave_interval")) <= 300
    assert int(_setting(text, "max_queued_messages")) >= 100_000
    assert _setting(text, "allow_anonymous") == "false"


@pytest.fixture
def broker_dir() -> Iterator[Path]:
    path = temp_dir("wgw-test-prodconf-")
    if os.geteuid() == 0:
        path.chmod(0o777)  # the broker drops root to the 'mosquitto' account
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_the_real_broker_runs_on_it(broker_dir: Path) -> None:
    binary = find_mosquitto()
    if binary is None:
        pytest.fail("mosquitto is not installed: apt-get install mosquitto")
    port = free_port()
    passwd = broker_dir / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), "wgw", "s3cret"], check=True)
    passwd.chmod(0o644)
    # The shipped file, with only its port, paths and log destination moved here.
    text = SHIPPED.read_text()
    for key, value in {
        "listener": f"{port} 127.0.0.1",
        "persistence_location": f"{broker_dir}/",
        "password_file": str(passwd),
        "log_dest": f"file {broker_dir}/mosquitto.log",
    }.items():
        text, n = re.subn(rf"^{key} .+$", f"{key} {value}", text, flags=re.MULTILINE)
        assert n == 1, key
    conf = broker_dir / "mosquitto.conf"
    conf.write_text(text)
    proc = subprocess.Popen(
        [str(binary), "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_for_port(port, 10, proc=proc)
        assert _round_trip(port, "wgw", "s3cret") == 0
        assert _round_trip(port, None, None) != 0, "anonymous clients must be refused"
    finally:
        proc.terminate()
        output = proc.communicate(timeout=15)[0].decode(errors="replace")
    log = (broker_dir / "mosquitto.log").read_text(errors="replace")
    assert "Error" not in output + log, output + log
    assert (broker_dir / "mosquitto.db").exists(), "persistence did not save on exit"


def _round_trip(port: int, username: str | None, password: str | None) -> int:
    """Log in, publish a QoS 1 message to ourselves; 0 if it came back, else the reason code."""
    got = threading.Event()
    refused: list[int] = []
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"prodconf-{username}")
    if username:
        client.username_pw_set(username, password)

    def on_connect(c: paho.Client, _u: object, _f: object, rc: object, _p: object) -> None:
        if getattr(rc, "is_failure", False):
            refused.append(int(getattr(rc, "value", 1)))
            got.set()
            return
        c.subscribe("wgw/prodconf/#", qos=1)
        c.publish("wgw/prodconf/ping", b"1", qos=1)

    client.on_connect = on_connect
    client.on_message = lambda *_: got.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert got.wait(10), "no answer from the broker"
    finally:
        client.disconnect()
        client.loop_stop()
    return refused[0] if refused else 0
