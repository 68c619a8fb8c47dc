"""Time helpers: zones, parsing and the three timestamp styles the devices use."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone, tzinfo
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

CHINA = timezone(timedelta(hours=8), "CST")


@cache
def zone(name: str) -> tzinfo:
    """Return a tzinfo for ``name`` (Asia/Shanghai falls back to a fixed +08:00)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        if name == "Asia/Shanghai":
            return CHINA
        raise


def parse_start(text: str | None, tz: str = "Asia/Shanghai") -> datetime | None:
    """Parse an ISO start time; a naive value is local time in ``tz``."""
    if text is None:
        return None
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone(tz))
    return value.astimezone(UTC)


def in_window(t: time, start: time, end: time) -> bool:
    """Return True if local time ``t`` is inside [start, end); a window may cross midnight."""
    if start == end:
        return True
    if start < end:
        return start <= t < end
    return t >= start or t < end


def epoch_ms(t: datetime) -> int:
    """Return UTC epoch milliseconds."""
    return round(t.timestamp() * 1000)


def epoch_s(t: datetime) -> int:
    """Return UTC epoch seconds (truncated)."""
    return int(t.timestamp() // 1)


def iso_local(t: datetime, tz: tzinfo) -> str:
    """Return ISO 8601 with offset and whole seconds, e.g. 2026-11-28T08:03:12+08:00."""
    return t.astimezone(tz).replace(microsecond=0).isoformat()
