"""Frozen value types handed between pipeline stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

FieldValue = float | int | str | bool


class InboundMessage(NamedTuple):
    """One MQTT message as received, detached from paho.

    ``ack_token`` is opaque to everything but the MQTT adapter: it is handed back once the
    message's readings are durable, so the adapter can acknowledge it to the broker. A
    NamedTuple rather than a frozen dataclass: one is built per message and it is 6x cheaper.
    """

    topic: str
    payload: bytes
    qos: int
    retain: bool
    received_ns: int
    ack_token: Any = None


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
