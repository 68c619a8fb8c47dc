"""Process tuning applied by the entry points only (`hub`, the intake child), never on import."""

from __future__ import annotations

import sys

from hub.tuning.malloc import fix_mmap_threshold, limit_arenas


def tune_process() -> None:
    """Cap malloc arenas, fix the mmap threshold and keep httpx's CLI from loading."""
    # before any thread starts and before the first large buffer: see hub/tuning/malloc.py
    limit_arenas()
    fix_mmap_threshold()
    # httpx imports its command-line client (click, rich, pygments: ~3 MB resident) whenever
    # those are installed; no hub process runs it. A None entry makes that import fail, and
    # httpx then skips it (its own fallback for installs without the ``cli`` extra). None in
    # sys.modules is the import system's documented way to refuse an import; typeshed does not
    # admit it.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
