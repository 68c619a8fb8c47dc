"""The hub's notion of now: the wall clock, or (for demos and replays) the devices' clock.

In ``device`` mode, now is the newest plausible device time seen so far, never ahead of the
wall clock. A simulated day replayed as fast as possible, or the demo running at 60x from six
hours ago, then sees heartbeat timeouts, rule staleness and patrol windows happen in simulated
time, just as they would have on the day. Production runs ``wall``.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class HubClock:
    """Callable returning now in ns; ``observe`` feeds device times in device mode."""

    def __init__(self, mode: str = "wall", wall: Callable[[], int] = time.time_ns) -> None:
        if mode not in ("wall", "device"):
            raise ValueError(f"clock mode must be wall or device, not {mode!r}")
        self.mode = mode
        self.wall = wall
        self._newest: int | None = None

    def __call__(self) -> int:
        """Now, in epoch nanoseconds."""
        if self._newest is None:
            return self.wall()
        return self._newest

    def observe(self, device_time_ns: int) -> None:
        """Advance a device clock to a device time (never past the wall clock)."""
        if self.mode == "device" and (self._newest is None or device_time_ns > self._newest):
            self._newest = min(device_time_ns, self.wall())
