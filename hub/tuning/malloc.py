"""glibc malloc tuning for the hub's processes (Linux): fewer arenas, a fixed mmap threshold.

glibc gives threads that contend for the heap their own arenas (up to 8 per core); memory a
thread frees stays in its arena, so with the hub's pipeline, writer, state-writer and API
threads each arena keeps its own free pieces. Two arenas measured 21 MB less RSS at 100,000
devices (docs/performance.md). ``MALLOC_ARENA_MAX`` in the environment still wins.

glibc also raises its mmap threshold each time a large mmapped block is freed (up to 32 MiB),
so after the first intake frames and write batches every later buffer of that size comes
from the heap instead, and the heap keeps what the burst left scattered in it. A fixed 128 KiB
threshold keeps large buffers in their own mappings, returned whole when freed: 14 MB less
RSS in the hub process at 100,000 devices (docs/performance.md). ``MALLOC_MMAP_THRESHOLD_``
(or a ``GLIBC_TUNABLES`` setting) in the environment still wins.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import Any

M_MMAP_THRESHOLD = -3  # from glibc's malloc.h
M_ARENA_MAX = -8
ARENAS = 2
MMAP_THRESHOLD = 128 * 1024


def _libc() -> Any:
    """glibc's handle, or None (not Linux, or a libc without mallopt such as musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas unless MALLOC_ARENA_MAX is set; return whether it was done."""
    if _LIBC is None or "MALLOC_ARENA_MAX" in os.environ:
        return False
    return bool(_LIBC.mallopt(M_ARENA_MAX, arenas))


def fix_mmap_threshold(size: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold unless the environment sets it; return whether it was done."""
    if _LIBC is None or "MALLOC_MMAP_THRESHOLD_" in os.environ \
            or "mmap_threshold" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    return bool(_LIBC.mallopt(M_MMAP_THRESHOLD, size))


def trim() -> bool:
    """Give the free pages inside glibc's heaps back to the system; return whether any were."""
    return _LIBC is not None and bool(_LIBC.malloc_trim(0))
