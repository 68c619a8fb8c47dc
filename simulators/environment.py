"""Weather, sun and traffic for central Hunan: smooth, seeded, good enough to look real."""

from __future__ import annotations

import math
import random
from datetime import date, datetime

# Long-term means for Changsha / Zhuzhou / Changde (about 28 N): January about 5 C, July 29 C.
_ANNUAL_MEAN_C = 17.2
_ANNUAL_AMPLITUDE_C = 12.0


def hour_of_day(local: datetime) -> float:
    """Return the local hour as a float (08:30 -> 8.5)."""
    return local.hour + local.minute / 60 + local.second / 3600


def day_length_h(day: date) -> float:
    """Return hours of daylight at about 28 N (10.3 h in December, 13.9 h in June)."""
    doy = day.timetuple().tm_yday
    return 12.1 + 1.8 * math.sin(2 * math.pi * (doy - 80) / 365)


def sun_factor(local: datetime) -> float:
    """Return clear-sky irradiance as a fraction of noon peak (0 at night).

    Solar noon in Hunan (113 E, UTC+8) is about 12:28 local time.
    """
    length = day_length_h(local.date())
    sunrise = 12.47 - length / 2
    h = hour_of_day(local) - sunrise
    if h <= 0 or h >= length:
        return 0.0
    return math.sin(math.pi * h / length)


def daily_mean_c(day: date) -> float:
    """Return the climatological daily mean temperature."""
    doy = day.timetuple().tm_yday
    return _ANNUAL_MEAN_C - _ANNUAL_AMPLITUDE_C * math.cos(2 * math.pi * (doy - 18) / 365)


def outdoor_temp_c(local: datetime, day_offset_c: float = 0.0) -> float:
    """Return outdoor air temperature: coolest near 06:00, warmest near 15:00."""
    h = hour_of_day(local)
    swing = 4.5 * math.sin(2 * math.pi * (h - 9.0) / 24)
    return daily_mean_c(local.date()) + day_offset_c + swing


class DailyWeather:
    """Per-device view of day-to-day weather: cloudiness and a temperature offset per date.

    Derived from a seed and the date only, so it does not depend on how the run is sliced.
    """

    def __init__(self, seed: str) -> None:
        self._seed = seed
        self._cache: dict[date, tuple[float, float]] = {}

    def _day(self, day: date) -> tuple[float, float]:
        if day not in self._cache:
            rng = random.Random(f"{self._seed}:weather:{day.isoformat()}")
            clearness = rng.choice([0.25, 0.4, 0.6, 0.8, 0.9, 1.0])
            offset = rng.uniform(-3.0, 3.0)
            self._cache[day] = (clearness, offset)
            if len(self._cache) > 64:
                self._cache.pop(next(iter(self._cache)))
        return self._cache[day]

    def irradiance(self, local: datetime) -> float:
        """Return irradiance 0..1 including the day's cloudiness."""
        return sun_factor(local) * self._day(local.date())[0]

    def temp_c(self, local: datetime) -> float:
        """Return outdoor temperature including the day's offset."""
        return outdoor_temp_c(local, self._day(local.date())[1])


def traffic_factor(local: datetime) -> float:
    """Return relative traffic (1.0 = daytime average) with morning and evening peaks."""
    h = hour_of_day(local)
    base = 0.08 + 0.92 * max(0.0, math.sin(math.pi * (h - 5.5) / 17.5)) if 5.5 < h < 23 else 0.08
    peaks = 0.9 * math.exp(-((h - 7.8) ** 2) / 0.5) + 0.8 * math.exp(-((h - 17.8) ** 2) / 0.7)
    return base + peaks


def poisson(rng: random.Random, lam: float) -> int:
    """Draw a Poisson variate (normal approximation above 30)."""
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit = math.exp(-lam)
    k, p = 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k
