"""Site files: communities, the device registry, patrol checkpoints, routes and schedules."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, time
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

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


class Device(_Strict):
    """One registered field device."""

    id: str
    model: str
    community: str | None = None
    name: str | None = None
    lat: float | None = None
    lon: float | None = None
    place: str | None = Field(default=None, description="e.g. sharp_bend, school_gate, junction")
    active_hours: ActiveHours | None = None
    rules: dict[str, Any] = Field(default_factory=dict, description="per-device rule overrides")


class Checkpoint(_Strict):
    """A patrol checkpoint with its NFC tag."""

    id: str
    tag_uid: str
    name: str
    community: str | None = None
    lat: float | None = None
    lon: float | None = None


class Inspector(_Strict):
    """A patrol inspector (巡查员)."""

    id: str
    name: str
    community: str | None = None


class RoundTime(_Strict):
    """One scheduled round: local start time and window length."""

    start: time
    window_min: int = Field(default=90, gt=0, le=24 * 60)


class Route(_Strict):
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
    routes: list[Route] = Field(default_factory=list)
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
        placed: list[Device | Checkpoint | Inspector | Route] = [
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


class SiteRegistry:
    """All sites loaded, with the lookups the pipeline needs."""

    def __init__(self, sites: Iterable[Site]) -> None:
        self.sites: dict[str, Site] = {}
        self.devices: dict[str, tuple[Site, Device]] = {}
        self.tags: dict[str, tuple[Site, Checkpoint]] = {}
        self.checkpoint_routes: dict[tuple[str, str], list[Route]] = {}
        for site in sites:
            if site.site in self.sites:
                raise ValueError(f"site {site.site!r} is defined twice")
            self.sites[site.site] = site
            for device in site.devices:
                if device.id in self.devices:
                    raise ValueError(f"device {device.id!r} is in two sites")
                self.devices[device.id] = (site, device)
            for checkpoint in site.checkpoints:
                self.tags[checkpoint.tag_uid.upper()] = (site, checkpoint)
            for route in site.routes:
                for cp in route.checkpoints:
                    self.checkpoint_routes.setdefault((site.site, cp), []).append(route)

    def device(self, device_id: str) -> tuple[Site, Device] | None:
        """Return the site and registry entry of a device, or None when unregistered."""
        return self.devices.get(device_id)

    def checkpoint_for_tag(self, tag_uid: str) -> tuple[Site, Checkpoint] | None:
        """Return the checkpoint an NFC tag is fixed at, or None for an unknown tag."""
        return self.tags.get(tag_uid.upper())

    def routes_for_checkpoint(self, site: str, checkpoint_id: str) -> list[Route]:
        """Return the routes that include a checkpoint."""
        return self.checkpoint_routes.get((site, checkpoint_id), [])


def load_site_file(path: Path) -> Site:
    """Load and validate one site file."""
    with path.open(encoding="utf-8") as handle:
        # libyaml's loader: a county's site file can list 100,000 devices (4x faster, less RAM)
        data = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return Site.model_validate(data)


def load_sites(directory: Path | None) -> SiteRegistry:
    """Load every ``*.yaml`` site file of a directory (none when it is missing)."""
    if directory is None or not directory.is_dir():
        return SiteRegistry([])
    return SiteRegistry(load_site_file(p) for p in sorted(directory.glob("*.yaml")))
