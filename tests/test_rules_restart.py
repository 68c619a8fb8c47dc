"""Rules after a restart: open alarms with no saved rule state, and readings delivered again.

A hub killed before its periodic rule-state save (``HUB_RULE_STATE_SAVE_S``), a first start
after an upgrade or a lost state file leaves open alarms the rule state does not know; at-least
once delivery brings the unacknowledged readings again after the restart. Both on SQLite and
PostgreSQL (``state_url``), with the notification planner attached: a round of steps that
starts again at step 1 is a duplicate alarm for the people on duty.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.alarms.service import AlarmService
from hub.db import make_engine
from hub.model import FieldValue, Reading
from hub.notify.config import parse_config
from hub.notify.outbox import STEP, OutboxRow
from hub.notify.service import NotifyService
from hub.rules.engine import RuleEngine
from hub.rules.store import RuleStateStore
from hub.sites import SiteRegistry
from tests.test_rules_engine import INTERVALS, SITE, T0, Clock, S

SITES = SiteRegistry([SITE])
NOTIFY = {
    "channels": [{"id": "duty", "type": "wecom", "url": "http://127.0.0.1:9/robot"}],
    "policies": [{"match": {"site": "ltp"}, "steps": [{"after_s": 0, "channels": ["duty"]}]}],
}
NEVER_S = 10**6  # no periodic rule-state save in these tests: only an explicit save() writes


class Rig:
    """One hub's alarm service, notification planner and rules engine on a state store."""

    def __init__(self, url: str, clock: Clock) -> None:
        self.db = make_engine(url)
        self.clock = clock
        self.alarms = AlarmService(self.db, clock=clock, sites=SITES, flush_interval_s=0)
        self.notify = NotifyService(parse_config(NOTIFY, env={}), self.db, SITES, clock=clock,
                                    console_url="http://duty.example")
        self.notify.attach(self.alarms)  # plans rows in the alarm transaction; sends nothing
        self.rules = RuleEngine(self.alarms, sites=SITES, report_intervals=INTERVALS,
                                state_store=RuleStateStore(self.db), clock=clock,
                                background_save=False, save_interval_s=NEVER_S)

    def light(self, t: int, device: str = "L1", message: str = "telemetry",
              online: bool | None = None, **values: FieldValue) -> None:
        self.clock.now = max(self.clock.now, t + S // 10)
        self.rules.on_reading(Reading(device, "XS-FL200", "flashing_light", "ltp", message, t,
                                      t + S // 10, (), dict(values), online=online))

    def tick(self, t: int) -> None:
        self.clock.now = max(self.clock.now, t)
        self.rules.on_tick(self.clock.now)
        self.alarms.flush(force=True)

    def kill(self) -> None:
        """Stop as a SIGKILL would: alarms are durable, the rule state is not saved."""
        self.alarms.flush(force=True)
        self.alarms.close()
        self.db.dispose()

    def alarm(self, rule: str, device: str = "L1") -> dict[str, Any]:
        found = self.alarms.list(rule=rule, device_id=device)[0]
        assert len(found) == 1, found
        return found[0]

    def history(self, alarm_id: str) -> list[str]:
        return [h["action"] for h in self.alarms.get(alarm_id)["history"]]

    def rounds(self, alarm_id: str) -> int:
        """How many rounds of notification steps the alarm started (1 per raise or reopen)."""
        with Session(self.db) as session:  # cancelled rows too: a clear cancels pending ones
            return len(set(session.execute(select(OutboxRow.round).where(
                OutboxRow.alarm_id == alarm_id, OutboxRow.kind == STEP)).scalars()))


def test_open_alarms_without_saved_rule_state_continue_while_they_hold(state_url: str) -> None:
    clock = Clock()
    first = Rig(state_url, clock)
    first.light(T0, tilt_deg=40.0, battery_v=11.3, lamp="fail")
    first.light(T0 + 20 * S, device="L2", tilt_deg=1.0)
    first.light(T0 + 700 * S, tilt_deg=40.0, battery_v=11.3, lamp="fail")  # warning: 10 min
    first.tick(T0 + 701 * S)  # L2 silent for more than 3 report intervals: offline
    before = {(rule, device): first.alarm(rule, device)["id"] for rule, device in (
        ("knocked_over", "L1"), ("battery_low", "L1"), ("lamp_fault", "L1"),
        ("offline", "L2"))}
    assert RuleStateStore(first.db).load_all() == []  # killed before the first save
    first.kill()

    second = Rig(state_url, clock)
    second.tick(T0 + 705 * S)  # a tick knows nothing about the conditions: nothing clears
    # still held, inside the hysteresis bands (tilt clears below 12, battery above 11.8),
    # and a status reading that says nothing about the lamp
    second.light(T0 + 760 * S, tilt_deg=13.0, battery_v=11.6)
    second.light(T0 + 770 * S, message="status", online=True)
    second.tick(T0 + 771 * S)
    for (rule, device), alarm_id in before.items():
        if rule == "offline":
            continue
        alarm = second.alarm(rule, device)
        assert (alarm["id"], alarm["state"]) == (alarm_id, "active_unack"), rule
        assert second.history(alarm_id) == ["raise"], rule
        assert second.rounds(alarm_id) == 1, rule
    offline = second.alarm("offline", "L2")
    assert (offline["id"], offline["state"]) == (before[("offline", "L2")], "active_unack")

    # the conditions no longer hold: each clears as its rule says, the same alarm
    second.light(T0 + 800 * S, tilt_deg=11.0, battery_v=11.9, lamp="ok")
    second.light(T0 + 800 * S, device="L2", tilt_deg=1.0)  # reports again: online
    second.tick(T0 + 801 * S)
    for (rule, device), alarm_id in before.items():
        alarm = second.alarm(rule, device)
        assert (alarm["id"], alarm["state"]) == (alarm_id, "cleared_unack"), rule
        assert second.history(alarm_id) == ["raise", "clear"], rule
        assert second.rounds(alarm_id) == 1, rule
    second.kill()


def test_a_held_duration_is_served_after_a_restart_and_de_escalates(state_url: str) -> None:
    clock = Clock()
    first = Rig(state_url, clock)
    first.light(T0, battery_v=10.5)  # major at once
    first.tick(T0 + S)
    alarm_id = first.alarm("battery_low")["id"]
    first.kill()

    second = Rig(state_url, clock)
    # the warning level's 10 minutes count as served under the major level before the restart
    second.light(T0 + 60 * S, battery_v=11.3)
    second.tick(T0 + 61 * S)
    alarm = second.alarm("battery_low")
    assert (alarm["id"], alarm["state"], alarm["severity"]) == (
        alarm_id, "active_unack", "warning")
    assert second.rounds(alarm_id) == 1
    second.kill()


def test_readings_delivered_again_after_a_restart_change_nothing(state_url: str) -> None:
    clock = Clock()
    first = Rig(state_url, clock)
    first.light(T0, tilt_deg=40.0)
    assert first.rules.save() == 1  # the last periodic save
    first.light(T0 + 30 * S, tilt_deg=41.0)
    first.light(T0 + 60 * S, tilt_deg=1.0)  # cleared; killed before the next save and the ack
    first.tick(T0 + 61 * S)
    alarm_id = first.alarm("knocked_over")["id"]
    first.kill()

    second = Rig(state_url, clock)
    # the readings after the save are delivered again, in order
    second.light(T0 + 30 * S, tilt_deg=41.0)
    second.light(T0 + 60 * S, tilt_deg=1.0)
    second.tick(T0 + 62 * S)
    alarm = second.alarm("knocked_over")
    assert (alarm["id"], alarm["state"], alarm["count"]) == (alarm_id, "cleared_unack", 2)
    assert second.history(alarm_id) == ["raise", "clear"]
    assert second.rounds(alarm_id) == 1
    second.kill()


def test_older_readings_after_a_restart_keep_a_duration_and_an_alarm(state_url: str) -> None:
    clock = Clock()
    first = Rig(state_url, clock)
    first.light(T0, battery_v=11.3, tilt_deg=40.0)
    first.light(T0 + 300 * S, battery_v=11.3, tilt_deg=40.0)
    first.rules.stop()  # saved
    first.kill()

    second = Rig(state_url, clock)
    second.light(T0 + 200 * S, battery_v=11.9, tilt_deg=1.0)  # older than the state
    second.light(T0 + 600 * S, battery_v=11.3, tilt_deg=40.0)
    second.tick(T0 + 601 * S)
    assert second.alarm("battery_low")["severity"] == "warning"  # 10 minutes since T0
    knocked = second.alarm("knocked_over")
    assert knocked["state"] == "active_unack"
    assert second.history(knocked["id"]) == ["raise"]
    second.kill()


@pytest.mark.parametrize("acked", [False, True])  # acknowledged: closed by the clear
def test_delivered_again_reading_does_not_reopen_a_cleared_alarm(state_url: str,
                                                                 acked: bool) -> None:
    clock = Clock()
    first = Rig(state_url, clock)
    first.light(T0, tilt_deg=40.0)
    first.rules.save()
    alarm_id = first.alarm("knocked_over")["id"]
    if acked:
        first.alarms.ack(alarm_id, "zhang")
    first.light(T0 + 60 * S, tilt_deg=1.0)
    first.tick(T0 + 61 * S)
    first.kill()

    second = Rig(state_url, clock)
    second.light(T0 + 30 * S, tilt_deg=40.0)  # before the clear, after the saved state
    second.tick(T0 + 62 * S)
    found = second.alarms.list(rule="knocked_over")[0]
    assert [(a["id"], a["state"]) for a in found] == [
        (alarm_id, "cleared_ack" if acked else "cleared_unack")]
    assert second.rounds(alarm_id) == 1
    second.kill()
