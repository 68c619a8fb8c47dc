"""Patrol round progress handed over with a partition (cluster mode), SQLite and PostgreSQL.

Two patrol services on one state store stand for two hubs; the test plays the handover
(hub.cluster.handover calls ``release`` on the old owner, ``adopt`` on the new one before the
partition's first message). A round started on one hub is finished on the other. A route whose
two readers are in different partitions has one writer of its round row, the owner of its first
reader: the other hub records its reader's scans, and the round's owner counts them.
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from hub.ingest.normalize import Normalizer
from hub.patrol.tables import ScanRow
from hub.profiles.loader import load_profiles
from hub.sites import load_sites
from tests.test_patrol_tracker import ROOT, RT01, Rig, t

ROUND = "fuping:FP-RT01:2026-11-20:08:00"


class Hub(Rig):
    """A Rig on a given state store, owning the devices ``owned`` holds."""

    def __init__(self, tmp: Path, url: str, owned: set[str],
                 sites_dir: Path | None = None) -> None:
        self.owned = owned
        super().__init__(tmp)
        if sites_dir is not None:
            self.sites = load_sites(sites_dir)
            self.normalizer = Normalizer(load_profiles(ROOT / "device_profiles"), self.sites)
        self.url = url
        self.engine.dispose()
        self.open()
        self.patrol.tracker.owns = lambda device: device in self.owned

    def counted(self, round_id: str = ROUND) -> list[str]:
        """The checkpoints of the scans this hub's tracker counted for a round, in order."""
        return sorted(s.checkpoint_id for s in self.patrol.tracker._scans.get(round_id, []))

    def stored(self, round_id: str = ROUND) -> int:
        """How many scans the state store holds for a round."""
        with self.patrol.sessions() as session:
            return session.scalar(select(func.count(ScanRow.id))
                                  .where(ScanRow.round_id == round_id)) or 0


def split_route(tmp: Path) -> Path:
    """The shipped sites with FP-RT01 read by two readers, FP-R01 (first) and FP-R02."""
    target = tmp / "sites"
    shutil.copytree(ROOT / "sites", target)
    site = target / "fuping.yaml"
    text = site.read_text(encoding="utf-8")
    line = next(x for x in text.splitlines() if "{id: FP-RT01," in x)
    site.write_text(text.replace(line, line.replace("readers: [FP-R01]",
                                                    "readers: [FP-R01, FP-R02]")),
                    encoding="utf-8")
    return target


def scan_alternately(second: Hub, first: Hub, checkpoints: list[str], start: str = "08:05",
                     index: int = 0) -> None:
    """Scan ``checkpoints``, the i-th (counting from ``index``) 3 * i min after ``start``:
    even ones by FP-R02 on ``second``, odd ones by FP-R01 on ``first``, each flushed (its
    hub's durable batch)."""
    for i, cp in enumerate(checkpoints, index):
        hub, reader = (second, "FP-R02") if i % 2 == 0 else (first, "FP-R01")
        hub.scan(cp, t(start) + timedelta(minutes=3 * i), reader=reader)
        hub.patrol.tracker.flush()


def test_round_started_on_one_hub_is_finished_on_the_other(tmp_path: Path,
                                                          state_url: str) -> None:
    a = Hub(tmp_path, state_url, {"FP-R01"})
    b = Hub(tmp_path, state_url, set())
    for hub in (a, b):
        hub.tick(t("08:20"))  # past start + grace: the owner checks the start (no scan yet)
    for i, cp in enumerate(RT01[:6]):
        a.scan(cp, t(f"08:{21 + i}"))
    a.patrol.tracker.flush()
    assert a.round("FP-RT01", "08:00")["done"] == 6

    # the partition of FP-R01 moves from a to b
    a.owned.clear()
    a.patrol.tracker.release(lambda d: d == "FP-R01")
    b.owned.add("FP-R01")
    assert b.patrol.tracker.adopt(lambda d: d == "FP-R01") >= 1
    b.scan(RT01[5], t("08:26"))  # redelivered: a counted it already
    for i, cp in enumerate(RT01[6:]):
        b.scan(cp, t(f"08:{40 + i}"))
    b.patrol.tracker.flush()
    for hub in (a, b):
        hub.tick(t("09:31"))  # the window closed
    b.patrol.tracker.flush()
    a.patrol.tracker.flush()
    done = b.round("FP-RT01", "08:00")
    assert done["state"] == "completed" and done["done"] == 12, done
    assert done["checkpoints"][0]["scanned_at"].startswith("2026-11-20T00:21")  # a's first
    assert not b.refused and not a.refused
    assert b.alarm("FP-R01", "checkpoint_missed") is None
    assert b.alarm("FP-R01", "out_of_order") is None
    for hub in (a, b):
        hub.alarms.close()


def test_only_the_hub_holding_a_hazard_climbs_its_ladder(tmp_path: Path,
                                                         state_url: str) -> None:
    """Cluster wiring sets ``HazardService.owns`` to the hazard id's partition: two hubs on one
    store, and the overdue rung (its alarm, its hand-over) happens once, on the holder."""
    from datetime import date

    from tests.support.hazard_rig import HazardRig, local

    start = local(date(2026, 11, 2), "09:00")
    holder, other = HazardRig(state_url, start), HazardRig(state_url, start)
    try:
        holder.hazard(start)
        hazard_id = holder.patrol.hazards.search()[0]["id"]
        holder.patrol.hazards.act(hazard_id, "dispatch", "ops", department="fp-fire")
        other.close()
        other.open()  # a hub starting now watches every open hazard of the store
        holder.patrol.hazards.owns = lambda key: key == hazard_id
        other.patrol.hazards.owns = lambda key: key != hazard_id
        later = local(date(2026, 11, 20), "09:00")  # past every rung of a general hazard
        other.tick(later)
        assert [h for h in other.patrol.hazards.get(hazard_id)["history"]
                if h["action"] == "escalate"] == []
        holder.tick(later)
        rungs = [h["rung"] for h in holder.patrol.hazards.get(hazard_id)["history"]
                 if h["action"] == "escalate"]
        assert rungs and len(rungs) == len(set(rungs))
        other.tick(later)  # still not the holder: nothing more
        again = [h["rung"] for h in holder.patrol.hazards.get(hazard_id)["history"]
                 if h["action"] == "escalate"]
        assert again == rungs
    finally:
        other.close()
        holder.close()


def test_split_route_has_one_round_writer_and_counts_every_reader(tmp_path: Path,
                                                                  state_url: str) -> None:
    """FP-R01's hub runs the round; FP-R02's hub records its scans, the round's hub counts them:
    a redelivered scan once, a late upload after the window clears what it explains."""
    sites = split_route(tmp_path)
    a = Hub(tmp_path, state_url, {"FP-R01"}, sites)  # the round's owner (its first reader)
    b = Hub(tmp_path, state_url, {"FP-R02"}, sites)  # the other reader's hub
    try:
        for hub in (a, b):
            hub.tick(t("07:00"))  # both watch the site from before the window opens
            hub.tick(t("08:20"))  # past start + grace, no scan: a raises round_not_started
        assert a.alarm("FP-R01", "round_not_started") is not None
        walked = RT01[:-1]  # the last checkpoint comes as a late upload
        scan_alternately(b, a, walked, start="08:21")
        b.scan(walked[2], t("08:27"), reader="FP-R02")  # redelivered: b counted it already
        b.patrol.tracker.flush()
        for hub in (a, b):
            hub.tick(t("09:31"))  # the window closed: a concludes the round
            hub.patrol.tracker.flush()
        rnd = a.round("FP-RT01", "08:00")
        assert (rnd["state"], rnd["done"]) == ("incomplete", 11), rnd
        assert a.counted() == sorted(walked)  # every scan of both readers, each once
        assert a.stored() == 11
        missed = a.alarm("FP-R01", "checkpoint_missed")
        assert missed is not None and RT01[-1] in missed["message"]
        assert "FP-CP005" not in missed["message"]  # b's first scan counted
        started = a.alarm("FP-R01", "round_not_started")
        assert started is not None and started["state"] == "cleared_unack"
        assert not [r for r in b.patrol.tracker._rounds if ":FP-RT01:" in r]  # b writes none

        # FP-R02 uploads the last checkpoint late; the round's owner folds it in on its clock
        b.scan(RT01[-1], t("09:20"), received=t("09:40"), reader="FP-R02")
        b.patrol.tracker.flush()
        a.patrol.tracker.fold_every_s = 0.0  # fold on this tick (the default: once a second)
        a.tick(t("09:41"))
        a.patrol.tracker.flush()
        rnd = a.round("FP-RT01", "08:00")
        assert (rnd["state"], rnd["done"]) == ("completed", 12), rnd
        assert rnd["checkpoints"][-1]["late_upload"] is True
        cleared = a.alarm("FP-R01", "checkpoint_missed")
        assert cleared is not None and cleared["state"] == "cleared_unack"
        assert a.alarms.get(cleared["id"])["history"][-1]["note"] == "late upload"
        b.tick(t("09:42"))
        b.patrol.tracker.flush()
        assert a.round("FP-RT01", "08:00")["state"] == "completed"  # b wrote no older row
        assert b.alarm("FP-R01", "checkpoint_missed")["state"] == "cleared_unack"  # type: ignore[index]
        assert not a.refused and not b.refused
    finally:
        for hub in (a, b):
            hub.alarms.close()


def test_split_route_round_survives_its_owner_dying(tmp_path: Path, state_url: str) -> None:
    """The round's owner dies (no release) after folding scans it never wrote; scans go on while
    no hub owns the round; the next owner adopts and finishes it, every scan counted once."""
    sites = split_route(tmp_path)
    a = Hub(tmp_path, state_url, {"FP-R01"}, sites)
    b = Hub(tmp_path, state_url, {"FP-R02"}, sites)
    c: Hub | None = None
    try:
        for hub in (a, b):
            hub.tick(t("08:00"))
        scan_alternately(b, a, RT01[:6])
        a.patrol.tracker.fold_every_s = 0.0
        a.tick(t("08:25"))  # a counts b's three scans on its clock ...
        assert a.counted() == sorted(RT01[:6])
        # ... and is SIGKILLed before its next flush: what it folded is not written

        for i, cp in enumerate(RT01[6:9], 6):  # no hub owns FP-R01 now
            b.scan(cp, t("08:05") + timedelta(minutes=3 * i), reader="FP-R02")
            b.patrol.tracker.flush()

        c = Hub(tmp_path, state_url, {"FP-R01"}, sites)  # takes FP-R01's partition
        c.patrol.tracker.release(lambda d: True)  # Handover.forget_all at start
        assert c.patrol.tracker.adopt(lambda d: d == "FP-R01") >= 1
        scan_alternately(b, c, RT01[9:], index=9)

        # b is SIGKILLed too; FP-R02's next owner gets its last scan again (not acked)
        b2 = Hub(tmp_path, state_url, {"FP-R02"}, sites)
        b2.patrol.tracker.release(lambda d: True)
        b2.patrol.tracker.adopt(lambda d: d == "FP-R02")
        b2.scan(RT01[10], t("08:05") + timedelta(minutes=30), reader="FP-R02")
        b2.patrol.tracker.flush()
        for hub in (c, b2):
            hub.tick(t("09:31"))
            hub.patrol.tracker.flush()
        rnd = c.round("FP-RT01", "08:00")
        assert (rnd["state"], rnd["done"], rnd["on_time"]) == ("completed", 12, True), rnd
        assert rnd["checkpoints"][0]["scanned_at"].startswith("2026-11-20T00:05")  # b's first
        assert c.counted() == sorted(RT01)  # each scan once, a's lost fold done again
        assert c.stored() == 12
        assert c.alarm("FP-R01", "checkpoint_missed") is None
        assert c.alarm("FP-R01", "round_not_started") is None
        assert c.alarm("FP-R01", "out_of_order") is None
        assert not c.refused and not b.refused and not b2.refused
        b2.alarms.close()
    finally:
        for hub in (a, b, *([c] if c else [])):
            hub.alarms.close()


def test_a_running_hub_adopting_late_runs_what_fell_due(tmp_path: Path, state_url: str) -> None:
    """A hub running all along takes a round's partition after its window closed (its clock
    passed the end while another hub owned it): it concludes the round at once, not at the
    next window boundary of the site."""
    sites = split_route(tmp_path)
    a = Hub(tmp_path, state_url, {"FP-R01"}, sites)
    b = Hub(tmp_path, state_url, {"FP-R02"}, sites)
    try:
        for hub in (a, b):
            hub.tick(t("07:00"))
        scan_alternately(b, a, RT01[:4])
        b.tick(t("09:31"))  # the window closed; a, the round's owner, is dead since 09:29
        a.owned.clear()
        b.owned.add("FP-R01")
        assert b.patrol.tracker.adopt(lambda d: d == "FP-R01") >= 1
        b.tick(t("09:32"))
        b.patrol.tracker.flush()
        rnd = b.round("FP-RT01", "08:00")
        assert (rnd["state"], rnd["done"]) == ("incomplete", 4), rnd
        missed = b.alarm("FP-R01", "checkpoint_missed")
        assert missed is not None and RT01[4] in missed["message"]
        assert RT01[0] not in missed["message"] and RT01[1] not in missed["message"]
    finally:
        for hub in (a, b):
            hub.alarms.close()


def test_a_scans_table_from_before_gains_counted(tmp_path: Path, state_url: str) -> None:
    """A ``patrol_scans`` table an older hub made gets ``counted`` (its rows counted) and the
    index of the uncounted on start; the round its scan is of goes on from it."""
    from sqlalchemy import inspect, text
    from sqlalchemy.orm import Session

    from hub.db import make_engine
    from hub.patrol.tables import RoundRow
    from tests.test_patrol_tracker import ns

    engine = make_engine(state_url)
    serial = "SERIAL" if engine.dialect.name == "postgresql" else "INTEGER"
    first = ns(t("08:05"))
    with engine.begin() as conn:
        conn.execute(text(
            f"CREATE TABLE patrol_scans (id {serial} PRIMARY KEY, site VARCHAR(64), "
            "device_id VARCHAR(128), tag_uid VARCHAR(64), checkpoint_id VARCHAR(64), "
            "route_id VARCHAR(64), round_id VARCHAR(160), patroller_id VARCHAR(64), "
            "time_ns BIGINT, received_ns BIGINT, arrival_ns BIGINT, lat FLOAT, lon FLOAT, "
            "distance_m FLOAT, late_upload BOOLEAN, "
            "CONSTRAINT uq_patrol_scan UNIQUE (device_id, time_ns, tag_uid))"))
        conn.execute(text(
            "INSERT INTO patrol_scans (site, device_id, tag_uid, checkpoint_id, route_id, "
            "round_id, patroller_id, time_ns, received_ns, arrival_ns, late_upload) VALUES "
            "('fuping', 'FP-R01', :tag, :cp, 'FP-RT01', :rid, 'FP-P001', :t, :t, :t, false)"),
            {"tag": "x", "cp": RT01[0], "rid": ROUND, "t": first})
    RoundRow.__table__.create(engine)
    with Session(engine) as session:
        session.add(RoundRow(id=ROUND, site="fuping", route_id="FP-RT01", date="2026-11-20",
                             start_ns=ns(t("08:00")), end_ns=ns(t("09:30")),
                             state="in_progress", first_scan_ns=first, concluded=False,
                             watched=True, out_of_order=False, checked_start=False))
        session.commit()
    engine.dispose()
    hub = Hub(tmp_path, state_url, set())
    try:
        hub.patrol.tracker.owns = None  # single-machine mode
        hub.tick(t("07:00"))
        for i, cp in enumerate(RT01[1:], 1):
            hub.scan(cp, t("08:05") + timedelta(minutes=6 * i))
        hub.tick(t("09:31"))
        assert hub.round("FP-RT01", "08:00")["state"] == "completed"
        assert hub.counted() == sorted(RT01)
        indexes = {i["name"] for i in inspect(hub.engine).get_indexes("patrol_scans")}
        assert "ix_patrol_scans_uncounted" in indexes
        with hub.patrol.sessions() as session:
            assert session.scalar(select(func.count(ScanRow.id))
                                  .where(ScanRow.counted.is_(False))) == 0
    finally:
        hub.alarms.close()


def test_a_hazard_dispatched_on_another_hub_joins_the_owners_ladder(tmp_path: Path,
                                                                    state_url: str) -> None:
    """The owner started before the hazard existed; the other hub entered and dispatched it.
    The owner climbs it only once it re-read the open hazards (cluster wiring: every 5 s),
    and its history names the hub that climbed each rung."""
    from datetime import date, timedelta

    from tests.support.hazard_rig import HazardRig, local, ns

    start = local(date(2026, 11, 2), "09:00")
    owner, other = HazardRig(state_url, start), HazardRig(state_url, start)
    try:
        other.hazard(start)
        hazard_id = other.patrol.hazards.search()[0]["id"]
        other.patrol.hazards.act(hazard_id, "dispatch", "ops", department="fp-fire",
                                 due_ns=ns(start + timedelta(hours=1)))
        owner.patrol.hazards.owns = lambda key: key == hazard_id
        other.patrol.hazards.owns = lambda key: key != hazard_id
        owner.patrol.hazards.node, other.patrol.hazards.node = "hub-a", "hub-b"
        later = start + timedelta(hours=2)  # past the reminder and the overdue rung
        owner.tick(later)
        other.tick(later)
        assert [h for h in owner.patrol.hazards.get(hazard_id)["history"]
                if h["action"] == "escalate"] == []  # not watched by the owner yet
        assert owner.patrol.hazards.rewatch_open() == 1
        owner.tick(later)
        climbed = [(h["rung"], h["hub"]) for h in owner.patrol.hazards.get(hazard_id)["history"]
                   if h["action"] == "escalate"]
        assert climbed == [("reminder", "hub-a"), ("overdue", "hub-a")], climbed
        assert owner.alarm(hazard_id, "hazard_overdue") is not None
        assert [m.event for m in owner.handovers] == ["reminder", "overdue"]
    finally:
        other.close()
        owner.close()
