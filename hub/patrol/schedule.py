"""Round occurrences from a site's routes: ids, windows in the site's timezone, lookups."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hub.sites import PatrolRoute, Site

NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One scheduled round of a route on a local date."""

    id: str
    site: str
    route: PatrolRoute
    index: int
    date: date
    start: time
    start_ns: int
    end_ns: int


def round_id(site: str, route_id: str, day: date, start: time) -> str:
    """The round's id: ``fuping:FP-RT01:2026-11-28:08:00``."""
    return f"{site}:{route_id}:{day.isoformat()}:{start:%H:%M}"


def to_ns(moment: datetime) -> int:
    """Nanoseconds since the epoch of an aware datetime."""
    return int(moment.timestamp()) * NS + moment.microsecond * 1000


def local_date(site: Site, t_ns: int) -> date:
    """The site's local date at ``t_ns``."""
    return datetime.fromtimestamp(t_ns / NS, ZoneInfo(site.timezone)).date()


def iso_z(t_ns: int | None) -> str | None:
    """ISO 8601 UTC with ``Z`` (second resolution), or None."""
    if t_ns is None:
        return None
    moment = datetime.fromtimestamp(t_ns // NS, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def scheduled_on(route: PatrolRoute, day: date) -> bool:
    """True when the route has rounds on this local date."""
    return day.weekday() in route.weekdays and day not in route.skip_dates


def occurrences(site: Site, day: date, route_id: str | None = None) -> list[Occurrence]:
    """Every round scheduled on a local date, ordered by start time then route."""
    tz = ZoneInfo(site.timezone)
    out = []
    for route in site.routes:
        if route_id is not None and route.id != route_id:
            continue
        if not scheduled_on(route, day):
            continue
        for index, rnd in enumerate(route.rounds):
            begin = datetime.combine(day, rnd.start, tzinfo=tz)
            end = begin + timedelta(minutes=rnd.window_min)
            out.append(Occurrence(round_id(site.site, route.id, day, rnd.start), site.site,
                                  route, index, day, rnd.start, to_ns(begin), to_ns(end)))
    out.sort(key=lambda o: (o.start_ns, o.route.id))
    return out


def occurrences_between(site: Site, first: date, last: date) -> list[Occurrence]:
    """Every round on the local dates first..last (inclusive)."""
    out: list[Occurrence] = []
    day = first
    while day <= last:
        out += occurrences(site, day)
        day += timedelta(days=1)
    return out


def containing(site: Site, route: PatrolRoute, t_ns: int) -> Occurrence | None:
    """The round of ``route`` whose window holds ``t_ns`` (the earliest, if windows overlap)."""
    day = local_date(site, t_ns)
    for occ in occurrences(site, day - timedelta(days=1), route.id) + occurrences(
            site, day, route.id):
        if occ.start_ns <= t_ns < occ.end_ns:
            return occ
    return None


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine)."""
    r = 6_371_000.0
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(min(1.0, math.sqrt(a)))
