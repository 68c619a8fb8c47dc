"""Cluster mode's alarm rows: an officer on a hub that does not hold the alarm, the owner's
repeats and rule clears, no lost update either way (hub.alarms.merge), SQLite and PostgreSQL.

Two AlarmService instances on one state store stand for two hubs: ``owner`` holds the device's
alarms (its rules raise and clear them), ``other`` holds none. What hub.cluster.alarmsync
carries over NATS (the id of a changed alarm) is handed over by hand, or held back to show
that the owner's next write finds the newer row anyway.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from hub.alarms.service import AlarmService
from hub.db import make_engine

S = 1_000_000_000
T0 = 1_795_000_000 * S


class Hubs:
    """The owner of device L1 and another hub, sharing one database."""

    def __init__(self, url: str) -> None:
        self.engines = [make_engine(url), make_engine(url)]
        self.owner = AlarmService(self.engines[0], flush_interval_s=3600)
        self.other = AlarmService(self.engines[1], flush_interval_s=3600)
        self.told: list[str] = []
        for svc, node, holds in ((self.owner, "hub-a", True), (self.other, "hub-b", False)):
            svc.shared = True
            svc.owns = (lambda held: lambda _device: held)(holds)
            svc.store.node = node
            svc.announce = lambda alarm: self.told.append(alarm.id)

    def breach(self, at_s: int, tilt: float = 20.0) -> str:
        """The owner's rule sees the light tilted (raise, or a repeat)."""
        return self.owner.raise_or_update(
            "L1", "ltp", "flashing_light", "knocked_over", "critical", tilt, "tilted", "倾倒",
            T0 + at_s * S)

    def deliver(self) -> None:
        """What NATS would carry: the owner merges every announced alarm."""
        for alarm_id in self.told:
            self.owner.sync(alarm_id)
        self.told.clear()

    def stored(self, alarm_id: str) -> dict[str, Any]:
        """The row as any hub's API reads it."""
        found = self.other.store.get(alarm_id)
        assert found is not None
        return found.to_json()

    def close(self) -> None:
        """Stop both services."""
        for svc in (self.owner, self.other):
            svc.close()
        for engine in self.engines:
            engine.dispose()


@pytest.fixture
def hubs(state_url: str) -> Iterator[Hubs]:
    pair = Hubs(state_url)
    try:
        yield pair
    finally:
        pair.close()


@pytest.mark.parametrize("told", [True, False], ids=["announced", "not-announced"])
def test_ack_elsewhere_survives_repeats_and_the_rule_clear(hubs: Hubs, told: bool) -> None:
    alarm_id = hubs.breach(0)
    hubs.owner.flush(force=True)
    for i in range(1, 6):
        hubs.breach(i)  # repeats in the owner's memory, not written yet
    acked = hubs.other.ack(alarm_id, "ops")
    assert acked["state"] == "active_ack" and hubs.told == [alarm_id]
    if told:
        hubs.deliver()
        assert hubs.owner.peek(alarm_id)["state"] == "active_ack"  # type: ignore[index]
    for i in range(6, 30):
        hubs.breach(i)
    hubs.owner.flush(force=True)  # on main this wrote active_unack back
    row = hubs.stored(alarm_id)
    assert row["state"] == "active_ack" and row["acked_by"] == "ops"
    assert row["count"] == 30  # and the owner's repeats are not lost either
    assert hubs.owner.auto_clear("L1", "knocked_over", T0 + 40 * S) == alarm_id
    hubs.owner.flush(force=True)
    row = hubs.stored(alarm_id)
    assert row["state"] == "cleared_ack" and row["cleared_by"] == "system"
    assert hubs.owner.peek(alarm_id) is None  # closed: the next breach is a new alarm
    assert hubs.breach(50) != alarm_id
    history = hubs.owner.get(alarm_id)["history"]
    assert [(h["action"], h["actor"], h["hub"], h["to_state"]) for h in history] == [
        ("raise", "system", "hub-a", "active_unack"),
        ("ack", "ops", "hub-b", "active_ack"),
        ("clear", "system", "hub-a", "cleared_ack")]


def test_clear_and_assign_elsewhere_stick(hubs: Hubs) -> None:
    alarm_id = hubs.breach(0)
    hubs.owner.flush(force=True)
    hubs.other.assign(alarm_id, "ops", "li")
    hubs.deliver()
    hubs.breach(1)
    hubs.owner.flush(force=True)
    assert hubs.stored(alarm_id)["assignee"] == "li"
    hubs.other.clear(alarm_id, "ops", "checked on site")
    # not delivered: the owner's next write finds the newer row and merges it
    hubs.breach(2)  # reopens? no: the owner still thinks it active, a repeat
    hubs.owner.flush(force=True)
    row = hubs.stored(alarm_id)
    assert row["state"] == "cleared_unack" and row["cleared_by"] == "ops"
    assert row["assignee"] == "li" and row["count"] == 3
    # the condition clears: nothing to do for the rule, the officer's clear stands
    assert hubs.owner.auto_clear("L1", "knocked_over", T0 + 10 * S) is None
    hubs.owner.flush(force=True)
    assert hubs.stored(alarm_id)["cleared_by"] == "ops"
    hubs.other.ack(alarm_id, "ops")
    hubs.deliver()
    assert hubs.stored(alarm_id)["state"] == "cleared_ack"
    assert hubs.owner.peek(alarm_id) is None


def test_rule_clear_racing_an_ack_elsewhere_ends_cleared_and_acked(hubs: Hubs) -> None:
    alarm_id = hubs.breach(0)
    hubs.owner.flush(force=True)
    hubs.owner.auto_clear("L1", "knocked_over", T0 + 5 * S)  # in memory, not written yet
    hubs.other.ack(alarm_id, "ops")  # read the stored row: still active_unack there
    hubs.owner.flush(force=True)
    row = hubs.stored(alarm_id)
    assert row["state"] == "cleared_ack" and row["acked_by"] == "ops"
    assert row["cleared_by"] == "system"
    assert hubs.owner.peek(alarm_id) is None


def test_escalation_after_an_ack_elsewhere_asks_for_a_new_ack(hubs: Hubs) -> None:
    alarm_id = hubs.owner.raise_or_update(
        "L1", "ltp", "flashing_light", "battery_low", "minor", 11.2, "low", "低", T0)
    hubs.owner.flush(force=True)
    hubs.other.ack(alarm_id, "ops")
    hubs.deliver()
    hubs.owner.raise_or_update(
        "L1", "ltp", "flashing_light", "battery_low", "critical", 10.1, "low", "低", T0 + S)
    hubs.owner.flush(force=True)
    row = hubs.stored(alarm_id)
    assert row["state"] == "active_unack" and row["severity"] == "critical"


def test_reminders_stop_on_an_ack_made_on_another_hub(state_url: str) -> None:
    from tests.support.fake_robots import FakeRobots
    from tests.test_notify_outbox import Rig, config, texts, wait

    fake = FakeRobots()
    data, _, leader = config(fake, repeat_s=0.3, max_repeats=20)
    owner, other = Rig(state_url, data, owner="hub-a"), Rig(state_url, data, owner="hub-b")
    try:
        for rig, holds in ((owner, True), (other, False)):
            rig.alarms.shared = True
            rig.alarms.owns = (lambda held: lambda _device: held)(holds)
        other.alarms.announce = lambda alarm: owner.alarms.sync(alarm.id)
        alarm_id = owner.raise_()
        wait(lambda: sum("提醒" in t for t in texts(leader)) >= 2, what="two reminders")
        other.alarms.ack(alarm_id, "zhang")
        assert owner.alarms.peek(alarm_id)["state"] == "active_ack"  # type: ignore[index]
        wait(owner.notify.dispatcher.idle, what="requests in flight at the ack")
        count = sum("提醒" in t for t in texts(leader))
        time.sleep(1.0)  # three reminder periods: none may come after the ack
        assert sum("提醒" in t for t in texts(leader)) == count
        owner.alarms.flush(force=True)
        assert owner.alarms.store.get(alarm_id).state == "active_ack"  # type: ignore[union-attr]
    finally:
        owner.close()
        other.close()
        fake.close()


def test_an_ack_while_the_partition_moves_is_not_lost(hubs: Hubs) -> None:
    alarm_id = hubs.breach(0)
    hubs.owner.flush(force=True)
    hubs.breach(1)  # the owner's repeat, not written yet
    hubs.other.ack(alarm_id, "ops")  # its word to the owner is lost
    hubs.owner.forget_devices(lambda _device: False)  # the owner releases the partition
    adopted = hubs.other.reload_devices(lambda device: device == "L1")  # the next owner
    assert [a[3] for a in adopted] == ["knocked_over"]
    row = hubs.stored(alarm_id)
    assert row["state"] == "active_ack" and row["count"] == 2, row


def test_the_owners_get_by_id_shows_an_action_made_elsewhere_at_once(hubs: Hubs) -> None:
    """GET /api/alarms/<id> on the owner (memory) after an action on another hub whose word
    has not arrived: the stored newer version is merged first, and the owner's own repeats
    not yet written are kept."""
    alarm_id = hubs.breach(0)
    hubs.owner.flush(force=True)
    hubs.other.assign(alarm_id, "ops", "li")
    hubs.other.ack(alarm_id, "ops")  # neither word delivered
    shown = hubs.owner.get(alarm_id)
    assert shown["state"] == "active_ack" and shown["acked_by"] == "ops", shown
    assert shown["assignee"] == "li", shown
    assert [h["action"] for h in shown["history"]] == ["raise", "assign", "ack"]
    hubs.breach(1)  # a repeat in the owner's memory: the read writes it and still merges
    hubs.other.clear(alarm_id, "ops", "seen upright")
    shown = hubs.owner.get(alarm_id)
    assert shown["state"] == "cleared_ack" and shown["cleared_by"] == "ops", shown
    assert shown["count"] == 2, shown
    assert hubs.owner.peek(alarm_id) is None  # closed by the merge: no longer held
    row = hubs.stored(alarm_id)
    assert row["state"] == "cleared_ack" and row["count"] == 2, row
