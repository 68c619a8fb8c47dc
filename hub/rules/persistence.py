"""Rule state kept across restarts: snapshots written off the pipeline thread, and restored.

A device's snapshot holds its clock (last time, offset, last receipt), its latest values, its
condition slots (kept only when the program is unchanged) and its active rule levels. Open
alarms in the alarm store are reconciled with the restored state, so a rule whose alarm is
still open clears it when its condition clears.

An open alarm the saved state does not know (no state saved yet, the file lost, a hub killed
before its periodic save) is adopted as held: the level's ``for_s`` counts as served and its
latches as set (hysteresis), and the rule is *unconfirmed*: its condition's inputs are not
known, so it clears only on evidence (a reading that carries its input), not on a timer tick
that sees nothing or a reading about something else. A device's clock is moved up to the
newest device time of its alarms' rule changes, so readings delivered again from before them
are ignored as older than the state.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping

from hub.model import Reading
from hub.rules.compiled import CompiledRule, RuleState
from hub.rules.store import RuleStateStore, SavedState

log = logging.getLogger(__name__)
LONG_AGO = 0  # a level's "held since": the epoch, so any for_s counts as served


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



def assume_open(ds: RuleState, rule_id: str, severity: str, t: int) -> bool:
    """Mark a rule whose alarm is open but unknown to ``ds`` as held at ``severity`` since long
    ago (at device time ``t``); return False when ``ds`` knew it (or has no such rule)."""
    for index, rule in enumerate(ds.program.rules):
        if rule.id != rule_id:
            continue
        if ds.active[index] >= 0:
            return False
        levels = [lv.severity for lv in rule.levels]
        at = levels.index(severity) if severity in levels else 0
        ds.set_active(index, at)
        slots = ds.writable_slots()
        # less severe levels too: the engine counts them as held long enough under a worse one
        for level in rule.levels[at:]:
            slots[level.since_slot] = LONG_AGO
        rule.levels[at].cond.assume_held(ds, t)
        ds.dirty = True
        return True
    return False


def catch_up(ds: RuleState, rule_times: Mapping[str, int]) -> None:
    """Move the device's clock up to the newest device time at which its rules changed an
    alarm (``rule_times``: rule id -> time): readings from before it are older than the state."""
    newest = max((at for rule_id, at in rule_times.items()
                  if any(rule.id == rule_id for rule in ds.program.rules)), default=-1)
    if newest > ds.last_t:
        ds.last_t = newest
        ds.last_fps = b""
        ds.dirty = True


class Unconfirmed:
    """Rules adopted by ``assume_open``, by device: each clears only on evidence."""

    def __init__(self) -> None:
        self.rules: dict[str, set[str]] = {}

    def add(self, device_id: str, rule_id: str) -> None:
        """Wait for evidence before ``rule_id`` of ``device_id`` may clear."""
        self.rules.setdefault(device_id, set()).add(rule_id)

    def discard(self, device_id: str) -> None:
        """Forget the device (dropped, handed over, or its state replaced)."""
        self.rules.pop(device_id, None)

    def may_clear(self, ds: RuleState, rule: CompiledRule, r: Reading | None) -> bool:
        """Whether the rule's alarm may clear now: it is confirmed, or this is evidence."""
        waiting = self.rules.get(ds.device_id)
        if waiting is None or rule.id not in waiting:
            return True
        # evidence: time alone for a rule of no field (stale, schedule, events); else a reading
        # that carries its input ("online" is in every reading: the device is online)
        if (rule.fields or rule.measurements) and not (
                r is not None and ("online" in rule.fields or rule.touched_by(r))):
            return False
        waiting.discard(rule.id)
        if not waiting:
            del self.rules[ds.device_id]
        return True
