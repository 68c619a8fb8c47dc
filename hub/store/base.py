"""The interface every telemetry store implements (InfluxDB v1 API, embedded SQLite)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from hub.model import Point


class StoreUnavailable(Exception):
    """The store cannot take writes now (down, timeout, 5xx): spool and retry later."""


@dataclass(slots=True)
class WriteResult:
    """Outcome of a write: lines the store refused for good, each with the store's reason."""

    rejected: list[tuple[bytes, str]] = field(default_factory=list)


class PointStore(Protocol):
    """A telemetry store that takes line protocol and reads points back."""

    name: str

    def write_lines(self, lines: Sequence[bytes]) -> WriteResult:
        """Write encoded line-protocol lines; raise StoreUnavailable when the store is down.

        Writing the same line twice leaves one point (same series and timestamp overwrite).
        Lines refused for good (4xx, e.g. a field type conflict) are returned, not raised.
        """
        ...

    def ping(self) -> bool:
        """Return True when the store answers."""
        ...

    def read_points(self, measurement: str, tags: dict[str, str] | None = None) -> list[Point]:
        """Return the stored points of a measurement (optionally matching tags), oldest first."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
