"""Rules compiled to small plain objects that evaluate against per-device slot lists.

A compiled condition owns a few slot indexes in its device's ``slots`` list (latches, timers,
windows) and never allocates per reading beyond what its window needs. Times are device-time
nanoseconds; ``RuleState.offset`` maps them to the engine clock.
"""

from __future__ import annotations

import hashlib
import json
import operator
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from hub.model import FieldValue, Reading
from hub.rules import schema as s
from hub.sites import UNASSIGNED_SITE

NS = 1_000_000_000
Test = Callable[[Any], bool]
_NOT_SIGNED: Any = {"levels": {"__all__": {"readiness"}}}


class RuleState:
    """Everything the engine keeps per device: kept small, slots instead of dicts."""

    __slots__ = (
        "active",
        "clock_known",
        "deadline",
        "device_id",
        "dirty",
        "hours",
        "kind",
        "last_fps",
        "last_rx",
        "last_t",
        "model",
        "offset",
        "program",
        "scheduled",
        "site",
        "slots",
        "tz",
        "values",
    )

    def __init__(
        self,
        device_id: str,
        kind: str,
        site: str,
        model: str,
        program: Program,
        tz: ZoneInfo,
        hours: tuple[int, int] | None,
    ) -> None:
        self.device_id = device_id
        self.kind = kind
        self.site = site
        self.model = model
        self.program = program
        self.tz = tz
        self.hours = hours
        self.last_t = -1
        self.last_fps: int | bytes = b""  # one int, or several packed (see RuleEngine)
        self.last_rx = 0
        self.offset = 0
        self.clock_known = False  # True once a device-timed reading gave the offset
        # the last known value of each name of the program's value layout (None: unknown), the
        # program's shared all-None tuple until the first reading: no dict per device
        self.values: tuple[FieldValue | None, ...] = program.no_values
        # condition slots: the program's shared all-None tuple until a condition writes one
        self.slots: list[Any] | tuple[Any, ...] = program.no_slots
        # the active level per rule (-1 none): the program's shared tuple until one changes
        self.active: list[int] | tuple[int, ...] = program.no_active
        self.deadline: int | None = None
        self.scheduled: int | None = None  # when the engine's timers next look at it
        self.dirty = False

    def writable_slots(self) -> list[Any]:
        """The slots as a list of this device's own (copied from the shared tuple once)."""
        slots = self.slots
        if isinstance(slots, tuple):
            self.slots = slots = list(slots)
        return slots

    def set_active(self, index: int, level: int) -> None:
        """Set the active level of the rule at ``index`` (-1: none)."""
        active = self.active
        if isinstance(active, tuple):
            self.active = active = list(active)
        active[index] = level


class Env:
    """What conditions may read besides the device state (shared, not per reading)."""

    __slots__ = ("report_intervals",)

    def __init__(self, report_intervals: Mapping[str, float]) -> None:
        self.report_intervals = report_intervals


def _is_number(value: Any) -> bool:
    # exact types first: isinstance with a union goes through UnionType (every threshold, every
    # reading: bench/pipeline_micro.py)
    kind = type(value)
    if kind is float or kind is int:
        return True
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def compile_match(match: s.Match) -> Test:
    """Turn a Match into a predicate on one value."""
    tests: list[Test] = []
    if match.equals is not None:
        eq = match.equals
        if isinstance(eq, bool):
            tests.append(lambda v: isinstance(v, bool) and v == eq)
        else:
            tests.append(lambda v: not isinstance(v, bool) and v == eq)
    if match.in_ is not None:
        bools = frozenset(x for x in match.in_ if isinstance(x, bool))
        others = frozenset(x for x in match.in_ if not isinstance(x, bool))
        tests.append(lambda v: (v in bools) if isinstance(v, bool) else (v in others))
    if match.lt is not None:
        lt = match.lt
        tests.append(lambda v: _is_number(v) and v < lt)
    if match.le is not None:
        le = match.le
        tests.append(lambda v: _is_number(v) and v <= le)
    if match.gt is not None:
        gt = match.gt
        tests.append(lambda v: _is_number(v) and v > gt)
    if match.ge is not None:
        ge = match.ge
        tests.append(lambda v: _is_number(v) and v >= ge)
    if match.outside is not None:
        lo, hi = match.outside
        tests.append(lambda v: _is_number(v) and (v < lo or v > hi))
    if len(tests) == 1:
        return tests[0]
    return lambda v: all(t(v) for t in tests)


class Cond:
    """Base of compiled conditions."""

    fields: frozenset[str] = frozenset()
    measurements: frozenset[str] = frozenset()
    events: frozenset[str] = frozenset()
    uses_online = False
    timed = False  # True where ``deadline`` can return a time (the engine skips it otherwise)
    timed_children: tuple[Cond, ...] = ()

    def eval(self, ds: RuleState, r: Reading | None, t: int, now: int, env: Env) -> bool:
        """Update the condition's slots for a reading (None on a timer tick); return truth."""
        raise NotImplementedError

    def value(self, ds: RuleState) -> Any:
        """Return the value that the last evaluation is about (for messages and the alarm)."""
        return None

    def deadline(self, ds: RuleState, t: int, env: Env) -> int | None:
        """Return the device time at which a tick may change the result, if any."""
        return None

    def bind(self, value_at: Mapping[str, int]) -> None:
        """Learn where the program's value layout keeps the fields this condition reads."""

    def assume_held(self, ds: RuleState, t: int) -> None:
        """Set latches and holds as if the condition held at ``t`` (an alarm adopted without
        saved rule state); conditions of the last values alone have nothing to set."""


class Threshold(Cond):
    """Latched threshold with hysteresis."""

    def __init__(self, spec: s.Threshold, alloc: Callable[[], int]) -> None:
        self.field = spec.field
        self.fields = frozenset({spec.field})
        self.slot = alloc()
        self.clear = spec.at if spec.clear_at is None else spec.clear_at
        self.at = spec.at
        # operator functions, not lambdas: a C call per reading instead of a Python frame
        self.breach, self.cleared = _THRESHOLD_OPS[spec.op]

    def eval(self, ds: RuleState, r: Reading | None, t: int, now: int, env: Env) -> bool:
        """Latch on breach, unlatch past the clear level; keep the latch without a value."""
        latched = ds.slots[self.slot] is True
        if r is None:
            return latched
        v = r.values.get(self.field)
        kind = type(v)
        if kind is not float and kind is not int and not _is_number(v):
            return latched
        new = not self.cleared(v, self.clear) if latched else bool(self.breach(v, self.at))
        if new != latched:
            ds.writable_slots()[self.slot] = new
            ds.dirty = True
        return new

    def value(self, ds: RuleState) -> Any:
        """Return the field's last value."""
        return ds.values[self.value_at]

    def bind(self, value_at: Mapping[str, int]) -> None:
        """Learn where the field's last value is kept."""
        self.value_at = value_at[self.field]

    def assume_held(self, ds: RuleState, t: int) -> None:
        """Latched: the clear level (hysteresis) unlatches it."""
        ds.writable_slots()[self.slot] = True


# (breach, cleared) per operator: ``v < at`` breaches, ``v >= clear`` clears, and so on
_THRESHOLD_OPS: dict[str, tuple[Callable[[Any, Any], bool], Callable[[Any, Any], bool]]] = {
    "<": (operator.lt, operator.ge),
    "<=": (operator.le, operator.gt),
    ">": (operator.gt, operator.le),
    ">=": (operator.ge, operator.lt),
}


class State(Cond):
    """Last known value of a field matches."""

    def __init__(self, spec: s.State) -> None:
        self.field = spec.field
        self.fields = frozenset({spec.field})
        self.test = compile_match(spec)
        self.uses_online = spec.field == "online"

    def eval(self, ds: RuleState, r: Reading | None, t: int, now: int, env: Env) -> bool:
        """Test the last known value (absent means false)."""
        v = ds.values[self.at]
        return v is not None and self.test(v)

    def value(self, ds: RuleState) -> Any:
        """Return the field's last value."""
        return ds.values[self.at]

    def bind(self, value_at: Mapping[str, int]) -> None:
        """Learn where the field's last value is kept."""
        self.at = value_at[self.field]


class Event(Cond):
    """An event seen within ``hold_s`` and not cleared by a clear event since."""

    timed = True

    def __init__(self, spec: s.Event, alloc: Callable[[], int]) -> None:
        self.names = frozenset(spec.events)
        self.clear_names = frozenset(spec.clear_events)
        self.events = self.names | self.clear_names
        self.hold = int(spec.hold_s * NS)
        self.slot = alloc()

    def eval(self, ds: RuleState, r: Reading | None, t: int, now: int, env: Env) -> bool:
        """Remember a matching event until it expires or a clear event arrives."""
        if r is not None:
            ev = r.values.get("event")
            if ev in self.names:
                ds.writable_slots()[self.slot] = [t + self.hold, ev]
                ds.dirty = True
            elif ev in self.clear_names and ds.slots[self.slot] is not None:
                ds.writable_slots()[self.slot] = None
                ds.dirty = True
        held = ds.slots[self.slot]
        if held is None:
            return False
        if t > held[0]:
            ds.writable_slots()[self.slot] = None
            ds.dirty = True
            return False
        return True

    def value(self, ds: RuleState) -> Any:
        """Return the event name."""
        held = ds.slots[self.slot]
        return None if held is None else held[1]

    def deadline(self, ds: RuleState, t: int, env: Env) -> int | None:
        """Expiry of the held event."""
        held = ds.slots[self.slot]
        return None if held is None else int(held[0]) + 1

    def assume_held(self, ds: RuleState, t: int) -> None:
        """Held for ``hold_s`` from ``t`` (when the event came is not known)."""
        ds.writable_slots()[self.slot] = [t + self.hold, min(self.names)]


class Rate(Cond):
    """Rate of change per minute over a short window, latched with optional hysteresis."""

    MAX_SAMPLES = 16

    def __init__(self, spec: s.Rate, alloc: Callable[[], int]) -> None:
        self.field = spec.field
        self.fields = frozenset({spec.field})
        self.window = int(spec.window_s * NS)
        self.min_span = max(int(spec.min_span_s * NS), 1)
        self.rising = spec.op == ">="
        self.at = spec.per_minute
        self.clear = spec.per_minute if spec.clear_per_minute is None else spec.clear_per_minute
        self.samples = alloc()
        self.latch = alloc()
        self.last = alloc()

    def eval(self, ds: RuleState, r: Reading | None, t: int, now: int, env: Env) -> bool:
        """Add the sample, recompute the rate, apply the latch."""
        latched = ds.slots[self.latch] is True
        if r is None:
            return latched
        v = r.values.get(self.field)
        if not _is_number(v):
            return latched
        samples: list[list[float]] | None = ds.slots[self.samples]
        if samples is None:
            samples = ds.writable_slots()[self.samples] = []
        samples.append([t, v])  # type: ignore[list-item]
        horizon = t - self.window
        while samples and samples[0][0] < horizon:
            samples.pop(0)
        if len(samples) > self.MAX_SAMPLES:
            del samples[0]
        ds.dirty = True
        span = samples[-1][0] - samples[0][0]
        if len(samples) < 2 or span < self.min_span:
            ds.writable_slots()[self.last] = None
            new = False
        else:
            rate = (samples[-1][1] - samples[0][1]) * 60 * NS / span
            ds.writable_slots()[self.last] = rate
            if self.rising:
                new = rate >= self.clear if latched else rate >= self.at
            else:
                new = rate <= self.clear if latched else rate <= self.at
        ds.writable_slots()[self.latch] = new
        return new

    def value(self, ds: RuleState) -> Any:
        """Return the last rate per minute."""
        rate = ds.slots[self.last]
        return None if rate is None else round(rate, 3)

    def assume_held(self, ds: RuleState, t: int) -> None:
        """Latched: the next rate past the clear rate unlatches it."""
        ds.writable_slots()[self.latch] = True


class Stale(Cond):
    """No data for N report intervals; false again on the next reading."""

    timed = True

    def __init__(self, spec: s.Stale, alloc: Callable[[], int]) -> None:
        self.intervals = spec.intervals
        self.slot = alloc()

    def _limit(self, ds: RuleState, env: Env) -> int | None:
        interval = env.report_intervals.get(ds.model)
        if interval is None or ds.site == UNASSIGNED_SITE:
            return None  # a device no site lists owes no reports: it cannot be overdue
        return int(self.intervals * interval * NS)

    def eval(self, ds: RuleState, r: Reading | None, t: int, now: int, env: Env) -> bool:
        """Reset on data; on a tick compare the engine clock with the last receive time."""
        latched = ds.slots[self.slot] is True
        if r is not None:
            new = False
        else:
            limit = self._limit(ds, env)
            new = latched or (limit is not None and now - ds.last_rx > limit)
        if new != latched:
            ds.writable_slots()[self.slot] = new
            ds.dirty = True
        return new

    def value(self, ds: RuleState) -> Any:
        """Return nothing: the message says enough."""
        return None

    def deadline(self, ds: RuleState, t: int, env: Env) -> int | None:
        """When the device becomes stale, in device time."""
        limit = self._limit(ds, env)
        if limit is None or ds.slots[self.slot] is True:
            return None
        return ds.last_rx + limit + 1 - ds.offset

    def assume_held(self, ds: RuleState, t: int) -> None:
        """Stale until the next reading."""
        ds.writable_slots()[self.slot] = True


class Schedule(Cond):
    """Inside the device's daily active hours (local time of its site, may cross midnight)."""

    timed = True

    def __init__(self, spec: s.Schedule) -> None:
        self.inside = spec.inside
        self.when_unset = spec.when_unset

    @staticmethod
    def _second_of_day(ds: RuleState, t: int) -> int:
        local = datetime.fromtimestamp(t / NS, ds.tz)
        return local.hour * 3600 + local.minute * 60 + local.second

    def eval(self, ds: RuleState, r: Reading | None, t: int, now: int, env: Env) -> bool:
        """Test the time against the window."""
        if ds.hours is None:
            return self.when_unset
        start, end = ds.hours
        sod = self._second_of_day(ds, t)
        if start == end:
            inside = True
        elif start < end:
            inside = start <= sod < end
        else:
            inside = sod >= start or sod < end
        return inside if self.inside else not inside

    def deadline(self, ds: RuleState, t: int, env: Env) -> int | None:
        """The next window boundary."""
        if ds.hours is None or ds.hours[0] == ds.hours[1]:
            return None
        sod = self._second_of_day(ds, t)
        waits = [((b - sod) % 86400) or 86400 for b in ds.hours]
        return t + min(waits) * NS - (t % NS) + 1


class Count(Cond):
    """At least N matching readings within a window."""

    timed = True

    def __init__(self, spec: s.Count, alloc: Callable[[], int]) -> None:
        self.names = frozenset(spec.events or ())
        self.events = self.names
        self.field = spec.field
        self.fields = frozenset({spec.field}) if spec.field else frozenset()
        self.test = compile_match(spec.match) if spec.match is not None else None
        self.at_least = spec.at_least
        self.window = int(spec.window_s * NS)
        self.slot = alloc()

    def _matches(self, r: Reading) -> bool:
        if self.names and r.values.get("event") in self.names:
            return True
        if self.field is not None and self.test is not None:
            v = r.values.get(self.field)
            return v is not None and self.test(v)
        return False

    def eval(self, ds: RuleState, r: Reading | None, t: int, now: int, env: Env) -> bool:
        """Record a matching reading, forget old ones, compare the count."""
        times: list[int] | None = ds.slots[self.slot]
        if r is not None and self._matches(r):
            if times is None:
                times = ds.writable_slots()[self.slot] = []
            times.append(t)
            if len(times) > self.at_least:
                del times[0]
            ds.dirty = True
        if not times:
            return False
        horizon = t - self.window
        while times and times[0] <= horizon:
            times.pop(0)
            ds.dirty = True
        return len(times) >= self.at_least

    def value(self, ds: RuleState) -> Any:
        """Return the count within the window."""
        times = ds.slots[self.slot]
        return len(times) if times else 0

    def deadline(self, ds: RuleState, t: int, env: Env) -> int | None:
        """When the oldest counted reading leaves the window."""
        times = ds.slots[self.slot]
        return int(times[0]) + self.window + 1 if times else None

    def assume_held(self, ds: RuleState, t: int) -> None:
        """Counted at ``t``: held for one window unless more come."""
        ds.writable_slots()[self.slot] = [t] * self.at_least


class Points(Cond):
    """Points of a measurement whose field matches; the value lists their tag values."""

    def __init__(self, spec: s.Points, alloc: Callable[[], int]) -> None:
        self.measurement = spec.measurement
        self.measurements = frozenset({spec.measurement})
        self.tag = spec.tag
        self.field = spec.field
        self.test = compile_match(spec.match)
        self.where = tuple(spec.where.items())
        self.slot = alloc()

    def eval(self, ds: RuleState, r: Reading | None, t: int, now: int, env: Env) -> bool:
        """Recompute the matching tags when the reading carries the measurement."""
        if r is not None:
            found: list[str] | None = None
            for point in r.points:
                if point.measurement != self.measurement:
                    continue
                if found is None:
                    found = []
                if any(point.field(k) != v for k, v in self.where):
                    continue
                v = point.field(self.field)
                if v is not None and self.test(v):
                    found.append(point.tag(self.tag) or "?")
            if found is not None:
                found.sort(key=lambda x: (len(x), x))
                if found != (ds.slots[self.slot] or []):
                    ds.writable_slots()[self.slot] = found or None
                    ds.dirty = True
        return bool(ds.slots[self.slot])

    def value(self, ds: RuleState) -> Any:
        """Return the matching tag values, comma separated."""
        found = ds.slots[self.slot]
        return ",".join(found) if found else None


class _Composite(Cond):
    """A condition over child conditions: their deadlines and value positions are theirs."""

    def __init__(self, children: list[Cond]) -> None:
        self.children = children
        _union(self, children)

    def deadline(self, ds: RuleState, t: int, env: Env) -> int | None:
        """Earliest child deadline."""
        earliest = None  # a loop, not a generator: asked on every reading
        for child in self.timed_children:
            due = child.deadline(ds, t, env)
            if due is not None and (earliest is None or due < earliest):
                earliest = due
        return earliest

    def bind(self, value_at: Mapping[str, int]) -> None:
        """Bind every child."""
        for child in self.children:
            child.bind(value_at)


class AllOf(_Composite):
    """Every child holds (all children are evaluated: they keep state)."""

    def assume_held(self, ds: RuleState, t: int) -> None:
        """Every child held."""
        for child in self.children:
            child.assume_held(ds, t)

    def eval(self, ds: RuleState, r: Reading | None, t: int, now: int, env: Env) -> bool:
        """Evaluate every child."""
        held = True
        for child in self.children:
            if not child.eval(ds, r, t, now, env):
                held = False
        return held

    def value(self, ds: RuleState) -> Any:
        """Return the first child's value that has one."""
        for child in self.children:
            v = child.value(ds)
            if v is not None:
                return v
        return None


class AnyOf(_Composite):
    """At least one child holds; the value is the first true child's."""

    def __init__(self, children: list[Cond], alloc: Callable[[], int]) -> None:
        super().__init__(children)
        self.slot = alloc()

    def eval(self, ds: RuleState, r: Reading | None, t: int, now: int, env: Env) -> bool:
        """Evaluate every child, remember the first that holds."""
        first = None
        for index, child in enumerate(self.children):
            if child.eval(ds, r, t, now, env) and first is None:
                first = index
        if ds.slots[self.slot] != first:  # unchanged: the device keeps the shared slots
            ds.writable_slots()[self.slot] = first
        return first is not None

    def value(self, ds: RuleState) -> Any:
        """Value of the first child that held."""
        first = ds.slots[self.slot]
        return None if first is None else self.children[first].value(ds)


class NotOf(_Composite):
    """The child does not hold."""

    def __init__(self, child: Cond) -> None:
        super().__init__([child])
        self.child = child

    def eval(self, ds: RuleState, r: Reading | None, t: int, now: int, env: Env) -> bool:
        """Negate the child."""
        return not self.child.eval(ds, r, t, now, env)


def _union(parent: Cond, children: list[Cond]) -> None:
    parent.timed_children = tuple(c for c in children if c.timed)
    parent.timed = bool(parent.timed_children)
    parent.fields = frozenset().union(*(c.fields for c in children))
    parent.measurements = frozenset().union(*(c.measurements for c in children))
    parent.events = frozenset().union(*(c.events for c in children))
    parent.uses_online = any(c.uses_online for c in children)


def compile_condition(spec: Any, alloc: Callable[[], int]) -> Cond:
    """Compile one validated condition model."""
    if isinstance(spec, s.Threshold):
        return Threshold(spec, alloc)
    if isinstance(spec, s.State):
        return State(spec)
    if isinstance(spec, s.Event):
        return Event(spec, alloc)
    if isinstance(spec, s.Rate):
        return Rate(spec, alloc)
    if isinstance(spec, s.Stale):
        return Stale(spec, alloc)
    if isinstance(spec, s.Schedule):
        return Schedule(spec)
    if isinstance(spec, s.Count):
        return Count(spec, alloc)
    if isinstance(spec, s.Points):
        return Points(spec, alloc)
    if isinstance(spec, s.AllOf):
        return AllOf([compile_condition(c, alloc) for c in spec.all])
    if isinstance(spec, s.AnyOf):
        return AnyOf([compile_condition(c, alloc) for c in spec.any], alloc)
    if isinstance(spec, s.NotOf):
        return NotOf(compile_condition(spec.not_, alloc))
    raise TypeError(f"unknown condition {type(spec).__name__}")


class Level:
    """A compiled severity level."""

    __slots__ = ("cond", "deadline", "eval", "for_ns", "message_en", "message_zh", "severity",
                 "since_slot")

    def __init__(self, severity: str, spec: s.Level, rule: s.Rule,
                 alloc: Callable[[], int]) -> None:
        self.severity = severity
        self.cond = compile_condition(spec.when, alloc)
        # bound once: the engine calls them for every level of every reading; a composite with
        # one timed child has that child's deadline
        self.eval = self.cond.eval
        timed = self.cond
        while isinstance(timed, _Composite) and len(timed.timed_children) == 1:
            timed = timed.timed_children[0]
        self.deadline = timed.deadline if timed.timed else None
        self.for_ns = int(spec.for_s * NS)
        self.since_slot = alloc()
        messages = spec.message or rule.message
        self.message_en = messages.en
        self.message_zh = messages.zh


class CompiledRule:
    """A compiled rule: levels most severe first plus what readings touch it."""

    __slots__ = ("events", "fields", "id", "levels", "measurements", "uses_online")

    def __init__(self, rule_id: str, rule: s.Rule, alloc: Callable[[], int]) -> None:
        self.id = rule_id
        ordered = sorted(rule.levels.items(), key=lambda kv: s.SEVERITY_RANK[kv[0]])
        self.levels = [Level(sev, spec, rule, alloc) for sev, spec in ordered]
        conds = [lv.cond for lv in self.levels]
        self.fields = frozenset().union(*(c.fields for c in conds))
        self.measurements = frozenset().union(*(c.measurements for c in conds))
        self.events = frozenset().union(*(c.events for c in conds))
        self.uses_online = any(c.uses_online for c in conds)

    def touched_by(self, r: Reading) -> bool:
        """Whether a reading carries input for this rule (a repeat bumps the alarm count)."""
        values = r.values
        if self.events and values.get("event") in self.events:
            return True
        if self.uses_online and r.online is not None:
            return True
        for name in self.fields:
            if name in values:
                return True
        if self.measurements:
            for point in r.points:
                if point.measurement in self.measurements:
                    return True
        return False


class Program:
    """All enabled rules of one (kind, site, device overrides) combination, compiled once."""

    __slots__ = ("field_at", "fields", "n_slots", "no_active", "no_slots", "no_values", "online_at",
                 "rules", "signature", "value_names")

    def __init__(self, rules: Mapping[str, s.Rule]) -> None:
        counter = [0]

        def alloc() -> int:
            counter[0] += 1
            return counter[0] - 1

        self.rules = [CompiledRule(rid, rule, alloc) for rid, rule in rules.items()
                      if rule.enabled]
        self.n_slots = counter[0]
        self.no_active: tuple[int, ...] = (-1,) * len(self.rules)
        self.no_slots: tuple[Any, ...] = (None,) * self.n_slots
        tracked: set[str] = set()
        for rule in self.rules:
            tracked |= rule.fields
        # every device of the program keeps its last values in this order, as a tuple
        self.value_names: tuple[str, ...] = tuple(sorted(tracked | {"online"}))
        value_at = {name: i for i, name in enumerate(self.value_names)}
        self.no_values: tuple[FieldValue | None, ...] = (None,) * len(self.value_names)
        self.online_at = value_at["online"]
        for rule in self.rules:
            for level in rule.levels:
                level.cond.bind(value_at)
        tracked.discard("event")
        self.fields = frozenset(tracked)
        # what a reading may update: (name, position), "event" excepted (never a last value)
        self.field_at: tuple[tuple[str, int], ...] = tuple(
            (name, value_at[name]) for name in sorted(tracked))
        # readiness grades stations for people, it changes no rule state: not in the signature
        dump = {rid: rule.model_dump(mode="json", exclude=_NOT_SIGNED)
                for rid, rule in rules.items() if rule.enabled}
        self.signature = hashlib.sha256(
            json.dumps(dump, sort_keys=True).encode()
        ).hexdigest()[:16]

    def value_dict(self, values: tuple[FieldValue | None, ...]) -> dict[str, FieldValue]:
        """The known values of a device of this program, by name."""
        return {n: v for n, v in zip(self.value_names, values, strict=True) if v is not None}
