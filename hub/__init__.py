"""The safety hub."""

import sys

from hub._malloc import fix_mmap_threshold, limit_arenas

# before any thread starts and before the first large buffer: see hub/_malloc.py
limit_arenas()
fix_mmap_threshold()
# httpx imports its command-line client (click, rich, pygments: ~3 MB resident) whenever those
# are installed; no hub process runs it. A None entry makes that import fail, and httpx then
# skips it (its own fallback for installs without the ``cli`` extra). None in sys.modules is
# the import system's documented way to refuse an import; typeshed does not admit it.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
