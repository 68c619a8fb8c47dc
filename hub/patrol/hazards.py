"""Hazards (隐患): reported -> dispatched -> rectified -> verified, or reopened; the ladder.

Created from readers' ``hazard`` messages (deduplicated by reader, device time and tag; rate
limited per reader and per checkpoint) and by officers through the API. A hazard has a grade
(general 一般 or major 重大); its deadline follows grade and category (data in ``rules.yaml``),
counted from when the hub learned of it, in calendar or working hours. Dispatch hands it to a
department of the site's register. A major hazard is rectified only with stored "after"
evidence, and whoever rectified cannot verify (four eyes). Open hazards climb the escalation
ladder (reminder, overdue alarm, 督办 supervision, county), each rung in the history; a reopen
after a failed re-check starts a new deadline and the ladder again. Every by-id lookup goes
through ``_find`` with the caller's site scope. Thread-safe: the pipeline thread creates and
escalates, API threads act.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Callable, Collection
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, load_only

from hub.evidence.service import EvidenceRow
from hub.model import Reading
from hub.patrol.alarms import PatrolAlarms
from hub.patrol.config import GRADES, PatrolConfig, Rung
from hub.patrol.deadlines import HOUR_NS, due_ns
from hub.patrol.departments import (
    Department,
    DepartmentRegister,
    HandoverHook,
    HandoverMessage,
    log_handover,
)
from hub.patrol.limits import SlidingLimit
from hub.patrol.schedule import iso_z
from hub.patrol.tables import HazardEvidenceRow, HazardHistoryRow, HazardRow, PhotoRefRow
from hub.sites import UNKNOWN_CHECKPOINT, SiteRegistry

STATUSES = ("reported", "dispatched", "rectified", "verified", "reopened")
OPEN = frozenset({"reported", "dispatched", "reopened"})
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "dispatch": (frozenset({"reported", "reopened"}), "dispatched"),
    "rectify": (frozenset({"dispatched", "reopened"}), "rectified"),
    "verify": (frozenset({"rectified"}), "verified"),
    "reopen": (frozenset({"rectified", "verified"}), "reopened"),
}
EVIDENCE_KINDS = ("before", "after")
# column widths of HazardRow: device text is cut to fit, the cut recorded in the history
LIMITS = {"category": 64, "photo_ref": 400, "tag_uid": 64, "reported_by": 64,
          "device_id": 128, "patroller_id": 64, "route_id": 64}
Scope = Collection[str] | None
Refuse = Callable[[Reading, str, str], None]


class HazardNotFound(LookupError):
    """No hazard with this id (or not in the caller's sites)."""


class InvalidHazardTransition(ValueError):
    """The action is not allowed in the hazard's status."""


class FourEyes(InvalidHazardTransition):
    """Whoever rectified a hazard cannot also verify it."""


class EvidenceRequired(ValueError):
    """A major hazard is rectified only with stored "after" evidence."""


def _clean(text: str | None, limit: int | None = None) -> tuple[str | None, bool]:
    """Text without NUL and other control characters (newline and tab kept), cut to limit."""
    if text is None:
        return None, False
    cleaned = "".join(c for c in text if c in "\n\t" or (c >= " " and c != "\x7f"))
    if limit is not None and len(cleaned) > limit:
        return cleaned[:limit], True
    return cleaned, cleaned != text


def _refusal_nothing(reading: Reading, reason: str, detail: str) -> None:
    raise RuntimeError(f"hazard of {reading.device_id} refused ({reason}) with no refusal "
                       f"log wired: {detail}")


class HazardService:
    """Creates hazards, moves them through their lifecycle and climbs their ladders."""

    def __init__(self, sites: SiteRegistry, sessions: Callable[[], Session],
                 alarms: PatrolAlarms, config: PatrolConfig,
                 now: Callable[[str], int], *, departments: DepartmentRegister | None = None,
                 handover: HandoverHook | None = None, refuse: Refuse | None = None) -> None:
        self.sites = sites
        self.sessions = sessions
        self.alarms = alarms
        self.config = config
        self.now = now
        self.departments = departments or DepartmentRegister({})
        self.handover: HandoverHook = handover or log_handover
        # the notification service's delivery rows per history row (seq), when one is wired
        self.deliveries: Callable[[str], dict[int, list[dict[str, Any]]]] | None = None
        # without a refusal log (tests, reports) a refused hazard is an error, never silent
        self.refuse: Refuse = refuse or _refusal_nothing
        self._lock = threading.RLock()
        # cluster mode (hub.cluster.wiring): whether this hub holds a hazard's alarms (its id's
        # partition is owned here); only that hub climbs its ladder
        self.owns: Callable[[str], bool] | None = None
        self.node: str | None = None  # cluster mode: this hub's id, named by the rungs it climbs
        self._per_reader = SlidingLimit(config.hazard_limits.per_reader)
        self._per_checkpoint = SlidingLimit(config.hazard_limits.per_checkpoint)
        # open hazards with a rung still to come: id -> (site, when the next rung is due)
        self._watch: dict[str, tuple[str, int]] = {}
        with self.sessions() as session:
            for row in session.scalars(select(HazardRow).where(HazardRow.status.in_(OPEN))):
                self._rewatch(row)

    # ------------------------------------------------------------------ creation

    def on_reading(self, reading: Reading) -> None:
        """Create a hazard from a reader's ``hazard`` reading; refuse it with a reason if not.

        A re-sent hazard (same reader, device time and tag) is the same hazard. A reader no
        site lists still reports for the site its checkpoint's tag belongs to.
        """
        if not reading.points:
            self.refuse(reading, "hazard_invalid", "hazard message without a point")
            return
        point = reading.points[0]
        values = reading.values
        tag_uid = str(values.get("tag_uid", "")) or None
        site = reading.site if reading.site in self.sites.sites else None
        if site is None and tag_uid is not None:
            found = self.sites.checkpoint_for_tag(tag_uid)
            site = found[0].site if found is not None else None
        if site is None:
            self.refuse(reading, "hazard_unknown_site",
                        f"reader {reading.device_id} is in no site and tag "
                        f"{tag_uid or '(none)'} is on no site's checkpoint: the hazard has no "
                        f"site to go to; register the reader or the tag")
            return
        checkpoint = point.tag("checkpoint_id")
        checkpoint = checkpoint if checkpoint and checkpoint != UNKNOWN_CHECKPOINT else None
        now = self.now(site)
        with self._lock:
            for limit, key, what in ((self._per_reader, reading.device_id, "reader"),
                                     (self._per_checkpoint, checkpoint or tag_uid, "checkpoint")):
                if key is not None and not limit.allows(f"{site}|{key}", now):
                    self.refuse(reading, "hazard_rate_limited",
                                f"{what} {key} sent more than {limit.describe()} hazards "
                                f"(hazard_limits in the patrol rules)")
                    return
            grade = str(values.get("grade", "general"))
            notes = []
            if grade not in GRADES:
                notes.append(f"grade {grade[:32]!r} unknown: general")
                grade = "general"
            route = point.tag("route_id")
            key = f"{reading.device_id}|{reading.time_ns}|{tag_uid or ''}"
            if len(key) > 300:  # the column's width: a long id is kept apart by its digest
                key = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
            try:
                created = self.create(
                    site, str(values.get("category", "other")),
                    str(values["note"]) if "note" in values else None, checkpoint,
                    str(values["photo_ref"]) if "photo_ref" in values else None,
                    point.tag("patroller_id") or reading.device_id, at_ns=reading.time_ns,
                    device_id=reading.device_id, tag_uid=tag_uid, grade=grade,
                    patroller_id=point.tag("patroller_id"),
                    route_id=route if route and route != UNKNOWN_CHECKPOINT else None,
                    dedupe_key=key, extra_notes=notes)
            except ValueError as exc:
                self.refuse(reading, "hazard_invalid", str(exc))
                return
            except SQLAlchemyError as exc:  # the store said no: refused, with its reason
                self.refuse(reading, "hazard_store_failed",
                            f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
                return
            if created is not None:
                self._per_reader.count(f"{site}|{reading.device_id}", now)
                if checkpoint or tag_uid:
                    self._per_checkpoint.count(f"{site}|{checkpoint or tag_uid}", now)

    def create(self, site: str, category: str, note: str | None, checkpoint_id: str | None,
               photo_ref: str | None, actor: str, *, at_ns: int | None = None,
               device_id: str | None = None, tag_uid: str | None = None,
               grade: str = "general", patroller_id: str | None = None,
               route_id: str | None = None, dedupe_key: str | None = None,
               extra_notes: list[str] | None = None) -> dict[str, Any] | None:
        """Create a hazard; None when ``dedupe_key`` was seen before."""
        if site not in self.sites.sites:
            raise ValueError(f"unknown site {site!r}")
        if grade not in GRADES:
            raise ValueError(f"unknown grade {grade!r}: use {', '.join(GRADES)}")
        if checkpoint_id is not None and checkpoint_id not in {
                c.id for c in self.sites.sites[site].checkpoints}:
            raise ValueError(f"unknown checkpoint {checkpoint_id!r} in site {site!r}")
        notes = list(extra_notes or [])
        fields: dict[str, str | None] = {
            "category": category, "photo_ref": photo_ref, "tag_uid": tag_uid,
            "reported_by": actor, "device_id": device_id, "patroller_id": patroller_id,
            "route_id": route_id}
        for name, value in fields.items():
            fields[name], changed = _clean(value, LIMITS[name])
            if changed:
                notes.append(f"{name} cleaned or cut to {LIMITS[name]} characters")
        note, changed = _clean(note, 4000)
        if changed:
            notes.append("note cleaned or cut to 4000 characters")
        now = self.now(site)
        at = at_ns if at_ns is not None else now
        start = max(at, now)  # a late upload gets its full time: never overdue at once
        if start > at:
            notes.append(f"reported late: deadline counted from {iso_z(start)}")
        row = HazardRow(
            id="HZ-" + uuid.uuid4().hex[:10].upper(), site=site,
            category=fields["category"] or "other", status="reported", note=note,
            photo_ref=fields["photo_ref"], checkpoint_id=checkpoint_id,
            tag_uid=fields["tag_uid"], reported_by=fields["reported_by"] or "unknown",
            device_id=fields["device_id"], reported_ns=at, department=None,
            due_ns=due_ns(self.config, fields["category"] or "other", grade, start,
                          self.sites.sites[site].timezone),
            rectified_ns=None, rectify_note=None, evidence_ref=None, verified_ns=None,
            verified_by=None, dedupe_key=dedupe_key, overdue_alarmed=False, grade=grade,
            deadline_from_ns=start, rungs_done=0, supervised_ns=None, county_ns=None,
            patroller_id=fields["patroller_id"], route_id=fields["route_id"],
            rectified_by=None)
        history = HazardHistoryRow(
            hazard_id=row.id, at_ns=at, actor=row.reported_by, action="report",
            from_status=None, to_status="reported",
            note="; ".join([n for n in [note, *notes] if n]) or None)
        with self._lock:
            try:
                with self.sessions() as session:
                    session.add(row)
                    session.add(history)
                    session.commit()
            except IntegrityError:
                return None
            if row.photo_ref and row.device_id:
                self._link_photo_ref(row)
            self._rewatch(row)
        return self._json(row, self.now(site))

    # ------------------------------------------------------------------ lookups

    @staticmethod
    def _find(session: Session, hazard_id: str, scope: Scope) -> HazardRow:
        """The one by-id lookup: the hazard, or HazardNotFound (also outside ``scope``)."""
        row = session.get(HazardRow, hazard_id)
        if row is None or (scope is not None and row.site not in scope):
            raise HazardNotFound(hazard_id)
        return row

    def site_of(self, hazard_id: str, scope: Scope = None) -> str:
        """The site of a hazard; raise HazardNotFound."""
        with self.sessions() as session:
            return self._find(session, hazard_id, scope).site

    # ------------------------------------------------------------------ lifecycle

    def act(self, hazard_id: str, action: str, actor: str, *, note: str | None = None,
            department: str | None = None, due_ns: int | None = None,
            evidence_ref: str | None = None, scope: Scope = None) -> dict[str, Any]:
        """Apply dispatch, rectify, verify or reopen; raise HazardNotFound or a refusal."""
        allowed, target = TRANSITIONS[action]
        handover: HandoverMessage | None = None
        with self._lock, self.sessions() as session:
            row = self._find(session, hazard_id, scope)
            if row.status not in allowed:
                raise InvalidHazardTransition(
                    f"hazard {hazard_id} is {row.status}: cannot {action} "
                    f"(allowed from {', '.join(sorted(allowed))})")
            now = self.now(row.site)
            before = row.status
            history_note = note
            dep: Department | None = None
            if action == "dispatch":
                dep = self.departments.resolve(row.site, department or "")
                row.department = dep.id
                if due_ns is not None:
                    row.due_ns = due_ns  # a new deadline: its ladder starts again
                    row.rungs_done = 0
                history_note = dep.name
            elif action == "rectify":
                if row.grade == "major" and not self._has_after(session, row.id):
                    raise EvidenceRequired(
                        f"hazard {hazard_id} is major (重大): rectify it only with an "
                        f"\"after\" photo or document stored first (POST /api/hazards/"
                        f"{hazard_id}/evidence with kind=after)")
                row.rectified_ns = now
                row.rectify_note = note
                row.evidence_ref = evidence_ref
                row.rectified_by = actor
            elif action == "verify":
                if row.rectified_by is not None and row.rectified_by == actor:
                    raise FourEyes(f"hazard {hazard_id} was rectified by {actor}: another "
                                   f"person verifies it (four eyes)")
                row.verified_ns = now
                row.verified_by = actor
            else:  # reopen: a new deadline from now, the ladder starts again
                row.verified_ns = None
                row.verified_by = None
                row.deadline_from_ns = now
                row.due_ns = self._due(row, now)
                row.rungs_done = 0
                row.overdue_alarmed = False
            row.status = target
            entry = HazardHistoryRow(hazard_id=row.id, at_ns=now, actor=actor,
                                     action=action, from_status=before, to_status=target,
                                     note=history_note)
            session.add(entry)
            alarmed = row.overdue_alarmed and target not in OPEN
            if alarmed:
                row.overdue_alarmed = False
            session.commit()
            self._rewatch(row)
            data = self._json(row, now)
            if dep is not None:
                handover = self._message(row, "dispatch", dep, now, entry.id)
        if alarmed:
            for rung in self.config.ladder(row.grade):
                if rung.alarm is not None:
                    self.alarms.clear(hazard_id, rung.alarm, now, action)
        if handover is not None:
            self.handover(handover)
        return data

    def set_grade(self, hazard_id: str, grade: str, actor: str, note: str | None = None,
                  scope: Scope = None) -> dict[str, Any]:
        """An officer changes a hazard's grade: the deadline follows, the change is history."""
        if grade not in GRADES:
            raise ValueError(f"unknown grade {grade!r}: use {', '.join(GRADES)}")
        with self._lock, self.sessions() as session:
            row = self._find(session, hazard_id, scope)
            now = self.now(row.site)
            before = row.grade
            row.grade = grade
            if row.status in OPEN:
                row.due_ns = self._due(row, row.deadline_from_ns or row.reported_ns)
                row.rungs_done = min(row.rungs_done, len(self.config.ladder(grade)))
            session.add(HazardHistoryRow(
                hazard_id=row.id, at_ns=now, actor=actor, action="grade",
                from_status=row.status, to_status=row.status,
                note=f"{before} -> {grade}" + (f": {note}" if note else "")))
            session.commit()
            self._rewatch(row)
            return self._json(row, now)

    def _due(self, row: HazardRow, start: int) -> int:
        return due_ns(self.config, row.category, row.grade, start,
                      self.sites.sites[row.site].timezone)

    @staticmethod
    def _has_after(session: Session, hazard_id: str) -> bool:
        return session.scalars(select(HazardEvidenceRow.id).where(
            HazardEvidenceRow.hazard_id == hazard_id,
            HazardEvidenceRow.kind == "after")).first() is not None

    # ------------------------------------------------------------------ evidence links

    def attach(self, hazard_id: str, sha256: str, kind: str, actor: str,
               scope: Scope = None, note: str | None = None) -> dict[str, Any]:
        """Link stored evidence to a hazard as ``before`` or ``after`` (idempotent)."""
        if kind not in EVIDENCE_KINDS:
            raise ValueError(f"unknown evidence kind {kind!r}: use {', '.join(EVIDENCE_KINDS)}")
        with self._lock, self.sessions() as session:
            row = self._find(session, hazard_id, scope)
            now = self.now(row.site)
            existing = session.scalars(select(HazardEvidenceRow).where(
                HazardEvidenceRow.hazard_id == hazard_id, HazardEvidenceRow.sha256 == sha256,
                HazardEvidenceRow.kind == kind)).first()
            if existing is None:
                session.add(HazardEvidenceRow(hazard_id=hazard_id, sha256=sha256, kind=kind,
                                              at_ns=now, actor=actor))
                session.add(HazardHistoryRow(
                    hazard_id=hazard_id, at_ns=now, actor=actor, action="evidence",
                    from_status=row.status, to_status=row.status,
                    note=f"{kind} {sha256[:12]}" + (f": {note}" if note else "")))
                session.commit()
            return {"hazard_id": hazard_id, "kind": kind, "new": existing is None}

    def photo_uploaded(self, device_id: str, photo_ref: str, sha256: str,
                       actor: str, now_ns: int = 0) -> list[str]:
        """A reader's photo arrived by its ``photo_ref``: link it to its hazards (as before).

        The reference is kept, so a hazard that arrives after its photo is linked on creation.
        Returns the ids of the hazards linked now.
        """
        ref, _ = _clean(photo_ref, LIMITS["photo_ref"])
        with self._lock:
            with self.sessions() as session:
                known = session.scalars(select(PhotoRefRow).where(
                    PhotoRefRow.device_id == device_id, PhotoRefRow.photo_ref == ref)).first()
                if known is None:
                    session.add(PhotoRefRow(device_id=device_id[:128], photo_ref=ref or "",
                                            sha256=sha256, at_ns=now_ns))
                else:
                    known.sha256, known.at_ns = sha256, now_ns
                session.commit()
                hazards = list(session.scalars(select(HazardRow).where(
                    HazardRow.device_id == device_id, HazardRow.photo_ref == ref)))
            for hazard in hazards:
                self.attach(hazard.id, sha256, "before", actor, note=f"photo_ref {ref}")
        return [h.id for h in hazards]

    def _link_photo_ref(self, row: HazardRow) -> None:
        with self.sessions() as session:
            known = session.scalars(select(PhotoRefRow).where(
                PhotoRefRow.device_id == row.device_id,
                PhotoRefRow.photo_ref == row.photo_ref)).first()
        if known is not None:
            self.attach(row.id, known.sha256, "before", row.reported_by,
                        note=f"photo_ref {row.photo_ref}")

    def evidence_of(self, hazard_ids: Collection[str]) -> dict[str, list[dict[str, Any]]]:
        """Evidence links per hazard id, oldest first."""
        out: dict[str, list[dict[str, Any]]] = {h: [] for h in hazard_ids}
        if not hazard_ids:
            return out
        with self.sessions() as session:
            rows = session.execute(
                select(HazardEvidenceRow, EvidenceRow.media_type)
                .outerjoin(EvidenceRow, EvidenceRow.sha256 == HazardEvidenceRow.sha256)
                .where(HazardEvidenceRow.hazard_id.in_(list(hazard_ids)))
                .order_by(HazardEvidenceRow.id))
            for link, media_type in rows:
                out[link.hazard_id].append({"sha256": link.sha256, "kind": link.kind,
                                            "media_type": media_type,
                                            "at": iso_z(link.at_ns), "by": link.actor})
        return out

    def evidence_sites(self, sha256: str) -> set[str]:
        """The sites of the hazards (and readers) a piece of evidence belongs to."""
        with self.sessions() as session:
            sites = set(session.scalars(select(HazardRow.site).join(
                HazardEvidenceRow, HazardEvidenceRow.hazard_id == HazardRow.id).where(
                HazardEvidenceRow.sha256 == sha256)))
            for device_id in session.scalars(select(PhotoRefRow.device_id).where(
                    PhotoRefRow.sha256 == sha256)):
                device = self.sites.devices.get(device_id)
                if device is not None:
                    sites.add(device.site.site)
        return sites

    # ------------------------------------------------------------------ the ladder

    def _rung_due(self, row: HazardRow, index: int) -> int | None:
        ladder = self.config.ladder(row.grade)
        if row.due_ns is None or index >= len(ladder):
            return None
        return row.due_ns + int(ladder[index].after_due_h * HOUR_NS)

    def _rewatch(self, row: HazardRow) -> None:
        next_due = self._rung_due(row, row.rungs_done) if row.status in OPEN else None
        if next_due is None:
            self._watch.pop(row.id, None)
        else:
            self._watch[row.id] = (row.site, next_due)

    def rewatch_open(self) -> int:
        """Watch every open hazard of the store again (cluster mode: one created, dispatched or
        reopened on another hub has a ladder here too); return how many are open.

        Only adds and updates: an entry read before a climb here and set back to an earlier
        rung is harmless (the climb reads the row and finds nothing due).
        """
        with self.sessions() as session:
            rows = list(session.scalars(select(HazardRow).where(HazardRow.status.in_(OPEN))
                                        .options(load_only(
                                            HazardRow.id, HazardRow.site, HazardRow.status,
                                            HazardRow.grade, HazardRow.due_ns,
                                            HazardRow.rungs_done))))
            with self._lock:
                for row in rows:
                    self._rewatch(row)
        return len(rows)

    def advance(self, site: str, now: int) -> None:
        """Climb the ladder of the site's open hazards whose next rung is due."""
        with self._lock:
            due = sorted((t, h) for h, (s, t) in self._watch.items() if s == site and t <= now)
            if self.owns is not None:
                due = [(t, h) for t, h in due if self.owns(h)]
            for _t, hazard_id in due:
                self._climb(hazard_id, now)

    def _climb(self, hazard_id: str, now: int) -> None:
        actions: list[tuple[Rung, HazardRow, HazardHistoryRow]] = []
        with self.sessions() as session:
            row = session.get(HazardRow, hazard_id)
            if row is None or row.status not in OPEN:
                self._watch.pop(hazard_id, None)
                return
            ladder = self.config.ladder(row.grade)
            while row.rungs_done < len(ladder):
                at = self._rung_due(row, row.rungs_done)
                if at is None or at > now:
                    break
                rung = ladder[row.rungs_done]
                row.rungs_done += 1
                if rung.supervise and row.supervised_ns is None:
                    row.supervised_ns = now
                if rung.notify == "county" and row.county_ns is None:
                    row.county_ns = now
                if rung.alarm is not None:
                    row.overdue_alarmed = True
                entry = HazardHistoryRow(
                    hazard_id=row.id, at_ns=now, actor="hub", action="escalate",
                    from_status=row.status, to_status=row.status,
                    note=json.dumps({"rung": rung.rung, "due": iso_z(at),
                                     **({"hub": self.node} if self.node else {})}))
                session.add(entry)
                actions.append((rung, row, entry))
            session.commit()
        self._rewatch(row)
        for rung, hazard, entry in actions:
            self._do(rung, hazard, now, entry.id)

    def _do(self, rung: Rung, row: HazardRow, now: int, seq: int) -> None:
        cat = self.config.category(row.category)
        grade = self.config.hazard_grades.get(row.grade)  # type: ignore[call-overload]
        hours = round((now - (row.due_ns or now)) / HOUR_NS, 1)
        if rung.alarm is not None:
            self.alarms.raise_single(
                row.site, row.id, rung.alarm,
                {"hazard": row.id, "category": row.category, "category_zh": cat.zh,
                 "grade": row.grade, "grade_zh": grade.zh if grade else row.grade,
                 "due": iso_z(row.due_ns) or "", "hours": hours,
                 "checkpoint": row.checkpoint_id or "", "reader": row.device_id or ""},
                hours, now, model="hazard")
        if rung.notify is not None:
            dep = self.departments.find(row.site, row.department)
            if rung.notify == "department":
                message = self._message(row, rung.rung, dep, now, seq)
            else:
                message = self._message(row, rung.rung, None, now, seq,
                                        self.departments.county_channel(row.site))
            self.handover(message)

    def _message(self, row: HazardRow, event: str, dep: Department | None, now: int,
                 seq: int, channel: str | None = None) -> HandoverMessage:
        cat = self.config.category(row.category)
        grade = self.config.hazard_grades.get(row.grade)  # type: ignore[call-overload]
        due = iso_z(row.due_ns) or ""
        zh = {"dispatch": "交办", "reminder": "即将到期提醒", "overdue": "逾期未整改",
              "supervised": "督办", "county": "上报县级"}.get(event, event)
        return HandoverMessage(
            site=row.site, hazard_id=row.id, event=event, department=dep,
            channel=dep.channel if dep is not None else channel, seq=seq,
            text_zh=f"【隐患{zh}】{row.id} {grade.zh if grade else row.grade}隐患 "
                    f"{cat.zh}：{row.note or ''}，整改期限 {due}",
            text_en=f"[hazard {event}] {row.id} {row.grade} {cat.en}: {row.note or ''}, "
                    f"due {due}",
            details={"grade": row.grade, "category": row.category, "due": due,
                     "checkpoint_id": row.checkpoint_id, "at": iso_z(now)})

    # ------------------------------------------------------------------ views

    def get(self, hazard_id: str, scope: Scope = None) -> dict[str, Any]:
        """One hazard with its history and evidence; raise HazardNotFound."""
        with self.sessions() as session:
            row = self._find(session, hazard_id, scope)
            data = self._json(row, self.now(row.site))
            deliveries = self.deliveries(hazard_id) if self.deliveries is not None else {}
            history = []
            for h in session.scalars(select(HazardHistoryRow).where(
                    HazardHistoryRow.hazard_id == hazard_id).order_by(HazardHistoryRow.id)):
                item: dict[str, Any] = {
                    "at": iso_z(h.at_ns), "actor": h.actor, "action": h.action,
                    "from_status": h.from_status, "to_status": h.to_status, "note": h.note}
                if h.action == "escalate" and h.note:
                    item.update(json.loads(h.note))
                if h.id in deliveries:
                    item["handover"] = deliveries[h.id]
                history.append(item)
            data["history"] = history
        data["evidence"] = self.evidence_of([hazard_id])[hazard_id]
        return data

    def search(self, site: str | None = None, status: str | None = None,
               category: str | None = None, overdue: bool | None = None,
               since_ns: int | None = None, until_ns: int | None = None,
               grade: str | None = None, department: str | None = None,
               supervised: bool | None = None, scope: Scope = None,
               limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
        """Hazards, newest first, filtered, with their evidence links (a page of them)."""
        query = select(HazardRow).order_by(HazardRow.reported_ns.desc(), HazardRow.id)
        if site is not None:
            query = query.where(HazardRow.site == site)
        if scope is not None:
            query = query.where(HazardRow.site.in_(list(scope)))
        if status is not None:
            query = query.where(HazardRow.status.in_(status.split(",")))
        if category is not None:
            query = query.where(HazardRow.category == category)
        if grade is not None:
            query = query.where(HazardRow.grade == grade)
        if department is not None:
            query = query.where(HazardRow.department == department)
        if supervised is not None:
            query = query.where(HazardRow.supervised_ns.is_not(None) if supervised
                                else HazardRow.supervised_ns.is_(None))
        if since_ns is not None:
            query = query.where(HazardRow.reported_ns >= since_ns)
        if until_ns is not None:
            query = query.where(HazardRow.reported_ns < until_ns)
        if overdue is None and limit is not None:  # overdue is decided per row: page after it
            query = query.limit(limit).offset(offset)
        with self.sessions() as session:
            items = [self._json(r, self.now(r.site)) for r in session.scalars(query)]
        if overdue is not None:
            items = [i for i in items if i["overdue"] is overdue]
            if limit is not None:
                items = items[offset:offset + limit]
        evidence = self.evidence_of([i["id"] for i in items])
        for item in items:
            item["evidence"] = evidence[item["id"]]
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
        dep = self.departments.find(row.site, row.department)
        ladder = self.config.ladder(row.grade)
        return {
            "id": row.id, "site": row.site, "category": row.category, "grade": row.grade,
            "status": row.status, "note": row.note, "photo_ref": row.photo_ref,
            "checkpoint_id": row.checkpoint_id, "route_id": row.route_id,
            "reported_by": row.reported_by, "patroller_id": row.patroller_id,
            "device_id": row.device_id, "reported_at": iso_z(row.reported_ns),
            "department": row.department, "department_name": dep.name if dep else None,
            "due_at": iso_z(row.due_ns), "overdue": self.is_overdue(row, now),
            "rung": ladder[row.rungs_done - 1].rung if 0 < row.rungs_done <= len(ladder)
            else None,
            "supervised": row.supervised_ns is not None,
            "supervised_at": iso_z(row.supervised_ns), "county_at": iso_z(row.county_ns),
            "rectified_at": iso_z(row.rectified_ns), "rectified_by": row.rectified_by,
            "rectify_note": row.rectify_note, "evidence_ref": row.evidence_ref,
            "verified_at": iso_z(row.verified_ns), "verified_by": row.verified_by,
        }
