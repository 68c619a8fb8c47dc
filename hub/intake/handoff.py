"""A bounded hand-off from one producer thread to one consumer thread, without a lock.

Used twice on the ingest path: paho's thread to the pipeline (thread intake) and paho's thread
to the forwarder (in the intake process). A ``collections.deque`` is safe for one appender and
one popper under the GIL; the event wakes the consumer only while it sleeps, so a busy stream
costs no notify per item, and a full hand-off makes the producer wait (paho then stops reading
and the broker keeps the rest).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")

FULL_WAIT_S = 0.005  # the producer's poll while full: rare, and cheaper than a condition per item


class Handoff(Generic[T]):
    """One producer ``put``s, one consumer pops from ``items`` and ``wait``s when empty."""

    def __init__(self, max_items: int) -> None:
        self.items: deque[T] = deque()
        self.max_items = max_items
        self._wake = threading.Event()
        self._idle = False

    def put(self, item: T, stop: threading.Event | None = None) -> None:
        """Append an item, waiting while full (unless ``stop`` is set); wake a sleeping consumer."""
        items = self.items
        while len(items) >= self.max_items and not (stop is not None and stop.is_set()):
            time.sleep(FULL_WAIT_S)
        items.append(item)
        if self._idle:
            self._wake.set()

    def wait(self, timeout: float) -> None:
        """Consumer: sleep up to ``timeout`` s unless items are waiting."""
        if self.items or timeout <= 0:
            return
        self._wake.clear()
        self._idle = True
        if not self.items:  # an item put between the check above and _idle = True
            self._wake.wait(timeout)
        self._idle = False

    def wake(self) -> None:
        """Wake the consumer now (to stop it)."""
        self._wake.set()
