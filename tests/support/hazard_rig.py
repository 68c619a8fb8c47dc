"""A PatrolService with a real AlarmService on a given state store; the test moves the clock."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hub.alarms.service import AlarmService
from hub.db import create_all, make_engine
from hub.ingest.normalize import Normalizer
from hub.model import InboundMessage, Reading
from hub.patrol.departments import DepartmentRegister, HandoverMessage
from hub.patrol.service import PatrolService
from hub.profiles.loader import load_profiles
from hub.settings import Settings
from hub.sites import load_sites

ROOT = Path(__file__).resolve().parents[2]
TZ = ZoneInfo("Asia/Shanghai")
NS = 1_000_000_000


def local(day: date, hhmm: str) -> datetime:
    """A site-local moment on a day."""
    return datetime.combine(day, datetime.strptime(hhmm, "%H:%M").time(), tzinfo=TZ)


def ns(moment: datetime) -> int:
    """Epoch nanoseconds of an aware datetime."""
    return int(moment.timestamp()) * NS


def fuping_with_routes(tmp: Path, keep: set[str]) -> Path:
    """A sites folder with Fuping alone, only the routes ``keep`` (fewer rounds to track).

    Every checkpoint stays, so hazards anywhere in Fuping still find their place; the
    departments register comes along.
    """
    import shutil

    import yaml

    folder = tmp / "sites"
    (folder / "departments").mkdir(parents=True, exist_ok=True)
    data = yaml.safe_load((ROOT / "sites" / "fuping.yaml").read_text(encoding="utf-8"))
    data["routes"] = [r for r in data["routes"] if r["id"] in keep]
    (folder / "fuping.yaml").write_text(yaml.safe_dump(data, allow_unicode=True),
                                        encoding="utf-8")
    shutil.copy(ROOT / "sites" / "departments" / "fuping.yaml", folder / "departments")
    return folder


class HazardRig:
    """The patrol service over ``url`` (SQLite or PostgreSQL), refusals and hand-overs kept."""

    def __init__(self, url: str, start: datetime, clock: str = "wall",
                 sites_dir: Path = ROOT / "sites") -> None:
        self.url = url
        self.clock = clock
        self.sites_dir = sites_dir
        self.now = ns(start)
        self.sites = load_sites(sites_dir)
        self.normalizer = Normalizer(load_profiles(ROOT / "device_profiles"), self.sites)
        self.refused: list[tuple[str, str, str]] = []
        self.handovers: list[HandoverMessage] = []
        self.open()

    def open(self) -> None:
        """(Re)build the services on the same store."""
        self.engine = make_engine(self.url)
        create_all(self.engine)
        self.alarms = AlarmService(self.engine, sites=self.sites)
        if self.clock == "device":  # what HUB_CLOCK=device makes of it
            settings = Settings(clock="device", sites_dir=self.sites_dir,
                                profiles_dir=ROOT / "device_profiles")
            self.patrol = PatrolService.from_settings(
                settings, self.engine, self.alarms, self.sites, clock=lambda: self.now,
                handover=self.handovers.append, refuse=self._refuse)
            return
        self.patrol = PatrolService(
            self.sites, self.engine, self.alarms, wall=lambda: self.now,
            departments=DepartmentRegister.load(self.sites_dir),
            handover=self.handovers.append, refuse=self._refuse)

    def _lag(self) -> int:
        # device mode: received a moment after the device time, so the device time is read
        # as the device's (a reading received at its own time says nothing of the clock)
        return NS if self.clock == "device" else 0

    def _refuse(self, reading: Reading, reason: str, detail: str) -> None:
        self.refused.append((reading.device_id, reason, detail))

    def close(self) -> None:
        """Stop the services and let the engine go."""
        self.alarms.close()
        self.engine.dispose()

    def tick(self, moment: datetime | int) -> None:
        """Move the wall clock to ``moment`` and let the patrol service run what is due."""
        self.now = max(self.now, moment if isinstance(moment, int) else ns(moment))
        self.patrol.on_tick(self.now)

    def hazard(self, when: datetime, *, reader: str = "FP-R03", tag: str = "04D2216EE729C5",
               received: datetime | None = None, **fields: Any) -> Reading:
        """A reader's hazard message through the normalizer into the service."""
        body = {"reader": reader, "patroller": "FP-P017", "tag_uid": tag,
                "ts": when.isoformat(), "category": "fire_exit_blocked", "note": "blocked",
                **fields}
        at = ns(received or when) + self._lag()
        self.now = max(self.now, at)
        result = self.normalizer.process(InboundMessage(
            f"patrol/{reader}/hazard", json.dumps(body).encode(), 1, False, at))
        assert isinstance(result, Reading), result
        self.patrol.on_reading(result)
        return result

    def scan(self, when: datetime, *, reader: str = "FP-R01",
             tag: str = "0440524709EDDB") -> None:
        """A reader's scan (in device mode it moves the site's clock)."""
        body = {"reader": reader, "patroller": "FP-P001", "tag_uid": tag,
                "ts": when.isoformat()}
        at = ns(when) + self._lag()
        self.now = max(self.now, at)
        result = self.normalizer.process(InboundMessage(
            f"patrol/{reader}/scan", json.dumps(body).encode(), 1, False, at))
        assert isinstance(result, Reading), result
        self.patrol.on_reading(result)

    def alarm(self, device: str, rule: str) -> dict[str, Any] | None:
        """The newest alarm of (device, rule), or None."""
        self.alarms.flush(force=True)
        found, _ = self.alarms.list(device_id=device, rule=rule, limit=10)
        return found[0] if found else None
