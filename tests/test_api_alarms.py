"""Alarm HTTP API with FastAPI's TestClient: roles, 401/403, filters, transitions."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from hub.alarms.service import AlarmService
from hub.api import auth
from hub.api.alarms import router
from hub.db import make_engine

S = 1_000_000_000
T0 = 1_795_000_000 * S
TOKENS = "wang:viewer:vvv,li:officer:ooo,boss:admin:aaa"
VIEWER = {"Authorization": "Bearer vvv"}
OFFICER = {"Authorization": "Bearer ooo"}
ADMIN = {"Authorization": "Bearer aaa"}


def make_app(tmp_path: Path, tokens: str = TOKENS) -> tuple[TestClient, AlarmService]:
    app = FastAPI()
    app.include_router(router)
    service = AlarmService(make_engine(f"sqlite:///{tmp_path / 'api.sqlite'}"))
    app.state.alarms = service
    auth.install(app.state, tokens)

    @app.get("/api/whoami")
    def whoami(user: str = Depends(auth.admin)) -> dict[str, str]:
        return {"user": user}

    return TestClient(app), service


def seed(service: AlarmService) -> tuple[str, str]:
    a = service.raise_or_update(
        "L1",
        "ltp",
        "flashing_light",
        "knocked_over",
        "critical",
        40.0,
        "Light knocked over",
        "爆闪灯倾倒",
        T0,
    )
    b = service.raise_or_update(
        "F1",
        "dfc",
        "fire_station",
        "battery_low",
        "warning",
        18,
        "Backup battery low",
        "备用电池电量低",
        T0 + S,
    )
    return a, b


def test_auth_roles(tmp_path: Path) -> None:
    client, service = make_app(tmp_path)
    alarm_id, _ = seed(service)
    response = client.get("/api/alarms")
    assert response.status_code == 401
    assert response.json()["detail"]["error"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert client.get("/api/alarms", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/api/alarms", headers=VIEWER).status_code == 200
    denied = client.post(f"/api/alarms/{alarm_id}/ack", headers=VIEWER)
    assert denied.status_code == 403
    assert "officer" in denied.json()["detail"]["message"]
    assert client.get("/api/whoami", headers=OFFICER).status_code == 403
    assert client.get("/api/whoami", headers=ADMIN).json() == {"user": "boss"}
    assert client.post(f"/api/alarms/{alarm_id}/ack", headers=ADMIN).status_code == 200


def test_list_get_and_transitions(tmp_path: Path) -> None:
    client, service = make_app(tmp_path)
    alarm_id, other = seed(service)
    response = client.get("/api/alarms", headers=VIEWER)
    assert response.headers["X-Total-Count"] == "2"
    assert [a["id"] for a in response.json()] == [alarm_id, other]
    for key in (
        "id",
        "device_id",
        "site",
        "kind",
        "rule",
        "severity",
        "state",
        "message",
        "value",
        "raised_at",
        "acked_at",
        "acked_by",
        "cleared_at",
        "count",
        "message_zh",
        "assignee",
        "last_seen_at",
    ):
        assert key in response.json()[0]
    filtered = client.get(
        "/api/alarms?site=dfc&severity=warning&state=active_unack", headers=VIEWER
    ).json()
    assert [a["id"] for a in filtered] == [other]
    assert client.get("/api/alarms?device_id=L9", headers=VIEWER).json() == []
    assert (
        client.get("/api/alarms?from=2026-11-18T11:06:40.500Z", headers=VIEWER).json()[0]["id"]
        == other
    )
    assert client.get("/api/alarms?limit=1&offset=1", headers=VIEWER).json()[0]["id"] == other
    assert client.get("/api/alarms?state=bogus", headers=VIEWER).status_code == 422

    acked = client.post(
        f"/api/alarms/{alarm_id}/ack", headers=OFFICER, json={"acked_by": "someone else"}
    )
    assert acked.status_code == 200
    assert (acked.json()["state"], acked.json()["acked_by"]) == ("active_ack", "li")
    assert client.post(f"/api/alarms/{alarm_id}/ack", headers=OFFICER).status_code == 409
    assigned = client.post(
        f"/api/alarms/{alarm_id}/assign", headers=OFFICER, json={"assignee": "zhang"}
    )
    assert assigned.json()["assignee"] == "zhang"
    assert (
        client.post(
            f"/api/alarms/{alarm_id}/comment", headers=OFFICER, json={"text": "已派人处理"}
        ).status_code
        == 200
    )
    assert (
        client.post(
            f"/api/alarms/{alarm_id}/comment", headers=OFFICER, json={"text": ""}
        ).status_code
        == 422
    )
    cleared = client.post(
        f"/api/alarms/{alarm_id}/clear", headers=OFFICER, json={"note": "set upright"}
    )
    assert cleared.json()["state"] == "cleared_ack"
    detail = client.get(f"/api/alarms/{alarm_id}", headers=VIEWER).json()
    assert [(h["action"], h["actor"]) for h in detail["history"]] == [
        ("raise", "system"),
        ("ack", "li"),
        ("assign", "li"),
        ("comment", "li"),
        ("clear", "li"),
    ]
    assert detail["history"][3]["note"] == "已派人处理"
    assert client.get("/api/alarms/nope", headers=VIEWER).status_code == 404
    assert client.post("/api/alarms/nope/ack", headers=OFFICER).status_code == 404


def test_no_tokens_means_read_open_and_writes_refused(tmp_path: Path) -> None:
    client, service = make_app(tmp_path, tokens="")
    alarm_id, _ = seed(service)
    assert client.get("/api/alarms").status_code == 200
    refused = client.post(f"/api/alarms/{alarm_id}/ack")
    assert refused.status_code == 403
    assert "HUB_API_TOKENS is empty" in refused.json()["detail"]["message"]


def test_token_table_errors() -> None:
    with pytest.raises(ValueError, match="unknown role 'boss'"):
        auth.TokenTable.parse("a:boss:x")
    with pytest.raises(ValueError, match="name:role:token"):
        auth.TokenTable.parse("a:viewer")
    table = auth.TokenTable.parse(" a:viewer:x:y , b:officer:z ")
    user = table.lookup("x")  # the fourth part is the site list
    assert user is not None and user.name == "a" and user.sites == frozenset({"y"})
    both = auth.TokenTable.parse("c:viewer:w:guoyuan|fuping").lookup("w")
    assert both is not None and both.sites == frozenset({"guoyuan", "fuping"})
    every = table.lookup("z")
    assert every is not None and every.sites is None
    with pytest.raises(ValueError, match="bad site id"):
        auth.TokenTable.parse("a:viewer:x:Guo Yuan")
