"""The generated Mosquitto ACL, enforced by the real Mosquitto with a password file.

A device may publish only on its own topics: another device's topic is refused (MQTT 5:
PUBACK "not authorized"; MQTT 3.1.1: silently dropped, so the hub's subscriber never sees it).
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hub.intake.broker_acl import AclError, device_topics, generate_acl
from hub.profiles.loader import load_profiles
from hub.sites import Device, Site, SiteRegistry, load_sites
from tests.support.require import require_binary
from tests.support.services import MosquittoServer

ROOT = Path(__file__).resolve().parent.parent
PASSWORDS = {
    "hub": "hub-secret",
    "GY-FL-0012": "light-12",
    "GY-FL-0029": "light-29",
    "LTP-MFS-01": "station-01",
}
NOT_AUTHORIZED = 135


class AclMosquitto(MosquittoServer):
    """Debian's mosquitto with a password file and the generated ACL (no anonymous)."""

    def __init__(self, workdir: Path, passwd: Path, acl: Path) -> None:
        super().__init__(workdir)
        self.passwd = passwd
        self.acl = acl

    def _write_config(self) -> None:
        super()._write_config()
        text = self.config_path.read_text().replace("allow_anonymous true", "allow_anonymous false")
        text += f"password_file {self.passwd}\nacl_file {self.acl}\n"
        self.config_path.write_text(text)


@pytest.fixture
def broker(tmp_path: Path) -> Any:
    require_binary("mosquitto")
    passwd_tool = require_binary("mosquitto_passwd")
    acl = tmp_path / "acl"
    acl.write_text(
        generate_acl(load_profiles(ROOT / "device_profiles"), load_sites(ROOT / "sites"))
    )
    passwd = tmp_path / "passwd"
    passwd.touch()
    for user, password in PASSWORDS.items():
        subprocess.run([passwd_tool, "-b", str(passwd), user, password], check=True)
    passwd.chmod(0o600)
    acl.chmod(0o600)
    server = AclMosquitto(tmp_path / "mosquitto", passwd, acl)
    server.start_timeout = 10.0
    # the readiness probe connects anonymously, which this broker refuses
    server._ready = lambda: _can_login(server.port)  # type: ignore[method-assign]
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _can_login(port: int) -> bool:
    try:
        client = _client(port, "hub", protocol=paho.MQTTv5)
    except (OSError, RuntimeError):
        return False
    client.disconnect()
    client.loop_stop()
    return True


def _client(port: int, user: str, protocol: int = paho.MQTTv5) -> paho.Client:
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"acl-{user}-{uuid.uuid4().hex[:6]}",
        protocol=protocol,
    )
    client.username_pw_set(user, PASSWORDS[user])
    connected = threading.Event()
    result: list[Any] = []

    def on_connect(c: Any, u: Any, flags: Any, rc: Any, props: Any = None) -> None:
        result.append(rc)
        connected.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    if not connected.wait(5) or result[0] != 0:
        client.loop_stop()
        raise RuntimeError(f"{user} cannot connect: {result}")
    return client


class Hub:
    """The hub's user subscribed to everything."""

    def __init__(self, port: int) -> None:
        self.seen: list[str] = []
        self.client = _client(port, "hub")
        self.client.on_message = lambda c, u, m: self.seen.append(m.topic)
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.subscribe("#", qos=1)
        assert subscribed.wait(5)

    def wait_for(self, topic: str, timeout: float = 3.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if topic in self.seen:
                return True
            time.sleep(0.02)
        return False


def _publish_v5(client: paho.Client, topic: str) -> int:
    """Publish QoS 1 and return the PUBACK reason code."""
    codes: dict[int, int] = {}
    done = threading.Event()

    def on_publish(c: Any, u: Any, mid: int, rc: Any, props: Any) -> None:
        codes[mid] = rc.value
        done.set()

    client.on_publish = on_publish
    info = client.publish(topic, b"{}", qos=1)
    assert done.wait(5)
    return codes[info.mid]


def test_device_publishes_its_own_topic_but_not_another_devices(broker: AclMosquitto) -> None:
    hub = Hub(broker.port)
    light = _client(broker.port, "GY-FL-0012")
    own = "roadsafety/flashlight/GY-FL-0012/telemetry"
    other = "roadsafety/flashlight/GY-FL-0029/telemetry"
    assert _publish_v5(light, own) == 0
    assert hub.wait_for(own)
    assert _publish_v5(light, other) == NOT_AUTHORIZED
    assert _publish_v5(light, "hub/status") == NOT_AUTHORIZED
    assert _publish_v5(light, "firestation/LTP-MFS-01/telemetry") == NOT_AUTHORIZED
    station = _client(broker.port, "LTP-MFS-01")
    assert _publish_v5(station, "firestation/LTP-MFS-01/telemetry") == 0
    assert hub.wait_for("firestation/LTP-MFS-01/telemetry")
    assert not hub.wait_for(other, timeout=0.5)
    assert "hub/status" not in hub.seen
    for client in (light, station, hub.client):
        client.disconnect()
        client.loop_stop()


def test_mqtt311_publish_to_another_devices_topic_is_dropped(broker: AclMosquitto) -> None:
    hub = Hub(broker.port)
    light = _client(broker.port, "GY-FL-0029", protocol=paho.MQTTv311)
    own = "roadsafety/flashlight/GY-FL-0029/status"
    light.publish(own, b"online", qos=1).wait_for_publish(5)
    assert hub.wait_for(own)
    other = "roadsafety/flashlight/GY-FL-0012/status"
    info = light.publish(other, b"offline", qos=1)
    # 3.1.1 has no reason code: mosquitto 2.0.11 drops the message and the connection
    with contextlib.suppress(RuntimeError, ValueError):
        info.wait_for_publish(2)
    assert not hub.wait_for(other, timeout=1.0)
    light.disconnect()
    light.loop_stop()
    hub.client.disconnect()
    hub.client.loop_stop()


def test_hub_user_writes_hub_topics(broker: AclMosquitto) -> None:
    hub = Hub(broker.port)
    assert _publish_v5(hub.client, "hub/alarms/guoyuan/GY-FL-0029/knocked_over") == 0
    assert hub.wait_for("hub/alarms/guoyuan/GY-FL-0029/knocked_over")
    assert _publish_v5(hub.client, "roadsafety/flashlight/GY-FL-0012/telemetry") == NOT_AUTHORIZED
    hub.client.disconnect()
    hub.client.loop_stop()


def test_every_registered_device_has_exactly_its_profile_topics() -> None:
    profiles = load_profiles(ROOT / "device_profiles")
    sites = load_sites(ROOT / "sites")
    text = generate_acl(profiles, sites)
    blocks: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith("user "):
            current = blocks.setdefault(line.split()[1], [])
        elif line.startswith("topic "):
            current.append(line)
    by_model = {p.model: p for p in profiles}
    assert blocks.pop("hub") == ["topic read #", "topic readwrite hub/#"]
    assert set(blocks) == set(sites.devices)
    for device_id, lines in blocks.items():
        profile = by_model[sites.devices[device_id].model]
        assert lines == [f"topic write {t}" for t in device_topics(profile, device_id)]
        assert all(device_id in line and "+" not in line and "#" not in line for line in lines)


def test_committed_acl_is_the_generated_one() -> None:
    text = generate_acl(load_profiles(ROOT / "device_profiles"), load_sites(ROOT / "sites"))
    assert (ROOT / "deploy/mosquitto/acl").read_text() == text, (
        "run: hub mosquitto-acl -o deploy/mosquitto/acl"
    )


def test_device_id_that_cannot_be_a_user_is_refused() -> None:
    site = Site(site="x", name="x", devices=[Device(id="bad/id", model="XS-FL200")])
    with pytest.raises(AclError):
        generate_acl(load_profiles(ROOT / "device_profiles"), SiteRegistry([site]))


def _shipped_static_directives() -> str:
    """The client-binding lines of the shipped static broker config (paths are the test's)."""
    conf = (ROOT / "deploy/mosquitto/mosquitto-static.conf").read_text()
    keep = ("use_username_as_clientid",)
    return "".join(line + "\n" for line in conf.splitlines() if line.startswith(keep))


def test_a_device_password_cannot_take_the_hubs_session(tmp_path: Path) -> None:
    """The shipped static config binds client ids to users: a device connecting as
    ``safety-hub`` gets its own client id and the hub keeps its session."""
    require_binary("mosquitto")
    passwd_tool = require_binary("mosquitto_passwd")
    acl = tmp_path / "acl"
    acl.write_text(
        generate_acl(load_profiles(ROOT / "device_profiles"), load_sites(ROOT / "sites")))
    passwd = tmp_path / "passwd"
    passwd.touch()
    for user, password in PASSWORDS.items():
        subprocess.run([passwd_tool, "-b", str(passwd), user, password], check=True)
    server = AclMosquitto(tmp_path / "mosquitto", passwd, acl)
    original = server._write_config

    def with_shipped_binding() -> None:
        original()
        server.config_path.write_text(server.config_path.read_text()
                                      + _shipped_static_directives())

    server._write_config = with_shipped_binding  # type: ignore[method-assign]
    server._ready = lambda: _can_login(server.port)  # type: ignore[method-assign]
    server.start()
    try:
        drops: list[Any] = []
        hub = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                          client_id="safety-hub", protocol=paho.MQTTv5)
        hub.username_pw_set("hub", PASSWORDS["hub"])
        hub.on_disconnect = lambda *a: drops.append(a)
        seen: list[str] = []
        hub.on_message = lambda c, u, m: seen.append(m.topic)
        hub.connect("127.0.0.1", server.port)
        hub.loop_start()
        deadline = time.monotonic() + 5
        while not hub.is_connected() and time.monotonic() < deadline:
            time.sleep(0.02)
        subscribed = threading.Event()
        hub.on_subscribe = lambda *a: subscribed.set()
        hub.subscribe("#", qos=1)
        # the broker must hold the subscription before the device publishes (wait on state)
        assert subscribed.wait(10), "no SUBACK for the hub's subscription"
        thief = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                            client_id="safety-hub", protocol=paho.MQTTv5)
        thief.username_pw_set("GY-FL-0012", PASSWORDS["GY-FL-0012"])
        thief.connect("127.0.0.1", server.port)
        thief.loop_start()
        own = "roadsafety/flashlight/GY-FL-0012/telemetry"
        thief.publish(own, b"{}", qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 5
        while own not in seen and time.monotonic() < deadline:
            time.sleep(0.02)
        assert own in seen, "the hub lost its session to the device"
        assert drops == [] and hub.is_connected()
        log = server.log_path.read_text()
        assert "as GY-FL-0012" in log  # the device's client id became its user name
        for client in (thief, hub):
            client.disconnect()
            client.loop_stop()
    finally:
        server.stop()


def test_device_ids_that_are_broker_users_are_refused() -> None:
    profiles = load_profiles(ROOT / "device_profiles")
    for kwargs, user in (({"hub_user": ["hub-1", "GY-FL-0001"]}, "the hub's user"),
                         ({"readers": ["GY-FL-0001"]}, "a reader's user"),
                         ({"simulators": ["GY-FL-0001"]}, "the simulator's user")):
        site = Site(site="gy", name="G", devices=[Device(id="GY-FL-0001", model="XS-FL200")])
        with pytest.raises(AclError, match=f"is {user} name"):
            generate_acl(profiles, SiteRegistry([site]), **kwargs)  # type: ignore[arg-type]


def test_scale_out_hubs_and_site_readers_get_their_own_users() -> None:
    text = generate_acl(load_profiles(ROOT / "device_profiles"), load_sites(ROOT / "sites"),
                        hub_user=["hub-1", "hub-2"], site_readers=[("gy-screen", "guoyuan")])
    assert "user hub-1\ntopic read #\ntopic readwrite hub/#" in text
    assert "user hub-2\ntopic read #\ntopic readwrite hub/#" in text
    assert "user gy-screen\ntopic read hub/alarms/guoyuan/#\n" in text
    with pytest.raises(AclError, match="unknown site 'nowhere'"):
        generate_acl(load_profiles(ROOT / "device_profiles"), load_sites(ROOT / "sites"),
                     site_readers=[("x", "nowhere")])
