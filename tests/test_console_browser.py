"""The duty console in headless Debian Chromium against the real ``hub run`` and Mosquitto.

One hub and one broker for the module; the tests run in order and share the alarm that the
publish of a knocked-over light raises.
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

from tests.support.browser import PHONE, chromium, screenshot, sign_in
from tests.support.golden_cases import HAZARD, XS
from tests.support.hubproc import HubProcess
from tests.support.mqtt_util import publish_many
from tests.support.services import MosquittoServer

GOLDEN_SITES = Path(__file__).parent / "golden" / "_sites"
TOKENS = "ops:officer:t-officer,wall:viewer:t-viewer"
OFFICER = {"Authorization": "Bearer t-officer"}
OPS_PASSWORD = "ops-password-1"  # accounts for people; the tokens stay for these scripts
WALL_PASSWORD = "wall-password-1"
LIGHT = "GY-FL-0001"

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoServer]:
    """A real mosquitto for the module."""
    from tests.support.require import require_binary

    server = MosquittoServer(
        tmp_path_factory.mktemp("mosquitto"), binary=require_binary("mosquitto")
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, broker: MosquittoServer) -> Iterator[HubProcess]:
    """``hub run`` with the golden site, the embedded store and two tokens."""
    process = HubProcess(
        tmp_path_factory.mktemp("hub"),
        mqtt_url=broker.url,
        sites_dir=GOLDEN_SITES,
        api_tokens=TOKENS,
    )
    process.add_user("ops", "officer", OPS_PASSWORD)
    process.add_user("wall", "viewer", WALL_PASSWORD)
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium for the module (skips, or fails in CI, when missing)."""
    with chromium() as context:
        yield context


def _alarms(hub: HubProcess, **params: Any) -> list[dict[str, Any]]:
    response = httpx.get(f"{hub.api}/api/alarms", headers=OFFICER, params=params, timeout=10)
    response.raise_for_status()
    result: list[dict[str, Any]] = response.json()
    return result


def _wait(predicate: Any, timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _knock_over(broker: MosquittoServer, tilt: float = 80.0) -> None:
    ts = int((datetime.now(UTC) - timedelta(seconds=5)).timestamp() * 1000)
    payload = json.dumps({**XS, "ts": ts, "tilt_deg": tilt}).encode()
    publish_many(broker.url, [(f"roadsafety/flashlight/{LIGHT}/telemetry", payload, 1, False)])


def _row(page: Any) -> Any:
    return page.locator(f'li.alarm[data-device-id="{LIGHT}"][data-rule="knocked_over"]')


def test_page_loads_and_asks_to_sign_in(hub: HubProcess, browser: Any) -> None:
    page = browser.new_page()
    page.goto(f"{hub.api}/")
    page.locator("#login-form").wait_for(state="visible")
    assert page.locator("#login-token").count() == 0  # no pasted tokens any more
    page.locator("#login-username").fill("ops")
    page.locator("#login-password").fill("wrong password")
    page.locator("#login-form button[type=submit]").click()
    page.locator("#login-error").get_by_text("401").wait_for()
    assert "wrong user name or password" in page.locator("#login-error").inner_text()
    sign_in(page, hub.api, "ops", OPS_PASSWORD)
    assert page.locator("#who-name").inner_text() == "ops"
    page.locator("#status table.status tbody[data-site=goldtown]").wait_for()
    page.locator("#alarms .summary").wait_for()
    page.locator("#live:not(.off)").wait_for()  # the event stream is connected
    page.close()


def test_published_alarm_appears_live_and_ack_reaches_the_api(
    hub: HubProcess, broker: MosquittoServer, browser: Any
) -> None:
    page = browser.new_page()
    page.goto(f"{hub.api}/")  # the session cookie is kept from the previous test
    page.locator("#live:not(.off)").wait_for()
    page.locator("#alarms .summary").wait_for()
    page.evaluate("window.__noReload = 'same page'")
    _knock_over(broker)
    row = _row(page)
    row.wait_for(timeout=15_000)
    assert page.evaluate("window.__noReload") == "same page"  # no reload happened
    assert row.get_attribute("data-state") == "active_unack"
    assert "knocked over" in row.inner_text().lower()
    page.locator(f'#map circle.dev.alarm[data-device-id="{LIGHT}"]').wait_for()

    row.locator("[data-action=ack]").click()
    alarm = _wait(
        lambda: next(
            (
                a
                for a in _alarms(hub, device_id=LIGHT)
                if a["rule"] == "knocked_over" and a["state"] == "active_ack"
            ),
            None,
        ),
        what="the acknowledgement in the API",
    )
    assert alarm["acked_by"] == "ops"
    _row(page).and_(page.locator("[data-state=active_ack]")).wait_for()
    assert _row(page).locator("[data-action=ack]").count() == 0

    # A stale acknowledge (someone else was quicker) shows the API's 409 to the user.
    page.evaluate(
        """id => { const b = document.createElement('button');
        b.dataset.post = '/api/alarms/' + id + '/ack'; b.id = 'stale-ack';
        document.body.appendChild(b); b.click(); }""",
        alarm["id"],
    )
    toast = page.locator("#toasts .toast.error")
    toast.wait_for()
    assert toast.inner_text().startswith("409")
    assert "already acknowledged" in toast.inner_text()

    # The alarm page: history with the officer's acknowledgement.
    row.locator("a.msg").click()
    page.wait_for_url(f"**/alarms/{alarm['id']}")
    page.locator("table.history tr[data-action=ack]").wait_for()
    assert "ops" in page.locator("table.history").inner_text()
    page.close()


def test_language_switch(hub: HubProcess, browser: Any) -> None:
    page = browser.new_page()
    page.goto(f"{hub.api}/")
    page.locator("#alarms .summary").wait_for()
    english = page.locator("#alarms h2").inner_text() == "Active alarms"
    page.locator("#lang-switch").click()
    page.locator("#alarms .summary").wait_for()
    expected = "当前告警" if english else "Active alarms"
    page.locator("#alarms h2", has_text=expected).wait_for()
    assert page.locator("html").get_attribute("lang") == ("zh-CN" if english else "en")
    row_text = _row(page).inner_text()
    if english:  # the alarm message follows the language (message_zh)
        assert "倾倒" in row_text and "确认" not in page.locator("#alarms h2").inner_text()
    page.locator("#lang-switch").click()
    page.locator("#alarms h2", has_text="Active alarms" if english else "当前告警").wait_for()
    page.close()


def test_viewer_sees_no_acknowledge_button(
    hub: HubProcess, broker: MosquittoServer, browser: Any
) -> None:
    page = browser.new_page()
    page.goto(f"{hub.api}/")
    page.locator("#sign-out").click()
    page.locator("#login-form").wait_for(state="visible")
    sign_in(page, hub.api, "wall", WALL_PASSWORD)
    assert page.locator("body").get_attribute("data-role") == "viewer"
    _knock_over(broker, tilt=85.0)  # a fresh unacknowledged alarm may or may not be there
    _row(page).wait_for()
    page.locator("#alarms .readonly").wait_for()
    assert page.locator("#alarms [data-action]").count() == 0
    assert page.locator("#alarms button").count() == 0
    page.locator("#sign-out").click()
    page.close()


def test_phone_layout(hub: HubProcess, browser: Any) -> None:
    page = browser.new_page()
    page.set_viewport_size(PHONE)
    sign_in(page, hub.api, "ops", OPS_PASSWORD)
    _row(page).wait_for()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"] + 1, f"page is {width}px wide on a {PHONE['width']}px phone"
    page.close()


def test_patrol_and_hazard_panels(hub: HubProcess, broker: MosquittoServer, browser: Any) -> None:
    """Rounds, hazards and KPIs from the patrol API ('not available' while it answers 404)."""
    page = browser.new_page()
    sign_in(page, hub.api, "ops", OPS_PASSWORD)
    rounds = httpx.get(
        f"{hub.api}/api/patrol/rounds", headers=OFFICER, timeout=10, params={"site": "goldtown"}
    )
    patrol = page.locator("#patrol .body")
    if rounds.status_code == 404 and rounds.json() == {"detail": "Not Found"}:
        patrol.locator("[data-unavailable='/api/patrol/rounds']").wait_for()
    else:
        assert rounds.status_code == 200, rounds.text
        for item in rounds.json():  # every round of today is on the page, with its progress
            shown = patrol.locator(f'li.round[data-round-id="{item["id"]}"]')
            shown.wait_for()
            assert f"{item['done']}/{item['total']}" in shown.inner_text()
            assert shown.locator(".cps .cp").count() == len(item["checkpoints"])
        if not rounds.json():
            patrol.locator("p.empty").wait_for()
    hazards = httpx.get(f"{hub.api}/api/hazards", headers=OFFICER, timeout=10)
    board = page.locator("#hazards .body")
    if hazards.status_code == 404 and hazards.json() == {"detail": "Not Found"}:
        board.locator("[data-unavailable='/api/hazards']").wait_for()
        page.close()
        return
    assert hazards.status_code == 200, hazards.text
    board.locator(".board .column[data-status=reported]").wait_for()
    report = {**HAZARD, "ts": datetime.now(UTC).isoformat(), "note": "楼道堆放杂物"}
    publish_many(broker.url, [("patrol/FP-R03/hazard", json.dumps(report).encode(), 1, False)])
    card = board.locator(".column[data-status=reported] article.hazard", has_text="楼道堆放杂物")
    card.wait_for(timeout=20_000)  # pushed live: the hazard event reloads the board
    hazard_id = card.get_attribute("data-hazard-id")
    card.locator("[data-action=dispatch]").click()
    picker = page.locator("#action-dialog select[name=department]")  # from the register
    assert "街道安监办 · 王芳" in picker.inner_text()
    picker.select_option("gt-safety")
    page.locator("#action-send").click()
    _wait(
        lambda: httpx.get(f"{hub.api}/api/hazards/{hazard_id}", headers=OFFICER, timeout=10)
        .json()
        .get("status")
        == "dispatched",
        what="the hazard to be dispatched",
    )
    moved = board.locator(f'.column[data-status=dispatched] [data-hazard-id="{hazard_id}"]')
    moved.wait_for()
    assert "街道安监办" in moved.inner_text()
    page.locator("#hazards .kpi-site[data-site=goldtown]").wait_for()
    # A wrong transition is refused by the API and the user sees why (409).
    page.evaluate(
        """id => { const b = document.createElement('button');
        b.dataset.post = '/api/hazards/' + id + '/verify'; document.body.appendChild(b);
        b.click(); }""",
        hazard_id,
    )
    page.locator("#toasts .toast.error", has_text="409").wait_for()
    page.close()


def _post_photo(hub: HubProcess, hazard_id: str, data: bytes, kind: str) -> dict[str, Any]:
    response = httpx.post(f"{hub.api}/api/hazards/{hazard_id}/evidence", headers=OFFICER,
                          files={"file": ("photo.jpg", data, "image/jpeg")},
                          data={"kind": kind}, timeout=10)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def test_hazard_grades_photos_filters_and_reports(
    hub: HubProcess, broker: MosquittoServer, browser: Any
) -> None:
    """Grade badges, thumbnails and the full view, 督办 column, filters, the reports page."""
    from tests.support.hazard_api import scene

    report = {**HAZARD, "ts": datetime.now(UTC).isoformat(), "category": "illegal_gas_storage",
              "grade": "major", "note": "地下室存放液化气钢瓶12只"}
    publish_many(broker.url, [("patrol/FP-R03/hazard", json.dumps(report).encode(), 1, False)])
    found = _wait(lambda: [h for h in httpx.get(f"{hub.api}/api/hazards", headers=OFFICER,
                                                timeout=10).json()
                           if h["note"] == report["note"]], timeout=30, what="the major hazard")
    hazard_id = found[0]["id"]
    _post_photo(hub, hazard_id, scene("before: 12 LPG cylinders", (190, 170, 140), 3), "before")
    _post_photo(hub, hazard_id, scene("after: basement emptied", (150, 190, 160), 0), "after")
    page = browser.new_page()
    page.set_viewport_size({"width": 1600, "height": 1000})
    sign_in(page, hub.api, "ops", OPS_PASSWORD)
    board = page.locator("#hazards .body")
    card = board.locator(f'article.hazard[data-hazard-id="{hazard_id}"]')
    card.wait_for()
    assert card.get_attribute("data-grade") == "major"
    assert card.locator(".badge.grade.major").inner_text() in ("major", "重大")
    thumbs = card.locator(".thumb img")
    assert thumbs.count() == 2
    page.wait_for_function(  # loaded with the session cookie (and allowed by the CSP)
        """id => [...document.querySelectorAll(`[data-hazard-id="${id}"] .thumb img`)]
                  .every(i => i.complete && i.naturalWidth > 0)""",
        arg=hazard_id)
    # filters: major only, then a department
    board.locator("select[name=grade]").select_option("major")
    page.wait_for_function("() => [...document.querySelectorAll('#hazards article.hazard')]"
                           ".every(a => a.dataset.grade === 'major')")
    page.locator("#hazards").scroll_into_view_if_needed()
    screenshot(page, "hazards-photos-en")
    card.locator(".thumb").first.click()
    page.locator("#photo-dialog[open] img[src^='/api/evidence/']").wait_for()
    page.wait_for_function("() => document.getElementById('photo-full').naturalWidth === 640")
    screenshot(page, "hazard-photo-full-en")
    page.locator("#photo-close").click()
    board.locator("select[name=grade]").select_option("")
    board.locator("article.hazard[data-grade=general]").first.wait_for()  # the swap is done
    board.locator("select[name=department]").select_option("gt-safety")
    page.wait_for_function("""() => {
        const cards = [...document.querySelectorAll('#hazards article.hazard')];
        return cards.length > 0 && cards.every(a => a.innerText.includes('街道安监办'));
    }""")
    # the reports page downloads a PDF with the token
    page.goto(f"{hub.api}/reports")
    form = page.locator("form[data-kind=monthly]")
    form.wait_for()
    with page.expect_download() as download:
        form.locator("button[type=submit]").click()
    path = download.value.path()
    assert path is not None and Path(path).read_bytes()[:5] == b"%PDF-"
    assert download.value.suggested_filename.endswith(".pdf")
    page.close()
