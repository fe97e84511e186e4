"""The SIP sockets: UDP buffers as configured (within the kernel cap), UDP and TCP on one port."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from gateway.sip import transport
from gateway.sip.transport import udp_socket


def _kernel_cap(name: str) -> int:
    return int(Path(f"/proc/sys/net/core/{name}").read_text())


def test_udp_socket_gets_the_configured_buffers_up_to_the_kernel_cap(
    caplog: pytest.LogCaptureFixture,
) -> None:
    asked = 1024 * 1024  # five times the kernel's usual default (~208 KiB)
    caplog.set_level(logging.INFO, logger="gateway.sip.transport")
    sock = udp_socket(socket.AF_INET, "127.0.0.1", 0, asked)
    try:
        received = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
        sent = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) // 2
        assert sock.getsockname()[1] != 0 and not sock.getblocking()
    finally:
        sock.close()
    assert received == min(asked, _kernel_cap("rmem_max"))
    assert sent == min(asked, _kernel_cap("wmem_max"))
    assert f"{received // 1024} KiB receive, {sent // 1024} KiB send (asked 1024 KiB" in caplog.text


def test_udp_socket_on_a_taken_port_is_refused_and_closed() -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    try:
        with pytest.raises(OSError):
            udp_socket(socket.AF_INET, "127.0.0.1", taken.getsockname()[1], 1 << 20)
    finally:
        taken.close()


async def test_port_0_picks_again_when_the_udp_port_s_tcp_twin_is_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A TCP listener on a port whose UDP side is free: the kernel may hand out that
    # UDP port for port 0, and UDP and TCP must share one port.
    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    taken = busy.getsockname()[1]
    picks: list[int] = []

    def first_the_taken_port(
        family: socket.AddressFamily, host: str, port: int, buffer_bytes: int
    ) -> socket.socket:
        sock = udp_socket(family, host, port if picks else taken, buffer_bytes)
        picks.append(sock.getsockname()[1])
        return sock

    monkeypatch.setattr(transport, "udp_socket", first_the_taken_port)
    listeners = transport.Listeners(_no_handler, max_bytes=4096, udp_buffer_bytes=1 << 16)
    try:
        await listeners.start("127.0.0.1", 0, None, 0)
        assert picks[0] == taken and len(picks) == 2 and picks[1] != taken
        assert listeners.addresses == [f"udp+tcp 127.0.0.1:{picks[1]}"]
    finally:
        await listeners.close()
        busy.close()
    # A port given in the settings is not swapped for another: it is refused.
    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    fixed = transport.Listeners(_no_handler, max_bytes=4096, udp_buffer_bytes=1 << 16)
    try:
        with pytest.raises(OSError):
            await fixed.start("127.0.0.1", busy.getsockname()[1], None, 0)
    finally:
        await fixed.close()
        busy.close()


def _no_handler(data: bytes, peer: transport.Peer, too_large: bool) -> None:
    return None
