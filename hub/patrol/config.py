"""Patrol rules, hazard categories, grades, deadlines, limits and the ladder as data.

Read from ``hub/patrol/rules.yaml``; every model forbids unknown keys, so a typo in the data
fails at load, not at the first hazard.
"""

from __future__ import annotations

from datetime import time
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

DEFAULT_RULES_FILE = Path(__file__).resolve().parent / "rules.yaml"
KIND = "patrol"

RuleName = Literal[
    "round_not_started", "checkpoint_missed", "out_of_order", "unknown_tag", "tag_moved",
    "unassigned_route", "hazard_overdue", "hazard_supervised",
]
Grade = Literal["general", "major"]
GRADES: tuple[Grade, ...] = ("general", "major")
DeadlineClock = Literal["calendar", "working"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Severity = Literal["critical", "major", "minor", "warning", "info"]
# the rules that say a round or its checkpoints were not walked (the dashboards show them together)
MISSED_RULES: tuple[RuleName, ...] = ("checkpoint_missed", "round_not_started")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Message(_Strict):
    """An alarm message template in English and Chinese."""

    en: str
    zh: str


class PatrolRule(_Strict):
    """Severity and message of one patrol rule."""

    severity: Severity
    message: Message


class Category(_Strict):
    """A hazard category: hours to rectify per grade, how they are counted, its names."""

    hours: dict[Grade, float]
    clock: DeadlineClock = "calendar"
    en: str
    zh: str

    def hours_for(self, grade: str) -> float:
        """Hours to rectify a hazard of ``grade`` (general's for a grade the data lacks)."""
        found: float = self.hours.get(grade, self.hours["general"])  # type: ignore[call-overload]
        return found


class WorkingHours(_Strict):
    """The office's working time (site-local), for deadlines counted in working hours."""

    days: list[Weekday] = Field(min_length=1)
    start: time
    end: time


class GradeInfo(_Strict):
    """A hazard grade's names."""

    en: str
    zh: str


class Rung(_Strict):
    """One rung of the escalation ladder, ``after_due_h`` from the deadline (negative: before).

    ``notify`` names who gets the message (the department, the county level); ``alarm`` is
    the patrol rule raised; ``supervise`` puts the hazard under supervision (督办).
    """

    rung: str = Field(pattern=r"^[a-z_]+$")
    after_due_h: float
    notify: Literal["department", "county"] | None = None
    alarm: RuleName | None = None
    supervise: bool = False


class RateLimit(_Strict):
    """At most ``count`` hazards per ``per_h`` hours for one key (reader or checkpoint)."""

    count: int = Field(gt=0)
    per_h: float = Field(gt=0)


class HazardLimits(_Strict):
    """Rate limits of hazards from readers (a flood is refused, with its reason)."""

    per_reader: RateLimit
    per_checkpoint: RateLimit


class DashboardMarks(_Strict):
    """What the patrol dashboard marks: coverage colours and late uploads."""

    coverage_fair: float = Field(gt=0, le=1)  # orange from this share of a route's checkpoints
    coverage_good: float = Field(gt=0, le=1)  # green from this share
    late_upload_s: int = Field(gt=0)  # a scan uploaded later than this is listed as late


class PatrolConfig(_Strict):
    """The whole rules file."""

    round_start_grace_min: float = Field(default=15, ge=0)
    tag_moved_m: float = Field(default=200, gt=0)
    rules: dict[RuleName, PatrolRule]
    hazard_categories: dict[str, Category]
    hazard_grades: dict[Grade, GradeInfo]
    working_hours: WorkingHours
    escalation: dict[Grade, list[Rung]]
    hazard_limits: HazardLimits
    dashboard: DashboardMarks

    def ladder(self, grade: str) -> list[Rung]:
        """The grade's rungs in the order they are due."""
        rungs = self.escalation.get(grade) or self.escalation["general"]  # type: ignore[call-overload]
        return sorted(rungs, key=lambda r: r.after_due_h)

    def category(self, name: str) -> Category:
        """The category's data, or ``other``'s for an unknown category."""
        return self.hazard_categories.get(name) or self.hazard_categories["other"]


def load_config(path: Path | None = None) -> PatrolConfig:
    """Load and validate the patrol rules file."""
    with (path or DEFAULT_RULES_FILE).open(encoding="utf-8") as handle:
        config = PatrolConfig.model_validate(yaml.safe_load(handle))
    missing = {"round_not_started", "checkpoint_missed", "out_of_order", "unknown_tag",
               "tag_moved", "unassigned_route", "hazard_overdue", "hazard_supervised"} - set(
                   config.rules)
    if missing or "other" not in config.hazard_categories:
        raise ValueError(f"patrol rules file lacks {sorted(missing) or ['category other']}")
    lacking = [name for name, cat in config.hazard_categories.items()
               if "general" not in cat.hours]
    if lacking or "general" not in config.escalation:
        raise ValueError(f"patrol rules file: general hours or ladder missing for "
                         f"{lacking or ['escalation']}")
    return config
