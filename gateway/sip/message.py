"""SIP messages (RFC 3261 §7): parse what arrives, build the responses and requests we send.

Only what a MESSAGE receiver needs: the start line, headers (compact forms
expanded, folded lines joined), a body framed by Content-Length, and the Via
parameters that identify a transaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

SIP_VERSION = "SIP/2.0"
# RFC 3261 §20: the one-letter forms a unit may use.
_COMPACT = {
    "i": "call-id",
    "f": "from",
    "t": "to",
    "v": "via",
    "c": "content-type",
    "l": "content-length",
    "m": "contact",
    "k": "supported",
    "s": "subject",
    "e": "content-encoding",
}
# How headers are spelled in what we send.
_CANONICAL = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
}
_TOKEN = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+")
_STATUS = re.compile(r"SIP/2\.0 ([1-6][0-9]{2}) ?(.*)")
_CSEQ = re.compile(r"([0-9]{1,10})\s+([A-Za-z0-9.!%*_+`'~-]+)")
# The headers without which no transaction exists (RFC 3261 §8.1.1).
REQUIRED = ("via", "from", "to", "call-id", "cseq")
# Reason phrases of the responses this receiver sends.
REASONS = {
    100: "Trying",
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    405: "Method Not Allowed",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    500: "Server Internal Error",
    503: "Service Unavailable",
}


class SipError(Exception):
    """A message is not valid SIP; ``partial`` holds what could be read, to answer 400."""

    def __init__(self, detail: str, partial: SipMessage | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.partial = partial


@dataclass(frozen=True, slots=True)
class SipMessage:
    """A parsed request (``method`` set) or response (``status`` set)."""

    method: str  # "" for a response
    uri: str  # request URI, or the reason phrase of a response
    status: int  # 0 for a request
    headers: tuple[tuple[str, str], ...]  # (lower-case full name, value), in order
    body: bytes

    def get(self, name: str) -> str | None:
        """The first value of a header (full lower-case name), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def all(self, name: str) -> list[str]:
        """Every line of a header, in order."""
        return [value for key, value in self.headers if key == name]

    @property
    def cseq(self) -> tuple[int, str]:
        """The CSeq number and method (checked at parse time)."""
        match = _CSEQ.fullmatch(self.get("cseq") or "")
        assert match is not None
        return int(match.group(1)), match.group(2).upper()

    @property
    def top_via(self) -> str:
        """The first Via value: the hop that sent this message."""
        first = self.get("via") or ""
        # Almost every unit sends one Via per line: only a comma needs the careful split.
        return split_commas(first)[0] if "," in first else first.strip()

    @property
    def branch(self) -> str:
        """The top Via's branch parameter ("" when it has none)."""
        return param(self.top_via, "branch")

    @property
    def content_type(self) -> str:
        """The media type without parameters, lower case ("" when absent)."""
        return (self.get("content-type") or "").split(";", 1)[0].strip().lower()


def split_commas(value: str) -> list[str]:
    """Split a header value at commas outside quotes and angle brackets."""
    parts: list[str] = []
    depth, quoted, start = 0, False, 0
    for i, ch in enumerate(value):
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "<":
            depth += 1
        elif not quoted and ch == ">":
            depth -= 1
        elif ch == "," and not quoted and depth == 0:
            parts.append(value[start:i].strip())
            start = i + 1
    parts.append(value[start:].strip())
    return parts


def param(value: str, name: str) -> str:
    """A ``;name=value`` parameter of a header value outside its <URI> ("" when absent)."""
    tail = value.rsplit(">", 1)[-1]
    for part in tail.split(";")[1:]:
        key, _, found = part.partition("=")
        if key.strip().lower() == name:
            return found.strip().strip('"')
    return ""


def uri_of(value: str) -> str:
    """The URI of a From, To or Contact value (inside <...> when it has them)."""
    if "<" in value and ">" in value:
        return value[value.index("<") + 1 : value.index(">")]
    return value.split(";", 1)[0].strip()


def user_of(uri: str) -> str:
    """The user part of a sip:/sips: URI ("" when it has none)."""
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    return rest.split("@", 1)[0] if "@" in rest else ""


def parse(data: bytes, *, stream: bool = False) -> SipMessage:
    """Parse one SIP message; SipError says what is wrong.

    Over a stream (TCP/TLS) Content-Length is mandatory and already framed
    the message; over UDP a missing one means the rest of the datagram.
    """
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        raise SipError("no empty line ends the headers")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipError(f"headers are not UTF-8: {exc}") from exc
    lines = text.split("\r\n")
    start, header_lines = lines[0], lines[1:]
    headers: list[tuple[str, str]] = []
    problem = ""
    for line in header_lines:
        if line[:1] in (" ", "\t") and headers:  # folded continuation
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        name = name.strip().lower()
        if not colon or _TOKEN.fullmatch(name) is None:
            problem = problem or f"header line {line[:40]!r} is not 'Name: value'"
            continue
        headers.append((_COMPACT.get(name, name), value.strip()))
    method, uri, status = _start_line(start)
    message = SipMessage(method, uri, status, tuple(headers), b"")
    if problem:
        raise SipError(problem, message)
    for name in REQUIRED:
        if message.get(name) is None:
            raise SipError(f"the {name} header is missing", message)
    cseq = _CSEQ.fullmatch(message.get("cseq") or "")
    if cseq is None:
        raise SipError("CSeq is not 'number METHOD'", message)
    if method and cseq.group(2).upper() != method:
        raise SipError(f"CSeq method {cseq.group(2)!r} is not the request's {method}", message)
    length_text = message.get("content-length")
    if length_text is None:
        if stream:
            raise SipError("Content-Length is required over TCP and TLS", message)
        length = len(rest)
    elif not length_text.isdigit():
        raise SipError(f"Content-Length {length_text[:20]!r} is not a number", message)
    else:
        length = int(length_text)
    if length > len(rest):
        raise SipError(
            f"Content-Length {length} exceeds the {len(rest)} body bytes received", message
        )
    return SipMessage(method, uri, status, tuple(headers), rest[:length])


def _start_line(line: str) -> tuple[str, str, int]:
    status = _STATUS.fullmatch(line)
    if status is not None:
        return "", status.group(2), int(status.group(1))
    parts = line.split(" ")
    if len(parts) != 3 or parts[2] != SIP_VERSION or _TOKEN.fullmatch(parts[0]) is None:
        raise SipError(f"start line {line[:60]!r} is not 'METHOD URI SIP/2.0'")
    if ":" not in parts[1]:
        raise SipError(f"request URI {parts[1][:60]!r} has no scheme")
    return parts[0].upper(), parts[1], 0


def _render(start: str, headers: Iterable[tuple[str, str]], body: bytes) -> bytes:
    lines = [start]
    for name, value in headers:
        lines.append(f"{_CANONICAL.get(name, name.title())}: {value}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def response(
    request: SipMessage,
    status: int,
    *,
    to_tag: str,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    reason: str | None = None,
) -> bytes:
    """A response to ``request`` (RFC 3261 §8.2.6): its Via, From, To, Call-ID, CSeq copied."""
    copied: list[tuple[str, str]] = [("via", v) for v in request.all("via")]
    for name in ("from", "to", "call-id", "cseq"):
        value = request.get(name)
        if value is not None:
            if name == "to" and not param(value, "tag"):
                value = f"{value};tag={to_tag}"
            copied.append((name, value))
    phrase = reason or REASONS.get(status, "")
    # A reason phrase is one line of text: whatever we were told goes in without CR/LF.
    phrase = phrase.replace("\r", " ").replace("\n", " ")
    return _render(f"{SIP_VERSION} {status} {phrase}", [*copied, *headers], body)


def request(method: str, uri: str, headers: Sequence[tuple[str, str]], body: bytes = b"") -> bytes:
    """A request of our own (the separate <mrs> MESSAGE)."""
    return _render(f"{method} {uri} {SIP_VERSION}", headers, body)
