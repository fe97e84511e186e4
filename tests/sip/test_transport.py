"""The UDP socket's buffers: as large as configured, within what the kernel allows."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

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
