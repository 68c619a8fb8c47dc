"""Round tracking: scans attributed to rounds, windows opened and closed on the patrol clock.

Fed by the pipeline thread only (scans and clock advances); the API reads the tables. A scan
belongs to the round of a route that has its checkpoint and whose window (site timezone) holds
the scan's device time; when several routes could take it, the one whose reader or inspectors
match wins. At ``start + grace`` a round without a scan raises ``round_not_started``; at the end
of its window a round is concluded (``completed``, ``incomplete`` or ``missed``) and the missed
checkpoints raise ``checkpoint_missed``. A scan uploaded after that corrects the round and
resolves what it explains (the alarm clears with the note ``late upload``). Duplicates (same
reader, device time and tag) are dropped by a unique key, so nothing counts twice.

Cluster mode: a round has one writer, the hub owning its round device (the route's first
reader). A hub taking a scan of a round another hub runs only records it (``patrol_scans``,
``counted`` false); the round's owner folds such scans in on its clock (once a second, before
a start check or a conclusion) and when it adopts a partition, and marks them counted in the
transaction that writes the round. A scan is counted into a round once, by its key.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import insert, or_, select, update
from sqlalchemy.orm import Session

from hub.model import Reading
from hub.patrol.alarms import PatrolAlarms
from hub.patrol.config import PatrolConfig
from hub.patrol.schedule import (
    NS,
    Occurrence,
    containing,
    distance_m,
    local_date,
    occurrences,
    occurrences_between,
)
from hub.patrol.tables import UNCOUNTED, PatrolSiteRow, RoundRow, ScanRow
from hub.setaside.rows import OnBad, write_rows
from hub.sites import UNKNOWN_CHECKPOINT, Checkpoint, PatrolRoute, Site, SiteRegistry

log = logging.getLogger(__name__)

STATES = ("scheduled", "in_progress", "completed", "incomplete", "missed")
FOLD_EVERY_S = 1.0  # cluster mode: how often a round's owner counts the scans other hubs took

ScanKey = tuple[str, int, str]  # (reader, device time, tag): what makes a scan one scan


@dataclass(frozen=True, slots=True)
class ScanInfo:
    """A counted scan as the tracker needs it."""

    checkpoint_id: str
    time_ns: int


def order_violations(route: PatrolRoute, scans: list[ScanInfo]) -> list[tuple[str, str]]:
    """(checkpoint, the one it should have followed) for a strict route walked out of order.

    Greedy over the route order: each scanned checkpoint needs a scan later than the one
    chosen for the checkpoint before it. Extra scans (a re-scan, a hazard report at another
    checkpoint) never make a walk out of order; skipped checkpoints are misses, not disorder.
    """
    times: dict[str, list[int]] = {}
    for scan in scans:
        times.setdefault(scan.checkpoint_id, []).append(scan.time_ns)
    previous_t, previous_cp = -1, ""
    out = []
    for cp in route.checkpoints:
        found = sorted(times.get(cp, []))
        if not found:
            continue
        later = [t for t in found if t > previous_t]
        if not later:
            out.append((cp, previous_cp))
            continue
        previous_t, previous_cp = later[0], cp
    return out


def round_state(route: PatrolRoute, scans: list[ScanInfo], concluded: bool) -> str:
    """The state of a round from its counted scans and whether its window has closed."""
    done = {s.checkpoint_id for s in scans} & set(route.checkpoints)
    if len(done) == len(set(route.checkpoints)):
        return "completed"
    if concluded:
        return "incomplete" if done else "missed"
    return "in_progress" if done else "scheduled"


def round_device(route: PatrolRoute) -> str:
    """The device id round alarms are raised on: the route's first reader (else the route)."""
    return route.readers[0] if route.readers else route.id


class RoundTracker:
    """Attributes scans to rounds and concludes rounds on the patrol clock."""

    def __init__(self, sites: SiteRegistry, sessions: Callable[[], Session],
                 alarms: PatrolAlarms, config: PatrolConfig) -> None:
        self.sites = sites
        self.sessions = sessions
        self.alarms = alarms
        self.config = config
        self.grace_ns = int(config.round_start_grace_min * 60 * NS)
        self._lock = threading.RLock()
        self._site_rows: dict[str, PatrolSiteRow] = {}
        self._rounds: dict[str, RoundRow] = {}
        self._scans: dict[str, list[ScanInfo]] = {}
        self._keys: dict[str, set[ScanKey]] = {}  # per round: the keys of its counted scans
        self._next_due: dict[str, int] = {}
        # Write-behind: rows and scans go to the database in one transaction per pipeline
        # batch (flush), before that batch's messages are acknowledged to the broker.
        self._pending_rows: dict[int, object] = {}
        self._flush_lock = threading.Lock()
        self.on_set_aside: OnBad | None = None  # told of a scan the database refused
        self._pending_scans: list[ScanRow] = []
        self._pending_counted: set[int] = set()  # ids of other hubs' scans folded in
        self._scan_keys: set[ScanKey] = set()
        self._checkpoints = {
            (s.site, c.id): c for s in sites.sites.values() for c in s.checkpoints
        }
        self._routes = {(s.site, r.id): r for s in sites.sites.values() for r in s.routes}
        # cluster mode: the devices whose partition this hub owns (hub.cluster.handover); a
        # round (its row, clock and alarms) is the owner's of its round device only
        self.owns: Callable[[str], bool] | None = None
        self.fold_every_s = FOLD_EVERY_S
        self._folded_at: float | None = None  # monotonic time of the last fold_visits
        self._load()

    def checkpoint_changed(self, site: str, checkpoint_id: str,
                           checkpoint: Checkpoint | None) -> None:
        """A checkpoint was onboarded or changed (``checkpoint``) or retired (None)."""
        if checkpoint is None:
            self._checkpoints.pop((site, checkpoint_id), None)
        else:
            self._checkpoints[(site, checkpoint_id)] = checkpoint

    # ------------------------------------------------------------------ state

    def _load(self) -> None:
        with self.sessions() as session:
            for row in session.scalars(select(PatrolSiteRow)):
                self._site_rows[row.site] = row
            horizon = {s: (r.clock_ns or 0) - 3 * 86400 * NS for s, r in self._site_rows.items()}
            for rnd in session.scalars(select(RoundRow)):
                if not rnd.concluded or rnd.end_ns >= horizon.get(rnd.site, 0):
                    self._rounds[rnd.id] = rnd
            since = min(horizon.values(), default=0)
            for device_id, time_ns, tag_uid in session.execute(
                    select(ScanRow.device_id, ScanRow.time_ns, ScanRow.tag_uid)
                    .where(ScanRow.time_ns >= since)):
                self._scan_keys.add((device_id, time_ns, tag_uid))
            self._load_counted(session, list(self._rounds))

    def _load_counted(self, session: Session, ids: list[str]) -> None:
        """The scans counted into these rounds (the uncounted wait for ``fold_visits``)."""
        for rid in ids:
            self._scans[rid], self._keys[rid] = [], set()
        for start in range(0, len(ids), 500):
            query = select(ScanRow).where(ScanRow.round_id.in_(ids[start:start + 500]),
                                          ScanRow.counted.is_(True)) \
                .order_by(ScanRow.time_ns, ScanRow.id)
            for scan in session.scalars(query):
                if scan.round_id is not None and scan.checkpoint_id is not None:
                    self._scans[scan.round_id].append(ScanInfo(scan.checkpoint_id, scan.time_ns))
                    self._keys[scan.round_id].add((scan.device_id, scan.time_ns, scan.tag_uid))

    def _touching(self, wanted: Callable[[str], bool]) -> set[tuple[str, str]]:
        """(site, route) of the routes whose rounds a wanted device runs (its round device)."""
        return {key for key, route in self._routes.items() if wanted(round_device(route))}

    def _drop(self, routes: set[tuple[str, str]]) -> None:
        for rid in [r.id for r in self._rounds.values() if (r.site, r.route_id) in routes]:
            self._rounds.pop(rid, None)
            self._scans.pop(rid, None)
            self._keys.pop(rid, None)

    def adopt(self, wanted: Callable[[str], bool]) -> int:
        """Cluster takeover, before the partitions' first message: load the open rounds the
        ``wanted`` devices run (with the scans their last owner counted), count what other hubs
        recorded for rounds that are now this hub's, and load the devices' recent scan keys (a
        redelivered scan is no second scan). Returns how many rounds were loaded."""
        routes = self._touching(wanted)
        with self._lock, self.sessions() as session:
            self._drop(routes)
            open_rounds = select(RoundRow).where(RoundRow.concluded.is_(False))
            rows = [r for r in session.scalars(open_rounds) if (r.site, r.route_id) in routes]
            for rnd in rows:
                self._rounds[rnd.id] = rnd
            self._load_counted(session, [r.id for r in rows])
            # what fell due while another hub ran these rounds runs at the next advance, not at
            # the next boundary of the site (done rounds are skipped there)
            self._next_due.clear()
            since = min(((r.clock_ns or 0) - 3 * 86400 * NS for r in self._site_rows.values()),
                        default=0)
            for device_id, time_ns, tag_uid in session.execute(
                    select(ScanRow.device_id, ScanRow.time_ns, ScanRow.tag_uid)
                    .where(ScanRow.time_ns >= since)):
                if wanted(device_id):
                    self._scan_keys.add((device_id, time_ns, tag_uid))
            self.fold_visits()
        return len(rows)

    def release(self, wanted: Callable[[str], bool]) -> None:
        """Cluster hand-over (or a lost lease): write what is pending, then forget the rounds
        the ``wanted`` devices run (the next owner loads them)."""
        self.flush()
        with self._lock:
            self._drop(self._touching(wanted))

    def saved_clock(self, site: str) -> int | None:
        """The clock value saved for a site (device mode restores it after a restart)."""
        row = self._site_rows.get(site)
        return row.clock_ns if row else None

    def watch_from(self, site: str) -> int | None:
        """Since when the tracker watches a site (rounds that ended before raise nothing)."""
        row = self._site_rows.get(site)
        return row.watch_from_ns if row else None

    def _save(self, *rows: object) -> None:
        for row in rows:
            self._pending_rows[id(row)] = row

    def flush(self) -> None:
        """Write the rows and scans changed since the last flush, in one transaction."""
        with self._flush_lock:  # one flush at a time: an older snapshot never lands last
            with self._lock:
                rows, self._pending_rows = list(self._pending_rows.values()), {}
                scans, self._pending_scans = self._pending_scans, []
                counted, self._pending_counted = self._pending_counted, set()
            if not rows and not scans and not counted:
                return
            # rounds and site clocks first (with the marks of the scans folded into them), then
            # the scans as plain column values: a scan the database refuses is set aside with
            # its reason, never taking the batch with it
            marks = [_Counted(tuple(sorted(counted)))] if counted else []
            items: list[object] = [*rows, *marks, *(_scan_values(scan) for scan in scans)]
            try:
                write_rows("patrol_scans", items, self._write, self.on_set_aside)
            except Exception:  # the database is down: keep them for the next flush
                with self._lock:
                    for row in rows:
                        self._pending_rows.setdefault(id(row), row)
                    self._pending_scans[:0] = scans
                    self._pending_counted |= counted
                raise

    def _write(self, items: Sequence[object]) -> None:
        scans = [item for item in items if isinstance(item, dict)]
        with self.sessions() as session:
            for row in items:
                if isinstance(row, _Counted):
                    for start in range(0, len(row.ids), 500):
                        session.execute(update(ScanRow).where(
                            ScanRow.id.in_(row.ids[start:start + 500])).values(counted=True))
                elif not isinstance(row, dict):
                    session.merge(row)
            if scans:
                session.execute(insert(ScanRow), scans)
            session.commit()

    def _round(self, occ: Occurrence) -> RoundRow:
        row = self._rounds.get(occ.id)
        if row is not None:
            return row
        with self.sessions() as session:  # not in memory: an old round, flushed long ago
            found = session.get(RoundRow, occ.id)
            if found is not None:
                self._load_counted(session, [occ.id])
                self._rounds[occ.id] = found
                return found
        row = RoundRow(id=occ.id, site=occ.site, route_id=occ.route.id, date=occ.date.isoformat(),
                       start_ns=occ.start_ns, end_ns=occ.end_ns, state="scheduled",
                       first_scan_ns=None, concluded=False, watched=True, out_of_order=False,
                       checked_start=False)
        self._rounds[occ.id] = row
        self._save(row)
        return row

    def _forget_old(self, site: str, now: int) -> None:
        horizon = now - 3 * 86400 * NS
        for rid in [r.id for r in self._rounds.values()
                    if r.site == site and r.concluded and r.end_ns < horizon]:
            self._rounds.pop(rid, None)
            self._scans.pop(rid, None)
            self._keys.pop(rid, None)
        if len(self._scan_keys) > 200_000:  # keep the duplicate check to the last days
            self._scan_keys = {k for k in self._scan_keys if k[1] >= horizon}

    # ------------------------------------------------------------------ the clock

    def advance(self, site_id: str, now: int) -> None:
        """Run what is due up to ``now``: start checks at start + grace, conclusions at end."""
        site = self.sites.sites.get(site_id)
        if site is None or not site.routes:
            return
        with self._lock:
            something_due = now >= self._next_due.get(site_id, 0)
            # cluster mode: fold once every fold_every_s and before a start check or conclusion;
            # single-machine mode once (what a store a cluster used may hold): no other hub
            # records scans of its rounds
            folded = self._folded_at
            if folded is None or (self.owns is not None and (
                    something_due or time.monotonic() >= folded + self.fold_every_s)):
                self.fold_visits(site_id, now)
            state = self._site_rows.get(site_id)
            if state is None:
                state = PatrolSiteRow(site=site_id, watch_from_ns=now, clock_ns=now)
                self._site_rows[site_id] = state
                self._save(state)
                last = now
            else:
                last = state.clock_ns or now
                if not something_due:
                    state.clock_ns = max(last, now)
                    return
            first_day = local_date(site, min(last, now)) - timedelta(days=1)
            today = local_date(site, now)
            events: list[tuple[int, int, Occurrence]] = []
            for occ in occurrences_between(site, first_day, today):
                if occ.start_ns + self.grace_ns <= now:
                    events.append((occ.start_ns + self.grace_ns, 0, occ))
                if occ.end_ns <= now:
                    events.append((occ.end_ns, 1, occ))
            events.sort(key=lambda e: (e[0], e[1], e[2].id))
            for due, kind, occ in events:
                if self.owns is not None and not self.owns(round_device(occ.route)):
                    continue  # another hub of the cluster runs this round's clock
                cached = self._rounds.get(occ.id)
                done = cached is not None and (
                    cached.concluded or (kind == 0 and cached.checked_start))
                if done:
                    continue
                if cached is None and occ.end_ns < state.watch_from_ns - 2 * 86400 * NS:
                    continue
                row = self._round(occ)
                if kind == 0 and not row.checked_start:
                    self._check_start(site, occ, row, state, due)
                elif kind == 1 and not row.concluded:
                    self._conclude(site, occ, row, state)
            upcoming = [t for occ in occurrences_between(site, today, today + timedelta(days=1))
                        for t in (occ.start_ns + self.grace_ns, occ.end_ns) if t > now]
            self._next_due[site_id] = min(upcoming) if upcoming else now + 86400 * NS
            state.clock_ns = max(last, now)
            self._save(state)
            self._forget_old(site_id, now)

    def _check_start(self, site: Site, occ: Occurrence, row: RoundRow, state: PatrolSiteRow,
                     due: int) -> None:
        row.checked_start = True
        if row.first_scan_ns is None and occ.start_ns >= state.watch_from_ns:
            self.alarms.raise_item(
                site.site, round_device(occ.route), "round_not_started", occ.id,
                self._round_label(site, occ), self._round_label(site, occ, zh=True), due)
        self._save(row)

    def _conclude(self, site: Site, occ: Occurrence, row: RoundRow,
                  state: PatrolSiteRow) -> None:
        scans = self._scans.get(occ.id, [])
        row.concluded = True
        row.checked_start = True
        # Judge rounds whose window opened while we watched, or that we saw scans of: one
        # already under way, unseen, when the hub first saw the site (first deployment, a demo
        # started mid-window) is not judged.
        row.watched = occ.start_ns >= state.watch_from_ns or bool(scans)
        row.state = round_state(occ.route, scans, True)
        if row.watched:
            missing = self._missing(occ.route, scans)
            if missing:
                en, zh = self._missed_text(site, occ, missing)
                self.alarms.raise_item(site.site, round_device(occ.route), "checkpoint_missed",
                                       occ.id, en, zh, occ.end_ns)
            self._check_order(site, occ, row, occ.end_ns, late=False)
        self._save(row)

    # ------------------------------------------------------------------ scans

    def on_scan(self, reading: Reading, arrival_ns: int) -> None:
        """Attribute one scan reading (called after the clock moved to ``arrival_ns``)."""
        site = self.sites.sites.get(reading.site)
        if site is None or not reading.points:
            return
        point = reading.points[0]
        cp_id = point.tag("checkpoint_id")
        route_tag = point.tag("route_id")
        patroller = point.tag("patroller_id")
        tag_uid = str(reading.values.get("tag_uid", ""))
        lat, lon = reading.values.get("lat"), reading.values.get("lon")
        t = reading.time_ns
        checkpoint = self._checkpoints.get((site.site, cp_id or ""))
        key = (reading.device_id, t, tag_uid)
        with self._lock:
            if checkpoint is None or cp_id == UNKNOWN_CHECKPOINT:
                if self._insert(reading, key, site, None, None, None, arrival_ns, None, False):
                    self.alarms.raise_item(
                        site.site, reading.device_id, "unknown_tag", tag_uid,
                        f"{tag_uid} ({self._hhmm(site, t)})",
                        f"{tag_uid}（{self._hhmm(site, t)}）", arrival_ns, model=reading.model)
                return
            route, occ = self._attribute(site, checkpoint, reading.device_id, patroller,
                                         route_tag, t)
            distance = None
            if (checkpoint.lat is not None and checkpoint.lon is not None
                    and isinstance(lat, float) and isinstance(lon, float)):
                distance = distance_m(checkpoint.lat, checkpoint.lon, lat, lon)
            # the round is this hub's unless (cluster mode) another hub owns its round device:
            # then the scan is only recorded, for that hub to count (the round's one writer)
            ours = occ is None or self.owns is None or self.owns(round_device(occ.route))
            row = self._round(occ) if occ is not None and ours else None
            late = bool(row.concluded) if row is not None else (
                occ is not None and occ.end_ns <= arrival_ns)
            if not self._insert(reading, key, site, checkpoint.id, route,
                                occ.id if occ is not None else None, arrival_ns, distance,
                                late, counted=ours):
                return  # duplicate: QoS 1 redelivery or a re-upload
            if distance is not None and distance > self.config.tag_moved_m:
                self.alarms.raise_item(
                    site.site, reading.device_id, "tag_moved", checkpoint.id,
                    f"{checkpoint.id} scanned {distance:.0f} m away ({self._hhmm(site, t)})",
                    f"{checkpoint.id} 距点位 {distance:.0f} 米（{self._hhmm(site, t)}）",
                    arrival_ns, model=reading.model)
            if (route is not None and route.inspectors and patroller
                    and patroller not in route.inspectors):
                self.alarms.raise_item(
                    site.site, reading.device_id, "unassigned_route", f"{patroller}:{route.id}",
                    f"{patroller} on {route.id}", f"{patroller} 在 {route.name}", arrival_ns,
                    model=reading.model)
            if occ is not None and row is not None:
                self._count(site, occ, row, ScanInfo(checkpoint.id, t), key, arrival_ns, late)

    def _attribute(self, site: Site, checkpoint: Checkpoint, reader: str,
                   patroller: str | None, route_tag: str | None,
                   t: int) -> tuple[PatrolRoute | None, Occurrence | None]:
        routes = self.sites.routes_for_checkpoint(site.site, checkpoint.id)
        if not routes:
            return None, None

        def rank(route: PatrolRoute) -> tuple[bool, bool, bool]:
            return (reader not in route.readers, patroller not in route.inspectors,
                    route.id != route_tag)

        windows = [(r, o) for r in routes if (o := containing(site, r, t)) is not None]
        if windows:
            route, occ = min(windows, key=lambda w: rank(w[0]))
            return route, occ
        return min(routes, key=rank), None

    def _insert(self, reading: Reading, key: ScanKey, site: Site, cp_id: str | None,
                route: PatrolRoute | None, round_id: str | None, arrival_ns: int,
                distance: float | None, late: bool, counted: bool = True) -> bool:
        if key in self._scan_keys:
            return False
        lat, lon = reading.values.get("lat"), reading.values.get("lon")
        scan = ScanRow(
            site=site.site, device_id=key[0], tag_uid=key[2], checkpoint_id=cp_id,
            route_id=route.id if route else None, round_id=round_id,
            patroller_id=reading.points[0].tag("patroller_id"), time_ns=key[1],
            received_ns=reading.received_ns, arrival_ns=arrival_ns,
            lat=lat if isinstance(lat, float) else None,
            lon=lon if isinstance(lon, float) else None, distance_m=distance, late_upload=late,
            counted=counted)
        self._scan_keys.add(key)
        self._pending_scans.append(scan)
        return True

    def fold_visits(self, site_id: str | None = None, now: int | None = None) -> int:
        """Count the scans other hubs recorded for rounds this hub runs; returns how many.

        Read from the state store (``counted`` false), in device-time order; each is counted
        into its round once (by its key, whatever was counted before), then marked counted with
        the round's next write. Scans of rounds another hub runs are left to that hub. ``now``
        is ``site_id``'s clock (other sites: their saved clock), the time of what it resolves.
        """
        self._folded_at = time.monotonic()
        with self.sessions() as session:
            found = session.execute(
                select(ScanRow.id, ScanRow.site, ScanRow.device_id, ScanRow.tag_uid,
                       ScanRow.checkpoint_id, ScanRow.route_id, ScanRow.round_id,
                       ScanRow.time_ns, ScanRow.arrival_ns)
                .where(UNCOUNTED).order_by(ScanRow.time_ns, ScanRow.id)).all()
        folded = 0
        with self._lock:
            for scan_id, site_name, device_id, tag_uid, cp_id, route_id, rid, t, arrival in found:
                if scan_id in self._pending_counted:
                    continue  # folded already, its mark not yet written
                site = self.sites.sites.get(site_name)
                route = self._routes.get((site_name, route_id or ""))
                if site is not None and route is not None and cp_id is not None:
                    if self.owns is not None and not self.owns(round_device(route)):
                        continue  # another hub's round: that hub counts it
                    occ = containing(site, route, t)
                    if occ is not None and occ.id == rid:
                        row = self._round(occ)
                        key = (device_id, t, tag_uid)
                        if key not in self._keys.get(occ.id, ()):
                            clock = now if site_name == site_id else self.saved_clock(site_name)
                            self._count(site, occ, row, ScanInfo(cp_id, t), key,
                                        max(arrival, clock or 0), row.concluded)
                            folded += 1
                    else:
                        log.warning("patrol: scan %s of round %s matches no round of %s now",
                                    scan_id, rid, route.id)
                else:  # its site or route is gone from the site files: nothing to count into
                    log.warning("patrol: scan %s of round %s: unknown route", scan_id, rid)
                self._pending_counted.add(scan_id)
        return folded

    def _count(self, site: Site, occ: Occurrence, row: RoundRow, scan: ScanInfo, key: ScanKey,
               arrival_ns: int, late: bool) -> None:
        scans = self._scans.setdefault(occ.id, [])
        scans.append(scan)
        self._keys.setdefault(occ.id, set()).add(key)
        first = row.first_scan_ns
        row.first_scan_ns = scan.time_ns if first is None else min(first, scan.time_ns)
        before = row.state
        row.state = round_state(occ.route, scans, row.concluded)
        device = round_device(occ.route)
        if first is None and row.checked_start:
            on_time = scan.time_ns < occ.start_ns + self.grace_ns
            self.alarms.resolve_item(device, "round_not_started", occ.id, arrival_ns,
                                     "late upload" if on_time else "round started late")
        if row.concluded and row.watched:
            missing = self._missing(occ.route, scans)
            if not missing:
                self.alarms.resolve_item(device, "checkpoint_missed", occ.id, arrival_ns,
                                         "late upload")
            elif self.alarms.is_open(device, "checkpoint_missed", occ.id):
                en, zh = self._missed_text(site, occ, missing)
                self.alarms.update_item(device, "checkpoint_missed", occ.id, en, zh)
            self._check_order(site, occ, row, arrival_ns, late=late)
        elif row.state == "completed" and before != "completed":
            self._check_order(site, occ, row, arrival_ns, late=False)
        self._save(row)

    def _check_order(self, site: Site, occ: Occurrence, row: RoundRow, at_ns: int,
                     late: bool) -> None:
        if occ.route.order != "strict":
            return
        wrong = order_violations(occ.route, self._scans.get(occ.id, []))
        device = round_device(occ.route)
        if wrong:
            pairs = ", ".join(f"{cp} before {prev}" for cp, prev in wrong)
            pairs_zh = "，".join(f"{cp} 先于 {prev}" for cp, prev in wrong)
            row.out_of_order = True
            self.alarms.raise_item(site.site, device, "out_of_order", occ.id,
                                   f"{self._round_label(site, occ)}: {pairs}",
                                   f"{self._round_label(site, occ, zh=True)}：{pairs_zh}", at_ns)
        elif row.out_of_order:
            row.out_of_order = False
            self.alarms.resolve_item(device, "out_of_order", occ.id, at_ns,
                                     "late upload" if late else "order restored")

    # ------------------------------------------------------------------ text

    @staticmethod
    def _missing(route: PatrolRoute, scans: list[ScanInfo]) -> list[str]:
        done = {s.checkpoint_id for s in scans}
        return [cp for cp in route.checkpoints if cp not in done]

    @staticmethod
    def _hhmm(site: Site, t_ns: int) -> str:
        return datetime.fromtimestamp(t_ns / NS, ZoneInfo(site.timezone)).strftime("%H:%M")

    @staticmethod
    def _round_label(site: Site, occ: Occurrence, zh: bool = False) -> str:
        if zh:
            return f"{occ.route.name} {occ.date.isoformat()} {occ.start:%H:%M}"
        return f"{occ.route.id} {occ.date.isoformat()} {occ.start:%H:%M}"

    def _missed_text(self, site: Site, occ: Occurrence, missing: list[str]) -> tuple[str, str]:
        if len(missing) == len(occ.route.checkpoints):
            what, what_zh = f"all {len(missing)} checkpoints", f"全部 {len(missing)} 个点位"
        else:
            what = what_zh = ", ".join(missing)
        return (f"{self._round_label(site, occ)}: {what}",
                f"{self._round_label(site, occ, zh=True)}：{what_zh}")

    # ------------------------------------------------------------------ views

    def route(self, site: str, route_id: str) -> PatrolRoute | None:
        """A route by site and id."""
        return self._routes.get((site, route_id))

    def day_occurrences(self, site: Site, day_text: str,
                        route_id: str | None = None) -> list[Occurrence]:
        """The rounds of a local date (``YYYY-MM-DD``)."""
        return occurrences(site, datetime.strptime(day_text, "%Y-%m-%d").date(), route_id)


_SCAN_COLUMNS = tuple(c.key for c in ScanRow.__table__.columns if c.key != "id")


@dataclass(frozen=True, slots=True)
class _Counted:
    """Scans (by id) folded into their rounds: marked counted with the rounds' write."""

    ids: tuple[int, ...]


def _scan_values(scan: ScanRow) -> dict[str, object]:
    """A pending scan as column values (a retry after a refused batch inserts it afresh)."""
    return {key: getattr(scan, key) for key in _SCAN_COLUMNS}


def stored_rounds(session: Session, ids: list[str]) -> tuple[dict[str, RoundRow],
                                                             dict[str, list[ScanRow]]]:
    """Round rows and their counted scans (oldest first) for a list of round ids."""
    rows: dict[str, RoundRow] = {}
    scans: dict[str, list[ScanRow]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        for row in session.scalars(select(RoundRow).where(RoundRow.id.in_(chunk))):
            rows[row.id] = row
        query = select(ScanRow).where(or_(ScanRow.round_id.in_(chunk))).order_by(
            ScanRow.time_ns, ScanRow.id)
        for scan in session.scalars(query):
            if scan.round_id is not None:
                scans.setdefault(scan.round_id, []).append(scan)
    return rows, scans
