"""Bounds of every query parameter the API takes: dates, times, offsets, date ranges.

Each limit answers 422 with the limit in the message (docs/security.md, "Limits"), never a
500 from an overflow deeper down (a date past what nanoseconds since 1970 hold, an offset the
database cannot take) and never a range so long that one request eats the hub's memory.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import NoReturn

from fastapi import HTTPException

FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(2261, 12, 31)  # the last full year that int64 nanoseconds since 1970 hold
MAX_OFFSET = 1_000_000_000  # list offsets: far past any real list, within every database's int
_FIRST_NS = 0
_LAST_NS = int(datetime(LAST_DAY.year, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()) * 10**9


def invalid(message: str) -> NoReturn:
    """Answer 422 with a message that says what the limit is."""
    raise HTTPException(422, detail={"error": "invalid", "message": message})


def day(text: str, name: str) -> date:
    """A ``YYYY-MM-DD`` query parameter within FIRST_DAY..LAST_DAY."""
    try:
        parsed = date.fromisoformat(text.strip())
    except ValueError:
        invalid(f"{name}: expected YYYY-MM-DD, got {text[:40]!r}")
    if not FIRST_DAY <= parsed <= LAST_DAY:
        invalid(f"{name}: {parsed.isoformat()} is outside {FIRST_DAY} .. {LAST_DAY}")
    return parsed


def day_range(first: date, last: date, max_days: int, what: str) -> None:
    """Refuse a range that is reversed or longer than ``max_days`` days."""
    if first > last:
        invalid("from is after to")
    days = (last - first).days + 1
    if days > max_days:
        invalid(f"{what}: {days} days asked, at most {max_days} (from {first} to {last})")


def time_ns(text: str | None, name: str) -> int | None:
    """An ISO 8601 or epoch (s, ms or ns by magnitude) time as ns, within FIRST..LAST_DAY."""
    if text is None or not text.strip():
        return None
    raw = text.strip()
    try:
        if raw.lstrip("-").isdigit():
            number = int(raw[:30])
            # epoch seconds, milliseconds or nanoseconds, by magnitude
            ns = number * 10**9 if abs(number) < 10**11 else (
                number * 10**6 if abs(number) < 10**14 else number)
        else:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            ns = int(moment.timestamp()) * 10**9 + moment.microsecond * 1000
    except (ValueError, OverflowError):
        invalid(f"{name}: expected ISO 8601 or epoch, got {text[:40]!r}")
    if not _FIRST_NS <= ns <= _LAST_NS:
        invalid(f"{name}: {text[:40]!r} is outside {FIRST_DAY} .. {LAST_DAY}")
    return ns
