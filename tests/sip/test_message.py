"""The SIP layer's parts on their own: parsing, responses, digest, the <mrs> hbi, [scaip]."""

from __future__ import annotations

import hashlib
import re

import pytest

from adapters.scaip import scaip_reply
from core.errors import ConfigError, RegistryError
from gateway.config import load_settings
from gateway.registry import dump_registry_yaml, parse_registry
from gateway.sip.digest import DigestAuth, ha1
from gateway.sip.message import SipError, parse, response

REQUEST = (
    b"MESSAGE sip:scaip@127.0.0.1 SIP/2.0\r\n"
    b"v: SIP/2.0/UDP 10.0.0.7:5060;branch=z9hG4bK-abc;rport\r\n"
    b"f: <sip:46700000001@10.0.0.7>;tag=u1\r\n"
    b"t: <sip:scaip@127.0.0.1>\r\n"
    b"i: call-1@10.0.0.7\r\n"
    b"CSeq: 7 MESSAGE\r\n"
    b"Subject: a long\r\n  folded line\r\n"
    b"c: application/scaip+xml; charset=utf-8\r\n"
    b"l: 5\r\n\r\n<mrq>trailing"
)


def test_compact_headers_folding_and_content_length_are_understood() -> None:
    msg = parse(REQUEST)
    assert (msg.method, msg.cseq, msg.branch) == ("MESSAGE", (7, "MESSAGE"), "z9hG4bK-abc")
    assert msg.get("call-id") == "call-1@10.0.0.7"
    assert msg.get("subject") == "a long folded line"
    assert msg.content_type == "application/scaip+xml"
    assert msg.body == b"<mrq>"  # Content-Length, not the datagram's end


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        ((b"i: call-1@10.0.0.7\r\n", b""), "call-id header is missing"),
        ((b"CSeq: 7 MESSAGE", b"CSeq: 7 INVITE"), "not the request's MESSAGE"),
        ((b"l: 5", b"l: 500"), "exceeds"),
        ((b"MESSAGE sip:scaip@127.0.0.1 SIP/2.0", b"MESSAGE SIP/2.0"), "start line"),
        ((b"t: <sip:scaip@127.0.0.1>\r\n", b"no colon here\r\n"), "is not 'Name: value'"),
    ],
)
def test_malformed_requests_are_refused_saying_why(damage: tuple[bytes, bytes], why: str) -> None:
    with pytest.raises(SipError, match=re.escape(why)):
        parse(REQUEST.replace(*damage))


def test_over_a_stream_content_length_is_required() -> None:
    with pytest.raises(SipError, match="Content-Length is required"):
        parse(REQUEST.replace(b"l: 5\r\n", b""), stream=True)


def test_a_response_copies_the_transaction_headers_and_tags_to() -> None:
    answer = parse(response(parse(REQUEST), 200, to_tag="gw1", body=b"<mrs/>"))
    request = parse(REQUEST)
    assert answer.status == 200 and answer.body == b"<mrs/>"
    for name in ("via", "from", "call-id", "cseq"):
        assert answer.get(name) == request.get(name)
    assert answer.get("to") == "<sip:scaip@127.0.0.1>;tag=gw1"


def test_digest_accepts_the_right_answer_and_refuses_a_wrong_one() -> None:
    auth = DigestAuth("wgw")
    nonce = re.search(r'nonce="([^"]+)"', auth.challenge())
    assert nonce is not None
    secret = ha1("46700000001", "wgw", "hemligt")
    assert secret == hashlib.md5(b"46700000001:wgw:hemligt").hexdigest()

    def header(ha: str) -> str:
        ha2 = hashlib.md5(b"MESSAGE:sip:scaip@x").hexdigest()
        answer = hashlib.md5(f"{ha}:{nonce.group(1)}:00000001:c1:auth:{ha2}".encode())
        return (
            f'Digest username="46700000001", realm="wgw", nonce="{nonce.group(1)}", '
            f'uri="sip:scaip@x", response="{answer.hexdigest()}", qop=auth, nc=00000001, '
            'cnonce="c1"'
        )

    check = auth.check
    assert check(header(secret), method="MESSAGE", username="46700000001", ha1=secret) == "ok"
    wrong = ha1("46700000001", "wgw", "fel")
    assert check(header(wrong), method="MESSAGE", username="46700000001", ha1=secret) == "wrong"
    assert check(None, method="MESSAGE", username="46700000001", ha1=secret) == "missing"
    other = DigestAuth("wgw")  # another process's nonce
    assert (
        other.check(header(secret), method="MESSAGE", username="46700000001", ha1=secret) == "wrong"
    )


def test_the_mrs_carries_the_heartbeat_interval() -> None:
    assert scaip_reply("A1", 0, hbi=120).endswith(b"<snu>0</snu><hbi>120</hbi></mrs>")
    with pytest.raises(ValueError, match="hbi"):
        scaip_reply("A1", 0, hbi=0)


def test_scaip_tls_files_go_together_and_must_exist() -> None:
    with pytest.raises(ConfigError, match=r"scaip\.tls_cert_file and scaip\.tls_key_file"):
        load_settings(scaip={"tls_cert_file": __file__})
    with pytest.raises(ConfigError, match=r"key scaip\.tls_key_file"):
        load_settings(scaip={"tls_cert_file": __file__, "tls_key_file": "/nonexistent.key"})
    assert load_settings().scaip is None  # no section: no receiver


def test_the_registry_takes_the_sip_keys_and_checks_them() -> None:
    good = parse_registry(
        "device_id,family,org,scaip_reply,sip_ha1\n"
        f"46700000001,alarm,vallby,message,{ha1('46700000001', 'wgw', 'x')}\n"
        "46700000002,alarm,vallby,,\n",
        source="units.csv",
    )
    assert [(r.scaip_reply, r.sip_ha1 is not None) for r in good] == [
        ("message", True),
        (None, False),
    ]
    assert "sip_ha1" not in dump_registry_yaml(good[1:])  # unset keys stay out of the file
    with pytest.raises(RegistryError, match="scaip_reply"):
        parse_registry("device_id,family,org,scaip_reply\n1,alarm,o,mail\n", source="u.csv")
    with pytest.raises(RegistryError, match="sip_ha1"):
        parse_registry("device_id,family,org,sip_ha1\n1,alarm,o,secret\n", source="u.csv")
