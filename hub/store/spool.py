"""A durable FIFO of line-protocol batches on disk, for when the store is down.

Layout: ``seg-<seq>.spool`` segment files, appended to in order, each a run of records
``magic | payload length | crc32(payload) | payload`` where the payload is the batch's lines,
each prefixed with its length. ``append`` returns only once the record is fsync'd (and, for a
new segment, the directory too). On open every segment is checked: a torn or corrupt tail (a
crash mid-append) is cut off, never replayed. The read position is kept in ``cursor``
(replaced atomically, not fsync'd: after a crash it may lag, and a batch is replayed twice,
which is harmless because writes are idempotent). A segment is deleted once it is read
through, so removal gives the disk back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import threading
import zlib
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

_MAGIC = b"HSB1"
_HEADER = struct.Struct("<4sII")
_COUNT = struct.Struct("<I")

BatchId = tuple[int, int]
"""(segment sequence number, byte offset of the record in it)."""


class SpoolFull(Exception):
    """The spool holds max_bytes already: apply back-pressure, drop nothing."""


def _encode(lines: Sequence[bytes]) -> bytes:
    parts = [_COUNT.pack(len(lines))]
    for line in lines:
        parts.append(_COUNT.pack(len(line)))
        parts.append(line)
    payload = b"".join(parts)
    return _HEADER.pack(_MAGIC, len(payload), zlib.crc32(payload)) + payload


def _decode(payload: bytes) -> list[bytes]:
    (count,) = _COUNT.unpack_from(payload, 0)
    pos = _COUNT.size
    lines = []
    for _ in range(count):
        (size,) = _COUNT.unpack_from(payload, pos)
        pos += _COUNT.size
        lines.append(payload[pos : pos + size])
        pos += size
    return lines


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """Durable FIFO of batches (lists of lines); thread-safe."""

    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes or max(1 << 20, min(64 << 20, max_bytes // 8))
        self._lock = threading.Lock()
        # seq -> [records, bytes] still to be read, oldest segment first.
        self._segments: dict[int, list[int]] = {}
        self._sizes: dict[int, int] = {}
        self._read_seq = 0
        self._read_offset = 0
        self._peeked: tuple[int, int, int] | None = None
        self._active: tuple[int, int] | None = None  # (seq, fd) being appended to
        self._next_seq = 1
        self._open()

    def _path(self, seq: int) -> Path:
        return self.directory / f"seg-{seq:012d}.spool"

    def _open(self) -> None:
        seqs = sorted(
            int(p.name[4:-6]) for p in self.directory.glob("seg-*.spool") if p.name[4:-6].isdigit()
        )
        cursor_seq, cursor_offset = self._read_cursor()
        for seq in seqs:
            start = cursor_offset if seq == cursor_seq else 0
            if seq < cursor_seq:
                self._path(seq).unlink()
                continue
            records, pending, size = self._scan(seq, start)
            if start > size:  # a cursor past the end: trust the segment, not the cursor
                records, pending, size = self._scan(seq, 0)
                start = 0
            if records == 0:
                self._path(seq).unlink()
                continue
            self._segments[seq] = [records, pending]
            self._sizes[seq] = size
            if len(self._segments) == 1:
                self._read_seq, self._read_offset = seq, start
        self._next_seq = max([*seqs, cursor_seq]) + 1

    def _read_cursor(self) -> tuple[int, int]:
        try:
            seq, offset = (self.directory / "cursor").read_text().split()
            return int(seq), int(offset)
        except (OSError, ValueError):
            return 0, 0

    def _write_cursor(self) -> None:
        tmp = self.directory / "cursor.tmp"
        tmp.write_text(f"{self._read_seq} {self._read_offset}\n")
        os.replace(tmp, self.directory / "cursor")

    def _scan(self, seq: int, start: int) -> tuple[int, int, int]:
        """Validate a segment from ``start``; cut a torn tail; return (records, bytes, size)."""
        path = self._path(seq)
        data = path.read_bytes()
        pos = start if start <= len(data) else 0
        records = 0
        while pos < len(data):
            if len(data) - pos < _HEADER.size:
                break
            magic, length, crc = _HEADER.unpack_from(data, pos)
            end = pos + _HEADER.size + length
            if magic != _MAGIC or end > len(data):
                break
            if zlib.crc32(data[pos + _HEADER.size : end]) != crc:
                break
            records += 1
            pos = end
        if pos < len(data):
            log.warning(
                "spool segment %s: discarding %d bytes of torn or corrupt tail at offset %d",
                path.name,
                len(data) - pos,
                pos,
            )
            with path.open("r+b") as f:
                f.truncate(pos)
                f.flush()
                os.fsync(f.fileno())
        return records, pos - start, pos

    # -- public API ------------------------------------------------------------------------
    def append(self, lines: Sequence[bytes]) -> None:
        """Add a batch at the tail; return once it is on disk; raise SpoolFull when full."""
        record = _encode(lines)
        with self._lock:
            batches, pending = self._depth()
            if batches and pending + len(record) > self.max_bytes:
                raise SpoolFull(
                    f"spool {self.directory} holds {pending} bytes in {batches} batches "
                    f"(max {self.max_bytes})"
                )
            seq, fd = self._writable()
            offset = self._sizes[seq]
            view = memoryview(record)
            written = 0
            try:
                while written < len(record):
                    written += os.write(fd, view[written:])
                os.fsync(fd)
            except OSError:
                # Cut what a failed write left behind so the segment stays well-formed.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, offset)
                raise
            self._sizes[seq] = offset + len(record)
            counts = self._segments[seq]
            counts[0] += 1
            counts[1] += len(record)

    def _writable(self) -> tuple[int, int]:
        if self._active is not None:
            seq, fd = self._active
            if self._sizes[seq] < self.segment_bytes:
                return self._active
            os.close(fd)
            self._active = None
        elif self._segments:
            # After a restart, append to the newest segment if it has room.
            seq = max(self._segments)
            if self._sizes[seq] < self.segment_bytes:
                fd = os.open(self._path(seq), os.O_WRONLY | os.O_APPEND)
                self._active = (seq, fd)
                return self._active
        seq = self._next_seq
        self._next_seq += 1
        fd = os.open(self._path(seq), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        _fsync_dir(self.directory)
        self._active = (seq, fd)
        self._segments[seq] = [0, 0]
        self._sizes[seq] = 0
        if len(self._segments) == 1:
            self._read_seq, self._read_offset = seq, 0
        return self._active

    def peek(self) -> tuple[BatchId, list[bytes]] | None:
        """Return the oldest batch and its id without removing it, or None when empty."""
        with self._lock:
            while True:
                if not self._segments:
                    return None
                seq = min(self._segments)
                if seq != self._read_seq:
                    self._read_seq, self._read_offset = seq, 0
                if self._segments[seq][0] > 0:
                    break
                if len(self._segments) == 1:
                    return None
                self._drop_segment(seq)
            with self._path(seq).open("rb") as f:
                f.seek(self._read_offset)
                header = f.read(_HEADER.size)
                _, length, crc = _HEADER.unpack(header)
                payload = f.read(length)
            if zlib.crc32(payload) != crc:
                raise OSError(f"spool segment {seq} corrupt at {self._read_offset}")
            self._peeked = (seq, self._read_offset, _HEADER.size + length)
            return (seq, self._read_offset), _decode(payload)

    def remove(self, batch_id: BatchId) -> None:
        """Drop the oldest batch (the one ``peek`` returned) after a successful replay."""
        with self._lock:
            if self._peeked is None or self._peeked[:2] != batch_id:
                raise ValueError(f"batch {batch_id} is not the oldest peeked batch")
            seq, offset, size = self._peeked
            self._peeked = None
            counts = self._segments[seq]
            counts[0] -= 1
            counts[1] -= size
            self._read_offset = offset + size
            if counts[0] == 0:
                self._drop_segment(seq)
            self._write_cursor()

    def _drop_segment(self, seq: int) -> None:
        if self._active is not None and self._active[0] == seq:
            os.close(self._active[1])
            self._active = None
        del self._segments[seq]
        del self._sizes[seq]
        self._path(seq).unlink()
        if self._segments:
            self._read_seq, self._read_offset = min(self._segments), 0

    def depth(self) -> tuple[int, int]:
        """Return (batches, bytes) waiting in the spool."""
        with self._lock:
            return self._depth()

    def _depth(self) -> tuple[int, int]:
        batches = sum(c[0] for c in self._segments.values())
        pending = sum(c[1] for c in self._segments.values())
        return batches, pending

    def close(self) -> None:
        """Close the open segment file."""
        with self._lock:
            if self._active is not None:
                os.close(self._active[1])
                self._active = None
