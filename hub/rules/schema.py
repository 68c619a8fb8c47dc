"""Rules as data: the pydantic models of rule files and of site/device overrides."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

Severity = Literal["critical", "major", "minor", "warning", "info"]
SEVERITIES: tuple[str, ...] = ("critical", "major", "minor", "warning", "info")
SEVERITY_RANK: dict[str, int] = {name: rank for rank, name in enumerate(SEVERITIES)}

Scalar = bool | int | float | str


class RuleError(ValueError):
    """A rule file or an override is invalid; the message says where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Match(_Strict):
    """A test of one value: equals, in, or a numeric bound (at most one of each)."""

    equals: Scalar | None = None
    in_: list[Scalar] | None = Field(default=None, alias="in")
    lt: float | None = None
    le: float | None = None
    gt: float | None = None
    ge: float | None = None
    outside: tuple[float, float] | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _one_test(self) -> Match:
        given = [n for n in ("equals", "in_", "lt", "le", "gt", "ge", "outside")
                 if getattr(self, n) is not None]
        if not given:
            raise ValueError("needs one of equals, in, lt, le, gt, ge, outside")
        if self.outside is not None and self.outside[0] > self.outside[1]:
            raise ValueError("outside: [low, high] needs low <= high")
        return self


class Threshold(_Strict):
    """Threshold with hysteresis: true once ``field op at``, false again past ``clear_at``."""

    type: Literal["threshold"]
    field: str
    op: Literal["<", "<=", ">", ">="]
    at: float
    clear_at: float | None = Field(default=None, description="defaults to ``at`` (no hysteresis)")

    @model_validator(mode="after")
    def _hysteresis_direction(self) -> Threshold:
        if self.clear_at is None:
            return self
        if self.op in ("<", "<=") and self.clear_at < self.at:
            raise ValueError(f"op {self.op}: clear_at ({self.clear_at}) must be >= at ({self.at})")
        if self.op in (">", ">=") and self.clear_at > self.at:
            raise ValueError(f"op {self.op}: clear_at ({self.clear_at}) must be <= at ({self.at})")
        return self


class State(Match):
    """The last known value of a field equals a value / is in a set (or a bound holds)."""

    type: Literal["state"]
    field: str


class Event(_Strict):
    """An event reading with one of ``events``; stays true ``hold_s`` or until a clear event."""

    type: Literal["event"]
    events: list[str] = Field(min_length=1)
    hold_s: float = Field(default=300, ge=0)
    clear_events: list[str] = Field(default_factory=list)


class Rate(_Strict):
    """Rate of change per minute of a field over a short window of readings."""

    type: Literal["rate"]
    field: str
    op: Literal[">=", "<="] = ">="
    per_minute: float
    clear_per_minute: float | None = None
    window_s: float = Field(default=180, gt=0)
    min_span_s: float = Field(default=20, ge=0)


class Stale(_Strict):
    """No data for ``intervals`` x the model's report interval (false again on the next data)."""

    type: Literal["stale"]
    intervals: float = Field(default=3, gt=0)


class Schedule(_Strict):
    """Inside (or outside) the device's active hours in the site's timezone."""

    type: Literal["schedule"]
    inside: bool = True
    when_unset: bool = Field(default=True, description="value when the device has no hours")


class Count(_Strict):
    """At least ``at_least`` matching readings within ``window_s``."""

    type: Literal["count"]
    events: list[str] | None = None
    field: str | None = None
    match: Match | None = None
    at_least: int = Field(ge=1)
    window_s: float = Field(gt=0)

    @model_validator(mode="after")
    def _what_to_count(self) -> Count:
        if self.events is None and (self.field is None or self.match is None):
            raise ValueError("count needs events, or field and match")
        return self


class Points(_Strict):
    """Some points of a measurement (e.g. extinguisher slots) match; value lists their tags."""

    type: Literal["points"]
    measurement: str
    tag: str
    field: str
    match: Match
    where: dict[str, Scalar] = Field(default_factory=dict)


class AllOf(_Strict):
    """Every sub-condition holds."""

    all: list[Condition] = Field(min_length=1)


class AnyOf(_Strict):
    """At least one sub-condition holds."""

    any: list[Condition] = Field(min_length=1)


class NotOf(_Strict):
    """The sub-condition does not hold."""

    not_: Condition = Field(alias="not")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _condition_tag(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        if isinstance(value, AllOf):
            return "all"
        if isinstance(value, AnyOf):
            return "any"
        if isinstance(value, NotOf):
            return "not"
        return str(getattr(value, "type", None))
    if isinstance(value, dict):
        if "type" in value:
            return str(value["type"])
        for key in ("all", "any", "not"):
            if key in value:
                return key
    return None


Condition = Annotated[
    Annotated[Threshold, Tag("threshold")]
    | Annotated[State, Tag("state")]
    | Annotated[Event, Tag("event")]
    | Annotated[Rate, Tag("rate")]
    | Annotated[Stale, Tag("stale")]
    | Annotated[Schedule, Tag("schedule")]
    | Annotated[Count, Tag("count")]
    | Annotated[Points, Tag("points")]
    | Annotated[AllOf, Tag("all")]
    | Annotated[AnyOf, Tag("any")]
    | Annotated[NotOf, Tag("not")],
    Discriminator(
        _condition_tag,
        custom_error_type="condition",
        custom_error_message="a condition needs a known `type` "
        "(threshold, state, event, rate, stale, schedule, count, points) or all/any/not",
    ),
]

AllOf.model_rebuild()
AnyOf.model_rebuild()
NotOf.model_rebuild()


class Messages(_Strict):
    """Message templates; ``{value}`` and any last known field name can be used."""

    en: str
    zh: str


ReadinessState = Literal["not_ready", "degraded"]
READINESS_STATES: tuple[str, ...] = ("not_ready", "degraded", "ready")  # worst first
# conditions that can be judged on a device's last values alone (no timers, no history)
VALUE_CONDITIONS = (Threshold, State, AllOf, AnyOf, NotOf)


def _judged_on_values(cond: Any) -> bool:
    if isinstance(cond, AllOf | AnyOf):
        children = cond.all if isinstance(cond, AllOf) else cond.any
        return all(_judged_on_values(c) for c in children)
    if isinstance(cond, NotOf):
        return _judged_on_values(cond.not_)
    return isinstance(cond, VALUE_CONDITIONS)


class Readiness(_Strict):
    """What a level means for a station's readiness (read by the console and the dashboards).

    The station is ``state`` while this level's alarm is active (``on_alarm``), and while the
    last values meet the level's condition (``on_values``) or ``when`` (giving ``when`` implies
    judging on values): a threshold without hysteresis, no ``for_s``. ``marks`` are facts shown
    while the alarm is active. A bare string is short for ``{state: ...}``.
    """

    state: ReadinessState
    on_alarm: bool = True
    on_values: bool = False
    when: Condition | None = None
    marks: dict[str, str] = Field(default_factory=dict, description="e.g. {extinguishers: missing}")

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        return {"state": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _judgeable(self) -> Readiness:
        if self.when is not None and not _judged_on_values(self.when):
            raise ValueError("readiness.when: only threshold, state, all, any and not can be "
                             "judged on the last values")
        return self


class Level(_Strict):
    """One severity level of a rule: its condition and how long it must hold."""

    when: Condition
    for_s: float = Field(default=0, ge=0)
    message: Messages | None = None
    readiness: Readiness | None = None

    @model_validator(mode="after")
    def _values_judgeable(self) -> Level:
        r = self.readiness
        if r is not None and r.on_values and r.when is None and not _judged_on_values(self.when):
            raise ValueError("readiness.on_values: this level's condition cannot be judged on "
                             "the last values (give readiness.when)")
        return self


class Rule(_Strict):
    """One alarm rule: severity levels (most severe wins) and message templates."""

    enabled: bool = True
    description: str | None = None
    levels: dict[Severity, Level] = Field(min_length=1)
    message: Messages


class KindReadiness(_Strict):
    """A kind graded ready / degraded / not ready (micro fire stations); levels say more."""

    other_alarms: ReadinessState | None = Field(
        default="degraded", description="while an alarm whose level names no readiness is active")


class RuleSet(_Strict):
    """The rules of one device kind (one file in ``device_profiles/rules``)."""

    kind: str
    readiness: KindReadiness | None = None
    rules: dict[str, Rule]


def _deep_merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = _deep_merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    return copy.deepcopy(override)


def _format_error(where: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
        parts.append(f"{loc}: {err['msg']}" if loc else err["msg"])
    return f"{where}: " + "; ".join(parts)


def load_rule_set(path: Path) -> RuleSet:
    """Load and validate one rule file; raise RuleError naming the file on problems."""
    try:
        with path.open(encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except (OSError, yaml.YAMLError) as exc:
        raise RuleError(f"{path}: {exc}") from exc
    return parse_rule_set(data, where=str(path))


def parse_rule_set(data: Any, where: str = "rules") -> RuleSet:
    """Validate a rule set from plain data (as loaded from YAML)."""
    try:
        return RuleSet.model_validate(data)
    except ValidationError as exc:
        raise RuleError(_format_error(where, exc)) from exc


def raw_rules(rule_set: RuleSet) -> dict[str, Any]:
    """Return a rule set's rules as plain data (the base that overrides merge onto)."""
    data = rule_set.model_dump(by_alias=True, exclude_none=True)
    return dict(data["rules"])


def load_rule_dir(directory: Path) -> dict[str, RuleSet]:
    """Load every ``*.yaml`` rule file of a directory, keyed by device kind."""
    sets: dict[str, RuleSet] = {}
    for path in sorted(directory.glob("*.yaml")):
        rule_set = load_rule_set(path)
        if rule_set.kind in sets:
            raise RuleError(f"{path}: kind {rule_set.kind!r} already has a rule file")
        sets[rule_set.kind] = rule_set
    return sets


def site_overrides_for_kind(
    overrides: Mapping[str, Any], kind: str, kinds: set[str]
) -> dict[str, Any]:
    """Pick a site's overrides for one kind: plain rule ids, plus a block keyed by the kind."""
    picked = {k: v for k, v in overrides.items() if k not in kinds}
    block = overrides.get(kind)
    if isinstance(block, Mapping):
        picked = _deep_merge(picked, dict(block))
    return picked


def is_complete_rule(data: Any) -> bool:
    """Whether an override is a whole new rule (has levels and message), not a partial one."""
    return isinstance(data, Mapping) and "levels" in data and "message" in data


def resolve_rules(
    rule_set: RuleSet, *layers: tuple[str, Mapping[str, Any]], strict_ids: bool = True
) -> dict[str, Rule]:
    """Merge override layers (site, then device) onto a kind's rules and validate the result.

    A layer maps rule id to a partial rule (deep-merged; ``{enabled: false}`` switches a rule
    off) or to a complete new rule. With ``strict_ids`` an override for a rule that the kind
    lacks must be complete; otherwise such ids are skipped (site-wide overrides for other kinds).
    """
    merged: dict[str, Any] = raw_rules(rule_set)
    for where, layer in layers:
        for rule_id, override in layer.items():
            if not isinstance(override, Mapping):
                raise RuleError(f"{where}: rule {rule_id!r}: override must be a mapping")
            if rule_id in merged:
                merged[rule_id] = _deep_merge(merged[rule_id], dict(override))
            elif is_complete_rule(override):
                merged[rule_id] = copy.deepcopy(dict(override))
            elif strict_ids:
                raise RuleError(
                    f"{where}: unknown rule {rule_id!r} for kind {rule_set.kind!r} "
                    f"(known: {', '.join(sorted(merged))}); a new rule needs levels and message"
                )
    rules: dict[str, Rule] = {}
    where_all = " + ".join([f"kind {rule_set.kind}", *(w for w, _ in layers)])
    for rule_id, data in merged.items():
        try:
            rules[rule_id] = Rule.model_validate(data)
        except ValidationError as exc:
            raise RuleError(_format_error(f"{where_all}: rule {rule_id!r}", exc)) from exc
    return rules
