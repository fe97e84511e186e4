"""The local durable spool: an append-only segment log with checksums and group commit.

A message is acknowledged to the broker once it is in a spool on the
gateway's own disk, written and fsync'd; PostgreSQL catches up from the spool
at its own pace. Chosen by measurement over SQLite in WAL mode (see
``wgw bench``'s spool figures in the README): an append is one ``os.write``
of a pre-framed buffer and a commit is one ``fsync`` shared by everything
appended meanwhile, with no per-row B-tree or page work.

On disk a spool is a directory of segment files named by the sequence
number of their first record. A record is framed as::

    u32 payload length | u32 CRC-32 of (seq, payload) | u64 seq | payload

Opening a spool scans every segment. A torn or corrupt record at the end of
the newest segment (a crash mid-write: never acknowledged) is cut off and
logged; a corrupt record anywhere else is refused, since acknowledged data
would be missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from core.errors import GatewayError

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<IIQ")
_SEQ = struct.Struct("<Q")
_SUFFIX = ".seg"
# A record longer than this is refused on append and means corruption on read.
MAX_RECORD_BYTES = 64 * 1024 * 1024


class SpoolError(GatewayError):
    """The spool cannot be written or read (disk full, I/O error, corruption, locked)."""


@dataclass(frozen=True, slots=True)
class Recovery:
    """What opening a spool found."""

    records: int  # intact records on disk
    first_seq: int  # the oldest one kept (0 when empty)
    last_seq: int  # the newest one (0 when empty)
    dropped_bytes: int  # a torn tail cut off the newest segment


@dataclass
class _Segment:
    first_seq: int
    path: Path
    size: int
    last_seq: int  # first_seq - 1 while empty


class Spool:
    """One append-only log in ``directory``; single writer, readers by sequence number."""

    def __init__(
        self,
        directory: Path,
        *,
        segment_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self.directory = directory
        self._segment_bytes = segment_bytes
        self._segments: list[_Segment] = []
        self._fd = -1
        self._lock_fd = -1
        self._next_seq = 1
        self._durable_seq = 0
        self._bytes = 0
        # Descriptors of segments rotated out that still await their fsync.
        self._retired: list[int] = []
        self._dir_dirty = False
        self._syncing: asyncio.Future[None] | None = None
        self._durable = asyncio.Event()
        # Where the last disk read stopped: (next seq, segment first seq, offset).
        self._hint: tuple[int, int, int] | None = None

    # -- opening -------------------------------------------------------------

    def open(self, *, min_next_seq: int = 1) -> Recovery:
        """Lock the directory, scan and repair the segments, and get ready to append.

        ``min_next_seq`` keeps numbering past what a consumer has already
        recorded elsewhere, should the directory have been emptied.
        """
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock_fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(self._lock_fd)
            self._lock_fd = -1
            raise SpoolError(
                f"spool {self.directory} is in use by another gateway process; "
                "give each process its own [spool] dir"
            ) from exc
        paths = sorted(self.directory.glob(f"*{_SUFFIX}"), key=lambda p: int(p.stem))
        records = dropped = 0
        for index, path in enumerate(paths):
            newest = index == len(paths) - 1
            segment, count, torn = self._scan(path, int(path.stem), newest=newest)
            records += count
            dropped += torn
            if segment.size == 0 and not newest:
                path.unlink()
                continue
            self._segments.append(segment)
        if self._segments:
            last = self._segments[-1]
            self._next_seq = max(last.last_seq + 1, min_next_seq)
            if self._next_seq != last.last_seq + 1 or last.size >= self._segment_bytes:
                self._new_segment()
            else:
                self._fd = os.open(last.path, os.O_WRONLY | os.O_APPEND)
        else:
            self._next_seq = max(1, min_next_seq)
            self._new_segment()
        self._durable_seq = self._next_seq - 1
        self._bytes = sum(s.size for s in self._segments)
        first = next((s.first_seq for s in self._segments if s.size), 0)
        if dropped:
            log.warning(
                "spool %s: cut off a torn last record (%d bytes, never acknowledged); "
                "%d intact records kept",
                self.directory,
                dropped,
                records,
            )
        return Recovery(records, first, self._durable_seq if records else 0, dropped)

    def _scan(self, path: Path, first_seq: int, *, newest: bool) -> tuple[_Segment, int, int]:
        data = path.read_bytes()
        offset = count = 0
        seq = first_seq
        while offset < len(data):
            record = _parse(data, offset, seq)
            if record is None:
                if not newest:
                    raise SpoolError(
                        f"spool segment {path} is corrupt at byte {offset} (record {seq}); "
                        "acknowledged messages would be lost: keep the file for inspection and "
                        "restore it or move the spool aside"
                    )
                with open(path, "r+b") as handle:
                    handle.truncate(offset)
                    os.fsync(handle.fileno())
                return _Segment(first_seq, path, offset, seq - 1), count, len(data) - offset
            offset = record
            count += 1
            seq += 1
        return _Segment(first_seq, path, offset, seq - 1), count, 0

    def _new_segment(self) -> None:
        path = self.directory / f"{self._next_seq:020d}{_SUFFIX}"
        if self._fd >= 0:
            self._retired.append(self._fd)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._segments.append(_Segment(self._next_seq, path, 0, self._next_seq - 1))
        self._dir_dirty = True

    def close(self) -> None:
        """Close the files (what was synced stays; an unsynced tail may be lost)."""
        for fd in [*self._retired, self._fd, self._lock_fd]:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._retired.clear()
        self._fd = self._lock_fd = -1

    # -- writing -------------------------------------------------------------

    def append(self, payloads: Iterable[bytes]) -> int:
        """Write records (not yet durable) and return the last sequence number given out.

        On a failed write (disk full, I/O error) the segment is cut back to
        where it was and SpoolError is raised: nothing half-written stays.
        """
        segment = self._segments[-1]
        if segment.size >= self._segment_bytes:
            self._new_segment()
            segment = self._segments[-1]
        seq = self._next_seq
        framed: list[bytes] = []
        for payload in payloads:
            if len(payload) > MAX_RECORD_BYTES:
                raise SpoolError(f"a spool record of {len(payload)} bytes is too large")
            crc = zlib.crc32(payload, zlib.crc32(_SEQ.pack(seq)))
            framed.append(_HEADER.pack(len(payload), crc, seq))
            framed.append(payload)
            seq += 1
        if not framed:
            return self._next_seq - 1
        buffer = b"".join(framed)
        try:
            written = os.write(self._fd, buffer)
            if written != len(buffer):
                raise OSError(28, "short write")
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, segment.size)
            raise SpoolError(f"cannot write to spool {self.directory}: {exc}") from exc
        segment.size += len(buffer)
        segment.last_seq = seq - 1
        self._bytes += len(buffer)
        self._next_seq = seq
        return seq - 1

    async def sync(self) -> None:
        """Return once everything appended before the call is on disk (group commit)."""
        target = self._next_seq - 1
        while self._durable_seq < target:
            if self._syncing is None:
                self._syncing = asyncio.ensure_future(self._sync_once())
            # Shielded: a caller that gives up must not cancel the others' fsync.
            await asyncio.shield(self._syncing)

    async def _sync_once(self) -> None:
        upto = self._next_seq - 1
        fds = [*self._retired, self._fd]
        retired = len(self._retired)
        dir_dirty, self._dir_dirty = self._dir_dirty, False
        try:
            await asyncio.to_thread(_fsync_all, fds, self.directory if dir_dirty else None)
        except OSError as exc:
            self._dir_dirty = self._dir_dirty or dir_dirty
            raise SpoolError(f"cannot sync spool {self.directory}: {exc}") from exc
        finally:
            self._syncing = None
        for fd in self._retired[:retired]:
            os.close(fd)
        del self._retired[:retired]
        self._durable_seq = max(self._durable_seq, upto)
        self._durable.set()
        self._durable = asyncio.Event()

    async def wait_durable(self, after_seq: int) -> None:
        """Wait until a record newer than ``after_seq`` is durable."""
        while self._durable_seq <= after_seq:
            await self._durable.wait()

    # -- reading -------------------------------------------------------------

    @property
    def durable_seq(self) -> int:
        """The newest record known to be on disk."""
        return self._durable_seq

    @property
    def last_seq(self) -> int:
        """The newest record appended (durable or not)."""
        return self._next_seq - 1

    @property
    def first_seq(self) -> int:
        """The oldest record still kept (``last_seq + 1`` when none)."""
        for segment in self._segments:
            if segment.last_seq >= segment.first_seq:
                return segment.first_seq
        return self._next_seq

    @property
    def size_bytes(self) -> int:
        """Bytes of all segments on disk."""
        return self._bytes

    def read(self, after_seq: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` durable records newer than ``after_seq``, oldest first.

        Readers near the head keep what they need in memory (the gateway's
        lanes and journal do); this reads the files, sequentially cheap: it
        resumes where the last read stopped.
        """
        start = after_seq + 1
        end = min(self._durable_seq, after_seq + limit)
        if end < start:
            return []
        found: list[tuple[int, bytes]] = []
        for segment in self._segments:
            if segment.last_seq < start or segment.first_seq > end:
                continue
            seq, offset = segment.first_seq, 0
            hint = self._hint
            if hint is not None and hint[1] == segment.first_seq and hint[0] <= start:
                seq, offset = hint[0], hint[2]
            with open(segment.path, "rb") as handle:
                handle.seek(offset)
                while seq <= min(end, segment.last_seq):
                    length = _HEADER.unpack(handle.read(_HEADER.size))[0]
                    if seq >= start:
                        found.append((seq, handle.read(length)))
                    else:
                        handle.seek(length, os.SEEK_CUR)
                    seq += 1
                position = handle.tell()
            self._hint = (seq, segment.first_seq, position)
            if seq > end:
                break
        return found

    def release(self, through_seq: int) -> None:
        """Delete whole segments whose records are all at or before ``through_seq``."""
        while len(self._segments) > 1 and self._segments[0].last_seq <= through_seq:
            segment = self._segments.pop(0)
            segment.path.unlink(missing_ok=True)
            self._bytes -= segment.size
            self._dir_dirty = True


def _parse(data: bytes, offset: int, seq: int) -> int | None:
    """The offset after an intact record ``seq`` at ``offset``, or None if it is torn."""
    if offset + _HEADER.size > len(data):
        return None
    length, crc, found = _HEADER.unpack_from(data, offset)
    end = int(offset + _HEADER.size + length)
    if found != seq or length > MAX_RECORD_BYTES or end > len(data):
        return None
    payload = data[offset + _HEADER.size : end]
    if zlib.crc32(payload, zlib.crc32(_SEQ.pack(seq))) != crc:
        return None
    return end


def _fsync_all(fds: list[int], directory: Path | None) -> None:
    for fd in fds:
        os.fsync(fd)
    if directory is not None:
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
