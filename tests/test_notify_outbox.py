"""The outbox and dispatcher with a real alarm service, on SQLite and PostgreSQL (``state_url``).

The FAKE robots (tests/support/fake_robots.py) check signatures and limits; small ``after_s``
and ``repeat_s`` values keep the escalation fast; every wait polls state with a deadline.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.alarms.service import AlarmService
from hub.alarms.store import AlarmRow
from hub.db import make_engine
from hub.notify.config import Match, parse_config
from hub.notify.outbox import OutboxRow
from hub.notify.service import NotifyService
from hub.settings import PACKAGE_ROOT
from hub.sites import load_sites
from tests.support.fake_robots import FakeRobots, Robot
from tests.support.polling import wait

SITES = load_sites(PACKAGE_ROOT / "sites")
SECRET = "SECtest"


@pytest.fixture
def sqlite_url(tmp_path: Any) -> str:
    """For tests of the dispatcher's logic, not of a state-store path (those use state_url)."""
    return f"sqlite:///{tmp_path / 'state.sqlite'}"


class Rig:
    """An alarm service with notifications, on one state store, sending to the fakes."""

    def __init__(self, url: str, config: dict[str, Any], owner: str = "") -> None:
        self.engine = make_engine(url)
        self.alarms = AlarmService(self.engine, sites=SITES, flush_interval_s=0.05)
        self.notify = NotifyService(parse_config(config, env={}), self.engine, SITES,
                                    clock=time.time_ns, console_url="http://duty.example",
                                    poll_s=0.05, owner=owner)
        self.notify.attach(self.alarms)
        self.notify.start()

    def raise_(self, device: str = "GY-FL-0001", rule: str = "knocked_over",
               severity: str = "critical", flush: bool = True) -> str:
        alarm_id = self.alarms.raise_or_update(
            device, "guoyuan", "flashing_light", rule, severity, 80.0, "light knocked over",
            "灯具倾倒", time.time_ns())
        if flush:
            self.alarms.flush(force=True)
        return alarm_id

    def notifications(self, alarm_id: str) -> list[dict[str, Any]]:
        return self.notify.notifications(alarm_id)

    def close(self) -> None:
        self.notify.close()
        self.alarms.close()
        self.engine.dispose()


def config(fake: FakeRobots, **policy: Any) -> tuple[dict[str, Any], Robot, Robot]:
    duty, duty_url = fake.dingtalk("gy-duty", SECRET)
    leader, leader_url = fake.wecom("gy-leader")
    data = {
        "channels": [
            {"id": "gy-duty", "type": "dingtalk", "url": duty_url, "secret": SECRET,
             "backoff_s": 0.1, "rate_limited_wait_s": 0.3},
            {"id": "gy-leader", "type": "wecom", "url": leader_url}],
        "people": [{"id": "zhang", "name": "张伟", "mobile": "13800000001"},
                   {"id": "chen", "name": "陈主任", "mobile": "13800000003"}],
        "rosters": [{"site": "guoyuan", "leaders": ["chen"],
                     "shifts": [{"start": "00:00", "end": "24:00", "people": ["zhang"]}]}],
        "policies": [{"match": {"site": "guoyuan", "severity": ["critical", "major"]},
                      "steps": [{"after_s": 0, "channels": ["gy-duty"], "mention": "on_duty"},
                                {"after_s": 0.8, "channels": ["gy-leader"],
                                 "mention": ["leaders"]}],
                      **policy},
                     {"match": {"site": "guoyuan"},
                      "steps": [{"after_s": 0, "channels": ["gy-leader"]}]}],
    }
    return data, duty, leader


def texts(robot: Robot) -> list[str]:
    return [m["text"] for m in robot.messages]


def test_outbox_rows_are_written_in_the_alarm_transaction(state_url: str,
                                                          fake: FakeRobots) -> None:
    data, duty, _ = config(fake)
    rig = Rig(state_url, data)
    try:
        # The planned notification wakes the alarm writer at once; holding its write lock keeps
        # it (and so the transaction) waiting while the test looks.
        with rig.alarms._write_lock:
            alarm_id = rig.raise_(flush=False)
            with Session(rig.engine) as session:
                assert session.get(AlarmRow, alarm_id) is None
                assert session.execute(select(func.count()).select_from(OutboxRow)).scalar() == 0
        rig.alarms.flush(force=True)
        with Session(rig.engine) as session:
            assert session.get(AlarmRow, alarm_id) is not None
            rows = session.execute(select(OutboxRow.step, OutboxRow.channel)
                                   .where(OutboxRow.alarm_id == alarm_id)
                                   .order_by(OutboxRow.id)).all()
        assert [tuple(r) for r in rows] == [(1, "gy-duty"), (2, "gy-leader")]
        wait(lambda: duty.messages, what="step 1")
        payload = duty.messages[0]["payload"]
        assert payload["at"]["atMobiles"] == ["13800000001"]  # on duty, from the roster
        assert f"http://duty.example/alarms/{alarm_id}" in payload["markdown"]["text"]
    finally:
        rig.close()


def test_step_two_after_its_delay_and_not_for_an_acked_alarm(state_url: str,
                                                              fake: FakeRobots) -> None:
    data, duty, leader = config(fake)
    # step 2 three seconds after the raise: the ack below comes well before it, however slow
    # the machine is in sending step 1
    data["policies"][0]["steps"][1]["after_s"] = 3.0
    rig = Rig(state_url, data)
    try:
        acked = rig.raise_("GY-FL-0001")
        left = rig.raise_("GY-FL-0002")
        started = time.monotonic()
        wait(lambda: len(duty.messages) >= 1 and all(
            n["status"] == "sent" for a in (acked, left)
            for n in rig.notifications(a) if n["step"] == 1), what="step 1 of both")
        rig.alarms.ack(acked, "zhang")
        assert time.monotonic() - started < 3.0, "the ack came after step 2 was due"
        wait(lambda: any(n["step"] == 2 and n["status"] == "sent"
                         for n in rig.notifications(left)), what="step 2")
        assert time.monotonic() - started >= 2.9  # after_s 3 from the raise
        assert not any(f"/alarms/{acked}" in t for t in texts(leader))
        assert any(f"/alarms/{left}" in t for t in texts(leader))
        assert "13800000003" in str(leader.messages[-1]["payload"])  # the leader mentioned
        shown = rig.notifications(acked)
        assert [(n["step"], n["channel"], n["status"]) for n in shown] == [
            (1, "gy-duty", "sent")]
        assert set(shown[0]) >= {"step", "channel", "status", "at", "error"}
    finally:
        rig.close()


def test_reminders_repeat_until_acknowledged(state_url: str, fake: FakeRobots) -> None:
    data, _, leader = config(fake, repeat_s=0.3, max_repeats=5)
    rig = Rig(state_url, data)
    try:
        alarm_id = rig.raise_()
        wait(lambda: sum("提醒" in t for t in texts(leader)) >= 2, what="two reminders")
        rig.alarms.ack(alarm_id, "zhang")
        wait(rig.notify.dispatcher.idle, what="requests in flight at the ack")
        reminders = [n for n in rig.notifications(alarm_id) if n["kind"] == "reminder"]
        sent = [n for n in reminders if n["status"] == "sent"]
        assert len(sent) >= 2 and [n["seq"] for n in sent] == list(range(1, len(sent) + 1))
        count = sum("提醒" in t for t in texts(leader))
        time.sleep(1.0)  # three reminder periods: none may come after the ack
        assert sum("提醒" in t for t in texts(leader)) == count
    finally:
        rig.close()


def test_silenced_alarm_is_stored_and_its_notifications_suppressed(state_url: str,
                                                                   fake: FakeRobots) -> None:
    data, duty, leader = config(fake)
    rig = Rig(state_url, data)
    try:
        now = time.time_ns()
        rig.notify.silences.create(Match(device_id="GY-FL-0003"), now, now + 3600 * 10**9,
                                   "repair crew on site, 2 h", "zhang", now)
        silenced = rig.raise_("GY-FL-0003")
        loud = rig.raise_("GY-FL-0004")
        wait(lambda: any(f"/alarms/{loud}" in t for t in texts(duty)), what="the loud one")
        statuses = {n["status"] for n in rig.notifications(silenced)}
        assert statuses == {"suppressed"}
        assert rig.alarms.get(silenced)["state"] == "active_unack"  # raised and stored
        assert rig.notify.is_silenced({"id": silenced, **rig.alarms.get(silenced)})
        assert not any(f"/alarms/{silenced}" in t for t in texts(duty) + texts(leader))
    finally:
        rig.close()


def test_rate_limit_answer_is_retried_and_delivered(state_url: str, fake: FakeRobots) -> None:
    data, duty, _ = config(fake)
    duty.answers.append((200, {"errcode": 130101,
                               "errmsg": "send too fast, exceed 20 times per minute"}))
    rig = Rig(state_url, data)
    try:
        alarm_id = rig.raise_()
        wait(lambda: duty.messages, what="delivery after the retry")
        step1 = next(n for n in rig.notifications(alarm_id) if n["step"] == 1)
        assert step1["status"] == "sent" and step1["attempts"] == 2
        assert len(duty.messages) == 1
    finally:
        rig.close()


def test_bad_signature_is_a_configuration_error_not_retried(sqlite_url: str,
                                                            fake: FakeRobots) -> None:
    data, duty, _ = config(fake)
    data["channels"][0]["secret"] = "SECwrong"
    rig = Rig(sqlite_url, data)
    try:
        alarm_id = rig.raise_()
        step1 = wait(lambda: [n for n in rig.notifications(alarm_id)
                              if n["step"] == 1 and n["status"] == "failed"], what="failure")
        assert step1[0]["error"] == "configuration error: errcode 310000: sign not match"
        assert step1[0]["attempts"] == 1
        health = rig.notify.health()
        assert health["status"] == "degraded"
        assert health["channels"]["gy-duty"]["state"] == "config_error"
        assert not duty.messages
    finally:
        rig.close()


def test_storm_of_forty_alarms_all_delivered_under_the_robot_limit(sqlite_url: str,
                                                                   fake: FakeRobots) -> None:
    data, duty, _ = config(fake)
    data["policies"][0]["steps"] = data["policies"][0]["steps"][:1]
    rig = Rig(sqlite_url, data)
    try:
        ids = []
        started = time.time()
        for wave in range(8):  # five lights a wave, a wave every 0.3 s
            ids += [rig.raise_(f"GY-FL-{wave * 5 + i + 1:04d}") for i in range(5)]
            time.sleep(0.3)
        first_at = wait(lambda: duty.messages and duty.messages[0]["at"], what="first")
        wait(lambda: all(any(f"/alarms/{a}" in t for t in texts(duty)) for a in ids),
             timeout=30, what="every alarm in some message")
        assert duty.violations == 0 and duty.max_in_window(60) <= 20
        assert len(duty.messages) < 40  # grouped
        assert first_at - started < 5.0  # the first of a quiet period is not held back
        for alarm_id in ids:
            assert [n["status"] for n in rig.notifications(alarm_id)] == ["sent"]
    finally:
        rig.close()


def test_escalation_reevaluates_the_policy_and_clear_notice(state_url: str,
                                                            fake: FakeRobots) -> None:
    data, duty, leader = config(fake, notify_clear=True)
    rig = Rig(state_url, data)
    try:
        alarm_id = rig.raise_(rule="battery_low", severity="warning")
        wait(lambda: any(f"/alarms/{alarm_id}" in t for t in texts(leader)), what="warning")
        assert not duty.messages
        rig.raise_(rule="battery_low", severity="critical")  # the same alarm, worse
        wait(lambda: any(f"/alarms/{alarm_id}" in t for t in texts(duty)), what="escalated")
        rounds = {n["round"] for n in rig.notifications(alarm_id)}
        assert rounds == {0, 1}
        rig.alarms.clear(alarm_id, "zhang")
        wait(lambda: any("已恢复" in t for t in texts(duty)), what="clear notice")
    finally:
        rig.close()


def test_restart_sends_the_next_step_once_and_the_earlier_not_again(state_url: str,
                                                                     fake: FakeRobots) -> None:
    data, duty, leader = config(fake)
    data["policies"][0]["steps"][1]["after_s"] = 1.5
    rig = Rig(state_url, data)
    alarm_id = rig.raise_()
    wait(lambda: duty.messages, what="step 1")
    rig.notify.close()  # the dispatcher dies before step 2 is due
    rig.alarms.close()
    rig.engine.dispose()
    again = Rig(state_url, data)
    try:
        wait(lambda: leader.messages, what="step 2 after the restart")
        time.sleep(0.5)
        assert len(duty.messages) == 1 and len(leader.messages) == 1
        assert [n["status"] for n in again.notifications(alarm_id)] == ["sent", "sent"]
    finally:
        again.close()


def test_silence_ends_by_itself(state_url: str, fake: FakeRobots) -> None:
    data, duty, _ = config(fake)
    rig = Rig(state_url, data)
    try:
        now = time.time_ns()
        silence = rig.notify.silences.create(Match(site="guoyuan"), now, now + 700_000_000,
                                             "short window", "zhang", now)
        quiet = rig.raise_("GY-FL-0005")
        wait(lambda: rig.notifications(quiet) and {
            n["status"] for n in rig.notifications(quiet)} == {"suppressed"}, what="suppressed")
        wait(lambda: rig.notify.silences.matching({"site": "guoyuan"}, time.time_ns()) is None,
             what="the silence to end")
        assert silence.to_json(time.time_ns())["state"] == "expired"
        loud = rig.raise_("GY-FL-0006")
        wait(lambda: any(f"/alarms/{loud}" in t for t in texts(duty)), what="after the end")
        assert [s.id for s in rig.notify.silences.list(now_ns=time.time_ns())] == []
        assert [s.id for s in rig.notify.silences.list(now_ns=time.time_ns(),
                                                       include_ended=True)] == [silence.id]
    finally:
        rig.close()


def test_send_budget_bursts_then_spaces_and_keeps_per_second_limits() -> None:
    from hub.notify.config import Rate
    from hub.notify.ratelimit import SendBudget

    second = 10**9
    ding = SendBudget(Rate(per_minute=20))
    t = 1_000 * second
    for _ in range(5):  # a quarter of the minute's budget at once
        assert ding.wait_ns(t) == 0
        ding.record(t)
    assert ding.wait_ns(t) == 3 * second  # then one every 60/20 s
    sent = 5
    while t < 1_060 * second:
        t += ding.wait_ns(t)
        if t >= 1_060 * second:
            break
        ding.record(t)
        sent += 1
    assert sent <= 20
    feishu = SendBudget(Rate(per_minute=100, per_second=5))
    for _ in range(5):
        feishu.record(t)
    assert 0 < feishu.wait_ns(t) <= second
    paused = SendBudget(Rate(per_minute=20))
    paused.pause(t + 60 * second)
    assert paused.wait_ns(t) == 60 * second


def test_webhook_reminders_each_have_their_own_delivery_id(sqlite_url: str,
                                                           fake: FakeRobots) -> None:
    hook, url = fake.webhook("ops", "whsecret")  # refuses a delivery id it has seen (409)
    data = {"channels": [{"id": "ops", "type": "webhook", "url": url, "secret": "whsecret"}],
            "policies": [{"steps": [{"channels": ["ops"]}], "repeat_s": 0.3, "max_repeats": 3}]}
    rig = Rig(sqlite_url, data)
    try:
        alarm_id = rig.raise_()
        wait(lambda: len(hook.messages) >= 3, what="the step and two reminders")
        kinds = [m["payload"]["kind"] for m in hook.messages[:3]]
        assert kinds == ["step", "reminder", "reminder"]
        assert not [n for n in rig.notifications(alarm_id) if n["status"] == "failed"]
    finally:
        rig.close()


def test_hubs_sharing_a_state_store_each_send_their_own_rows(state_url: str,
                                                            fake: FakeRobots) -> None:
    data, duty, _ = config(fake)
    first = Rig(state_url, data, owner="hub-a")
    second = Rig(state_url, data, owner="hub-b")
    try:
        alarm_id = first.raise_()
        wait(lambda: [n["status"] for n in first.notifications(alarm_id)][:1] == ["sent"],
             what="hub-a sends its step 1")
        wait(first.notify.dispatcher.idle, what="idle")
        second.notify.dispatcher.poll()  # hub-b finds nothing of its own to send
        wait(second.notify.dispatcher.idle, what="idle")
        assert len(duty.messages) == 1
    finally:
        second.close()
        first.close()


def test_cluster_rows_follow_their_partition_to_its_next_owner(state_url: str,
                                                              fake: FakeRobots) -> None:
    """Cluster mode's wiring: a row's owner is its device's partition, and a hub sends the rows
    of the partitions it owns now; a dead owner's pending step 2 is sent once, by the next."""
    data, duty, leader = config(fake)
    first, second = Rig(state_url, data), Rig(state_url, data)
    owned: dict[Rig, list[str]] = {first: ["p3"], second: []}
    for rig in (first, second):
        rig.notify.owner_for = lambda key: "p3" if key == "GY-FL-0001" else "p0"
        rig.notify.outbox.serving = lambda rig=rig: list(owned[rig])
    try:
        alarm_id = first.raise_("GY-FL-0001")
        wait(lambda: len(duty.messages) == 1, what="step 1 from the owner")
        first.close()  # the owner dies before step 2 is due; its partition moves
        owned[first], owned[second] = [], ["p3"]
        wait(lambda: len(leader.messages) == 1, what="step 2 from the next owner")
        wait(second.notify.dispatcher.idle, what="idle")
        assert len(duty.messages) == 1 and len(leader.messages) == 1
        with Session(second.engine) as session:
            owners = set(session.scalars(select(OutboxRow.owner)
                                         .where(OutboxRow.alarm_id == alarm_id)))
        assert owners == {"p3"}
    finally:
        second.close()
