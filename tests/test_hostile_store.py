"""Hostile device strings on the state store: stored or refused with a reason, neighbours kept.

Every test runs on SQLite and on a real PostgreSQL 15 (``state_url``): SQLite ignores column
lengths and takes NULs, PostgreSQL refuses both, which is how a whole batch used to be lost.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from hub.alarms.service import AlarmService
from hub.db import create_all, make_engine, make_sessionmaker
from hub.ingest.normalize import Normalizer
from hub.ingest.refusals import RefusalLog, RefusalRow
from hub.model import InboundMessage, Reading, Refusal
from hub.patrol.service import PatrolService
from hub.patrol.tables import HazardRow, ScanRow
from hub.profiles.loader import load_profiles
from hub.rules.store import RuleStateStore, SavedState
from hub.sites import load_sites
from hub.state import DeviceRow, DeviceStates, LiveState

ROOT = Path(__file__).resolve().parent.parent
TZ = ZoneInfo("Asia/Shanghai")
NS = 1_000_000_000
SCANNED = datetime(2026, 11, 20, 8, 5, tzinfo=TZ)


class Rig:
    """Normalizer, patrol service, refusal log and device states on one state store."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        create_all(self.engine)
        self.sessions = make_sessionmaker(self.engine)
        self.sites = load_sites(ROOT / "sites")
        self.profiles = load_profiles(ROOT / "device_profiles")
        self.normalizer = Normalizer(self.profiles, self.sites)
        self.alarms = AlarmService(self.engine, sites=self.sites)
        self.now = int(SCANNED.timestamp()) * NS
        self.patrol = PatrolService(self.sites, self.engine, self.alarms, wall=lambda: self.now)
        self.refusals = RefusalLog(self.sessions)
        self.states = DeviceStates(self.profiles, self.sites, self.normalizer, self.sessions)
        self.tag = self.sites.sites["fuping"].checkpoints[0].tag_uid

    def send(self, topic: str, body: dict[str, Any] | bytes, minute: int = 0) -> Reading | Refusal:
        """One message through normalize and the patrol hook, as the pipeline does."""
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        received = self.now + minute * 60 * NS
        result = self.normalizer.process(InboundMessage(topic, payload, 1, False, received))
        if isinstance(result, Refusal):
            self.refusals.record(result)
        else:
            self.states.observe(result)
            self.patrol.on_reading(result)
        return result

    def scan(self, patroller: str, minute: int, reader: str = "FP-R01") -> Reading | Refusal:
        moment = SCANNED.replace(minute=5 + minute)
        return self.send(f"patrol/{reader}/scan", {
            "reader": reader, "tag_uid": self.tag, "patroller": patroller,
            "ts": moment.isoformat(), "battery_pct": 90}, minute)

    def hazard(self, category: str, minute: int, note: str = "pothole") -> Reading | Refusal:
        moment = SCANNED.replace(minute=5 + minute)
        return self.send("patrol/FP-R03/hazard", {
            "reader": "FP-R03", "tag_uid": self.tag, "patroller": "FP-P003",
            "ts": moment.isoformat(), "category": category, "note": note}, minute)

    def flush(self) -> None:
        """What the pipeline's on_durable does: refusals, then the patrol tracker."""
        self.refusals.flush()
        self.patrol.tracker.flush()
        self.states.save()

    def count(self, column: Any, *where: Any) -> int:
        with self.sessions() as session:
            return int(session.scalar(select(func.count(column)).where(*where)) or 0)

    def close(self) -> None:
        self.alarms.close()
        self.engine.dispose()


def _rig(url: str) -> Rig:
    return Rig(url)


def test_a_long_patroller_loses_no_neighbour(state_url: str) -> None:
    rig = _rig(state_url)
    try:
        good = rig.scan("FP-P001", 0)
        assert isinstance(good, Reading)
        long_one = rig.scan("P" * 100, 1)
        rig.flush()
        assert rig.count(ScanRow.id, ScanRow.patroller_id == "FP-P001") == 1
        stored = rig.count(ScanRow.id) - 1
        refused = rig.count(RefusalRow.id, RefusalRow.device_id == "FP-R01")
        assert stored + refused == 1, (long_one, stored, refused)
    finally:
        rig.close()


def test_nul_and_control_characters_lose_nothing(state_url: str) -> None:
    rig = _rig(state_url)
    try:
        rig.scan("FP-P001", 0)
        rig.scan("FP\x00P002", 1)
        rig.scan("FP\x1bP003", 2)
        rig.hazard("road\x00hazard", 3)
        rig.hazard("road_hazard", 4, note="pot\x00hole\x07")
        rig.flush()
        assert rig.count(ScanRow.id, ScanRow.patroller_id == "FP-P001") == 1
        stored = rig.count(ScanRow.id) + rig.count(HazardRow.id)
        refused = rig.count(RefusalRow.id)
        assert stored + refused == 5
    finally:
        rig.close()


def test_a_long_hazard_category_is_refused_with_a_reason(state_url: str) -> None:
    rig = _rig(state_url)
    try:
        assert isinstance(rig.hazard("road_hazard", 0), Reading)
        rig.hazard("c" * 100, 1)
        rig.flush()
        assert rig.count(HazardRow.id, HazardRow.category == "road_hazard") == 1
        refused = rig.count(RefusalRow.id, RefusalRow.device_id == "FP-R03")
        assert rig.count(HazardRow.id) - 1 + refused == 1
    finally:
        rig.close()


def test_a_long_device_id_blocks_neither_refusals_nor_device_states(state_url: str) -> None:
    rig = _rig(state_url)
    try:
        long_id = "X" * 200
        rig.send(f"patrol/{long_id}/scan", {"reader": long_id, "tag_uid": rig.tag,
                                            "patroller": "FP-P001",
                                            "ts": SCANNED.isoformat()})
        rig.send("patrol/FP-R02/scan", b"not json")
        rig.scan("FP-P001", 0)
        rig.flush()
        assert rig.count(RefusalRow.id) == 2
        assert rig.count(DeviceRow.device_id, DeviceRow.device_id == "FP-R01") == 1
        rig.send("patrol/FP-R02/scan", b"still not json")
        rig.flush()
        assert rig.count(RefusalRow.id) == 3
    finally:
        rig.close()


# -- the writers: a row that slips past the boundary is set aside, its neighbours kept --------


def _with_tag(reading: Reading, name: str, value: str, minute: int) -> Reading:
    point = reading.points[0]
    tags = tuple((k, value if k == name else v) for k, v in point.tags)
    shifted = reading.time_ns + minute * 60 * NS
    return replace(reading, time_ns=shifted,
                   points=(replace(point, tags=tags, time_ns=shifted), *reading.points[1:]))


def test_the_tracker_sets_a_bad_scan_aside_and_keeps_its_batch(state_url: str) -> None:
    rig = _rig(state_url)
    set_aside: list[tuple[str, Any, str]] = []
    rig.patrol.tracker.on_set_aside = lambda t, r, why: set_aside.append((t, r, why))
    try:
        good = rig.scan("FP-P001", 0)
        assert isinstance(good, Reading)
        # a bug past the boundary: the tracker gets a patroller no column holds
        rig.patrol.on_reading(_with_tag(good, "patroller_id", "P" * 100, 1))
        rig.patrol.on_reading(_with_tag(good, "patroller_id", "FP-P002", 2))
        rig.patrol.tracker.flush()
        assert rig.count(ScanRow.id, ScanRow.patroller_id.in_(["FP-P001", "FP-P002"])) == 2
        if state_url.startswith("postgresql"):  # SQLite takes the long value as it is
            assert [(t, r["patroller_id"]) for t, r, _ in set_aside] == [
                ("patrol_scans", "P" * 100)]
            assert "too long" in set_aside[0][2]
        rig.patrol.on_reading(_with_tag(good, "patroller_id", "FP-P003", 3))
        rig.patrol.tracker.flush()  # the queue behind it moves on
        assert rig.count(ScanRow.id, ScanRow.patroller_id == "FP-P003") == 1
    finally:
        rig.close()


def test_device_states_set_a_bad_row_aside_once(state_url: str) -> None:
    rig = _rig(state_url)
    set_aside: list[str] = []
    rig.states.on_set_aside = lambda t, r, why: set_aside.append(r["device_id"])
    try:
        rig.scan("FP-P001", 0)
        bad = LiveState("Y" * 200, "PT-NFC1", "patrol_reader", "unassigned")
        rig.states._devices[bad.device_id] = bad  # past the boundary (an old database, a bug)
        rig.states._dirty.add(bad.device_id)
        rig.states.save()
        assert rig.count(DeviceRow.device_id, DeviceRow.device_id == "FP-R01") == 1
        rig.scan("FP-P001", 1, reader="FP-R02")
        rig.states.save()
        assert rig.count(DeviceRow.device_id, DeviceRow.device_id == "FP-R02") == 1
        if state_url.startswith("postgresql"):
            assert set_aside == ["Y" * 200]  # once: not put back to fail again
    finally:
        rig.close()


def test_refusals_of_any_shape_are_stored(state_url: str) -> None:
    rig = _rig(state_url)
    try:
        for i, (topic, device, model, detail) in enumerate([
                ("t/" + "x" * 600, "d" * 300, "m" * 100, "detail"),
                ("nul\x00topic", "dev\x00ice", None, "a NUL \x00 in the detail"),
                ("ok/topic", "FP-R01", "PT-NFC1", "d" * 10_000)]):
            rig.refusals.record(Refusal(topic, i, "bad_json", detail, b"\x00\xff", device, model))
        rig.refusals.flush()
        assert rig.count(RefusalRow.id) == 3
        rig.refusals.record(Refusal("next", 9, "bad_json", "after them", b"", None, None))
        rig.refusals.flush()
        assert rig.count(RefusalRow.id) == 4
    finally:
        rig.close()


def test_a_scan_by_an_unlisted_reader_counts_at_its_tags_site_or_is_refused(
        state_url: str) -> None:
    rig = _rig(state_url)
    rig.patrol.on_refused = rig.refusals.record
    try:
        placed = rig.scan("FP-P001", 0, reader="FP-R99")  # a replacement reader, not listed yet
        assert isinstance(placed, Reading) and placed.site == "unassigned"
        moment = SCANNED.replace(minute=7)
        rig.send("patrol/FP-R98/scan", {"reader": "FP-R98", "tag_uid": "FFFFFFFFFFFF",
                                        "patroller": "FP-P001", "ts": moment.isoformat()})
        rig.flush()
        assert rig.count(ScanRow.id, ScanRow.device_id == "FP-R99",
                         ScanRow.site == "fuping") == 1
        with rig.sessions() as session:
            rows = session.scalars(select(RefusalRow)).all()
        assert [(r.reason, r.device_id) for r in rows] == [("scan_unattributed", "FP-R98")]
    finally:
        rig.close()


def test_alarm_and_rule_state_writers_set_a_bad_row_aside(state_url: str) -> None:
    rig = _rig(state_url)
    try:
        at = rig.now
        rig.alarms.raise_or_update("FP-R01", "fuping", "patrol_reader", "battery_low",
                                   "warning", 10, "low", "低", at)
        rig.alarms.raise_or_update("Z" * 200, "fuping", "patrol_reader", "battery_low",
                                   "warning", 10, "low", "低", at)  # past the boundary
        rig.alarms.flush(force=True)
        rig.alarms.raise_or_update("FP-R02", "fuping", "patrol_reader", "battery_low",
                                   "warning", 10, "low", "低", at + NS)
        rig.alarms.flush(force=True)
        found, _total = rig.alarms.store.query(limit=10)
        assert {"FP-R01", "FP-R02"} <= {a.device_id for a in found}
        store = RuleStateStore(rig.engine)
        store.save([SavedState("Z" * 200, "k", "s", "m", {}), SavedState("FP-R01", "k", "s",
                                                                         "m", {"x": 1})], at)
        assert [s.device_id for s in store.load_all() if s.device_id == "FP-R01"] == ["FP-R01"]
    finally:
        rig.close()


def test_refusals_waiting_for_a_down_database_are_bounded(
        state_url: str, monkeypatch: Any) -> None:
    from hub.ingest import refusals as module

    rig = _rig(state_url)
    monkeypatch.setattr(module, "MAX_PENDING", 3)
    try:
        before = module.UNRECORDED._value.get()
        for i in range(5):
            rig.refusals.record(Refusal(f"t/{i}", i, "bad_json", "x", b"", None, None))
        assert module.UNRECORDED._value.get() - before == 2
        rig.refusals.flush()
        assert rig.count(RefusalRow.id) == 3
    finally:
        rig.close()


def test_every_device_id_column_has_the_one_width_the_normalizer_checks() -> None:
    import hub.runtime  # noqa: F401  (imports every table)
    from hub.db import DEVICE_ID_CHARS, Base
    from hub.ingest.normalize.text import IDENTIFIER_CHARS

    widths = {f"{t.name}.{c.name}": c.type.length for t in Base.metadata.tables.values()
              for c in t.columns if c.name == "device_id"}
    assert len(widths) >= 6 and set(widths.values()) == {DEVICE_ID_CHARS}, widths
    assert IDENTIFIER_CHARS["patroller_id"] == ScanRow.__table__.c.patroller_id.type.length
    assert IDENTIFIER_CHARS["category"] == HazardRow.__table__.c.category.type.length


def test_a_site_file_device_id_no_column_holds_is_refused_at_load(tmp_path: Path) -> None:
    import pytest
    from pydantic import ValidationError

    from hub.sites import load_site_file

    path = tmp_path / "site.yaml"
    for good in ("FP-R01", "张-R01"):
        path.write_text(f'site: t\nname: t\ntimezone: Asia/Shanghai\ndevices:\n'
                        f'  - {{id: "{good}", model: PT-NFC1}}\n', encoding="utf-8")
        assert load_site_file(path).devices[0].id == good
    for bad in ("X" * 200, "FP\\u0000R01", "FP\\x1bR01"):
        path.write_text(f'site: t\nname: t\ntimezone: Asia/Shanghai\ndevices:\n'
                        f'  - {{id: "{bad}", model: PT-NFC1}}\n', encoding="utf-8")
        with pytest.raises((ValidationError, ValueError)):
            load_site_file(path)
