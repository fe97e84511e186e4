"""What the SCAIP receiver refuses, and how: SIP status, <snu>, a dead letter each (issue 11).

A real `wgw serve`; the unit's side is tests/sip/client.py, so each answer is
checked exactly. After every refusal a good alarm is still answered.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from core.errors import ConfigError
from gateway.config import ScaipSettings
from gateway.sip.message import SipMessage
from gateway.sip.receiver import tls_context
from tests.sip.client import UdpUnit, ask_stream, mrq, request
from tests.sip.conftest import UNITS, SipGateway, StartGateway, alarm_units
from tests.utils.services import count, rows, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.db, pytest.mark.slow]

CID = UNITS[0]
_MRS = re.compile(rb"<mrs><ref>([A-Za-z0-9]+)</ref><snu>([0-9])</snu>")


def _mrs(answer: SipMessage | None) -> tuple[str, str]:
    assert answer is not None and answer.status == 200, answer
    found = _MRS.search(answer.body)
    assert found is not None, answer.body
    return found.group(1).decode(), found.group(2).decode()


def _still_answers(unit: UdpUnit, ref: str) -> None:
    answer = unit.ask(unit.message(mrq(ref, CID)))
    assert _mrs(answer) == (ref, "0")


def _dead_letters(dsn: str, n: int) -> list[tuple[str, bytes]]:
    wait_until(
        lambda: count(dsn, "SELECT count(*) FROM dead_letters") >= n,
        timeout=30,
        what=f"{n} dead letters",
    )
    return [(str(r), bytes(p)) for r, p in rows(dsn, "SELECT reason, payload FROM dead_letters")]  # type: ignore[call-overload]


def test_sip_errors_get_400_405_415_413_with_a_dead_letter_each(
    unit_and_gateway: tuple[UdpUnit, SipGateway],
) -> None:
    unit, gateway = unit_and_gateway
    no_call_id = re.sub(rb"Call-ID: [^\r]*\r\n", b"", unit.message(mrq("A1", CID)))
    answer = unit.ask(no_call_id, timeout=3)
    assert answer is not None and answer.status == 400  # Via, From, To, CSeq: answerable
    assert b"call-id" in (answer.get("warning") or "").encode()
    bad_cseq = unit.message(mrq("A2", CID)).replace(b"CSeq: 1 MESSAGE", b"CSeq: one MESSAGE")
    answer = unit.ask(bad_cseq, timeout=3)
    assert answer is not None and answer.status == 400
    answer = unit.ask(unit.message(b"", method="INVITE", content_type="application/sdp"))
    assert answer is not None and answer.status == 405
    assert answer.get("allow") == "MESSAGE, OPTIONS"
    answer = unit.ask(unit.message(b"larm!", content_type="text/plain"))
    assert answer is not None and answer.status == 415
    assert answer.get("accept") == "application/scaip+xml"
    huge = unit.message(mrq("A3", CID, more="<dte>" + "x" * 20_000 + "</dte>"))
    answer = unit.ask(huge, timeout=3)
    assert answer is not None and answer.status == 413
    options = unit.ask(unit.message(b"", method="OPTIONS", content_type="application/sdp"))
    assert options is not None and options.status == 200
    _still_answers(unit, "STILL1")
    reasons = sorted(r for r, _ in _dead_letters(gateway.dsn, 5))
    assert reasons == sorted(
        ["sip_malformed", "sip_malformed", "sip_method", "sip_content_type", "sip_too_large"]
    )
    assert count(gateway.dsn, "SELECT count(*) FROM events") == 1


BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE mrq [<!ENTITY a "aaaaaaaaaa">'
    b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
    b"<mrq><ref>LAUGH1</ref><mty>ME</mty><cid>46700000001</cid><dty>0003</dty>"
    b"<dte>&c;</dte></mrq>"
)
XXE = (
    b'<?xml version="1.0"?><!DOCTYPE mrq [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b"<mrq><ref>XXE1</ref><mty>ME</mty><cid>46700000001</cid><dty>0003</dty>"
    b"<dte>&x;</dte></mrq>"
)


def test_hostile_xml_and_unknown_units_get_the_right_snu_and_the_receiver_keeps_answering(
    unit_and_gateway: tuple[UdpUnit, SipGateway],
) -> None:
    unit, gateway = unit_and_gateway
    cases = [
        (BILLION_LAUGHS, ("LAUGH1", "2")),
        (XXE, ("XXE1", "2")),
        (mrq("LONG1", CID, more="<dte>" + "x" * 9_000 + "</dte>"), ("LONG1", "1")),
        (mrq("BADTY1", CID, dty="12"), ("BADTY1", "2")),
        (mrq("STRANGER1", "46799999999"), ("STRANGER1", "3")),
    ]
    for body, expected in cases:
        assert _mrs(unit.ask(unit.message(body))) == expected
        _still_answers(unit, f"OK{expected[0]}"[:16])
    # Not XML at all: no ref to answer with, so SIP refuses it.
    answer = unit.ask(unit.message(b"\x00\x01 not xml"))
    assert answer is not None and answer.status == 400
    _still_answers(unit, "OKLAST")
    letters = _dead_letters(gateway.dsn, 6)
    assert sorted(r for r, _ in letters) == sorted(
        [
            "xml_entities",
            "xml_external_entity",
            "oversized",
            "scaip_invalid",
            "unknown_device",
            "xml_encoding",
        ]
    )
    assert any(b"file:///etc/passwd" in payload for _, payload in letters)  # bytes kept as sent
    wait_until(
        lambda: count(gateway.dsn, "SELECT count(*) FROM events") >= 6,
        timeout=30,
        what="the good alarms stored",
    )
    assert count(gateway.dsn, "SELECT count(*) FROM events") == 6


def _digest(header: str, *, password: str, uri: str) -> str:
    fields = dict(re.findall(r'(\w+)="?([^",]+)"?', header))
    ha1 = hashlib.md5(f"{CID}:{fields['realm']}:{password}".encode()).hexdigest()
    ha2 = hashlib.md5(f"MESSAGE:{uri}".encode()).hexdigest()
    cnonce, nc = "0a4f113b", "00000001"
    response = hashlib.md5(f"{ha1}:{fields['nonce']}:{nc}:{cnonce}:auth:{ha2}".encode()).hexdigest()
    return (
        f'Authorization: Digest username="{CID}", realm="{fields["realm"]}", '
        f'nonce="{fields["nonce"]}", uri="{uri}", response="{response}", algorithm=MD5, '
        f'qop=auth, nc={nc}, cnonce="{cnonce}"'
    )


def test_a_unit_with_credentials_must_answer_the_digest_challenge(
    start_gateway: StartGateway,
) -> None:
    password = "hemligt-larm-7"
    ha1 = hashlib.md5(f"{CID}:wgw:{password}".encode()).hexdigest()
    gateway = start_gateway(alarm_units([CID], ha1=ha1))
    unit = UdpUnit(gateway.port)
    uri = f"sip:scaip@127.0.0.1:{unit.port}"
    challenge = unit.ask(unit.message(mrq("AUTH1", CID)))
    assert challenge is not None and challenge.status == 401
    www = challenge.get("www-authenticate") or ""
    assert 'realm="wgw"' in www and "nonce=" in www
    good = unit.message(
        mrq("AUTH1", CID), cseq=2, headers=[_digest(www, password=password, uri=uri)]
    )
    assert _mrs(unit.ask(good)) == ("AUTH1", "0")
    wrong = unit.message(mrq("AUTH2", CID), cseq=3, headers=[_digest(www, password="fel", uri=uri)])
    answer = unit.ask(wrong)
    assert answer is not None and answer.status == 403
    assert [r for r, _ in _dead_letters(gateway.dsn, 1)] == ["sip_auth_failed"]
    assert [str(e) for (e,) in rows(gateway.dsn, "SELECT event_id FROM events")] == ["AUTH1"]
    unit.close()


def test_a_source_outside_the_allow_list_gets_403(start_gateway: StartGateway) -> None:
    gateway = start_gateway(alarm_units(), allow_from='["10.20.0.0/16"]')
    unit = UdpUnit(gateway.port)
    answer = unit.ask(unit.message(mrq("NOPE1", CID)))
    assert answer is not None and answer.status == 403
    # Malformed as well: still refused for where it comes from, before anything else.
    broken = unit.message(mrq("NOPE2", CID)).replace(b"CSeq: 1 MESSAGE", b"CSeq: x")
    answer = unit.ask(broken, timeout=3)
    assert answer is not None and answer.status == 403
    reasons = [r for r, _ in _dead_letters(gateway.dsn, 2)]
    assert reasons == ["sip_source_refused", "sip_source_refused"]
    assert count(gateway.dsn, "SELECT count(*) FROM events") == 0
    unit.close()


def _certificate(directory: Path, name: str) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is needed: apt-get install openssl")
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_sip_over_tls_and_tcp_when_a_certificate_is_configured(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    cert, key = _certificate(tmp_path, "scaip")
    gateway = start_gateway(
        alarm_units(), tls_cert_file=str(cert), tls_key_file=str(key), tls_port="0"
    )
    found = re.findall(r"SCAIP receiver on .*tls 127\.0\.0\.1:([0-9]+)", gateway.process.log_text())
    tls_port = int(found[-1])
    client = ssl.create_default_context(cafile=str(cert))
    body = mrq("TLS1", CID)
    answer = ask_stream(
        request(body, port=tls_port, local_port=5061, transport="TLS"), tls_port, tls=client
    )
    assert _mrs(answer) == ("TLS1", "0")
    answer = ask_stream(
        request(mrq("TCP1", CID), port=gateway.port, local_port=5060, transport="TCP"), gateway.port
    )
    assert _mrs(answer) == ("TCP1", "0")
    wait_until(
        lambda: count(gateway.dsn, "SELECT count(*) FROM events") >= 2,
        timeout=30,
        what="both stored",
    )


def test_a_certificate_that_does_not_match_its_key_is_refused_naming_both(
    tmp_path: Path,
) -> None:
    cert, _ = _certificate(tmp_path, "one")
    _, other_key = _certificate(tmp_path, "two")
    settings = ScaipSettings(tls_cert_file=cert, tls_key_file=other_key)
    with pytest.raises(ConfigError, match=r"scaip\.tls_cert_file.*one\.crt.*two\.key"):
        tls_context(settings)
