"""Simulated time: real time (speed 1), accelerated (speed 60) or as fast as possible (speed 0)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta


class SimClock:
    """Maps wall-clock time to simulated time.

    With ``speed > 0`` simulated time runs ``speed`` times faster than the wall clock from
    ``start`` (default: now). With ``speed == 0`` there is no pacing: the caller drives time
    with ``advance()`` and publishes with explicit device timestamps (backfill).
    """

    def __init__(self, start: datetime | None = None, speed: float = 1.0,
                 wall: Callable[[], float] = time.monotonic) -> None:
        if speed < 0:
            raise ValueError("speed must be >= 0")
        self.start = (start or datetime.now(UTC).replace(microsecond=0)).astimezone(UTC)
        self.speed = speed
        self._wall = wall
        self._wall0 = wall()
        self._driven = self.start

    @property
    def as_fast_as_possible(self) -> bool:
        """True for speed 0 (no pacing)."""
        return self.speed == 0

    def elapsed_wall(self) -> float:
        """Wall seconds since the clock was created."""
        return self._wall() - self._wall0

    def now(self) -> datetime:
        """Current simulated time."""
        if self.as_fast_as_possible:
            return self._driven
        return self.start + timedelta(seconds=self.elapsed_wall() * self.speed)

    def advance(self, seconds: float) -> datetime:
        """Move a speed-0 clock forward; return the new time."""
        if not self.as_fast_as_possible:
            raise RuntimeError("advance() is for speed 0; paced clocks follow the wall clock")
        self._driven += timedelta(seconds=seconds)
        return self._driven

    def wall_delay_until(self, sim_time: datetime) -> float:
        """Wall seconds until ``sim_time`` is reached (0 if past or unpaced)."""
        if self.as_fast_as_possible:
            return 0.0
        return max(0.0, (sim_time - self.now()).total_seconds() / self.speed)
