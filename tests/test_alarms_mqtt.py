"""Retained alarm topics on a real Mosquitto: current JSON while open, empty once closed."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hub.alarms.service import AlarmService
from hub.db import make_engine

S = 1_000_000_000
T0 = 1_795_000_000 * S
TOPIC = "hub/alarms/ltp/L1/knocked_over"


def _connect(port: int) -> paho.Client:
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}"
    )
    connected = threading.Event()
    client.on_connect = lambda c, u, f, rc, p: connected.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert connected.wait(10), "cannot connect to mosquitto"
    return client


def _retained(port: int, topic: str, wait_s: float = 1.0) -> list[bytes]:
    """Subscribe with a fresh client and return the retained payloads it gets."""
    got: list[bytes] = []
    client = _connect(port)
    client.on_message = lambda c, u, m: got.append(m.payload) if m.retain else None
    client.subscribe(topic, qos=1)
    time.sleep(wait_s)
    client.loop_stop()
    client.disconnect()
    return got


@pytest.mark.services
def test_retained_alarm_topic_on_real_broker(mosquitto: Any, tmp_path: Path) -> None:
    publisher = _connect(mosquitto.port)
    infos: list[Any] = []

    def publish(topic: str, payload: bytes, retain: bool) -> None:
        infos.append(publisher.publish(topic, payload, qos=1, retain=retain))

    def settle() -> None:
        for info in infos:
            info.wait_for_publish(5)

    svc = AlarmService(make_engine(f"sqlite:///{tmp_path / 'a.sqlite'}"), publish=publish)
    alarm_id = svc.raise_or_update(
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
    settle()
    payloads = _retained(mosquitto.port, TOPIC)
    assert len(payloads) == 1
    body = json.loads(payloads[0])
    assert (body["id"], body["state"], body["severity"]) == (alarm_id, "active_unack", "critical")
    assert body["message_zh"] == "爆闪灯倾倒"

    svc.auto_clear("L1", "knocked_over", T0 + 60 * S)
    settle()
    assert json.loads(_retained(mosquitto.port, TOPIC)[0])["state"] == "cleared_unack"

    svc.ack(alarm_id, "li.wei")
    settle()
    assert _retained(mosquitto.port, TOPIC) == []  # empty retained payload removes it
    publisher.loop_stop()
    publisher.disconnect()
