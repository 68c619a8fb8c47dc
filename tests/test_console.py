"""The duty console without a browser: event fan-out, /api/me, partials, roles, languages."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hub.api.app import create_app
from hub.api.events import EventHub, _group
from hub.console import i18n
from hub.runtime import Hub
from hub.settings import Settings

GOLDEN_SITES = Path(__file__).parent / "golden" / "_sites"
TEMPLATES = Path(__file__).resolve().parent.parent / "hub" / "console" / "templates"
OFFICER = {"Authorization": "Bearer t-officer"}
VIEWER = {"Authorization": "Bearer t-viewer"}


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    settings = Settings(data_dir=tmp_path / "data", sites_dir=GOLDEN_SITES,
                        mqtt_url="mqtt://127.0.0.1:9", api_tokens=(
                            "ops:officer:t-officer,wall:viewer:t-viewer"))
    hub = Hub(settings)  # never started: no broker needed
    yield hub
    hub.engine.dispose()


@pytest.fixture
def client(hub: Hub) -> Iterator[TestClient]:
    with TestClient(create_app(hub)) as test_client:
        yield test_client


def _raise(hub: Hub) -> str:
    return hub.alarms.raise_or_update(
        "GY-FL-0001", "goldtown", "flashing_light", "knocked_over", "critical", 80.0,
        "Light knocked over: tilt 80.0°", "爆闪灯倾倒：倾角 80.0°", time.time_ns())


def test_event_hub_fans_out_from_many_threads() -> None:
    async def scenario() -> tuple[int, int]:
        events = EventHub()
        first, second = events.subscribe(), events.subscribe()

        def produce(n: int) -> None:
            for i in range(100):
                events.publish("device", {"device_id": f"D{n}-{i}", "online": True})

        threads = [threading.Thread(target=produce, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        deadline = time.monotonic() + 5
        while (first.queue.qsize() < 400 or second.queue.qsize() < 400) \
                and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        events.unsubscribe(first)
        assert events.subscribers == 1
        return first.queue.qsize(), second.queue.qsize()

    assert asyncio.run(scenario()) == (400, 400)


def test_event_hub_drops_oldest_and_asks_for_resync() -> None:
    async def scenario() -> Any:
        events = EventHub(queue_size=3)
        subscriber = events.subscribe()
        for i in range(5):
            events.publish("alarm", {"id": str(i)})
        await asyncio.sleep(0.05)
        items = [subscriber.queue.get_nowait()[1]["id"] for _ in range(3)]
        return items, subscriber.overflowed

    assert asyncio.run(scenario()) == (["2", "3", "4"], True)


def test_a_burst_is_grouped_per_event_with_the_newest_device_state() -> None:
    grouped = _group([
        ("device", {"device_id": "A", "online": True}),
        ("alarm", {"id": "1"}),
        ("device", {"device_id": "A", "online": False}),
        ("device", {"device_id": "B", "online": True}),
    ])
    assert grouped == {"device": [{"device_id": "A", "online": False},
                                  {"device_id": "B", "online": True}],
                       "alarm": [{"id": "1"}]}


def test_alarm_transitions_and_status_readings_reach_the_event_hub(
    hub: Hub, client: TestClient
) -> None:
    events = client.app.state.events  # type: ignore[attr-defined]
    seen: list[tuple[str, dict[str, Any]]] = []
    events.publish = lambda event, data: seen.append((event, data))
    alarm_id = _raise(hub)
    hub.alarms.ack(alarm_id, "ops")
    assert [(e, d["action"], d["state"]) for e, d in seen] == [
        ("alarm", "raise", "active_unack"), ("alarm", "ack", "active_ack")]
    assert ("events", events.on_reading) in hub.pipeline.reading_hooks


def test_me_tells_name_and_role(client: TestClient) -> None:
    assert client.get("/api/me").status_code == 401
    assert client.get("/api/me", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/api/me", headers=VIEWER).json() == {
        "name": "wall", "role": "viewer", "sites": None}
    assert client.get("/api/me", headers=OFFICER).json() == {
        "name": "ops", "role": "officer", "sites": None}


def test_event_stream_needs_a_token(client: TestClient) -> None:
    response = client.get("/api/events")
    assert response.status_code == 401
    assert "missing bearer token" in response.json()["detail"]["message"]
    assert client.get("/api/events?access_token=wrong").status_code == 401


def test_pages_are_public_and_panels_need_a_token(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and 'id="login"' in page.text
    assert client.get("/alarms/anything").status_code == 200
    for panel in ("alarms", "status", "map", "patrol", "stations", "hazards"):
        assert client.get(f"/console/p/{panel}").status_code == 401, panel
        assert client.get(f"/console/p/{panel}", headers=VIEWER).status_code == 200, panel
    missing = client.get("/console/p/alarm/nope", headers=VIEWER)
    assert missing.status_code == 404 and "no alarm" in missing.text


def test_buttons_follow_the_role(hub: Hub, client: TestClient) -> None:
    alarm_id = _raise(hub)
    officer = client.get("/console/p/alarms", headers=OFFICER).text
    viewer = client.get("/console/p/alarms", headers=VIEWER).text
    assert f'data-post="/api/alarms/{alarm_id}/ack"' in officer
    assert 'data-action="clear"' in officer and 'data-action="comment"' in officer
    assert "data-action" not in viewer and "<button" not in viewer
    page = client.get(f"/console/p/alarm/{alarm_id}", headers=VIEWER).text
    assert "<button" not in page and 'data-action="raise"' in page


def test_messages_and_labels_follow_the_language(hub: Hub, client: TestClient) -> None:
    _raise(hub)
    client.cookies.set("hub_lang", "en")
    english = client.get("/console/p/alarms", headers=VIEWER).text
    client.cookies.set("hub_lang", "zh-CN")
    chinese = client.get("/console/p/alarms", headers=VIEWER).text
    assert "Light knocked over" in english and "critical" in english
    assert "爆闪灯倾倒" in chinese and "紧急" in chinese
    assert "当前告警" in client.get("/", headers={"Accept-Language": "en"}).text  # the cookie wins
    client.cookies.clear()
    assert "Active alarms" in client.get("/", headers={"Accept-Language": "en-GB,en"}).text
    assert "当前告警" in client.get("/", headers={"Accept-Language": "zh-CN,zh"}).text


def test_missing_patrol_api_shows_not_available(hub: Hub) -> None:
    from fastapi import Request
    from fastapi.responses import JSONResponse

    app = create_app(hub)
    gone = ("/api/patrol/rounds", "/api/hazards", "/api/kpi")

    @app.middleware("http")
    async def before_the_patrol_api(request: Request, call_next: Any) -> Any:
        if request.url.path in gone:  # as if that part of the hub were not installed
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        return await call_next(request)

    with TestClient(app) as client:
        patrol = client.get("/console/p/patrol", headers=VIEWER)
        hazards = client.get("/console/p/hazards", headers=VIEWER)
    assert patrol.status_code == 200 and "data-unavailable=\"/api/patrol/rounds\"" in patrol.text
    assert 'data-unavailable="/api/hazards"' in hazards.text
    assert 'data-unavailable="/api/kpi"' in hazards.text


def test_every_label_has_both_languages_and_every_used_key_exists() -> None:
    for key, (english, chinese) in i18n.LABELS.items():
        assert english.strip() and chinese.strip(), key
    used: set[str] = set()
    for template in TEMPLATES.rglob("*.html"):
        used |= set(re.findall(r"""\bt\(\s*["']([a-z0-9_]+)["']""", template.read_text()))
    assert used, "no labels found in the templates"
    prefixes = {key for key in used if key.endswith("_")}  # t("sev_" ~ severity) and such
    assert sorted(used - prefixes - set(i18n.LABELS)) == []
    for prefix in prefixes:
        assert any(key.startswith(prefix) for key in i18n.LABELS), prefix
    assert set(i18n.SCRIPT_KEYS) <= set(i18n.LABELS)
