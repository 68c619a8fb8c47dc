"""Accounts in headless Debian Chromium against the real ``hub run`` and Mosquitto.

Signing in with an account, an officer of one township not seeing the other's alarms, and an
admin onboarding, editing and retiring a device from the console's devices page.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.browser import chromium, sign_in
from tests.support.golden_cases import MFS, XS
from tests.support.hubproc import HubProcess
from tests.support.mqtt_util import publish_many
from tests.support.services import MosquittoServer

ROOT = Path(__file__).resolve().parent.parent
ROOT_H = {"Authorization": "Bearer t-root"}
PASSWORDS = {"gy-duty": "gy-password-1", "ltp-duty": "ltp-password-1",
             "county": "county-password-1"}

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoServer]:
    from tests.support.require import require_binary

    server = MosquittoServer(tmp_path_factory.mktemp("mosquitto"),
                             binary=require_binary("mosquitto"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory,
        broker: MosquittoServer) -> Iterator[HubProcess]:
    process = HubProcess(tmp_path_factory.mktemp("hub"), mqtt_url=broker.url,
                         sites_dir=ROOT / "sites", api_tokens="root:admin:t-root")
    process.add_user("gy-duty", "officer", PASSWORDS["gy-duty"], ["guoyuan"])
    process.add_user("ltp-duty", "officer", PASSWORDS["ltp-duty"], ["longtoupu"])
    process.add_user("county", "admin", PASSWORDS["county"])
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as context:
        yield context


def _wait(predicate: Any, timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _alarms(hub: HubProcess) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = httpx.get(f"{hub.api}/api/alarms", headers=ROOT_H,
                                          timeout=10).json()
    return got


def _raise_two_townships(broker: MosquittoServer, hub: HubProcess) -> None:
    now = datetime.now(UTC) - timedelta(seconds=5)
    light = json.dumps({**XS, "ts": int(now.timestamp() * 1000), "tilt_deg": 80.0}).encode()
    station = json.dumps({**MFS, "station": "LTP-MFS-01", "ts": int(now.timestamp()),
                          "env": {**MFS["env"], "smoke": 6.0}}).encode()
    publish_many(broker.url, [("roadsafety/flashlight/GY-FL-0001/telemetry", light, 1, False),
                              ("firestation/LTP-MFS-01/telemetry", station, 1, False)])
    _wait(lambda: {a["site"] for a in _alarms(hub)} >= {"guoyuan", "longtoupu"},
          what="alarms in both townships")


def test_an_officer_sees_only_their_township(hub: HubProcess, broker: MosquittoServer,
                                             browser: Any) -> None:
    _raise_two_townships(broker, hub)
    page = browser.new_page()
    sign_in(page, hub.api, "gy-duty", PASSWORDS["gy-duty"])
    assert page.locator("#who-name").inner_text() == "gy-duty"
    assert page.locator("#who-sites").inner_text() == "guoyuan"
    page.locator('li.alarm[data-device-id="GY-FL-0001"]').first.wait_for()
    page.locator("#live:not(.off)").wait_for()
    assert page.locator('li.alarm[data-device-id="LTP-MFS-01"]').count() == 0
    page.locator("#status table.status tbody[data-site=guoyuan]").wait_for()
    assert page.locator("#status table.status tbody[data-site=longtoupu]").count() == 0
    assert page.locator("#devices-link").is_hidden()  # officers do not manage devices

    sign_in(page, hub.api, "ltp-duty", PASSWORDS["ltp-duty"])
    page.locator('li.alarm[data-device-id="LTP-MFS-01"]').first.wait_for()
    assert page.locator('li.alarm[data-device-id="GY-FL-0001"]').count() == 0
    # the other township's alarm page shows the API's 404, not the alarm
    gy_alarm = next(a for a in _alarms(hub) if a["device_id"] == "GY-FL-0001")
    page.goto(f"{hub.api}/alarms/{gy_alarm['id']}")
    page.locator("#toasts .toast.error").wait_for()
    assert page.locator("#toasts .toast.error").inner_text().startswith("404")
    assert "GY-FL-0001" not in page.locator("#alarm").inner_text()
    page.close()


def test_an_admin_onboards_edits_and_retires_a_device(hub: HubProcess, browser: Any) -> None:
    page = browser.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # the retire confirmation
    sign_in(page, hub.api, "county", PASSWORDS["county"])
    page.locator("#devices-link").click()
    page.wait_for_url("**/devices")
    form = page.locator("#device-form")
    form.wait_for()
    form.locator("[name=id]").fill("GY-FL-9700")
    form.locator("[name=model]").select_option("XS-FL200")
    form.locator("[name=site]").select_option("guoyuan")
    form.locator("[name=community]").fill("huayuan")
    form.locator("[name=name]").fill("新路口 9700")
    form.locator("button[type=submit]").click()
    row = page.locator('table.devices tr[data-device-id="GY-FL-9700"]')
    row.wait_for()
    view = httpx.get(f"{hub.api}/api/devices/GY-FL-9700", headers=ROOT_H, timeout=10).json()
    assert view["registered"] and view["site"] == "guoyuan" and view["community"] == "huayuan"

    row.locator("[data-edit-device]").click()
    form.locator("[name=name]").fill("改名 9700")
    form.locator("button[type=submit]").click()
    page.locator('table.devices tr[data-device-id="GY-FL-9700"]', has_text="改名 9700").wait_for()

    bad = page.locator("#device-form")
    bad.locator("[name=id]").fill("GY-FL-9701")
    bad.locator("[name=community]").fill("atlantis")
    bad.locator("button[type=submit]").click()
    toast = page.locator("#toasts .toast.error")
    toast.wait_for()
    assert toast.inner_text().startswith("422") and "atlantis" in toast.inner_text()

    page.locator('table.devices tr[data-device-id="GY-FL-9700"] [data-retire-device]').click()
    page.locator('table.devices tr[data-device-id="GY-FL-9700"]').wait_for(state="detached")
    gone = httpx.get(f"{hub.api}/api/devices/GY-FL-9700", headers=ROOT_H, timeout=10)
    assert gone.status_code == 404 or not gone.json()["registered"]
    audit = httpx.get(f"{hub.api}/api/audit?action=device", headers=ROOT_H, timeout=10).json()
    assert [r["action"] for r in audit["items"]][:3] == [
        "device.retire", "device.update", "device.add"]
    assert {r["actor"] for r in audit["items"][:3]} == {"county"}
    page.close()
