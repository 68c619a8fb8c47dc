"""Hazard hand-overs reach the department's channel through the notify outbox, exactly once.

The patrol service (tests/support/hazard_rig.py, the test moves its clock) hands its messages
to a real NotifyService sending to the FAKE DingTalk robots (tests/support/fake_robots.py,
which refuse a wrong 加签 signature); on SQLite and PostgreSQL (``state_url``).
"""

from __future__ import annotations

import time
from datetime import date, datetime
from pathlib import Path

import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.notify.config import parse_config
from hub.notify.outbox import OutboxRow
from hub.notify.service import NotifyService
from hub.patrol.departments import HandoverMessage
from hub.sites import load_sites
from tests.support.fake_robots import FakeRobots, Robot
from tests.support.hazard_rig import NS, HazardRig, fuping_with_routes, local
from tests.support.polling import wait

SECRET = "SEChandover"
HOUR = 3600 * NS


def sites_with_county(tmp_path: Path) -> Path:
    """Fuping with one route; its departments file names a county channel too."""
    folder = fuping_with_routes(tmp_path, {"FP-RT01"})
    path = folder / "departments" / "fuping.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["county_channel"] = "fp-county"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return folder


def notify_for(rig: HazardRig, fake: FakeRobots, sites_dir: Path) -> tuple[
        NotifyService, Robot, Robot]:
    fire, fire_url = fake.dingtalk("fp-fire-duty", SECRET)
    county, county_url = fake.dingtalk("fp-county", SECRET)
    config = {"channels": [
        {"id": "fp-fire-duty", "type": "dingtalk", "url": fire_url, "secret": SECRET},
        {"id": "fp-county", "type": "dingtalk", "url": county_url, "secret": SECRET}]}
    service = NotifyService(parse_config(config, env={}), rig.engine, load_sites(sites_dir),
                            clock=time.time_ns, console_url="http://duty.example",
                            poll_s=0.05)
    service.start()
    return service, fire, county


def test_handovers_are_sent_once_on_the_departments_channel(
        state_url: str, tmp_path: Path, fake: FakeRobots) -> None:
    sites_dir = sites_with_county(tmp_path)
    rig = HazardRig(state_url, local(date(2026, 11, 2), "08:00"), sites_dir=sites_dir)
    notify, fire, county = notify_for(rig, fake, sites_dir)
    told: list[HandoverMessage] = []

    def hook(message: HandoverMessage) -> None:
        told.append(message)
        notify.handover(message)

    rig.patrol.hazards.handover = hook
    rig.patrol.hazards.deliveries = notify.handover_status
    try:
        rig.hazard(local(date(2026, 11, 2), "08:00"), note="exit blocked by boxes")
        hazard = rig.patrol.hazards.search()[0]
        rig.patrol.hazards.act(hazard["id"], "dispatch", "ops", department="fp-fire")
        wait(lambda: fire.messages, what="the dispatch on the department's channel")
        first = fire.messages[0]["text"]
        assert "【隐患交办】" in first and hazard["id"] in first
        assert "exit blocked by boxes" in first and "http://duty.example/" in first

        due = int(datetime.fromisoformat(
            rig.patrol.hazards.get(hazard["id"])["due_at"].replace("Z", "+00:00")
        ).timestamp()) * NS
        rig.tick(due - 4 * HOUR)  # the reminder rung: a second message
        wait(lambda: len(fire.messages) == 2, what="the reminder")
        assert "即将到期提醒" in fire.messages[1]["text"]
        rig.tick(due + 168 * HOUR)  # overdue to the department, county to the county channel
        wait(lambda: len(fire.messages) == 3 and len(county.messages) == 1,
             what="the overdue and county rungs")
        assert "逾期未整改" in fire.messages[2]["text"]
        assert "上报县级" in county.messages[0]["text"]

        def delivered() -> list[tuple[str, str | None, list[str]]]:
            history = rig.patrol.hazards.get(hazard["id"])["history"]
            return [(h["action"], h.get("rung"), [d["status"] for d in h["handover"]])
                    for h in history if "handover" in h]

        # the robot has the message before the dispatcher marks its row sent: wait on the row
        expected = [("dispatch", None, ["sent"]), ("escalate", "reminder", ["sent"]),
                    ("escalate", "overdue", ["sent"]), ("escalate", "county", ["sent"])]
        wait(lambda: delivered() == expected, what=f"every hand-over marked sent: {expected}")
        assert (len(fire.messages), len(county.messages)) == (3, 1)

        # a restart that hands the same messages over again sends nothing new
        notify.close()
        notify, _, _ = notify_for(rig, fake, sites_dir)
        for message in told:
            notify.handover(message)
        time.sleep(0.3)  # six dispatcher polls (the row count below is what proves it)
        wait(notify.dispatcher.idle, what="nothing in flight")
        assert (len(fire.messages), len(county.messages)) == (3, 1)
        with Session(rig.engine) as session:
            rows = session.execute(select(func.count()).select_from(OutboxRow)
                                   .where(OutboxRow.kind == "handover")).scalar()
        assert rows == 4
    finally:
        notify.close()
        rig.close()


def test_a_department_without_a_channel_is_only_logged(state_url: str, tmp_path: Path,
                                                        fake: FakeRobots) -> None:
    sites_dir = fuping_with_routes(tmp_path, {"FP-RT01"})
    rig = HazardRig(state_url, local(date(2026, 11, 2), "08:00"), sites_dir=sites_dir)
    notify, fire, _ = notify_for(rig, fake, sites_dir)
    rig.patrol.hazards.handover = notify.handover
    try:
        rig.hazard(local(date(2026, 11, 2), "08:00"))
        hazard = rig.patrol.hazards.search()[0]
        rig.patrol.hazards.act(hazard["id"], "dispatch", "ops", department="fp-traffic")
        with Session(rig.engine) as session:
            assert session.execute(select(func.count()).select_from(OutboxRow)).scalar() == 0
        assert fire.messages == []
    finally:
        notify.close()
        rig.close()

