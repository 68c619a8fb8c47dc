"""Notifications through the real broker and the running hub (``hub run``) to the FAKE robots.

Breaching readings go in over MQTT; what the fake DingTalk / WeCom / Feishu robots received
comes out. Small ``after_s`` and ``repeat_s`` keep it fast; every wait polls state.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml
from sqlalchemy import create_engine, text

from tests.support.fake_robots import FakeRobots, Robot
from tests.support.golden_cases import XS
from tests.support.hubproc import HubProcess
from tests.support.mqtt_util import publish_many

TOKENS = "ops:officer:t-officer,wall:viewer:t-viewer"
OFFICER = {"Authorization": "Bearer t-officer"}
VIEWER = {"Authorization": "Bearer t-viewer"}
LIGHTS = 43  # 1-2 escalate, 3-42 are the storm, 43 is silenced
ESCALATING = ["ST-FL-0001", "ST-FL-0002"]
STORM = range(3, 43)


def site_file(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    devices = [{"id": f"ST-FL-{i:04d}", "model": "XS-FL200", "community": "hill",
                "name": f"山路 K{i}+100 急弯"} for i in range(1, LIGHTS + 1)]
    (directory / "stormtown.yaml").write_text(yaml.safe_dump({
        "site": "stormtown", "name": "风暴镇", "name_en": "Storm Town",
        "timezone": "Asia/Shanghai",
        "communities": [{"id": "hill", "name": "山上村", "name_en": "Hill village"}],
        "devices": devices}, allow_unicode=True), encoding="utf-8")
    return directory


def notify_file(path: Path, fake: FakeRobots, *, on_duty: str = "zhang",
                step2_after: float = 2.0, repeat_s: float | None = None) -> dict[str, Any]:
    """Lights 1-2 escalate after ``step2_after`` (reminders every ``repeat_s``); the others
    escalate after 600 s (the storm's step 2 never comes during a test)."""
    if ("dingtalk", "st-duty") not in fake.robots:
        fake.dingtalk("st-duty", "SECe2e")
        fake.wecom("st-leader")
        fake.sms("st-akid", "st-aksecret", {"SMS_E2E": ["level", "what", "where"]})
    steps = [{"after_s": 0, "channels": ["st-duty"], "mention": "on_duty"},
             {"after_s": step2_after, "channels": ["st-leader", "st-sms"],
              "mention": "leaders"}]
    escalating: dict[str, Any] = {"match": {"device_id": ESCALATING}, "steps": steps}
    if repeat_s is not None:
        escalating["repeat_s"] = repeat_s
    rest = {"match": {"site": "stormtown", "severity": ["critical", "major"]},
            "steps": [steps[0], {**steps[1], "after_s": 600, "channels": ["st-leader"]}]}
    data = {
        "channels": [
            {"id": "st-duty", "type": "dingtalk", "secret": "${ST_SECRET}",
             "url": f"{fake.base}/robot/send?access_token=st-duty",
             "backoff_s": 0.2, "rate_limited_wait_s": 0.5},
            {"id": "st-sms", "type": "sms", "access_key_id": "st-akid",
             "access_key_secret": "${ST_SMS_SECRET}", "sign_name": "风暴镇应急办",
             "template_code": "SMS_E2E", "endpoint": f"{fake.base}/",
             "template_params": {"level": "severity", "what": "message", "where": "device"}},
            {"id": "st-leader", "type": "wecom",
             "url": f"{fake.base}/cgi-bin/webhook/send?key=st-leader"}],
        "people": [{"id": "zhang", "name": "张伟", "mobile": "13800000001"},
                   {"id": "liu", "name": "刘芳", "mobile": "13800000002"},
                   {"id": "chen", "name": "陈主任", "mobile": "13800000003"}],
        "rosters": [{"site": "stormtown", "leaders": ["chen"],
                     "shifts": [{"start": "00:00", "end": "24:00", "people": [on_duty]}]}],
        "policies": [escalating, rest]}
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return data


class Rig:
    """The hub, the broker and the fake robots."""

    def __init__(self, tmp_path: Path, mosquitto: Any, fake: FakeRobots, **notify: Any) -> None:
        self.fake = fake
        self.mqtt_url = mosquitto.url
        self.file = tmp_path / "notify.yaml"
        notify_file(self.file, fake, **notify)
        self.hub = HubProcess(tmp_path, mqtt_url=mosquitto.url, sites_dir=site_file(
            tmp_path / "sites"), api_tokens=TOKENS, notify_file=self.file,
            notify_poll_s=0.1, console_url="http://duty.example")
        self.hub.settings["ST_SECRET"] = "SECe2e"
        self.hub.settings["ST_SMS_SECRET"] = "st-aksecret"
        self.t = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)

    @property
    def duty(self) -> Robot:
        return self.fake.robots[("dingtalk", "st-duty")]

    @property
    def leader(self) -> Robot:
        return self.fake.robots[("wecom", "st-leader")]

    def light(self, number: int, **changes: Any) -> None:
        self.publish([(number, changes)])

    def publish(self, readings: list[tuple[int, dict[str, Any]]]) -> None:
        self.t += timedelta(seconds=10)
        stamp = int(self.t.timestamp() * 1000)
        publish_many(self.mqtt_url, [(
            f"roadsafety/flashlight/ST-FL-{n:04d}/telemetry",
            json.dumps({**XS, "ts": stamp, **changes}).encode(), 1, False)
            for n, changes in readings])

    def alarm(self, number: int, rule: str = "knocked_over") -> dict[str, Any] | None:
        response = httpx.get(f"{self.hub.api}/api/alarms", headers=VIEWER, timeout=10,
                             params={"device_id": f"ST-FL-{number:04d}", "rule": rule})
        items = response.json()
        if not items:
            return None
        full: dict[str, Any] = httpx.get(f"{self.hub.api}/api/alarms/{items[0]['id']}",
                                         headers=VIEWER, timeout=10).json()
        return full

    def wait(self, check: Callable[[], Any], timeout: float = 20, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = check()
            if result:
                return result
            time.sleep(0.1)
        raise AssertionError(f"timed out: {what}\n{self.hub.log()}")


def rule_state_saved(tmp_path: Path, device_id: str) -> bool:
    """True once the rules engine saved the device's state (else a restart clears its alarm)."""
    engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'hub.sqlite'}")
    try:
        with engine.connect() as connection:
            row = connection.execute(text("SELECT data FROM rule_state WHERE device_id = :d"),
                                     {"d": device_id}).first()
    finally:
        engine.dispose()
    return row is not None and "knocked_over" in row[0]  # the active rule is in it


def mentions(robot: Robot, alarm_id: str) -> list[str]:
    return [m["text"] for m in robot.messages if f"/alarms/{alarm_id}" in m["text"]]


def test_sigkill_between_steps_sends_the_next_step_exactly_once(tmp_path: Path, mosquitto: Any,
                                                               fake: FakeRobots) -> None:
    rig = Rig(tmp_path, mosquitto, fake, step2_after=4.0)
    rig.hub.settings["HUB_RULE_STATE_SAVE_S"] = "0.2"  # the alarm's rule state survives the kill
    rig.hub.start()
    # one breaching reading: the broker may redeliver it after the kill (a repeat, no new round)
    rig.light(1, tilt_deg=85.0)
    alarm = rig.wait(lambda: rig.alarm(1), what="alarm")
    rig.wait(lambda: mentions(rig.duty, alarm["id"]), what="step 1")
    # between the steps: step 1 is marked sent (the window between the platform's answer and
    # that mark is the one place a kill can repeat a message: docs/notifications.md)
    rig.wait(lambda: [n["status"] for n in rig.alarm(1)["notifications"]] == [
        "sent", "pending", "pending"], what="step 1 marked sent")
    rig.wait(lambda: rule_state_saved(tmp_path, "ST-FL-0001"), what="rule state saved")
    rig.hub.kill()
    assert not mentions(rig.leader, alarm["id"])
    rig.hub.start()
    try:
        rig.wait(lambda: mentions(rig.leader, alarm["id"]), what="step 2 after the restart")
        shown = rig.wait(lambda: (a := rig.alarm(1)) and all(
            n["status"] == "sent" for n in a["notifications"]) and a, what="both sent")
        time.sleep(1.0)  # anything repeated would come now
        assert len(mentions(rig.duty, alarm["id"])) == 1
        assert len(mentions(rig.leader, alarm["id"])) == 1
        assert [n["step"] for n in shown["notifications"]] == [1, 2, 2]  # WeCom and SMS
    finally:
        rig.hub.stop()


def test_escalation_storm_silence_and_roster_change(tmp_path: Path, mosquitto: Any,
                                                   fake: FakeRobots) -> None:
    rig = Rig(tmp_path, mosquitto, fake, step2_after=2.0, repeat_s=1.0)
    rig.hub.start()
    try:
        rig.light(1)
        rig.light(2)
        published = time.time()
        rig.light(1, tilt_deg=80.0)  # knocked over: critical
        rig.light(2, tilt_deg=80.0)
        first = rig.wait(lambda: rig.alarm(1), what="alarm 1")
        second = rig.wait(lambda: rig.alarm(2), what="alarm 2")
        rig.wait(lambda: mentions(rig.duty, first["id"]), timeout=5, what="step 1 in 5 s")
        assert rig.duty.messages[0]["at"] - published < 5.0
        assert rig.duty.messages[0]["payload"]["at"]["atMobiles"] == ["13800000001"]
        ack = httpx.post(f"{rig.hub.api}/api/alarms/{second['id']}/ack", headers=OFFICER)
        assert ack.status_code == 200
        rig.wait(lambda: mentions(rig.leader, first["id"]), what="step 2")
        step2_at = next(m["at"] for m in rig.leader.messages
                        if f"/alarms/{first['id']}" in m["text"])
        assert step2_at - published >= 2.0
        rig.wait(lambda: any("提醒" in t for t in mentions(rig.leader, first["id"])),
                 what="a reminder")
        assert not mentions(rig.leader, second["id"])  # acked before its step 2
        shown = rig.alarm(1)
        assert shown is not None
        steps = [(n["step"], n["channel"], n["status"]) for n in shown["notifications"]
                 if n["kind"] == "step"]
        assert steps == [(1, "st-duty", "sent"), (2, "st-leader", "sent"), (2, "st-sms", "sent")]
        texted = rig.fake.robots[("sms", "st-akid")].messages
        assert texted[0]["payload"]["numbers"] == ["13800000003"]  # the leader, by SMS
        assert texted[0]["payload"]["params"]["level"] == "紧急"
        assert shown["silenced"] is False
        acked = rig.alarm(2)
        assert acked is not None
        assert [n["status"] for n in acked["notifications"]] == ["sent"]
        health = rig.hub.health()
        assert health["notify"]["channels"]["st-duty"]["state"] == "ok"
        metrics = httpx.get(f"{rig.hub.api}/metrics", timeout=5).text
        assert 'hub_notify_messages_total{channel="st-duty",outcome="sent"}' in metrics
        assert 'hub_notify_notifications_total{channel="st-leader",status="sent"}' in metrics
        # acknowledged: its reminders stop; on to the storm
        httpx.post(f"{rig.hub.api}/api/alarms/{first['id']}/ack", headers=OFFICER)

        # a silence on light 43 (repair crew on site), made through the API
        ends = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
        made = httpx.post(f"{rig.hub.api}/api/silences", headers=OFFICER, json={
            "match": {"device_id": "ST-FL-0043"}, "ends_at": ends,
            "comment": "repair crew on site, 2 h"})
        assert made.status_code == 201, made.text
        viewer_try = httpx.post(f"{rig.hub.api}/api/silences", headers=VIEWER, json={
            "match": {"device_id": "ST-FL-0043"}, "ends_at": ends, "comment": "x"})
        assert viewer_try.status_code == 403
        for bad, says in ((
            {"match": {"site": "x" * 100}, "ends_at": ends, "comment": "x"}, "64 characters"),
            ({"match": {}, "ends_at": ends, "comment": "x"}, "at least one"),
            ({"match": {"site": "stormtown"}, "comment": "x"}, "ends_at"),
            ({"match": {"site": "stormtown"}, "ends_at": "2020-01-01T00:00:00Z",
              "comment": "x"}, "after")):
            refused = httpx.post(f"{rig.hub.api}/api/silences", headers=OFFICER, json=bad)
            assert refused.status_code == 422 and says in refused.text, refused.text
        listed = httpx.get(f"{rig.hub.api}/api/silences", headers=VIEWER,
                           params={"site": "stormtown"}).json()
        assert [s["id"] for s in listed] == [made.json()["id"]]
        # the first answer is the platform's rate limit: retried and delivered
        rig.duty.answers.append((200, {"errcode": 130101,
                                       "errmsg": "send too fast, exceed 20 times per minute"}))
        lights = [*STORM, 43]
        rig.publish([(n, {}) for n in lights])
        rig.publish([(n, {"tilt_deg": 80.0}) for n in lights])  # a storm: 40 lights and 43
        alarms = rig.wait(lambda: (found := [rig.alarm(n) for n in lights])
                          and all(found) and found, what="41 alarms")
        loud = [a for a in alarms if a["device_id"] != "ST-FL-0043"]
        assert len(loud) == 40
        rig.wait(lambda: all(mentions(rig.duty, a["id"]) for a in loud), timeout=40,
                 what="every alarm in some message")
        assert rig.duty.violations == 0 and rig.duty.max_in_window(60) <= 20
        silenced = rig.alarm(43)
        assert silenced is not None and silenced["silenced"] is True
        assert silenced["state"] == "active_unack"
        assert {n["status"] for n in silenced["notifications"]} == {"suppressed"}
        assert not mentions(rig.duty, silenced["id"])
        retried = [n for a in loud for n in rig.alarm(int(a["device_id"][-4:]))[
            "notifications"] if n["attempts"] > 1]
        assert retried, "the rate-limited message was not retried"

        duty = httpx.get(f"{rig.hub.api}/api/duty", headers=VIEWER,
                         params={"site": "stormtown"}).json()
        assert [p["id"] for p in duty[0]["now"]] == ["zhang"]
        notify_file(rig.file, fake, on_duty="liu", step2_after=600.0)  # the roster changes
        rig.wait(lambda: [p["id"] for p in httpx.get(
            f"{rig.hub.api}/api/duty", headers=VIEWER, params={"site": "stormtown"}
        ).json()[0]["now"]] == ["liu"], what="the new roster without a restart")
        before = len(rig.duty.messages)
        rig.light(1, tilt_deg=1.0)
        rig.wait(lambda: (a := rig.alarm(1)) and a["state"].startswith("cleared"), what="clr")
        httpx.post(f"{rig.hub.api}/api/alarms/{rig.alarm(1)['id']}/ack", headers=OFFICER)
        rig.light(1, tilt_deg=70.0)
        rig.wait(lambda: len(rig.duty.messages) > before and any(
            m["payload"]["at"]["atMobiles"] == ["13800000002"]
            for m in rig.duty.messages[before:]), timeout=30, what="liu mentioned")
        deleted = httpx.delete(f"{rig.hub.api}/api/silences/{made.json()['id']}",
                               headers=OFFICER)
        assert deleted.status_code == 200 and deleted.json()["state"] == "deleted"
    finally:
        rig.hub.stop()
