"""The escalation ladder over a simulated month on the device clock (HUB_CLOCK=device).

Four hazards of November 2026 in Fuping; a reader scans every hour, which is what moves the
site's clock; the hub restarts once on the way. The test knows every rung that must happen,
when, and in what order; plus the alarms, hand-overs and KPIs that follow. On SQLite and
PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hub.patrol.schedule import iso_z
from tests.support.hazard_rig import HazardRig, fuping_with_routes, local, ns

NOV = date(2026, 11, 1)
AFTER = "ab" * 32


def d(day: int, hhmm: str) -> datetime:
    return local(NOV.replace(day=day), hhmm)


@pytest.fixture
def rig(state_url: str, tmp_path: Path) -> Iterator[HazardRig]:
    # one route (the scanning reader's): the hourly scans move the clock, not many rounds
    made = HazardRig(state_url, d(1, "00:00"), clock="device",
                     sites_dir=fuping_with_routes(tmp_path, {"FP-RT01"}))
    yield made
    made.close()


def test_a_month_of_escalation(rig: HazardRig) -> None:
    ids: dict[str, str] = {}

    class Current:  # the hazard service of the hub running now (a restart makes a new one)
        def __getattr__(self, name: str) -> Any:
            return getattr(rig.patrol.hazards, name)

    hazards = Current()

    def report(label: str, category: str, grade: str, department: str) -> Callable[[], None]:
        def run() -> None:
            before = {h["id"] for h in hazards.search()}
            rig.hazard(rig_time(), category=category, grade=grade, note=f"case {label}")
            ids[label] = next(h["id"] for h in hazards.search() if h["id"] not in before)
            hazards.act(ids[label], "dispatch", "ops", department=department)
        return run

    def act(label: str, action: str, actor: str, **kw: str) -> Callable[[], None]:
        return lambda: hazards.act(ids[label], action, actor, **kw)  # type: ignore[arg-type]

    def attach_after(label: str) -> Callable[[], None]:
        return lambda: hazards.attach(ids[label], AFTER, "after", "li")

    def restart() -> None:  # the hub stops and starts: the ladder goes on where it was
        rig.patrol.tracker.flush()
        rig.close()
        rig.open()

    moment: list[datetime] = []

    def rig_time() -> datetime:
        return moment[0]

    script: list[tuple[datetime, Callable[[], None]]] = [
        (d(2, "09:00"), report("A", "fire_exit_blocked", "general", "fp-fire")),  # due 3rd 09
        (d(2, "16:00"), act("A", "rectify", "li", note="exit cleared")),
        (d(3, "09:30"), act("A", "verify", "ops")),
        (d(3, "09:00"), report("B", "wiring_exposed", "general", "fp-property")),  # 6th 09
        (d(10, "10:00"), report("C", "illegal_gas_storage", "major", "fp-gas")),  # 10th 14
        (d(11, "15:00"), attach_after("C")),
        (d(11, "16:00"), act("C", "rectify", "li", note="cylinders moved")),
        (d(12, "10:00"), act("C", "reopen", "ops", note="re-check: cylinders back")),  # 14:00
        (d(12, "13:00"), act("C", "rectify", "li", note="cylinders taken away")),
        (d(12, "15:00"), act("C", "verify", "ops")),
        (d(7, "12:30"), restart),  # between B's overdue and supervised rungs
        (d(20, "08:00"), report("D", "road_hazard", "major", "fp-traffic")),  # 22nd 08
    ]
    hours = [(NOV + timedelta(days=i // 24), f"{i % 24:02d}:00") for i in range(30 * 24)]
    timeline = [(local(day, hhmm), 0, None) for day, hhmm in hours]
    timeline += [(at, 1, step) for at, step in script]
    for at, _order, step in sorted(timeline, key=lambda x: (x[0], x[1])):
        if step is None:
            rig.scan(at)
        else:
            moment[:] = [at]
            step()

    label = {v: k for k, v in ids.items()}
    rungs = sorted(
        (h["at"], label[hz], h["rung"])
        for hz in ids.values() for h in hazards.get(hz)["history"] if h["action"] == "escalate")

    def z(day: int, hhmm: str) -> str:
        return iso_z(ns(d(day, hhmm))) or ""

    assert rungs == [
        (z(6, "05:00"), "B", "reminder"), (z(6, "09:00"), "B", "overdue"),
        (z(8, "09:00"), "B", "supervised"),
        (z(10, "12:00"), "C", "reminder"), (z(10, "14:00"), "C", "overdue"),
        (z(11, "14:00"), "C", "supervised"),
        (z(12, "12:00"), "C", "reminder"),  # the reopen's new deadline, 14:00
        (z(13, "09:00"), "B", "county"),
        (z(22, "06:00"), "D", "reminder"), (z(22, "08:00"), "D", "overdue"),
        (z(23, "08:00"), "D", "supervised"), (z(25, "08:00"), "D", "county"),
    ]
    # alarms: B and D still overdue and supervised; C's were cleared by its rectification
    for case, state in (("B", "active_unack"), ("D", "active_unack"), ("C", "cleared_unack")):
        overdue = rig.alarm(ids[case], "hazard_overdue")
        supervised = rig.alarm(ids[case], "hazard_supervised")
        assert overdue is not None and supervised is not None
        assert (overdue["severity"], supervised["severity"]) == ("major", "critical")
        assert (overdue["state"], supervised["state"]) == (state, state), case
    assert rig.alarm(ids["A"], "hazard_overdue") is None
    # hand-overs: the dispatches, the department's reminders and the county's reports
    told = [(label[m.hazard_id], m.event, m.department.id if m.department else None)
            for m in rig.handovers]
    assert [t for t in told if t[1] == "county"] == [("B", "county", None),
                                                     ("D", "county", None)]
    assert ("C", "reminder", "fp-gas") in told and ("B", "overdue", "fp-property") in told
    listed = {h["id"]: h for h in hazards.search()}
    assert [label[i] for i, h in listed.items() if h["supervised"]] == ["D", "C", "B"]
    assert listed[ids["B"]]["rung"] == "county" and listed[ids["C"]]["status"] == "verified"
    assert [label[h["id"]] for h in hazards.search(supervised=True, grade="major")] == [
        "D", "C"]
    kpi = rig.patrol.kpi("fuping", NOV, NOV.replace(day=30))
    assert (kpi["hazards_found"], kpi["supervised"], kpi["county_reported"]) == (4, 3, 2)
    assert (kpi["rectification_rate"], kpi["overdue"]) == (0.5, 2)
    assert kpi["hazards_by_grade"]["major"] == {
        "found": 2, "rectified": 1, "rectification_rate": 0.5, "overdue": 1, "supervised": 2}
