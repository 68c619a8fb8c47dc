"""The safety hub."""

import sys

from hub._malloc import limit_arenas

limit_arenas()  # before any thread starts: see hub/_malloc.py
# httpx imports its command-line client (click, rich, pygments: ~3 MB resident) whenever those
# are installed; no hub process runs it. A None entry makes that import fail, and httpx then
# skips it (its own fallback for installs without the ``cli`` extra).
sys.modules.setdefault("httpx._main", None)
