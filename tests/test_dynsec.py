"""Per-device broker credentials with the real Mosquitto and its dynamic-security plugin.

A device onboarded through the running hub's API publishes its own topics at once (its next
reading lands in InfluxDB tagged with its site), cannot publish another device's, and is locked
out once retired; client ids are bound to user names, so no device password can take over the
hub's MQTT session (``safety-hub``).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hub.intake.dynsec import Dynsec, setup
from tests.support.hubproc import HubProcess
from tests.support.require import require_binary
from tests.support.services import InfluxDatabase, MosquittoServer

ROOT = Path(__file__).resolve().parent.parent
ADMIN = ("admin", "admin-secret-1")
HUB_PASSWORD = "hub-secret-123"
NOT_AUTHORIZED = 135
HEADERS = {"Authorization": "Bearer t-root"}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoServer]:
    server = MosquittoServer(tmp_path / "mosquitto", binary=require_binary("mosquitto"),
                             dynsec_admin=ADMIN)
    server.start()
    try:
        setup(Dynsec(server.admin_url), "hub", HUB_PASSWORD, "safety-hub",
              ["guoyuan", "fuping", "longtoupu"])
        yield server
    finally:
        server.stop()


class Conn:
    """A paho client that records its CONNACK and disconnections."""

    def __init__(self, port: int, user: str, password: str, client_id: str,
                 clean: bool = True) -> None:
        self.client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=client_id, protocol=paho.MQTTv5)
        self.client.username_pw_set(user, password)
        self.connack: list[Any] = []
        self.disconnects = 0
        self.seen: list[tuple[str, bytes]] = []
        self.connected = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = lambda c, u, m: self.seen.append((m.topic, m.payload))
        props = None
        if not clean:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, clean_start=clean, properties=props)
        self.client.loop_start()

    def _on_connect(self, c: Any, u: Any, f: Any, rc: Any, p: Any = None) -> None:
        self.connack.append(rc)
        self.connected.set()

    def _on_disconnect(self, *args: Any) -> None:
        self.disconnects += 1

    def accepted(self, timeout: float = 5.0) -> bool:
        assert self.connected.wait(timeout), "no CONNACK"
        return not self.connack[0].is_failure

    def publish(self, topic: str, payload: bytes = b"{}") -> int:
        done = threading.Event()
        codes: dict[int, int] = {}

        def on_publish(c: Any, u: Any, mid: int, rc: Any, props: Any) -> None:
            codes[mid] = rc.value
            done.set()

        self.client.on_publish = on_publish
        info = self.client.publish(topic, payload, qos=1)
        assert done.wait(5), f"no PUBACK for {topic}"
        return codes[info.mid]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _wait(check: Any, timeout: float = 15.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or check}")


def test_a_device_password_cannot_take_the_hubs_client_id(broker: MosquittoServer) -> None:
    dynsec = Dynsec(broker.admin_url)
    password = dynsec.add_device("FP-R03", ["patrol/FP-R03/scan", "patrol/FP-R03/status"])
    hub = Conn(broker.port, "hub", HUB_PASSWORD, "safety-hub", clean=False)
    assert hub.accepted()
    hub.client.subscribe("patrol/#", qos=1)
    thief = Conn(broker.port, "FP-R03", password, "safety-hub", clean=False)
    assert not thief.accepted()  # bound: FP-R03 may only be client FP-R03
    thief.close()
    other_id = Conn(broker.port, "hub", HUB_PASSWORD, "not-the-hub")
    assert not other_id.accepted()  # and the hub's user only client safety-hub
    other_id.close()
    device = Conn(broker.port, "FP-R03", password, "FP-R03")
    assert device.accepted()
    assert device.publish("patrol/FP-R03/status", b"online") == 0
    _wait(lambda: ("patrol/FP-R03/status", b"online") in hub.seen, what="the hub's message")
    assert hub.disconnects == 0 and hub.client.is_connected()
    device.close()
    hub.close()


def test_site_reader_roles_read_one_townships_alarms(broker: MosquittoServer) -> None:
    dynsec = Dynsec(broker.admin_url)
    dynsec.ensure_client("gy-screen", "screen-pass-1", "gy-screen", ["alarms-guoyuan"])
    screen = Conn(broker.port, "gy-screen", "screen-pass-1", "gy-screen")
    assert screen.accepted()
    screen.client.subscribe("hub/alarms/#", qos=1)  # denied beyond its site: nothing else
    screen.client.subscribe("hub/alarms/guoyuan/#", qos=1)
    hub = Conn(broker.port, "hub", HUB_PASSWORD, "safety-hub")
    assert hub.accepted()
    # 16: accepted, "no matching subscribers" (the screen may not read Fuping's)
    assert hub.publish("hub/alarms/fuping/FP-R01/battery_low", b"B") == 16
    assert hub.publish("hub/alarms/guoyuan/GY-FL-0001/knocked_over", b"A") == 0
    _wait(lambda: screen.seen, what="the Guoyuan alarm")
    time.sleep(0.3)  # the other site's message, if it were delivered, came first
    assert screen.seen == [("hub/alarms/guoyuan/GY-FL-0001/knocked_over", b"A")]
    screen.close()
    hub.close()


def _telemetry() -> bytes:
    return orjson.dumps({"ts": int(time.time() * 1000), "mode": "flash", "lamp": "ok",
                         "battery_mv": 12500})


def test_onboarded_device_publishes_at_once_and_is_locked_out_when_retired(
    broker: MosquittoServer, influx_db: InfluxDatabase, tmp_path: Path
) -> None:
    hub = HubProcess(
        tmp_path, mqtt_url=f"mqtt://hub:{HUB_PASSWORD}@127.0.0.1:{broker.port}",
        broker_admin_url=broker.admin_url, influx_url=influx_db.url, influx_db=influx_db.name,
        api_tokens="root:admin:t-root", sites_dir=ROOT / "sites", batch_interval_s=0.05)
    hub.start()
    try:
        device_id = f"GY-FL-9{uuid.uuid4().int % 1000:03d}"
        created = httpx.post(f"{hub.api}/api/devices", headers=HEADERS, timeout=30, json={
            "id": device_id, "model": "XS-FL200", "site": "guoyuan", "community": "huayuan",
            "name": "新路口"})
        assert created.status_code == 201, created.text
        password = created.json()["mqtt_password"]
        device = Conn(broker.port, device_id, password, device_id)
        assert device.accepted()
        own = f"roadsafety/flashlight/{device_id}/telemetry"
        assert device.publish(own, _telemetry()) == 0
        other = "roadsafety/flashlight/GY-FL-0001/telemetry"
        assert device.publish(other, _telemetry()) == NOT_AUTHORIZED
        query = (f"SELECT battery_v, site FROM flashing_light WHERE device_id = '{device_id}'")
        rows = _wait(lambda: influx_db.rows(query), what="the reading in InfluxDB")
        assert rows[0]["site"] == "guoyuan"  # tagged with its site from its first message
        assert not influx_db.rows("SELECT battery_v FROM flashing_light WHERE "
                                  "device_id = 'GY-FL-0001' AND site = 'unassigned'")
        hub.stop()
        hub.start()  # survives a restart
        view = httpx.get(f"{hub.api}/api/devices/{device_id}", headers=HEADERS).json()
        assert view["registered"] and view["site"] == "guoyuan"
        retired = httpx.delete(f"{hub.api}/api/devices/{device_id}", headers=HEADERS,
                               timeout=30)
        assert retired.status_code == 200, retired.text
        _wait(lambda: not device.client.is_connected(), what="the broker to drop the device")
        device.close()
        again = Conn(broker.port, device_id, password, device_id)
        assert not again.accepted()  # locked out
        again.close()
        audit = httpx.get(f"{hub.api}/api/audit?action=device", headers=HEADERS).json()
        assert [r["action"] for r in audit["items"]] == ["device.retire", "device.add"]
    finally:
        hub.stop()


def test_hub_broker_setup_command(broker: MosquittoServer, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """``hub broker setup --devices --simulator sim`` against the real plugin."""
    from hub.cli import main

    monkeypatch.setenv("SIM_MQTT_PASSWORD", "sim-password-1")
    code = main(["broker", "setup", "--devices", "--simulator", "sim",
                 "--mqtt-url", f"mqtt://hub:{HUB_PASSWORD}@127.0.0.1:{broker.port}",
                 "--broker-admin-url", broker.admin_url,
                 "--sites-dir", str(ROOT / "sites")])
    assert code == 0
    lines = dict(line.split(",", 1) for line in capsys.readouterr().out.splitlines())
    assert "GY-FL-0001" in lines and "LTP-MFS-01" in lines
    light = Conn(broker.port, "GY-FL-0001", lines["GY-FL-0001"], "GY-FL-0001")
    assert light.accepted()
    assert light.publish("roadsafety/flashlight/GY-FL-0001/status", b"online") in (0, 16)
    assert light.publish("firestation/LTP-MFS-01/status", b"online") == NOT_AUTHORIZED
    light.close()
    sim = Conn(broker.port, "sim", "sim-password-1", "sim-any-id")
    assert sim.accepted()
    assert sim.publish("firestation/LTP-MFS-01/telemetry", b"{}") in (0, 16)
    assert sim.publish("hub/status", b"x") == NOT_AUTHORIZED
    sim.close()
