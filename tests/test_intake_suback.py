"""Both MQTT clients say "connected" only once the real Mosquitto granted every subscription.

A hub that reports its intake up before the SUBACK misses what is published in between; a
refused subscription (dynamic security denying a filter: MQTT 5 reason 0x87) must
not pass for connected: it is logged and kept in ``last_error`` (what /api/health shows) with
the filter and its reason code. The paho client runs in the hub process (``HUB_MQTT_INTAKE=
thread``) and both clients in the intake process (``HUB_MQTT_CLIENT=lean`` and ``paho``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hub.intake.dynsec import Dynsec, publish_acls, read_acls
from hub.intake.inbound import InboundMessage
from hub.intake.lean.client import LeanClient
from hub.intake.paho_client import MqttClient
from hub.intake.process import IntakeProcess
from tests.support.hubproc import HubProcess
from tests.support.require import require_binary
from tests.support.services import MosquittoServer

GRANTED = [("roadsafety/#", 1), ("hub/#", 1)]
DENIED = "secret/#"


ADMIN = ("admin", "admin-secret-1")
INTAKE, DEVICE = ("intake", "intake-secret-1"), ("device", "device-secret-1")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoServer]:
    """Mosquitto with dynamic security: the intake's user may subscribe to roadsafety/# and
    hub/# only (and publish under hub/#), the device's user may publish roadsafety/#."""
    server = MosquittoServer(tmp_path / "mosquitto", binary=require_binary("mosquitto"),
                             dynsec_admin=ADMIN)
    server.start()
    try:
        dynsec = Dynsec(server.admin_url)
        dynsec.ensure_role("intake", [*read_acls("roadsafety/#"), *read_acls("hub/#"),
                                      *publish_acls(["hub/#"])])
        dynsec.ensure_client(*INTAKE, None, ["intake"])
        dynsec.ensure_role("device", publish_acls(["roadsafety/#"]))
        dynsec.ensure_client(*DEVICE, None, ["device"])
        yield server
    finally:
        server.stop()


def url_of(server: MosquittoServer, user: tuple[str, str]) -> str:
    return f"mqtt://{user[0]}:{user[1]}@{server.host}:{server.port}"


def until(check: Any, timeout: float = 20.0, pump: Any = None) -> Any:
    """Poll ``check`` (calling ``pump`` between tries) until true or the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        if pump is not None:
            pump()
        else:
            time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {check}")


class Device:
    """A connected paho publisher (QoS 1, waits for each PUBACK)."""

    def __init__(self, server: MosquittoServer) -> None:
        self.client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        self.client.username_pw_set(*DEVICE)
        up = threading.Event()
        self.client.on_connect = lambda *_a: up.set()
        self.client.connect(server.host, server.port)
        self.client.loop_start()
        assert up.wait(10)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _in_process(kind: str, url: str, client_id: str, subscriptions: list[tuple[str, int]],
                got: list[str], protocol: str = "auto") -> LeanClient | MqttClient:
    if kind == "lean":
        return LeanClient(url, client_id, subscriptions,
                          lambda batch: got.extend(m[0] for m in batch) or True,
                          protocol=protocol)
    return MqttClient(url, client_id, subscriptions, lambda m: got.append(m.topic),
                      protocol=protocol)


@pytest.mark.parametrize("kind", ["lean", "paho"])
@pytest.mark.parametrize("protocol", ["auto", "3.1.1"])
def test_what_is_published_once_connected_is_received(broker: MosquittoServer, kind: str,
                                                      protocol: str) -> None:
    got: list[str] = []
    device = Device(broker)
    for attempt in range(5):  # each a fresh session: subscribing is what makes it receive
        client = _in_process(kind, url_of(broker, INTAKE), f"suback-{kind}-{protocol}-{attempt}",
                             GRANTED, got, protocol)
        assert client.start(wait_s=20)
        topic = f"roadsafety/flashlight/L{attempt}/telemetry"
        device.publish(topic, b"{}")  # the moment the client said it was connected
        try:
            until(lambda t=topic: t in got)  # type: ignore[misc]
            assert client.last_error is None
        finally:
            client.stop()
    device.close()


@pytest.mark.parametrize("kind", ["lean", "paho"])
def test_a_refused_subscription_is_not_connected_and_says_why(broker: MosquittoServer,
                                                              kind: str) -> None:
    got: list[str] = []
    client = _in_process(kind, url_of(broker, INTAKE), f"denied-{kind}", [*GRANTED, (DENIED, 1)],
                         got)
    client.start()
    try:
        error = until(lambda: client.last_error)
        assert error == f"subscription refused: {DENIED} (0x87 not authorized)"
        assert not client.connected
        # the granted filters still deliver (and their messages are acknowledged)
        device = Device(broker)
        device.publish("roadsafety/flashlight/L9/telemetry", b"{}")
        until(lambda: "roadsafety/flashlight/L9/telemetry" in got)
        device.close()
        assert not client.connected
    finally:
        client.stop()


@pytest.mark.parametrize("client", ["lean", "paho"])
def test_the_intake_process_shows_a_refused_subscription(broker: MosquittoServer,
                                                         client: str) -> None:
    received: list[InboundMessage] = []

    def pump() -> None:  # the child's status frames arrive with the pipeline's pulls
        received.extend(intake.receive(0.1))

    intake = IntakeProcess(url_of(broker, INTAKE), f"denied-process-{client}",
                           [*GRANTED, (DENIED, 1)], client=client)
    intake.start()
    try:
        error = until(lambda: intake.last_error, pump=pump)
        assert error == f"subscription refused: {DENIED} (0x87 not authorized)"
        assert not intake.connected
    finally:
        intake.stop()

    granted = IntakeProcess(url_of(broker, INTAKE), f"granted-process-{client}", GRANTED,
                            client=client)
    granted.start()
    try:
        until(lambda: granted.connected, pump=lambda: received.extend(granted.receive(0.1)))
        assert granted.last_error is None
    finally:
        granted.stop()


@pytest.mark.parametrize("client", ["lean", "paho"])
def test_hub_health_is_degraded_by_a_refused_subscription(broker: MosquittoServer,
                                                          tmp_path: Path, client: str) -> None:
    # the intake's role has roadsafety/# and hub/# only: the profiles' other topics are refused
    hub = HubProcess(tmp_path, mqtt_url=url_of(broker, INTAKE), mqtt_client=client,
                     mqtt_client_id=f"hub-{client}")
    hub.start(wait_connected=False)
    try:
        broker_health = until(lambda: (b := hub.health()["broker"])["last_error"] and b)
        assert broker_health["connected"] is False
        assert broker_health["last_error"].startswith("subscription refused: ")
        assert "(0x87 not authorized)" in broker_health["last_error"]
        assert "roadsafety/" not in broker_health["last_error"]
        assert hub.health()["status"] == "degraded"
    finally:
        hub.stop()
