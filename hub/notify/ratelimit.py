"""Per-channel send budget: never more than the platform allows, storms grouped, quiet fast.

A sliding window of send times per minute (and per second where the platform has one). The
first quarter of a minute's budget goes out at once (the first message after a quiet spell
is never held back); beyond that, messages are spaced ``60 / per_minute`` seconds apart, so
a storm's alarms pile up between sends and go out grouped. A platform's rate-limit answer
pauses the channel until its retry time.
"""

from __future__ import annotations

from collections import deque

from hub.notify.config import Rate

MINUTE_NS = 60 * 10**9
SECOND_NS = 10**9


class SendBudget:
    """The send budget of one channel (times in epoch ns)."""

    def __init__(self, rate: Rate) -> None:
        self.rate = rate
        self.sent: deque[int] = deque()
        self.paused_until = 0

    def _trim(self, now: int) -> None:
        while self.sent and self.sent[0] <= now - MINUTE_NS:
            self.sent.popleft()

    def wait_ns(self, now: int) -> int:
        """How long until the next message may go (0: now)."""
        self._trim(now)
        waits = [max(0, self.paused_until - now)]
        per_minute = self.rate.per_minute
        if len(self.sent) >= per_minute:
            waits.append(self.sent[-per_minute] + MINUTE_NS - now)
        if self.rate.per_second is not None:
            recent = [t for t in self.sent if t > now - SECOND_NS]
            if len(recent) >= self.rate.per_second:
                waits.append(recent[-self.rate.per_second] + SECOND_NS - now)
        burst = max(1, per_minute // 4)
        if len(self.sent) >= burst:
            waits.append(self.sent[-1] + MINUTE_NS // per_minute - now)
        return max(0, *waits)

    def record(self, at: int) -> None:
        """Count one message sent at ``at``."""
        self.sent.append(at)

    def pause(self, until: int) -> None:
        """Hold the channel until ``until`` (the platform asked us to slow down)."""
        self.paused_until = max(self.paused_until, until)
