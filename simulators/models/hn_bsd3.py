"""HN-BSD3 flashing light: CSV text, local time without zone, no last will."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import ClassVar

from hub.sites import Device, Site
from simulators.message import SimMessage
from simulators.models.base import HOSTILE_TEXT
from simulators.models.lights import LightSim

MODEL = "HN-BSD3"
MODE_LETTERS = {"flash": "F", "steady": "S", "off": "O", "auto": "O"}


@dataclass(frozen=True, slots=True)
class Bsd3Report:
    """One ``hnbsd/{imei}/up`` line. ``local_time`` is naive local (Asia/Shanghai) time."""

    imei: str
    local_time: datetime
    mode: str  # F | S | O
    lamp_ok: bool
    battery_cv: int
    solar_cv: int
    tilt_tenths: int
    flash_tenths_hz: int
    vehicles: int

    def encode(self) -> bytes:
        """Return the CSV line exactly as the datasheet writes it."""
        return (
            f"BSD3,{self.imei},{self.local_time:%Y%m%dT%H%M%S},{self.mode},"
            f"{1 if self.lamp_ok else 0},{self.battery_cv},{self.solar_cv},"
            f"{self.tilt_tenths:03d},{self.flash_tenths_hz},{self.vehicles}"
        ).encode("ascii")


def up_topic(imei: str) -> str:
    """Return the uplink topic of a device."""
    return f"hnbsd/{imei}/up"


def local_naive(t: datetime, tz: tzinfo) -> datetime:
    """Return ``t`` as naive local wall time."""
    return t.astimezone(tz).replace(tzinfo=None, microsecond=0)


class HnBsd3Sim(LightSim):
    """HN-BSD3: one CSV line every 300 s; lamp flag only knows ok / not ok."""

    model: ClassVar[str] = MODEL
    interval_s: ClassVar[float] = 300.0
    idle_mode = "off"

    def __init__(self, site: Site, device: Device, seed: int | str, start: datetime) -> None:
        super().__init__(site, device, seed, start)
        self.data_qos = self.rng.choice([0, 1])

    @property
    def data_topic(self) -> str:
        return up_topic(self.id)

    def reading(self, device_time: datetime, take: bool = True) -> Bsd3Report:
        """Build the report for the current state (a degraded lamp still reads ok)."""
        return Bsd3Report(
            imei=self.id,
            local_time=local_naive(device_time, self.tz),
            mode=MODE_LETTERS[self.mode],
            lamp_ok=self.lamp != "fail",
            battery_cv=round(self.battery_v * 100),
            solar_cv=round(self.solar_v * 100),
            tilt_tenths=round(self.current_tilt() * 10),
            flash_tenths_hz=round(self.current_flash_hz() * 10),
            vehicles=self.take_vehicles() if take else self.vehicles,
        )

    def report(self, t: datetime) -> list[SimMessage]:
        return [self.message(self.data_topic, self.reading(t).encode(), self.data_qos, t)]

    def sample_payload(self, t: datetime, device_time: datetime) -> bytes:
        return self.reading(device_time, take=False).encode()

    def wrong_types_payload(self, t: datetime) -> bytes:
        return f"BSD3,{self.id},yesterday,X,maybe,12.4V,-,1.8,fast,".encode()

    def hostile_text_payload(self, t: datetime) -> bytes:
        columns = self.sample_payload(t, t).decode().split(",")
        columns[3] = HOSTILE_TEXT  # the mode letter
        return ",".join(columns).encode()

    def oversized_payload(self, t: datetime, size: int) -> bytes:
        line = self.sample_payload(t, t) + b"\n"
        return (line * (size // len(line) + 1))[:size]

    def unknown_device_payload(self, t: datetime) -> tuple[str, bytes]:
        imei = "861234567899999"
        payload = self.sample_payload(t, t).replace(self.id.encode(), imei.encode())
        return up_topic(imei), payload
