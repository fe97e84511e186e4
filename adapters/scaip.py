"""Safe parsing of SCAIP ``<mrq>`` requests and building of ``<mrs>`` replies (SS 91100).

Parsing order matters: size cap, then encoding, then defusedxml with DTDs,
entities and external references forbidden, then the tag rules. Every refusal
is a DecodeError with one of: oversized, xml_encoding, xml_dtd (a document
type declaration), xml_entities (an entity declaration: billion laughs and
kin), xml_external_entity (an entity or DTD that points outside the
document: XXE), invalid_xml, scaip_missing_tag, scaip_invalid.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from xml.etree.ElementTree import Element, ParseError
from xml.sax.saxutils import escape

# No stubs ship with defusedxml (types-defusedxml is not a dependency); the one
# call used is typed through the ``root`` annotation below.
import defusedxml  # type: ignore[import-untyped]
import defusedxml.ElementTree as SafeET  # type: ignore[import-untyped]

from core.errors import DecodeError
from core.events import Position

# SCAIP requests are a few hundred bytes; 8 KiB leaves room for long texts and
# keeps a hostile document from costing the parser anything.
MAX_SCAIP_BYTES = 8 * 1024

# The <mrq> tags kept as event attributes (as "scaip_" + tag). ver, crd and ame are
# accepted but not kept: crd is a caller URI (a phone number). lge becomes the
# structured ``position`` attribute (read_mrq).
KEPT_TAGS = (
    "ref",
    "mty",
    "cid",
    "dty",
    "did",
    "dco",
    "dte",
    "stc",
    "stt",
    "pri",
    "lco",
    "lva",
    "lte",
    "ico",
    "ite",
)
_KEPT = frozenset(KEPT_TAGS)
REQUIRED_TAGS = ("ref", "mty", "cid", "dty")
MESSAGE_TYPES = frozenset({"ME", "RE", "IN", "PI"})  # message, reset, information, heartbeat

# [0-9], not \d: \d also matches other scripts' digits.
_FORMATS: Mapping[str, tuple[re.Pattern[str], str]] = {
    "ref": (re.compile(r"[A-Za-z0-9]{1,16}"), "1–16 letters or digits"),
    # 1–64 digits: the cid becomes a device id, which is at most 64 characters.
    "cid": (re.compile(r"[0-9]{1,64}"), "digits"),
    "dty": (re.compile(r"[0-9]{4}"), "4 digits"),
    "stc": (re.compile(r"[0-9]{4}"), "4 digits"),
    "pri": (re.compile(r"[0-9]"), "one digit"),
}

# Only these declared encodings are accepted; UTF-16/32 and the rest are refused.
_CODECS = {"utf-8": "utf-8", "iso-8859-1": "latin-1"}
_DECLARED_ENCODING = re.compile(
    rb"""\A(?:\xef\xbb\xbf)?<\?xml\s[^>]*?encoding\s*=\s*["']([A-Za-z][A-Za-z0-9._-]*)["']"""
)
_WIDE_BOMS = (b"\xff\xfe", b"\xfe\xff")


def _check_encoding(payload: bytes) -> None:
    if payload.startswith(_WIDE_BOMS) or b"\x00" in payload:
        raise DecodeError("xml_encoding", "UTF-16/UTF-32 is not accepted; send UTF-8")
    match = _DECLARED_ENCODING.match(payload)
    declared = match.group(1).decode("ascii").lower() if match else "utf-8"
    codec = _CODECS.get(declared)
    if codec is None:
        raise DecodeError(
            "xml_encoding", f"declared encoding {declared!r} is not accepted; use UTF-8"
        )
    try:
        payload.decode(codec)
    except UnicodeDecodeError as exc:
        raise DecodeError("xml_encoding", f"bytes are not valid {declared}: {exc}") from exc


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


@dataclass(frozen=True, slots=True)
class Mrq:
    """A parsed <mrq>: its kept tags, and its <lge> position or why the position was dropped."""

    fields: dict[str, str]
    position: Position | None = None
    # Set when an <lge> was present but unusable (or its time was): the alarm still counts.
    position_problem: str | None = None


def parse_mrq(payload: bytes) -> dict[str, str]:
    """Parse a SCAIP <mrq> safely into its kept tags (ref, mty, cid, dty always present)."""
    return read_mrq(payload).fields


def read_mrq(payload: bytes) -> Mrq:
    """Parse a SCAIP <mrq> safely: its kept tags and its <lge> position."""
    if len(payload) > MAX_SCAIP_BYTES:
        raise DecodeError(
            "oversized",
            f"SCAIP payload of {len(payload)} bytes exceeds the {MAX_SCAIP_BYTES}-byte limit",
        )
    _check_encoding(payload)
    try:
        # Bytes, not text: expat then honours the (checked) declared encoding.
        root: Element = SafeET.fromstring(
            payload, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except defusedxml.DTDForbidden as exc:
        raise _classify_dtd(payload, exc) from exc
    except defusedxml.DefusedXmlException as exc:  # pragma: no cover - a DTD comes first
        raise DecodeError("xml_dtd", f"DTDs are refused ({type(exc).__name__})") from exc
    except ParseError as exc:
        raise DecodeError("invalid_xml", f"not well-formed XML: {exc}") from exc
    if _local(root.tag) != "mrq":
        raise DecodeError("scaip_invalid", f"root element is <{_local(root.tag)[:20]}>, not <mrq>")
    fields: dict[str, str] = {}
    lge: list[Element] = []
    for child in root:
        tag = _local(child.tag)
        if tag == "lge":
            lge.append(child)
            continue
        if tag not in _KEPT:
            continue  # ver, crd, ame and future tags
        if tag in fields:
            raise DecodeError("scaip_invalid", f"<{tag}> appears more than once")
        text = (child.text or "").strip()
        if text:
            fields[tag] = text
    for tag in REQUIRED_TAGS:
        if tag not in fields:
            raise DecodeError("scaip_missing_tag", f"mandatory <{tag}> is missing or empty")
    if fields["mty"] not in MESSAGE_TYPES:
        raise DecodeError(
            "scaip_invalid", f"<mty> {fields['mty'][:10]!r} is not one of ME, RE, IN, PI"
        )
    for tag, (pattern, wanted) in _FORMATS.items():
        value = fields.get(tag)
        if value is not None and pattern.fullmatch(value) is None:
            raise DecodeError("scaip_invalid", f"<{tag}> {value[:20]!r} is not {wanted}")
    if not lge:
        return Mrq(fields)
    if len(lge) > 1:
        return Mrq(fields, None, "<lge> appears more than once; position dropped")
    position, problem = read_lge(lge[0])
    return Mrq(fields, position, problem)


# --- The <lge> geo position -----------------------------------------------------------
#
# SS 91100 is not public. The element's layout follows the schema-derived model in
# caruhome/scaip-gateway (scaip_gateway/xml/scaip.py, class Mrq.Lge): <lge> holds
# <geo> (WGS84, pattern [0-9.,]{1,23}: "latitude,longitude" in decimal degrees),
# <tim> (the fix time, pattern [0-9-:+T]{22}, e.g. 2026-11-23T02:14:07+01) and
# <gga> (an NMEA 0183 GGA sentence, at most 81 characters), all optional. The order
# latitude-then-longitude is ISO 6709's. The schema allows no sign; one is accepted
# so a unit south or west of Greenwich is not lost. <lge> itself is optional
# (mandatory are ref, mty, cid, dty), so a bad position never refuses the alarm: the
# position is dropped and the reason kept with the event (position_problem).

_GEO = re.compile(r"\s*(-?[0-9]{1,3}(?:\.[0-9]{1,12})?)\s*,\s*(-?[0-9]{1,3}(?:\.[0-9]{1,12})?)\s*")
_GGA_MAX = 82  # NMEA sentences are at most 82 characters with $ and CR LF
# NMEA angles: latitude ddmm.mmmm, longitude dddmm.mmmm.
_NMEA_ANGLE = {
    digits: re.compile(rf"([0-9]{{{digits}}})([0-9]{{2}}(?:\.[0-9]{{1,10}})?)") for digits in (2, 3)
}


def read_lge(lge: Element) -> tuple[Position | None, str | None]:
    """Read an <lge> element: the position (or None) and, if something was unusable, why."""
    parts: dict[str, str] = {}
    for child in lge:
        tag = _local(child.tag)
        if tag in ("geo", "tim", "gga"):
            if tag in parts:
                return None, f"<lge> has <{tag}> more than once; position dropped"
            parts[tag] = (child.text or "").strip()
    try:
        if parts.get("geo"):
            lat, lon = _geo(parts["geo"])
        elif parts.get("gga"):
            lat, lon = _gga(parts["gga"])
        else:
            return None, "<lge> has neither <geo> nor <gga>; position dropped"
    except ValueError as exc:
        return None, f"{exc}; position dropped"
    tim = parts.get("tim")
    if not tim:
        return Position(lat=lat, lon=lon, at=None), None
    try:
        at = _fix_time(tim)
    except ValueError as exc:
        return Position(lat=lat, lon=lon, at=None), f"{exc}; position kept without a time"
    return Position(lat=lat, lon=lon, at=at), None


def _in_range(lat: float, lon: float) -> tuple[float, float]:
    if not (math.isfinite(lat) and -90.0 <= lat <= 90.0):
        raise ValueError(f"latitude {lat:g} is outside -90..90")
    if not (math.isfinite(lon) and -180.0 <= lon <= 180.0):
        raise ValueError(f"longitude {lon:g} is outside -180..180")
    return lat, lon


def _geo(text: str) -> tuple[float, float]:
    match = _GEO.fullmatch(text)
    if match is None:
        raise ValueError(f"<geo> {text[:30]!r} is not 'latitude,longitude' in decimal degrees")
    return _in_range(float(match.group(1)), float(match.group(2)))


def _gga(text: str) -> tuple[float, float]:
    """Latitude and longitude from an NMEA GGA sentence ($--GGA,time,lat,N,lon,E,quality,...)."""
    if len(text) > _GGA_MAX:
        raise ValueError(f"<gga> is {len(text)} characters; an NMEA sentence is at most 82")
    body, star, checksum = text.removeprefix("$").partition("*")
    if star:
        computed = 0
        for char in body:
            computed ^= ord(char)
        if checksum[:2].upper() != f"{computed:02X}":
            raise ValueError("<gga> checksum does not match")
    fields = body.split(",")
    if len(fields) < 7 or not fields[0].endswith("GGA"):
        raise ValueError(f"<gga> {text[:30]!r} is not an NMEA GGA sentence")
    if fields[6] in ("", "0"):
        raise ValueError("<gga> says there is no fix (quality 0)")
    lat = _nmea_angle(fields[2], fields[3], "NS", 2)
    lon = _nmea_angle(fields[4], fields[5], "EW", 3)
    return _in_range(lat, lon)


def _nmea_angle(value: str, hemisphere: str, sides: str, degree_digits: int) -> float:
    match = _NMEA_ANGLE[degree_digits].fullmatch(value)
    if match is None or hemisphere not in tuple(sides):
        raise ValueError(f"<gga> angle {value[:14]!r} {hemisphere[:2]!r} is not NMEA (d)ddmm.mmmm")
    minutes = float(match.group(2))
    if minutes >= 60:
        raise ValueError(f"<gga> angle {value[:14]!r} has {minutes:g} minutes")
    angle = int(match.group(1)) + minutes / 60
    return -angle if hemisphere == sides[1] else angle


def _fix_time(text: str) -> str:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"<tim> {text[:30]!r} is not an ISO 8601 time") from None
    if at.tzinfo is None:
        raise ValueError(f"<tim> {text[:30]!r} has no UTC offset")
    return at.astimezone(UTC).isoformat()


def _classify_dtd(payload: bytes, dtd: defusedxml.DTDForbidden) -> DecodeError:
    """Name what a document with a DTD tried: external entity, entity expansion, or just a DTD.

    The document is parsed once more with the DTD allowed but entities and external
    references still forbidden: defusedxml stops at the first declaration, so
    nothing is ever expanded or fetched.
    """
    if dtd.sysid is not None or dtd.pubid is not None:
        return DecodeError(
            "xml_external_entity",
            "a DTD that points outside the document (XXE) is refused; DTDs are not accepted",
        )
    try:
        SafeET.fromstring(payload, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except defusedxml.ExternalReferenceForbidden:
        return DecodeError(
            "xml_external_entity", "an external reference (XXE) is refused; DTDs are not accepted"
        )
    except defusedxml.EntitiesForbidden as exc:
        if exc.sysid is not None or exc.pubid is not None:
            return DecodeError(
                "xml_external_entity",
                f"external entity {str(exc.name)[:40]!r} (XXE) is refused; DTDs are not accepted",
            )
        return DecodeError(
            "xml_entities",
            f"entity declaration {str(exc.name)[:40]!r} is refused (entity expansion, "
            "'billion laughs'); DTDs are not accepted",
        )
    except (defusedxml.DefusedXmlException, ParseError):
        pass
    return DecodeError("xml_dtd", "a document type declaration (DTD) is refused")


class ReplyStatus(IntEnum):
    """The <snu> status numbers of a SCAIP <mrs> reply."""

    OK = 0
    TOO_LONG = 1
    INVALID_FORMAT = 2
    WRONG_DATA = 3  # wrong data content
    HOLD = 4
    NOT_TREATED = 5
    BUSY = 6
    MANDATORY_TAG_MISSING = 7


# Which <snu> a bridge should answer for each decode refusal.
_REPLY_FOR_REASON: Mapping[str, ReplyStatus] = {
    "oversized": ReplyStatus.TOO_LONG,
    "xml_encoding": ReplyStatus.INVALID_FORMAT,
    "xml_dtd": ReplyStatus.INVALID_FORMAT,
    "xml_entities": ReplyStatus.INVALID_FORMAT,
    "xml_external_entity": ReplyStatus.INVALID_FORMAT,
    "invalid_xml": ReplyStatus.INVALID_FORMAT,
    "scaip_invalid": ReplyStatus.INVALID_FORMAT,
    "scaip_missing_tag": ReplyStatus.MANDATORY_TAG_MISSING,
}


def reply_status_for(reason: str) -> ReplyStatus:
    """Pick the <snu> for a DecodeError reason (anything not about format: wrong data)."""
    return _REPLY_FOR_REASON.get(reason, ReplyStatus.WRONG_DATA)


# Characters XML 1.0 cannot carry at all, even escaped.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def scaip_reply(ref: str, snu: int, ste: str | None = None, hbi: int | None = None) -> bytes:
    """Build the UTF-8 <mrs> reply echoing ``ref`` with status ``snu``, text ``ste``, ``hbi``.

    ``hbi`` is the heartbeat interval the unit should keep, in seconds: the
    standard's interval codes are not public (DOMAIN.md), seconds are what the
    registry holds.
    """
    if _FORMATS["ref"][0].fullmatch(ref) is None:
        raise ValueError(f"ref {ref[:20]!r} is not 1–16 letters or digits")
    if not isinstance(snu, int) or isinstance(snu, bool) or not 0 <= snu <= 7:
        raise ValueError(f"snu {snu!r} is not a SCAIP status number 0–7")
    parts = [f"<ref>{ref}</ref><snu>{int(snu)}</snu>"]
    if ste is not None:
        if _XML_ILLEGAL.search(ste):
            raise ValueError("ste contains characters XML cannot carry")
        parts.append(f"<ste>{escape(ste)}</ste>")
    if hbi is not None:
        if isinstance(hbi, bool) or not 0 < hbi <= 86_400:
            raise ValueError(f"hbi {hbi!r} is not a heartbeat interval of 1–86400 s")
        parts.append(f"<hbi>{int(hbi)}</hbi>")
    body = "".join(parts)
    return f'<?xml version="1.0" encoding="UTF-8"?><mrs>{body}</mrs>'.encode()
