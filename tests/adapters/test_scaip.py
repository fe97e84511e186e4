"""SCAIP <mrq> parsing (hostile XML, encodings, tag rules), kind mapping and <mrs> replies."""

from __future__ import annotations

from datetime import UTC, datetime

import defusedxml.ElementTree as SafeET  # type: ignore[import-untyped]
import pytest

from adapters import alarm
from adapters.alarm import STC_KINDS, scaip_kind
from adapters.scaip import (
    MAX_SCAIP_BYTES,
    ReplyStatus,
    parse_mrq,
    reply_status_for,
    scaip_reply,
)
from core.errors import DecodeError
from core.events import RawMessage

RECEIVED_AT = datetime(2026, 11, 23, 1, 14, 7, tzinfo=UTC)
CID = "46700000001"
HEAD = b'<?xml version="1.0" encoding="UTF-8"?>'


def mrq(body: str = "", *, head: bytes = HEAD, **tags: str) -> bytes:
    return mrq_from({"ref": "A1B2C3", "mty": "ME", "cid": CID, "dty": "0003", **tags}, body, head)


def mrq_from(fields: dict[str, str], body: str = "", head: bytes = HEAD) -> bytes:
    inner = "".join(f"<{k}>{v}</{k}>" for k, v in fields.items() if v)
    return head + f"<mrq>{inner}{body}</mrq>".encode()


def with_tag(tag: str, value: str) -> bytes:
    fields = {"ref": "A1B2C3", "mty": "ME", "cid": CID, "dty": "0003"}
    fields[tag] = value
    return mrq_from(fields)


def reason(payload: bytes) -> str:
    with pytest.raises(DecodeError) as info:
        parse_mrq(payload)
    return info.value.reason


BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE mrq [<!ENTITY a "aaaaaaaaaa">'
    + b"".join(
        f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">'.encode() for i in range(9)
    )
    + b"]><mrq><ref>A1</ref><mty>ME</mty><cid>46700000001</cid><dty>0003</dty>"
    + b"<dte>&j;</dte></mrq>"
)


def test_billion_laughs_is_refused_every_time() -> None:
    # 1,000 hostile payloads must all be refused; that this finishes at all is the point.
    raw = RawMessage("scaip/org-1/mrq", BILLION_LAUGHS, RECEIVED_AT)
    reasons = set()
    for _ in range(1000):
        with pytest.raises(DecodeError) as info:
            alarm.decode(raw)
        reasons.add(info.value.reason)
    assert reasons == {"xml_forbidden"}


@pytest.mark.parametrize(
    "payload",
    [
        b'<!DOCTYPE mrq [<!ENTITY x SYSTEM "file:///etc/passwd">]><mrq><dte>&x;</dte></mrq>',
        b'<!DOCTYPE mrq [<!ENTITY % p SYSTEM "http://example.invalid/p.dtd"> %p;]><mrq/>',
        b'<!DOCTYPE mrq SYSTEM "http://example.invalid/mrq.dtd"><mrq/>',
        b"<!DOCTYPE mrq><mrq/>",
    ],
    ids=["xxe-file", "parameter-entity", "external-dtd", "plain-doctype"],
)
def test_any_dtd_is_forbidden(payload: bytes) -> None:
    assert reason(payload) == "xml_forbidden"


def test_size_cap_is_exact() -> None:
    base = mrq(dte="x")
    at_limit = mrq(dte="x" * (MAX_SCAIP_BYTES - len(base) + 1))
    assert len(at_limit) == MAX_SCAIP_BYTES
    assert parse_mrq(at_limit)["ref"] == "A1B2C3"
    assert reason(at_limit + b" ") == "oversized"


def test_oversized_is_refused_before_parsing() -> None:
    # Not even well-formed: the size check must come first.
    assert reason(b"<" * (MAX_SCAIP_BYTES + 1)) == "oversized"


@pytest.mark.parametrize(
    "payload",
    [
        mrq(),
        mrq(head=b""),
        mrq(head=b'<?xml version="1.0" encoding="utf-8"?>'),
        b"\xef\xbb\xbf" + mrq(),
        mrq(head=b"<?xml version='1.0' encoding='ISO-8859-1'?>"),
    ],
    ids=["utf8-declared", "no-declaration", "lowercase", "utf8-bom", "latin1"],
)
def test_accepted_encodings(payload: bytes) -> None:
    assert parse_mrq(payload)["cid"] == CID


def test_latin1_text_is_decoded() -> None:
    payload = b"<?xml version='1.0' encoding='ISO-8859-1'?><mrq><ref>A1</ref><mty>IN</mty>"
    payload += b"<cid>46700000001</cid><dty>0003</dty><lte>K\xf6k</lte></mrq>"
    assert parse_mrq(payload)["lte"] == "Kök"


@pytest.mark.parametrize(
    "payload",
    [
        mrq().decode().replace("UTF-8", "UTF-16").encode("utf-16"),
        mrq().decode().replace("UTF-8", "UTF-16").encode("utf-16-le"),  # no BOM
        mrq(head=b'<?xml version="1.0" encoding="UTF-16"?>'),
        mrq(head=b'<?xml version="1.0" encoding="windows-1252"?>'),
        mrq(head=b'<?xml version="1.0" encoding="UTF-8"?>', dte="x").replace(b"x", b"\xe5"),
        mrq(head=b"").replace(b"A1B2C3", b"A1\xff"),
    ],
    ids=["utf16-bom", "utf16-no-bom", "declared-utf16", "windows-1252", "latin1-byte", "bad-byte"],
)
def test_refused_encodings(payload: bytes) -> None:
    assert reason(payload) == "xml_encoding"


@pytest.mark.parametrize("tag", ["ref", "mty", "cid", "dty"])
def test_mandatory_tags(tag: str) -> None:
    assert reason(with_tag(tag, "")) == "scaip_missing_tag"


@pytest.mark.parametrize(
    ("tag", "value"),
    [
        ("ref", "A1-B2"),
        ("ref", "A" * 17),
        ("ref", "ÅÄÖ"),
        ("cid", "+46700000001"),
        ("cid", "٤٦٧"),  # Arabic-Indic digits are digits to \d, not to SCAIP
        ("cid", "1" * 65),
        ("dty", "03"),
        ("stc", "10"),
        ("pri", "A"),
        ("mty", "ALARM"),
    ],
)
def test_malformed_tags(tag: str, value: str) -> None:
    assert reason(with_tag(tag, value)) == "scaip_invalid"


def test_root_must_be_mrq() -> None:
    assert reason(b"<mrs><ref>A1</ref><snu>0</snu></mrs>") == "scaip_invalid"


def test_not_wellformed() -> None:
    assert reason(b"<mrq><ref>A1</ref>") == "invalid_xml"
    assert reason(b"") == "invalid_xml"


def test_kept_and_ignored_tags() -> None:
    fields = parse_mrq(
        mrq(
            "<ver>1</ver><crd>sip:+46700000001@example.invalid</crd><lge>59.3,18.0</lge>"
            "<ame>1</ame><zzz>future</zzz>",
            stc="0010",
            stt=" Larm ",
            pri="1",
        )
    )
    assert fields == {
        "ref": "A1B2C3",
        "mty": "ME",
        "cid": CID,
        "dty": "0003",
        "stc": "0010",
        "stt": "Larm",
        "pri": "1",
    }


def test_namespaced_root_is_accepted() -> None:
    payload = b'<mrq xmlns="urn:example:scaip"><ref>A1</ref><mty>PI</mty>'
    payload += b"<cid>46700000001</cid><dty>0032</dty></mrq>"
    assert parse_mrq(payload)["mty"] == "PI"


@pytest.mark.parametrize(("stc", "kind"), sorted(STC_KINDS.items()))
def test_listed_status_codes_have_their_kind_for_me_and_in(stc: str, kind: str) -> None:
    for mty in ("ME", "IN"):
        assert scaip_kind({"mty": mty, "stc": stc, "dty": "0003"}) == kind


@pytest.mark.parametrize(
    ("fields", "kind"),
    [
        ({"mty": "PI", "dty": "0003", "stc": "0010"}, "device.heartbeat"),
        ({"mty": "RE", "dty": "0003", "stc": "0010"}, "alarm.reset"),
        ({"mty": "ME", "dty": "0005", "stc": "0009"}, "alarm.fall"),
        ({"mty": "ME", "dty": "0005"}, "alarm.fall"),
        ({"mty": "ME", "dty": "0005", "stc": "0010"}, "alarm.button"),
        ({"mty": "ME", "dty": "0005", "stc": "0999"}, "alarm.automatic"),
        ({"mty": "ME", "dty": "0003"}, "alarm.automatic"),
        ({"mty": "ME", "dty": "0012", "stc": "0117"}, "alarm.automatic"),
        ({"mty": "IN", "dty": "0012", "stc": "0117"}, "alarm.info"),
        ({"mty": "IN", "dty": "0011", "stc": "0083"}, "alarm.info"),
        ({"mty": "IN", "dty": "0003"}, "alarm.info"),
    ],
)
def test_kind_rules(fields: dict[str, str], kind: str) -> None:
    assert scaip_kind(fields) == kind


def test_reply_round_trips() -> None:
    reply = scaip_reply("A1B2C3", ReplyStatus.OK)
    assert reply == (
        b'<?xml version="1.0" encoding="UTF-8"?><mrs><ref>A1B2C3</ref><snu>0</snu></mrs>'
    )
    root = SafeET.fromstring(scaip_reply("A1", 3, "Fel & <okänt> innehåll"))
    assert [(child.tag, child.text) for child in root] == [
        ("ref", "A1"),
        ("snu", "3"),
        ("ste", "Fel & <okänt> innehåll"),
    ]


@pytest.mark.parametrize(
    ("ref", "snu", "ste"),
    [("A-1", 0, None), ("", 0, None), ("A1", 8, None), ("A1", -1, None), ("A1", 0, "bell\x07")],
)
def test_reply_refuses_what_scaip_cannot_carry(ref: str, snu: int, ste: str | None) -> None:
    with pytest.raises(ValueError):
        scaip_reply(ref, snu, ste)


def test_reply_refuses_a_boolean_status() -> None:
    with pytest.raises(ValueError):
        scaip_reply("A1", True)


@pytest.mark.parametrize(
    ("decode_reason", "snu"),
    [
        ("oversized", ReplyStatus.TOO_LONG),
        ("xml_forbidden", ReplyStatus.INVALID_FORMAT),
        ("invalid_xml", ReplyStatus.INVALID_FORMAT),
        ("scaip_missing_tag", ReplyStatus.MANDATORY_TAG_MISSING),
        ("device_mismatch", ReplyStatus.WRONG_DATA),
    ],
)
def test_reply_status_for_reasons(decode_reason: str, snu: ReplyStatus) -> None:
    assert reply_status_for(decode_reason) is snu
