"""No request exhausts the hub: every parameter bounded, ranges capped, streams capped (422/429).

The route walk takes the routes from the app itself, so a new list route is checked without
touching this file.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from hub.api.app import create_app
from hub.api.auth import User
from hub.api.events import EventHub, _stream
from hub.ingest.normalize import Normalizer
from hub.model import InboundMessage, Refusal
from hub.profiles.loader import load_profiles
from hub.runtime import Hub
from hub.settings import Settings
from hub.sites import load_sites

ROOT = Path(__file__).resolve().parent.parent
VIEWER = {"Authorization": "Bearer t-viewer"}
EXTREMES = ["100000000000000000000", "-100000000000000000000", "1e20", "1e23",
            "9999-12-31", "0001-01-01", "99999-01-01", "2026-02-30", "", "x" * 300]
SANE = {"site": "fuping"}


@pytest.fixture
def hub(tmp_path: Path, state_url: str) -> Iterator[Hub]:
    settings = Settings(data_dir=tmp_path / "data", database_url=state_url,
                        mqtt_url="mqtt://127.0.0.1:9",
                        api_tokens="wall:viewer:t-viewer,ops:officer:t-officer")
    hub = Hub(settings)  # never started: no broker needed
    yield hub
    hub.alarms.close()
    hub.engine.dispose()


@pytest.fixture
def client(hub: Hub) -> Iterator[TestClient]:
    with TestClient(create_app(hub)) as test_client:
        yield test_client


def _query_params(dependant: Dependant) -> list[Any]:
    """Every query parameter of a route, its dependencies' included."""
    found = list(dependant.query_params)
    for sub in dependant.dependencies:
        found += _query_params(sub)
    return found


def _get_routes(client: TestClient) -> list[APIRoute]:
    return [r for r in client.app.routes  # type: ignore[attr-defined]
            if isinstance(r, APIRoute) and "GET" in r.methods and r.path.startswith("/api/")
            and r.path != "/api/events"]


def test_every_int_query_parameter_has_bounds(client: TestClient) -> None:
    unbounded = []
    for route in _get_routes(client):
        for param in _query_params(route.dependant):
            if param.field_info.annotation not in (int, int | None):
                continue
            metadata = param.field_info.metadata
            if not any(hasattr(m, "le") or hasattr(m, "lt") for m in metadata):
                unbounded.append(f"{route.path}?{param.alias}")
    assert unbounded == []


def test_no_parameter_value_makes_a_list_route_fail(client: TestClient) -> None:
    failures = []
    for route in _get_routes(client):
        path = route.path.replace("{", "").replace("}", "")  # path parameters: their own name
        params = _query_params(route.dependant)
        for param in params:
            for value in EXTREMES:
                query = {**SANE, param.alias: value}
                response = client.get(path, params=query, headers=VIEWER)
                if response.status_code >= 500:
                    failures.append((path, param.alias, value, response.status_code))
                elif response.status_code == 422:
                    assert "message" in response.text or "detail" in response.text
    assert failures == []


def test_overflowing_alarm_parameters_answer_422_with_the_limit(client: TestClient) -> None:
    for query in ({"offset": str(10**20)}, {"from": "1e23"}, {"from": str(10**23)},
                  {"to": "9999-12-31"}):
        response = client.get("/api/alarms", params=query, headers=VIEWER)
        assert response.status_code == 422, (query, response.text)
    message = client.get("/api/alarms", params={"to": "9999-12-31"},
                         headers=VIEWER).json()["detail"]["message"]
    assert "2261-12-31" in message


def test_a_kpi_range_is_capped_at_400_days(client: TestClient) -> None:
    response = client.get("/api/kpi", headers=VIEWER, params={
        "site": "fuping", "from": "0001-01-01", "to": "9999-12-31"})
    assert response.status_code == 422
    response = client.get("/api/kpi", headers=VIEWER, params={
        "site": "fuping", "from": "2025-01-01", "to": "2026-12-31"})
    assert response.status_code == 422
    assert "at most 400" in response.json()["detail"]["message"]
    ok = client.get("/api/kpi", headers=VIEWER, params={
        "site": "fuping", "from": "2026-01-01", "to": "2026-01-31"})
    assert ok.status_code == 200


def test_event_streams_are_capped_per_caller_and_in_all(client: TestClient) -> None:
    events: EventHub = client.app.state.events  # type: ignore[attr-defined]
    assert (events.max_streams, events.max_per_caller) == (200, 8)
    mine = [events.admit("wall") for _ in range(8)]
    response = client.get("/api/events", headers=VIEWER)
    assert response.status_code == 429
    assert "HUB_EVENTS_MAX_PER_CALLER=8" in response.json()["detail"]["message"]
    for ticket in mine:
        events.release(ticket)
        events.release(ticket)  # a second release changes nothing
    others = [events.admit(f"other-{i % 25}") for i in range(200)]
    response = client.get("/api/events", headers=VIEWER)
    assert response.status_code == 429
    assert "HUB_EVENTS_MAX_STREAMS=200" in response.json()["detail"]["message"]
    events.release(others[0])
    assert events.admit("wall").caller == "wall"  # a freed slot is taken again


def test_device_events_are_held_to_one_per_period() -> None:
    async def scenario(every_s: float) -> list[tuple[str, str]]:
        events = EventHub()
        stream = _stream(events, User("wall", "viewer"), anyio.Event(), events.admit("wall"),
                         every_s)
        seen = [await anext(stream)]
        events.publish("device", {"device_id": "A", "online": True})
        seen.append(await anext(stream))
        events.publish("device", {"device_id": "B", "online": True})
        events.publish("alarm", {"id": "1"})
        seen.append(await anext(stream))
        if every_s == 0:
            seen.append(await anext(stream))
        await stream.aclose()
        return [(item["event"], item["data"]) for item in seen]

    held = asyncio.run(scenario(60.0))
    assert [event for event, _ in held] == ["hello", "device", "alarm"]
    assert '"A"' in held[1][1]
    assert [event for event, _ in asyncio.run(scenario(0))] == [
        "hello", "device", "alarm", "device"]


def test_device_counts_instead_of_lists(hub: Hub, client: TestClient) -> None:
    counts = client.get("/api/devices/counts", headers=VIEWER).json()["items"]
    total = sum(group["total"] for group in counts)
    assert total == len(hub.sites.devices) > 0
    assert {"site", "kind", "total", "online", "offline", "never"} <= set(counts[0])
    calls: list[dict[str, Any]] = []
    from hub.console import routes

    original = routes.Api.get

    async def spy(self: routes.Api, path: str, **params: Any) -> Any:
        calls.append({"path": path, **params})
        return await original(self, path, **params)

    routes.Api.get = spy  # type: ignore[method-assign]
    try:
        assert client.get("/console/p/status", headers=VIEWER).status_code == 200
    finally:
        routes.Api.get = original  # type: ignore[method-assign]
    assert all(call["path"] != "/api/devices" for call in calls), calls


def test_unregistered_devices_are_capped() -> None:
    sites = load_sites(ROOT / "sites")
    normalizer = Normalizer(load_profiles(ROOT / "device_profiles"), sites, max_unregistered=2)

    def send(device: str) -> Any:
        return normalizer.process(InboundMessage(f"patrol/{device}/status", b"online", 1,
                                                 False, 1_800_000_000 * 10**9))

    assert not isinstance(send("STRANGER-1"), Refusal)
    assert not isinstance(send("STRANGER-2"), Refusal)
    third = send("STRANGER-3")
    assert isinstance(third, Refusal) and third.reason == "unregistered_limit"
    assert "2 unregistered devices" in third.detail
    assert not isinstance(send("STRANGER-1"), Refusal)  # already tracked
    registered = next(iter(sites.devices))
    model = sites.devices[registered].model
    topic = next(r.spec.topic for r in normalizer.router.routes
                 if r.profile.model == model and r.spec.decoder == "status")
    result = normalizer.process(InboundMessage(topic.replace("{device_id}", registered),
                                               b"online", 1, False, 1_800_000_000 * 10**9))
    assert not isinstance(result, Refusal), result


def test_stream_slots_are_freed_when_streams_end(tmp_path: Path) -> None:
    import socket
    import threading
    import time

    import httpx
    import uvicorn

    settings = Settings(data_dir=tmp_path / "data", mqtt_url="mqtt://127.0.0.1:9",
                        api_tokens="wall:viewer:t-viewer", events_max_per_caller=2)
    hub = Hub(settings)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(hub), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}/api/events"
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        with httpx.Client(timeout=10) as client:
            opened = []
            for _ in range(2):
                stream = client.stream("GET", url, headers=VIEWER)
                response = stream.__enter__()
                assert response.status_code == 200
                lines = response.iter_lines()  # kept: a dropped iterator closes the stream
                assert next(lines).startswith("event: hello")
                opened.append((stream, lines))
            refused = client.get(url, headers=VIEWER)
            assert refused.status_code == 429
            assert "HUB_EVENTS_MAX_PER_CALLER=2" in refused.json()["detail"]["message"]
            opened.pop()[0].__exit__(None, None, None)
            while time.monotonic() < deadline:  # the server notices the client left
                with client.stream("GET", url, headers=VIEWER) as again:
                    if again.status_code == 200:
                        break
                time.sleep(0.1)
            else:
                raise AssertionError("the slot of a closed stream was never freed")
            for stream, _lines in opened:
                stream.__exit__(None, None, None)
    finally:
        server.should_exit = True
        thread.join(10)
        hub.alarms.close()
        hub.engine.dispose()


def test_a_due_time_past_what_the_store_holds_answers_422(client: TestClient) -> None:
    officer = {"Authorization": "Bearer t-officer"}
    created = client.post("/api/hazards", headers=officer, json={
        "site": "fuping", "category": "road_hazard", "note": "pothole"})
    assert created.status_code == 201, created.text
    response = client.post(f"/api/hazards/{created.json()['id']}/dispatch", headers=officer,
                           json={"department": "roads", "due_at": "9999-12-31T00:00:00"})
    assert response.status_code == 422
    assert "2261-12-31" in response.json()["detail"]["message"]


def test_the_hazard_list_is_paged_with_a_bounded_page(hub: Hub, client: TestClient) -> None:
    for n in range(3):
        assert hub.patrol.hazards.create("fuping", "fire_exit_blocked", f"blocked {n}", None,
                                         None, "ops") is not None
    first = client.get("/api/hazards", params={"limit": 2}, headers=VIEWER)
    rest = client.get("/api/hazards", params={"limit": 2, "offset": 2}, headers=VIEWER)
    assert (first.status_code, rest.status_code) == (200, 200)
    notes = [h["note"] for h in first.json() + rest.json()]
    assert sorted(notes) == ["blocked 0", "blocked 1", "blocked 2"]  # each once, none lost
    too_big = client.get("/api/hazards", params={"limit": 5001}, headers=VIEWER)
    assert too_big.status_code == 422 and "5000" in too_big.text
