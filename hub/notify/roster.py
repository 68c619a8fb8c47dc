"""Who is on duty: weekly shifts in the site's local time, overnight shifts, dated overrides.

A shift whose end is not after its start runs overnight: ``{start: "20:00", end: "08:00"}``
on a Friday covers Friday 20:00 to Saturday 08:00. On a date with an override, the
override's shifts replace that date's weekly shifts (an overnight shift started the day
before still runs into it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from hub.notify.config import DAYS, Roster, Shift


@dataclass(frozen=True, slots=True)
class Stint:
    """One shift on one date: local start and end, and who works it."""

    start: datetime
    end: datetime
    people: tuple[str, ...]


def _shifts_on(roster: Roster, day: date) -> list[Shift]:
    for override in roster.overrides:
        if override.date == day:
            return list(override.shifts)
    weekday = DAYS[day.weekday()]
    return [s for s in roster.shifts if weekday in s.days]


def _stints_on(roster: Roster, day: date, zone: ZoneInfo) -> list[Stint]:
    stints = []
    midnight = datetime(day.year, day.month, day.day, tzinfo=zone)
    for shift in _shifts_on(roster, day):
        begin = shift.start_time()
        start_min = begin.hour * 60 + begin.minute
        end_min = shift.end_minutes()
        if end_min <= start_min:
            end_min += 24 * 60  # overnight
        # wall-clock arithmetic in the zone (a DST day keeps its local times)
        start = (midnight + timedelta(minutes=start_min)).replace(tzinfo=None)
        end = (midnight + timedelta(minutes=end_min)).replace(tzinfo=None)
        stints.append(Stint(start.replace(tzinfo=zone), end.replace(tzinfo=zone),
                            tuple(shift.people)))
    return stints


def on_duty(roster: Roster | None, at: datetime, zone: ZoneInfo) -> list[str]:
    """The ids of the people on duty at a moment (each once, in roster order)."""
    if roster is None:
        return []
    local = at.astimezone(zone)
    people: list[str] = []
    for offset in (-1, 0):
        for stint in _stints_on(roster, local.date() + timedelta(days=offset), zone):
            if stint.start <= local < stint.end:
                people += stint.people
    return list(dict.fromkeys(people))


def next_change(roster: Roster | None, at: datetime, zone: ZoneInfo,
                horizon_days: int = 8) -> Stint | None:
    """The next shift that starts after a moment (within ``horizon_days``), or None."""
    if roster is None:
        return None
    local = at.astimezone(zone)
    for offset in range(horizon_days + 1):
        starts = sorted(
            (s for s in _stints_on(roster, local.date() + timedelta(days=offset), zone)
             if s.start > local), key=lambda s: s.start)
        if starts:
            return starts[0]
    return None
