"""Sliding-window rate limits of hazards per reader and per checkpoint (limits are data).

A compromised or broken reader could otherwise open unlimited hazards and, through them,
unlimited alarms. Windows run on the hub's clock for the site. Memory is bounded: at most
``MAX_KEYS`` keys are tracked, the stalest dropped first.
"""

from __future__ import annotations

from collections import OrderedDict, deque

from hub.patrol.config import RateLimit
from hub.patrol.schedule import NS

MAX_KEYS = 20_000


class SlidingLimit:
    """At most ``limit.count`` events per ``limit.per_h`` hours per key."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._span = int(limit.per_h * 3600 * NS)
        self._events: OrderedDict[str, deque[int]] = OrderedDict()

    def allows(self, key: str, now: int) -> bool:
        """True when one more event of ``key`` at ``now`` is within the limit (not counted)."""
        events = self._events.get(key)
        if events is None:
            return True
        while events and events[0] <= now - self._span:
            events.popleft()
        return len(events) < self.limit.count

    def count(self, key: str, now: int) -> None:
        """Count one event of ``key`` at ``now``."""
        events = self._events.get(key)
        if events is None:
            events = self._events[key] = deque()
            while len(self._events) > MAX_KEYS:
                self._events.popitem(last=False)
        else:
            self._events.move_to_end(key)
        events.append(now)

    def describe(self) -> str:
        """The limit in words, for refusal reasons."""
        return f"{self.limit.count} per {self.limit.per_h:g} h"
