"""Notifications and a hazard's ladder on two hubs sharing a real 3-node NATS cluster.

``hub run`` processes in cluster mode (HUB_NODE_ID hub-a, hub-b; each its own
HUB_MQTT_CLIENT_ID, so a row planned "by the hub" would stay with the hub that planned it),
shared PostgreSQL and InfluxDB, the FAKE DingTalk, WeCom and Feishu robots (they check the
signatures the real platforms check). A notification row belongs to the partition of its
alarm's device (or of its hazard), a hazard's ladder to the owner of the hazard's partition
(hub/cluster/wiring.py): every step is sent once across both hubs, and what the owner planned
before it was SIGKILLed is sent once, by the next owner, after the takeover. Every wait polls
the fakes or an API with a deadline.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from hub.cluster.partition import partition_of
from hub.notify.outbox import OutboxRow
from tests.support.cluster import (
    PARTITIONS,
    alarms_of,
    balanced,
    make_hub,
    owners,
    publish_now,
    start_all,
    tilt,
    wait_for,
)
from tests.support.fake_robots import FakeRobots, Robot
from tests.support.hubproc import HubProcess
from tests.support.nats import NatsCluster

SITE = "nx"
LIGHTS = [f"NX-FL-{i:04d}" for i in range(48)]  # every partition has some
STEP2_S = 10.0  # the device alarm's step 2: after the owner is killed, before the takeover ends
HAZARD_DUE_S = 16.0  # the hazard's deadline from its dispatch: its overdue rung after the kill
TAKEOVER_S = 15.0
SECRETS = {"NX_DUTY_SECRET": "SECduty", "NX_DEPT_SECRET": "SECdept"}  # the hubs' environment


def write_sites(folder: Path) -> Path:
    """The site of the lights and its register of departments (hand-overs on ``nx-dept``)."""
    (folder / "departments").mkdir(parents=True, exist_ok=True)
    (folder / f"{SITE}.yaml").write_text(yaml.safe_dump({
        "site": SITE, "name": "集群镇", "timezone": "Asia/Shanghai",
        "devices": [{"id": d, "model": "XS-FL200"} for d in LIGHTS]}, allow_unicode=True),
        encoding="utf-8")
    (folder / "departments" / f"{SITE}.yaml").write_text(yaml.safe_dump({
        "site": SITE, "departments": [{"id": "nx-fire", "name": "消防所", "contact": "刘建国",
                                       "phone": "0736-7221119", "channel": "nx-dept"}]},
        allow_unicode=True), encoding="utf-8")
    return folder


def write_notify(path: Path, fake: FakeRobots) -> Path:
    """Step 1 at once to the duty robot (DingTalk, signed), step 2 after STEP2_S to the
    leader (WeCom); the department's hand-overs to a signed Feishu bot."""
    fake.dingtalk("nx-duty", "SECduty")
    fake.wecom("nx-leader")
    fake.feishu("nx-dept", "SECdept")
    path.write_text(yaml.safe_dump({
        "language": "en",
        "channels": [
            {"id": "nx-duty", "type": "dingtalk", "secret": "${NX_DUTY_SECRET}",
             "url": f"{fake.base}/robot/send?access_token=nx-duty", "backoff_s": 0.2},
            {"id": "nx-leader", "type": "wecom",
             "url": f"{fake.base}/cgi-bin/webhook/send?key=nx-leader", "backoff_s": 0.2},
            {"id": "nx-dept", "type": "feishu", "secret": "${NX_DEPT_SECRET}",
             "url": f"{fake.base}/open-apis/bot/v2/hook/nx-dept", "backoff_s": 0.2}],
        "people": [{"id": "zhang", "name": "张伟", "mobile": "13800000001"},
                   {"id": "chen", "name": "陈主任", "mobile": "13800000003"}],
        "rosters": [{"site": SITE, "leaders": ["chen"],
                     "shifts": [{"start": "00:00", "end": "24:00", "people": ["zhang"]}]}],
        "policies": [{"match": {"site": SITE, "rule": "knocked_over"}, "steps": [
            {"after_s": 0, "channels": ["nx-duty"], "mention": "on_duty"},
            {"after_s": STEP2_S, "channels": ["nx-leader"], "mention": "leaders"}]}]},
        allow_unicode=True), encoding="utf-8")
    return path


def hub(tmp: Path, name: str, cluster: NatsCluster, pg_url: str, influx: Any, sites: Path,
        notify: Path, node: int) -> HubProcess:
    """A cluster hub with the notify file (its own MQTT client id: the row owner it would use
    without the cluster wiring)."""
    made = make_hub(tmp, name, cluster, pg_url, influx, sites, mqtt_node=node,
                    mqtt_client_id=name, notify_file=notify, notify_poll_s=0.1,
                    console_url="http://duty.example")
    made.settings.update(SECRETS)
    return made


def about(robot: Robot, key: str, word: str = "") -> list[dict[str, Any]]:
    """The messages a robot accepted that name ``key`` (an alarm's console link, a hazard id)
    and contain ``word``."""
    return [m for m in list(robot.messages) if key in m["text"] and word in m["text"]]


def rungs(hazard: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(rung, hub that climbed it) of a hazard's escalations, from its history."""
    return [(h["rung"], h.get("hub")) for h in hazard["history"] if h["action"] == "escalate"]


def handed(hazard: dict[str, Any]) -> list[str]:
    """The delivery states of a hazard's hand-over messages, in history order."""
    return [d["status"] for h in hazard["history"] for d in h.get("handover", [])]


def row_owners(pg_url: str, key: str) -> set[str]:
    """The owners of a key's notification outbox rows (an alarm id, ``hazard:<id>``)."""
    engine = create_engine(pg_url)
    try:
        with Session(engine) as session:
            return set(session.scalars(select(OutboxRow.owner).where(OutboxRow.alarm_id == key)))
    finally:
        engine.dispose()


def test_each_step_is_sent_once_and_a_dead_owners_next_step_by_the_next_owner(
    tmp_path: Path, nats_cluster: NatsCluster, pg_url: str, influx_db: Any, fake: FakeRobots
) -> None:
    """1. A hazard entered on one hub and dispatched on the hub that does not own its
       partition: the owner climbs its first rung (the reminder), each hand-over once.
    2. A light of the same owner tilts: step 1 once across both hubs.
    3. The owner SIGKILLed before step 2 and the hazard's deadline: after the takeover the
       other hub sends step 2 once and climbs the overdue rung (its alarm, its hand-over)."""
    sites = write_sites(tmp_path / "sites")
    notify = write_notify(tmp_path / "notify.yaml", fake)
    a, b = (hub(tmp_path, name, nats_cluster, pg_url, influx_db, sites, notify, node)
            for node, name in enumerate(("hub-a", "hub-b")))
    hubs = {"hub-a": a, "hub-b": b}
    duty, leader = fake.robots[("dingtalk", "nx-duty")], fake.robots[("wecom", "nx-leader")]
    dept = fake.robots[("feishu", "nx-dept")]
    try:
        start_all(a, b)
        table = wait_for("16 partitions split over both hubs", balanced([a, b]), 40)

        # 1. The hazard: entered on hub-a, dispatched on the hub not owning its partition.
        hazard_id = a.post("/api/hazards", {"site": SITE, "category": "fire_exit_blocked",
                                            "note": "exit chained shut"})["id"]
        owner_name = str(table[partition_of(hazard_id, PARTITIONS)])
        owner = hubs[owner_name]
        other = b if owner is a else a
        other_name = other.settings["HUB_NODE_ID"]
        dispatched = time.time()
        due = datetime.fromtimestamp(dispatched + HAZARD_DUE_S, UTC)
        other.post(f"/api/hazards/{hazard_id}/dispatch",
                   {"department": "nx-fire", "due_at": due.isoformat()})
        wait_for("the dispatch and the reminder handed over", lambda: about(
            dept, hazard_id, "[hazard dispatch]") and about(dept, hazard_id, "[hazard reminder]"),
            20)
        climbed = rungs(other.get(f"/api/hazards/{hazard_id}"))
        assert climbed == [("reminder", owner_name)], climbed  # by the owner alone
        # recorded as sent too (a hub killed between the platform's answer and its record
        # would leave the row to the next owner, which sends it again: at least once)
        wait_for("both hand-overs recorded as sent", lambda: handed(
            other.get(f"/api/hazards/{hazard_id}")) == ["sent", "sent"], 10)

        # 2. A light whose partition the same hub owns tilts: step 1, once.
        light = next(d for d in LIGHTS if table[partition_of(d, PARTITIONS)] == owner_name)
        publish_now(nats_cluster.nodes[2].mqtt_url, [tilt(light, time.time(), 30.0)])
        raised_at = time.monotonic()
        alarm_id = wait_for("the light's alarm", lambda: [
            x["id"] for x in alarms_of(other, light) if x["rule"] == "knocked_over"], 20)[0]
        link = f"/alarms/{alarm_id}"
        wait_for("step 1 on the duty robot", lambda: about(duty, link), 20)
        wait_for("step 1 recorded as sent", lambda: [
            (n["step"], n["status"]) for n in other.get(f"/api/alarms/{alarm_id}")[
                "notifications"] if n["step"] == 1] == [(1, "sent")], 10)

        # 3. SIGKILL the owner while step 2 and the overdue rung are still to come.
        waited = time.monotonic() - raised_at
        assert waited < STEP2_S and not about(leader, link), (
            f"step 2 came due before the kill ({waited:.1f} s): the machine is too slow for "
            f"STEP2_S")
        assert time.time() < dispatched + HAZARD_DUE_S, "the hazard fell due before the kill"
        owner.kill()
        killed = time.time()
        started = time.monotonic()
        wait_for("the other hub owning and fetching every partition",
                 lambda: set(owners(other).values()) == {other_name}
                 and other.health()["cluster"]["active"] == list(range(PARTITIONS)),
                 TAKEOVER_S + 10)
        took = time.monotonic() - started
        assert took <= TAKEOVER_S, f"takeover took {took:.1f} s"
        sent = wait_for("step 2 on the leader robot", lambda: about(leader, link), 30)
        assert sent[0]["at"] > killed  # sent by the hub alive, after the kill
        overdue = wait_for("the overdue rung handed over", lambda: about(
            dept, hazard_id, "[hazard overdue]"), HAZARD_DUE_S + 10)
        assert overdue[0]["at"] > killed
        climbed = rungs(other.get(f"/api/hazards/{hazard_id}"))
        assert climbed == [("reminder", owner_name), ("overdue", other_name)], climbed
        hazard_alarm = wait_for("the overdue alarm", lambda: [
            x for x in alarms_of(other, hazard_id) if x["rule"] == "hazard_overdue"], 10)
        assert len(hazard_alarm) == 1, hazard_alarm
        history = other.get(f"/api/alarms/{hazard_alarm[0]['id']}")["history"]
        assert [(h["action"], h["hub"]) for h in history] == [("raise", other_name)], history

        # Nothing left to send, and each message once across both hubs.
        wait_for("the outbox drained", lambda: other.health()["notify"]["pending"] == 0, 20)
        counts = {"step 1": len(about(duty, link)), "step 2": len(about(leader, link)),
                  **{event: len(about(dept, hazard_id, f"[hazard {event}]"))
                     for event in ("dispatch", "reminder", "overdue")}}
        assert counts == dict.fromkeys(counts, 1), counts
        assert not duty.refused and not leader.refused and not dept.refused
        steps = other.get(f"/api/alarms/{alarm_id}")["notifications"]
        assert [(n["step"], n["channel"], n["status"], n["attempts"]) for n in steps] == [
            (1, "nx-duty", "sent", 1), (2, "nx-leader", "sent", 1)], steps
        assert row_owners(pg_url, alarm_id) == {f"p{partition_of(light, PARTITIONS)}"}
        assert row_owners(pg_url, f"hazard:{hazard_id}") == {
            f"p{partition_of(hazard_id, PARTITIONS)}"}
        print(f"\ntakeover {took:.1f} s; step 2 {sent[0]['at'] - killed:.1f} s and the overdue "
              f"rung {overdue[0]['at'] - killed:.1f} s after the kill")
    finally:
        for h in hubs.values():
            if h.proc is not None:
                stopping = time.monotonic()
                h.stop()
                print(f"{h.settings['HUB_NODE_ID']} stopped in "
                      f"{time.monotonic() - stopping:.1f} s")


def test_the_scenarios_files_load_and_its_lights_cover_every_partition(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The files the scenario writes load as the hub loads them, and whichever hub owns the
    hazard's partition, a light of that hub exists."""
    from hub.notify.config import load_config
    from hub.patrol.departments import DepartmentRegister
    from hub.sites import load_sites

    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    sites = write_sites(tmp_path / "sites")
    fake = FakeRobots()
    try:
        config = load_config(write_notify(tmp_path / "notify.yaml", fake))
    finally:
        fake.close()
    assert len(load_sites(sites).sites[SITE].devices) == len(LIGHTS)
    assert DepartmentRegister.load(sites).find(SITE, "nx-fire") is not None
    assert config.policy_for({"site": SITE, "rule": "knocked_over", "severity": "critical",
                              "kind": "flashing_light", "device_id": LIGHTS[0]}) is not None
    assert {partition_of(d, PARTITIONS) for d in LIGHTS} == set(range(PARTITIONS))
