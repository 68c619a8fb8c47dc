"""``hub demo`` on a bare machine: no broker, no InfluxDB, no HUB_* settings, an empty directory.

Within 60 s it must serve the console, know devices of all five models that have reported and
have raised at least one alarm; Ctrl-C (SIGINT) must stop it cleanly, even with a live event
stream open, and leave its data in ./data. With HUB_SCREENSHOTS=1 it also remakes the console
screenshots in docs/screenshots from this living demo.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.browser import PHONE, chromium, screenshot, screenshots_enabled, sign_in
from tests.support.services import free_port, log_tail

MODELS = {"XS-FL200", "HN-BSD3", "PT-NFC1", "MFS-GW1", "YK-FS8"}
VIEWER = {"Authorization": "Bearer demo-viewer"}


def _get(url: str, **kwargs: Any) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=3, **kwargs)
    except httpx.HTTPError:
        return None


def _prepare_screenshots(api: str, alarm_id: str) -> None:
    """Give the pictures some history: an acknowledged, commented alarm and a hazard."""
    officer = {"Authorization": "Bearer demo-officer"}
    httpx.post(f"{api}/api/alarms/{alarm_id}/ack", headers=officer, timeout=5)
    httpx.post(f"{api}/api/alarms/{alarm_id}/comment", headers=officer, timeout=5,
               json={"text": "已通知养护队前往扶正 / road crew on the way"})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the scenario reports a hazard after ~15 s
        hazards = _get(f"{api}/api/hazards", headers=officer)
        if hazards is None or hazards.status_code != 200 or hazards.json():
            break
        time.sleep(1)


def _take_screenshots(api: str, alarm_id: str) -> None:
    _prepare_screenshots(api, alarm_id)
    with chromium() as context:
        page = context.new_page()
        page.context.add_cookies([{"name": "hub_lang", "value": "en", "url": api}])
        sign_in(page, api, "county-duty", "demo-county-duty")
        page.locator("#map figure.map").first.wait_for()
        page.locator("#stations .station").first.wait_for()
        page.wait_for_timeout(1500)  # let the first live updates land
        screenshot(page, "console-en", full_page=True)
        page.context.add_cookies([{"name": "hub_lang", "value": "zh-CN", "url": api}])
        page.reload()
        page.locator("#map figure.map").first.wait_for()
        page.locator("#stations .station").first.wait_for()
        page.wait_for_timeout(1000)
        screenshot(page, "console-zh", full_page=True)
        page.goto(f"{api}/alarms/{alarm_id}")
        page.locator("table.history tr[data-action=comment]").wait_for()
        screenshot(page, "alarm-page-zh")
        phone = context.new_page()
        phone.set_viewport_size(PHONE)
        phone.goto(f"{api}/")
        phone.locator("#alarms li.alarm").first.wait_for()
        phone.wait_for_timeout(800)
        screenshot(phone, "console-phone-zh")
        page.context.add_cookies([{"name": "hub_lang", "value": "en", "url": api}])
        sign_in(page, api, "screen", "demo-screen")
        page.locator("#alarms li.alarm").first.wait_for()
        page.wait_for_timeout(500)
        screenshot(page, "console-viewer-en")


def test_demo_starts_bare_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    log_path = tmp_path / "demo.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "demo", "--api-port", str(port), "--duration", "120"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = started + 60
        up_after = None
        models: set[str] = set()
        alarms: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"demo exited {proc.returncode}:\n{log_tail(log_path)}"
            health = _get(f"{api}/api/health")
            if health is not None and up_after is None:
                up_after = time.monotonic() - started
            if health is not None:
                devices = _get(f"{api}/api/devices", headers=VIEWER)
                if devices is not None and devices.status_code == 200:
                    models = {d["model"] for d in devices.json()["items"] if d.get("online")}
                got = _get(f"{api}/api/alarms", headers=VIEWER)
                alarms = got.json() if got is not None and got.status_code == 200 else []
                if models >= MODELS and alarms:
                    break
            time.sleep(0.5)
        ready_after = time.monotonic() - started
        assert up_after is not None, f"the API never answered:\n{log_tail(log_path)}"
        assert models >= MODELS, f"models seen online: {sorted(models)}\n{log_tail(log_path)}"
        assert alarms, f"no alarm within 60 s\n{log_tail(log_path)}"
        print(
            f"demo: API up after {up_after:.1f} s, five models and an alarm after "
            f"{ready_after:.1f} s"
        )
        assert up_after < 20, f"demo took {up_after:.1f} s to start"

        console = httpx.get(f"{api}/", timeout=5)
        assert console.status_code == 200 and 'hx-get="/console/p/alarms"' in console.text
        panel = httpx.get(f"{api}/console/p/alarms", headers=VIEWER, timeout=5)
        assert panel.status_code == 200 and "data-alarm-id" in panel.text
        banner = log_path.read_text(errors="replace")
        assert f"{api}/" in banner
        for token in ("demo-admin", "demo-officer", "demo-viewer"):
            assert token in banner
        for name, password in (("county-admin", "demo-county-admin"),
                               ("guoyuan-duty", "demo-guoyuan-duty")):
            assert name in banner and password in banner  # a newcomer can sign in
        signed = httpx.post(f"{api}/api/login", timeout=10, json={
            "username": "guoyuan-duty", "password": "demo-guoyuan-duty"})
        assert signed.status_code == 200 and signed.json()["sites"] == ["guoyuan"]
        mine = httpx.get(f"{api}/api/alarms", cookies=signed.cookies, timeout=5).json()
        assert {a["site"] for a in mine} <= {"guoyuan"}
        assert "Watch for" in banner
        assert "STAND-IN robots" in banner

        # the notifications reach the demo's stand-in robots and the console shows them
        received: list[dict[str, Any]] = []
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and not received:
            got = _get(f"{api}/api/notify/received", headers=VIEWER)
            received = got.json() if got is not None and got.status_code == 200 else []
            time.sleep(0.5)
        assert received, f"no message at the stand-in robots\n{log_tail(log_path)}"
        duty = httpx.get(f"{api}/console/p/duty", headers=VIEWER, timeout=5)
        assert duty.status_code == 200 and 'data-platform="' in duty.text
        assert 'class="on-duty"' in duty.text
        told = next(a for a in httpx.get(f"{api}/api/alarms", headers=VIEWER, params={
            "limit": 1000}, timeout=5).json() if httpx.get(
            f"{api}/api/alarms/{a['id']}", headers=VIEWER, timeout=5).json()["notifications"])
        page = httpx.get(f"{api}/console/p/alarm/{told['id']}", headers=VIEWER, timeout=5)
        assert 'table class="notifications"' in page.text

        # a graded hazard whose photo the phone app uploaded, and the reports
        photo_deadline = time.monotonic() + 45
        graded: list[dict[str, Any]] = []
        while time.monotonic() < photo_deadline and not graded:
            got = _get(f"{api}/api/hazards", headers=VIEWER, params={"grade": "major"})
            graded = [h for h in (got.json() if got is not None and got.status_code == 200
                                  else []) if h["evidence"]]
            time.sleep(1)
        assert graded, f"no major hazard with a photo within 45 s\n{log_tail(log_path)}"
        photo = httpx.get(f"{api}/api/evidence/{graded[0]['evidence'][0]['sha256']}",
                          headers=VIEWER, timeout=5)
        assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"
        assert b"SimPhone" not in photo.content  # the phone's EXIF is not served
        assert httpx.get(f"{api}/reports", timeout=5).status_code == 200
        monthly = httpx.get(f"{api}/api/reports/monthly", headers=VIEWER, timeout=60,
                            params={"site": "fuping", "format": "pdf"})
        assert monthly.status_code == 200 and monthly.content[:5] == b"%PDF-"
        assert "/reports" in banner

        if screenshots_enabled():
            knocked = next((a for a in alarms if a["rule"] == "knocked_over"), alarms[0])
            _take_screenshots(api, knocked["id"])

        # Ctrl-C with a live event stream open: the demo still stops, cleanly and soon.
        stream_open = threading.Event()

        def listen() -> None:
            try:
                with httpx.stream(
                    "GET", f"{api}/api/events", headers=VIEWER, timeout=httpx.Timeout(5, read=60)
                ) as response:
                    for _line in response.iter_lines():
                        stream_open.set()
            except httpx.HTTPError:
                pass

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        assert stream_open.wait(10), "no event stream"
        stop_at = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
        stopped_in = time.monotonic() - stop_at
        print(f"demo: stopped {stopped_in:.1f} s after Ctrl-C, exit code {code}")
        assert code == 0, log_tail(log_path)
        assert stopped_in < 20
        listener.join(5)
        data = tmp_path / "data"
        assert (data / "telemetry.sqlite").stat().st_size > 0
        assert (data / "hub.sqlite").stat().st_size > 0
        final = log_path.read_text(errors="replace")
        assert "hub stopped" in final and "demo stopped" in final, log_tail(log_path)
        assert "Traceback" not in final and "ERROR" not in final, log_tail(log_path)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
