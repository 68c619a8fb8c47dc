"""The register of departments hazards are handed to, per site, and the hand-over hook.

Data: ``<HUB_SITES_DIR>/departments/<site>.yaml`` (a list of departments: id, name, contact,
phone, optional ``channel``: the id of a notification channel; optional top-level
``county_channel``: where the county rungs go; optional ``monthly_report``: the channel, day
and site-local time of last month's report notice, hub.patrol.monthly_send). Dispatch names a
department from its site's register (by id or name); the department then gets the hand-over
message, and later the ladder's reminders, through a ``HandoverHook``: the notification
service's when a notify file is configured (it sends on the channel), else ``log_handover``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)


class Department(BaseModel):
    """One department of a site's register."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    name: str = Field(min_length=1, max_length=200)
    contact: str = Field(min_length=1, max_length=64)
    phone: str = Field(pattern=r"^[0-9+\- ]{3,32}$")
    channel: str | None = Field(default=None, max_length=64)


class MonthlyReport(BaseModel):
    """When and where a site's previous-month report is sent (site-local day and time)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    channel: str = Field(min_length=1, max_length=64)
    day: int = Field(default=1, ge=1, le=28)  # 28: every month has the day
    at: str = Field(default="08:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


class SiteDepartments(BaseModel):
    """A site's register file."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    site: str
    county_channel: str | None = Field(default=None, max_length=64)
    monthly_report: MonthlyReport | None = None
    departments: list[Department]


@dataclass(frozen=True, slots=True)
class HandoverMessage:
    """What a department (or the county level) is told about a hazard."""

    site: str
    hazard_id: str
    event: str  # dispatch, reminder, overdue, supervised, county
    department: Department | None
    channel: str | None
    text_zh: str
    text_en: str
    details: dict[str, Any]
    seq: int = 0  # the hazard history row it stems from: one message per (hazard, seq)


class HandoverHook(Protocol):
    """Where hand-over messages go (the notification service, later)."""

    def __call__(self, message: HandoverMessage) -> None:
        """Deliver or queue one message."""
        ...


def log_handover(message: HandoverMessage) -> None:
    """The default hook: log the message (no channel is wired)."""
    log.info("hazard %s %s -> %s (channel %s): %s", message.hazard_id, message.event,
             message.department.name if message.department else "(no department)",
             message.channel,
             message.text_en)


class UnknownDepartment(ValueError):
    """The site's register lists no such department."""


class DepartmentRegister:
    """Departments per site, read once from the data files."""

    def __init__(self, by_site: dict[str, list[Department]],
                 county: dict[str, str] | None = None,
                 monthly: dict[str, MonthlyReport] | None = None) -> None:
        self._by_site = by_site
        self._county = county or {}
        self._monthly = monthly or {}

    @classmethod
    def load(cls, sites_dir: Path | None) -> DepartmentRegister:
        """Read ``departments/*.yaml`` under the sites folder (empty when there is none)."""
        by_site: dict[str, list[Department]] = {}
        county: dict[str, str] = {}
        monthly: dict[str, MonthlyReport] = {}
        folder = sites_dir / "departments" if sites_dir is not None else None
        if folder is not None and folder.is_dir():
            for path in sorted(folder.glob("*.yaml")):
                with path.open(encoding="utf-8") as handle:
                    data = SiteDepartments.model_validate(yaml.safe_load(handle))
                ids = [d.id for d in data.departments]
                if len(set(ids)) != len(ids):
                    raise ValueError(f"{path}: department ids repeat")
                by_site.setdefault(data.site, []).extend(data.departments)
                if data.county_channel is not None:
                    county[data.site] = data.county_channel
                if data.monthly_report is not None:
                    monthly[data.site] = data.monthly_report
        return cls(by_site, county, monthly)

    def county_channel(self, site: str) -> str | None:
        """The channel a site's county-level hand-overs go to, or None."""
        return self._county.get(site)

    def monthly_report(self, site: str) -> MonthlyReport | None:
        """When and where a site's monthly report is sent, or None."""
        return self._monthly.get(site)

    def of_site(self, site: str) -> list[Department]:
        """The site's departments in file order."""
        return list(self._by_site.get(site, []))

    def find(self, site: str, key: str | None) -> Department | None:
        """A department by id or name, or None."""
        if key is None:
            return None
        for dep in self._by_site.get(site, []):
            if key in (dep.id, dep.name):
                return dep
        return None

    def resolve(self, site: str, key: str) -> Department:
        """A department by id or name; raise UnknownDepartment naming the choices."""
        found = self.find(site, key)
        if found is None:
            names = ", ".join(f"{d.id} ({d.name})" for d in self._by_site.get(site, []))
            raise UnknownDepartment(f"department {key!r} is not in the register of site "
                                    f"{site!r}: use one of {names or 'none registered'}")
        return found
