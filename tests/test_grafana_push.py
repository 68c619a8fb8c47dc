"""``hub grafana push`` against a STUB Grafana: a real HTTP server on 127.0.0.1 (not Grafana).

The stub implements the few endpoints of Grafana's legacy HTTP API the push uses, with the
request shapes and status codes Grafana documents: folders (GET /api/folders/:uid, POST
/api/folders), datasources by uid (GET/PUT /api/datasources/uid/:uid, POST /api/datasources),
dashboards (GET /api/dashboards/uid/:uid, POST /api/dashboards/db with overwrite and folderUid).
Every request must carry the bearer token; any other route fails the test.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from hub.cli import main as hub_main
from hub.grafana.queries import INFLUX_UID, STATIC_UID

TOKEN = "glsa_stub_token"


class StubGrafana:
    """In-memory state of the stub Grafana plus a log of (method, path)."""

    def __init__(self) -> None:
        self.folders: dict[str, dict[str, Any]] = {}
        self.datasources: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.violations: list[str] = []
        self._ids = 0

    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    def writes(self) -> list[tuple[str, str]]:
        return [r for r in self.requests if r[0] != "GET"]


def _handler(stub: StubGrafana) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict[str, Any]:
            if not self.headers.get("Content-Type", "").startswith("application/json"):
                stub.violations.append(f"{self.command} {self.path}: not JSON")
            length = int(self.headers.get("Content-Length", "0"))
            body: dict[str, Any] = json.loads(self.rfile.read(length) or b"{}")
            return body

        def _route(self) -> None:
            stub.requests.append((self.command, self.path))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._reply(401, {"message": "Unauthorized"})
            parts = self.path.split("?")[0].strip("/").split("/")
            method = self.command
            if parts[:2] == ["api", "folders"]:
                return self._folders(method, parts[2:])
            if parts[:2] == ["api", "datasources"]:
                return self._datasources(method, parts[2:])
            if parts[:2] == ["api", "dashboards"]:
                return self._dashboards(method, parts[2:])
            stub.violations.append(f"unexpected {method} {self.path}")
            return self._reply(404, {"message": "Not found"})

        do_GET = do_POST = do_PUT = do_DELETE = _route

        def _folders(self, method: str, rest: list[str]) -> None:
            if method == "GET" and len(rest) == 1:
                folder = stub.folders.get(rest[0])
                if folder is None:
                    return self._reply(404, {"message": "folder not found"})
                return self._reply(200, folder)
            if method == "POST" and not rest:
                body = self._body()
                if not body.get("title"):
                    return self._reply(400, {"message": "folder title cannot be empty"})
                uid = body.get("uid") or f"f{stub.next_id()}"
                if uid in stub.folders:
                    return self._reply(409, {"message": "a folder with the same uid exists"})
                folder = {"id": stub.next_id(), "uid": uid, "title": body["title"], "version": 1}
                stub.folders[uid] = folder
                return self._reply(200, folder)
            stub.violations.append(f"unexpected folder call {method} {rest}")
            return self._reply(404, {"message": "Not found"})

        def _datasources(self, method: str, rest: list[str]) -> None:
            if rest[:1] == ["uid"] and len(rest) == 2:
                uid = rest[1]
                if method == "GET":
                    source = stub.datasources.get(uid)
                    if source is None:
                        return self._reply(404, {"message": "Data source not found"})
                    # Grafana never returns secrets
                    shown = {k: v for k, v in source.items() if k != "secureJsonData"}
                    return self._reply(200, shown)
                if method == "PUT":
                    if uid not in stub.datasources:
                        return self._reply(404, {"message": "Data source not found"})
                    body = self._check_source(self._body())
                    if body is None:
                        return self._reply(400, {"message": "bad datasource"})
                    stub.datasources[uid] = {**body, "id": stub.datasources[uid]["id"]}
                    return self._reply(200, {"datasource": body, "message": "Datasource updated"})
            if method == "POST" and not rest:
                body = self._check_source(self._body())
                if body is None:
                    return self._reply(400, {"message": "bad datasource"})
                names = {s["name"] for s in stub.datasources.values()}
                if body["name"] in names or body.get("uid") in stub.datasources:
                    return self._reply(409, {"message": "data source with the same name exists"})
                source = {**body, "id": stub.next_id()}
                stub.datasources[body["uid"]] = source
                return self._reply(
                    200,
                    {
                        "datasource": source,
                        "id": source["id"],
                        "message": "Datasource added",
                        "name": body["name"],
                    },
                )
            stub.violations.append(f"unexpected datasource call {method} {rest}")
            return self._reply(404, {"message": "Not found"})

        def _check_source(self, body: dict[str, Any]) -> dict[str, Any] | None:
            missing = [k for k in ("name", "type", "access") if not body.get(k)]
            if missing:
                stub.violations.append(f"datasource without {missing}")
                return None
            return body

        def _dashboards(self, method: str, rest: list[str]) -> None:
            if method == "GET" and rest[:1] == ["uid"] and len(rest) == 2:
                stored = stub.dashboards.get(rest[1])
                if stored is None:
                    return self._reply(404, {"message": "Dashboard not found"})
                return self._reply(200, stored)
            if method == "POST" and rest == ["db"]:
                body = self._body()
                board = body.get("dashboard")
                if not isinstance(board, dict) or not board.get("title"):
                    stub.violations.append("dashboards/db without dashboard.title")
                    return self._reply(400, {"message": "Dashboard title cannot be empty"})
                folder = body.get("folderUid", "")
                if folder and folder not in stub.folders:
                    return self._reply(400, {"message": "folder not found"})
                uid = board.get("uid")
                stored = stub.dashboards.get(uid) if uid else None
                if stored is not None and not body.get("overwrite"):
                    return self._reply(412, {"status": "version-mismatch"})
                version = (stored["dashboard"]["version"] + 1) if stored else 1
                saved = {
                    **board,
                    "id": stored["dashboard"]["id"] if stored else stub.next_id(),
                    "version": version,
                }
                stub.dashboards[uid] = {"dashboard": saved, "meta": {"folderUid": folder}}
                return self._reply(
                    200,
                    {
                        "id": saved["id"],
                        "uid": uid,
                        "status": "success",
                        "version": version,
                        "url": f"/d/{uid}/x",
                        "slug": "x",
                    },
                )
            stub.violations.append(f"unexpected dashboard call {method} {rest}")
            return self._reply(404, {"message": "Not found"})

    return Handler


@pytest.fixture
def stub_grafana() -> Iterator[tuple[str, StubGrafana]]:
    stub = StubGrafana()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stub))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", stub
    finally:
        server.shutdown()
        server.server_close()
        assert not stub.violations, stub.violations


def _push(url: str, *extra: str, token: str = TOKEN) -> int:
    return hub_main(
        [
            "grafana",
            "push",
            "--url",
            url,
            "--token",
            token,
            "--influx-url",
            "http://influxdb:8086",
            "--influx-db",
            "hub",
            "--influx-token",
            "influx-secret",
            *extra,
        ]
    )


UIDS = {"safety-hub-overview", "safety-hub-road", "safety-hub-patrol", "safety-hub-fire"}


def test_push_creates_folder_datasources_and_dashboards(
    stub_grafana: tuple[str, StubGrafana],
) -> None:
    url, stub = stub_grafana
    assert _push(url, "--hub-url", "https://hub.example.test") == 0
    assert set(stub.folders) == {"safety-hub"}
    assert set(stub.datasources) == {INFLUX_UID, STATIC_UID}
    influx = stub.datasources[INFLUX_UID]
    assert influx["type"] == "influxdb" and influx["url"] == "http://influxdb:8086"
    assert influx["jsonData"]["dbName"] == "hub" and influx["jsonData"]["version"] == "InfluxQL"
    assert influx["secureJsonData"]["httpHeaderValue1"] == "Token influx-secret"
    assert set(stub.dashboards) == UIDS
    for stored in stub.dashboards.values():
        assert stored["meta"]["folderUid"] == "safety-hub"
    overview = stub.dashboards["safety-hub-overview"]["dashboard"]
    hub_url = next(v for v in overview["templating"]["list"] if v["name"] == "hub_url")
    assert hub_url["query"] == "https://hub.example.test"


def test_second_push_changes_nothing_but_the_datasources(
    stub_grafana: tuple[str, StubGrafana],
) -> None:
    url, stub = stub_grafana
    assert _push(url) == 0
    versions = {uid: d["dashboard"]["version"] for uid, d in stub.dashboards.items()}
    stub.requests.clear()
    assert _push(url) == 0
    # secrets are write-only in Grafana, so datasources are always PUT; dashboards unchanged
    assert sorted(stub.writes()) == sorted(
        [
            ("PUT", f"/api/datasources/uid/{INFLUX_UID}"),
            ("PUT", f"/api/datasources/uid/{STATIC_UID}"),
        ]
    )
    assert {uid: d["dashboard"]["version"] for uid, d in stub.dashboards.items()} == versions


def test_push_updates_a_changed_dashboard_and_leaves_others_alone(
    stub_grafana: tuple[str, StubGrafana],
) -> None:
    url, stub = stub_grafana
    stub.folders["ops"] = {"id": 99, "uid": "ops", "title": "Ops", "version": 1}
    foreign = {
        "dashboard": {"uid": "ops-board", "title": "Ops", "id": 98, "version": 3},
        "meta": {"folderUid": "ops"},
    }
    stub.dashboards["ops-board"] = json.loads(json.dumps(foreign))
    assert _push(url) == 0
    stub.dashboards["safety-hub-road"]["dashboard"]["title"] = "edited by hand"
    stub.requests.clear()
    assert _push(url) == 0
    assert ("POST", "/api/dashboards/db") in stub.writes()
    assert stub.dashboards["safety-hub-road"]["dashboard"]["title"] == "Safety hub: road safety"
    assert stub.dashboards["safety-hub-road"]["dashboard"]["version"] == 2
    assert stub.dashboards["ops-board"] == foreign
    assert stub.folders["ops"]["title"] == "Ops"


def test_push_refuses_to_take_over_a_dashboard_in_another_folder(
    stub_grafana: tuple[str, StubGrafana],
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, stub = stub_grafana
    theirs = {
        "dashboard": {"uid": "safety-hub-patrol", "title": "Theirs", "id": 5, "version": 7},
        "meta": {"folderUid": "someone-else"},
    }
    stub.dashboards["safety-hub-patrol"] = json.loads(json.dumps(theirs))
    assert _push(url) == 1
    assert "not ours" in capsys.readouterr().err
    assert stub.dashboards["safety-hub-patrol"] == theirs


def test_push_with_a_wrong_token_fails(
    stub_grafana: tuple[str, StubGrafana],
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, stub = stub_grafana
    assert _push(url, token="wrong") == 1
    assert not stub.dashboards and not stub.datasources
    assert "Grafana refused" in capsys.readouterr().err
