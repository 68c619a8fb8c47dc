"""Rule state kept across restarts: snapshots written off the pipeline thread, and restored.

A device's snapshot holds its clock (last time, offset, last receipt), its latest values, its
condition slots (kept only when the program is unchanged) and its active rule levels. Open
alarms in the alarm store are reconciled with the restored state, so a rule whose alarm is
still open clears it when its condition clears.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping

from hub.rules.compiled import RuleState
from hub.rules.store import RuleStateStore, SavedState

log = logging.getLogger(__name__)


class StateWriter(threading.Thread):
    """Writes rule-state snapshots off the pipeline thread (the newest batch wins per device)."""

    def __init__(self, store: RuleStateStore, clock: Callable[[], int]) -> None:
        super().__init__(name="rule-state-writer", daemon=True)
        self.store = store
        self.clock = clock
        self.batches: queue.Queue[list[SavedState] | None] = queue.Queue()

    def run(self) -> None:
        """Write batches until a None arrives."""
        while True:
            batch = self.batches.get()
            if batch is None:
                return
            try:
                self.store.save(batch, self.clock())
            except Exception:
                log.exception("saving rule state failed (%d devices)", len(batch))


def snapshot(ds: RuleState) -> SavedState:
    """What is saved of a device's rule state."""
    rules = ds.program.rules
    return SavedState(ds.device_id, ds.kind, ds.site, ds.model, {
        "sig": ds.program.signature,
        "t": ds.last_t,
        "o": ds.offset,
        "rx": ds.last_rx,
        "v": ds.program.value_dict(ds.values),
        "s": [list(x) if isinstance(x, list) else x for x in ds.slots],
        "a": {rules[i].id: rules[i].levels[a].severity
              for i, a in enumerate(ds.active) if a >= 0},
    })


def restore(ds: RuleState, saved: SavedState, now: int) -> None:
    """Bring a fresh device state back to what was saved; it is due at once."""
    data = saved.data
    ds.last_t = int(data.get("t", -1))
    ds.offset = int(data.get("o", 0))
    ds.clock_known = "o" in data and ds.last_t >= 0
    # the hub was away: staleness counts from now, not from before the restart
    ds.last_rx = max(int(data.get("rx", 0)), now)
    saved_values = data.get("v") or {}
    ds.values = tuple(saved_values.get(name, known) for name, known in
                      zip(ds.program.value_names, ds.values, strict=True))
    slots = data.get("s")
    if data.get("sig") == ds.program.signature and isinstance(slots, list) \
            and len(slots) == len(ds.slots):
        ds.writable_slots()[:] = slots
    restore_active(ds, data.get("a") or {})
    ds.deadline = now - ds.offset


def restore_active(ds: RuleState, active: Mapping[str, str]) -> None:
    """Mark the rules in ``active`` (rule id -> severity) as breached at that level."""
    for index, rule in enumerate(ds.program.rules):
        severity = active.get(rule.id)
        if severity is None:
            continue
        levels = [lv.severity for lv in rule.levels]
        ds.set_active(index, levels.index(severity) if severity in levels else 0)

