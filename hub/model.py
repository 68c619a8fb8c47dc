"""Value types handed between pipeline stages: immutable by contract, checked by mypy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from typing_extensions import dataclass_transform

from hub.intake.inbound import InboundMessage as InboundMessage  # re-exported: a pipeline type

FieldValue = float | int | str | bool

_T = TypeVar("_T")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def value_type(cls: type[_T]) -> type[_T]:
    """A slotted dataclass that the type checker treats as frozen.

    Not frozen at run time: a frozen dataclass sets each field through ``object.__setattr__``,
    which made building a Reading 1.2 µs against 0.4 µs (one per message, one Point per point;
    bench/pipeline_micro.py). Hashing stays as a frozen one's (``unsafe_hash``).
    """
    return dataclass(slots=True, unsafe_hash=True)(cls)


@value_type
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


@value_type
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
    # a status the hub infers from a data message (the device was not known online): the
    # message itself follows with the same time and carries ``online`` for the rules
    implied: bool = False


@value_type
class Refusal:
    """Why a message was refused, with enough of it kept for an operator to look at."""

    topic: str
    received_ns: int
    reason: str
    detail: str
    head: bytes
    device_id: str | None = None
    model: str | None = None
