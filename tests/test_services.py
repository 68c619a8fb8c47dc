"""The service fixtures do real work: real broker round trips, persistence, real InfluxDB."""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import conftest
import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.support import require
from tests.support.services import (
    InfluxDatabase,
    InfluxServer,
    MosquittoServer,
    ServiceError,
    free_port,
    port_open,
)

SESSION_EXPIRY_S = 24 * 3600


class Client:
    """A paho 2.x MQTT v5 client that collects what it receives (test helper)."""

    def __init__(self, server: MosquittoServer, client_id: str = "") -> None:
        self.server = server
        self.paho = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
        )
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.session_present: bool | None = None
        self.paho.on_connect = self._on_connect
        self.paho.on_subscribe = self._on_subscribe
        self.paho.on_message = lambda _c, _u, msg: self.messages.put(msg)

    def _on_connect(self, _c: Any, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        self.session_present = bool(flags.session_present)
        if not reason.is_failure:
            self.connected.set()

    def _on_subscribe(self, _c: Any, _u: Any, _mid: int, _codes: Any, _p: Any) -> None:
        self.subscribed.set()

    def connect(self, clean_start: bool = True, expiry: int | None = None) -> Client:
        props = Properties(PacketTypes.CONNECT)
        if expiry is not None:
            props.SessionExpiryInterval = expiry
        self.paho.connect(
            self.server.host, self.server.port, clean_start=clean_start, properties=props
        )
        self.paho.loop_start()
        assert self.connected.wait(10), f"no CONNACK from {self.server}"
        return self

    def subscribe(self, topic: str, qos: int = 1) -> None:
        self.subscribed.clear()
        self.paho.subscribe(topic, qos=qos)
        assert self.subscribed.wait(10), "no SUBACK"

    def publish_all(self, topic: str, payloads: list[bytes], qos: int = 1) -> None:
        infos = [self.paho.publish(topic, p, qos=qos) for p in payloads]
        for info in infos:
            info.wait_for_publish(timeout=10)
            assert info.is_published(), "broker did not acknowledge a publish"

    def receive(self, count: int, timeout: float = 10.0) -> list[mqtt.MQTTMessage]:
        deadline = time.monotonic() + timeout
        out: list[mqtt.MQTTMessage] = []
        while len(out) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                out.append(self.messages.get(timeout=left))
            except queue.Empty:
                break
        return out

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()


@pytest.fixture
def clients(mosquitto: MosquittoServer) -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        client.close()


def test_mqtt_round_trip(mosquitto: MosquittoServer, clients: list[Client]) -> None:
    assert mosquitto.url == f"mqtt://127.0.0.1:{mosquitto.port}"
    sub = Client(mosquitto)
    clients.append(sub)
    sub.connect().subscribe("site/+/telemetry")
    pub = Client(mosquitto)
    clients.append(pub)
    pub.connect()
    payloads = [f'{{"n": {i}}}'.encode() for i in range(5)]
    pub.publish_all("site/light-1/telemetry", payloads)
    pub.publish_all("site/light-1/other", [b"not for us"])
    got = sub.receive(5)
    assert [m.payload for m in got] == payloads
    assert {m.topic for m in got} == {"site/light-1/telemetry"}
    assert sub.receive(1, timeout=0.3) == []


def _queue_for_offline_session(mosquitto: MosquittoServer, n: int) -> list[bytes]:
    """Subscribe a persistent session, disconnect it, publish n QoS 1 messages for it."""
    sub = Client(mosquitto, client_id="hub-persistent")
    sub.connect(clean_start=False, expiry=SESSION_EXPIRY_S).subscribe("queued/#", qos=1)
    sub.close()
    pub = Client(mosquitto, client_id="publisher")
    pub.connect()
    payloads = [f"msg-{i:05d}".encode() for i in range(n)]
    pub.publish_all("queued/x", payloads)
    pub.close()
    return payloads


def _resume_and_receive(mosquitto: MosquittoServer, n: int) -> tuple[Client, list[bytes]]:
    sub = Client(mosquitto, client_id="hub-persistent")
    sub.connect(clean_start=False, expiry=SESSION_EXPIRY_S)
    got = [bytes(m.payload) for m in sub.receive(n, timeout=20)]
    return sub, got


def test_persistent_session_survives_restart(
    mosquitto: MosquittoServer, clients: list[Client]
) -> None:
    # 1500 > mosquitto's default max_queued_messages (1000): proves "no limit" is in effect.
    payloads = _queue_for_offline_session(mosquitto, 1500)
    port = mosquitto.port
    mosquitto.restart()
    assert mosquitto.port == port
    sub, got = _resume_and_receive(mosquitto, len(payloads))
    clients.append(sub)
    assert sub.session_present is True
    assert len(got) == len(payloads)
    assert got == payloads


def test_persistent_session_survives_kill_after_autosave(
    mosquitto: MosquittoServer, clients: list[Client]
) -> None:
    payloads = _queue_for_offline_session(mosquitto, 50)
    time.sleep(2.5)  # autosave_interval 1
    mosquitto.kill()
    assert not port_open(mosquitto.host, mosquitto.port)
    mosquitto.start()
    sub, got = _resume_and_receive(mosquitto, len(payloads))
    clients.append(sub)
    assert sub.session_present is True
    assert got == payloads


def test_mosquitto_start_survives_a_taken_port(tmp_path: Path) -> None:
    conftest.require_binary("mosquitto")
    server = MosquittoServer(tmp_path / "m")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", server.port))
        squatter.listen()
        taken = server.port
        with server:
            assert server.port != taken
            assert port_open(server.host, server.port)
    assert not server.running


def test_mosquitto_start_failure_shows_log(tmp_path: Path) -> None:
    conftest.require_binary("mosquitto")
    server = MosquittoServer(tmp_path / "m")

    def bad_config() -> None:
        server.config_path.write_text("no_such_option 1\n")

    server._write_config = bad_config  # type: ignore[method-assign]
    with pytest.raises(ServiceError, match="no_such_option"):
        server.start()
    assert not server.running


LINES = (
    'flashing_light,device_id=fl-1,site=s1,model=m1 battery_v=12.5,lamp="ok",'
    "vehicle_count=7i,charging=true 1700000000000000000\n"
    "flashing_light,device_id=fl-2,site=s1,model=m1 battery_v=11.9 1700000001000000000\n"
)


def test_influx_write_and_query(influx_db: InfluxDatabase) -> None:
    resp = httpx.post(
        f"{influx_db.url}/write", params={"db": influx_db.name, "precision": "ns"}, content=LINES
    )
    assert resp.status_code == 204, resp.text
    body = influx_db.query(
        "SELECT battery_v, lamp, vehicle_count, charging FROM flashing_light"
        " WHERE \"device_id\" = 'fl-1'"
    )
    series = body["results"][0]["series"][0]
    assert series["columns"] == ["time", "battery_v", "lamp", "vehicle_count", "charging"]
    assert series["values"] == [[1700000000000000000, 12.5, "ok", 7, True]]
    rows = influx_db.rows("SELECT count(battery_v) FROM flashing_light GROUP BY device_id")
    assert sorted((r["device_id"], r["count"]) for r in rows) == [("fl-1", 1), ("fl-2", 1)]
    assert influx_db.name in influx_db.server.databases()


def test_influx_errors_raise(influx_db: InfluxDatabase) -> None:
    with pytest.raises(ServiceError, match="database not found"):
        influx_db.server.query("SELECT * FROM flashing_light", db="no_such_db")
    with pytest.raises(ServiceError, match="parsing"):
        influx_db.query("SELECT FROM WHERE")
    with pytest.raises(ServiceError, match="400"):
        influx_db.write("not line protocol at all")


def test_influx_data_survives_restart_and_kill(influx_own: InfluxServer) -> None:
    influx_own.create_database("hub")
    influx_own.write(LINES, db="hub")
    port = influx_own.port
    influx_own.restart()
    assert influx_own.port == port
    count = "SELECT count(battery_v) FROM flashing_light"
    assert influx_own.query(count, db="hub")["results"][0]["series"][0]["values"][0][1] == 2
    influx_own.write("flashing_light,device_id=fl-3,site=s1,model=m1 battery_v=1 1", db="hub")
    influx_own.kill()  # WAL is fsynced per write: an acknowledged write survives SIGKILL
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{influx_own.url}/ping", timeout=1)
    influx_own.start()
    assert influx_own.query(count, db="hub")["results"][0]["series"][0]["values"][0][1] == 3


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_missing_binary_skips_or_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(require, "which", lambda _name: None)  # where require_binary looks
    monkeypatch.delenv("HUB_REQUIRE_SERVICES", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install influxdb"):
        conftest.require_binary("influxd")
    monkeypatch.setenv("HUB_REQUIRE_SERVICES", "1")
    with pytest.raises(pytest.fail.Exception, match="real service required"):
        conftest.require_binary("mosquitto")


def test_influx_accepts_more_than_100k_tag_values(influx_db: InfluxDatabase) -> None:
    # influxd 1.x rejects writes past max-values-per-tag (default 100000); benchmarks need more.
    n = 120_000
    for start in range(0, n, 30_000):
        influx_db.write(
            "\n".join(
                f"device_status,device_id=d{i},site=s,model=m,kind=k online=true 1"
                for i in range(start, start + 30_000)
            )
        )
    rows = influx_db.rows("SELECT count(online) FROM device_status")
    assert rows[0]["count"] == n
