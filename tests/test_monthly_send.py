"""The departments file's ``monthly_report`` sends last month's totals to a channel once.

The patrol service (tests/support/hazard_rig.py, the test moves its clock) hands its notice
to a real NotifyService sending to the FAKE DingTalk robots (tests/support/fake_robots.py,
which refuse a wrong 加签 signature); on SQLite and PostgreSQL (``state_url``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.notify.config import parse_config
from hub.notify.outbox import OutboxRow
from hub.notify.service import NotifyService
from hub.patrol.departments import SiteDepartments
from hub.patrol.periodic import month, period_report
from hub.sites import load_sites
from tests.support.fake_robots import FakeRobots, Robot
from tests.support.hazard_rig import NS, HazardRig, fuping_with_routes, local, ns
from tests.support.polling import wait

SECRET = "SECmonthly"
LINK = "http://duty.example/api/reports/monthly?site=fuping&month=2026-11&format=pdf"


def sites_with_report(tmp_path: Path) -> Path:
    """Fuping with one route; its departments file sends the monthly report on the 1st."""
    folder = fuping_with_routes(tmp_path, {"FP-RT01"})
    path = folder / "departments" / "fuping.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["monthly_report"] = {"channel": "fp-report", "day": 1, "at": "08:00"}
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return folder


def notify_for(rig: HazardRig, fake: FakeRobots, sites_dir: Path,
               clock: Callable[[], int]) -> tuple[NotifyService, Robot]:
    robot, url = fake.dingtalk("fp-report", SECRET)
    config = {"channels": [{"id": "fp-report", "type": "dingtalk", "url": url,
                            "secret": SECRET}]}
    service = NotifyService(parse_config(config, env={}), rig.engine, load_sites(sites_dir),
                            clock=clock, console_url="http://duty.example", poll_s=0.05)
    service.start()
    rig.patrol.monthly.hook = service.report
    return service, robot


def rows_of(rig: HazardRig) -> int:
    with Session(rig.engine) as session:
        return int(session.execute(select(func.count()).select_from(OutboxRow)
                                   .where(OutboxRow.alarm_id.like("report:%"))).scalar() or 0)


def test_the_monthly_report_goes_out_once_after_its_moment(
        state_url: str, tmp_path: Path, fake: FakeRobots) -> None:
    sites_dir = sites_with_report(tmp_path)
    rig = HazardRig(state_url, local(date(2026, 11, 2), "08:00"), sites_dir=sites_dir)
    notify, robot = notify_for(rig, fake, sites_dir, lambda: rig.now)
    try:
        rig.hazard(local(date(2026, 11, 2), "08:00"))
        rig.hazard(local(date(2026, 11, 20), "09:00"))
        first = rig.patrol.hazards.search(site="fuping")
        assert len(first) == 2
        rig.patrol.hazards.act(first[0]["id"], "dispatch", "ops", department="fp-fire")
        rig.patrol.hazards.act(first[0]["id"], "rectify", "li", note="cleared")
        rig.hazard(local(date(2026, 12, 1), "07:00"))  # December's: not in November's totals

        rig.tick(ns(local(date(2026, 12, 1), "07:59")))
        time.sleep(0.2)  # four dispatcher polls; the row count is what proves nothing went
        assert robot.messages == [] and rows_of(rig) == 0

        rig.tick(ns(local(date(2026, 12, 1), "08:00")) + NS)
        wait(lambda: robot.messages, what="the monthly report on its channel")
        text = robot.messages[0]["text"]
        assert "【月度报告】" in text and "2026-11" in text
        # the report's own totals: one rectified; the other went past its deadline (督办)
        totals = period_report(rig.patrol, "fuping", month("2026-11"))["totals"]
        assert (totals["found"], totals["rectified"], totals["overdue"],
                totals["supervised"]) == (2, 1, 1, 1)
        assert "发现隐患 2，已整改 1，整改率 50.0%，逾期 1，督办 1" in text
        assert LINK in text

        rig.tick(ns(local(date(2026, 12, 1), "09:00")))
        # a restart (new patrol and notify services on the same store) and later ticks
        notify.close()
        rig.close()
        rig.open()
        notify, _ = notify_for(rig, fake, sites_dir, lambda: rig.now)
        rig.tick(ns(local(date(2026, 12, 2), "08:30")))
        time.sleep(0.2)
        wait(notify.dispatcher.idle, what="nothing in flight")
        assert len(robot.messages) == 1 and rows_of(rig) == 1
    finally:
        notify.close()
        rig.close()


def test_the_next_month_is_sent_on_its_own_day(state_url: str, tmp_path: Path) -> None:
    sites_dir = sites_with_report(tmp_path)
    rig = HazardRig(state_url, local(date(2026, 11, 30), "12:00"), sites_dir=sites_dir)
    sent: list[str] = []
    rig.patrol.monthly.hook = lambda message: sent.append(message.month)
    try:
        start = local(date(2026, 12, 1), "08:00")
        for step in range(130):  # every 12 hours up to early February
            rig.tick(ns(start + timedelta(hours=12 * step)))
        assert sent == ["2026-11", "2026-12", "2027-01"]
    finally:
        rig.close()


@pytest.mark.parametrize("bad", [{"channel": "x", "day": 31}, {"channel": "x", "at": "8:00"},
                                 {"channel": "x", "hour": 8}, {"day": 1}])
def test_a_bad_monthly_report_entry_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError):
        SiteDepartments.model_validate({"site": "fuping", "departments": [],
                                        "monthly_report": bad})


def test_the_device_clock_drives_it_too(state_url: str, tmp_path: Path) -> None:
    sites_dir = sites_with_report(tmp_path)
    rig = HazardRig(state_url, local(date(2026, 11, 30), "12:00"), clock="device",
                    sites_dir=sites_dir)
    sent: list[str] = []
    rig.patrol.monthly.hook = lambda message: sent.append(message.month)
    try:
        rig.hazard(local(date(2026, 12, 1), "07:50"))
        assert sent == []
        rig.hazard(local(date(2026, 12, 1), "08:05"))  # the device's time passes 08:00
        assert sent == ["2026-11"]
    finally:
        rig.close()
