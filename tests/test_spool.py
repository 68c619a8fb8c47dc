"""The durable spool: FIFO, persistence, torn tails, SIGKILL, segment reclaim, SpoolFull."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hub.store.spool import Spool, SpoolFull


def batch(i: int, n: int = 3) -> list[bytes]:
    return [f"m,b={i} v={j}i {i * 1000 + j}".encode() for j in range(n)]


def drain(spool: Spool) -> list[list[bytes]]:
    out = []
    while (head := spool.peek()) is not None:
        batch_id, lines = head
        out.append(lines)
        spool.remove(batch_id)
    return out


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("seg-*.spool"))


def test_fifo_and_depth(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    assert spool.peek() is None and spool.depth() == (0, 0)
    for i in range(5):
        spool.append(batch(i))
    batches, nbytes = spool.depth()
    assert batches == 5 and nbytes > 0
    head = spool.peek()
    assert head is not None and head[1] == batch(0)
    assert spool.peek() == head  # peek does not consume
    assert drain(spool) == [batch(i) for i in range(5)]
    assert spool.depth() == (0, 0)
    spool.append([b""])  # empty line and empty batch survive framing
    spool.append([])
    assert drain(spool) == [[b""], []]


def test_remove_only_the_peeked_head(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(batch(0))
    with pytest.raises(ValueError):
        spool.remove((1, 999))


def test_survives_reopen_and_replays_unremoved(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    for i in range(4):
        spool.append(batch(i))
    head = spool.peek()
    assert head is not None
    spool.remove(head[0])
    spool.peek()  # replayed, then "crash" before remove
    spool.close()
    again = Spool(tmp_path, max_bytes=1 << 20)
    assert again.depth()[0] == 3
    again.append(batch(9))
    assert drain(again) == [batch(1), batch(2), batch(3), batch(9)]


@pytest.mark.parametrize("damage", ["truncate_header", "truncate_payload", "garbage", "bitflip"])
def test_torn_tail_is_discarded(tmp_path: Path, damage: str) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    for i in range(3):
        spool.append(batch(i))
    spool.close()
    (seg,) = segments(tmp_path)
    data = seg.read_bytes()
    last_start = len(data) - (len(data) // 3)  # all three records have the same size
    if damage == "truncate_header":
        seg.write_bytes(data[: last_start + 5])
    elif damage == "truncate_payload":
        seg.write_bytes(data[:-7])
    elif damage == "garbage":
        seg.write_bytes(data + b"\x00\xffHSB1 torn garbage")
    else:
        flipped = bytearray(data)
        flipped[-3] ^= 0x40
        seg.write_bytes(bytes(flipped))
    reopened = Spool(tmp_path, max_bytes=1 << 20)
    want = [batch(0), batch(1)] if damage != "garbage" else [batch(0), batch(1), batch(2)]
    assert reopened.depth()[0] == len(want)
    reopened.append(batch(7))  # appending after the cut yields a well-formed segment
    reopened.close()
    assert drain(Spool(tmp_path, max_bytes=1 << 20)) == [*want, batch(7)]


def test_segments_reclaim_disk(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=300)
    for i in range(20):
        spool.append(batch(i))
    assert len(segments(tmp_path)) > 3
    for _ in range(10):
        head = spool.peek()
        assert head is not None
        spool.remove(head[0])
    fewer = len(segments(tmp_path))
    assert fewer < 10
    spool.close()
    reopened = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=300)
    assert drain(reopened) == [batch(i) for i in range(10, 20)]
    assert len(segments(tmp_path)) <= 1
    reopened.append(batch(99))  # a new segment never reuses an old sequence number
    reopened.close()
    assert drain(Spool(tmp_path, max_bytes=1 << 20, segment_bytes=300)) == [batch(99)]


def test_spool_full(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=400)
    spool.append(batch(0))
    spool.append(batch(1))
    with pytest.raises(SpoolFull):
        for i in range(2, 10):
            spool.append(batch(i))
    batches, nbytes = spool.depth()
    assert nbytes <= 400
    head = spool.peek()
    assert head is not None
    spool.remove(head[0])
    spool.append(batch(50))  # room again
    assert spool.depth()[0] == batches
    # One batch larger than max_bytes still goes into an empty spool (else it could never).
    empty = Spool(tmp_path / "other", max_bytes=10)
    empty.append(batch(0, n=20))
    with pytest.raises(SpoolFull):
        empty.append(batch(1))


_CHILD = """
import sys
from pathlib import Path
from hub.store.spool import Spool
spool = Spool(Path(sys.argv[1]), max_bytes=1 << 30, segment_bytes=64 * 1024)
i = 0
while True:
    spool.append([f"m,b={i} v={j}i {j}".encode() * 20 for j in range(i % 7 + 1)])
    print(i, flush=True)
    i += 1
"""


def test_sigkill_mid_append(tmp_path: Path) -> None:
    """Batches acknowledged before SIGKILL are all there, in order; nothing torn is replayed."""
    for round_ in range(3):
        directory = tmp_path / f"r{round_}"
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(directory)],
            stdout=subprocess.PIPE,
            cwd=Path(__file__).resolve().parent.parent,
        )
        assert child.stdout is not None
        acked = -1
        deadline = time.monotonic() + 10
        while acked < 150 + 40 * round_ and time.monotonic() < deadline:
            acked = int(child.stdout.readline())
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        spool = Spool(directory, max_bytes=1 << 30, segment_bytes=64 * 1024)
        got = drain(spool)
        assert len(got) >= acked + 1
        for i, lines in enumerate(got):
            assert lines == [f"m,b={i} v={j}i {j}".encode() * 20 for j in range(i % 7 + 1)]
