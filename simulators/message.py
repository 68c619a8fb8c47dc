"""The one value type the simulator hands out: a message ready to publish."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class SimMessage:
    """One MQTT publish produced by the fleet.

    ``at`` is the simulated moment the device publishes it; ``device_time`` is the time the
    device writes into the payload (earlier than ``at`` for buffered patrol scans uploaded
    late). ``action`` is None for a plain publish; ``"connect"`` means the device (re)connects
    and publishes its retained ``online`` status; ``"will"`` means the device drops its
    connection uncleanly and the payload is the last will the broker publishes for it.
    """

    topic: str
    payload: bytes
    qos: int
    retain: bool
    device_time: datetime
    at: datetime
    device: str
    model: str
    action: str | None = None
    fault: str | None = None
