"""A small SIP client for the tests that need exact accounting: one alarm unit's side."""

from __future__ import annotations

import re
import socket
import ssl
import uuid
from collections.abc import Sequence
from typing import Any

from gateway.sip.message import SipError, SipMessage, parse

SCAIP = "application/scaip+xml"


def mrq(ref: str, cid: str, *, mty: str = "ME", dty: str = "0003", more: str = "") -> bytes:
    """A SCAIP <mrq> document."""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><mrq><ref>{ref}</ref><mty>{mty}</mty>'
        f"<cid>{cid}</cid><dty>{dty}</dty>{more}</mrq>"
    ).encode()


def request(
    body: bytes,
    *,
    port: int,
    local_port: int,
    cid: str = "46700000001",
    method: str = "MESSAGE",
    content_type: str = SCAIP,
    call_id: str | None = None,
    cseq: int = 1,
    branch: str | None = None,
    transport: str = "UDP",
    headers: Sequence[str] = (),
) -> bytes:
    """A SIP request from a unit at 127.0.0.1:``local_port`` to the receiver on ``port``."""
    lines = [
        f"{method} sip:scaip@127.0.0.1:{port} SIP/2.0",
        f"Via: SIP/2.0/{transport} 127.0.0.1:{local_port};branch="
        f"{branch or 'z9hG4bK' + uuid.uuid4().hex[:12]}",
        f"From: <sip:{cid}@127.0.0.1:{local_port}>;tag={uuid.uuid4().hex[:8]}",
        f"To: <sip:scaip@127.0.0.1:{port}>",
        f"Call-ID: {call_id or uuid.uuid4().hex}@127.0.0.1",
        f"CSeq: {cseq} {method}",
        "Max-Forwards: 70",
        f"Content-Type: {content_type}",
        *headers,
        f"Content-Length: {len(body)}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class UdpUnit:
    """A unit on its own UDP socket."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.local_port = int(self.sock.getsockname()[1])

    def message(self, body: bytes, **fields: Any) -> bytes:
        """A request from this unit (``fields`` as for ``request``)."""
        return request(body, port=self.port, local_port=self.local_port, **fields)

    def ask(self, data: bytes, *, timeout: float = 20.0) -> SipMessage | None:
        """Send and return its response (retransmitting from 500 ms, RFC 3261 timer E).

        Responses to earlier requests (answers to their retransmissions) are skipped.
        """
        branch = re.search(rb"branch=([^;\r]+)", data)
        assert branch is not None
        interval, waited = 0.5, 0.0
        while waited < timeout:
            self.sock.sendto(data, ("127.0.0.1", self.port))
            self.sock.settimeout(interval)
            try:
                answer, _ = self.sock.recvfrom(65_535)
            except TimeoutError:
                waited += interval
                interval = min(interval * 2, 4.0)
                continue
            try:
                message = parse(answer)
            except SipError as exc:  # a 400 to a request without Call-ID lacks one too
                if exc.partial is None:
                    raise
                message = exc.partial
            if message.branch == branch.group(1).decode():
                return message
        return None

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


def ask_stream(data: bytes, port: int, *, tls: ssl.SSLContext | None = None) -> SipMessage:
    """Send one request over TCP (or TLS) and read its response."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
        if tls is None:
            return _read_response(raw, data)
        with tls.wrap_socket(raw, server_hostname="localhost") as secure:
            return _read_response(secure, data)


def _read_response(sock: socket.socket, data: bytes) -> SipMessage:
    sock.sendall(data)
    received = b""
    while chunk := sock.recv(65_535):
        received += chunk
        try:
            return parse(received, stream=True)
        except SipError:
            continue  # not all of it yet
    raise AssertionError(f"no complete response over the stream: {received[:200]!r}")
