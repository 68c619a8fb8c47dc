"""The patrol service: clock, round tracker and hazards wired to the pipeline; JSON views."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from hub.db import create_tables, make_sessionmaker
from hub.model import Reading, Refusal
from hub.patrol.alarms import AlarmApi, PatrolAlarms
from hub.patrol.clock import ClockMode, PatrolClock
from hub.patrol.config import load_config
from hub.patrol.departments import DepartmentRegister, HandoverHook
from hub.patrol.hazards import HazardService, Refuse
from hub.patrol.monthly_send import MonthlySender, ReportHook
from hub.patrol.schedule import NS, iso_z, occurrences, occurrences_between, to_ns
from hub.patrol.tables import TABLES, ScanRow, add_missing_columns, add_missing_indexes
from hub.patrol.tracker import RoundTracker, stored_rounds
from hub.settings import Settings
from hub.sites import Site, SiteRegistry

PATROL_KIND = "patrol_reader"


class UnknownSite(LookupError):
    """No site with this name."""


class PatrolService:
    """Everything of cloud patrol: scans to rounds, hazards, KPIs; hooks for the pipeline."""

    def __init__(self, sites: SiteRegistry, engine: Engine, alarms: AlarmApi, *,
                 clock_mode: ClockMode = "wall", rules_file: Path | None = None,
                 wall: Callable[[], int] = time.time_ns,
                 departments: DepartmentRegister | None = None,
                 handover: HandoverHook | None = None, refuse: Refuse | None = None,
                 report: ReportHook | None = None) -> None:
        create_tables(engine, TABLES)
        add_missing_columns(engine, TABLES)  # a store an older hub created gains new columns
        add_missing_indexes(engine, TABLES)  # ... and new indexes
        self.sites = sites
        self.sessions = make_sessionmaker(engine)
        self.config = load_config(rules_file)
        self.clock = PatrolClock(clock_mode, wall)
        self.alarms = PatrolAlarms(alarms, self.sessions, self.config)
        self.tracker = RoundTracker(sites, self.sessions, self.alarms, self.config)
        for name in sites.sites:
            self.clock.restore(name, self.tracker.saved_clock(name))
        self.departments = departments or DepartmentRegister({})
        self.hazards = HazardService(sites, self.sessions, self.alarms, self.config, self.now,
                                     departments=self.departments, handover=handover,
                                     refuse=refuse)
        self.monthly = MonthlySender(sites, self.departments, self.hazards, report)
        self.on_refused: Callable[[Refusal], None] | None = None  # the hub's refusal log

    @classmethod
    def from_settings(cls, settings: Settings, engine: Engine, alarms: AlarmApi,
                      sites: SiteRegistry, clock: Callable[[], int] | None = None,
                      *, handover: HandoverHook | None = None, refuse: Refuse | None = None,
                      report: ReportHook | None = None) -> PatrolService:
        """Build the service with HUB_PATROL_CLOCK; ``clock`` is the hub's (wall mode)."""
        # HUB_PATROL_CLOCK when given, else the hub's HUB_CLOCK: one setting does both.
        chosen = (settings.patrol_clock if "patrol_clock" in settings.model_fields_set
                  else settings.clock)
        mode: ClockMode = "device" if chosen == "device" else "wall"
        return cls(sites, engine, alarms, clock_mode=mode, wall=clock or time.time_ns,
                   departments=DepartmentRegister.load(settings.sites_dir),
                   handover=handover, refuse=refuse, report=report)

    # ------------------------------------------------------------------ pipeline hooks

    def now(self, site: str) -> int:
        """The site's patrol clock (wall time until device mode has seen a device time)."""
        return self.clock.now(site) or time.time_ns()

    def on_reading(self, reading: Reading) -> None:
        """Reading hook: move the clock, run what is due, then take scans and hazards.

        A reading of a device no site lists moves no clock; its hazard still goes to the hazard
        service, which finds the site from the checkpoint's tag or refuses it with a reason.
        """
        if reading.kind != PATROL_KIND and self.clock.mode == "wall":
            return  # what most readings are: nothing for patrol (bench/peers.py runs this hook)
        if reading.site not in self.sites.sites:
            if reading.kind == PATROL_KIND and reading.message == "hazard":
                self.hazards.on_reading(reading)
                return
            placed = self._placed_scan(reading)  # a scan: at its tag's site, else refused
            if placed is None:
                return
            reading = placed
        patrol = reading.kind == PATROL_KIND and reading.message in ("scan", "hazard")
        if not patrol and self.clock.mode == "wall":
            return
        self.clock.observe(reading)
        now = self.clock.now(reading.site)
        if now is not None:
            self._advance(reading.site, now)
        if reading.kind != PATROL_KIND:
            return
        if reading.message == "scan" and now is not None:
            self.tracker.on_scan(reading, now)
        elif reading.message == "hazard":  # even before the device clock has a time
            self.hazards.on_reading(reading)

    def _placed_scan(self, reading: Reading) -> Reading | None:
        """A scan by a reader no site lists belongs to its tag's site; without one, refused."""
        if reading.kind != PATROL_KIND or reading.message != "scan":
            return None  # not a scan: hazards of such readers are the hazard service's to place
        tag = reading.values.get("tag_uid")
        found = self.sites.checkpoint_for_tag(str(tag)) if tag is not None else None
        if found is not None:
            return replace(reading, site=found[0].site)
        if self.on_refused is not None:
            self.on_refused(Refusal(
                topic=f"(patrol) {reading.device_id} {reading.message}",
                received_ns=reading.received_ns, reason="scan_unattributed",
                detail=(f"scan of tag {str(tag)[:40]!r} by reader {reading.device_id!r}: neither "
                        "is in a site file, so it counts in no round (it is in InfluxDB)"),
                head=b"", device_id=reading.device_id, model=reading.model))
        return None

    def on_tick(self, now_ns: int) -> None:
        """Tick hook: in wall mode, open and close windows and check due hazards."""
        if self.clock.mode != "wall":
            return
        self.clock.tick(now_ns)
        for name in self.sites.sites:
            self._advance(name, now_ns)
        # no flush here: the pipeline's flush hook writes the tracker from the writer's thread

    def _advance(self, site: str, now: int) -> None:
        self.tracker.advance(site, now)
        self.hazards.advance(site, now)
        self.monthly.advance(site, now)

    # ------------------------------------------------------------------ views

    def site(self, name: str) -> Site:
        """A site by name; raise UnknownSite."""
        site = self.sites.sites.get(name)
        if site is None:
            raise UnknownSite(name)
        return site

    def rounds(self, site_name: str, day: date,
               route_id: str | None = None) -> list[dict[str, Any]]:
        """The rounds of a local date with per-checkpoint detail (docs/patrol-api.md)."""
        site = self.site(site_name)
        occs = occurrences(site, day, route_id)
        return self._rounds_json(site, occs)

    def rounds_between(self, site_name: str, first: date, last: date) -> list[dict[str, Any]]:
        """The rounds of local dates first..last (as ``rounds``)."""
        site = self.site(site_name)
        return self._rounds_json(site, occurrences_between(site, first, last))

    def _rounds_json(self, site: Site, occs: list[Any]) -> list[dict[str, Any]]:
        self.tracker.flush()  # what the pipeline has not written yet is shown too
        with self.sessions() as session:
            rows, scans = stored_rounds(session, [o.id for o in occs])
        now = self.now(site.site)
        names = {c.id: c.name for c in site.checkpoints}
        grace = int(self.config.round_start_grace_min * 60 * NS)
        out = []
        for occ in occs:
            row = rows.get(occ.id)
            if row is not None:
                state, concluded, first = row.state, row.concluded, row.first_scan_ns
                watched = row.watched
            else:
                concluded = occ.end_ns <= now
                state, first = ("missed" if concluded else "scheduled"), None
                watch_from = self.tracker.watch_from(site.site)
                watched = watch_from is not None and occ.end_ns >= watch_from
            earliest: dict[str, ScanRow] = {}
            for scan in scans.get(occ.id, []):
                if scan.checkpoint_id is not None and scan.checkpoint_id not in earliest:
                    earliest[scan.checkpoint_id] = scan
            checkpoints = []
            for cp in occ.route.checkpoints:
                found = earliest.get(cp)
                checkpoints.append({
                    "checkpoint_id": cp, "name": names.get(cp, cp),
                    "status": "scanned" if found else ("missed" if concluded else "pending"),
                    "scanned_at": iso_z(found.time_ns) if found else None,
                    "patroller_id": found.patroller_id if found else None,
                    "late_s": max(0, (found.arrival_ns - found.time_ns) // NS) if found else None,
                    "late_upload": bool(found.late_upload) if found else False,
                })
            done = sum(1 for c in checkpoints if c["status"] == "scanned")
            on_time: bool | None = None
            if state in ("completed", "incomplete", "missed"):
                on_time = state == "completed" and first is not None and \
                    first < occ.start_ns + grace
            out.append({
                "id": occ.id, "site": site.site, "route_id": occ.route.id,
                "route_name": occ.route.name, "date": occ.date.isoformat(),
                "start": f"{occ.start:%H:%M}",
                "window_start": iso_z(occ.start_ns), "window_end": iso_z(occ.end_ns),
                "state": state, "order": occ.route.order, "done": done,
                "total": len(occ.route.checkpoints), "on_time": on_time,
                "out_of_order": bool(row.out_of_order) if row is not None else False,
                "watched": watched,
                "readers": list(occ.route.readers),
                "patrollers": sorted({s.patroller_id for s in scans.get(occ.id, [])
                                      if s.patroller_id}),
                "checkpoints": checkpoints,
            })
        return out

    def day_bounds(self, site: Site, first: date, last: date) -> tuple[int, int]:
        """[start, end) in ns of the local dates first..last."""
        tz = ZoneInfo(site.timezone)
        begin = datetime.combine(first, datetime.min.time(), tzinfo=tz)
        end = datetime.combine(last + timedelta(days=1), datetime.min.time(), tzinfo=tz)
        return to_ns(begin), to_ns(end)

    def kpi(self, site_name: str, first: date, last: date) -> dict[str, Any]:
        """Patrol and hazard KPIs over local dates first..last (docs/patrol-api.md)."""
        from hub.patrol.kpi import compute_kpi

        site = self.site(site_name)
        rounds = self._rounds_json(site, occurrences_between(site, first, last))
        since, until = self.day_bounds(site, first, last)
        hazards = [h for h in self.hazards.rows(site.site) if since <= h.reported_ns < until]
        now = self.now(site.site)
        result = compute_kpi(rounds, hazards, now)
        return {"site": site.site, "from": first.isoformat(), "to": last.isoformat(), **result}
