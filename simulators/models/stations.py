"""Physics shared by the two micro-fire-station gateways: room climate, hydrant, extinguishers."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, ClassVar

from hub.sites import Device, Site
from simulators.environment import hour_of_day
from simulators.message import SimMessage
from simulators.models.base import COMMON_FAULTS, DeviceSim, FollowUp

STATION_FAULTS = COMMON_FAULTS | {
    "smoke", "extinguisher_removed", "extinguisher_pressure_low", "hydrant_pressure_drop",
    "door_open", "mains_lost", "battery_drain", "drill",
}
SMOKE_ALARM_PCT_M = 1.5   # the detector's alarm point, %/m obscuration
HEAT_ALARM_C = 57.0       # fixed-temperature heat detector


@dataclass
class Slot:
    """One extinguisher bracket: present or not, and its gauge pressure in MPa."""

    number: int
    present: bool
    pressure_mpa: float


class StationSim(DeviceSim):
    """A micro fire station room or cabinet watched by a sensor gateway."""

    kind: ClassVar[str] = "fire_station"
    faults: ClassVar[frozenset[str]] = STATION_FAULTS
    slots_range: ClassVar[tuple[int, int]] = (2, 4)

    def __init__(self, site: Site, device: Device, seed: int | str, start: datetime) -> None:
        super().__init__(site, device, seed, start)
        rng = self.rng
        self.slots = [Slot(i + 1, True, round(rng.uniform(1.08, 1.32), 2))
                      for i in range(rng.randint(*self.slots_range))]
        self.hydrant_base = rng.uniform(0.28, 0.40)
        self.indoor_offset = rng.uniform(2.0, 4.5)
        self.humidity_base = rng.uniform(58, 70)
        self.smoke_base = rng.uniform(0.005, 0.02)
        self.temp_c = 18.0
        self.humidity = 60.0
        self.smoke = 0.0
        self.hydrant_mpa = self.hydrant_base
        self.door_open = False
        self.door_forced_until: datetime | None = None
        self.mains = True
        self.battery = float(rng.randint(96, 100))
        self.smoke_fault: tuple[datetime, float, float] | None = None  # t0, level, rise_s
        self.fire: tuple[datetime, float, float] | None = None  # t0, start temp, C/min
        self.hydrant_drop: tuple[datetime, float, float, float] | None = None
        self.battery_drain: tuple[datetime, float, float, float] | None = None
        self.planned_day: date | None = None
        self.step(start, 0.0)

    # -- physics ---------------------------------------------------------------------------
    def ambient_c(self, t: datetime) -> float:
        """Room temperature: outdoor air damped by the building, a few degrees warmer."""
        local = self.local(t)
        outdoor = self.weather.temp_c(local)
        mean = self.weather.temp_c(local.replace(hour=12, minute=0, second=0))
        return mean + 0.45 * (outdoor - mean) + self.indoor_offset - 2.0

    def step(self, t: datetime, dt: float) -> None:
        rng = self.rng
        local = self.local(t)
        h = hour_of_day(local)
        temp = self.ambient_c(t) + rng.gauss(0, 0.1)
        if self.fire is not None:
            f0, temp0, rate = self.fire
            temp = max(temp, min(120.0, temp0 + rate * (t - f0).total_seconds() / 60))
        self.temp_c = temp
        self.humidity = min(95.0, max(30.0, self.humidity_base
                                      - 8 * math.sin(2 * math.pi * (h - 9) / 24)
                                      + rng.gauss(0, 0.8)))
        smoke = abs(rng.gauss(self.smoke_base, 0.006))
        if self.smoke_fault is not None:
            s0, level, rise = self.smoke_fault
            frac = min(1.0, (t - s0).total_seconds() / rise) if rise > 0 else 1.0
            smoke = max(smoke, level * frac * rng.uniform(0.92, 1.05))
        self.smoke = smoke
        # hydrant mains pressure dips when the town draws water (morning and evening)
        demand = 0.035 * (math.exp(-((h - 7.5) ** 2) / 1.0) + math.exp(-((h - 19) ** 2) / 1.5))
        wp = self.hydrant_base - demand + rng.gauss(0, 0.004)
        if self.hydrant_drop is not None:
            d0, p0, p1, over = self.hydrant_drop
            frac = min(1.0, (t - d0).total_seconds() / over) if over > 0 else 1.0
            wp = p0 + (p1 - p0) * frac + rng.gauss(0, 0.002)
        self.hydrant_mpa = max(0.0, wp)
        hours = dt / 3600
        if self.battery_drain is not None:
            b0, v0, v1, over = self.battery_drain
            frac = min(1.0, (t - b0).total_seconds() / over) if over > 0 else 1.0
            self.battery = v0 + (v1 - v0) * frac
        elif self.mains:
            self.battery = min(100.0, self.battery + 6.0 * hours)
        else:
            self.battery = max(0.0, self.battery - 9.0 * hours)
        for slot in self.slots:  # gauges creep a little with temperature
            if slot.present:
                slot.pressure_mpa = max(0.0, slot.pressure_mpa + rng.gauss(0, 0.001))
        if self.door_forced_until is not None and t >= self.door_forced_until:
            self.door_forced_until = None

    def tick(self, t: datetime) -> list[SimMessage]:
        self.plan_day(t)
        return super().tick(t)

    def plan_day(self, t: datetime) -> None:
        """Once a day the duty squad opens the room for a few minutes to check it."""
        day = self.local(t).date()
        if self.planned_day == day:
            return
        self.planned_day = day
        rng = random.Random(f"{self.rng.random()}:{day}")
        opens = datetime.combine(day, time(8, 30), tzinfo=self.tz) + timedelta(
            minutes=rng.uniform(0, 480))
        if opens > t:
            delay = (opens - t).total_seconds()
            self.followups.append(FollowUp(delay, "_door", {"open": True}))
            self.followups.append(FollowUp(delay + rng.uniform(90, 360), "_door", {"open": False}))

    # -- events (MFS-GW1 publishes them; YK-FS8 has none) -------------------------------------
    def event(self, name: str, zone: str, t: datetime) -> list[SimMessage]:
        """Return the event message for ``name``, if the model has events."""
        return []

    # -- faults ----------------------------------------------------------------------------
    def fault_event(self, params: dict[str, Any], t: datetime) -> list[SimMessage]:
        if self.silent or not self.connected:
            return []
        return self.event(params["event"], params.get("zone", "store"), t)

    def fault_door(self, params: dict[str, Any], t: datetime) -> list[SimMessage]:
        if self.door_forced_until is not None and not params["open"]:
            return []  # a forced-open door stays open
        if self.door_open == params["open"]:
            return []
        self.door_open = params["open"]
        if self.silent or not self.connected:
            return []
        return self.event("door_open" if self.door_open else "door_closed", "door", t)

    def fault_smoke(self, params: dict[str, Any], t: datetime) -> list[SimMessage]:
        level = float(params.get("level_pct_m", 4.0))
        rise = float(params.get("rise_s", 40))
        self.smoke_fault = (t, level, rise)
        if level > SMOKE_ALARM_PCT_M:
            self.followups.append(FollowUp(rise * SMOKE_ALARM_PCT_M / level, "_event",
                                           {"event": "smoke_alarm", "zone": "store"}))
        fire_after = params.get("fire_after_s", 90)
        if fire_after is not None:
            rate = float(params.get("heat_c_per_min", 12.0))
            self.followups.append(FollowUp(float(fire_after), "_fire", {"rate": rate}))
        return []

    def fault_fire(self, params: dict[str, Any], t: datetime) -> list[SimMessage]:
        temp0 = self.temp_c
        self.fire = (t, temp0, params["rate"])
        if temp0 < HEAT_ALARM_C:
            delay = (HEAT_ALARM_C - temp0) / params["rate"] * 60
            self.followups.append(FollowUp(delay, "_event", {"event": "heat_alarm",
                                                              "zone": "store"}))
        return []

    def _slot(self, params: dict[str, Any]) -> Slot:
        number = int(params.get("slot", 1))
        for slot in self.slots:
            if slot.number == number:
                return slot
        raise ValueError(f"{self.id} has no extinguisher slot {number} (it has "
                         f"{len(self.slots)})")

    def fault_extinguisher_removed(self, params: dict[str, Any], t: datetime) -> list[SimMessage]:
        self._slot(params).present = False
        return []

    def fault_extinguisher_pressure_low(self, params: dict[str, Any],
                                        t: datetime) -> list[SimMessage]:
        self._slot(params).pressure_mpa = float(params.get("to_mpa", 0.8))
        return []

    def fault_hydrant_pressure_drop(self, params: dict[str, Any],
                                    t: datetime) -> list[SimMessage]:
        self.hydrant_drop = (t, self.hydrant_mpa, float(params.get("to_mpa", 0.08)),
                             float(params.get("over_s", 60)))
        return []

    def fault_door_open(self, params: dict[str, Any], t: datetime) -> list[SimMessage]:
        duration = float(params.get("duration_s", 900))
        self.door_forced_until = None
        out = self.fault_door({"open": True}, t)
        self.door_forced_until = t + timedelta(seconds=duration)
        self.followups.append(FollowUp(duration, "_door", {"open": False}))
        return out

    def fault_mains_lost(self, params: dict[str, Any], t: datetime) -> list[SimMessage]:
        self.mains = False
        if params.get("duration_s"):
            self.followups.append(FollowUp(params["duration_s"], "_mains_restore"))
        return self.fault_event({"event": "power_lost", "zone": "power"}, t)

    def fault_mains_restore(self, params: dict[str, Any], t: datetime) -> list[SimMessage]:
        self.mains = True
        return self.fault_event({"event": "power_restored", "zone": "power"}, t)

    def fault_battery_drain(self, params: dict[str, Any], t: datetime) -> list[SimMessage]:
        self.battery_drain = (t, self.battery, float(params.get("to_pct", 15)),
                              float(params.get("over_s", 600)))
        return []

    def fault_drill(self, params: dict[str, Any], t: datetime) -> list[SimMessage]:
        duration = float(params.get("duration_s", 600))
        self.followups.append(FollowUp(duration, "_event", {"event": "drill_end",
                                                             "zone": "yard"}))
        return self.fault_event({"event": "drill_start", "zone": "yard"}, t)

    def restore(self, t: datetime) -> None:
        self.smoke_fault = None
        self.fire = None
        self.hydrant_drop = None
        self.battery_drain = None
        self.door_forced_until = None
        self.door_open = False
        self.mains = True
        rng = self.rng
        for slot in self.slots:
            if not slot.present or not 1.0 <= slot.pressure_mpa <= 1.4:
                slot.present, slot.pressure_mpa = True, round(rng.uniform(1.1, 1.3), 2)
