"""Site scopes, walked over the app's own route table.

Every route must declare a scope policy (hub.api.scope). Each ``sites`` route is then called by
an admin of Guoyuan (site A) against Fuping's (site B) objects: lists and pages must not show
B, B's objects by id answer 404, writes into B are refused and change nothing. A route added
without a policy, or without a way to call it here, fails this test: decide its scope.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Mount

from hub.api import auth
from hub.api.app import create_app
from hub.api.events import EventHub, _stream
from hub.api.scope import POLICIES, policy_of
from hub.model import Refusal
from hub.notify.config import Match
from hub.runtime import Hub
from hub.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
A, B = "guoyuan", "fuping"
TOKENS = f"gy-admin:admin:t-gy:{A},root:admin:t-root,gy-view:viewer:t-gyv:{A}"
GY = {"Authorization": "Bearer t-gy"}
ROOT_H = {"Authorization": "Bearer t-root"}
# Routes whose answer to the all-sites admin need not name site B (no site-bound content).
NO_B_CONTENT = {"/api/me", "/api/logout", "/api/login", "/api/health", "/metrics", "/",
                "/alarms/{alarm_id}", "/docs", "/redoc", "/openapi.json",
                "/docs/oauth2-redirect", "/console/p/stations", "/api/users"}
STREAMS = {"/api/events"}  # SSE: checked in test_event_stream_shows_only_the_callers_sites


NOTIFY = f"""
channels:
  - {{id: all-duty, type: webhook, url: "http://127.0.0.1:9/hook"}}
people:
  - {{id: gy-zhang, name: 张伟, mobile: "13800000001"}}
  - {{id: fp-wang, name: 王新娜, mobile: "13800000011"}}
rosters:
  - {{site: {A}, shifts: [{{days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00",
      end: "24:00", people: [gy-zhang]}}]}}
  - {{site: {B}, shifts: [{{days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00",
      end: "24:00", people: [fp-wang]}}]}}
policies: []
"""


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    notify = tmp_path / "notify.yaml"
    notify.write_text(NOTIFY, encoding="utf-8")
    settings = Settings(data_dir=tmp_path / "data", sites_dir=ROOT / "sites",
                        mqtt_url="mqtt://127.0.0.1:9", api_tokens=TOKENS, notify_file=notify)
    hub = Hub(settings)  # never started: no broker needed
    yield hub
    hub.engine.dispose()


@pytest.fixture
def objects(hub: Hub) -> dict[str, str]:
    now = time.time_ns()
    b_alarm = hub.alarms.raise_or_update(
        "FP-R01", B, "patrol_reader", "battery_low", "warning", 9.0, "Battery low",
        "电量低", now)
    a_alarm = hub.alarms.raise_or_update(
        "GY-FL-0001", A, "flashing_light", "knocked_over", "critical", 80.0,
        "Light knocked over", "爆闪灯倾倒", now)
    b_hazard = hub.patrol.hazards.create(B, "fire_exit_blocked", "blocked", None, None, "root")
    assert b_hazard is not None
    hub.refusals.record(Refusal("hub/pt/FP-R01/scan", now, "bad_json", "not JSON", b"{",
                                "FP-R01", "PT-NFC1"))
    hub.refusals.flush()
    hub.dead_letters.record([(b"patrol,device_id=FP-R01,model=PT-NFC1,site=fuping x=1i 1",
                              "field type conflict")])
    accounts = hub.extensions.get("accounts")
    assert hub.notify is not None
    b_silence = hub.notify.silences.create(Match(site=B), now, now + 3600 * 10**9,
                                           "repair crew at FP-R01", "root", now)
    return {"b_alarm": b_alarm, "a_alarm": a_alarm, "b_hazard": b_hazard["id"],
            "b_silence": b_silence.id,
            "accounts": "" if accounts is None else "ready"}


@pytest.fixture
def client(hub: Hub, objects: dict[str, str]) -> Iterator[TestClient]:
    app = create_app(hub)
    app.state.accounts.add("fp-duty", "officer", "fp-password-1", frozenset({B}))
    app.state.audit.record("root", "user.add", target="fp-duty", site=B)
    with TestClient(app) as test_client:
        yield test_client


def _path_value(name: str, objects: dict[str, str]) -> str:
    values = {"alarm_id": objects["b_alarm"], "hazard_id": objects["b_hazard"],
              "device_id": "FP-R01", "name": "fp-duty", "checkpoint_id": "FP-CP001",
              "sha256": "0" * 64, "silence_id": objects["b_silence"]}
    if name not in values:
        raise AssertionError(f"path parameter {name!r}: add a site-B value to this test")
    return values[name]


# Bodies that are valid except for being in site B (a 422 would hide the scope check).
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/api/hazards"): {"site": B, "category": "fire_exit_blocked", "note": "x"},
    ("POST", "/api/hazards/{hazard_id}/dispatch"): {"department": "fire"},
    ("POST", "/api/hazards/{hazard_id}/rectify"): {"note": "fixed"},
    ("POST", "/api/hazards/{hazard_id}/reopen"): {"note": "not fixed"},
    ("POST", "/api/hazards/{hazard_id}/grade"): {"grade": "major"},
    ("POST", "/api/alarms/{alarm_id}/assign"): {"assignee": "gy-admin"},
    ("POST", "/api/alarms/{alarm_id}/comment"): {"text": "mine now"},
    ("POST", "/api/users"): {"name": "fp-new", "role": "viewer", "password": "long-enough-1",
                             "sites": [B]},
    ("POST", "/api/devices"): {"id": "FP-NEW-01", "model": "PT-NFC1", "site": B},
    ("POST", "/api/silences"): {"match": {"site": B}, "duration_h": 1, "comment": "crew"},
    ("PATCH", "/api/devices/{device_id}"): {"name": "renamed"},
    ("POST", "/api/checkpoints"): {"id": "FP-CP999", "tag_uid": "04AABBCCDDEEFF",
                                   "site": B, "name": "x"},
    ("PATCH", "/api/checkpoints/{checkpoint_id}"): {"name": "renamed"},
}
RAW_BODIES: dict[tuple[str, str], bytes] = {
    ("POST", "/api/devices/import"): b"id,model,site\nFP-NEW-02,PT-NFC1,fuping\n",
    ("POST", "/api/checkpoints/import"): b"id,tag_uid,site,name\nFP-CP998,04AA,fuping,x\n",
}
QUERIES: dict[str, dict[str, str]] = {
    "/api/devices/import": {"site": B},
}


def _b_markers(objects: dict[str, str]) -> list[str]:
    return [B, "FP-R0", objects["b_alarm"], objects["b_hazard"], "府坪", "Fuping"]


def _flat(routes: list[Any]) -> Iterator[Any]:
    """The app's routes with included routers expanded (FastAPI >= 0.16x includes lazily)."""
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is not None:
            yield from contexts()
        else:
            yield route


def _routes(client: TestClient) -> list[Any]:
    """Every API route (APIRoute or FastAPI's effective route context: the same fields)."""
    routes = []
    for route in _flat(client.app.routes):  # type: ignore[attr-defined]
        if isinstance(route, Mount):
            assert route.path == "/console/static", f"unexpected mount {route.path}"
            continue
        if isinstance(route, APIRoute) or hasattr(route, "dependant"):
            routes.append(route)
            continue
        # FastAPI's own /docs, /redoc, /openapi.json are starlette Routes: public by design
        assert route.path in NO_B_CONTENT, f"{route.path}: not an APIRoute, decide its scope"
    return routes


def test_every_route_declares_a_scope_policy(client: TestClient) -> None:
    missing = [f"{sorted(r.methods)} {r.path}" for r in _routes(client)
               if policy_of(r.endpoint) not in POLICIES]
    assert missing == [], "routes without a scope policy (hub.api.scope.policy): " + \
        ", ".join(missing)


def test_a_site_a_caller_never_sees_or_changes_site_b(
    client: TestClient, hub: Hub, objects: dict[str, str]
) -> None:
    markers = _b_markers(objects)
    checked: list[str] = []
    for route in _routes(client):
        scope = policy_of(route.endpoint)
        if route.path in STREAMS or scope == "public":
            continue
        path = route.path
        for param in route.param_convertors:
            path = path.replace("{" + param + "}", _path_value(param, objects))
        query = dict(QUERIES.get(route.path, {}))
        for dependant in route.dependant.query_params:
            if dependant.field_info.is_required() or dependant.name == "site":
                if dependant.name != "site":
                    raise AssertionError(f"{route.path}: required query {dependant.name!r}")
                query["site"] = B
        for method in sorted(route.methods - {"HEAD"}):
            label = f"{method} {route.path}"
            body = BODIES.get((method, route.path))
            raw = RAW_BODIES.get((method, route.path))
            if raw is not None:
                response = client.request(method, path, params=query, content=raw,
                                          headers={**GY, "Content-Type": "text/csv"})
            else:
                response = client.request(method, path, params=query, headers=GY,
                                          json=body if body is not None else None)
            checked.append(label)
            if method == "GET":
                if scope == "all_sites":
                    assert response.status_code == 403, label
                    continue
                assert response.status_code in (200, 404), (label, response.text[:300])
                shown = [m for m in markers if m in response.text]
                assert response.status_code == 404 or shown == [], (label, shown)
                if route.path not in NO_B_CONTENT and response.status_code == 200:
                    control = client.get(path, params=query, headers=ROOT_H)
                    assert control.status_code == 200, (label, control.text[:300])
                    assert any(m in control.text for m in markers), \
                        f"{label}: the all-sites admin sees nothing of B, the check is vacuous"
            else:
                assert response.status_code in (403, 404), (label, response.status_code,
                                                            response.text[:300])
    assert len(checked) >= 20, checked
    # nothing in B changed
    alarm = hub.alarms.get(objects["b_alarm"])
    assert alarm["state"] == "active_unack" and alarm["assignee"] is None
    hazard = hub.patrol.hazards.get(objects["b_hazard"])
    assert hazard["status"] == "reported"
    accounts = client.app.state.accounts  # type: ignore[attr-defined]
    assert accounts.get("fp-duty") is not None and accounts.get("fp-new") is None
    assert "FP-R01" in hub.sites.devices and "FP-NEW-01" not in hub.sites.devices
    assert "FP-NEW-02" not in hub.sites.devices
    assert any(c.id == "FP-CP001" for c in hub.sites.sites[B].checkpoints)
    assert hub.notify is not None
    silence = hub.notify.silences.get(objects["b_silence"])
    assert silence is not None and silence.deleted_ns is None
    assert [s.match.site for s in hub.notify.silences.list(now_ns=time.time_ns())] == [B]


def test_lists_keep_the_callers_own_site(client: TestClient, objects: dict[str, str]) -> None:
    alarms = client.get("/api/alarms", headers=GY)
    assert [a["id"] for a in alarms.json()] == [objects["a_alarm"]]
    assert alarms.headers["x-total-count"] == "1"
    assert client.get("/api/alarms", headers=ROOT_H).headers["x-total-count"] == "2"
    assert client.get(f"/api/alarms?site={B}", headers=GY).json() == []
    devices = client.get("/api/devices", headers=GY).json()
    assert devices["total"] > 0 and {d["site"] for d in devices["items"]} == {A}
    assert client.get(f"/api/alarms/{objects['a_alarm']}", headers=GY).status_code == 200
    assert client.get("/api/devices/GY-FL-0001", headers=GY).status_code == 200
    refusals = client.get("/api/refusals", headers=ROOT_H).json()
    assert refusals["items"] and client.get("/api/refusals", headers=GY).json() == {
        "counts": {}, "items": []}


def test_a_scoped_officer_acks_its_own_site_only(client: TestClient,
                                                 objects: dict[str, str]) -> None:
    ok = client.post(f"/api/alarms/{objects['a_alarm']}/ack", headers=GY)
    assert ok.status_code == 200 and ok.json()["acked_by"] == "gy-admin"
    refused = client.post(f"/api/alarms/{objects['b_alarm']}/ack", headers=GY)
    assert refused.status_code == 404
    assert "no alarm" in refused.json()["detail"]["message"]
    viewer = client.post(f"/api/alarms/{objects['a_alarm']}/clear",
                         headers={"Authorization": "Bearer t-gyv"})
    assert viewer.status_code == 403


def test_tokens_naming_an_unknown_site_are_refused(hub: Hub) -> None:
    hub.settings.api_tokens = "x:viewer:t:guoyan"
    with pytest.raises(ValueError, match="unknown sites guoyan"):
        create_app(hub)


def test_event_stream_shows_only_the_callers_sites() -> None:
    async def scenario() -> list[dict[str, str]]:
        events = EventHub()
        user = auth.User("gy", "viewer", frozenset({A}))
        shutdown = anyio.Event()
        stream = _stream(events, user, shutdown)
        hello = await stream.__anext__()
        assert '"sites":["guoyuan"]' in hello["data"]
        events.publish("alarm", {"id": "b1", "site": B, "device_id": "FP-R01"})
        events.publish("device", {"device_id": "FP-R01", "online": True, "site": B})
        events.publish("alarm", {"id": "a1", "site": A, "device_id": "GY-FL-0001"})
        got = [await asyncio.wait_for(stream.__anext__(), 5)]
        shutdown.set()
        await stream.aclose()
        return got

    got = asyncio.run(scenario())
    assert got == [{"event": "alarm",
                    "data": '[{"id":"a1","site":"guoyuan","device_id":"GY-FL-0001"}]'}]


def test_silences_are_audited_and_a_scoped_officer_silences_its_own_site(
        client: TestClient) -> None:
    made = client.post("/api/silences", headers=GY, json={
        "match": {"site": A}, "duration_h": 2, "comment": "repair crew on site"})
    assert made.status_code == 201, made.text
    county = client.post("/api/silences", headers=GY, json={
        "match": {"severity": "critical"}, "duration_h": 2, "comment": "all of them"})
    assert county.status_code == 403  # a county-wide silence is not a township's to make
    assert client.delete(f"/api/silences/{made.json()['id']}", headers=GY).status_code == 200
    rows = client.get("/api/audit", headers=ROOT_H, params={"actor": "gy-admin"}).json()
    actions = [(r["action"], r["target"]) for r in rows["items"]]
    assert ("silence.create", made.json()["id"]) in actions
    assert ("silence.delete", made.json()["id"]) in actions
