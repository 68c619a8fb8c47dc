"""MFS-GW1 micro fire station gateway: nested JSON, UTC epoch seconds, events, last will."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from simulators.message import SimMessage
from simulators.models.base import jdump
from simulators.models.stations import StationSim
from simulators.timeutil import epoch_s

MODEL = "MFS-GW1"


@dataclass(frozen=True, slots=True)
class Extinguisher:
    """One extinguisher slot as the gateway reports it (no pressure when absent)."""

    slot: int
    present: bool
    pressure_mpa: float | None = None


@dataclass(frozen=True, slots=True)
class MfsTelemetry:
    """One ``firestation/{id}/telemetry`` report."""

    station: str
    ts: int
    smoke: float
    temp_c: float
    humidity_pct: int
    hydrant_mpa: float
    extinguishers: tuple[Extinguisher, ...]
    door_open: bool
    mains_power: bool
    battery_pct: int

    def encode(self) -> bytes:
        """Return the payload exactly as the datasheet writes it."""
        exts: list[dict[str, object]] = []
        for e in self.extinguishers:
            item: dict[str, object] = {"slot": e.slot, "present": e.present}
            if e.present and e.pressure_mpa is not None:
                item["pressure_mpa"] = round(e.pressure_mpa, 2)
            exts.append(item)
        return jdump({
            "station": self.station, "ts": self.ts,
            "env": {"smoke": round(self.smoke, 2), "temp_c": round(self.temp_c, 1),
                    "humidity_pct": self.humidity_pct},
            "hydrant": {"pressure_mpa": round(self.hydrant_mpa, 2)},
            "extinguishers": exts,
            "door_open": self.door_open, "mains_power": self.mains_power,
            "battery_pct": self.battery_pct,
        })


@dataclass(frozen=True, slots=True)
class MfsEvent:
    """One ``firestation/{id}/event`` message."""

    ts: int
    event: str
    zone: str

    def encode(self) -> bytes:
        """Return the payload exactly as the datasheet writes it."""
        return jdump({"ts": self.ts, "event": self.event, "zone": self.zone})


class MfsGw1Sim(StationSim):
    """MFS-GW1: telemetry every 30 s, events at once, retained status with last will."""

    model: ClassVar[str] = MODEL
    interval_s: ClassVar[float] = 30.0
    has_will: ClassVar[bool] = True
    faults = StationSim.faults | {"last_will"}

    @property
    def status_topic(self) -> str:
        return f"firestation/{self.id}/status"

    @property
    def data_topic(self) -> str:
        return f"firestation/{self.id}/telemetry"

    def reading(self, device_time: datetime) -> MfsTelemetry:
        """Build the telemetry for the current state."""
        return MfsTelemetry(
            station=self.id, ts=epoch_s(device_time), smoke=self.smoke, temp_c=self.temp_c,
            humidity_pct=round(self.humidity), hydrant_mpa=self.hydrant_mpa,
            extinguishers=tuple(Extinguisher(s.number, s.present,
                                             s.pressure_mpa if s.present else None)
                                for s in self.slots),
            door_open=self.door_open, mains_power=self.mains, battery_pct=round(self.battery),
        )

    def report(self, t: datetime) -> list[SimMessage]:
        return [self.message(self.data_topic, self.reading(t).encode(), 1, t)]

    def event(self, name: str, zone: str, t: datetime) -> list[SimMessage]:
        payload = MfsEvent(epoch_s(t), name, zone).encode()
        return [self.message(f"firestation/{self.id}/event", payload, 1, t)]

    def sample_payload(self, t: datetime, device_time: datetime) -> bytes:
        return self.reading(device_time).encode()

    def wrong_types_payload(self, t: datetime) -> bytes:
        return jdump({"station": self.id, "ts": "now", "env": [0.02, "18.6"],
                      "hydrant": 0.32, "extinguishers": {"slot": 1},
                      "door_open": "no", "mains_power": 1, "battery_pct": "97%"})

    def unknown_device_payload(self, t: datetime) -> tuple[str, bytes]:
        doc = self.reading(t)
        payload = doc.encode().replace(self.id.encode(), b"LTP-MFS-99")
        return "firestation/LTP-MFS-99/telemetry", payload
