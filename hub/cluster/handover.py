"""Moving a partition's devices between hubs: rule state, open alarms and device state.

Runs on the pipeline thread (the rules engine and the device states are that thread's), as a
tick hook: the lease side asks, the pipeline thread does it between two messages and says so.
A hub adopting a partition loads its devices' rule state, open alarms and latest state from the
shared database before the partition's first message is fetched; a hub releasing one has acked
every message of it first, then saves and forgets its devices.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from hub.cluster.partition import partition_of

if TYPE_CHECKING:
    from hub.alarms.service import AlarmService
    from hub.patrol.tracker import RoundTracker
    from hub.rules.engine import RuleEngine
    from hub.state import DeviceStates

log = logging.getLogger(__name__)


class Request:
    """One adopt, release or drop of some partitions, done when ``done`` is set."""

    def __init__(self, action: str, partitions: frozenset[int]) -> None:
        self.action = action
        self.partitions = partitions
        self.done = threading.Event()
        self.error: str | None = None
        self.devices = 0


class Handover:
    """Loads and saves the state of whole partitions for one hub of a cluster."""

    def __init__(self, partitions: int, rules: RuleEngine, alarms: AlarmService,
                 states: DeviceStates, rounds: RoundTracker | None = None) -> None:
        self.partitions = partitions
        self.rules = rules
        self.alarms = alarms
        self.states = states
        self.rounds = rounds  # patrol round progress, handed over with its readers
        self.owned: set[int] = set()  # written by the pipeline thread only
        if rounds is not None:
            rounds.owns = lambda device_id: self.part(device_id) in self.owned
        self._requests: deque[Request] = deque()

    def part(self, device_id: str) -> int:
        """A device's partition."""
        return partition_of(device_id, self.partitions)

    # ------------------------------------------------------------------ any thread

    def ask(self, action: str, partitions: frozenset[int]) -> Request:
        """Queue an adopt, release or drop for the pipeline thread."""
        request = Request(action, partitions)
        self._requests.append(request)
        return request

    # ------------------------------------------------------------------ the pipeline thread

    def forget_all(self) -> None:
        """At start (before the pipeline runs): nothing is owned yet, whatever was loaded."""
        self._release(frozenset(range(self.partitions)), save=False)

    def on_tick(self, _now: int) -> None:
        """Carry out what was asked since the last tick."""
        while self._requests:
            request = self._requests.popleft()
            started = time.monotonic()
            try:
                if request.action == "adopt":
                    request.devices = self._adopt(request.partitions)
                else:
                    request.devices = self._release(request.partitions,
                                                    save=request.action == "release")
            except Exception as exc:
                log.exception("cluster: %s of partitions %s failed", request.action,
                              sorted(request.partitions))
                request.error = f"{type(exc).__name__}: {exc}"
            log.info("cluster: %s partitions %s: %d devices in %.0f ms", request.action,
                     sorted(request.partitions), request.devices,
                     (time.monotonic() - started) * 1000)
            request.done.set()

    def _in(self, partitions: frozenset[int]) -> Callable[[str], bool]:
        count = self.partitions
        return lambda device_id: partition_of(device_id, count) in partitions

    def _adopt(self, partitions: frozenset[int]) -> int:
        wanted = self._in(partitions)
        store = self.rules.state_store
        saved = [s for s in store.load_all() if wanted(s.device_id)] if store else []
        open_alarms = self.alarms.reload_devices(wanted)
        count = self.rules.adopt(saved, open_alarms)
        self.states.load(wanted)
        if self.rounds is not None:
            self.rounds.adopt(wanted)
        self.owned |= partitions
        return count

    def _release(self, partitions: frozenset[int], *, save: bool) -> int:
        self.owned -= partitions
        wanted = self._in(partitions)
        snapshots = self.rules.release([d for d in list(self.rules.devices) if wanted(d)])
        store = self.rules.state_store
        if save and snapshots and store is not None:
            store.save(snapshots, self.rules.clock())
        # alarm transitions and device states of the time it was ours are written either way
        self.alarms.forget_devices(lambda d: not wanted(d))
        self.states.release(lambda d: not wanted(d))
        if self.rounds is not None:
            self.rounds.release(wanted)
        return len(snapshots)
