"""The rules engine: evaluates compiled rules per reading and on timer ticks.

Fed by the pipeline thread only (not thread-safe by itself). Per device it keeps one
``RuleState`` (slots), evaluates readings in device-time order and calls the alarm sink only
when a rule's result matters: a raise, a severity change, a repeat (a reading that carries the
rule's input while it is breached) or a clear.
"""

from __future__ import annotations

import heapq
import logging
import queue
import re
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from hub.alarms import metrics
from hub.model import Reading
from hub.rules import schema
from hub.rules.compiled import NS, CompiledRule, Env, Level, Program, RuleState
from hub.rules.store import RuleStateStore, SavedState
from hub.settings import PACKAGE_ROOT, Settings
from hub.sites import UNASSIGNED_SITE, Device, Site, SiteRegistry

log = logging.getLogger(__name__)

DEFAULT_RULES_DIR = PACKAGE_ROOT / "device_profiles" / "rules"
SAVE_CHUNK = 1000  # devices snapshotted per tick
TIMER_BUCKET_NS = NS  # the timers' buckets: one per second


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


class _Ctx(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "?"


_PLACEHOLDER = re.compile(r"\{(\w+)(?:![rsa])?(?::[^{}]*)?\}")


def render(template: str, values: Mapping[str, Any], value: Any) -> str:
    """Fill a message template; a missing or badly typed value shows plainly, never raises."""
    ctx = _Ctx(values)
    ctx["value"] = "?" if value is None else value
    try:
        return template.format_map(ctx)
    except (ValueError, TypeError, IndexError, AttributeError, KeyError):
        return _PLACEHOLDER.sub(lambda m: str(ctx[m.group(1)]), template)


_FP = struct.Struct("q")  # a fingerprint (a hash: a signed 64-bit int), native order as "q"


def _due_time(entry: tuple[int, RuleState]) -> int:
    return entry[0]


def _fingerprint(r: Reading) -> int:
    try:
        return hash((r.message, r.online, tuple(r.values.items())))
    except TypeError:
        return hash((r.message, r.online, repr(sorted(r.values.items()))))


class _Writer(threading.Thread):
    """Writes rule-state snapshots off the pipeline thread (the newest batch wins per device)."""

    def __init__(self, store: RuleStateStore, clock: Callable[[], int]) -> None:
        super().__init__(name="rule-state-writer", daemon=True)
        self.store = store
        self.clock = clock
        self.batches: queue.Queue[list[SavedState] | None] = queue.Queue()

    def run(self) -> None:
        while True:
            batch = self.batches.get()
            if batch is None:
                return
            try:
                self.store.save(batch, self.clock())
            except Exception:
                log.exception("saving rule state failed (%d devices)", len(batch))


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
        self._programs: dict[tuple[str, str, str | None], Program | None] = {}
        self._zones: dict[str, ZoneInfo] = {}
        self._last_scan = 0
        self._buckets: dict[int, list[RuleState]] = {}  # timers: see _schedule
        self._bucket_keys: list[int] = []
        self._last_save = clock()
        self._to_save: list[RuleState] = []
        self._writer: _Writer | None = None
        if state_store is not None and background_save:
            self._writer = _Writer(state_store, clock)
            self._writer.start()
        self.validate_overrides(model_kinds)
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

    def validate_overrides(self, model_kinds: Mapping[str, str] | None = None) -> None:
        """Compile every site's and device's overrides now; raise RuleError on the first bad one."""
        kinds = set(self.rule_sets)
        for site in self.sites.sites.values():
            known: set[str] = set(kinds)
            for rs in self.rule_sets.values():
                known |= set(rs.rules)
            for key, override in site.rules.items():
                if key not in known and not schema.is_complete_rule(override):
                    raise schema.RuleError(
                        f"site {site.site}: rules: unknown rule or kind {key!r} "
                        f"(known kinds: {', '.join(sorted(kinds))})")
            for kind in kinds:
                self._program(kind, site, None)
            for device in site.devices:
                if not device.rules:
                    continue
                known_kind = (model_kinds or {}).get(device.model)
                candidates = [known_kind] if known_kind in kinds else [
                    k for k in sorted(kinds)
                    if all(r in self.rule_sets[k].rules or schema.is_complete_rule(v)
                           for r, v in device.rules.items())
                ]
                if not candidates:
                    raise schema.RuleError(
                        f"site {site.site} device {device.id}: rules: no device kind has "
                        f"rules {', '.join(sorted(device.rules))}")
                for kind_name in candidates:
                    if kind_name is not None:
                        self._program(kind_name, site, device)

    def _program(self, kind: str, site: Site | None, device: Device | None) -> Program | None:
        key = (kind, site.site if site else UNASSIGNED_SITE,
               device.id if device is not None and device.rules else None)
        if key in self._programs:
            return self._programs[key]
        rule_set = self.rule_sets.get(kind)
        if rule_set is None:
            self._programs[key] = None
            return None
        layers: list[tuple[str, Mapping[str, Any]]] = []
        if site is not None and site.rules:
            layers.append((f"site {site.site}", schema.site_overrides_for_kind(
                site.rules, kind, set(self.rule_sets))))
        rules = schema.resolve_rules(rule_set, *layers, strict_ids=False)
        if device is not None and device.rules:
            dev_set = schema.RuleSet(kind=kind, rules=rules)
            rules = schema.resolve_rules(
                dev_set, (f"site {key[1]} device {device.id}", device.rules), strict_ids=True)
        program = Program(rules)
        self._programs[key] = program
        return program

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
        program = self._program(kind, site, device)
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

    # -- evaluation --------------------------------------------------------------------------

    def on_reading(self, reading: Reading) -> None:
        """Evaluate one reading; older-than-newest and duplicate readings change nothing."""
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
                self._reschedule_all()
            self._last_scan = now
            for ds in self._pop_due(now):
                deadline = ds.deadline
                if deadline is not None and deadline + ds.offset <= now:
                    t = max(now - ds.offset, ds.last_t)
                    self._evaluate(ds, None, t, now)
                else:
                    self._schedule(ds)
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
        for index, rule in enumerate(ds.program.rules):
            try:
                best = -1
                best_level: Level | None = None
                for j, level in enumerate(rule.levels):
                    held = level.cond.eval(ds, r, t, now, env)
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
                            deadline = due if deadline is None else min(deadline, due)
                    elif since is not None:
                        ds.writable_slots()[level.since_slot] = None
                        ds.dirty = True
                    if level.cond.timed:
                        due_c = level.cond.deadline(ds, t, env)
                        if due_c is not None:
                            deadline = due_c if deadline is None else min(deadline, due_c)
                previous = ds.active[index]
                if best_level is not None:
                    if previous != best or (r is not None and rule.touched_by(r)):
                        ds.set_active(index, best)
                        ds.dirty = True
                        self._raise(ds, rule, best_level, t)
                elif previous >= 0:
                    ds.set_active(index, -1)
                    ds.dirty = True
                    self.alarms.auto_clear(ds.device_id, rule.id, t)
            except Exception:
                metrics.RULE_ERRORS.labels(rule.id).inc()
                log.exception("rule %s failed for device %s", rule.id, ds.device_id)
        ds.deadline = deadline
        if deadline is not None:
            self._schedule(ds)

    # -- timers: devices in buckets of one second, the buckets' numbers in a heap ---------------
    # A tick pops only what is due instead of scanning every device (100,000 devices took
    # 10-20 ms a tick). A bucket holds a list slot per device, not a (due, seq, device) tuple
    # (~90 bytes less a device: 8 MB at 100,000). A later deadline leaves the earlier entry in
    # place; when that one pops the device is looked at and scheduled again, so there is about
    # one entry per device. An entry whose device is now due in another bucket, or was handled
    # already, is skipped.

    def _schedule(self, ds: RuleState) -> None:
        deadline = ds.deadline
        if deadline is None:
            return
        due = deadline + ds.offset
        if ds.scheduled is None or due < ds.scheduled:
            ds.scheduled = due
            key = due // TIMER_BUCKET_NS
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = []
                heapq.heappush(self._bucket_keys, key)
            bucket.append(ds)

    def _pop_due(self, now: int) -> list[RuleState]:
        keys = self._bucket_keys
        due_now: list[tuple[int, RuleState]] = []
        while keys and keys[0] <= now // TIMER_BUCKET_NS:
            key = heapq.heappop(keys)
            waiting = []
            for ds in self._buckets.pop(key):
                due = ds.scheduled
                if due is None or due // TIMER_BUCKET_NS != key:
                    continue  # handled already, or due earlier in another bucket
                if due <= now:
                    ds.scheduled = None
                    due_now.append((due, ds))
                else:
                    waiting.append(ds)  # later in the current second
            if waiting:
                self._buckets[key] = waiting
                heapq.heappush(keys, key)
                break
        due_now.sort(key=_due_time)  # in due order; stable, so ties keep scheduling order
        return [ds for _, ds in due_now]

    def _reschedule_all(self) -> None:
        self._buckets = {}
        self._bucket_keys = []
        for ds in self.devices.values():
            ds.scheduled = None
            self._schedule(ds)

    def _raise(self, ds: RuleState, rule: CompiledRule, level: Level, t: int) -> None:
        value = level.cond.value(ds)
        values = ds.program.value_dict(ds.values)
        self.alarms.raise_or_update(
            ds.device_id, ds.site, ds.kind, rule.id, level.severity, value,
            render(level.message_en, values, value), render(level.message_zh, values, value),
            t, None, model=ds.model or None,
        )

    # -- persistence -------------------------------------------------------------------------

    def _snapshot(self, ds: RuleState) -> SavedState:
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
                batch.append(self._snapshot(ds))
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
        now = self.clock()
        for saved in store.load_all():
            ds = self._new_state(saved.device_id, saved.kind, saved.site, saved.model)
            if ds is None:
                continue
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
            self._restore_active(ds, data.get("a") or {})
            ds.deadline = now - ds.offset
            self._schedule(ds)
        log.info("rule state restored for %d devices", len(self.devices))

    @staticmethod
    def _restore_active(ds: RuleState, active: Mapping[str, str]) -> None:
        for index, rule in enumerate(ds.program.rules):
            severity = active.get(rule.id)
            if severity is None:
                continue
            levels = [lv.severity for lv in rule.levels]
            ds.set_active(index, levels.index(severity) if severity in levels else 0)

    def _reconcile_open_alarms(self) -> None:
        open_alarms: Callable[[], Iterable[tuple[str, str, str, str, str]]] | None = getattr(
            self.alarms, "open_alarms", None)
        if open_alarms is None:
            return
        now = self.clock()
        for device_id, site, kind, rule_id, severity in open_alarms():
            ds = self.devices.get(device_id)
            if ds is None:
                ds = self._new_state(device_id, kind, site, "")
                if ds is None:
                    continue
                ds.last_rx = now
                ds.deadline = now
                self._schedule(ds)
            for index, rule in enumerate(ds.program.rules):
                if rule.id == rule_id and ds.active[index] < 0:
                    self._restore_active(ds, {rule_id: severity})
