"""The round tracker and hazards on a controllable clock (wall mode, ticks given by the test)."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from hub.alarms.service import AlarmService
from hub.db import create_all, make_engine
from hub.ingest.normalize import Normalizer
from hub.model import InboundMessage, Reading
from hub.patrol.departments import DepartmentRegister
from hub.patrol.hazards import InvalidHazardTransition
from hub.patrol.kpi import percentile
from hub.patrol.service import PatrolService
from hub.patrol.tracker import ScanInfo, order_violations
from hub.profiles.loader import load_profiles
from hub.sites import PatrolRoute, load_sites

ROOT = Path(__file__).resolve().parent.parent
TZ = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 11, 20)
NS = 1_000_000_000
RT01 = ["FP-CP005", "FP-CP010", "FP-CP002", "FP-CP004", "FP-CP003", "FP-CP006", "FP-CP001",
        "FP-CP012", "FP-CP009", "FP-CP011", "FP-CP007", "FP-CP008"]


def t(hhmm: str, day: date = DAY) -> datetime:
    return datetime.combine(day, datetime.strptime(hhmm, "%H:%M").time(), tzinfo=TZ)


def ns(moment: datetime) -> int:
    return int(moment.timestamp()) * NS


class Rig:
    """A PatrolService on SQLite with a real AlarmService; the test moves the clock."""

    def __init__(self, tmp: Path) -> None:
        self.now = ns(t("00:00"))
        self.url = f"sqlite:///{tmp / 'hub.sqlite'}"
        self.sites = load_sites(ROOT / "sites")
        self.normalizer = Normalizer(load_profiles(ROOT / "device_profiles"), self.sites)
        self.tags = {c.id: c for c in self.sites.sites["fuping"].checkpoints}
        self.open()

    def open(self) -> None:
        self.engine = make_engine(self.url)
        create_all(self.engine)
        self.alarms = AlarmService(self.engine, sites=self.sites)
        self.refused: list[tuple[str, str, str]] = []
        self.patrol = PatrolService(
            self.sites, self.engine, self.alarms, wall=lambda: self.now,
            departments=DepartmentRegister.load(ROOT / "sites"),
            refuse=lambda r, reason, detail: self.refused.append((r.device_id, reason, detail)))

    def restart(self) -> None:
        self.patrol.tracker.flush()  # what the hub's pipeline stop hook does
        self.alarms.close()
        self.engine.dispose()
        self.open()

    def tick(self, moment: datetime) -> None:
        self.now = max(self.now, ns(moment))
        self.patrol.on_tick(ns(moment))

    def send(self, topic: str, body: dict[str, Any], received: datetime) -> Reading:
        self.now = max(self.now, ns(received))
        result = self.normalizer.process(
            InboundMessage(topic, json.dumps(body).encode(), 1, False, ns(received)))
        assert isinstance(result, Reading), result
        self.patrol.on_reading(result)
        return result

    def scan(self, cp: str, scanned: datetime, received: datetime | None = None,
             reader: str = "FP-R01", patroller: str = "FP-P001",
             pos: tuple[float, float] | None = None) -> None:
        checkpoint = self.tags[cp]
        lat, lon = pos or (checkpoint.lat, checkpoint.lon)
        self.send(f"patrol/{reader}/scan", {
            "reader": reader, "tag_uid": checkpoint.tag_uid, "patroller": patroller,
            "ts": scanned.isoformat(), "lat": lat, "lon": lon, "battery_pct": 90},
            received or scanned)

    def alarm(self, device: str, rule: str) -> dict[str, Any] | None:
        self.alarms.flush(force=True)
        found, _ = self.alarms.list(device_id=device, rule=rule, limit=10)
        return found[0] if found else None

    def round(self, route: str, start: str, day: date = DAY) -> dict[str, Any]:
        return next(r for r in self.patrol.rounds("fuping", day, route) if r["start"] == start)


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


def test_order_violations_tolerate_skips_and_extra_scans() -> None:
    route = PatrolRoute(id="R", name="r", order="strict", checkpoints=["A", "B", "C", "D"])

    def scans(*pairs: tuple[str, int]) -> list[ScanInfo]:
        return [ScanInfo(cp, at) for cp, at in pairs]

    assert order_violations(route, scans(("A", 1), ("B", 2), ("D", 4))) == []  # a skip
    assert order_violations(route, scans(("A", 1), ("C", 2), ("B", 3), ("D", 4))) == [("C", "B")]
    # a scan of C ahead of time (a hazard report there), then the walk in order
    assert order_violations(route, scans(("A", 1), ("C", 2), ("B", 3), ("C", 4), ("D", 5))) == []


def test_a_clean_round_completes_on_time(rig: Rig) -> None:
    for i, cp in enumerate(RT01):
        rig.scan(cp, t("08:05") + timedelta(minutes=6 * i))
    rig.tick(t("09:31"))
    rnd = rig.round("FP-RT01", "08:00")
    assert (rnd["state"], rnd["done"], rnd["on_time"]) == ("completed", 12, True)
    assert rig.alarm("FP-R01", "checkpoint_missed") is None
    assert rig.alarm("FP-R01", "round_not_started") is None


def test_not_started_then_late_start_then_missed_and_late_upload(rig: Rig) -> None:
    rig.tick(t("07:00"))
    assert rig.round("FP-RT01", "08:00")["state"] == "scheduled"
    rig.tick(t("08:14"))
    assert rig.alarm("FP-R01", "round_not_started") is None
    rig.tick(t("08:15"))
    alarm = rig.alarm("FP-R01", "round_not_started")
    assert alarm is not None and alarm["severity"] == "warning"
    assert alarm["state"] == "active_unack" and "FP-RT01 2026-11-20 08:00" in alarm["message"]
    walked = [cp for cp in RT01 if cp != "FP-CP009"]
    for i, cp in enumerate(walked):
        rig.scan(cp, t("08:20") + timedelta(minutes=5 * i))
        if i == 0:
            cleared = rig.alarm("FP-R01", "round_not_started")
            assert cleared is not None and cleared["state"] == "cleared_unack"
    assert rig.round("FP-RT01", "08:00")["state"] == "in_progress"
    rig.tick(t("09:30"))
    rnd = rig.round("FP-RT01", "08:00")
    assert (rnd["state"], rnd["done"], rnd["on_time"]) == ("incomplete", 11, False)
    missed = rig.alarm("FP-R01", "checkpoint_missed")
    assert missed is not None and missed["severity"] == "major" and "FP-CP009" in missed["message"]

    # the 14:00 round misses two more: same alarm, count 2, both rounds listed
    for i, cp in enumerate(RT01[:10]):
        rig.scan(cp, t("14:02") + timedelta(minutes=5 * i))
    rig.tick(t("15:30"))
    again = rig.alarm("FP-R01", "checkpoint_missed")
    assert again is not None and again["id"] == missed["id"] and again["count"] == 2
    assert "08:00: FP-CP009" in again["message"] and "FP-CP007, FP-CP008" in again["message"]

    # the 08:00 scan of FP-CP009 was buffered: counted for its round, one of two items resolved
    rig.scan("FP-CP009", t("09:05"), received=t("16:00"))
    rnd = rig.round("FP-RT01", "08:00")
    assert rnd["state"] == "completed"
    cp9 = rnd["checkpoints"][8]
    assert cp9["late_upload"] is True and cp9["late_s"] == 6 * 3600 + 55 * 60
    assert rig.alarm("FP-R01", "checkpoint_missed")["state"] == "active_unack"  # type: ignore[index]
    for i, cp in enumerate(RT01[10:]):
        rig.scan(cp, t("15:00") + timedelta(minutes=i), received=t("16:01"))
    cleared = rig.alarm("FP-R01", "checkpoint_missed")
    assert cleared is not None and cleared["state"] == "cleared_unack"
    history = rig.alarms.get(cleared["id"])["history"]
    assert history[-1]["note"] == "late upload"
    # a duplicate of a counted scan changes nothing
    rig.scan("FP-CP009", t("09:05"), received=t("16:02"))
    assert rig.round("FP-RT01", "08:00")["done"] == 12


def test_restart_keeps_rounds_and_a_late_upload_still_clears(rig: Rig) -> None:
    for i, cp in enumerate(RT01[:-1]):
        rig.scan(cp, t("08:02") + timedelta(minutes=5 * i))
    rig.tick(t("09:31"))
    assert rig.alarm("FP-R01", "checkpoint_missed")["state"] == "active_unack"  # type: ignore[index]
    rig.restart()
    assert rig.round("FP-RT01", "08:00")["state"] == "incomplete"
    rig.tick(t("09:40"))  # nothing concluded twice
    assert rig.alarm("FP-R01", "checkpoint_missed")["count"] == 1  # type: ignore[index]
    rig.scan(RT01[-1], t("09:20"), received=t("09:45"))
    assert rig.alarm("FP-R01", "checkpoint_missed")["state"] == "cleared_unack"  # type: ignore[index]
    assert rig.round("FP-RT01", "08:00")["state"] == "completed"


def test_scan_rules_unknown_moved_unassigned_out_of_order(rig: Rig) -> None:
    rig.tick(t("07:59"))
    rig.send("patrol/FP-R01/scan", {"reader": "FP-R01", "tag_uid": "04DEADBEEF0001",
                                    "patroller": "FP-P001", "ts": t("08:03").isoformat()},
             t("08:03"))
    unknown = rig.alarm("FP-R01", "unknown_tag")
    assert unknown is not None and "04DEADBEEF0001" in unknown["message"]
    cp = rig.tags["FP-CP005"]
    assert cp.lat is not None and cp.lon is not None
    rig.scan("FP-CP005", t("08:05"), pos=(cp.lat + 0.003, cp.lon))  # ~330 m north
    moved = rig.alarm("FP-R01", "tag_moved")
    assert moved is not None and "FP-CP005 scanned 33" in moved["message"]
    rig.scan("FP-CP010", t("08:10"), patroller="FP-P017")  # FP-P017 walks FP-RT03
    unassigned = rig.alarm("FP-R01", "unassigned_route")
    assert unassigned is not None and unassigned["severity"] == "info"
    assert "FP-P017 on FP-RT01" in unassigned["message"]
    order = [*RT01[2:4], RT01[5], RT01[4], *RT01[6:]]
    for i, cpid in enumerate(order):
        rig.scan(cpid, t("08:15") + timedelta(minutes=5 * i))
    bad = rig.alarm("FP-R01", "out_of_order")
    assert bad is not None and "FP-CP006 before FP-CP003" in bad["message"]
    assert rig.round("FP-RT01", "08:00")["out_of_order"] is True


def test_hazard_lifecycle_due_and_overdue(rig: Rig) -> None:
    rig.tick(t("08:00"))
    body = {"reader": "FP-R03", "patroller": "FP-P017", "tag_uid": "04D2216EE729C5",
            "ts": t("08:04").isoformat(), "category": "ebike_indoor_charging",
            "note": "楼道充电", "photo_ref": "img/x.jpg"}
    rig.send("patrol/FP-R03/hazard", body, t("08:04"))
    rig.send("patrol/FP-R03/hazard", body, t("08:05"))  # re-sent
    items = rig.patrol.hazards.search(site="fuping")
    assert len(items) == 1
    hz = items[0]
    assert hz["due_at"] == "2026-11-21T00:04:00Z" and hz["checkpoint_id"] == "FP-CP026"
    road = rig.patrol.hazards.create("fuping", "road_hazard", "pothole", None, None, "ops")
    assert road is not None
    assert road["due_at"] == "2026-11-27T00:05:00Z"  # 7 days from the clock (08:05 local)
    with pytest.raises(InvalidHazardTransition):
        rig.patrol.hazards.act(hz["id"], "verify", "ops")
    rig.patrol.hazards.act(hz["id"], "dispatch", "ops", department="消防")
    rig.tick(t("08:05", DAY + timedelta(days=1)))
    overdue = rig.alarm(hz["id"], "hazard_overdue")
    assert overdue is not None and overdue["severity"] == "major" and overdue["kind"] == "patrol"
    assert rig.patrol.hazards.search(overdue=True)[0]["id"] == hz["id"]
    done = rig.patrol.hazards.act(hz["id"], "rectify", "ops", note="moved out",
                                  evidence_ref="img/y.jpg")
    assert done["status"] == "rectified" and done["overdue"] is False
    assert rig.alarm(hz["id"], "hazard_overdue")["state"] == "cleared_unack"  # type: ignore[index]
    verified = rig.patrol.hazards.act(hz["id"], "verify", "chief")
    assert verified["verified_by"] == "chief"
    kpi = rig.patrol.kpi("fuping", DAY, DAY)
    assert kpi["hazards_found"] == 2 and kpi["rectification_rate"] == 0.5
    assert kpi["verified_rate"] == 0.5 and kpi["overdue"] == 0
    assert kpi["median_time_to_rectify_h"] == pytest.approx(24 + 1 / 60, abs=0.01)


def test_percentile() -> None:
    assert percentile([], 0.5) is None
    assert percentile([1, 2, 3, 4], 0.5) == 2.5
    assert percentile([10.0], 0.9) == 10.0
    assert percentile(list(range(11)), 0.9) == 9.0
