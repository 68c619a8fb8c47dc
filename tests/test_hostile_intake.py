"""Payload size bounded before the hub: the shipped broker drops what the hub would refuse, and
the intake process forwards only the head of an oversized payload (refused as too_large)."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hub.ingest.normalize import Normalizer
from hub.intake.inbound import Oversized
from hub.intake.process import IntakeProcess
from hub.model import InboundMessage, Refusal
from hub.profiles.loader import load_profiles
from hub.settings import Settings
from hub.sites import load_sites
from tests.support.mqtt_util import Collector, publish_many
from tests.support.require import require_binary
from tests.support.services import MosquittoServer

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "deploy" / "mosquitto" / "mosquitto.conf"


def _shipped_limit_line(config: Path = SHIPPED) -> str:
    lines = [ln for ln in config.read_text().splitlines() if ln.startswith("message_size_limit")]
    assert len(lines) == 1, (config, lines)
    return lines[0]


def test_the_shipped_broker_limit_is_the_hub_default() -> None:
    configs = sorted(SHIPPED.parent.glob("mosquitto*.conf"))
    assert SHIPPED in configs
    for config in configs:  # every shipped broker config, dynamic security or static
        limit = int(_shipped_limit_line(config).split()[1])
        assert limit == Settings().max_payload_bytes == Settings.model_fields[
            "max_payload_bytes"].default


def test_the_shipped_limit_stops_oversized_payloads_at_the_real_broker(tmp_path: Path) -> None:
    limit = int(_shipped_limit_line().split()[1])
    server = MosquittoServer(tmp_path / "mosquitto", binary=require_binary("mosquitto"),
                             extra_config=[_shipped_limit_line()])
    server.start()
    try:
        collector = Collector(server.url, "size/#")
        # a field device: MQTT 3.1.1, clean session. Mosquitto 2.0 drops the oversized publish
        # and closes that connection; the device reconnects and its next message goes through
        device = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                             client_id="FP-R01", protocol=paho.MQTTv311)
        connected = threading.Event()
        device.on_connect = lambda *_args: connected.set()
        device.connect(server.host, server.port)
        device.loop_start()
        try:
            assert connected.wait(10)
            device.publish("size/big", b"x" * (limit + 1), qos=1)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # the broker may close the connection first
                try:
                    device.publish("size/fits", b"y" * limit, qos=1).wait_for_publish(5)
                except (RuntimeError, ValueError):
                    time.sleep(0.2)  # not connected: paho reconnects by itself
                    continue
                if collector.wait_for(lambda topic, _p: topic == "size/fits", timeout=5):
                    break
            assert {t for t, _p, _r in collector.messages} == {"size/fits"}
        finally:
            device.loop_stop()
            device.disconnect()
            collector.close()
    finally:
        server.stop()


@pytest.mark.parametrize("client", ["lean", "paho"])
def test_the_intake_process_forwards_only_the_head_of_an_oversized_payload(
        mosquitto: MosquittoServer, client: str) -> None:
    limit = 1024
    intake = IntakeProcess(mosquitto.url, f"hostile-intake-{client}", [("patrol/#", 1)],
                           max_payload_bytes=limit, client=client)
    intake.start()  # its connect status arrives through receive(), like the pipeline's pulls
    try:
        deadline = time.monotonic() + 20
        while not intake.connected and time.monotonic() < deadline:
            assert intake.receive(0.2) == []
        big = b'{"reader": "FP-R01", "note": "' + b"z" * 1_000_000 + b'"}'
        publish_many(mosquitto.url, [("patrol/FP-R01/hazard", big, 1, False),
                                     ("patrol/FP-R01/status", b"online", 1, False)])
        got: list[InboundMessage] = []
        deadline = time.monotonic() + 20
        while len(got) < 2 and time.monotonic() < deadline:
            got += intake.receive(0.5)
        assert [m.topic for m in got] == ["patrol/FP-R01/hazard", "patrol/FP-R01/status"]
        oversized, small = got[0].payload, got[1].payload
        assert isinstance(oversized, Oversized)
        assert len(bytes(oversized)) == 64 and bytes(oversized) == big[:64]  # all that crossed
        assert len(oversized) == len(big)
        assert small == b"online" and not isinstance(small, Oversized)
        normalizer = Normalizer(load_profiles(ROOT / "device_profiles"),
                                load_sites(ROOT / "sites"), max_payload_bytes=limit)
        refusal = normalizer.process(got[0])
        assert isinstance(refusal, Refusal) and refusal.reason == "too_large"
        assert re.search(rf"\b{len(big)} bytes exceeds {limit}\b", refusal.detail)
        assert refusal.head == big[:64]
        intake.ack_many([m.ack_token for m in got])
    finally:
        intake.stop()
