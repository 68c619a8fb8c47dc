"""KPIs: patrol coverage, on-time rate, rounds, hazards found, rectified, verified, overdue.

Counted rounds are the ones that are over (window closed) or already completed, and that the
hub watched (their window ended after it started tracking the site) or that got scans anyway.
Coverage is checkpoint visits done / scheduled over those rounds; on-time rate is the share of
them completed with the first scan inside the start grace. Hazards are those reported in the
range; the rectification rate counts rectified and verified ones, times to rectify are from the
report to the (last) rectification. ``supervised`` counts the 督办 cases among them (hazards
the ladder put under supervision, whatever they are now), ``county_reported`` those it reported
to the county level; ``hazards_by_grade`` splits found, rectified, overdue and supervised by
grade. Rates are null when there is nothing to divide by.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from hub.patrol.config import GRADES
from hub.patrol.hazards import HazardService
from hub.patrol.schedule import NS
from hub.patrol.tables import HazardRow


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..1) of values, None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low, high = math.floor(pos), math.ceil(pos)
    value = ordered[low] + (ordered[high] - ordered[low]) * (pos - low)
    return round(value, 2)


def counted(round_json: dict[str, Any]) -> bool:
    """True when a round counts for KPIs (over or completed; watched or with scans)."""
    if round_json["state"] not in ("completed", "incomplete", "missed"):
        return False
    return bool(round_json["watched"]) or round_json["done"] > 0


def compute_kpi(rounds: list[dict[str, Any]], hazards: list[HazardRow],
                now: int) -> dict[str, Any]:
    """The KPI body (without site and dates) from round views and hazard rows."""
    due = [r for r in rounds if counted(r)]
    scheduled = sum(r["total"] for r in due)
    done = sum(r["done"] for r in due)
    states = {s: sum(1 for r in due if r["state"] == s)
              for s in ("completed", "incomplete", "missed")}
    on_time = sum(1 for r in due if r["on_time"])
    found = len(hazards)
    rectified = [h for h in hazards if h.status in ("rectified", "verified")]
    verified = [h for h in hazards if h.status == "verified"]
    hours = [(h.rectified_ns - h.reported_ns) / (3600 * NS) for h in hazards
             if h.rectified_ns is not None and h.status in ("rectified", "verified")]
    return {
        "patrol_coverage": _rate(done, scheduled),
        "on_time_rate": _rate(on_time, len(due)),
        "rounds": states,
        "checkpoint_visits": {"done": done, "scheduled": scheduled},
        "hazards_found": found,
        "rectification_rate": _rate(len(rectified), found),
        "verified_rate": _rate(len(verified), found),
        "median_time_to_rectify_h": percentile(hours, 0.5),
        "p90_time_to_rectify_h": percentile(hours, 0.9),
        "overdue": sum(1 for h in hazards if HazardService.is_overdue(h, now)),
        "supervised": sum(1 for h in hazards if h.supervised_ns is not None),
        "county_reported": sum(1 for h in hazards if h.county_ns is not None),
        "hazards_by_grade": hazard_counts_by(hazards, now, lambda h: h.grade, GRADES),
    }


def hazard_counts(hazards: list[HazardRow], now: int) -> dict[str, Any]:
    """found, rectified (rectified or verified), rate, overdue and supervised of hazards."""
    found = len(hazards)
    rectified = sum(1 for h in hazards if h.status in ("rectified", "verified"))
    return {
        "found": found, "rectified": rectified, "rectification_rate": _rate(rectified, found),
        "overdue": sum(1 for h in hazards if HazardService.is_overdue(h, now)),
        "supervised": sum(1 for h in hazards if h.supervised_ns is not None),
    }


def hazard_counts_by(hazards: list[HazardRow], now: int, key: Callable[[HazardRow], str | None],
                     keys: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """``hazard_counts`` per key (every one of ``keys`` present, then the others found)."""
    groups: dict[str, list[HazardRow]] = {k: [] for k in keys}
    for hazard in hazards:
        groups.setdefault(key(hazard) or "", []).append(hazard)
    return {name: hazard_counts(rows, now) for name, rows in groups.items()}
