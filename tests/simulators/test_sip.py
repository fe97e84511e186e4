"""The simulators' SIP client against SIPp as the SCAIP receiver: both reply styles, UDP and TCP."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime

import pytest

from gateway.cli import main
from gateway.embedded import MosquittoServer
from simulators import build_plan, demo_registry
from simulators.render import mrq
from simulators.sip import (
    SipClient,
    parse_message,
    parse_sip_target,
    read_mrs,
)
from tests.utils.sipp_peer import send_all, sipp_uas

CID = "46700000001"
NOW = datetime.now(UTC)


def alarms(count: int) -> list[bytes]:
    return [mrq(ref=f"SIM{n:04d}", mty="ME", cid=CID, dty="0003", stc="0010") for n in range(count)]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("scenario", ["uas_reply_in_200", "uas_reply_as_message"])
def test_every_alarm_gets_its_200_and_its_mrs(scenario: str, transport: str) -> None:
    with sipp_uas(scenario, calls=5, transport=transport) as sipp:
        report = send_all(f"{transport}://127.0.0.1:{sipp.port}", alarms(5))
        # SIPp exits 0 only if every call went as the scenario says; in the separate
        # style that includes our 200 OK to its reply MESSAGE.
        code, errors = sipp.finish()
        assert code == 0, errors
    assert (report.sent, report.answered, report.replied, report.accepted) == (5, 5, 5, 5)
    assert report.failed == 0
    assert len(report.latencies_s) == 5


def test_a_slow_receiver_gets_the_request_again_and_it_is_one_transaction() -> None:
    # SIPp waits 1.2 s before answering: the client retransmits at 0.5 s (Timer E).
    with sipp_uas("uas_reply_in_200", calls=1, extra=["-d", "1200"]) as sipp:
        report = send_all(f"udp://127.0.0.1:{sipp.port}", alarms(1))
        assert sipp.finish()[0] == 0
    assert report.retransmissions >= 1
    assert (report.sent, report.answered, report.accepted) == (1, 1, 1)


async def test_no_answer_ends_the_transaction_as_failed_after_timer_f() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        client = SipClient(parse_sip_target(f"udp://127.0.0.1:{port}"), reply_timeout_s=1.0)
        await client.open()
        try:
            outcome = await client.send(alarms(1)[0])
        finally:
            await client.aclose()
        first = silent.recv(65_535)
    assert (outcome.status, outcome.snu) == (None, None)
    request = parse_message(first)
    assert request is not None
    assert request.method == "MESSAGE"
    assert request.header("content-type") == "application/scaip+xml"
    assert (request.header("from") or "").startswith(f"<sip:{CID}@")
    assert request.body == alarms(1)[0]


def test_a_4xx_is_a_failure_without_a_reply() -> None:
    async def exchange() -> tuple[int | None, int | None]:
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
            server.bind(("127.0.0.1", 0))
            server.setblocking(False)
            client = SipClient(parse_sip_target(f"udp://127.0.0.1:{server.getsockname()[1]}"))
            await client.open()
            sent = asyncio.create_task(client.send(alarms(1)[0]))
            data, addr = await loop.sock_recvfrom(server, 65_535)
            request = parse_message(data)
            assert request is not None
            head = [f"Via: {request.header('via')}", f"Call-ID: {request.header('call-id')}",
                    f"CSeq: {request.header('cseq')}", "Content-Length: 0"]  # fmt: skip
            answer = "SIP/2.0 415 Unsupported Media Type\r\n" + "\r\n".join(head) + "\r\n\r\n"
            await loop.sock_sendto(server, answer.encode(), addr)
            outcome = await sent
            await client.aclose()
            return outcome.status, outcome.snu

    assert asyncio.run(exchange()) == (415, None)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("udp://127.0.0.1:5070", ("udp", "127.0.0.1", 5070)),
        ("tcp://receiver.example.invalid", ("tcp", "receiver.example.invalid", 5060)),
    ],
)
def test_targets(url: str, expected: tuple[str, str, int]) -> None:
    target = parse_sip_target(url)
    assert (target.transport, target.host, target.port) == expected


@pytest.mark.parametrize(
    "url", ["sip:127.0.0.1", "tls://127.0.0.1:5061", "udp://", "udp://h:99999"]
)
def test_bad_targets_say_what_is_expected(url: str) -> None:
    with pytest.raises(ValueError, match="udp://host"):
        parse_sip_target(url)


def test_mrs_replies_are_read_safely() -> None:
    assert read_mrs(b"<mrs><ref>A1</ref><snu>0</snu></mrs>") == ("A1", 0)
    assert read_mrs(b'<?xml version="1.0"?><mrs><ref>A1</ref><snu>7</snu><ste>x</ste></mrs>') == (
        "A1",
        7,
    )
    assert read_mrs(b"<mrq><ref>A1</ref></mrq>") is None
    assert read_mrs(b"<mrs><ref>A1</ref></mrs>") is None
    assert read_mrs(b"not xml") is None
    assert (
        read_mrs(b'<!DOCTYPE mrs [<!ENTITY a "b">]><mrs><ref>&a;</ref><snu>0</snu></mrs>') is None
    )


@pytest.mark.broker
def test_wgw_simulate_sends_the_bridged_alarms_over_sip_and_the_rest_over_mqtt(
    mosquitto: MosquittoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    devices, seed = 12, 5
    plan = build_plan("fall", devices=demo_registry(devices, seed=seed), seed=seed, end=NOW)
    bridged = sum(m.topic.startswith("scaip/") for m in plan.messages)
    assert bridged  # the fall night has bridged units, or this test proves nothing
    with sipp_uas("uas_reply_as_message", calls=bridged) as sipp:
        receiver = f"udp://127.0.0.1:{sipp.port}"
        argv = ["simulate", "--devices", str(devices), "--seed", str(seed), "--scenario", "fall",
                "--broker", mosquitto.url, "--scaip-sip", receiver]  # fmt: skip
        assert main(argv) == 0
        code, errors = sipp.finish()
        assert code == 0, errors
    line = capsys.readouterr().out
    mqtt = len(plan.messages) - bridged
    assert f"published {mqtt} messages ({mqtt} acknowledged" in line
    assert f"{bridged} MESSAGE, {bridged} answered 2xx, {bridged} <mrs> ({bridged} snu 0)" in line
