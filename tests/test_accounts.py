"""Accounts: `hub users`, sign-in, sessions (cookie flags, expiry, CSRF), lockout, audit rows.

The account and audit tables are exercised on SQLite and PostgreSQL (``state_url``).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session

from hub.accounts.store import AccountStore, LoginThrottle
from hub.accounts.tables import SessionRow
from hub.api import auth
from hub.api.app import create_app
from hub.cli import main
from hub.runtime import Hub
from hub.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
FAST = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)  # tests only
PASSWORD = "correct horse battery"


def _hub(tmp_path: Path, url: str, **extra: object) -> Hub:
    settings = Settings(data_dir=tmp_path / "data", sites_dir=ROOT / "sites",
                        mqtt_url="mqtt://127.0.0.1:9", database_url=url, **extra)
    hub = Hub(settings)
    hub.extensions["accounts"] = AccountStore(
        hub.engine, session_ttl_s=settings.session_ttl_s, hasher=FAST,
        throttle=LoginThrottle(settings.login_max_failures, settings.login_lockout_s,
                               settings.login_lockout_s))
    return hub


@pytest.fixture
def hub(tmp_path: Path, state_url: str) -> Iterator[Hub]:
    hub = _hub(tmp_path, state_url)
    yield hub
    hub.engine.dispose()


def _users(argv: list[str], url: str, stdin: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(["users", *argv, "--database-url", url])


def test_hub_users_commands(state_url: str, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert _users(["add", "li", "--role", "officer", "--sites", "guoyuan,fuping"], state_url,
                  PASSWORD + "\n", monkeypatch) == 0
    assert _users(["add", "boss", "--role", "admin"], state_url, PASSWORD + "\n",
                  monkeypatch) == 0
    assert _users(["add", "li", "--role", "viewer"], state_url, PASSWORD + "\n",
                  monkeypatch) == 1
    assert "exists already" in capsys.readouterr().err
    assert _users(["add", "x", "--role", "viewer", "--sites", "guoyan"], state_url,
                  PASSWORD + "\n", monkeypatch) == 2
    assert "unknown sites guoyan" in capsys.readouterr().err
    assert _users(["add", "short", "--role", "viewer"], state_url, "abc\n", monkeypatch) == 1
    assert "too short" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # no password flag: never on the command line
        main(["users", "add", "x", "--role", "viewer", "--password", "secret-pass"])
    capsys.readouterr()
    assert _users(["list"], state_url, "", monkeypatch) == 0
    listing = capsys.readouterr().out
    assert "li" in listing and "fuping,guoyuan" in listing and "boss" in listing
    hub = _hub(tmp_path, state_url)
    try:
        store = hub.extensions["accounts"]
        assert isinstance(store, AccountStore)
        user = store.authenticate("li", PASSWORD)
        assert user is not None and user.sites == frozenset({"guoyuan", "fuping"})
        assert _users(["passwd", "li"], state_url, "another long one\n", monkeypatch) == 0
        assert store.authenticate("li", PASSWORD) is None
        assert store.authenticate("li", "another long one") is not None
        assert _users(["disable", "li"], state_url, "", monkeypatch) == 0
        assert store.authenticate("li", "another long one") is None
        assert _users(["enable", "li"], state_url, "", monkeypatch) == 0
        assert _users(["remove", "li"], state_url, "", monkeypatch) == 0
        assert store.get("li") is None
        audit = hub.extensions.get("audit")
        app = create_app(hub)
        items, _ = app.state.audit.query(action="user")
        assert [i["action"] for i in items][:6] == [
            "user.remove", "user.enable", "user.disable", "user.passwd", "user.add", "user.add"]
        assert all(i["source"] == "cli" and i["actor"].startswith("cli:") for i in items)
        del audit
    finally:
        hub.engine.dispose()


def test_sign_in_session_cookie_csrf_logout_and_audit(hub: Hub) -> None:
    app = create_app(hub)
    app.state.accounts.add("zhang", "officer", PASSWORD, frozenset({"guoyuan"}))
    alarm_id = hub.alarms.raise_or_update(
        "GY-FL-0001", "guoyuan", "flashing_light", "knocked_over", "critical", 80.0,
        "Light knocked over", "爆闪灯倾倒", 1_795_000_000 * 10**9)
    with TestClient(app) as client:
        assert client.get("/api/me").status_code == 401  # an account exists: reads not open
        bad = client.post("/api/login", json={"username": "zhang", "password": "nope"})
        assert bad.status_code == 401 and "hub_session" not in bad.cookies
        ok = client.post("/api/login", json={"username": "zhang", "password": PASSWORD})
        assert ok.status_code == 200, ok.text
        body = ok.json()
        assert body["name"] == "zhang" and body["sites"] == ["guoyuan"]
        cookie = ok.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        assert "Secure" not in cookie and "Max-Age=43200" in cookie
        me = client.get("/api/me")
        assert me.json() == {"name": "zhang", "role": "officer", "sites": ["guoyuan"]}
        assert me.headers["x-csrf-token"] == body["csrf_token"] == ok.headers["x-csrf-token"]
        no_csrf = client.post(f"/api/alarms/{alarm_id}/ack")
        assert no_csrf.status_code == 403 and no_csrf.json()["detail"]["error"] == "csrf"
        wrong = client.post(f"/api/alarms/{alarm_id}/ack", headers={"X-CSRF-Token": "x"})
        assert wrong.status_code == 403
        acked = client.post(f"/api/alarms/{alarm_id}/ack",
                            headers={"X-CSRF-Token": body["csrf_token"]})
        assert acked.status_code == 200 and acked.json()["acked_by"] == "zhang"
        assert client.get("/console/p/alarms").status_code == 200  # panels take the cookie
        session_cookie = client.cookies["hub_session"]
        assert client.post("/api/logout").status_code == 200
        client.cookies.set("hub_session", session_cookie)  # a copied cookie is dead now
        assert client.get("/api/me").status_code == 401
    actions = [(i["action"], i["actor"], i["ok"]) for i in app.state.audit.query()[0]]
    assert actions[:3] == [("logout", "zhang", True), ("login.ok", "zhang", True),
                           ("login.failed", "zhang", False)]
    assert app.state.audit.query()[0][1]["source"] == "testclient"


def test_cookie_is_secure_over_https_and_sessions_expire(hub: Hub) -> None:
    app = create_app(hub)
    store = app.state.accounts
    store.add("wang", "viewer", PASSWORD)
    with TestClient(app, base_url="https://hub.example") as client:
        ok = client.post("/api/login", json={"username": "wang", "password": PASSWORD})
        assert "Secure" in ok.headers["set-cookie"]
        assert client.get("/api/me").status_code == 200
        with Session(hub.engine) as session, session.begin():
            session.execute(update(SessionRow).values(expires_ns=1))
        store._cache.clear()  # the 2-second lookup cache: expiry shows at once here
        expired = client.get("/api/me")
        assert expired.status_code == 401 and "expired" in expired.json()["detail"]["message"]
        again = client.post("/api/login", json={"username": "wang", "password": PASSWORD})
        assert again.status_code == 200
        store.set_disabled("wang", True)  # a disabled user's sessions end
        assert client.get("/api/me").status_code == 401


def test_repeated_failures_lock_the_name(tmp_path: Path, state_url: str) -> None:
    hub = _hub(tmp_path, state_url, login_max_failures=3, login_lockout_s=60)
    try:
        app = create_app(hub)
        app.state.accounts.add("zhao", "viewer", PASSWORD)
        with TestClient(app) as client:
            codes = [client.post("/api/login", json={"username": "zhao", "password": "x"})
                     .status_code for _ in range(3)]
            assert codes == [401, 401, 401]
            locked = client.post("/api/login", json={"username": "zhao", "password": PASSWORD})
            assert locked.status_code == 429
            assert int(locked.headers["retry-after"]) > 0
            assert "3 failed sign-ins lock a name for 60 s" in locked.json()["detail"]["message"]
            unknown = [client.post("/api/login", json={"username": "ghost", "password": "x"})
                       .status_code for _ in range(4)]
            assert unknown == [401, 401, 401, 429]  # unknown names lock the same way
        assert app.state.audit.query(action="login.locked")[1] == 2
    finally:
        hub.engine.dispose()


def test_only_spaces_in_api_tokens_is_an_error_not_open_reads() -> None:
    for text in ("   ", " , ", "\t"):
        with pytest.raises(ValueError, match="HUB_API_TOKENS has no entry"):
            auth.TokenTable.parse(text)
    assert auth.TokenTable.parse("").empty


def test_security_headers_and_docs_behind_a_token(tmp_path: Path) -> None:
    hub = _hub(tmp_path, f"sqlite:///{tmp_path / 's.sqlite'}", api_docs="token",
               api_tokens="ops:viewer:t-ops")
    try:
        with TestClient(create_app(hub)) as client:
            page = client.get("/")
            csp = page.headers["content-security-policy"]
            assert "frame-ancestors 'none'" in csp and "script-src 'self';" in csp
            assert page.headers["x-content-type-options"] == "nosniff"
            assert page.headers["referrer-policy"] == "same-origin"
            assert client.get("/api/health").headers["x-frame-options"] == "DENY"
            assert client.get("/openapi.json").status_code == 401
            assert client.get("/docs").status_code == 401
            spec = client.get("/openapi.json", headers={"Authorization": "Bearer t-ops"})
            assert spec.status_code == 200 and "/api/login" in spec.json()["paths"]
    finally:
        hub.engine.dispose()
    hub = _hub(tmp_path / "b", f"sqlite:///{tmp_path / 'b.sqlite'}", api_docs="off")
    try:
        with TestClient(create_app(hub)) as client:
            assert client.get("/openapi.json").status_code == 404
    finally:
        hub.engine.dispose()


def test_token_changes_leave_one_audit_row_per_change(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 't.sqlite'}"
    for tokens in ("a:viewer:one", "a:viewer:one", "a:viewer:two,b:admin:three:guoyuan"):
        hub = _hub(tmp_path, url, api_tokens=tokens)
        try:
            create_app(hub)
        finally:
            hub.engine.dispose()
    hub = _hub(tmp_path, url, api_tokens="a:viewer:two,b:admin:three:guoyuan")
    try:
        rows, total = create_app(hub).state.audit.query(action="config.tokens")
    finally:
        hub.engine.dispose()
    assert total == 2
    assert rows[0]["detail"]["tokens"] == [
        {"name": "a", "role": "viewer", "sites": None},
        {"name": "b", "role": "admin", "sites": ["guoyuan"]}]
    assert "two" not in str(rows[0]) and "three" not in str(rows[0])


def test_the_live_stream_takes_no_token_in_the_url(tmp_path: Path) -> None:
    """A token in ``?access_token=`` lands in access logs: refused, even a valid one."""
    hub = _hub(tmp_path, f"sqlite:///{tmp_path / 'e.sqlite'}", api_tokens="ops:viewer:t-ops")
    try:
        with TestClient(create_app(hub)) as client:
            refused = client.get("/api/events?access_token=t-ops")
            assert refused.status_code == 401
            assert "missing bearer token or session" in refused.json()["detail"]["message"]
    finally:
        hub.engine.dispose()


def test_sign_in_hashing_is_bounded_and_the_audit_log_pruned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each check costs a slow hash: beyond VERIFY_AT_ONCE at once, 429 (not a queue of
    hashes); failed sign-ins with ever new names cannot grow the audit log for ever."""
    from hub.accounts import store as store_module

    hub = _hub(tmp_path, f"sqlite:///{tmp_path / 'b.sqlite'}")
    try:
        app = create_app(hub)
        accounts = app.state.accounts
        accounts.add("qian", "viewer", PASSWORD)
        monkeypatch.setattr(store_module, "VERIFY_WAIT_S", 0.05)
        for _ in range(store_module.VERIFY_AT_ONCE):  # as if that many were hashing now
            accounts._verifying.acquire()
        with TestClient(app) as client:
            busy = client.post("/api/login", json={"username": "qian", "password": PASSWORD})
            assert busy.status_code == 429
            assert f"at most {store_module.VERIFY_AT_ONCE} sign-ins" in busy.json()[
                "detail"]["message"]
            for _ in range(store_module.VERIFY_AT_ONCE):
                accounts._verifying.release()
            assert client.post("/api/login", json={"username": "qian",
                                                   "password": PASSWORD}).status_code == 200
        log = app.state.audit
        log.keep_rows = 5
        for i in range(12):
            log.record(f"x{i}", "login.failed", ok=False)
        assert log.prune() > 0
        rows, total = log.query(limit=100)
        assert total == 5 and rows[0]["actor"] == "x11"
    finally:
        hub.engine.dispose()
