"""Patrol rules and hazard categories as data (``hub/patrol/rules.yaml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

DEFAULT_RULES_FILE = Path(__file__).resolve().parent / "rules.yaml"
KIND = "patrol"

RuleName = Literal[
    "round_not_started", "checkpoint_missed", "out_of_order", "unknown_tag", "tag_moved",
    "unassigned_route", "hazard_overdue",
]
Severity = Literal["critical", "major", "minor", "warning", "info"]


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
    """A hazard category: default hours to rectify and its names."""

    hours: float = Field(gt=0)
    en: str
    zh: str


class PatrolConfig(_Strict):
    """The whole rules file."""

    round_start_grace_min: float = Field(default=15, ge=0)
    tag_moved_m: float = Field(default=200, gt=0)
    rules: dict[RuleName, PatrolRule]
    hazard_categories: dict[str, Category]

    def category(self, name: str) -> Category:
        """The category's data, or ``other``'s for an unknown category."""
        return self.hazard_categories.get(name) or self.hazard_categories["other"]


def load_config(path: Path | None = None) -> PatrolConfig:
    """Load and validate the patrol rules file."""
    with (path or DEFAULT_RULES_FILE).open(encoding="utf-8") as handle:
        config = PatrolConfig.model_validate(yaml.safe_load(handle))
    missing = {"round_not_started", "checkpoint_missed", "out_of_order", "unknown_tag",
               "tag_moved", "unassigned_route", "hazard_overdue"} - set(config.rules)
    if missing or "other" not in config.hazard_categories:
        raise ValueError(f"patrol rules file lacks {sorted(missing) or ['category other']}")
    return config
