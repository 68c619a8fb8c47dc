"""Alarm lifecycle: the four states, history, outputs, webhooks (real HTTP), PostgreSQL."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from hub.alarms.model import AlarmNotFound, InvalidTransition
from hub.alarms.service import AlarmService
from hub.alarms.webhooks import WebhookSender
from hub.db import make_engine
from hub.model import Point
from hub.sites import Site, SiteRegistry

S = 1_000_000_000
T0 = 1_795_000_000 * S
SITES = SiteRegistry(
    [
        Site.model_validate(
            {
                "site": "ltp",
                "name": "Town",
                "communities": [{"id": "c1", "name": "One"}],
                "devices": [{"id": "L1", "model": "XS-FL200", "community": "c1"}],
            }
        )
    ]
)


class Recorder:
    def __init__(self) -> None:
        self.points: list[Point] = []
        self.published: list[tuple[str, bytes, bool]] = []

    def publish(self, topic: str, payload: bytes, retain: bool) -> None:
        self.published.append((topic, payload, retain))


def make_service(engine: Engine, rec: Recorder, **kwargs: Any) -> AlarmService:
    return AlarmService(
        engine,
        emit_points=rec.points.extend,
        publish=rec.publish,
        sites=SITES,
        flush_interval_s=0,
        **kwargs,
    )


def raise_(
    svc: AlarmService,
    severity: str = "warning",
    value: Any = 11.3,
    at: int = T0,
    rule: str = "battery_low",
) -> str:
    return svc.raise_or_update(
        "L1",
        "ltp",
        "flashing_light",
        rule,
        severity,
        value,
        f"Battery low: {value} V",
        f"电池电压低：{value} V",
        at,
    )


@pytest.fixture
def sqlite(tmp_path: Path) -> Engine:
    return make_engine(f"sqlite:///{tmp_path / 'alarms.sqlite'}")


def test_full_lifecycle_with_history(sqlite: Engine) -> None:
    rec = Recorder()
    svc = make_service(sqlite, rec)
    first = raise_(svc)
    assert raise_(svc, value=11.2, at=T0 + 60 * S) == first
    alarm = svc.get(first)
    assert (alarm["state"], alarm["count"], alarm["value"]) == ("active_unack", 2, 11.2)
    assert alarm["raised_at"] == "2026-11-18T11:06:40.000Z"
    assert alarm["last_seen_at"] == "2026-11-18T11:07:40.000Z"
    assert alarm["model"] == "XS-FL200" and alarm["community"] == "c1"

    svc.ack(first, "li.wei")
    assert svc.get(first)["state"] == "active_ack"
    with pytest.raises(InvalidTransition):
        svc.ack(first, "li.wei")
    raise_(svc, "major", 10.5, T0 + 120 * S)  # escalation needs attention again
    alarm = svc.get(first)
    assert (alarm["state"], alarm["severity"], alarm["acked_by"]) == ("active_unack", "major", None)
    svc.ack(first, "li.wei")
    raise_(svc, "warning", 11.2, T0 + 180 * S)  # de-escalation keeps the ack
    assert svc.get(first)["state"] == "active_ack"
    svc.assign(first, "li.wei", "zhang.san")
    svc.comment(first, "zhang.san", "on my way")
    assert svc.auto_clear("L1", "battery_low", T0 + 240 * S) == first
    alarm = svc.get(first)
    assert alarm["state"] == "cleared_ack" and alarm["cleared_at"] is not None
    assert alarm["assignee"] == "zhang.san"
    history = [(h["action"], h["actor"], h["to_state"]) for h in alarm["history"]]
    assert history == [
        ("raise", "system", "active_unack"),
        ("ack", "li.wei", "active_ack"),
        ("escalate", "system", "active_unack"),
        ("ack", "li.wei", "active_ack"),
        ("deescalate", "system", "active_ack"),
        ("assign", "li.wei", "active_ack"),
        ("comment", "zhang.san", "active_ack"),
        ("clear", "system", "cleared_ack"),
    ]
    assert alarm["history"][6]["note"] == "on my way"
    # closed: the next breach is a new alarm
    second = raise_(svc, at=T0 + 300 * S)
    assert second != first
    assert svc.auto_clear("L1", "other_rule", T0) is None


def test_cleared_unack_reopens_same_alarm_and_manual_clear(sqlite: Engine) -> None:
    rec = Recorder()
    svc = make_service(sqlite, rec)
    first = raise_(svc)
    svc.auto_clear("L1", "battery_low", T0 + 60 * S)
    assert svc.get(first)["state"] == "cleared_unack"
    assert raise_(svc, at=T0 + 120 * S) == first
    alarm = svc.get(first)
    assert (alarm["state"], alarm["count"], alarm["cleared_at"]) == ("active_unack", 2, None)
    svc.clear(first, "li.wei", "fixed on site")
    assert svc.get(first)["state"] == "cleared_unack"
    with pytest.raises(InvalidTransition):
        svc.clear(first, "li.wei")
    svc.ack(first, "li.wei")
    assert svc.get(first)["state"] == "cleared_ack"
    with pytest.raises(InvalidTransition):
        svc.assign(first, "li.wei", "x")
    with pytest.raises(AlarmNotFound):
        svc.ack("nope", "li.wei")


def test_outputs_points_and_retained_payloads(sqlite: Engine) -> None:
    rec = Recorder()
    svc = make_service(sqlite, rec)
    alarm_id = raise_(svc)
    raise_(svc, value=11.1, at=T0 + 60 * S)  # a repeat: no point, republished on flush
    svc.flush(force=True)
    svc.ack(alarm_id, "li.wei")
    svc.auto_clear("L1", "battery_low", T0 + 120 * S)
    states = [p.field("state") for p in rec.points]
    assert states == ["active_unack", "active_ack", "cleared_ack"]
    point = rec.points[0]
    assert point.measurement == "alarm"
    assert dict(point.tags) == {
        "device_id": "L1",
        "site": "ltp",
        "model": "XS-FL200",
        "kind": "flashing_light",
        "rule": "battery_low",
        "community": "c1",
    }
    assert point.field("alarm_id") == alarm_id and point.field("value") == 11.3
    assert point.field("severity") == "warning"
    topics = {t for t, _, _ in rec.published}
    assert topics == {"hub/alarms/ltp/L1/battery_low"}
    assert all(retain for _, _, retain in rec.published)
    payloads = [p for _, p, _ in rec.published]
    assert json.loads(payloads[0])["state"] == "active_unack"
    assert json.loads(payloads[1])["count"] == 2
    assert payloads[-1] == b""


def test_open_alarms_survive_a_new_service(sqlite: Engine) -> None:
    svc = make_service(sqlite, Recorder())
    alarm_id = raise_(svc)
    raise_(svc, value=11.0, at=T0 + 60 * S)
    svc.close()
    again = make_service(sqlite, Recorder())
    assert again.open_alarms() == [("L1", "ltp", "flashing_light", "battery_low", "warning")]
    assert raise_(again, at=T0 + 120 * S) == alarm_id
    assert again.get(alarm_id)["count"] == 3


def test_list_filters_order_and_paging(sqlite: Engine) -> None:
    svc = make_service(sqlite, Recorder())
    for index, (rule, severity) in enumerate(
        [("a", "warning"), ("b", "critical"), ("c", "minor"), ("d", "critical")]
    ):
        raise_(svc, severity, at=T0 + index * S, rule=rule)
    items, total = svc.list()
    assert total == 4
    assert [a["rule"] for a in items] == ["d", "b", "c", "a"]
    assert [a["rule"] for a in svc.list(sort="time")[0]] == ["d", "c", "b", "a"]
    assert [a["rule"] for a in svc.list(severity="critical")[0]] == ["d", "b"]
    page, total = svc.list(limit=2, offset=2)
    assert total == 4 and [a["rule"] for a in page] == ["c", "a"]
    svc.auto_clear("L1", "a", T0 + 10 * S)
    assert [a["rule"] for a in svc.list(state="cleared")[0]] == ["a"]
    assert svc.list(since_ns=T0 + 2 * S)[1] == 2
    with pytest.raises(ValueError, match="unknown state"):
        svc.list(state="bogus")


# -- webhooks ------------------------------------------------------------------------------------


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]]
    fail_first: int

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server: Any = self.server
        if server.fail_first > 0:
            server.fail_first -= 1
            self.send_response(503)
            self.end_headers()
            return
        server.received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Any]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.received = []
    server.fail_first = 2
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_webhook_signed_and_retried(sqlite: Engine, receiver: Any) -> None:
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    sender = WebhookSender([url], "s3cret", backoff_s=0.05)
    svc = make_service(sqlite, Recorder(), webhooks=sender)
    alarm_id = raise_(svc)
    deadline = time.monotonic() + 10
    while not receiver.received and time.monotonic() < deadline:
        time.sleep(0.02)
    sender.close()
    assert receiver.received, "no webhook delivery"
    headers, body = receiver.received[0]
    # the signed material is "<X-Hub-Timestamp>.<body>" (replays can be refused)
    material = headers["X-Hub-Timestamp"].encode() + b"." + body
    expected = "sha256=" + hmac.new(b"s3cret", material, hashlib.sha256).hexdigest()
    assert headers["X-Hub-Signature-256"] == expected
    assert abs(int(headers["X-Hub-Timestamp"]) - time.time()) < 60
    event = json.loads(body)
    assert event["event"] == "alarm.raise" and event["alarm"]["id"] == alarm_id
    assert headers["X-Hub-Event"] == "alarm.raise"
    assert sender.sent == 1 and sender.failed == 0


def test_webhook_queue_drops_oldest_without_blocking() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sender = WebhookSender(
        [f"http://127.0.0.1:{port}/"], "k", queue_size=3, max_attempts=3, backoff_s=5
    )
    started = time.monotonic()
    for index in range(20):
        sender.submit("alarm.raise", {"n": index})
    assert time.monotonic() - started < 0.5
    assert sender.dropped >= 16
    assert sender.pending() <= 3
    sender.close(timeout_s=2)


def test_webhook_flood_never_pushes_a_critical_alarm_out() -> None:
    """#14 item 9: a flood of minor events (hazards) cannot drop a critical alarm."""
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sender = WebhookSender(
        [f"http://127.0.0.1:{port}/"], "k", queue_size=3, max_attempts=3, backoff_s=5
    )
    for index in range(5):
        sender.submit("alarm.raise", {"alarm": {"id": f"w{index}", "severity": "warning"}})
    sender.submit("alarm.raise", {"alarm": {"id": "fire", "severity": "critical"}})
    for index in range(50):
        sender.submit("alarm.raise", {"alarm": {"id": f"i{index}", "severity": "info"}})
    pending = [json.loads(body)["alarm"]["id"] for _e, body, _r in sender._workers[0].pending]
    assert "fire" in pending and len(pending) <= 3
    assert sender.dropped >= 50
    sender.close(timeout_s=2)


# -- PostgreSQL ------------------------------------------------------------------------------------

def test_alarm_store_on_real_postgres(pg_url: str) -> None:
    engine = make_engine(pg_url)
    deadline = time.monotonic() + 10
    while True:
        try:
            svc = make_service(engine, Recorder())
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    alarm_id = raise_(svc)
    raise_(svc, "major", 10.5, T0 + 60 * S)
    svc.ack(alarm_id, "li.wei")
    svc.comment(alarm_id, "li.wei", "送修")
    svc.close()
    again = make_service(engine, Recorder())
    alarm = again.get(alarm_id)
    assert (alarm["state"], alarm["severity"], alarm["count"]) == ("active_ack", "major", 2)
    assert [h["action"] for h in alarm["history"]] == ["raise", "escalate", "ack", "comment"]
    assert alarm["history"][3]["note"] == "送修"
    assert again.list(state="active")[1] == 1
    engine.dispose()


def test_a_failing_transition_hook_op_never_keeps_alarms_out(sqlite: Engine) -> None:
    from sqlalchemy import text

    svc = make_service(sqlite, Recorder())
    ran: list[str] = []

    def bad_op(session: Any) -> None:
        session.execute(text("SELECT * FROM no_such_table"))

    def good_op(session: Any) -> None:
        ran.append("good")

    svc.add_transition_hook(lambda action, alarm, actor: bad_op)
    svc.add_transition_hook(lambda action, alarm, actor: good_op)
    alarm_id = raise_(svc)
    svc.flush(force=True)
    assert svc.store.get(alarm_id) is not None  # written although an op failed
    assert "good" in ran  # the other op still ran, in its own transaction
    assert svc.flush(force=True) == 0  # nothing requeued forever
    svc.close()
