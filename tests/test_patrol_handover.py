"""Patrol round progress handed over with a partition (cluster mode), SQLite and PostgreSQL.

Two patrol services on one state store stand for two hubs; the test plays the handover
(hub.cluster.handover calls ``release`` on the old owner, ``adopt`` on the new one before the
partition's first message). A round started on one hub is finished on the other.
"""

from __future__ import annotations

from pathlib import Path

from tests.test_patrol_tracker import RT01, Rig, t


class Hub(Rig):
    """A Rig on a given state store, owning the devices ``owned`` holds."""

    def __init__(self, tmp: Path, url: str, owned: set[str]) -> None:
        self.owned = owned
        super().__init__(tmp)
        self.url = url
        self.engine.dispose()
        self.open()
        self.patrol.tracker.owns = lambda device: device in self.owned


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
