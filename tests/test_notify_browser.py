"""The console's notifications in headless Chromium: an alarm's notifications, a silence made
from the alarm page, the duty panel; against ``hub run``, Mosquitto and the FAKE robots."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.browser import chromium, sign_in
from tests.support.fake_robots import FakeRobots
from tests.support.golden_cases import XS
from tests.support.hubproc import HubProcess
from tests.support.mqtt_util import publish_many

GOLDEN_SITES = Path(__file__).parent / "golden" / "_sites"
TOKENS = "ops:officer:t-officer,wall:viewer:t-viewer"
OPS_PASSWORD = "ops-password-1"  # an account for the browser; the token for httpx
OFFICER = {"Authorization": "Bearer t-officer"}


def _wait(predicate: Any, timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_alarm_page_shows_notifications_and_makes_a_silence(tmp_path: Path, mosquitto: Any,
                                                            fake: FakeRobots) -> None:
    robot, url = fake.dingtalk("gold-duty", "SECgold")
    notify = tmp_path / "notify.yaml"
    notify.write_text(yaml.safe_dump({
        "channels": [{"id": "gold-duty", "type": "dingtalk", "url": url, "secret": "SECgold"}],
        "people": [{"id": "zhang", "name": "张伟", "mobile": "13800000001"}],
        "rosters": [{"site": "goldtown", "shifts": [{"start": "00:00", "end": "24:00",
                                                     "people": ["zhang"]}]}],
        "policies": [{"match": {"site": "goldtown"},
                      "steps": [{"channels": ["gold-duty"], "mention": "on_duty"}]}]},
        allow_unicode=True), encoding="utf-8")
    hub = HubProcess(tmp_path, mqtt_url=mosquitto.url, sites_dir=GOLDEN_SITES,
                     api_tokens=TOKENS, notify_file=notify)
    hub.add_user("ops", "officer", OPS_PASSWORD)
    hub.start()
    try:
        ts = int((datetime.now(UTC) - timedelta(seconds=5)).timestamp() * 1000)
        publish_many(mosquitto.url, [("roadsafety/flashlight/GY-FL-0001/telemetry",
                                      json.dumps({**XS, "ts": ts, "tilt_deg": 80.0}).encode(),
                                      1, False)])
        alarm = _wait(lambda: next((a for a in httpx.get(
            f"{hub.api}/api/alarms", headers=OFFICER, timeout=5).json()
            if a["rule"] == "knocked_over"), None), what="the alarm")
        _wait(lambda: robot.messages, what="step 1 at the robot")
        with chromium() as context:
            page = context.new_page()
            page.context.add_cookies([{"name": "hub_lang", "value": "zh-CN", "url": hub.api}])
            sign_in(page, hub.api, "ops", OPS_PASSWORD)
            page.goto(f"{hub.api}/alarms/{alarm['id']}")
            row = page.locator('table.notifications tr[data-status="sent"]'
                               '[data-channel="gold-duty"]')
            row.wait_for()
            assert "已发送" in row.inner_text()
            page.locator("[data-action=silence]").click()
            page.locator("#action-dialog").wait_for(state="visible")
            page.locator("#action-send").click()
            silence = _wait(lambda: httpx.get(f"{hub.api}/api/silences", headers=OFFICER,
                                              timeout=5).json(), what="the silence")
            assert silence[0]["match"] == {"device_id": "GY-FL-0001"}
            assert silence[0]["comment"] == "维修人员在现场" and silence[0]["created_by"] == "ops"
            ends = datetime.fromisoformat(silence[0]["ends_at"].replace("Z", "+00:00"))
            assert timedelta(hours=1.9) < ends - datetime.now(UTC) < timedelta(hours=2.1)
            page.locator(".alarm-page .silenced").wait_for()  # the alarm is marked now
            page.goto(f"{hub.api}/#duty")
            duty = page.locator("#duty .duty-site[data-site=goldtown] .on-duty")
            duty.wait_for()
            assert "张伟" in duty.inner_text()
            page.locator(f'#duty li[data-silence-id="{silence[0]["id"]}"]').wait_for()
            if os.environ.get("HUB_NOTIFY_SCREENSHOT"):
                page.screenshot(path=os.environ["HUB_NOTIFY_SCREENSHOT"], full_page=True)
            page.locator(f'#duty [data-delete="/api/silences/{silence[0]["id"]}"]').click()
            _wait(lambda: not httpx.get(f"{hub.api}/api/silences", headers=OFFICER,
                                        timeout=5).json(), what="the silence ended")
            page.close()
    finally:
        hub.stop()
