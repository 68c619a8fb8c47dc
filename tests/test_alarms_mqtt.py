"""Retained alarm topics on a real Mosquitto: current JSON while open, empty once closed."""

from __future__ import annotations

import json
import threading
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


def _retained(port: int, topic: str, timeout: float = 10.0) -> list[bytes]:
    """Subscribe with a fresh client and return the retained payloads it gets.

    Waits on the broker, not on time: after the SUBACK a fence is published on a topic of the
    same client; the broker sends the retained messages before it, so once the fence is in,
    every retained payload is too.
    """
    got: list[bytes] = []
    fence = f"test/fence/{uuid.uuid4().hex}"
    subscribed, fenced = threading.Event(), threading.Event()
    client = _connect(port)

    def on_message(_c: paho.Client, _u: object, m: paho.MQTTMessage) -> None:
        if m.topic == fence:
            fenced.set()
        elif m.retain:
            got.append(m.payload)

    client.on_message = on_message
    client.on_subscribe = lambda c, u, mid, rc, p: subscribed.set()
    client.subscribe([(topic, 1), (fence, 1)])
    assert subscribed.wait(timeout), "no SUBACK"
    client.publish(fence, b"", qos=1)
    assert fenced.wait(timeout), "the fence never came back"
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
