"""SCAIP over SIP against SIPp, the standard SIP traffic generator, as the alarm units (issue 11).

A real `wgw serve` (PostgreSQL, Mosquitto, its spool) with [scaip] on a free
port; the scenarios and the six SCAIP samples are in tests/sipp/. SIPp fails a
call whose answer lacks `200 OK` or the expected `<snu>`; the tests then read
SIPp's message trace for the exact `ref` of each answer, and PostgreSQL for
what was stored, alerted and dead-lettered.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import pytest

from tests.sip.conftest import SIPP_DIR, UNITS, StartGateway, alarm_units, run_sipp
from tests.utils.services import count, rows, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.db, pytest.mark.slow]

SAMPLES = SIPP_DIR / "alarms.csv"
# ref → (controller id, the event kind it must be stored as)
EXPECTED = {
    "MAN0010A": (UNITS[0], "alarm.button"),
    "FALL0009A": (UNITS[1], "alarm.fall"),
    "BEAT0001A": (UNITS[2], "device.heartbeat"),
    "PILL0081A": (UNITS[3], "dispenser.dose_missed"),
    "BATT0016A": (UNITS[4], "device.battery_low"),
    "POWR0085A": (UNITS[5], "device.power_lost"),
}
# The samples the default rules page on, and the rule that pages.
ALERTING = {
    UNITS[0]: "alarm",
    UNITS[1]: "fall",
    UNITS[3]: "dose_not_taken",
    UNITS[4]: "battery_low",
    UNITS[5]: "power_lost",
}
_MRS = re.compile(r"<mrs><ref>([A-Za-z0-9]+)</ref><snu>([0-9])</snu>")


def _stored(dsn: str) -> dict[str, tuple[str, str]]:
    found = rows(dsn, "SELECT event_id, device_id, kind FROM events")
    return {str(e): (str(d), str(k)) for e, d, k in found}


def _check_stored_and_alerted(dsn: str) -> None:
    wait_until(
        lambda: count(dsn, "SELECT count(*) FROM events") >= len(EXPECTED),
        timeout=30,
        what="the six samples to be stored",
    )
    assert _stored(dsn) == EXPECTED
    wait_until(
        lambda: count(dsn, "SELECT count(DISTINCT device_id) FROM alerts") >= len(ALERTING),
        timeout=30,
        what="the alerts of the samples that page",
    )
    alerts = {(str(d), str(r)) for d, r in rows(dsn, "SELECT device_id, rule_id FROM alerts")}
    assert alerts == set(ALERTING.items())  # a heartbeat never pages


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_each_sample_gets_200_ok_with_its_mrs_in_the_body_and_is_stored(
    sipp: str, start_gateway: StartGateway, tmp_path: Path, transport: str
) -> None:
    gateway = start_gateway(alarm_units())
    run = run_sipp(
        sipp, gateway, "scaip_body.xml", tmp_path, "-inf", str(SAMPLES), transport=transport
    )
    assert run.returncode == 0, run.output[-2000:]
    answers = dict(_MRS.findall(run.messages))
    assert answers == dict.fromkeys(EXPECTED, "0")
    assert "<hbi>120</hbi>" in run.messages  # the registry's heartbeat interval
    _check_stored_and_alerted(gateway.dsn)
    assert count(gateway.dsn, "SELECT count(*) FROM dead_letters") == 0


@pytest.mark.parametrize(
    ("registry", "config", "transport"),
    [("message", None, "u1"), (None, "message", "u1"), ("message", None, "t1")],
    ids=["the-device-says-message", "the-config-default-says-message", "over-tcp"],
)
def test_each_sample_gets_an_empty_200_and_its_mrs_as_a_separate_message(
    sipp: str,
    start_gateway: StartGateway,
    tmp_path: Path,
    registry: Literal["message"] | None,
    config: str | None,
    transport: str,
) -> None:
    scaip = {"reply": config} if config else {}
    gateway = start_gateway(alarm_units(reply=registry), **scaip)
    run = run_sipp(
        sipp,
        gateway,
        "scaip_message.xml",
        tmp_path,
        "-inf",
        str(SAMPLES),
        "-oocsf",
        str(SIPP_DIR / "scaip_reply_uas.xml"),
        transport=transport,
    )
    assert run.returncode == 0, run.output[-2000:]
    # Each <mrs> came in a MESSAGE of the gateway's own, never in a 200 OK.
    replies = re.findall(r"MESSAGE sip:[^\n]*\n(?:[^\n]+\n)*\n<\?xml[^\n]*<mrs>", run.messages)
    assert len(replies) == len(EXPECTED)
    assert dict(_MRS.findall(run.messages)) == dict.fromkeys(EXPECTED, "0")
    _check_stored_and_alerted(gateway.dsn)


def test_a_device_s_body_style_overrides_the_config_s_message_default(
    sipp: str, start_gateway: StartGateway, tmp_path: Path
) -> None:
    gateway = start_gateway(alarm_units(reply="body"), reply="message")
    run = run_sipp(sipp, gateway, "scaip_body.xml", tmp_path, "-inf", str(SAMPLES))
    assert run.returncode == 0, run.output[-2000:]
    assert dict(_MRS.findall(run.messages)) == dict.fromkeys(EXPECTED, "0")


def test_a_retransmitted_message_is_answered_again_and_stored_once(
    sipp: str, start_gateway: StartGateway, tmp_path: Path
) -> None:
    gateway = start_gateway(alarm_units())
    # -nr: SIPp would otherwise take the second, identical 200 OK for a retransmission of
    # the first and send its MESSAGE yet again, forever.
    run = run_sipp(sipp, gateway, "scaip_retransmit.xml", tmp_path, "-inf", str(SAMPLES), "-nr")
    assert run.returncode == 0, run.output[-2000:]
    oks = re.findall(r"SIP/2.0 200 OK\n(?:[^\n]+\n)*?To: [^\n]*;tag=([0-9a-f]+)", run.messages)
    # Twelve answers, and each retransmission got the very same answer (same To tag).
    assert len(oks) == 2 * len(EXPECTED) and len(set(oks)) == len(EXPECTED)
    _check_stored_and_alerted(gateway.dsn)
    assert count(gateway.dsn, "SELECT count(*) FROM events") == len(EXPECTED)
    assert count(gateway.dsn, "SELECT count(*) FROM alerts") == len(ALERTING)


def test_a_missing_mandatory_tag_gets_snu_7_and_a_dead_letter(
    sipp: str, start_gateway: StartGateway, tmp_path: Path
) -> None:
    gateway = start_gateway(alarm_units())
    run = run_sipp(sipp, gateway, "scaip_malformed.xml", tmp_path, calls=3)
    assert run.returncode == 0, run.output[-2000:]
    assert sorted(_MRS.findall(run.messages)) == [("NODTY1", "7"), ("NODTY2", "7"), ("NODTY3", "7")]
    dsn = gateway.dsn
    wait_until(
        lambda: count(dsn, "SELECT count(*) FROM dead_letters") >= 3,
        timeout=30,
        what="three dead letters",
    )
    reasons = rows(dsn, "SELECT reason, topic, payload FROM dead_letters")
    assert {r[0] for r in reasons} == {"scaip_missing_tag"}
    assert all(str(r[1]).startswith("sip/udp/127.0.0.1") for r in reasons)
    assert all(isinstance(r[2], bytes) and b"<ref>NODTY" in r[2] for r in reasons)
    assert count(dsn, "SELECT count(*) FROM events") == 0
