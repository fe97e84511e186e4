"""The simulators' SIP client against the real SCAIP receiver, and a position over SIP (issue 11).

A real `wgw serve` with [scaip] (tests/sip/conftest.py); the units are the
simulators' SipSession, as `wgw simulate --scaip-sip` and `wgw demo` use it.
"""

from __future__ import annotations

from typing import Literal

import pytest

from simulators.render import mrq
from tests.sip.conftest import StartGateway, alarm_units
from tests.utils.services import count, rows, wait_until
from tests.utils.sipp_peer import send_all

pytestmark = [pytest.mark.broker, pytest.mark.db, pytest.mark.slow]

UNITS = tuple(f"467200000{n:02d}" for n in range(10))
PER_UNIT = 5


@pytest.mark.parametrize(
    ("reply", "transport"), [("body", "udp"), ("message", "udp"), ("message", "tcp")]
)
def test_simulated_units_are_answered_in_their_reply_style_and_stored_once(
    start_gateway: StartGateway, reply: Literal["body", "message"], transport: str
) -> None:
    gateway = start_gateway(alarm_units(UNITS, reply=reply))
    bodies = [
        mrq(ref=f"SIM{u}{n}", mty="PI", cid=cid, dty="0003")
        for u, cid in enumerate(UNITS)
        for n in range(PER_UNIT)
    ]
    report = send_all(f"{transport}://127.0.0.1:{gateway.port}", bodies)
    total = len(bodies)
    assert (report.sent, report.answered, report.replied, report.accepted) == (total,) * 4
    assert report.failed == 0
    wait_until(
        lambda: count(gateway.dsn, "SELECT count(*) FROM events") >= total,
        timeout=30,
        what="every heartbeat to be stored",
    )
    # Each ref once: the event ids are the refs, and none is there twice.
    stored = rows(gateway.dsn, "SELECT event_id, count(*) = 1 FROM events GROUP BY event_id")
    expected = sorted(f"SIM{u}{n}" for u in range(len(UNITS)) for n in range(PER_UNIT))
    assert sorted(str(ref) for ref, _ in stored) == expected
    assert all(once is True for _, once in stored)


def test_a_position_sent_over_sip_reaches_the_stored_event_and_the_alert(
    start_gateway: StartGateway,
) -> None:
    gateway = start_gateway(alarm_units(UNITS[:1]))
    lge = b"<lge><geo>59.334591,18.063240</geo><tim>2026-11-24T02:09:30+01</tim></lge>"
    body = mrq(ref="POS1", mty="ME", cid=UNITS[0], dty="0003", stc="0010").replace(
        b"</mrq>", lge + b"</mrq>"
    )
    report = send_all(f"udp://127.0.0.1:{gateway.port}", [body])
    assert (report.answered, report.accepted) == (1, 1)
    wait_until(
        lambda: count(gateway.dsn, "SELECT count(*) FROM alerts") == 1,
        timeout=30,
        what="the alarm's alert",
    )
    where = {"lat": 59.334591, "lon": 18.06324, "at": "2026-11-24T01:09:30+00:00"}
    ((position,),) = rows(gateway.dsn, "SELECT attributes -> 'position' FROM events")
    assert position == where
    ((rule, alert_event),) = rows(gateway.dsn, "SELECT rule_id, event_id FROM alerts")
    assert (rule, alert_event) == ("alarm", "POS1")
