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
