"""Alarm states, severities, the in-memory alarm record and its JSON form."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hub.rules.schema import SEVERITIES, SEVERITY_RANK

ACTIVE_UNACK = "active_unack"
ACTIVE_ACK = "active_ack"
CLEARED_UNACK = "cleared_unack"
CLEARED_ACK = "cleared_ack"
STATES: tuple[str, ...] = (ACTIVE_UNACK, ACTIVE_ACK, CLEARED_UNACK, CLEARED_ACK)
ACTIVE_STATES = frozenset({ACTIVE_UNACK, ACTIVE_ACK})
OPEN_STATES = frozenset({ACTIVE_UNACK, ACTIVE_ACK, CLEARED_UNACK})
STATE_ALIASES: dict[str, tuple[str, ...]] = {
    "active": (ACTIVE_UNACK, ACTIVE_ACK),
    "cleared": (CLEARED_UNACK, CLEARED_ACK),
    "unack": (ACTIVE_UNACK, CLEARED_UNACK),
    "open": (ACTIVE_UNACK, ACTIVE_ACK, CLEARED_UNACK),
}
SYSTEM = "system"

__all__ = ["SEVERITIES", "SEVERITY_RANK"]


class AlarmNotFound(LookupError):
    """No alarm with that id."""


class InvalidTransition(ValueError):
    """The action is not allowed in the alarm's current state."""


def iso(ns: int | None) -> str | None:
    """Format epoch nanoseconds as ISO 8601 UTC with milliseconds (``...Z``)."""
    if ns is None:
        return None
    moment = datetime.fromtimestamp(ns / 1e9, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class Alarm:
    """One alarm as the service keeps it in memory (times in epoch nanoseconds)."""

    id: str
    device_id: str
    site: str
    kind: str
    rule: str
    model: str
    community: str | None
    severity: str
    state: str
    message: str
    message_zh: str
    value: Any
    details: dict[str, Any] | None
    raised_ns: int
    last_seen_ns: int
    count: int = 1
    acked_ns: int | None = None
    acked_by: str | None = None
    cleared_ns: int | None = None
    cleared_by: str | None = None
    assignee: str | None = None
    updated_ns: int = 0
    last_point_ns: int = 0
    # cluster mode (hub.alarms.merge): the row's version as last read or written, and the
    # officer fields it had then
    stored_ns: int = 0
    base: tuple[Any, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the public alarm JSON (DESIGN.md contract plus extras)."""
        return {
            "id": self.id,
            "device_id": self.device_id,
            "site": self.site,
            "kind": self.kind,
            "model": self.model,
            "community": self.community,
            "rule": self.rule,
            "severity": self.severity,
            "state": self.state,
            "message": self.message,
            "message_zh": self.message_zh,
            "value": self.value,
            "details": self.details,
            "count": self.count,
            "raised_at": iso(self.raised_ns),
            "last_seen_at": iso(self.last_seen_ns),
            "acked_at": iso(self.acked_ns),
            "acked_by": self.acked_by,
            "cleared_at": iso(self.cleared_ns),
            "cleared_by": self.cleared_by,
            "assignee": self.assignee,
        }
