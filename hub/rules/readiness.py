"""Readiness (ready / degraded / not ready) of a device kind, read from its rules.

The rule files declare it (``readiness:`` on a kind and on its levels, see hub/rules/schema.py);
the duty console grades each station with ``KindReadiness.grade`` and the Grafana dashboards
draw their colour steps from ``value_bands``, ``alarm_lines`` and ``green_zone``. Both resolve
a site's rule overrides exactly as the rules engine does (``programs.resolve_for``), so a site
that moves a limit moves its alarm, its console and its dashboard together.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hub.rules import schema as s
from hub.rules.compiled import compile_match
from hub.rules.programs import resolve_for
from hub.sites import SiteRegistry

READY = "ready"
RANK = {state: rank for rank, state in enumerate(s.READINESS_STATES)}  # 0 is the worst


def _worse(a: str, b: str) -> str:
    return a if RANK[a] <= RANK[b] else b


def _holds(cond: Any, values: Mapping[str, Any], fields: set[str]) -> bool:
    """Judge a value condition on the last values; add the fields that made it hold."""
    if isinstance(cond, s.Threshold):
        value = values.get(cond.field)
        ok = compile_match(s.Match.model_validate({_OPS[cond.op]: cond.at}))(value)
    elif isinstance(cond, s.State):
        ok = compile_match(cond)(values.get(cond.field))
    elif isinstance(cond, s.AllOf):
        found: set[str] = set()
        ok = all(_holds(c, values, found) for c in cond.all)
        if ok:
            fields |= found
        return ok
    elif isinstance(cond, s.AnyOf):
        hits = [_holds(c, values, fields) for c in cond.any]  # every child: all true fields
        return any(hits)
    elif isinstance(cond, s.NotOf):
        ok = not _holds(cond.not_, values, set())
        if ok:
            fields |= _fields(cond.not_)
        return ok
    else:  # events, rates, staleness, schedules, counts, points: not in the last values
        return False
    if ok:
        fields.add(cond.field)
    return ok


_OPS = {"<": "lt", "<=": "le", ">": "gt", ">=": "ge"}


def _fields(cond: Any) -> set[str]:
    if isinstance(cond, s.AllOf | s.AnyOf):
        children = cond.all if isinstance(cond, s.AllOf) else cond.any
        return set().union(*(_fields(c) for c in children))
    if isinstance(cond, s.NotOf):
        return _fields(cond.not_)
    name = getattr(cond, "field", None)
    return {name} if isinstance(name, str) else set()


def _leaves(cond: Any) -> Iterable[Any]:
    if isinstance(cond, s.AllOf | s.AnyOf):
        for child in cond.all if isinstance(cond, s.AllOf) else cond.any:
            yield from _leaves(child)
    elif isinstance(cond, s.NotOf):
        return  # a negated bound is no line to draw
    else:
        yield cond


@dataclass(frozen=True)
class Grade:
    """A device's readiness now, the fields whose values count against it, and marks."""

    state: str
    flagged: frozenset[str] = frozenset()
    marks: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Band:
    """Below (``op`` < / <=) or above (> / >=) ``at`` the value makes a device ``state``."""

    op: str
    at: float
    state: str


@dataclass(frozen=True)
class _Graded:
    rule: str
    severity: str
    level: s.Level
    readiness: s.Readiness | None


class KindReadiness:
    """The readiness of one kind under one set of resolved rules (one site, maybe a device)."""

    def __init__(self, kind: str, spec: s.KindReadiness, rules: Mapping[str, s.Rule]) -> None:
        self.kind = kind
        self.spec = spec
        self.rules = {rid: rule for rid, rule in rules.items() if rule.enabled}
        self._levels: dict[tuple[str, str], _Graded] = {
            (rid, sev): _Graded(rid, sev, level, level.readiness)
            for rid, rule in self.rules.items() for sev, level in rule.levels.items()
        }

    def grade(self, values: Mapping[str, Any],
              active: Iterable[tuple[str, str]]) -> Grade:
        """Grade a device from its last values (``online`` among them) and active alarms.

        ``active`` holds (rule, severity) of the device's active alarms.
        """
        state = READY
        flagged: set[str] = set()
        for graded in self._levels.values():
            r = graded.readiness
            if r is None:
                continue
            judged = r.when if r.when is not None else graded.level.when
            hit: set[str] = set()
            if _holds(judged, values, hit):
                flagged |= hit
                if r.on_values or r.when is not None:
                    state = _worse(state, r.state)
        marks: dict[str, tuple[str, str]] = {}
        for rule, severity in active:
            graded_level = self._levels.get((rule, severity))
            r = graded_level.readiness if graded_level is not None else None
            if r is not None and r.on_alarm:
                state = _worse(state, r.state)
            elif self.spec.other_alarms is not None:
                state = _worse(state, self.spec.other_alarms)
            if r is not None:
                for fact, text in r.marks.items():
                    if fact not in marks or RANK[r.state] < RANK[marks[fact][0]]:
                        marks[fact] = (r.state, text)
        return Grade(state, frozenset(flagged), {f: t for f, (_, t) in marks.items()})

    def value_bands(self, field_name: str) -> list[Band]:
        """The thresholds on ``field_name`` that grade a device by its value, nearest ready last."""
        bands: list[Band] = []
        for graded in self._levels.values():
            r = graded.readiness
            if r is None or not (r.on_values or r.when is not None):
                continue
            for leaf in _leaves(r.when if r.when is not None else graded.level.when):
                if isinstance(leaf, s.Threshold) and leaf.field == field_name:
                    bands.append(Band(leaf.op, leaf.at, r.state))
        below = [b for b in bands if b.op in ("<", "<=")]
        if below:
            return sorted(below, key=lambda b: b.at)
        return sorted(bands, key=lambda b: -b.at)

    def alarm_lines(self, field_name: str) -> list[tuple[str, float]]:
        """(op, at) of every alarm threshold on ``field_name``, in rule order."""
        lines: list[tuple[str, float]] = []
        for graded in self._levels.values():
            for leaf in _leaves(graded.level.when):
                if isinstance(leaf, s.Threshold) and leaf.field == field_name:
                    lines.append((leaf.op, leaf.at))
        return lines

    def green_zone(self, measurement: str, field_name: str) -> tuple[float, float] | None:
        """The healthy range of a point field (``outside: [low, high]`` raises an alarm)."""
        for graded in self._levels.values():
            for leaf in _leaves(graded.level.when):
                if (isinstance(leaf, s.Points) and leaf.measurement == measurement
                        and leaf.field == field_name and leaf.match.outside is not None):
                    return leaf.match.outside
        return None

    def rules_with(self, condition_type: type[Any]) -> list[str]:
        """Ids of the rules with a condition of ``condition_type`` (e.g. schema.Schedule)."""
        return rules_with(self.rules, condition_type)

    def same_as(self, other: KindReadiness) -> bool:
        """Whether two resolved rule sets grade alike (same rules, same readiness)."""
        return self.spec == other.spec and self.rules == other.rules


def rules_with(rules: Mapping[str, s.Rule], condition_type: type[Any]) -> list[str]:
    """Ids of the enabled rules with a condition of ``condition_type`` (e.g. schema.Schedule)."""
    return [rid for rid, rule in rules.items() if rule.enabled
            and any(isinstance(leaf, condition_type)
                    for level in rule.levels.values() for leaf in _all_leaves(level.when))]


def _all_leaves(cond: Any) -> Iterable[Any]:
    if isinstance(cond, s.AllOf | s.AnyOf):
        for child in cond.all if isinstance(cond, s.AllOf) else cond.any:
            yield from _all_leaves(child)
    elif isinstance(cond, s.NotOf):
        yield from _all_leaves(cond.not_)
    else:
        yield cond


class ReadinessBook:
    """Readiness per (kind, site, device), resolved like the rules engine resolves rules."""

    def __init__(self, rule_sets: Mapping[str, s.RuleSet], sites: SiteRegistry) -> None:
        self.rule_sets = dict(rule_sets)
        self.sites = sites
        self._cache: dict[tuple[str, str | None, str | None], KindReadiness | None] = {}

    @property
    def kinds(self) -> list[str]:
        """The kinds that declare a readiness, sorted."""
        return sorted(k for k, rs in self.rule_sets.items() if rs.readiness is not None)

    def of(self, kind: str, site_id: str | None = None,
           device_id: str | None = None) -> KindReadiness | None:
        """The readiness of a kind at a site (and for a device with its own overrides)."""
        rule_set = self.rule_sets.get(kind)
        if rule_set is None or rule_set.readiness is None:
            return None
        site = self.sites.sites.get(site_id) if site_id else None
        device = None
        if device_id is not None:
            entry = self.sites.device(device_id)
            if entry is not None:
                site = entry[0]
                device = entry[1] if entry[1].rules else None
        key = (kind, site.site if site else None, device.id if device else None)
        if key not in self._cache:
            rules = resolve_for(self.rule_sets, kind, site, device)
            self._cache[key] = (KindReadiness(kind, rule_set.readiness, rules)
                                if rules is not None else None)
        return self._cache[key]

    def across_sites(self, kind: str) -> tuple[KindReadiness | None, list[str]]:
        """One readiness for a kind over every site, and the sites whose rules differ.

        A dashboard spans every site: when the sites agree it draws their limits; when some
        override the kind's rules differently, it draws the kind's own and names those sites.
        """
        per_site = {sid: self.of(kind, sid) for sid in sorted(self.sites.sites)}
        graded = [r for r in per_site.values() if r is not None]
        if graded and all(r.same_as(graded[0]) for r in graded):
            return graded[0], []
        default = self.of(kind)
        differ = [sid for sid, r in per_site.items()
                  if r is not None and default is not None and not r.same_as(default)]
        return default, differ
