"""The rules engine: evaluates compiled rules per reading and on timer ticks.

Which program a device runs is ``programs``; timers are ``timers``; saving and restoring rule
state is ``persistence``; message templates are ``render``.

Fed by the pipeline thread only (not thread-safe by itself). Per device it keeps one
``RuleState`` (slots), evaluates readings in device-time order and calls the alarm sink only
when a rule's result matters: a raise, a severity change, a repeat (a reading that carries the
rule's input while it is breached) or a clear.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from hub.alarms import metrics
from hub.model import Reading
from hub.rules import schema
from hub.rules.compiled import NS, CompiledRule, Env, Level, RuleState
from hub.rules.persistence import (
    StateWriter,
    Unconfirmed,
    assume_open,
    catch_up,
    restore,
    snapshot,
)
from hub.rules.programs import ProgramResolver
from hub.rules.render import render
from hub.rules.store import RuleStateStore, SavedState
from hub.rules.timers import TimerBuckets
from hub.settings import PACKAGE_ROOT, Settings
from hub.sites import Site, SiteRegistry

log = logging.getLogger(__name__)

DEFAULT_RULES_DIR = PACKAGE_ROOT / "device_profiles" / "rules"
SAVE_CHUNK = 1000  # devices snapshotted per tick


class AlarmSink(Protocol):
    """What the engine needs from the alarm service."""

    def raise_or_update(
        self, device_id: str, site: str, kind: str, rule: str, severity: str, value: Any,
        message: str, message_zh: str, at_ns: int, details: dict[str, Any] | None = None,
        *, model: str | None = None,
    ) -> str:
        """Open, reopen, escalate or repeat the alarm of (device, rule)."""
        ...

    def auto_clear(self, device_id: str, rule: str, at_ns: int,
                   note: str | None = None) -> str | None:
        """Clear the alarm of (device, rule) because its condition cleared."""
        ...


_FP = struct.Struct("q")  # a fingerprint (a hash: a signed 64-bit int), native order as "q"


def _fingerprint(r: Reading) -> int:
    try:
        return hash((r.message, r.online, tuple(r.values.items())))
    except TypeError:
        return hash((r.message, r.online, repr(sorted(r.values.items()))))


class RuleEngine:
    """Evaluates the rules of every device kind against readings and timer ticks."""

    def __init__(
        self,
        alarms: AlarmSink,
        *,
        rule_sets: Mapping[str, schema.RuleSet] | None = None,
        rules_dir: Path | None = None,
        sites: SiteRegistry | None = None,
        report_intervals: Mapping[str, float] | None = None,
        model_kinds: Mapping[str, str] | None = None,
        state_store: RuleStateStore | None = None,
        clock: Callable[[], int] = time.time_ns,
        tick_interval_s: float = 1.0,
        save_interval_s: float = 10.0,
        default_timezone: str = "Asia/Shanghai",
        background_save: bool = True,
    ) -> None:
        self.alarms = alarms
        self.rule_sets = dict(rule_sets) if rule_sets is not None else schema.load_rule_dir(
            rules_dir or DEFAULT_RULES_DIR)
        self.sites = sites or SiteRegistry([])
        self.env = Env(dict(report_intervals or {}))
        self.clock = clock
        self.state_store = state_store
        self.tick_ns = int(tick_interval_s * NS)
        self.save_ns = int(save_interval_s * NS)
        self.default_tz = ZoneInfo(default_timezone)
        self.devices: dict[str, RuleState] = {}
        self.programs = ProgramResolver(self.rule_sets, self.sites)
        self._zones: dict[str, ZoneInfo] = {}
        self._last_scan = 0
        self.timers = TimerBuckets()
        self._last_save = clock()
        self._to_save: list[RuleState] = []
        self._writer: StateWriter | None = None
        self.unconfirmed = Unconfirmed()
        if state_store is not None and background_save:
            self._writer = StateWriter(state_store, clock)
            self._writer.start()
        self.programs.validate_overrides(model_kinds)
        if state_store is not None:
            self._load(state_store)
        self._reconcile_open_alarms()

    @classmethod
    def from_settings(
        cls, settings: Settings, alarms: AlarmSink, db: Engine, *,
        profiles: Iterable[Any] = (), sites: SiteRegistry | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> RuleEngine:
        """Build the engine from settings and device profiles (model, kind, report interval)."""
        listed = list(profiles)
        return cls(
            alarms,
            clock=clock,
            rules_dir=settings.rules_dir,
            sites=sites,
            report_intervals={p.model: p.report_interval_s for p in listed},
            model_kinds={p.model: p.kind for p in listed},
            state_store=RuleStateStore(db),
            save_interval_s=settings.rule_state_save_s,
        )

    # -- compiling ---------------------------------------------------------------------------

    def _zone(self, site: Site | None) -> ZoneInfo:
        if site is None:
            return self.default_tz
        zone = self._zones.get(site.timezone)
        if zone is None:
            zone = self._zones[site.timezone] = ZoneInfo(site.timezone)
        return zone

    def _new_state(self, device_id: str, kind: str, site_id: str, model: str) -> RuleState | None:
        entry = self.sites.device(device_id)
        site, device = entry if entry is not None else (self.sites.sites.get(site_id), None)
        program = self.programs.program(kind, site, device)
        if program is None:
            return None
        hours = None
        if device is not None and device.active_hours is not None:
            ah = device.active_hours
            hours = (ah.start.hour * 3600 + ah.start.minute * 60 + ah.start.second,
                     ah.end.hour * 3600 + ah.end.minute * 60 + ah.end.second)
        ds = RuleState(device_id, kind, site_id, model, program, self._zone(site), hours)
        self.devices[device_id] = ds
        return ds

    def forget(self, device_id: str) -> None:
        """Drop a device's rule state (onboarded, moved or retired): it is rebuilt for its site
        at its next reading; the timer wheel skips the old one."""
        ds = self.devices.pop(device_id, None)
        self.unconfirmed.discard(device_id)
        if ds is not None:
            ds.scheduled = None

    # -- evaluation --------------------------------------------------------------------------

    def on_reading(self, reading: Reading) -> None:
        """Evaluate one reading; older-than-newest and duplicate readings change nothing."""
        if reading.implied:
            # The data message that implied it comes next and sets ``online`` itself: one
            # evaluation, not two, for a device's first message (bench/pipeline_micro.py).
            return
        ds = self.devices.get(reading.device_id)
        if ds is None:
            ds = self._new_state(reading.device_id, reading.kind, reading.site, reading.model)
            if ds is None:
                metrics.RULE_READINGS_IGNORED.labels("no_rules").inc()
                return
        elif not ds.model and reading.model:
            ds.model = reading.model
        t = reading.time_ns
        receive_timed = t == reading.received_ns
        if receive_timed and ds.clock_known:
            # receive-time readings (status, bad device clock) move to the device's clock domain
            t -= ds.offset
        if t < ds.last_t:
            metrics.RULE_READINGS_IGNORED.labels("out_of_order").inc()
            return
        fp = _fingerprint(reading)
        if t == ds.last_t:
            # fingerprints of the readings at last_t: one int (the usual case), or up to eight
            # packed in bytes (every device's first report brings a status reading at the same
            # time: as a tuple of ints that was ~140 bytes a device, packed it is 56)
            fps = ds.last_fps
            seen = _FP.pack(fps) if isinstance(fps, int) else fps
            if fp in memoryview(seen).cast("q"):
                metrics.RULE_READINGS_IGNORED.labels("duplicate").inc()
                return
            ds.last_fps = seen[-7 * _FP.size:] + _FP.pack(fp)
        elif not receive_timed or ds.clock_known:
            # A receive-timed reading before any device-timed one (a retained "online" at
            # connect) must not set the device's clock: its telemetry may be hours behind.
            ds.last_t = t
            ds.last_fps = fp
        if not receive_timed:
            ds.offset = reading.received_ns - reading.time_ns
            ds.clock_known = True
        # The latest receipt, not the largest: equal in wall-clock mode; in device-clock mode a
        # message stamped before any device time was seen must not pin the device as fresh.
        ds.last_rx = reading.received_ns
        program = ds.program
        values = ds.values
        changed: list[Any] | None = None
        rv = reading.values
        for name, at in program.field_at:
            v = rv.get(name)
            if v is not None and values[at] != v:
                if changed is None:
                    changed = list(values)
                changed[at] = v
        online = True if reading.online is None else reading.online
        at = program.online_at
        if (values if changed is None else changed)[at] is not online:
            if changed is None:
                changed = list(values)
            changed[at] = online
        if changed is not None:
            ds.values = tuple(changed)
            ds.dirty = True
        self._evaluate(ds, reading, t, self.clock())

    def on_tick(self, now_ns: int | None = None) -> None:
        """Run due timers (durations, staleness, event holds, schedules); save state at times."""
        now = self.clock() if now_ns is None else now_ns
        # A clock that went back (device-clock mode starts from the wall clock) counts as due.
        if now - self._last_scan >= self.tick_ns or now < self._last_scan:
            if now < self._last_scan:
                self.timers.reschedule_all(self.devices.values())
            self._last_scan = now
            for ds in self.timers.pop_due(now):
                deadline = ds.deadline
                if deadline is not None and deadline + ds.offset <= now:
                    t = max(now - ds.offset, ds.last_t)
                    self._evaluate(ds, None, t, now)
                else:
                    self.timers.schedule(ds)
        if self.state_store is not None and (
            now - self._last_save >= self.save_ns or now < self._last_save
        ):
            self._last_save = now
            self._to_save = [ds for ds in self.devices.values() if ds.dirty]
        if self._to_save:
            # a chunk a tick: the pipeline thread never pauses long for a save (alarm latency)
            chunk, self._to_save = self._to_save[:SAVE_CHUNK], self._to_save[SAVE_CHUNK:]
            self._save_batch(chunk)

    def _evaluate(self, ds: RuleState, r: Reading | None, t: int, now: int) -> None:
        env = self.env
        deadline: int | None = None
        index = -1
        for rule in ds.program.rules:
            index += 1
            try:
                best = -1
                best_level: Level | None = None
                j = -1
                for level in rule.levels:
                    j += 1
                    held = level.eval(ds, r, t, now, env)
                    since = ds.slots[level.since_slot]
                    if held:
                        if since is None:
                            since = ds.writable_slots()[level.since_slot] = t
                            ds.dirty = True
                        if best >= 0:
                            if t - since < level.for_ns:
                                # a more severe level holds: this one counts as held long enough
                                ds.writable_slots()[level.since_slot] = t - level.for_ns
                        elif t - since >= level.for_ns:
                            best, best_level = j, level
                        else:
                            due = since + level.for_ns
                            if deadline is None or due < deadline:
                                deadline = due
                    elif since is not None:
                        ds.writable_slots()[level.since_slot] = None
                        ds.dirty = True
                    if level.deadline is not None:
                        due_c = level.deadline(ds, t, env)
                        if due_c is not None and (deadline is None or due_c < deadline):
                            deadline = due_c
                previous = ds.active[index]
                if best_level is not None:
                    if previous != best or (r is not None and rule.touched_by(r)):
                        ds.set_active(index, best)
                        ds.dirty = True
                        self._raise(ds, rule, best_level, t)
                elif previous >= 0 and self.unconfirmed.may_clear(ds, rule, r):
                    ds.set_active(index, -1)
                    ds.dirty = True
                    self.alarms.auto_clear(ds.device_id, rule.id, t)
            except Exception:
                metrics.RULE_ERRORS.labels(rule.id).inc()
                log.exception("rule %s failed for device %s", rule.id, ds.device_id)
        ds.deadline = deadline
        # the test TimerBuckets.schedule makes first, here: most evaluations leave it as it was
        if deadline is not None and (ds.scheduled is None or deadline + ds.offset < ds.scheduled):
            self.timers.schedule(ds)

    def _raise(self, ds: RuleState, rule: CompiledRule, level: Level, t: int) -> None:
        value = level.cond.value(ds)
        values = ds.program.value_dict(ds.values)
        self.alarms.raise_or_update(
            ds.device_id, ds.site, ds.kind, rule.id, level.severity, value,
            render(level.message_en, values, value), render(level.message_zh, values, value),
            t, None, model=ds.model or None,
        )

    # -- persistence -------------------------------------------------------------------------

    def save(self, everything: bool = False) -> int:
        """Persist the state of changed devices (all with ``everything``); return the count."""
        if self.state_store is None:
            return 0
        self._to_save = []
        return self._save_batch(
            [ds for ds in self.devices.values() if ds.dirty or everything], everything)

    def _save_batch(self, devices: list[RuleState], everything: bool = False) -> int:
        batch = []
        for ds in devices:
            if ds.dirty or everything:
                ds.dirty = False
                batch.append(snapshot(ds))
        if not batch:
            return 0
        assert self.state_store is not None
        if self._writer is not None:
            self._writer.batches.put(batch)
        else:
            self.state_store.save(batch, self.clock())
        return len(batch)

    def stop(self) -> None:
        """Save every changed device and wait for the writer."""
        self.save()
        if self._writer is not None:
            self._writer.batches.put(None)
            self._writer.join(timeout=30)
            self._writer = None

    def _load(self, store: RuleStateStore) -> None:
        self.adopt(store.load_all())
        log.info("rule state restored for %d devices", len(self.devices))

    def adopt(self, saved: Iterable[SavedState],
              open_alarms: Iterable[tuple[str, str, str, str, str]] = ()) -> int:
        """Take devices over (at start, or from another hub of a cluster): their saved state,
        then their open alarms (device, site, kind, rule, severity); return how many."""
        now = self.clock()
        adopted: list[str] = []
        for state in saved:
            self._drop(state.device_id)
            ds = self._new_state(state.device_id, state.kind, state.site, state.model)
            if ds is None:
                continue
            restore(ds, state, now)
            self.timers.schedule(ds)
            adopted.append(ds.device_id)
        if self.state_store is not None:
            self._catch_up(self.state_store.rule_clears(adopted))  # closed since the save
        self._reconcile(open_alarms)
        return len(adopted)

    def release(self, device_ids: Iterable[str]) -> list[SavedState]:
        """Hand devices over to another hub: their snapshots (for the caller to save); this
        engine forgets them (no timer, no later save)."""
        return [snapshot(ds) for ds in map(self._drop, device_ids) if ds is not None]

    def _drop(self, device_id: str) -> RuleState | None:
        ds = self.devices.pop(device_id, None)
        self.unconfirmed.discard(device_id)
        if ds is not None:
            ds.scheduled = None  # its timer entry is skipped when it comes due
            ds.deadline = None
            ds.dirty = False  # nor saved by a save already under way
        return ds

    def _reconcile_open_alarms(self) -> None:
        open_alarms: Callable[[], Iterable[tuple[str, str, str, str, str]]] | None = getattr(
            self.alarms, "open_alarms", None)
        if open_alarms is not None:
            self._reconcile(open_alarms())

    def _reconcile(self, open_alarms: Iterable[tuple[str, str, str, str, str]]) -> None:
        now = self.clock()
        for device_id, site, kind, rule_id, severity in open_alarms:
            ds = self.devices.get(device_id)
            if ds is None:
                ds = self._new_state(device_id, kind, site, "")
                if ds is None:
                    continue
                ds.last_rx = now
                ds.deadline = now
                self.timers.schedule(ds)
            if assume_open(ds, rule_id, severity, max(ds.last_t, now - ds.offset)):
                self.unconfirmed.add(device_id, rule_id)
        rule_times = getattr(self.alarms, "rule_times", None)
        if rule_times is not None:
            self._catch_up(rule_times())

    def _catch_up(self, rule_times: Mapping[str, Mapping[str, int]]) -> None:
        for device_id, times in rule_times.items():
            ds = self.devices.get(device_id)
            if ds is not None:
                catch_up(ds, times)
