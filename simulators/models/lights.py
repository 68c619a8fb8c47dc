"""Physics shared by the two flashing-light models: solar charging, night drain, tilt, traffic."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any, ClassVar

from hub.sites import Device, Site
from simulators.environment import poisson, traffic_factor
from simulators.message import SimMessage
from simulators.models.base import COMMON_FAULTS, DeviceSim
from simulators.timeutil import in_window

LIGHT_FAULTS = COMMON_FAULTS | {
    "lamp_fail", "lamp_degraded", "battery_drain", "knock_over", "mode_off",
}

# default active hours when a site file gives none: dusk to dawn
_DEFAULT_HOURS = (time(18, 0), time(7, 0))
# vehicles per hour at average daytime traffic, by place
_TRAFFIC = {"junction": 260.0, "school_gate": 140.0, "sharp_bend": 90.0, "work_zone": 120.0}


class LightSim(DeviceSim):
    """A solar flashing light: 12 V battery charged by a ~20 V panel, LED load at night."""

    kind: ClassVar[str] = "flashing_light"
    faults: ClassVar[frozenset[str]] = LIGHT_FAULTS
    idle_mode: ClassVar[str] = "off"

    def __init__(self, site: Site, device: Device, seed: int | str, start: datetime) -> None:
        super().__init__(site, device, seed, start)
        rng = self.rng
        hours = device.active_hours
        self.active = (hours.start, hours.end) if hours else _DEFAULT_HOURS
        self.soc = rng.uniform(0.55, 0.9)          # state of charge 0..1
        self.capacity_scale = rng.uniform(0.85, 1.15)
        self.panel_vmax = rng.uniform(19.5, 21.5)
        self.base_tilt = round(rng.uniform(0.3, 3.0), 1)
        self.flash_hz = rng.choice([1.0, 1.5, 1.5, 2.0])
        self.traffic = _TRAFFIC.get(device.place or "", 100.0) * rng.uniform(0.4, 1.6)
        self.lamp = "ok"
        self.tilt_override: float | None = None
        self.drain: tuple[datetime, float, float, float] | None = None  # t0, v0, v1, over_s
        self.forced_off = False
        self.vehicles = 0
        self.charging = False
        self.battery_v = 12.5
        self.solar_v = 0.0
        self.temp_c = 20.0
        self.mode = self.idle_mode
        self.step(start, 0.0)

    # -- physics ---------------------------------------------------------------------------
    def is_active(self, t: datetime) -> bool:
        """True inside the light's daily active hours."""
        return in_window(self.local(t).time(), *self.active)

    def step(self, t: datetime, dt: float) -> None:
        rng = self.rng
        local = self.local(t)
        irr = self.weather.irradiance(local)
        hours = dt / 3600
        if self.forced_off:
            self.mode = "off"
        else:
            self.mode = "flash" if self.is_active(t) else self.idle_mode
        load = 0.026 if self.mode == "flash" else 0.002
        charge = 0.13 * irr / self.capacity_scale
        self.soc = min(1.0, max(0.15, self.soc + hours * (charge - load / self.capacity_scale)))
        self.charging = irr > 0.04 and self.soc < 0.985
        self.solar_v = (self.panel_vmax * min(1.0, 0.8 + irr)) if irr > 0.01 else \
            rng.uniform(0.0, 0.6)
        self.solar_v += rng.gauss(0, 0.05) if irr > 0.01 else 0.0
        v = 11.75 + 1.5 * self.soc + (0.3 if self.charging else 0.0)
        v -= 0.12 if self.mode == "flash" else 0.0
        v += rng.gauss(0, 0.01)
        if self.drain is not None:
            t0, v0, v1, over = self.drain
            frac = min(1.0, (t - t0).total_seconds() / over) if over > 0 else 1.0
            v = v0 + (v1 - v0) * frac + rng.gauss(0, 0.005)
            self.charging = False
        self.battery_v = v
        self.temp_c = self.weather.temp_c(local) + 7.0 * irr + rng.gauss(0, 0.2)
        if dt > 0:
            lam = self.traffic * traffic_factor(local) * hours
            self.vehicles += poisson(rng, lam)

    def current_tilt(self) -> float:
        """Tilt now: a small lean wobbling in the wind, or the knocked-over angle."""
        if self.tilt_override is not None:
            return max(0.0, self.tilt_override + self.rng.gauss(0, 0.8))
        return max(0.0, self.base_tilt + self.rng.gauss(0, 0.08))

    def current_flash_hz(self) -> float:
        """Flash rate now (0 when not flashing or the lamp is dead)."""
        return self.flash_hz if self.mode == "flash" and self.lamp != "fail" else 0.0

    def take_vehicles(self) -> int:
        """Vehicles counted since the last report; resets the counter."""
        n, self.vehicles = self.vehicles, 0
        return n

    # -- faults ----------------------------------------------------------------------------
    def fault_lamp_fail(self, params: dict[str, Any], t: datetime) -> list[SimMessage]:
        self.lamp = "fail"
        return []

    def fault_lamp_degraded(self, params: dict[str, Any], t: datetime) -> list[SimMessage]:
        self.lamp = "degraded"
        return []

    def fault_battery_drain(self, params: dict[str, Any], t: datetime) -> list[SimMessage]:
        to_v = float(params.get("to_v", 11.2))
        self.drain = (t, self.battery_v, to_v, float(params.get("over_s", 600)))
        return []

    def fault_knock_over(self, params: dict[str, Any], t: datetime) -> list[SimMessage]:
        self.tilt_override = float(params.get("tilt_deg", 80.0))
        return []

    def fault_mode_off(self, params: dict[str, Any], t: datetime) -> list[SimMessage]:
        self.forced_off = True
        return []

    def restore(self, t: datetime) -> None:
        self.lamp = "ok"
        self.tilt_override = None
        self.drain = None
        self.forced_off = False
