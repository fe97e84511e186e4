"""SIP transports on asyncio: UDP datagrams, and TCP/TLS streams framed by Content-Length."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import re
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

log = logging.getLogger(__name__)

_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*([0-9]+)[ \t]*\r?$", re.I | re.M)
# A stream peer idle this long is dropped (units keep connections up with CRLF pings).
_IDLE_S = 600.0


@dataclass(frozen=True, slots=True)
class Peer:
    """Where a message came from and how to answer it on the same path."""

    transport: str  # "UDP", "TCP" or "TLS": as in a Via header
    host: str
    port: int
    local: tuple[str, int]  # our address on this path, for the Via of our own requests
    send: Callable[[bytes], None]


# (the message's bytes, where from, whether it was too large to be read whole) → the
# work still to do for it, or None when it was answered (or dropped) at once.
Handler = Callable[[bytes, Peer, bool], Awaitable[None] | None]


# How many free UDP ports port 0 tries before one's TCP twin is free too.
_PORT_PICKS = 20


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(
        self, handle: Handler, spawn: Callable[[Awaitable[None]], None], max_bytes: int
    ) -> None:
        self._handle = handle
        self._max_bytes = max_bytes
        self._spawn = spawn
        self._transport: asyncio.DatagramTransport | None = None
        self._local: tuple[str, int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        transport = self._transport
        assert transport is not None
        host, port = str(addr[0]), int(addr[1])
        if self._local is None:  # asked once: it does not change while the socket lives
            local = transport.get_extra_info("sockname")
            self._local = (str(local[0]), int(local[1]))
        peer = Peer("UDP", host, port, self._local, lambda out: transport.sendto(out, addr))
        work = self._handle(data[: self._max_bytes], peer, len(data) > self._max_bytes)
        if work is not None:
            self._spawn(work)

    def error_received(self, exc: Exception) -> None:
        # An ICMP "port unreachable" for an answer: the unit went away; nothing to do.
        log.debug("SIP over UDP: %s", exc)


def udp_socket(
    family: socket.AddressFamily, host: str, port: int, buffer_bytes: int
) -> socket.socket:
    """A bound, non-blocking UDP socket with receive and send buffers of ``buffer_bytes``.

    A burst that arrives while the receiver waits for an fsync queues in the
    kernel; with the default buffer (~208 KiB) the kernel drops it instead and
    the unit must retransmit 500 ms later. The kernel caps the size at
    net.core.rmem_max / wmem_max, so what it granted is logged.
    """
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            sock.setsockopt(socket.SOL_SOCKET, option, buffer_bytes)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    # Linux reports twice the size set (it counts its bookkeeping); halved, as asked.
    granted = [
        sock.getsockopt(socket.SOL_SOCKET, o) // 2 for o in (socket.SO_RCVBUF, socket.SO_SNDBUF)
    ]
    level = logging.INFO if min(granted) >= buffer_bytes else logging.WARNING
    log.log(
        level,
        "SIP over UDP: socket buffers of %d KiB receive, %d KiB send (asked %d KiB; "
        "the kernel caps them at net.core.rmem_max / wmem_max)",
        granted[0] // 1024,
        granted[1] // 1024,
        buffer_bytes // 1024,
    )
    return sock


async def _done(work: Awaitable[None] | None) -> None:
    """Wait for what a handler left to do, if anything."""
    if work is not None:
        await work


class Listeners:
    """The receiver's sockets: UDP and TCP on one port, TLS on another when configured."""

    def __init__(self, handle: Handler, *, max_bytes: int, udp_buffer_bytes: int) -> None:
        self._handle = handle
        self._max_bytes = max_bytes
        self._udp_buffer_bytes = udp_buffer_bytes
        self._tasks: set[asyncio.Task[None]] = set()
        self._udp: asyncio.DatagramTransport | None = None
        self._servers: list[asyncio.Server] = []
        self.addresses: list[str] = []

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self, host: str, port: int, tls: ssl.SSLContext | None, tls_port: int) -> None:
        """Bind every socket; OSError names what could not be bound."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # Port 0 lets the kernel pick a free UDP port, but the same TCP port may be
        # taken: then a new pick is tried (a port given in the settings is not).
        for attempt in range(1 if port else _PORT_PICKS):
            sock = udp_socket(family, host, port, self._udp_buffer_bytes)
            bound = int(sock.getsockname()[1])
            try:
                # TCP on the UDP port, as SIP expects both on one port.
                stream = await asyncio.start_server(
                    self._stream("TCP"), host, bound, family=family, limit=self._max_bytes
                )
            except OSError as exc:
                sock.close()
                if port or attempt == _PORT_PICKS - 1 or exc.errno != errno.EADDRINUSE:
                    raise
                continue
            break
        udp, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self._handle, self._spawn, self._max_bytes), sock=sock
        )
        self._udp = udp
        self._servers.append(stream)
        self.addresses.append(f"udp+tcp {host}:{bound}")
        if tls is not None:
            secure = await asyncio.start_server(
                self._stream("TLS"),
                host,
                tls_port,
                family=family,
                ssl=tls,
                limit=self._max_bytes,
            )
            self._servers.append(secure)
            tls_bound = int(secure.sockets[0].getsockname()[1])
            self.addresses.append(f"tls {host}:{tls_bound}")

    def _stream(
        self, name: str
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            remote = writer.get_extra_info("peername")
            local = writer.get_extra_info("sockname")
            peer = Peer(
                name, str(remote[0]), int(remote[1]), (str(local[0]), int(local[1])), writer.write
            )
            try:
                await self._read_stream(reader, writer, peer)
            except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, TimeoutError):
                pass  # the unit hung up or went quiet; its transactions end with it
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError, ssl.SSLError):
                    await writer.wait_closed()

        return serve

    async def _read_stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Peer
    ) -> None:
        while True:
            try:
                async with asyncio.timeout(_IDLE_S):
                    head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                await _done(self._handle(b"", peer, True))  # headers too long: refused, closed
                return
            if head == b"\r\n\r\n":
                writer.write(b"\r\n")  # RFC 5626 keep-alive ping: pong
                continue
            head = head.lstrip(b"\r\n")
            match = _LENGTH.search(head)
            length = int(match.group(1)) if match else 0
            if length > self._max_bytes:
                # The body is never read: answer what the headers allow, then hang up.
                await _done(self._handle(head, peer, True))
                return
            body = await reader.readexactly(length) if length else b""
            work = self._handle(head + body, peer, False)
            if work is not None:
                self._spawn(work)

    async def close(self) -> None:
        """Stop taking messages and end what is being answered."""
        if self._udp is not None:
            self._udp.close()
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
