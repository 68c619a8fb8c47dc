"""The patrol tracker's clock per site: the wall clock, or the newest plausible device time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from hub.model import Reading

ClockMode = Literal["wall", "device"]


class PatrolClock:
    """``wall``: the hub's clock. ``device``: per site, the newest plausible device time seen.

    In wall mode ``wall`` is the hub's clock (``HUB_CLOCK``: the wall clock, or the hub-wide
    device clock), so the patrol clock follows it.

    Device mode replays simulated days (``hub demo``, tests) where device time runs ahead of or
    behind the wall clock. Readings timed by their receive time (no plausible device time) do
    not move it. It never runs backwards: a late upload leaves it where it is.
    """

    def __init__(self, mode: ClockMode = "wall", wall: Callable[[], int] = time.time_ns) -> None:
        self.mode: ClockMode = mode
        self.wall = wall
        self._device: dict[str, int] = {}
        self._wall = 0

    def restore(self, site: str, t_ns: int | None) -> None:
        """Set a site's device clock from saved state (never backwards)."""
        if t_ns is not None and self.mode == "device":
            self._device[site] = max(self._device.get(site, 0), t_ns)

    def observe(self, reading: Reading) -> None:
        """Move the site's clock with a reading (device mode: by its plausible device time)."""
        if self.mode == "wall":
            return
        if reading.time_ns == reading.received_ns or reading.online is not None:
            return  # receive-timed: says nothing about the device's clock
        current = self._device.get(reading.site)
        if current is None or reading.time_ns > current:
            self._device[reading.site] = reading.time_ns

    def tick(self, wall_ns: int) -> None:
        """Advance the wall clock (wall mode)."""
        self._wall = max(self._wall, wall_ns)

    def now(self, site: str) -> int | None:
        """The site's current time, or None while device mode has seen nothing yet."""
        if self.mode == "wall":
            self._wall = max(self._wall, self.wall())
            return self._wall
        return self._device.get(site)
