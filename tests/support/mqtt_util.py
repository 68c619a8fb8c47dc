"""Small paho helpers for tests: publish many messages reliably, collect messages."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from hub.intake.paho_client import parse_mqtt_url


def _client(url: str, client_id: str | None = None) -> paho.Client:
    parsed = parse_mqtt_url(url)
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id or f"test-{uuid.uuid4().hex[:8]}",
        protocol=paho.MQTTv5,
    )
    client.max_inflight_messages_set(0)  # unlimited: QoS 0 must not overtake queued QoS 1
    client.max_queued_messages_set(0)
    connected = threading.Event()
    client.on_connect = lambda c, u, f, rc, p: connected.set()
    client.connect(parsed.host, parsed.port)
    client.loop_start()
    if not connected.wait(10):
        raise RuntimeError(f"cannot connect to {url}")
    return client


def publish_many(
    url: str, messages: Iterable[tuple[str, bytes, int, bool]], rate: float | None = None
) -> int:
    """Publish and wait until the broker has every QoS>0 message; return how many."""
    client = _client(url)
    infos = []
    count = 0
    started = time.monotonic()
    for topic, payload, qos, retain in messages:
        infos.append(client.publish(topic, payload, qos=qos, retain=retain))
        count += 1
        if rate:
            ahead = count / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    fence = client.publish("test/fence", b"", qos=1)  # QoS 0 ones before it are out too
    for info in [*infos, fence]:
        if info.rc == paho.MQTT_ERR_SUCCESS and info.mid:
            info.wait_for_publish(timeout=60)
    client.disconnect()
    client.loop_stop()
    return count


class Collector:
    """Subscribes and records (topic, payload, retain) until closed."""

    def __init__(self, url: str, topic: str) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Condition()
        self._client = _client(url)
        self._client.on_message = self._on_message
        subscribed = threading.Event()
        self._client.on_subscribe = lambda c, u, mid, rc, p: subscribed.set()
        self._client.subscribe(topic, qos=1)
        if not subscribed.wait(10):  # the SUBACK, not a sleep: later publishes reach us
            raise RuntimeError(f"no SUBACK for {topic}")

    def _on_message(self, _c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
            self._lock.notify_all()

    def wait_for(self, predicate, timeout: float = 10.0) -> list[tuple[str, bytes, bool]]:  # type: ignore[no-untyped-def]
        """Wait until some recorded message satisfies predicate(topic, payload); return them."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = [m for m in self.messages if predicate(m[0], m[1])]
                if found:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._lock.wait(remaining)

    def close(self) -> None:
        """Disconnect."""
        self._client.disconnect()
        self._client.loop_stop()
