"""SCAIP <mrq> parsing (hostile XML, encodings, tag rules), kind mapping and <mrs> replies."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import defusedxml.ElementTree as SafeET  # type: ignore[import-untyped]
import pytest

from adapters import alarm
from adapters.alarm import STC_KINDS, scaip_kind
from adapters.scaip import (
    MAX_SCAIP_BYTES,
    ReplyStatus,
    parse_mrq,
    read_mrq,
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
    assert reasons == {"xml_entities"}


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b'<!DOCTYPE mrq [<!ENTITY x SYSTEM "file:///etc/passwd">]><mrq><dte>&x;</dte></mrq>',
         "xml_external_entity"),
        (b'<!DOCTYPE mrq [<!ENTITY % p SYSTEM "http://example.invalid/p.dtd"> %p;]><mrq/>',
         "xml_external_entity"),
        (b'<!DOCTYPE mrq SYSTEM "http://example.invalid/mrq.dtd"><mrq/>', "xml_external_entity"),
        (b'<!DOCTYPE mrq PUBLIC "-//x//EN" "http://example.invalid/m.dtd"><mrq/>',
         "xml_external_entity"),
        (b'<!DOCTYPE mrq [<!ENTITY a "aaaa">]><mrq><dte>&a;</dte></mrq>', "xml_entities"),
        (b'<!DOCTYPE mrq [<!ENTITY % p "x">]><mrq/>', "xml_entities"),
        (b"<!DOCTYPE mrq><mrq/>", "xml_dtd"),
        (b"<!DOCTYPE mrq [<!ELEMENT mrq ANY>]><mrq/>", "xml_dtd"),
    ],
    ids=["xxe-file", "parameter-entity", "external-dtd", "public-dtd", "internal-entity",
         "internal-parameter-entity", "plain-doctype", "element-decl"],
)  # fmt: skip
def test_any_dtd_is_forbidden_with_a_reason_naming_what_it_tried(payload: bytes, why: str) -> None:
    assert reason(payload) == why


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
        ({"mty": "IN", "dty": "0011", "stc": "0083"}, "dispenser.dose_taken"),
        ({"mty": "IN", "dty": "0003"}, "alarm.info"),
    ],
)
def test_kind_rules(fields: dict[str, str], kind: str) -> None:
    assert scaip_kind(fields) == kind


# Every status code DOMAIN.md §1 lists: (kind on an ME message, kind on an IN message).
# The pill codes are dose kinds whatever the message type (DOMAIN.md §1, §4).
DOMAIN_STC: dict[str, tuple[str, str]] = {
    "0009": ("alarm.automatic", "alarm.automatic"),  # automatic alarm
    "0010": ("alarm.button", "alarm.button"),  # manual alarm
    "0016": ("device.battery_low", "device.battery_low"),
    "0023": ("device.connection_lost", "device.connection_lost"),  # IP failed
    "0112": ("device.connection_restored", "device.connection_restored"),  # IP restored
    "0024": ("device.connection_lost", "device.connection_lost"),  # mobile failed
    "0113": ("device.connection_restored", "device.connection_restored"),  # mobile restored
    "0081": ("dispenser.dose_missed", "dispenser.dose_missed"),  # pill not taken
    "0082": ("dispenser.dose_due", "dispenser.dose_due"),  # pill reminder
    "0083": ("dispenser.dose_taken", "dispenser.dose_taken"),  # pill taken
    "0085": ("device.power_lost", "device.power_lost"),
    "0086": ("device.power_restored", "device.power_restored"),
    "0092": ("alarm.reset", "alarm.reset"),  # automatic reset
    "0093": ("alarm.reset", "alarm.reset"),  # manual reset
    "0094": ("alarm.reset", "alarm.reset"),  # restoral
    "0102": ("device.heartbeat", "device.heartbeat"),  # test transmission
    "0103": ("device.heartbeat", "device.heartbeat"),
    "0107": ("alarm.unauthorised_access", "alarm.unauthorised_access"),
    "0110": ("alarm.assistance", "alarm.assistance"),
    "0111": ("alarm.intervention_complete", "alarm.intervention_complete"),
    # No kind of their own: an ME is still an alarm, an IN information.
    "0117": ("alarm.automatic", "alarm.info"),  # lying in bed
    "0118": ("alarm.automatic", "alarm.info"),  # locked
    "0125": ("device.tamper", "device.tamper"),
    "0127": ("alarm.automatic", "alarm.info"),  # unlocked
}
# Every device type DOMAIN.md §1 lists; only a fall detector changes a kind.
DOMAIN_DTY = ("0003", "0004", "0005", "0011", "0012", "0013", "0014", "0015", "0032", "0043")
FALL_DETECTOR = "0005"

DOMAIN_MD = Path(__file__).resolve().parents[3] / "shared" / "DOMAIN.md"


def _expected_kind(mty: str, dty: str, stc: str | None) -> str:
    if mty == "PI":
        return "device.heartbeat"
    if mty == "RE":
        return "alarm.reset"
    if stc is None:
        return (
            "alarm.fall"
            if dty == FALL_DETECTOR and mty == "ME"
            else ("alarm.automatic" if mty == "ME" else "alarm.info")
        )
    # Only the automatic-alarm code itself (0009) from a fall detector is a fall.
    if stc == "0009" and dty == FALL_DETECTOR:
        return "alarm.fall"
    return DOMAIN_STC[stc][0 if mty == "ME" else 1]


_TABLE = [
    (mty, dty, stc)
    for mty in ("ME", "IN", "PI", "RE")
    for dty in DOMAIN_DTY
    for stc in (*DOMAIN_STC, None)
]


@pytest.mark.parametrize(("mty", "dty", "stc"), _TABLE, ids=lambda v: v or "no-stc")
def test_every_domain_code_decodes_to_its_kind(mty: str, dty: str, stc: str | None) -> None:
    fields = {"ref": "R1", "mty": mty, "cid": CID, "dty": dty, "stc": stc or ""}
    events = alarm.decode(RawMessage("scaip/org-1/mrq", mrq_from(fields), RECEIVED_AT))
    assert [e.kind for e in events] == [_expected_kind(mty, dty, stc)]
    event = events[0]
    assert event.family.value == "alarm"  # the unit's family, whatever it reports
    assert event.attributes["scaip_dty"] == dty
    if stc is not None:
        assert event.attributes["scaip_stc"] == stc


def test_the_table_covers_every_code_in_domain_md() -> None:
    if not DOMAIN_MD.exists():
        pytest.skip(f"{DOMAIN_MD} is not here")
    section = DOMAIN_MD.read_text(encoding="utf-8").split("## 2.")[0]
    stc_text = section.split("Status codes (`stc`)")[1].split("- Supervision")[0]
    dty_text = section.split("Device types (`dty`)")[1].split("- Status codes")[0]
    assert set(re.findall(r"\b\d{4}\b", stc_text)) == set(DOMAIN_STC)
    assert set(re.findall(r"\b\d{4}\b", dty_text)) == set(DOMAIN_DTY)


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
        ("xml_dtd", ReplyStatus.INVALID_FORMAT),
        ("xml_entities", ReplyStatus.INVALID_FORMAT),
        ("xml_external_entity", ReplyStatus.INVALID_FORMAT),
        ("invalid_xml", ReplyStatus.INVALID_FORMAT),
        ("scaip_missing_tag", ReplyStatus.MANDATORY_TAG_MISSING),
        ("device_mismatch", ReplyStatus.WRONG_DATA),
    ],
)
def test_reply_status_for_reasons(decode_reason: str, snu: ReplyStatus) -> None:
    assert reply_status_for(decode_reason) is snu


# --- <lge> positions ------------------------------------------------------------------

# An invented position in Stockholm, in the element layout adapters/scaip.py cites.
STOCKHOLM = "<lge><geo>59.334591,18.063240</geo><tim>2026-11-23T02:14:07+01</tim></lge>"


def _nmea(body: str) -> str:
    checksum = 0
    for char in body:
        checksum ^= ord(char)
    return f"${body}*{checksum:02X}"


GGA = _nmea("GPGGA,011407.00,5920.0754,N,01803.7944,E,1,08,0.9,28.0,M,24.0,M,,")


def test_lge_becomes_the_position_attribute() -> None:
    events = alarm.decode(RawMessage("scaip/org-1/mrq", mrq(STOCKHOLM, stc="0010"), RECEIVED_AT))
    attributes = events[0].attributes
    assert attributes["position"] == {
        "lat": 59.334591,
        "lon": 18.06324,
        "at": "2026-11-23T01:14:07+00:00",
    }
    assert "position_problem" not in attributes
    assert events[0].kind == "alarm.button"


def test_no_lge_means_no_position() -> None:
    events = alarm.decode(RawMessage("scaip/org-1/mrq", mrq(stc="0010"), RECEIVED_AT))
    assert "position" not in events[0].attributes
    assert "position_problem" not in events[0].attributes


@pytest.mark.parametrize(
    ("lge", "position"),
    [
        ("<lge><geo>59.3,18.1</geo></lge>", {"lat": 59.3, "lon": 18.1, "at": None}),
        ("<lge><geo> -33.86 , 151.2 </geo></lge>", {"lat": -33.86, "lon": 151.2, "at": None}),
        ("<lge><geo>90,-180</geo></lge>", {"lat": 90.0, "lon": -180.0, "at": None}),
        (
            "<lge><tim>2026-11-23T01:14:07Z</tim><geo>67.85,20.22</geo></lge>",
            {"lat": 67.85, "lon": 20.22, "at": "2026-11-23T01:14:07+00:00"},
        ),
        # Only an NMEA sentence: 59°20.0754' N, 18°03.7944' E.
        (f"<lge><gga>{GGA}</gga></lge>", {"lat": 59.33459, "lon": 18.06324, "at": None}),
        # Southern and western hemispheres from NMEA, without a checksum.
        (
            "<lge><gga>$GNGGA,011407,3351.6000,S,07040.2000,W,1,05,1.2,500,M,,M,,</gga></lge>",
            {"lat": -33.86, "lon": -70.67, "at": None},
        ),
        # geo wins over gga when both are given.
        (
            f"<lge><geo>55.6,13.0</geo><gga>{GGA}</gga></lge>",
            {"lat": 55.6, "lon": 13.0, "at": None},
        ),
    ],
)
def test_position_forms(lge: str, position: dict[str, object]) -> None:
    parsed = read_mrq(mrq(lge))
    assert parsed.position is not None
    assert parsed.position["at"] == position["at"]
    assert parsed.position["lat"] == pytest.approx(position["lat"], abs=1e-6)
    assert parsed.position["lon"] == pytest.approx(position["lon"], abs=1e-6)
    assert parsed.position_problem is None


@pytest.mark.parametrize(
    ("lge", "why"),
    [
        ("<lge><geo>91.0,18.0</geo></lge>", "latitude 91 is outside -90..90"),
        ("<lge><geo>59.3,180.5</geo></lge>", "longitude 180.5 is outside -180..180"),
        ("<lge><geo>59.3;18.0</geo></lge>", "is not 'latitude,longitude'"),
        ("<lge><geo>59.3</geo></lge>", "is not 'latitude,longitude'"),
        ("<lge><geo>NaN,18.0</geo></lge>", "is not 'latitude,longitude'"),
        ("<lge><geo>1e2,18.0</geo></lge>", "is not 'latitude,longitude'"),
        ("<lge>59.3,18.0</lge>", "neither <geo> nor <gga>"),
        ("<lge/>", "neither <geo> nor <gga>"),
        ("<lge><geo>59.3,18.0</geo><geo>1,2</geo></lge>", "<geo> more than once"),
        (
            "<lge><geo>59.3,18.0</geo></lge><lge><geo>1,2</geo></lge>",
            "<lge> appears more than once",
        ),
        (f"<lge><gga>{GGA[:-2]}00</gga></lge>", "checksum does not match"),
        ("<lge><gga>$GPRMC,011407,A,5920.07,N,01803.79,E</gga></lge>", "not an NMEA GGA"),
        ("<lge><gga>$GPGGA,011407,5920.07,N,01803.79,E,0,00,,,M,,M,,</gga></lge>", "no fix"),
        ("<lge><gga>$GPGGA,011407,5920.07,X,01803.79,E,1,04,,,M,,M,,</gga></lge>", "not NMEA"),
        ("<lge><gga>$GPGGA,011407,5960.07,N,01803.79,E,1,04,,,M,,M,,</gga></lge>", "60.07 minutes"),
        ("<lge><gga>$GPGGA,011407,9500.00,N,01803.79,E,1,04,,,M,,M,,</gga></lge>", "latitude 95"),
        (f"<lge><gga>{'$GPGGA' + ',1' * 40}</gga></lge>", "at most 82"),
    ],
)
def test_bad_positions_are_dropped_with_a_reason_and_the_alarm_kept(lge: str, why: str) -> None:
    events = alarm.decode(RawMessage("scaip/org-1/mrq", mrq(lge, stc="0010"), RECEIVED_AT))
    (event,) = events
    assert event.kind == "alarm.button"  # lge is optional: the alarm itself is never refused
    assert "position" not in event.attributes
    problem = event.attributes["position_problem"]
    assert isinstance(problem, str)
    assert why in problem
    assert problem.endswith("position dropped")


@pytest.mark.parametrize(
    ("tim", "why"),
    [
        ("2026-11-23T02:14:07", "has no UTC offset"),
        ("igår", "is not an ISO 8601 time"),
        ("2026-13-23T02:14:07+01", "is not an ISO 8601 time"),
    ],
)
def test_a_bad_fix_time_keeps_the_position_without_a_time(tim: str, why: str) -> None:
    parsed = read_mrq(mrq(f"<lge><geo>59.3,18.0</geo><tim>{tim}</tim></lge>"))
    assert parsed.position == {"lat": 59.3, "lon": 18.0, "at": None}
    assert parsed.position_problem is not None
    assert why in parsed.position_problem
    assert parsed.position_problem.endswith("position kept without a time")
