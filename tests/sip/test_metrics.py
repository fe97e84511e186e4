"""The SCAIP receiver on /metrics: requests per transport and outcome, reply latency (issue 11)."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.sip.client import UdpUnit, ask_stream, mrq
from tests.sip.conftest import UNITS, SipGateway
from tests.utils.services import wait_until

pytestmark = [pytest.mark.broker, pytest.mark.db, pytest.mark.slow]

_SAMPLE = re.compile(r"^(wgw_sip_[a-z_]+)(\{[^}]*\})? (\S+)$", re.M)


def _sip_metrics(gateway: SipGateway) -> dict[str, float]:
    """Every wgw_sip_* sample on /metrics, keyed by name and labels as printed."""
    wait_until(lambda: bool(gateway.process.console_urls()), timeout=60, what="the API")
    base = gateway.process.console_urls()[-1]
    text = httpx.get(base + "metrics", timeout=10).text
    return {name + (labels or ""): float(value) for name, labels, value in _SAMPLE.findall(text)}


def test_metrics_count_sip_requests_by_transport_and_outcome_and_time_the_answers(
    unit_and_gateway: tuple[UdpUnit, SipGateway],
) -> None:
    unit, gateway = unit_and_gateway
    alarm = unit.message(mrq("MET1", UNITS[0]))
    first = unit.ask(alarm)
    assert first is not None and first.status == 200
    again = unit.ask(alarm)  # the same request again: the cached answer, byte for byte
    assert again is not None and again == first
    refused = unit.ask(unit.message(b"larm!", content_type="text/plain"))
    assert refused is not None and refused.status == 415
    unit.sock.sendto(b"not SIP at all\r\n\r\n", ("127.0.0.1", gateway.port))  # no Via: unanswered
    over_tcp = ask_stream(unit.message(mrq("MET2", UNITS[1]), transport="TCP"), gateway.port)
    assert over_tcp.status == 200

    def counted() -> bool:
        return (
            _sip_metrics(gateway).get(
                'wgw_sip_requests_total{outcome="unanswered",transport="UDP"}'
            )
            == 1.0
        )

    wait_until(counted, timeout=30, what="the unanswered datagram counted")
    m = _sip_metrics(gateway)
    requests = {k: v for k, v in m.items() if k.startswith("wgw_sip_requests_total")}
    # The unit retransmits after 500 ms of silence, so a slow first answer may be asked
    # for more than once: each transaction is answered 200 once, every repeat from the cache.
    repeats = sum(
        requests.pop(f'wgw_sip_requests_total{{outcome="{o}",transport="UDP"}}', 0.0)
        for o in ("retransmission", "absorbed")
    )
    assert repeats >= 1
    assert requests == {
        'wgw_sip_requests_total{outcome="200",transport="UDP"}': 1.0,
        'wgw_sip_requests_total{outcome="415",transport="UDP"}': 1.0,
        'wgw_sip_requests_total{outcome="unanswered",transport="UDP"}': 1.0,
        'wgw_sip_requests_total{outcome="200",transport="TCP"}': 1.0,
    }
    # Three first answers (two 200 OK, the 415) were timed; retransmissions are not.
    assert m["wgw_sip_reply_latency_seconds_count"] == 3.0
    assert m['wgw_sip_reply_latency_seconds_bucket{le="+Inf"}'] == 3.0
    assert 0 < m["wgw_sip_reply_latency_seconds_sum"] < 30
