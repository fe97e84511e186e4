"""The spool on a real disk: group commit, reading back, torn tails, corruption, limits."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from gateway.spool import Spool, SpoolError


def _open(path: Path, **kw: int) -> Spool:
    spool = Spool(path, **kw)
    spool.open()
    return spool


async def test_appended_records_read_back_in_order_after_reopening(tmp_path: Path) -> None:
    spool = _open(tmp_path)
    last = spool.append([b"one", b"two", b"three"])
    assert last == 3
    assert spool.read(0, 10) == [], "nothing is readable before it is durable"
    await spool.sync()
    assert spool.read(1, 10) == [(2, b"two"), (3, b"three")]
    spool.close()

    again = Spool(tmp_path)
    recovery = again.open()
    assert (recovery.records, recovery.first_seq, recovery.last_seq) == (3, 1, 3)
    assert again.read(0, 10) == [(1, b"one"), (2, b"two"), (3, b"three")]
    assert again.append([b"four"]) == 4
    again.close()


async def test_group_commit_shares_one_fsync_among_concurrent_callers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = _open(tmp_path)
    calls = 0
    real = os.fsync

    def counting(fd: int) -> None:
        nonlocal calls
        calls += 1
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)

    async def writer(i: int) -> None:
        spool.append([str(i).encode()])
        await spool.sync()

    await asyncio.gather(*(writer(i) for i in range(50)))
    assert spool.durable_seq == 50
    # The first call syncs alone; everything appended meanwhile shares the next.
    assert calls <= 4, calls
    spool.close()


async def test_a_torn_last_record_is_cut_off_and_the_rest_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = _open(tmp_path)
    spool.append([b"a" * 100, b"b" * 100, b"c" * 100])
    await spool.sync()
    spool.close()
    segment = next(tmp_path.glob("*.seg"))
    size = segment.stat().st_size
    with open(segment, "r+b") as handle:
        handle.truncate(size - 40)  # mid-way through the third record

    again = Spool(tmp_path)
    recovery = again.open()
    assert recovery.records == 2
    assert recovery.dropped_bytes == 116 - 40
    assert "torn last record" in caplog.text
    assert [p for _, p in again.read(0, 10)] == [b"a" * 100, b"b" * 100]
    # Numbering continues where the intact records end.
    assert again.append([b"d"]) == 3
    await again.sync()
    again.close()
    third = Spool(tmp_path)
    assert third.open().records == 3
    assert third.read(2, 1) == [(3, b"d")]
    third.close()


async def test_a_flipped_byte_in_the_tail_is_detected_by_the_checksum(tmp_path: Path) -> None:
    spool = _open(tmp_path)
    spool.append([b"first", b"second"])
    await spool.sync()
    spool.close()
    segment = next(tmp_path.glob("*.seg"))
    data = bytearray(segment.read_bytes())
    data[-1] ^= 0xFF
    segment.write_bytes(bytes(data))
    again = Spool(tmp_path)
    assert again.open().records == 1
    again.close()


async def test_corruption_before_the_tail_refuses_to_open(tmp_path: Path) -> None:
    spool = _open(tmp_path, segment_bytes=64)
    for i in range(6):
        spool.append([bytes([i]) * 40])
    await spool.sync()
    spool.close()
    oldest = sorted(tmp_path.glob("*.seg"))[0]
    data = bytearray(oldest.read_bytes())
    data[20] ^= 0xFF
    oldest.write_bytes(bytes(data))
    with pytest.raises(SpoolError, match="corrupt"):
        Spool(tmp_path).open()


async def test_segments_rotate_are_read_across_and_released(tmp_path: Path) -> None:
    spool = _open(tmp_path, segment_bytes=256)
    for i in range(40):
        spool.append([f"record-{i:03d}".encode() * 3])
    await spool.sync()
    assert len(list(tmp_path.glob("*.seg"))) > 3
    # Across segment boundaries, in two sequential reads.
    first = spool.read(0, 25)
    rest = spool.read(25, 100)
    assert [s for s, _ in first + rest] == list(range(1, 41))
    assert rest[-1][1] == b"record-039" * 3
    before = spool.size_bytes
    spool.release(30)
    assert spool.size_bytes < before
    assert spool.first_seq <= 31
    assert spool.read(30, 100)[0][0] == 31
    spool.close()
    again = Spool(tmp_path)
    recovery = again.open()
    assert recovery.last_seq == 40 and recovery.first_seq <= 31
    again.close()


async def test_a_second_process_cannot_share_the_directory(tmp_path: Path) -> None:
    spool = _open(tmp_path)
    with pytest.raises(SpoolError, match="in use"):
        Spool(tmp_path).open()
    spool.close()


async def test_a_failed_write_leaves_nothing_half_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = _open(tmp_path)
    spool.append([b"kept"])
    await spool.sync()
    real = os.write

    def full(fd: int, data: bytes) -> int:
        real(fd, data[:7])  # the disk takes a few bytes, then is full
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(os, "write", full)
        with pytest.raises(SpoolError, match="No space left"):
            spool.append([b"lost" * 10])
    assert spool.append([b"after"]) == 2
    await spool.sync()
    spool.close()
    again = Spool(tmp_path)
    assert again.open().dropped_bytes == 0
    assert [p for _, p in again.read(0, 10)] == [b"kept", b"after"]
    again.close()


async def test_numbering_continues_past_what_a_consumer_recorded(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open(min_next_seq=501)
    assert spool.append([b"x"]) == 501
    spool.close()
