"""Device timestamps: the formats profiles declare, compiled into parsers, and plausibility."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from hub.ingest.normalize.values import path_getter
from hub.profiles.schema import TimeSpec

EARLIEST_PLAUSIBLE_NS = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000_000
MAX_AHEAD_NS = 300 * 1_000_000_000


def compile_time(spec: TimeSpec | None) -> Callable[[Any], int | None]:
    """Compile a TimeSpec into fn(payload) -> device time in ns, or None when unreadable."""
    if spec is None:
        return lambda payload: None
    getter = path_getter(spec.path)
    fmt = spec.format
    zone = ZoneInfo(spec.zone) if spec.zone else UTC

    def number(raw: Any) -> float | None:
        if isinstance(raw, bool):
            return None
        if isinstance(raw, (int, float)):
            return float(raw)
        if isinstance(raw, str):
            try:
                return float(raw)
            except ValueError:
                return None
        return None

    if fmt in ("epoch_s", "epoch_ms"):
        factor = 1_000_000_000 if fmt == "epoch_s" else 1_000_000

        def epoch(payload: Any) -> int | None:
            raw = getter(payload, {})
            if isinstance(raw, int) and not isinstance(raw, bool) and abs(raw) < 10**15:
                return raw * factor  # exact for integer epochs, no float rounding
            value = number(raw)
            if value is None or value != value or abs(value) > 1e15:
                return None
            return int(value * factor)

        return epoch

    def parse(payload: Any) -> int | None:
        raw = getter(payload, {})
        if not isinstance(raw, str):
            return None
        try:
            if fmt == "iso8601":
                parsed = datetime.fromisoformat(raw)
            else:
                parsed = datetime.strptime(raw, fmt)
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=zone)
        seconds = int(parsed.timestamp())
        return seconds * 1_000_000_000 + parsed.microsecond * 1000

    return parse

