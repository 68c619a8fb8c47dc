"""Monthly and quarterly reports in the shape township offices submit them.

Totals (found, rectified, rate, overdue, 督办, by grade) are ``/api/kpi`` over the same local
dates, so the two never disagree; then hazards by community, department, inspector and route,
patrol coverage and on-time rate per route, the list of major hazards with their before and
after photos, and the trend against the previous period. A period is a calendar month
(``YYYY-MM``) or quarter (``YYYY-Qn``) of the site's local dates; reports reach back at most
``MAX_YEARS_BACK`` years and not past the current period (422 otherwise).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hub.evidence.service import EvidenceService
from hub.patrol.kpi import compute_kpi, hazard_counts, hazard_counts_by
from hub.patrol.schedule import local_date
from hub.patrol.service import PatrolService

MAX_YEARS_BACK = 5
MAX_PHOTOS = 4  # per hazard and kind in the report
YEARS = (1970, 2999)
MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
QUARTER = re.compile(r"^(\d{4})-Q([1-4])$")


class BadPeriod(ValueError):
    """The period is malformed or out of the reportable range."""


@dataclass(frozen=True, slots=True)
class Period:
    """A report period: its kind, label and local dates first..last."""

    kind: str  # monthly or quarterly
    label: str
    first: date
    last: date

    def previous(self) -> Period:
        """The period before this one, of the same kind."""
        if self.kind == "monthly":
            last = self.first - timedelta(days=1)
            return month(f"{last.year:04d}-{last.month:02d}")
        quarter_no = (self.first.month - 1) // 3 + 1
        year, number = (self.first.year, quarter_no - 1) if quarter_no > 1 else (
            self.first.year - 1, 4)
        return quarter(f"{year:04d}-Q{number}")


def _end_of_month(year: int, month_no: int) -> date:
    following = date(year + month_no // 12, month_no % 12 + 1, 1)
    return following - timedelta(days=1)


def _year(text: str) -> int:
    year = int(text)
    if not YEARS[0] <= year <= YEARS[1]:
        raise BadPeriod(f"year {year} is out of range {YEARS[0]}-{YEARS[1]}")
    return year


def month(text: str) -> Period:
    """The monthly period of ``YYYY-MM``; raise BadPeriod."""
    found = MONTH.match(text.strip())
    if not found:
        raise BadPeriod(f"month: expected YYYY-MM, got {text[:20]!r}")
    year, number = _year(found[1]), int(found[2])
    return Period("monthly", f"{year:04d}-{number:02d}", date(year, number, 1),
                  _end_of_month(year, number))


def quarter(text: str) -> Period:
    """The quarterly period of ``YYYY-Qn``; raise BadPeriod."""
    found = QUARTER.match(text.strip())
    if not found:
        raise BadPeriod(f"quarter: expected YYYY-Qn (n 1-4), got {text[:20]!r}")
    year, number = _year(found[1]), int(found[2])
    return Period("quarterly", f"{year:04d}-Q{number}", date(year, 3 * number - 2, 1),
                  _end_of_month(year, 3 * number))


def check_range(period: Period, today: date) -> None:
    """Refuse a period that starts after today or ends more than MAX_YEARS_BACK years ago."""
    earliest = date(today.year - MAX_YEARS_BACK, today.month, 1)
    if period.first > today:
        raise BadPeriod(f"{period.label} has not begun (today is {today.isoformat()})")
    if period.last < earliest:
        raise BadPeriod(f"{period.label} is more than {MAX_YEARS_BACK} years back: reports "
                        f"reach back to {earliest.isoformat()}")


def _thumbs(evidence: EvidenceService | None, items: list[dict[str, Any]],
            kind: str) -> list[dict[str, Any]]:
    out = []
    for item in [e for e in items if e["kind"] == kind][:MAX_PHOTOS]:
        found = evidence.content(item["sha256"], "thumb") if evidence is not None else None
        uri = (f"data:image/jpeg;base64,{base64.b64encode(found[0]).decode()}"
               if found is not None else None)
        out.append({**item, "data_uri": uri})
    return out


def period_report(service: PatrolService, site_name: str, period: Period,
                  evidence: EvidenceService | None = None) -> dict[str, Any]:
    """Everything a monthly or quarterly report shows, as plain data."""
    site = service.site(site_name)
    tz = ZoneInfo(site.timezone)
    now = service.now(site.site)
    check_range(period, local_date(site, now))
    kpi = service.kpi(site.site, period.first, period.last)
    before = period.previous()
    previous = service.kpi(site.site, before.first, before.last)
    since, until = service.day_bounds(site, period.first, period.last)
    rows = [h for h in service.hazards.rows(site.site) if since <= h.reported_ns < until]
    checkpoints = {c.id: c for c in site.checkpoints}
    communities = {c.id: c.name for c in site.communities}
    routes = {r.id: r.name for r in site.routes}
    inspectors = {i.id: i.name for i in site.inspectors}
    departments = {d.id: d.name for d in service.departments.of_site(site.site)}

    def community(row: Any) -> str | None:
        cp = checkpoints.get(row.checkpoint_id or "")
        return cp.community if cp is not None else None

    def named(groups: dict[str, dict[str, Any]], names: dict[str, str]) -> list[dict[str, Any]]:
        return [{"key": key or "—", "name": names.get(key, key or "未指定 unassigned"),
                 **counts}
                for key, counts in sorted(groups.items(), key=lambda kv: (-kv[1]["found"],
                                                                         kv[0]))]

    rounds = service.rounds_between(site.site, period.first, period.last)
    by_route_rounds = []
    for route in site.routes:
        part = compute_kpi([r for r in rounds if r["route_id"] == route.id], [], now)
        by_route_rounds.append({"route_id": route.id, "name": route.name, **part})
    major = [h for h in service.hazards.search(site=site.site, since_ns=since,
                                               until_ns=until, grade="major")]
    major.sort(key=lambda h: h["reported_at"] or "")
    for item in major:
        item["category_zh"] = service.config.category(item["category"]).zh
        item["before"] = _thumbs(evidence, item["evidence"], "before")
        item["after"] = _thumbs(evidence, item["evidence"], "after")
        item["checkpoint_name"] = (checkpoints[item["checkpoint_id"]].name
                                   if item["checkpoint_id"] in checkpoints else "")
        for key in ("reported_at", "due_at", "rectified_at", "verified_at"):
            item[key.replace("_at", "_local")] = _local_iso(item[key], tz)
        for photo in item["before"] + item["after"]:
            photo["at_local"] = _local_iso(photo["at"], tz)
    trend = []
    for key, label in (("hazards_found", "发现隐患 Found"), ("rectification_rate",
                       "整改率 Rectification rate"), ("overdue", "逾期 Overdue"),
                       ("supervised", "督办 Supervised"), ("patrol_coverage",
                       "巡查覆盖率 Coverage"), ("on_time_rate", "按时率 On-time rate")):
        now_v, prev_v = kpi[key], previous[key]
        delta = (round(now_v - prev_v, 4) if now_v is not None and prev_v is not None
                 else None)
        trend.append({"key": key, "label": label, "value": now_v, "previous": prev_v,
                      "delta": delta, "rate": key.endswith("rate") or key == "patrol_coverage"})
    totals = hazard_counts(rows, now)
    return {
        "kind": period.kind, "period": period.label, "from": period.first.isoformat(),
        "to": period.last.isoformat(), "previous_period": before.label,
        "site": site.site, "site_name": site.name, "site_name_en": site.name_en or site.site,
        "generated_at": _local_now(now, tz), "kpi": kpi, "previous_kpi": previous,
        "totals": {**totals, "county_reported": kpi["county_reported"],
                   "verified_rate": kpi["verified_rate"]},
        "by_grade": [{"key": g, "name": service.config.hazard_grades[g].zh, **counts}
                     for g, counts in kpi["hazards_by_grade"].items()],
        "by_community": named(hazard_counts_by(rows, now, community), communities),
        "by_department": named(hazard_counts_by(rows, now, lambda h: h.department),
                               departments),
        "by_inspector": named(hazard_counts_by(rows, now, lambda h: h.patroller_id
                                               or h.reported_by), inspectors),
        "by_route": named(hazard_counts_by(rows, now, lambda h: h.route_id), routes),
        "route_patrol": by_route_rounds, "major_hazards": major, "trend": trend,
    }


def _local_now(now: int, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(now / 1e9, UTC).astimezone(tz).strftime("%Y-%m-%d %H:%M")


def _local_iso(iso: str | None, tz: ZoneInfo) -> str:
    if not iso:
        return ""
    moment = datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M")
