"""Live onboarding through the API (no broker): registry, tags, validation, restart, CSV.

State-store paths run on SQLite and PostgreSQL (``state_url``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from fastapi.testclient import TestClient

from hub.api.app import create_app
from hub.cli import main
from hub.model import InboundMessage, Reading
from hub.runtime import Hub
from hub.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
TOKENS = "root:admin:t-root,gy:admin:t-gy:guoyuan,ops:officer:t-ops"
ROOT_H = {"Authorization": "Bearer t-root"}
GY = {"Authorization": "Bearer t-gy"}
NEW = {"id": "GY-FL-9001", "model": "XS-FL200", "site": "guoyuan", "community": "huayuan",
       "name": "花园 新路口", "lat": 28.38, "lon": 113.17, "place": "junction"}


def _settings(tmp_path: Path, url: str) -> Settings:
    return Settings(data_dir=tmp_path / "data", sites_dir=ROOT / "sites",
                    mqtt_url="mqtt://127.0.0.1:9", database_url=url, api_tokens=TOKENS)


@pytest.fixture
def hub(tmp_path: Path, state_url: str) -> Iterator[Hub]:
    hub = Hub(_settings(tmp_path, state_url))
    yield hub
    hub.engine.dispose()


@pytest.fixture
def client(hub: Hub) -> Iterator[TestClient]:
    with TestClient(create_app(hub)) as test_client:
        yield test_client


def _telemetry(device_id: str) -> InboundMessage:
    payload = orjson.dumps({"ts": int(time.time() * 1000), "mode": "flash", "lamp": "ok",
                            "battery_mv": 12600})
    return InboundMessage(f"roadsafety/flashlight/{device_id}/telemetry", payload, 1, False,
                          time.time_ns())


def _site_tag(hub: Hub, device_id: str) -> str:
    reading = hub.normalizer.process(_telemetry(device_id))
    assert isinstance(reading, Reading), reading
    site = reading.points[0].tag("site")
    assert site == reading.site
    return site


def test_onboard_change_retire_and_survive_a_restart(hub: Hub, client: TestClient,
                                                     tmp_path: Path, state_url: str) -> None:
    assert _site_tag(hub, "GY-FL-9001") == "unassigned"
    created = client.post("/api/devices", json=NEW, headers=ROOT_H)
    assert created.status_code == 201, created.text
    assert created.json()["site"] == "guoyuan" and "mqtt_password" not in created.json()
    assert _site_tag(hub, "GY-FL-9001") == "guoyuan"  # the next message: its site
    view = client.get("/api/devices/GY-FL-9001", headers=ROOT_H).json()
    assert view["registered"] and view["community"] == "huayuan" and view["kind"] == \
        "flashing_light"
    assert client.post("/api/devices", json=NEW, headers=ROOT_H).status_code == 409
    moved = client.patch("/api/devices/GY-FL-9001", json={"site": "fuping", "community": None},
                         headers=ROOT_H)
    assert moved.status_code == 200, moved.text
    assert _site_tag(hub, "GY-FL-9001") == "fuping"
    back = client.patch("/api/devices/GY-FL-9001",
                        json={"site": "guoyuan", "community": "huayuan"}, headers=GY)
    assert back.status_code == 404  # the Guoyuan admin cannot see a Fuping device
    hub.engine.dispose()

    again = Hub(_settings(tmp_path, state_url))  # a restart: the stored registry is back
    try:
        assert again.sites.devices["GY-FL-9001"].site.site == "fuping"
        with TestClient(create_app(again)) as second:
            retired = second.delete("/api/devices/GY-FL-9001", headers=ROOT_H)
            assert retired.status_code == 200 and retired.json()["retired"] is True
            assert _site_tag(again, "GY-FL-9001") == "unassigned"
            assert second.get("/api/devices/GY-FL-9001", headers=ROOT_H).status_code == 404 \
                or not second.get("/api/devices/GY-FL-9001", headers=ROOT_H).json()[
                    "registered"]
            # a file's device retired through the API stays retired across a restart
            assert second.delete("/api/devices/GY-FL-0001", headers=ROOT_H).status_code == 200
            rows = second.get("/api/audit?action=device", headers=ROOT_H).json()["items"]
            assert [(r["action"], r["target"]) for r in rows] == [
                ("device.retire", "GY-FL-0001"), ("device.retire", "GY-FL-9001"),
                ("device.update", "GY-FL-9001"), ("device.add", "GY-FL-9001")]
    finally:
        again.engine.dispose()
    third = Hub(_settings(tmp_path, state_url))
    try:
        assert "GY-FL-9001" not in third.sites.devices
        assert "GY-FL-0001" not in third.sites.devices  # the stored retirement wins
    finally:
        third.engine.dispose()


def test_every_error_is_named(client: TestClient) -> None:
    bad = client.post("/api/devices", headers=ROOT_H, json={
        "id": "bad/id", "model": "NOPE-1", "site": "guoyuan", "community": "atlantis",
        "lat": 123, "colour": "red"})
    assert bad.status_code == 422
    errors = bad.json()["detail"]["errors"]
    assert any(e.startswith("unknown fields colour") for e in errors)
    assert any(e.startswith("id: 'bad/id' has characters") for e in errors)
    assert any(e.startswith("model: no profile 'NOPE-1'") for e in errors)
    assert any(e.startswith("community: guoyuan has no community 'atlantis'") for e in errors)
    assert any(e.startswith("lat: must be between -90 and 90") for e in errors)
    reserved = client.post("/api/devices", headers=ROOT_H,
                           json={**NEW, "id": "safety-hub"})
    assert reserved.status_code == 422 and "reserved" in reserved.text
    unknown = client.post("/api/devices", headers=ROOT_H, json={**NEW, "site": "atlantis"})
    assert unknown.status_code == 422 and "unknown site 'atlantis'" in unknown.text
    officer = client.post("/api/devices", headers={"Authorization": "Bearer t-ops"}, json=NEW)
    assert officer.status_code == 403


def test_csv_import_is_all_or_nothing(hub: Hub, client: TestClient) -> None:
    good = ("id,model,site,community,name,lat,lon,place\n"
            "GY-FL-9101,XS-FL200,guoyuan,huayuan,A,28.1,113.1,junction\n"
            "GY-FL-9102,XS-FL200,guoyuan,,B,,,\n")
    bad = good + "GY-FL-9103,XS-FL999,guoyuan,nowhere,C,95,,\n"
    refused = client.post("/api/devices/import", content=bad.encode(), headers={
        **GY, "Content-Type": "text/csv"})
    assert refused.status_code == 422
    errors = refused.json()["detail"]["errors"]
    assert any(e.startswith("line 4: model: no profile 'XS-FL999'") for e in errors)
    assert any(e.startswith("line 4: community:") for e in errors)
    assert any(e.startswith("line 4: lat:") for e in errors)
    assert "GY-FL-9101" not in hub.sites.devices  # nothing applied
    foreign = client.post("/api/devices/import", headers={**GY, "Content-Type": "text/csv"},
                          content=b"id,model,site\nFP-X-1,PT-NFC1,fuping\n")
    assert foreign.status_code == 403 and "line 2" in foreign.text
    done = client.post("/api/devices/import", content=good.encode(), headers={
        **GY, "Content-Type": "text/csv"})
    assert done.status_code == 201, done.text
    assert done.json() == {"added": 2, "updated": 0}
    assert hub.sites.devices["GY-FL-9102"].community is None
    again = client.post("/api/devices/import", content=good.encode(), headers={
        **GY, "Content-Type": "text/csv"})
    assert again.json() == {"added": 0, "updated": 2}
    header = client.post("/api/devices/import", content=b"ident,model\nx,y\n",
                         headers={**GY, "Content-Type": "text/csv"})
    assert header.status_code == 422 and "missing column id" in header.text


def test_checkpoints_onboarded_and_retired(hub: Hub, client: TestClient) -> None:
    site = hub.sites.sites["fuping"]
    route = site.routes[0]
    body = {"id": "FP-CP900", "tag_uid": "04a1b2c3d4e5f6", "site": "fuping",
            "route": route.id, "name": "新检查点", "lat": 29.05, "lon": 111.69}
    created = client.post("/api/checkpoints", json=body, headers=ROOT_H)
    assert created.status_code == 201, created.text
    found = hub.sites.checkpoint_for_tag("04A1B2C3D4E5F6")
    assert found is not None and found[1].id == "FP-CP900"
    assert "FP-CP900" in route.checkpoints
    assert [r.id for r in hub.sites.routes_for_checkpoint("fuping", "FP-CP900")] == [route.id]
    listed = client.get("/api/checkpoints?site=fuping", headers=GY).json()
    assert listed == []  # a Guoyuan admin sees no Fuping checkpoint
    dup_tag = client.post("/api/checkpoints", headers=ROOT_H, json={
        **body, "id": "FP-CP901"})
    assert dup_tag.status_code == 422 and "is fixed at checkpoint FP-CP900" in dup_tag.text
    renamed = client.patch("/api/checkpoints/FP-CP900", json={"name": "改名"}, headers=ROOT_H)
    assert renamed.status_code == 200 and renamed.json()["name"] == "改名"
    assert "FP-CP900" in route.checkpoints  # a change keeps the checkpoint on its routes
    assert hub.sites.checkpoint_for_tag("04A1B2C3D4E5F6")[1].name == "改名"  # type: ignore[index]
    retired = client.delete("/api/checkpoints/FP-CP900", headers=ROOT_H)
    assert retired.status_code == 200
    assert hub.sites.checkpoint_for_tag("04A1B2C3D4E5F6") is None
    assert "FP-CP900" not in route.checkpoints


def test_sites_export_writes_the_merged_registry(hub: Hub, client: TestClient,
                                                 tmp_path: Path, state_url: str) -> None:
    assert client.post("/api/devices", json=NEW, headers=ROOT_H).status_code == 201
    assert client.delete("/api/devices/GY-FL-0002", headers=ROOT_H).status_code == 200
    out = tmp_path / "export"
    code = main(["sites", "export", "--out", str(out), "--database-url", state_url,
                 "--data-dir", str(tmp_path / "data")])
    assert code == 0
    data: dict[str, Any] = yaml.safe_load((out / "guoyuan.yaml").read_text(encoding="utf-8"))
    ids = [d["id"] for d in data["devices"]]
    assert "GY-FL-9001" in ids and "GY-FL-0002" not in ids and "GY-FL-0001" in ids
    assert next(d for d in data["devices"] if d["id"] == "GY-FL-9001")["community"] == \
        "huayuan"
    # the export is valid site-file input
    assert main(["check-profiles", "--sites-dir", str(out)]) == 0


def test_checkpoint_csv_import(hub: Hub, client: TestClient) -> None:
    route = hub.sites.sites["guoyuan"].routes[0] if hub.sites.sites["guoyuan"].routes else None
    site = "guoyuan" if route is not None else "fuping"
    route = route or hub.sites.sites["fuping"].routes[0]
    good = (f"id,tag_uid,site,route,name,lat,lon\n"
            f"CP-NEW-1,04B1B2B3B4B5B6,{site},{route.id},一号,28.1,113.1\n"
            f"CP-NEW-2,04C1C2C3C4C5C6,{site},,二号,,\n")
    bad = good + f"CP-NEW-3,04C1C2C3C4C5C6,{site},no-route,三号,,\n"
    refused = client.post("/api/checkpoints/import", content=bad.encode(),
                          headers={**ROOT_H, "Content-Type": "text/csv"})
    assert refused.status_code == 422
    errors = refused.json()["detail"]["errors"]
    assert any(e.startswith("line 4: tag_uid: 04C1C2C3C4C5C6 is on line 3 too") for e in errors)
    assert any(e.startswith("line 4: route:") for e in errors)
    assert hub.sites.checkpoint_for_tag("04B1B2B3B4B5B6") is None
    done = client.post("/api/checkpoints/import", content=good.encode(),
                       headers={**ROOT_H, "Content-Type": "text/csv"})
    assert done.status_code == 201 and done.json() == {"added": 2, "updated": 0}
    assert "CP-NEW-1" in route.checkpoints


def test_rule_state_follows_the_device_to_its_site(hub: Hub, client: TestClient) -> None:
    reading = hub.normalizer.process(_telemetry("GY-FL-9001"))
    assert isinstance(reading, Reading)
    hub.rules.on_reading(reading)
    old = hub.rules.devices["GY-FL-9001"]
    assert old.site == "unassigned"
    assert client.post("/api/devices", json=NEW, headers=ROOT_H).status_code == 201
    assert "GY-FL-9001" not in hub.rules.devices and old.scheduled is None  # timers skip it
    again = hub.normalizer.process(_telemetry("GY-FL-9001"))
    assert isinstance(again, Reading)
    hub.rules.on_reading(again)
    assert hub.rules.devices["GY-FL-9001"].site == "guoyuan"


def test_a_broker_that_refuses_changes_nothing(tmp_path: Path, state_url: str) -> None:
    settings = _settings(tmp_path, state_url).model_copy(
        update={"broker_admin_url": "mqtt://admin:pw@127.0.0.1:9"})
    hub = Hub(settings)
    try:
        with TestClient(create_app(hub)) as client:
            refused = client.post("/api/devices", json=NEW, headers=ROOT_H)
            assert refused.status_code == 502
            assert "nothing was changed" in refused.json()["detail"]["message"]
            assert "GY-FL-9001" not in hub.sites.devices
            assert client.get("/api/audit?action=device", headers=ROOT_H).json()["total"] == 0
    finally:
        hub.engine.dispose()
    again = Hub(_settings(tmp_path, state_url))
    try:
        assert "GY-FL-9001" not in again.sites.devices  # nothing was stored either
    finally:
        again.engine.dispose()
