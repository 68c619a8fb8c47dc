"""YK-FS8 micro fire station gateway: flat JSON of scaled integers, local time, QoS 0."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from simulators.message import SimMessage
from simulators.models.base import jdump
from simulators.models.stations import StationSim

MODEL = "YK-FS8"


@dataclass(frozen=True, slots=True)
class Fs8Data:
    """One ``yk/{sn}/data`` report; ``ext_kpa[i]`` is EXT{i+1}, 0 meaning an empty slot."""

    sn: str
    local_time: datetime  # naive Asia/Shanghai wall time
    t_tenths_c: int
    h_pct: int
    smk_hundredths: int
    wp_kpa: int
    ext_kpa: tuple[int, ...]
    door: int
    ac: int
    bat: int

    def encode(self) -> bytes:
        """Return the payload exactly as the datasheet writes it."""
        doc: dict[str, object] = {"sn": self.sn, "time": f"{self.local_time:%Y-%m-%d %H:%M:%S}",
                                  "T": self.t_tenths_c, "H": self.h_pct,
                                  "SMK": self.smk_hundredths, "WP": self.wp_kpa}
        for i, kpa in enumerate(self.ext_kpa, start=1):
            doc[f"EXT{i}"] = kpa
        doc.update(DOOR=self.door, AC=self.ac, BAT=self.bat)
        return jdump(doc)


class YkFs8Sim(StationSim):
    """YK-FS8: one flat report every 60 s at QoS 0; no events, no last will."""

    model: ClassVar[str] = MODEL
    interval_s: ClassVar[float] = 60.0
    data_qos = 0

    @property
    def data_topic(self) -> str:
        return f"yk/{self.id}/data"

    def reading(self, device_time: datetime) -> Fs8Data:
        """Build the report for the current state."""
        return Fs8Data(
            sn=self.id,
            local_time=device_time.astimezone(self.tz).replace(tzinfo=None, microsecond=0),
            t_tenths_c=round(self.temp_c * 10), h_pct=round(self.humidity),
            smk_hundredths=round(self.smoke * 100), wp_kpa=round(self.hydrant_mpa * 1000),
            ext_kpa=tuple(round(s.pressure_mpa * 1000) if s.present else 0 for s in self.slots),
            door=int(self.door_open), ac=int(self.mains), bat=round(self.battery),
        )

    def report(self, t: datetime) -> list[SimMessage]:
        return [self.message(self.data_topic, self.reading(t).encode(), 0, t)]

    def sample_payload(self, t: datetime, device_time: datetime) -> bytes:
        return self.reading(device_time).encode()

    def wrong_types_payload(self, t: datetime) -> bytes:
        return jdump({"sn": 231, "time": 1764316800, "T": "18.6", "H": None, "SMK": [2],
                      "WP": "320kPa", "EXT1": True, "DOOR": "closed", "AC": "on", "BAT": 97.5})

    def unknown_device_payload(self, t: datetime) -> tuple[str, bytes]:
        payload = self.reading(t).encode().replace(self.id.encode(), b"YK8-999999")
        return "yk/YK8-999999/data", payload
