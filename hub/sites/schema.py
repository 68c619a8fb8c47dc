"""What a site file holds: communities, devices, checkpoints, inspectors, patrol routes."""

from __future__ import annotations

import sys
from datetime import date, time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hub.db import DEVICE_ID_CHARS
from hub.sites.records import Record

UNASSIGNED_SITE = "unassigned"
UNKNOWN_CHECKPOINT = "unknown"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Community(_Strict):
    """A community (社区), village or district inside a site."""

    id: str
    name: str
    name_en: str | None = None
    lat: float | None = None
    lon: float | None = None


class ActiveHours(_Strict):
    """Daily local-time window in which a device is expected to be active."""

    start: time
    end: time


class _DeviceFields(_Strict):
    """What a site file may say of one device: validated here, then kept as a ``Device``."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="Device")

    id: str = Field(min_length=1, max_length=DEVICE_ID_CHARS,
                    pattern=r"^[^\x00-\x1f\x7f]+$")  # what every device-id column holds
    model: str
    community: str | None = None
    name: str | None = None
    lat: float | None = None
    lon: float | None = None
    place: str | None = Field(default=None, description="e.g. sharp_bend, school_gate, junction")
    active_hours: ActiveHours | None = None
    rules: dict[str, Any] = Field(default_factory=dict, description="per-device rule overrides")


_HOURS: dict[tuple[time, time], ActiveHours] = {}


class Device(Record):
    """One registered field device (read-only; validated as ``_DeviceFields``).

    ``site`` is the site it is registered in, set by ``SiteRegistry`` (unset until then): the
    registry then maps an id to the device alone, without a ``(site, device)`` tuple per device
    (~6 MB at 100,000 devices; the slot itself fits in the object's allocation size class).
    """

    __slots__ = ("_rules", "active_hours", "community", "id", "lat", "lon", "model", "name",
                 "place", "site")
    _model = _DeviceFields
    _names = tuple(_DeviceFields.model_fields)

    id: str
    model: str
    community: str | None
    name: str | None
    lat: float | None
    lon: float | None
    place: str | None
    active_hours: ActiveHours | None
    _rules: dict[str, Any] | None
    site: Site

    def _fill(self, fields: Any) -> None:
        f: _DeviceFields = fields
        intern = sys.intern
        put = object.__setattr__
        put(self, "id", f.id)
        put(self, "model", intern(f.model))
        put(self, "community", None if f.community is None else intern(f.community))
        put(self, "name", f.name)
        put(self, "lat", f.lat)
        put(self, "lon", f.lon)
        put(self, "place", None if f.place is None else intern(f.place))
        hours = f.active_hours
        if hours is not None:  # one object per distinct window
            hours = _HOURS.setdefault((hours.start, hours.end), hours)
        put(self, "active_hours", hours)
        put(self, "_rules", f.rules or None)

    @property
    def rules(self) -> dict[str, Any]:
        """Per-device rule overrides (empty when none)."""
        return self._rules if self._rules is not None else {}


class _CheckpointFields(_Strict):
    """What a site file may say of one patrol checkpoint: validated here, kept as a record."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="Checkpoint")

    id: str
    tag_uid: str
    name: str
    community: str | None = None
    lat: float | None = None
    lon: float | None = None


class Checkpoint(Record):
    """A patrol checkpoint with its NFC tag (read-only; validated as ``_CheckpointFields``)."""

    __slots__ = ("community", "id", "lat", "lon", "name", "tag_uid")
    _model = _CheckpointFields
    _names = tuple(_CheckpointFields.model_fields)

    id: str
    tag_uid: str
    name: str
    community: str | None
    lat: float | None
    lon: float | None

    def _fill(self, fields: Any) -> None:
        super()._fill(fields)
        if self.community is not None:
            object.__setattr__(self, "community", sys.intern(self.community))


class Inspector(_Strict):
    """A patrol inspector (巡查员)."""

    id: str
    name: str
    community: str | None = None


class RoundTime(_Strict):
    """One scheduled round: local start time and window length."""

    start: time
    window_min: int = Field(default=90, gt=0, le=24 * 60)


class PatrolRoute(_Strict):
    """A patrol route: ordered checkpoints, who walks it and when."""

    id: str
    name: str
    community: str | None = None
    order: Literal["strict", "any"] = "any"
    checkpoints: list[str] = Field(min_length=1)
    readers: list[str] = Field(default_factory=list)
    inspectors: list[str] = Field(default_factory=list)
    rounds: list[RoundTime] = Field(default_factory=list)
    weekdays: list[int] = Field(
        default_factory=lambda: [0, 1, 2, 3, 4, 5, 6], description="0 = Monday"
    )
    skip_dates: list[date] = Field(default_factory=list)


class Site(_Strict):
    """One township office's site file."""

    site: str = Field(pattern=r"^[a-z0-9_-]+$")
    name: str
    name_en: str | None = None
    timezone: str = "Asia/Shanghai"
    tag_community: bool = Field(default=True, description="add the community tag to points")
    communities: list[Community] = Field(default_factory=list)
    devices: list[Device] = Field(default_factory=list)
    checkpoints: list[Checkpoint] = Field(default_factory=list)
    inspectors: list[Inspector] = Field(default_factory=list)
    routes: list[PatrolRoute] = Field(default_factory=list)
    rules: dict[str, Any] = Field(default_factory=dict, description="per-site rule overrides")

    @model_validator(mode="after")
    def _references_resolve(self) -> Site:
        communities = {c.id for c in self.communities}
        checkpoints = {c.id for c in self.checkpoints}
        devices = {d.id for d in self.devices}
        inspectors = {i.id for i in self.inspectors}
        problems: list[str] = []
        for kind, ids in (
            ("device", [d.id for d in self.devices]),
            ("checkpoint", [c.id for c in self.checkpoints]),
            ("tag_uid", [c.tag_uid for c in self.checkpoints]),
            ("route", [r.id for r in self.routes]),
        ):
            seen: set[str] = set()
            for ident in ids:
                if ident in seen:
                    problems.append(f"duplicate {kind} {ident!r}")
                seen.add(ident)
        placed: list[Device | Checkpoint | Inspector | PatrolRoute] = [
            *self.devices,
            *self.checkpoints,
            *self.inspectors,
            *self.routes,
        ]
        for item in placed:
            if item.community is not None and item.community not in communities:
                problems.append(f"{item.id}: unknown community {item.community!r}")
        for route in self.routes:
            problems += [
                f"route {route.id}: unknown checkpoint {c!r}"
                for c in route.checkpoints
                if c not in checkpoints
            ]
            problems += [
                f"route {route.id}: unknown reader {r!r}" for r in route.readers if r not in devices
            ]
            problems += [
                f"route {route.id}: unknown inspector {i!r}"
                for i in route.inspectors
                if i not in inspectors
            ]
        if problems:
            raise ValueError("; ".join(problems))
        return self

