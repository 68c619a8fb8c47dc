"""Every default rule driven by real payloads through the real broker into the running hub.

Durations run on device time, so the tests control them with the timestamps they publish
(readings one to eleven minutes apart, all in the recent past) instead of waiting.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.golden_cases import MFS, XS, YK
from tests.support.hubproc import HubProcess
from tests.support.mqtt_util import Collector, publish_many

GOLDEN_SITES = Path(__file__).parent / "golden" / "_sites"
TOKENS = "ops:officer:t-officer,wall:viewer:t-viewer"
OFFICER = {"Authorization": "Bearer t-officer"}
VIEWER = {"Authorization": "Bearer t-viewer"}


class Driver:
    """Publishes device messages with device times from a moving clock and reads alarms back."""

    def __init__(self, hub: HubProcess, mqtt_url: str) -> None:
        self.hub = hub
        self.mqtt_url = mqtt_url
        self.t = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)

    def at(self, minutes: float) -> datetime:
        """Advance the device clock and return it."""
        self.t += timedelta(minutes=minutes)
        return self.t

    def send(self, topic: str, payload: bytes | dict[str, Any], retain: bool = False) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        publish_many(self.mqtt_url, [(topic, body, 1, retain)])

    def alarms(self, device_id: str) -> dict[str, dict[str, Any]]:
        response = httpx.get(
            f"{self.hub.api}/api/alarms",
            headers=VIEWER,
            params={"device_id": device_id, "limit": 200},
            timeout=10,
        )
        response.raise_for_status()
        return {a["rule"]: a for a in response.json()}

    def wait(
        self,
        device_id: str,
        check: Callable[[dict[str, dict[str, Any]]], bool],
        timeout: float = 15,
    ) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        alarms: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            alarms = self.alarms(device_id)
            if check(alarms):
                return alarms
            time.sleep(0.2)
        raise AssertionError(
            f"timed out; alarms of {device_id}: {json.dumps(alarms, indent=1)}\n{self.hub.log()}"
        )


    def processed_since(self, before: int, count: int, timeout: float = 15) -> None:
        """Wait until the hub's pipeline has taken ``count`` messages since ``before``."""
        deadline = time.monotonic() + timeout
        while self.hub.health()["pipeline"]["processed"] < before + count:
            if time.monotonic() > deadline:
                raise AssertionError(f"message not processed\n{self.hub.log()}")
            time.sleep(0.05)


def has(rule: str, severity: str, state: str = "active_unack") -> Callable[[dict[str, Any]], bool]:
    return lambda alarms: (
        rule in alarms and (alarms[rule]["severity"], alarms[rule]["state"]) == (severity, state)
    )


def cleared(rule: str) -> Callable[[dict[str, Any]], bool]:
    return lambda alarms: rule in alarms and alarms[rule]["state"].startswith("cleared")


@pytest.fixture
def driver(tmp_path: Path, mosquitto: Any, influx_db: Any) -> Any:
    hub = HubProcess(
        tmp_path,
        mqtt_url=mosquitto.url,
        influx_url=influx_db.url,
        influx_db=influx_db.name,
        sites_dir=GOLDEN_SITES,
        api_tokens=TOKENS,
    )
    hub.start()
    try:
        yield Driver(hub, mosquitto.url)
    finally:
        hub.stop()


def light(d: Driver, minutes: float, **changes: Any) -> None:
    d.send(
        "roadsafety/flashlight/GY-FL-0001/telemetry",
        {**XS, "ts": int(d.at(minutes).timestamp() * 1000), **changes},
    )


def test_flashing_light_rules(driver: Driver, mosquitto: Any, influx_db: Any) -> None:
    d = driver
    watcher = Collector(mosquitto.url, "hub/alarms/#")
    dev = "GY-FL-0001"
    light(d, 0)
    light(d, 1, lamp="fail")
    d.wait(dev, has("lamp_fault", "major"))
    light(d, 1, lamp="degraded")
    alarms = d.wait(dev, has("lamp_fault", "minor"))  # de-escalates in place, same alarm
    first_id = alarms["lamp_fault"]["id"]
    light(d, 1, lamp="ok")
    alarms = d.wait(dev, cleared("lamp_fault"))
    assert alarms["lamp_fault"]["id"] == first_id and alarms["lamp_fault"]["count"] >= 2

    light(d, 1, battery_mv=11300)  # below 11.5 V: must hold 10 minutes
    light(d, 5, battery_mv=11250)
    assert "battery_low" not in d.alarms(dev)
    light(d, 6, battery_mv=11200)
    d.wait(dev, has("battery_low", "warning"))
    light(d, 1, battery_mv=10700)
    d.wait(dev, has("battery_low", "major"))
    light(d, 1, battery_mv=11600)  # hysteresis: not above 11.8 V yet
    assert not d.alarms(dev)["battery_low"]["state"].startswith("cleared")
    light(d, 1, battery_mv=11900)
    d.wait(dev, cleared("battery_low"))

    light(d, 1, tilt_deg=80.0)
    d.wait(dev, has("knocked_over", "critical"))
    light(d, 1, tilt_deg=1.0, mode="off")  # no active hours in this site: always active
    d.wait(dev, lambda a: cleared("knocked_over")(a) and has("mode_off_active_hours", "major")(a))
    light(d, 1, mode="flash")
    d.wait(dev, cleared("mode_off_active_hours"))

    d.send(f"roadsafety/flashlight/{dev}/status", b"offline", retain=True)
    alarms = d.wait(dev, has("offline", "major"))

    # Retained MQTT: the current alarm JSON; empty once cleared and acknowledged.
    topic = f"hub/alarms/goldtown/{dev}/knocked_over"
    assert watcher.wait_for(lambda t, p: t == topic and b'"cleared_unack"' in p)
    knocked = d.alarms(dev)["knocked_over"]
    response = httpx.post(f"{d.hub.api}/api/alarms/{knocked['id']}/ack", headers=VIEWER)
    assert response.status_code == 403  # a viewer cannot acknowledge
    response = httpx.post(f"{d.hub.api}/api/alarms/{knocked['id']}/ack", headers=OFFICER)
    assert response.status_code == 200 and response.json()["state"] == "cleared_ack"
    assert response.json()["acked_by"] == "ops"
    assert watcher.wait_for(lambda t, p: t == topic and p == b"")
    history = httpx.get(f"{d.hub.api}/api/alarms/{knocked['id']}", headers=VIEWER).json()
    assert [h["to_state"] for h in history["history"]][-2:] == ["cleared_unack", "cleared_ack"]
    assert history["history"][-1]["actor"] == "ops"
    watcher.close()

    # Every transition is in InfluxDB's alarm measurement.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        result = influx_db.query(
            "SELECT state, severity FROM alarm"
            " WHERE device_id = 'GY-FL-0001' AND rule = 'knocked_over'"
        )
        series = result["results"][0].get("series", [])
        states = [row[1] for row in series[0]["values"]] if series else []
        if "cleared_ack" in states:
            break
        time.sleep(0.3)
    assert states[0] == "active_unack" and "cleared_unack" in states and "cleared_ack" in states


def station(d: Driver, minutes: float, **changes: Any) -> None:
    body = json.loads(json.dumps(MFS))
    body["ts"] = int(d.at(minutes).timestamp())
    for key, value in changes.items():
        if key in ("smoke", "temp_c"):
            body["env"][key] = value
        elif key == "hydrant":
            body["hydrant"]["pressure_mpa"] = value
        else:
            body[key] = value
    d.send("firestation/LTP-MFS-02/telemetry", body)


def test_fire_station_rules(driver: Driver) -> None:
    d = driver
    dev = "LTP-MFS-02"
    ok_slots = [
        {"slot": 1, "present": True, "pressure_mpa": 1.2},
        {"slot": 2, "present": True, "pressure_mpa": 1.1},
    ]
    station(d, 0, extinguishers=ok_slots)
    station(d, 1, smoke=3.5, extinguishers=ok_slots)
    d.wait(dev, has("smoke", "critical"))
    station(d, 1, smoke=0.2, temp_c=60.0, extinguishers=ok_slots)
    d.wait(dev, lambda a: cleared("smoke")(a) and has("fire_heat", "critical")(a))
    station(d, 1, temp_c=20.0, hydrant=0.12, extinguishers=ok_slots)
    d.wait(dev, lambda a: cleared("fire_heat")(a) and has("hydrant_pressure_low", "warning")(a))
    station(d, 1, temp_c=20.0, hydrant=0.08, extinguishers=ok_slots)
    d.wait(dev, has("hydrant_pressure_low", "major"))
    station(
        d,
        1,
        hydrant=0.32,
        extinguishers=[
            {"slot": 1, "present": False},
            {"slot": 2, "present": True, "pressure_mpa": 0.8},
        ],
    )
    alarms = d.wait(
        dev,
        lambda a: (
            has("extinguisher_missing", "major")(a) and has("extinguisher_pressure", "minor")(a)
        ),
    )
    assert "1" in alarms["extinguisher_missing"]["message"]
    assert "2" in alarms["extinguisher_pressure"]["message"]
    station(d, 1, extinguishers=ok_slots, mains_power=False, battery_pct=15, door_open=True)
    d.wait(
        dev,
        lambda a: (
            has("mains_lost", "warning")(a)
            and has("battery_low", "warning")(a)
            and cleared("extinguisher_missing")(a)
        ),
    )
    assert "door_open_long" not in d.alarms(dev)
    station(d, 11, extinguishers=ok_slots, door_open=True)
    d.wait(dev, has("door_open_long", "warning"))
    t = int(d.at(1).timestamp())
    d.send(f"firestation/{dev}/event", {"ts": t, "event": "smoke_alarm", "zone": "store"})
    d.wait(dev, lambda a: a["smoke"]["state"] == "active_unack" and a["smoke"]["count"] >= 2)
    d.send(f"firestation/{dev}/status", b"offline", retain=True)
    d.wait(dev, has("offline", "major"))


def test_yk_station_and_patrol_reader_rules(driver: Driver) -> None:
    d = driver
    t = d.at(0)
    local = (t + timedelta(hours=8)).strftime("%Y-%m-%d %H:%M:%S")
    d.send("yk/YK8-000231/data", {**YK, "time": local, "EXT1": 1180, "EXT2": 0, "WP": 90})
    alarms = d.wait(
        "YK8-000231",
        lambda a: (
            has("extinguisher_missing", "major")(a) and has("hydrant_pressure_low", "major")(a)
        ),
    )
    assert alarms["hydrant_pressure_low"]["value"] == pytest.approx(0.09)
    scan = {
        "reader": "FP-R03",
        "tag_uid": "04A1B2C3D4E5F6",
        "patroller": "FP-P017",
        "ts": d.at(1).isoformat(),
        "lat": 29.0312,
        "lon": 111.6935,
        "battery_pct": 10,
    }
    d.send("patrol/FP-R03/scan", scan)
    d.wait("FP-R03", has("battery_low", "warning"))
    d.send("patrol/FP-R03/status", b"offline", retain=True)
    alarms = d.wait("FP-R03", has("offline", "warning"))
    assert alarms["offline"]["kind"] == "patrol_reader" and alarms["offline"]["site"] == "goldtown"


def test_out_of_order_and_duplicates_do_not_flap(driver: Driver) -> None:
    """A late reading from before the breach must not clear it; a duplicate must not count."""
    d = driver
    dev = "GY-FL-0001"
    before = d.at(0)
    light(d, 1, tilt_deg=80.0)
    alarms = d.wait(dev, has("knocked_over", "critical"))
    count = alarms["knocked_over"]["count"]
    # the same message again (QoS 1 redelivery) and an older, upright reading arriving late
    d.send(
        "roadsafety/flashlight/GY-FL-0001/telemetry",
        {**XS, "ts": int(d.t.timestamp() * 1000), "tilt_deg": 80.0},
    )
    d.send(
        "roadsafety/flashlight/GY-FL-0001/telemetry",
        {**XS, "ts": int(before.timestamp() * 1000), "tilt_deg": 1.0},
    )
    light(d, 1, lamp="fail", tilt_deg=80.0)  # a newer reading, still tilted, as a fence
    d.wait(dev, has("lamp_fault", "major"))
    alarms = d.alarms(dev)
    assert alarms["knocked_over"]["state"] == "active_unack"
    assert alarms["knocked_over"]["count"] == count + 1  # only the fence counted (still tilted)


def test_open_alarms_and_half_elapsed_durations_survive_restart(driver: Driver) -> None:
    d = driver
    dev = "GY-FL-0001"
    light(d, 0, tilt_deg=80.0, battery_mv=11300)  # knocked over now; battery low starts timing
    d.wait(dev, has("knocked_over", "critical"))
    processed = d.hub.health()["pipeline"]["processed"]
    light(d, 6, tilt_deg=80.0, battery_mv=11300)  # six of the ten minutes have run
    d.processed_since(processed, 1)  # in the hub before it stops (state, not a sleep)
    d.hub.stop()
    d.hub.start()
    alarms = d.alarms(dev)
    assert alarms["knocked_over"]["state"] == "active_unack"
    assert "battery_low" not in alarms
    light(d, 5, tilt_deg=80.0, battery_mv=11300)  # 11 minutes below 11.5 V, across the restart
    alarms = d.wait(dev, has("battery_low", "warning"))
    assert alarms["knocked_over"]["id"] and alarms["knocked_over"]["state"] == "active_unack"
