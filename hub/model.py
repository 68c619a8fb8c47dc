"""Frozen value types handed between pipeline stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hub.intake.inbound import InboundMessage as InboundMessage  # re-exported: a pipeline type

FieldValue = float | int | str | bool


@dataclass(frozen=True, slots=True)
class Point:
    """One point in the canonical InfluxDB schema."""

    measurement: str
    tags: tuple[tuple[str, str], ...]
    fields: tuple[tuple[str, FieldValue], ...]
    time_ns: int

    def tag(self, name: str) -> str | None:
        """Return the value of tag ``name`` or None."""
        for key, value in self.tags:
            if key == name:
                return value
        return None

    def field(self, name: str) -> FieldValue | None:
        """Return the value of field ``name`` or None."""
        for key, value in self.fields:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class Reading:
    """A normalized message: who sent it, when, and the points it yields.

    ``kind`` is the device kind (flashing_light, patrol_reader, fire_station); ``message`` is
    the profile's message name (telemetry, status, scan, hazard, event, ...). ``values`` is the
    flat view of the primary point's fields that state and rules read.
    """

    device_id: str
    model: str
    kind: str
    site: str
    message: str
    time_ns: int
    received_ns: int
    points: tuple[Point, ...]
    values: dict[str, FieldValue] = field(default_factory=dict)
    online: bool | None = None
    status_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a message was refused, with enough of it kept for an operator to look at."""

    topic: str
    received_ns: int
    reason: str
    detail: str
    head: bytes
    device_id: str | None = None
    model: str | None = None
