"""A small SIP user agent client that sends SCAIP requests as MESSAGE and collects the replies.

Only what an alarm unit needs (RFC 3261, RFC 3428): MESSAGE requests, each its own
non-INVITE client transaction (§17.1.2). Over UDP a request is retransmitted from
T1 = 500 ms, doubling up to T2 = 4 s (and at T2 once a provisional response came),
until a final response arrives or Timer F (64·T1 = 32 s) gives up. Over TCP nothing is
retransmitted; Timer F still bounds the wait. The SCAIP ``<mrs>`` reply is read from
the body of the 200 OK or, where the receiver sends it separately, from a MESSAGE it
sends back (matched by ``ref``), which this client answers with 200 OK.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit
from xml.etree.ElementTree import Element, ParseError

# No stubs ship with defusedxml; the one call used is typed through its annotation.
import defusedxml.ElementTree as SafeET  # type: ignore[import-untyped]

from core.errors import GatewayError

T1_S = 0.5
T2_S = 4.0
TIMER_F_S = 64 * T1_S  # 32 s
SCAIP_CONTENT_TYPE = "application/scaip+xml"
DEFAULT_PORT = 5060
# Outstanding transactions at most; sending waits beyond this, as a unit would queue.
MAX_IN_FLIGHT = 4_000
_MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 §8.1.1.7: branches start with it
_COMPACT = {"v": "via", "i": "call-id", "l": "content-length", "c": "content-type", "f": "from",
            "t": "to", "m": "contact"}  # fmt: skip
_REF = re.compile(rb"<ref>\s*([A-Za-z0-9]{1,16})\s*</ref>")
_CID = re.compile(rb"<cid>\s*([0-9]{1,64})\s*</cid>")
_BRANCH = re.compile(r";\s*branch=([^;,\s]+)", re.IGNORECASE)


class SipError(GatewayError):
    """The SIP target is malformed or could not be reached."""


@dataclass(frozen=True, slots=True)
class SipTarget:
    """Where the SCAIP receiver listens, parsed from udp://host[:port] or tcp://host[:port]."""

    transport: str  # "udp" or "tcp"
    host: str
    port: int


def parse_sip_target(url: str) -> SipTarget:
    """Parse a receiver URL (udp or tcp scheme; port 5060 unless given)."""
    parts = urlsplit(url)
    if parts.scheme not in ("udp", "tcp") or not parts.hostname:
        raise ValueError(f"SIP target {url!r} is not udp://host[:port] or tcp://host[:port]")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as exc:
        raise ValueError(f"SIP target {url!r} has an invalid port (udp://host:port)") from exc
    return SipTarget(parts.scheme, parts.hostname, port)


@dataclass(frozen=True, slots=True)
class SipMessage:
    """One parsed SIP message: a request (method set) or a response (status set)."""

    start: str
    headers: dict[str, list[str]]  # lower-case full names → values in order
    body: bytes

    @property
    def method(self) -> str | None:
        """The request method, or None for a response."""
        return None if self.start.startswith("SIP/") else self.start.split(" ", 1)[0]

    @property
    def status(self) -> int | None:
        """The response status code, or None for a request."""
        if not self.start.startswith("SIP/2.0 "):
            return None
        code = self.start[8:11]
        return int(code) if code.isdigit() else None

    def header(self, name: str) -> str | None:
        """The first value of a header, or None."""
        values = self.headers.get(name)
        return values[0] if values else None


def parse_message(data: bytes) -> SipMessage | None:
    """Parse one SIP message (None if it is not one); the body is cut at Content-Length."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.decode("utf-8", "replace").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            return None
        key = name.strip().lower()
        headers.setdefault(_COMPACT.get(key, key), []).append(value.strip())
    length = headers.get("content-length")
    if length and length[0].isdigit():
        body = body[: int(length[0])]
    return SipMessage(lines[0], headers, body)


def read_mrs(body: bytes) -> tuple[str, int] | None:
    """The (ref, snu) of a SCAIP <mrs> reply, or None if the body is not one."""
    try:
        root: Element = SafeET.fromstring(body, forbid_dtd=True)
    except (ParseError, ValueError):
        return None
    if root.tag.rpartition("}")[2] != "mrs":
        return None
    ref = (root.findtext("ref") or "").strip()
    snu = (root.findtext("snu") or "").strip()
    return (ref, int(snu)) if ref and snu.isdigit() else None


@dataclass(frozen=True, slots=True)
class SipOutcome:
    """How one MESSAGE ended: its final response, its <mrs>, and how long that took."""

    status: int | None  # final response code; None when Timer F fired first
    snu: int | None  # the <mrs> status number; None when no reply came
    latency_s: float  # first transmission → the reply (or the final response)
    retransmissions: int


@dataclass
class SipReport:
    """What a SIP sending run achieved."""

    sent: int = 0
    answered: int = 0  # final 2xx responses
    replied: int = 0  # <mrs> replies received
    accepted: int = 0  # <mrs> with snu 0
    failed: int = 0  # non-2xx final responses, or Timer F with no answer
    retransmissions: int = 0
    latencies_s: list[float] = field(default_factory=list)

    def add(self, outcome: SipOutcome) -> None:
        """Count one finished transaction."""
        ok = outcome.status is not None and 200 <= outcome.status < 300
        self.answered += ok
        self.failed += not ok
        self.replied += outcome.snu is not None
        self.accepted += outcome.snu == 0
        self.retransmissions += outcome.retransmissions
        self.latencies_s.append(outcome.latency_s)

    def summary(self) -> str:
        """One line: what the receiver answered and how fast."""
        return (
            f"{self.sent} MESSAGE, {self.answered} answered 2xx, {self.replied} <mrs> "
            f"({self.accepted} snu 0), {self.failed} failed, {self.retransmissions} "
            f"retransmissions, reply p50 {self.percentile_ms(0.5):.1f} ms "
            f"p99 {self.percentile_ms(0.99):.1f} ms"
        )

    def percentile_ms(self, fraction: float) -> float:
        """The reply latency at ``fraction`` (0.5, 0.99) in milliseconds; 0 with nothing sent."""
        if not self.latencies_s:
            return 0.0
        ordered = sorted(self.latencies_s)
        return 1000 * ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass(eq=False)  # compared by identity: each is one transaction
class _Transaction:
    request: bytes
    ref: str | None
    started: float
    done: asyncio.Future[SipOutcome]
    status: int | None = None
    provisional: bool = False
    retransmissions: int = 0


class SipClient:
    """One UDP socket or TCP connection to the receiver, any number of transactions on it."""

    def __init__(self, target: SipTarget, *, reply_timeout_s: float = TIMER_F_S) -> None:
        self.target = target
        self._reply_timeout_s = reply_timeout_s
        self._pending: dict[str, _Transaction] = {}  # by Via branch
        # Waiting for a separate <mrs>, by ref; oldest first, should a ref be sent twice.
        self._by_ref: dict[str, list[_Transaction]] = {}
        self._early: dict[str, int] = {}  # <mrs> that came before the 200 OK
        self._send: Callable[[bytes], None] = lambda data: None
        self._closers: list[Callable[[], object]] = []
        self._reader: asyncio.Task[None] | None = None  # TCP: reads the connection
        self._local = ("127.0.0.1", 0)
        self._tag = uuid.uuid4().hex[:10]
        self._seq = 0

    async def open(self) -> None:
        """Open the socket (UDP) or connect (TCP)."""
        loop = asyncio.get_running_loop()
        host, port = self.target.host, self.target.port
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            remote = (str(infos[0][4][0]), int(infos[0][4][1]))
            if self.target.transport == "udp":
                await self._open_udp(loop, remote)
            else:
                await self._open_tcp(remote)
        except OSError as exc:
            raise SipError(f"cannot reach the SIP receiver at {host}:{port}: {exc}") from exc

    async def _open_udp(self, loop: asyncio.AbstractEventLoop, remote: tuple[str, int]) -> None:
        client = self

        class Protocol(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                client._received(data, lambda reply: transport.sendto(reply, addr))

        # Not connected to the receiver: a reply MESSAGE may come from another port.
        family = socket.AF_INET6 if ":" in remote[0] else socket.AF_INET
        transport, _ = await loop.create_datagram_endpoint(Protocol, family=family)
        self._local = _local_address(remote, transport.get_extra_info("sockname")[1])
        self._send = lambda data: transport.sendto(data, remote)
        self._closers.append(transport.close)

    async def _open_tcp(self, remote: tuple[str, int]) -> None:
        reader, writer = await asyncio.open_connection(*remote)
        self._local = writer.get_extra_info("sockname")[:2]
        self._send = writer.write
        self._reader = asyncio.create_task(self._read_stream(reader, writer))
        self._closers.append(writer.close)

    async def _read_stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        # Stream framing (RFC 3261 §18.3): headers up to the blank line, then Content-Length.
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                parsed = parse_message(head)
                length = parsed.header("content-length") if parsed else None
                body = await reader.readexactly(int(length)) if length and length.isdigit() else b""
                self._received(head + body, writer.write)

    async def aclose(self) -> None:
        """Close the socket or connection; unfinished transactions are left to their callers."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        for closer in self._closers:
            closer()

    async def send(self, body: bytes) -> SipOutcome:
        """Send one SCAIP request as MESSAGE and wait for its final response and <mrs>."""
        loop = asyncio.get_running_loop()
        self._seq += 1
        branch = f"{_MAGIC_COOKIE}{uuid.uuid4().hex[:16]}"
        cid = _CID.search(body)
        # The unit's SIP user is its controller id, as alarm units register.
        request = self._request(
            body, cid=cid.group(1).decode() if cid else "unknown", branch=branch
        )
        match = _REF.search(body)
        ref = match.group(1).decode() if match else None
        tx = _Transaction(request, ref, time.monotonic(), loop.create_future())
        self._pending[branch] = tx
        self._send(request)
        retransmit = (
            asyncio.create_task(self._retransmit(tx)) if self.target.transport == "udp" else None
        )
        try:
            return await asyncio.wait_for(asyncio.shield(tx.done), self._reply_timeout_s)
        except TimeoutError:
            # Timer F (or no <mrs> in time): what we have is all there is.
            return SipOutcome(tx.status, None, time.monotonic() - tx.started, tx.retransmissions)
        finally:
            if retransmit is not None:
                retransmit.cancel()
            self._pending.pop(branch, None)
            waiting = self._by_ref.get(ref or "", [])
            if tx in waiting:
                waiting.remove(tx)
                if not waiting:
                    del self._by_ref[ref or ""]

    async def _retransmit(self, tx: _Transaction) -> None:
        interval = T1_S
        while tx.status is None:  # Timer E, until a final response
            await asyncio.sleep(interval)
            if tx.status is not None:
                return
            self._send(tx.request)
            tx.retransmissions += 1
            interval = T2_S if tx.provisional else min(2 * interval, T2_S)

    def _request(self, body: bytes, *, cid: str, branch: str) -> bytes:
        host, port = self._local
        where = f"[{host}]" if ":" in host else host
        target = self.target
        head = (
            f"MESSAGE sip:scaip@{target.host}:{target.port} SIP/2.0\r\n"
            f"Via: SIP/2.0/{target.transport.upper()} {where}:{port};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:{cid}@{where}>;tag={self._tag}\r\n"
            f"To: <sip:scaip@{target.host}>\r\n"
            f"Call-ID: {uuid.uuid4().hex}@{where}\r\n"
            f"CSeq: {self._seq} MESSAGE\r\n"
            f"Contact: <sip:{cid}@{where}:{port};transport={target.transport}>\r\n"
            f"Content-Type: {SCAIP_CONTENT_TYPE}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    def _received(self, data: bytes, reply: Callable[[bytes], None]) -> None:
        message = parse_message(data)
        if message is None:
            return
        if message.method is not None:
            self._on_request(message, reply)
            return
        via = message.header("via") or ""
        found = _BRANCH.search(via)
        tx = self._pending.get(found.group(1)) if found else None
        status = message.status
        if tx is None or status is None or tx.status is not None:
            return  # a stray or repeated response: the transaction has it already
        if status < 200:
            tx.provisional = True
            return
        tx.status = status
        mrs = read_mrs(message.body) if message.body else None
        if mrs is not None:
            self._finish(tx, mrs[1])
        elif status >= 300 or tx.ref is None:
            self._finish(tx, None)
        elif tx.ref in self._early:
            self._finish(tx, self._early.pop(tx.ref))
        else:
            self._by_ref.setdefault(tx.ref, []).append(tx)  # the <mrs> comes on its own

    def _on_request(self, message: SipMessage, reply: Callable[[bytes], None]) -> None:
        # The receiver's own MESSAGE carrying the <mrs>: answer 200 OK (405 for the rest).
        ok = message.method == "MESSAGE"
        reply(_response(message, 200 if ok else 405, "OK" if ok else "Method Not Allowed"))
        mrs = read_mrs(message.body) if ok else None
        if mrs is None:
            return
        ref, snu = mrs
        waiting = self._by_ref.get(ref)
        if waiting:
            self._finish(waiting.pop(0), snu)
            if not waiting:
                del self._by_ref[ref]
        elif any(t.ref == ref and t.status is None for t in self._pending.values()):
            self._early[ref] = snu

    @staticmethod
    def _finish(tx: _Transaction, snu: int | None) -> None:
        if not tx.done.done():
            latency = time.monotonic() - tx.started
            tx.done.set_result(SipOutcome(tx.status, snu, latency, tx.retransmissions))


def _local_address(remote: tuple[str, int], port: int) -> tuple[str, int]:
    """The local address the receiver sees us from (a connected probe socket names it)."""
    family = socket.AF_INET6 if ":" in remote[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect(remote)
        return probe.getsockname()[0], port


def _response(request: SipMessage, code: int, reason: str) -> bytes:
    """A response to ``request`` (RFC 3261 §8.2.6): its Via, From, To (tagged), Call-ID, CSeq."""
    lines = [f"SIP/2.0 {code} {reason}"]
    lines += [f"Via: {via}" for via in request.headers.get("via", [])]
    to = request.header("to") or ""
    if ";tag=" not in to:
        to += f";tag={uuid.uuid4().hex[:10]}"
    lines += [f"From: {request.header('from') or ''}", f"To: {to}"]
    lines += [
        f"Call-ID: {request.header('call-id') or ''}",
        f"CSeq: {request.header('cseq') or ''}",
    ]
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class SipSession:
    """A SipClient on a thread of its own, fed from synchronous code (the simulator's publisher)."""

    def __init__(self, url: str, *, max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self.target = parse_sip_target(url)
        self.report = SipReport()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="wgw-sim-sip")
        self._client = SipClient(self.target)
        self._max_in_flight = max_in_flight
        self._cond = threading.Condition()
        self._open = 0  # transactions started and not yet ended

    def open(self) -> None:
        """Start the thread and open the client's socket or connection."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._client.open(), self._loop).result()

    def send(self, body: bytes) -> None:
        """Start one MESSAGE, first waiting while the window of open transactions is full."""
        with self._cond:
            while self._open >= self._max_in_flight:
                self._cond.wait()
            self._open += 1
            self.report.sent += 1
        future = asyncio.run_coroutine_threadsafe(self._client.send(body), self._loop)
        future.add_done_callback(self._done)

    def _done(self, future: concurrent.futures.Future[SipOutcome]) -> None:
        outcome = future.result()
        with self._cond:
            self.report.add(outcome)
            self._open -= 1
            self._cond.notify_all()

    def drain(self, timeout_s: float | None = None) -> bool:
        """Wait until every transaction has ended (by Timer F at the latest); False on timeout."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while self._open:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def close(self) -> None:
        """Close the client and stop the thread."""
        asyncio.run_coroutine_threadsafe(self._client.aclose(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
