"""Hazard deadlines: hours by grade and category, counted in calendar or working hours.

Working hours are the office's (``working_hours`` in ``rules.yaml``, site-local): a deadline of
18 working hours from Friday 16:30 with an 08:30-17:30 Monday-to-Friday week ends on
Tuesday 16:30 (1 h on Friday, 9 on Monday, 8 on Tuesday).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hub.patrol.config import PatrolConfig, WorkingHours
from hub.patrol.schedule import NS, to_ns

HOUR_NS = 3600 * NS
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_DAYS = 3660  # a working week with no hours in it cannot loop for ever


def _working_due(start: datetime, hours: float, week: WorkingHours) -> datetime:
    left = timedelta(hours=hours)
    days = set(week.days)
    moment = start
    for _ in range(MAX_DAYS):
        if WEEKDAYS[moment.weekday()] in days:
            opens = moment.replace(hour=week.start.hour, minute=week.start.minute, second=0,
                                   microsecond=0)
            closes = moment.replace(hour=week.end.hour, minute=week.end.minute, second=0,
                                    microsecond=0)
            begin = max(moment, opens)
            if begin < closes:
                span = closes - begin
                if left <= span:
                    return begin + left
                left -= span
        moment = (moment + timedelta(days=1)).replace(hour=0, minute=0, second=0,
                                                      microsecond=0)
    raise ValueError("working_hours: no working time within ten years")


def due_ns(config: PatrolConfig, category: str, grade: str, start_ns: int,
           timezone: str) -> int:
    """The deadline of a hazard of ``category`` and ``grade`` whose time starts at start_ns."""
    cat = config.category(category)
    hours = cat.hours_for(grade)
    if cat.clock == "calendar":
        return start_ns + int(hours * HOUR_NS)
    start = datetime.fromtimestamp(start_ns / NS, tz=UTC).astimezone(ZoneInfo(timezone))
    return to_ns(_working_due(start, hours, config.working_hours))
