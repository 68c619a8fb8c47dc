"""XS-FL200 flashing light: JSON, UTC epoch milliseconds, retained status with last will."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from hub.sites import Device, Site
from simulators.message import SimMessage
from simulators.models.base import jdump
from simulators.models.lights import LightSim
from simulators.timeutil import epoch_ms

MODEL = "XS-FL200"


@dataclass(frozen=True, slots=True)
class Fl200Telemetry:
    """One ``roadsafety/flashlight/{id}/telemetry`` report; None fields are left out."""

    ts_ms: int
    mode: str
    lamp: str
    battery_mv: int
    solar_mv: int
    tilt_deg: float
    flash_hz: float
    charging: bool | None = None
    veh_count: int | None = None
    temp_c: float | None = None
    fw: str | None = None

    def encode(self) -> bytes:
        """Return the payload exactly as the datasheet writes it."""
        doc: dict[str, object] = {"ts": self.ts_ms, "mode": self.mode, "lamp": self.lamp,
                                  "battery_mv": self.battery_mv, "solar_mv": self.solar_mv}
        if self.charging is not None:
            doc["charging"] = self.charging
        doc["tilt_deg"] = round(self.tilt_deg, 1)
        doc["flash_hz"] = round(self.flash_hz, 1)
        if self.veh_count is not None:
            doc["veh_count"] = self.veh_count
        if self.temp_c is not None:
            doc["temp_c"] = round(self.temp_c, 1)
        if self.fw is not None:
            doc["fw"] = self.fw
        return jdump(doc)


def telemetry_topic(device_id: str) -> str:
    """Return the telemetry topic of a device."""
    return f"roadsafety/flashlight/{device_id}/telemetry"


def status_topic(device_id: str) -> str:
    """Return the retained status topic of a device."""
    return f"roadsafety/flashlight/{device_id}/status"


class XsFl200Sim(LightSim):
    """XS-FL200: reports every 60 s at QoS 1; optional fields depend on hardware and firmware."""

    model: ClassVar[str] = MODEL
    interval_s: ClassVar[float] = 60.0
    has_will: ClassVar[bool] = True
    faults = LightSim.faults | {"last_will"}

    def __init__(self, site: Site, device: Device, seed: int | str, start: datetime) -> None:
        super().__init__(site, device, seed, start)
        rng = self.rng
        self.idle_mode = rng.choice(["auto", "auto", "off"])
        self.fw = rng.choice(["2.1.4", "2.3.1", "2.3.1", "2.3.1", "2.4.0"])
        self.has_radar = rng.random() < 0.55
        self.has_temp = rng.random() < 0.8
        self.reports_charging = not self.fw.startswith("2.1")
        self.sent = 0

    @property
    def status_topic(self) -> str:
        return status_topic(self.id)

    @property
    def data_topic(self) -> str:
        return telemetry_topic(self.id)

    def reading(self, device_time: datetime, take: bool = True) -> Fl200Telemetry:
        """Build the reading for the current state."""
        veh = self.take_vehicles() if take else self.vehicles
        return Fl200Telemetry(
            ts_ms=epoch_ms(device_time),
            mode=self.mode,
            lamp=self.lamp,
            battery_mv=round(self.battery_v * 1000),
            solar_mv=round(self.solar_v * 1000),
            charging=self.charging if self.reports_charging else None,
            tilt_deg=self.current_tilt(),
            flash_hz=self.current_flash_hz(),
            veh_count=veh if self.has_radar else None,
            temp_c=self.temp_c if self.has_temp else None,
            # firmware is announced in the first report after boot and then once an hour
            fw=self.fw if self.sent % 60 == 0 else None,
        )

    def report(self, t: datetime) -> list[SimMessage]:
        payload = self.reading(t).encode()
        self.sent += 1
        return [self.message(self.data_topic, payload, 1, t)]

    def sample_payload(self, t: datetime, device_time: datetime) -> bytes:
        return self.reading(device_time, take=False).encode()

    def wrong_types_payload(self, t: datetime) -> bytes:
        return jdump({"ts": str(epoch_ms(t)), "mode": 3, "lamp": True, "battery_mv": "12.4V",
                      "solar_mv": None, "tilt_deg": [1.2], "flash_hz": {"hz": 1.5}})

    def unknown_device_payload(self, t: datetime) -> tuple[str, bytes]:
        return telemetry_topic("GY-FL-9999"), self.sample_payload(t, t)
