"""Hazards (隐患): reported -> dispatched -> rectified -> verified, or reopened; overdue alarms.

Created from readers' ``hazard`` messages (deduplicated by reader, device time and tag) and by
officers through the API. The due time comes from the category (data in ``rules.yaml``),
counted from the report; dispatch may set another. Every step is kept with who and when. An
open hazard past its due time raises ``hazard_overdue`` (device id: the hazard id); rectifying
it clears that alarm. Thread-safe: the pipeline thread creates and checks, API threads act.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hub.model import Reading
from hub.patrol.alarms import PatrolAlarms
from hub.patrol.config import PatrolConfig
from hub.patrol.schedule import NS, iso_z
from hub.patrol.tables import HazardHistoryRow, HazardRow
from hub.sites import UNKNOWN_CHECKPOINT, SiteRegistry

STATUSES = ("reported", "dispatched", "rectified", "verified", "reopened")
OPEN = frozenset({"reported", "dispatched", "reopened"})
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "dispatch": (frozenset({"reported", "reopened"}), "dispatched"),
    "rectify": (frozenset({"dispatched", "reopened"}), "rectified"),
    "verify": (frozenset({"rectified"}), "verified"),
    "reopen": (frozenset({"rectified", "verified"}), "reopened"),
}
HOUR_NS = 3600 * NS


class HazardNotFound(LookupError):
    """No hazard with this id."""


class InvalidHazardTransition(ValueError):
    """The action is not allowed in the hazard's status."""


class HazardService:
    """Creates hazards, moves them through their lifecycle and watches their due times."""

    def __init__(self, sites: SiteRegistry, sessions: Callable[[], Session],
                 alarms: PatrolAlarms, config: PatrolConfig,
                 now: Callable[[str], int]) -> None:
        self.sites = sites
        self.sessions = sessions
        self.alarms = alarms
        self.config = config
        self.now = now
        self._lock = threading.RLock()
        # open hazards not yet alarmed: id -> (site, due_ns)
        self._watch: dict[str, tuple[str, int]] = {}
        with self.sessions() as session:
            for row in session.scalars(select(HazardRow).where(HazardRow.status.in_(OPEN))):
                if row.due_ns is not None and not row.overdue_alarmed:
                    self._watch[row.id] = (row.site, row.due_ns)

    # ------------------------------------------------------------------ creation

    def on_reading(self, reading: Reading) -> None:
        """Create a hazard from a reader's ``hazard`` reading (a re-sent one is dropped)."""
        if reading.site not in self.sites.sites or not reading.points:
            return
        point = reading.points[0]
        values = reading.values
        checkpoint = point.tag("checkpoint_id")
        tag_uid = str(values.get("tag_uid", "")) or None
        self.create(
            reading.site, str(values.get("category", "other")),
            str(values["note"]) if "note" in values else None,
            checkpoint if checkpoint and checkpoint != UNKNOWN_CHECKPOINT else None,
            str(values["photo_ref"]) if "photo_ref" in values else None,
            point.tag("patroller_id") or reading.device_id, at_ns=reading.time_ns,
            device_id=reading.device_id, tag_uid=tag_uid,
            dedupe_key=f"{reading.device_id}|{reading.time_ns}|{tag_uid or ''}")

    def create(self, site: str, category: str, note: str | None, checkpoint_id: str | None,
               photo_ref: str | None, actor: str, *, at_ns: int | None = None,
               device_id: str | None = None, tag_uid: str | None = None,
               dedupe_key: str | None = None) -> dict[str, Any] | None:
        """Create a hazard; None when ``dedupe_key`` was seen before."""
        if site not in self.sites.sites:
            raise ValueError(f"unknown site {site!r}")
        if checkpoint_id is not None and checkpoint_id not in {
                c.id for c in self.sites.sites[site].checkpoints}:
            raise ValueError(f"unknown checkpoint {checkpoint_id!r} in site {site!r}")
        at = at_ns if at_ns is not None else self.now(site)
        due = at + int(self.config.category(category).hours * HOUR_NS)
        row = HazardRow(
            id="HZ-" + uuid.uuid4().hex[:10].upper(), site=site, category=category,
            status="reported", note=note, photo_ref=photo_ref, checkpoint_id=checkpoint_id,
            tag_uid=tag_uid, reported_by=actor, device_id=device_id, reported_ns=at,
            department=None, due_ns=due, rectified_ns=None, rectify_note=None,
            evidence_ref=None, verified_ns=None, verified_by=None, dedupe_key=dedupe_key,
            overdue_alarmed=False)
        history = HazardHistoryRow(hazard_id=row.id, at_ns=at, actor=actor, action="report",
                                   from_status=None, to_status="reported", note=note)
        with self._lock:
            try:
                with self.sessions() as session:
                    session.add(row)
                    session.add(history)
                    session.commit()
            except IntegrityError:
                return None
            self._watch[row.id] = (site, due)
        return self._json(row, self.now(site))

    # ------------------------------------------------------------------ lifecycle

    def act(self, hazard_id: str, action: str, actor: str, *, note: str | None = None,
            department: str | None = None, due_ns: int | None = None,
            evidence_ref: str | None = None) -> dict[str, Any]:
        """Apply dispatch, rectify, verify or reopen; raise HazardNotFound or 409-worthy errors."""
        allowed, target = TRANSITIONS[action]
        with self._lock, self.sessions() as session:
            row = session.get(HazardRow, hazard_id)
            if row is None:
                raise HazardNotFound(hazard_id)
            if row.status not in allowed:
                raise InvalidHazardTransition(
                    f"hazard {hazard_id} is {row.status}: cannot {action} "
                    f"(allowed from {', '.join(sorted(allowed))})")
            now = self.now(row.site)
            before = row.status
            row.status = target
            clear_note = None
            if action == "dispatch":
                row.department = department
                if due_ns is not None:
                    row.due_ns = due_ns
            elif action == "rectify":
                row.rectified_ns = now
                row.rectify_note = note
                row.evidence_ref = evidence_ref
                clear_note = "rectified"
            elif action == "verify":
                row.verified_ns = now
                row.verified_by = actor
            else:  # reopen: a new deadline from now
                row.verified_ns = None
                row.verified_by = None
                row.due_ns = now + int(self.config.category(row.category).hours * HOUR_NS)
                row.overdue_alarmed = False
            session.add(HazardHistoryRow(hazard_id=row.id, at_ns=now, actor=actor,
                                         action=action, from_status=before, to_status=target,
                                         note=note if action != "dispatch" else department))
            alarmed = row.overdue_alarmed
            if target in OPEN and row.due_ns is not None and not row.overdue_alarmed:
                self._watch[row.id] = (row.site, row.due_ns)
            else:
                self._watch.pop(row.id, None)
            if clear_note and alarmed:
                row.overdue_alarmed = False
            session.commit()
            data = self._json(row, now)
        if clear_note and alarmed:
            self.alarms.clear(hazard_id, "hazard_overdue", now, clear_note)
        return data

    def advance(self, site: str, now: int) -> None:
        """Raise ``hazard_overdue`` for the site's open hazards past their due time."""
        with self._lock:
            due = [h for h, (s, t) in self._watch.items() if s == site and t < now]
            for hazard_id in due:
                self._watch.pop(hazard_id, None)
                with self.sessions() as session:
                    row = session.get(HazardRow, hazard_id)
                    if row is None or row.status not in OPEN or row.due_ns is None:
                        continue
                    row.overdue_alarmed = True
                    session.commit()
                    cat = self.config.category(row.category)
                    hours = round((now - row.due_ns) / HOUR_NS, 1)
                    self.alarms.raise_single(
                        row.site, row.id, "hazard_overdue",
                        {"hazard": row.id, "category": row.category, "category_zh": cat.zh,
                         "due": iso_z(row.due_ns) or "", "hours": hours,
                         "checkpoint": row.checkpoint_id or "", "reader": row.device_id or ""},
                        hours, row.due_ns, model="hazard")

    # ------------------------------------------------------------------ views

    def get(self, hazard_id: str) -> dict[str, Any]:
        """One hazard with its history; raise HazardNotFound."""
        with self.sessions() as session:
            row = session.get(HazardRow, hazard_id)
            if row is None:
                raise HazardNotFound(hazard_id)
            data = self._json(row, self.now(row.site))
            data["history"] = [
                {"at": iso_z(h.at_ns), "actor": h.actor, "action": h.action,
                 "from_status": h.from_status, "to_status": h.to_status, "note": h.note}
                for h in session.scalars(select(HazardHistoryRow).where(
                    HazardHistoryRow.hazard_id == hazard_id).order_by(HazardHistoryRow.id))]
            return data

    def search(self, site: str | None = None, status: str | None = None,
             category: str | None = None, overdue: bool | None = None,
             since_ns: int | None = None, until_ns: int | None = None) -> list[dict[str, Any]]:
        """Hazards, newest first, filtered."""
        query = select(HazardRow).order_by(HazardRow.reported_ns.desc(), HazardRow.id)
        if site is not None:
            query = query.where(HazardRow.site == site)
        if status is not None:
            query = query.where(HazardRow.status.in_(status.split(",")))
        if category is not None:
            query = query.where(HazardRow.category == category)
        if since_ns is not None:
            query = query.where(HazardRow.reported_ns >= since_ns)
        if until_ns is not None:
            query = query.where(HazardRow.reported_ns < until_ns)
        with self.sessions() as session:
            items = [self._json(r, self.now(r.site)) for r in session.scalars(query)]
        if overdue is not None:
            items = [i for i in items if i["overdue"] is overdue]
        return items

    def rows(self, site: str) -> list[HazardRow]:
        """Every hazard row of a site (for KPIs and reports)."""
        with self.sessions() as session:
            return list(session.scalars(select(HazardRow).where(HazardRow.site == site)))

    @staticmethod
    def is_overdue(row: HazardRow, now: int) -> bool:
        """True when an open hazard is past its due time."""
        return row.status in OPEN and row.due_ns is not None and row.due_ns < now

    def _json(self, row: HazardRow, now: int) -> dict[str, Any]:
        return {
            "id": row.id, "site": row.site, "category": row.category, "status": row.status,
            "note": row.note, "photo_ref": row.photo_ref, "checkpoint_id": row.checkpoint_id,
            "reported_by": row.reported_by, "device_id": row.device_id,
            "reported_at": iso_z(row.reported_ns), "department": row.department,
            "due_at": iso_z(row.due_ns), "overdue": self.is_overdue(row, now),
            "rectified_at": iso_z(row.rectified_ns), "rectify_note": row.rectify_note,
            "evidence_ref": row.evidence_ref, "verified_at": iso_z(row.verified_ns),
            "verified_by": row.verified_by,
        }
