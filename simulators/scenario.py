"""Scenario files: a timeline of faults injected into the fleet, and the alarms they should raise.

```yaml
description: A car flattens a flashing light at a sharp bend.
start: "07:50"            # optional: local time of day the timeline was written for
duration_s: 900           # simulated seconds the scenario needs
timeline:
  - {at: 60, device: GY-FL-0012, fault: knock_over, params: {tilt_deg: 80}}
expect_alarms:
  - {device: GY-FL-0012, rule: knocked_over, severity: critical}
```
"""

from __future__ import annotations

from datetime import time
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from simulators.models.base import GARBAGE_KINDS

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"

RULES = (
    "lamp_fault", "battery_low", "knocked_over", "mode_off_active_hours", "offline",
    "smoke", "fire_heat", "hydrant_pressure_low", "extinguisher_missing",
    "extinguisher_pressure", "door_open_long", "mains_lost",
    "round_not_started", "checkpoint_missed", "out_of_order", "unknown_tag", "tag_moved",
    "unassigned_route",
)
Rule = Literal[
    "lamp_fault", "battery_low", "knocked_over", "mode_off_active_hours", "offline",
    "smoke", "fire_heat", "hydrant_pressure_low", "extinguisher_missing",
    "extinguisher_pressure", "door_open_long", "mains_lost",
    "round_not_started", "checkpoint_missed", "out_of_order", "unknown_tag", "tag_moved",
    "unassigned_route",
]
Severity = Literal["critical", "major", "minor", "warning", "info"]


class ScenarioError(ValueError):
    """A scenario file is invalid; the message names the file and the offending entry."""


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(_Params):
    """A fault without parameters."""


class BatteryDrain(_Params):
    """Battery runs down to ``to_v`` (lights) or ``to_pct`` (readers, stations)."""

    to_v: float | None = Field(default=None, gt=0, lt=20)
    to_pct: float | None = Field(default=None, ge=0, le=100)
    over_s: float = Field(default=600, ge=0)

    @model_validator(mode="after")
    def _one_target(self) -> BatteryDrain:
        if (self.to_v is None) == (self.to_pct is None):
            raise ValueError("give exactly one of to_v (lights) or to_pct (readers, stations)")
        return self


class KnockOver(_Params):
    """The light is hit and lies at ``tilt_deg``."""

    tilt_deg: float = Field(default=80, ge=0, le=180)


class GoSilent(_Params):
    """The device stops publishing (keeps its connection); resumes after ``duration_s``."""

    duration_s: float | None = Field(default=None, gt=0)


class LastWill(_Params):
    """The connection drops uncleanly; the broker publishes the last will."""

    reconnect_after_s: float | None = Field(default=None, gt=0)


class Smoke(_Params):
    """Smoke rises to ``level_pct_m``; a fire follows after ``fire_after_s`` (null: none)."""

    level_pct_m: float = Field(default=4.0, gt=0, le=100)
    rise_s: float = Field(default=40, ge=0)
    fire_after_s: float | None = Field(default=90, ge=0)
    heat_c_per_min: float = Field(default=12, gt=0)


class Slot(_Params):
    """An extinguisher slot taken out of its bracket."""

    slot: int = Field(default=1, ge=1, le=8)


class SlotPressure(_Params):
    """An extinguisher loses pressure."""

    slot: int = Field(default=1, ge=1, le=8)
    to_mpa: float = Field(default=0.8, ge=0, le=3)


class HydrantDrop(_Params):
    """Hydrant supply pressure falls to ``to_mpa`` over ``over_s``."""

    to_mpa: float = Field(ge=0, le=2)
    over_s: float = Field(default=60, ge=0)


class DoorOpen(_Params):
    """The station door is left open for ``duration_s``."""

    duration_s: float = Field(default=900, gt=0)


class Duration(_Params):
    """Lasts ``duration_s`` (null: until restored)."""

    duration_s: float | None = Field(default=None, gt=0)


class Drill(_Params):
    """A drill (events drill_start / drill_end)."""

    duration_s: float = Field(default=600, gt=0)


class Checkpoint(_Params):
    """Which checkpoint (default: one of the reader's route, chosen by the seed)."""

    checkpoint: str | None = None


class LateUpload(_Params):
    """The reader was out of coverage for ``hours`` and uploads its buffer now."""

    hours: float = Field(gt=0, le=72)


class UnknownTag(_Params):
    """A scan of a tag that no site lists."""

    tag_uid: str | None = Field(default=None, pattern=r"^[0-9A-Fa-f]{14}$")


class MovedTag(_Params):
    """A checkpoint's tag scanned ``distance_m`` away from where the site file puts it."""

    checkpoint: str | None = None
    distance_m: float = Field(default=800, gt=0)


class HazardReport(_Params):
    """The inspector reports a hazard at a checkpoint."""

    checkpoint: str | None = None
    category: str | None = None
    note: str | None = None
    grade: Literal["general", "major"] | None = None


class Duplicate(_Params):
    """The last message again, same bytes (QoS 1 redelivery)."""

    count: int = Field(default=1, ge=1, le=1000)


class Garbage(_Params):
    """A bad payload on the device's real topic."""

    kind: Literal["binary", "truncated", "oversized", "wrong_types", "empty", "clock_1970",
                  "unknown_device", "hostile_text"] = "binary"
    size: int | None = Field(default=None, gt=0, le=64 * 1024 * 1024)


assert set(Garbage.model_fields["kind"].annotation.__args__) == set(GARBAGE_KINDS)  # type: ignore[union-attr]

FAULTS: dict[str, type[_Params]] = {
    "lamp_fail": NoParams, "lamp_degraded": NoParams, "battery_drain": BatteryDrain,
    "knock_over": KnockOver, "mode_off": NoParams, "go_silent": GoSilent,
    "last_will": LastWill, "smoke": Smoke, "extinguisher_removed": Slot,
    "extinguisher_pressure_low": SlotPressure, "hydrant_pressure_drop": HydrantDrop,
    "door_open": DoorOpen, "mains_lost": Duration, "drill": Drill,
    "skip_checkpoint": Checkpoint, "out_of_order": NoParams, "late_upload": LateUpload,
    "unknown_tag": UnknownTag, "moved_tag": MovedTag, "hazard_report": HazardReport,
    "duplicate": Duplicate, "garbage": Garbage, "restore": NoParams,
}


class FaultStep(BaseModel):
    """One entry of the timeline."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at: float = Field(ge=0, description="seconds after the start of the run")
    device: str
    fault: str
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("fault")
    @classmethod
    def _known_fault(cls, value: str) -> str:
        if value not in FAULTS:
            raise ValueError(f"unknown fault {value!r}; known: {', '.join(sorted(FAULTS))}")
        return value

    @model_validator(mode="after")
    def _check_params(self) -> FaultStep:
        checked = FAULTS[self.fault].model_validate(self.params)
        object.__setattr__(self, "params", checked.model_dump())
        return self


class ExpectedAlarm(BaseModel):
    """An alarm the hub should raise for this scenario (device id: the reader for patrols)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device: str
    rule: Rule
    severity: Severity


class Scenario(BaseModel):
    """A scenario file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    description: str
    start: time | None = Field(default=None, description="local time of day it was written for")
    duration_s: float = Field(default=1800, gt=0)
    timeline: list[FaultStep] = Field(default_factory=list)
    expect_alarms: list[ExpectedAlarm] = Field(default_factory=list)
    source: str = Field(default="", exclude=True)

    @property
    def devices(self) -> set[str]:
        """Every device the timeline touches."""
        return {step.device for step in self.timeline}


def _format(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(file)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def parse_scenario(data: Any, source: str = "<scenario>", name: str = "") -> Scenario:
    """Validate scenario data; raise ScenarioError naming ``source``."""
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: a scenario is a mapping, got {type(data).__name__}")
    try:
        scenario = Scenario.model_validate({"name": name, **data})
    except ValidationError as exc:
        raise ScenarioError(f"{source}: {_format(exc)}") from None
    return scenario.model_copy(update={"source": source, "name": scenario.name or name})


def load_scenario(path: Path | str) -> Scenario:
    """Load a scenario file, or a built-in one by name (``light_knocked_over``)."""
    path = Path(path)
    if not path.exists() and path.suffix == "" and (SCENARIO_DIR / f"{path}.yaml").exists():
        path = SCENARIO_DIR / f"{path}.yaml"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
    return parse_scenario(data, str(path), path.stem)


def builtin_scenarios() -> list[Scenario]:
    """Every scenario shipped in ``simulators/scenarios``."""
    return [load_scenario(p) for p in sorted(SCENARIO_DIR.glob("*.yaml"))]
