"""The broker accounts and ACL from `wgw broker-config`, on a real Mosquitto over TLS.

Certificates are made at test time with the openssl command line. Mosquitto
drops an unauthorised publish without a word, so each refusal is shown as a
message that does not arrive beside an allowed one that does.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import logging
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from core.errors import ConfigError
from gateway.api.server import ApiServer, run_gateway
from gateway.brokerconfig import build_accounts, mosquitto_hash, write_broker_files
from gateway.cli import main
from gateway.config import load_settings
from gateway.embedded import find_mosquitto, free_port, temp_dir, wait_for_port
from gateway.ingest import MqttSource, tls_context
from gateway.registry import DeviceRecord
from gateway.service import Gateway
from gateway.store import migrate
from gateway.store.devices import import_devices
from tests.gateway.test_broker_config import _round_trip
from tests.utils.gateways import until
from tests.utils.services import REPO, count, rows

SHIPPED = REPO / "deploy" / "mosquitto-tls.conf"

GATEWAY_USER, GATEWAY_PASSWORD = "wgw-gw", "gateway-secret-1"
DEVICES = [
    DeviceRecord(device_id="alarm-a1", family="alarm", org="kommun-a"),  # type: ignore[arg-type]
    DeviceRecord(device_id="sensor-a2", family="sensor", org="kommun-a"),  # type: ignore[arg-type]
    DeviceRecord(device_id="alarm-b1", family="alarm", org="kommun-b"),  # type: ignore[arg-type]
]


# -- certificates and the broker ----------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(where: Path) -> None:
    """A CA and a broker certificate for the name 'localhost' only (not 127.0.0.1)."""
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is needed: apt-get install openssl")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=wgw test CA", "-keyout", "ca.key", "-out", "ca.crt",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=where)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
             "-keyout", "broker.key", "-out", "broker.csr", cwd=where)  # fmt: skip
    (where / "ext.cnf").write_text("subjectAltName=DNS:localhost\n")
    _openssl("x509", "-req", "-in", "broker.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", "broker.crt",
             cwd=where)  # fmt: skip


def make_client_certificate(where: Path, name: str) -> tuple[Path, Path]:
    """A client certificate for ``name`` signed by the test CA of make_certificates."""
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=where)  # fmt: skip
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-out", f"{name}.crt", cwd=where)  # fmt: skip
    return where / f"{name}.crt", where / f"{name}.key"


@dataclass
class Broker:
    """The shipped TLS configuration running on free ports in a directory of its own."""

    dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def ca(self) -> Path:
        return self.dir / "ca.crt"

    def start(self, files: Path) -> None:
        text = SHIPPED.read_text()
        for key, value in {
            "listener": f"{self.port} 127.0.0.1",
            "persistence_location": f"{self.dir}/",
            "password_file": str(files / "passwd"),
            "acl_file": str(files / "acl"),
            "cafile": str(self.dir / "ca.crt"),
            "certfile": str(self.dir / "broker.crt"),
            "keyfile": str(self.dir / "broker.key"),
            "log_dest": f"file {self.dir}/mosquitto.log",
        }.items():
            text, n = re.subn(rf"^{key} .+$", f"{key} {value}", text, flags=re.MULTILINE)
            assert n == 1, key
        conf = self.dir / "mosquitto.conf"
        conf.write_text(text + "log_type subscribe\n")
        if os.geteuid() == 0:
            # The broker drops root to the 'mosquitto' account, which must read these;
            # in production `chgrp mosquitto` does it (README).
            for path in [*files.iterdir(), *self.dir.glob("*.key")]:
                path.chmod(0o644)
        binary = find_mosquitto()
        if binary is None:
            pytest.fail("mosquitto is not installed: apt-get install mosquitto")
        self.proc = subprocess.Popen(
            [str(binary), "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        wait_for_port(self.port, 10, proc=self.proc)

    def log(self) -> str:
        path = self.dir / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.communicate(timeout=15)


@pytest.fixture
def broker_dir() -> Iterator[Path]:
    path = temp_dir("wgw-test-acl-")
    if os.geteuid() == 0:
        path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# -- a paho client that records what happened -----------------------------------------


class Client:
    """A TLS MQTT 5 client: its CONNACK, SUBACKs and the messages it received."""

    def __init__(self, broker: Broker, username: str | None, password: str | None,
                 client_id: str) -> None:  # fmt: skip
        self.connack: ReasonCode | None = None
        self.disconnect_reason: ReasonCode | None = None
        self.suback: list[int] = []
        self.received: list[tuple[str, bytes]] = []
        self.ready = threading.Event()
        self._subscribed = threading.Event()
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5
        )
        self._client.tls_set(ca_certs=str(broker.ca))
        if username is not None:
            self._client.username_pw_set(username, password)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = lambda _c, _u, m: self.received.append(
            (m.topic, bytes(m.payload))
        )
        self._client.connect("localhost", broker.port)
        self._client.loop_start()
        assert self.ready.wait(10), "no CONNACK"

    def _on_connect(self, _c: object, _u: object, _f: object, rc: ReasonCode,
                    _p: Properties | None) -> None:  # fmt: skip
        self.connack = rc
        self.ready.set()

    def _on_disconnect(self, _c: object, _u: object, _f: object, rc: ReasonCode,
                       _p: Properties | None) -> None:  # fmt: skip
        self.disconnect_reason = rc
        self.ready.set()

    def _on_subscribe(self, _c: object, _u: object, _m: int, codes: list[ReasonCode],
                      _p: Properties | None) -> None:  # fmt: skip
        self.suback = [c.value for c in codes]
        self._subscribed.set()

    @property
    def accepted(self) -> bool:
        return self.connack is not None and not self.connack.is_failure

    def subscribe(self, topic: str) -> list[int]:
        self._subscribed.clear()
        self._client.subscribe(topic, qos=1)
        assert self._subscribed.wait(10), "no SUBACK"
        return self.suback

    def publish(self, topic: str, payload: bytes) -> None:
        self._client.publish(topic, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def _event(kind: str, **attributes: object) -> bytes:
    return json.dumps({"kind": kind, "ts": datetime.now(UTC).isoformat(), **attributes}).encode()


def _passwords(files: Path) -> dict[str, str]:
    with (files / "accounts.csv").open(newline="") as f:
        return {row["username"]: row["password"] for row in csv.DictReader(f)}


def _alert_topic(dsn: str, org: str) -> str:
    (alert_id,) = [r[0] for r in rows(dsn, "SELECT alert_id FROM alerts WHERE org = %s", org)]
    return f"wgw/{org}/alerts/{alert_id}"


def _count(dsn: str, table: str) -> int:
    return count(dsn, f"SELECT count(*) FROM {table}")


def _gateway_mqtt(broker: Broker) -> dict[str, object]:
    return {
        "host": "localhost",  # the name in the broker's certificate
        "port": broker.port,
        "username": GATEWAY_USER,
        "password": GATEWAY_PASSWORD,
        "tls_ca_file": str(broker.ca),
        "reconnect_max_s": 1.0,
    }


@asynccontextmanager
async def running_gateway(dsn: str, broker: Broker, tmp: Path) -> AsyncIterator[ApiServer]:
    """The gateway in-process with its real MQTT source, over TLS, and its HTTP API."""
    settings = load_settings(
        None,
        db={"dsn": dsn, "connect_timeout_s": 20},
        mqtt=_gateway_mqtt(broker),
        api={"port": 0, "secure_cookies": False},
        ingest={"registry_refresh_s": 60},
        spool={"dir": str(tmp / "spool")},
    )  # fmt: skip
    gateway = Gateway(settings)
    server = ApiServer(gateway)
    stop = asyncio.Event()
    task = asyncio.create_task(run_gateway(gateway, stop, server))
    try:
        async with asyncio.timeout(30):
            while not (server.ready.is_set() and gateway.source and gateway.source.connected):
                if task.done():
                    task.result()
                await asyncio.sleep(0.05)
        yield server
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


# -- the test the issue asks for ------------------------------------------------------


@pytest.mark.broker
@pytest.mark.db
@pytest.mark.slow
async def test_the_generated_broker_refuses_outsiders_while_the_gateway_ingests_over_tls(
    broker_dir: Path, db_dsn: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    migrate(db_dsn)
    import_devices(db_dsn, DEVICES)
    config = tmp_path / "wgw.toml"
    config.write_text(
        f'[db]\ndsn = "{db_dsn}"\n[mqtt]\nusername = "{GATEWAY_USER}"\n'
        f'password = "{GATEWAY_PASSWORD}"\n'
    )
    files = broker_dir / "wgw"
    argv = ["broker-config", "--config", str(config), "--out", str(files)]
    assert (
        main(
            [
                *argv,
                "--subscriber",
                "kommun-a",
                "--subscriber",
                "kommun-b",
                "--scaip-bridge",
                "kommun-a",
            ]
        )
        == 0
    )
    assert (files / "accounts.csv").stat().st_mode & 0o777 == 0o600
    assert (files / "passwd").read_text().startswith(f"{GATEWAY_USER}:$7$")
    pw = _passwords(files)
    assert set(pw) == {
        "alarm-a1", "sensor-a2", "alarm-b1", "alerts-kommun-a", "alerts-kommun-b", "scaip-kommun-a"
    }  # fmt: skip

    make_certificates(broker_dir)
    broker = Broker(broker_dir)
    broker.start(files)
    clients: list[Client] = []

    def client(user: str | None, client_id: str, password: str | None = None) -> Client:
        made = Client(broker, user, password if password is not None else pw.get(user or ""),
                      client_id)  # fmt: skip
        clients.append(made)
        return made

    try:
        # Anonymous: refused at CONNACK (0x87 not authorised, or 0x86).
        anonymous = client(None, "outsider")
        assert not anonymous.accepted and anonymous.connack is not None
        assert anonymous.connack.value in (0x86, 0x87), anonymous.connack
        # A wrong password for a real device: refused too.
        assert not client("alarm-a1", "guess", password="wrong").accepted

        # The gateway with a wrong password says so, by name, and keeps trying.
        wrong = load_settings(None, mqtt={**_gateway_mqtt(broker), "password": "wrong"}).mqtt
        source = MqttSource(wrong, batch_max=10, linger=0.01)
        entering = asyncio.create_task(source.__aenter__())
        await until(lambda: source.refused is not None, within_s=10)
        entering.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await entering
        await source.__aexit__(None, None, None)
        assert "refused the gateway's login" in (source.refused or "")
        assert any(
            r.levelno == logging.ERROR and "mqtt.password" in r.getMessage() for r in caplog.records
        )

        async with running_gateway(db_dsn, broker, tmp_path) as server:
            # Alert subscribers, and a device that tries to listen in. Mosquitto's
            # acl_file grants any SUBSCRIBE and then delivers only what the account may
            # read: each is shown below as messages that never arrive.
            subscriber_a = client("alerts-kommun-a", "any-id")
            subscriber_b = client("alerts-kommun-b", "any-id-2")
            assert subscriber_a.accepted and subscriber_b.accepted
            for topic in ("wgw/kommun-a/alerts/#", "wgw/kommun-b/alerts/#", "wgw/#", "scaip/#"):
                subscriber_a.subscribe(topic)
            subscriber_b.subscribe("wgw/kommun-b/alerts/#")
            device_a1 = client("alarm-a1", "alarm-a1")
            assert device_a1.accepted
            for topic in ("wgw/kommun-a/alerts/#", "wgw/#"):
                device_a1.subscribe(topic)

            # A device publishing on another device's, and another organisation's, topic,
            # forging an alert and a SCAIP bridge message; then, as the positive control,
            # on its own topic.
            device_a1.publish("wgw/kommun-a/sensor/sensor-a2/event", _event("sensor.fall"))
            device_a1.publish("wgw/kommun-b/alarm/alarm-b1/event", _event("alarm.button"))
            device_a1.publish("wgw/kommun-a/alerts/forged", b'{"priority": 1}')
            device_a1.publish("scaip/kommun-a/mrq", b"<mrq/>")
            device_a1.publish("wgw/kommun-a/alarm/alarm-a1/event", _event("alarm.button"))
            # kommun-b's own device raises an alert there: the control for subscriber_b.
            device_b1 = client("alarm-b1", "alarm-b1")
            device_b1.publish("wgw/kommun-b/alarm/alarm-b1/event", _event("alarm.button"))

            # The gateway, over TLS with its own account, stored exactly the allowed two.
            await until(lambda: _count(db_dsn, "events") >= 2, within_s=15)
            await until(lambda: bool(subscriber_a.received and subscriber_b.received), within_s=15)
            # The controls came after the refused publishes on the same connections,
            # so anything the broker let through would have arrived by now.
            await asyncio.sleep(0.5)
            assert _count(db_dsn, "events") == 2 and _count(db_dsn, "dead_letters") == 0
            assert rows(db_dsn, "SELECT device_id FROM events ORDER BY 1") == [
                ("alarm-a1",),
                ("alarm-b1",),
            ]
            # Each organisation's subscriber got its own alert and nothing else: no other
            # organisation's alert, no device traffic, not the forged alert.
            # (One alert, maybe twice: it matches two of subscriber_a's subscriptions.)
            assert {t for t, _ in subscriber_a.received} == {_alert_topic(db_dsn, "kommun-a")}
            assert {t for t, _ in subscriber_b.received} == {_alert_topic(db_dsn, "kommun-b")}
            assert device_a1.received == [], "a device received what it may not read"

            # Another account connecting with the gateway's client id (configured or its
            # user name) gets a session of its own: the gateway stays connected and ingests.
            for taken_id in ("wgw-gateway", GATEWAY_USER):
                intruder = client("sensor-a2", taken_id)
                assert intruder.accepted
                intruder.subscribe("wgw/#")
            await asyncio.sleep(0.5)
            async with httpx.AsyncClient(base_url=server.url) as http:
                health = (await http.get("/healthz")).json()
            assert health["broker"] is True and health["problems"] == [], health
            device_b1.publish("wgw/kommun-b/alarm/alarm-b1/event", _event("device.heartbeat"))
            await until(lambda: _count(db_dsn, "events") == 3, within_s=15)
            assert intruder.received == []
            assert not any("taken over" in r.getMessage() for r in caplog.records)

            # Only the gateway's own password takes its session, and that is said loudly.
            thief = client(GATEWAY_USER, "whatever", password=GATEWAY_PASSWORD)
            assert thief.accepted
            await until(
                lambda: any("session taken over" in r.getMessage() for r in caplog.records),
                within_s=15,
            )
            thief.close()
            clients.remove(thief)
            async with httpx.AsyncClient(base_url=server.url) as http:
                response = await http.get("/healthz")
            codes = [p["code"] for p in response.json()["problems"]]
            assert response.status_code == 503 and "broker_refused" in codes, response.text
    finally:
        for made in clients:
            made.close()
        broker.stop()
    assert "Error" not in broker.log(), broker.log()


# -- the files themselves ------------------------------------------------------------


def test_every_setting_of_the_tls_configuration_says_why() -> None:
    lines = SHIPPED.read_text().splitlines()
    for number, line in enumerate(lines):
        if line and not line.startswith("#"):
            above = lines[number - 1]
            explained = above.startswith("#") or above.split()[0] == line.split()[0]
            assert explained, f"line {number + 1} has no reason: {line}"
    text = SHIPPED.read_text()
    for setting in ("allow_anonymous false", "use_username_as_clientid true",
                    "persistence true", "listener 8883"):  # fmt: skip
        assert re.search(rf"^{setting}$", text, re.MULTILINE), setting


def test_each_account_gets_only_its_own_topics() -> None:
    accounts, skipped = build_accounts(
        [("lock-1", "k1", "lock"), ("bad:id", "k1", "lock"), ("wgw-gw", "k1", "alarm")],
        gateway_username="wgw-gw",
        subscriber_orgs=["k1"],
    )
    acl = {a.username: a.acl for a in accounts}
    assert acl == {
        "wgw-gw": ("topic read wgw/#", "topic read scaip/#", "topic write wgw/+/alerts/#"),
        "alerts-k1": ("topic read wgw/k1/alerts/#",),
        "lock-1": ("topic write wgw/k1/lock/lock-1/event", "topic write wgw/k1/lock/lock-1/status"),
    }
    # ':' cannot be in a password file's user name; a device must not share the gateway's.
    assert skipped == ["bad:id", "wgw-gw"]


@pytest.mark.parametrize("use_tool", [True, False], ids=["mosquitto_passwd", "python"])
def test_a_rerun_keeps_the_passwords_already_given_out(tmp_path: Path, use_tool: bool) -> None:
    accounts, _ = build_accounts([("d1", "k1", "alarm")], gateway_username="gw")
    write_broker_files(tmp_path, accounts, gateway_password="g", use_mosquitto_passwd=use_tool)
    first = _passwords(tmp_path)
    more, _ = build_accounts([("d1", "k1", "alarm"), ("d2", "k1", "alarm")], gateway_username="gw")
    files = write_broker_files(tmp_path, more, gateway_password="g", use_mosquitto_passwd=use_tool)
    assert files.new_passwords == 1
    again = _passwords(tmp_path)
    assert again["d1"] == first["d1"] and again["d2"] != first["d1"]
    assert "gw" not in again  # the gateway's password stays in its settings only
    lines = (tmp_path / "passwd").read_text().splitlines()
    assert [line.split(":")[0] for line in lines] == ["gw", "d1", "d2"]
    assert all(line.split(":")[1].startswith("$7$") for line in lines)


def _start_mosquitto(conf: Path) -> subprocess.Popen[bytes]:
    binary = find_mosquitto()
    assert binary is not None, "mosquitto is not installed: apt-get install mosquitto"
    return subprocess.Popen(
        [str(binary), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


@pytest.mark.broker
def test_mosquitto_accepts_the_python_hash(broker_dir: Path) -> None:
    """The fallback for machines without mosquitto_passwd makes hashes Mosquitto checks."""
    port = free_port()
    (broker_dir / "passwd").write_text(f"u:{mosquitto_hash('right')}\n")
    (broker_dir / "passwd").chmod(0o644)
    conf = broker_dir / "m.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous false\n"
                    f"password_file {broker_dir / 'passwd'}\n")  # fmt: skip
    proc = _start_mosquitto(conf)
    try:
        wait_for_port(port, 10, proc=proc)
        assert _round_trip(port, "u", "right") == 0
        assert _round_trip(port, "u", "wrong") in (0x86, 0x87)  # Mosquitto 2.0.11 says 0x87
    finally:
        proc.terminate()
        proc.wait(15)


# -- the gateway's TLS settings ------------------------------------------------------


def test_a_missing_tls_file_is_named_by_its_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"mqtt\.tls_ca_file"):
        load_settings(None, mqtt={"tls_ca_file": str(tmp_path / "nope.crt")})
    (tmp_path / "ca.crt").write_text("x")
    with pytest.raises(ConfigError, match="tls_key_file"):
        load_settings(None, mqtt={"tls_ca_file": str(tmp_path / "ca.crt"),
                                  "tls_cert_file": str(tmp_path / "ca.crt")})  # fmt: skip


def test_the_gateway_checks_the_brokers_name(broker_dir: Path) -> None:
    """The certificate is for 'localhost': the gateway's context refuses it under another name."""
    make_certificates(broker_dir)
    settings = load_settings(None, mqtt={"tls_ca_file": str(broker_dir / "ca.crt")})
    context = tls_context(settings.mqtt)
    assert context is not None and context.check_hostname
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(broker_dir / "broker.crt", broker_dir / "broker.key")
    results: dict[str, str] = {}
    for name in ("localhost", "broker.example"):
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]

        def serve(listener: socket.socket = listener) -> None:
            conn, _ = listener.accept()
            try:
                server_ctx.wrap_socket(conn, server_side=True).close()
            except (ssl.SSLError, OSError):
                conn.close()

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            with socket.create_connection(("127.0.0.1", port)) as raw:
                context.wrap_socket(raw, server_hostname=name).close()
            results[name] = "ok"
        except ssl.SSLCertVerificationError as exc:
            results[name] = exc.verify_message
        finally:
            thread.join(10)
            listener.close()
    assert results["localhost"] == "ok"
    assert "mismatch" in results["broker.example"].lower(), results


@pytest.mark.broker
async def test_the_gateway_presents_its_client_certificate(broker_dir: Path) -> None:
    """A listener that requires client certificates takes the gateway's, and only with it."""
    make_certificates(broker_dir)
    cert, key = make_client_certificate(broker_dir, "gateway")
    port = free_port()
    conf = broker_dir / "m.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\n"
        f"cafile {broker_dir / 'ca.crt'}\ncertfile {broker_dir / 'broker.crt'}\n"
        f"keyfile {broker_dir / 'broker.key'}\nrequire_certificate true\n"
    )
    if os.geteuid() == 0:
        for path in broker_dir.glob("*.key"):
            path.chmod(0o644)
    proc = _start_mosquitto(conf)
    mqtt = {"host": "localhost", "port": port, "tls_ca_file": str(broker_dir / "ca.crt")}
    try:
        wait_for_port(port, 10, proc=proc)
        with_cert = load_settings(
            None, mqtt={**mqtt, "tls_cert_file": str(cert), "tls_key_file": str(key)}
        )
        async with asyncio.timeout(10):
            async with MqttSource(with_cert.mqtt, batch_max=10, linger=0.01) as source:
                await until(lambda: source.connected, within_s=10)
        # Without it the TLS handshake fails: the source keeps retrying, never connected.
        without = MqttSource(load_settings(None, mqtt=mqtt).mqtt, batch_max=10, linger=0.01)
        entering = asyncio.create_task(without.__aenter__())
        await asyncio.sleep(1.5)
        assert not without.connected and not entering.done()
        entering.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await entering
        await without.__aexit__(None, None, None)
    finally:
        proc.terminate()
        proc.wait(15)
