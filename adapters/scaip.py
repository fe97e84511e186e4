"""Safe parsing of SCAIP ``<mrq>`` requests and building of ``<mrs>`` replies (SS 91100).

Parsing order matters: size cap, then encoding, then defusedxml with DTDs,
entities and external references forbidden, then the tag rules. Every refusal
is a DecodeError with one of: oversized, xml_encoding, xml_dtd (a document
type declaration), xml_entities (an entity declaration: billion laughs and
kin), xml_external_entity (an entity or DTD that points outside the
document: XXE), invalid_xml, scaip_missing_tag, scaip_invalid.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import IntEnum
from xml.etree.ElementTree import Element, ParseError
from xml.sax.saxutils import escape

# No stubs ship with defusedxml (types-defusedxml is not a dependency); the one
# call used is typed through the ``root`` annotation below.
import defusedxml  # type: ignore[import-untyped]
import defusedxml.ElementTree as SafeET  # type: ignore[import-untyped]

from core.errors import DecodeError

# SCAIP requests are a few hundred bytes; 8 KiB leaves room for long texts and
# keeps a hostile document from costing the parser anything.
MAX_SCAIP_BYTES = 8 * 1024

# The <mrq> tags kept as event attributes (as "scaip_" + tag). ver, crd, lge and
# ame are accepted but not kept: crd is a caller URI (a phone number).
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


def parse_mrq(payload: bytes) -> dict[str, str]:
    """Parse a SCAIP <mrq> safely into its kept tags (ref, mty, cid, dty always present)."""
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
    for child in root:
        tag = _local(child.tag)
        if tag not in _KEPT:
            continue  # ver, crd, lge, ame and future tags
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
    return fields


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
