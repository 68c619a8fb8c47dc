"""The only module that speaks paho: connect, subscribe, hand frozen messages on, ack later.

At-least-once: the client runs with ``manual_ack``; a message is acknowledged only when the
pipeline says its readings are durable (in the store or the spool). Acks are tied to the
connection they arrived on: after a reconnect the broker redelivers what was not acked, and a
stale ack (a message id of an older connection) is dropped rather than acking a stranger.
"Connected" (the status, ``online``, ``on_connected``) waits for the SUBACK: only once the
broker granted every filter; a refusal is logged and kept in ``last_error`` with its filter.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from hub.intake.common import (  # noqa: F401  (parse_mqtt_url, MqttUrl: re-exported)
    STATUS_TOPIC,
    MqttUrl,
    UrlRing,
    parse_mqtt_url,
    parse_mqtt_urls,
    refused_subscriptions,
)
from hub.intake.inbound import InboundMessage

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600


class AckToken(NamedTuple):
    """Which connection a message came on, and its packet id."""

    generation: int
    mid: int
    qos: int


class MqttClient:
    """A persistent-session subscriber and publisher with manual acknowledgements."""

    received = 0  # messages handed on; the hub side publishes it as a metric

    def __init__(
        self,
        url: str,
        client_id: str,
        subscriptions: list[tuple[str, int]],
        on_message: Callable[[InboundMessage], None],
        *,
        ca_file: Path | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        status_topic: str = STATUS_TOPIC,
        protocol: str = "auto",
    ) -> None:
        # one URL or several (a cluster's nodes): the next one after a failed or lost connection;
        # paho's own backoff (1 s doubling to 30 s) sets the wait
        self.ring = UrlRing(parse_mqtt_urls(url))
        self.client_id = client_id
        self.subscriptions = subscriptions
        self.on_message = on_message
        self.status_topic = status_topic
        self.protocol = paho.MQTTv311 if protocol == "3.1.1" else paho.MQTTv5
        self._may_fall_back = protocol == "auto"
        self._failed_attempts = 0
        self._tls = (ca_file, cert_file, key_file)
        self._generation = 0
        self._connected = threading.Event()  # up and every subscription granted
        self._up = False  # the connection is up (acks may go)
        self._suback_mid: int | None = None
        self._stopping = False
        self.last_error: str | None = None
        self.on_connected: Callable[[], object] | None = None
        self._client = self._make_client(self.protocol)

    @property
    def url(self) -> MqttUrl:
        """The broker URL connected to, or tried next."""
        return self.ring.current

    def _make_client(self, protocol: MQTTProtocolVersion) -> paho.Client:
        client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=protocol,
            clean_session=False if protocol != paho.MQTTv5 else None,
            manual_ack=True,
        )
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        if self.url.username:
            client.username_pw_set(self.url.username, self.url.password)
        if self.url.tls:
            ca_file, cert_file, key_file = self._tls
            client.tls_set(
                ca_certs=str(ca_file) if ca_file else None,
                certfile=str(cert_file) if cert_file else None,
                keyfile=str(key_file) if key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        client.will_set(self.status_topic, b"offline", qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_connect_fail = self._on_connect_fail
        client.on_message = self._on_message
        return client

    def _next_url(self, client: paho.Client) -> None:
        """Point paho's next reconnect at the next URL of the list (paho's thread)."""
        if len(self.ring.urls) == 1:
            return
        self.ring.failed()
        url = self.ring.current
        # paho's host/port setters refuse while its state still says connected, which it does
        # inside on_disconnect although the socket is closed; reconnect() reads these two
        client._host, client._port = url.host, url.port
        client.username_pw_set(url.username, url.password)

    def _on_connect_fail(self, client: paho.Client, _userdata: Any) -> None:
        self.last_error = f"connect failed: {self.url.host}:{self.url.port}"
        log.warning("MQTT %s; retrying", self.last_error)
        self._next_url(client)

    # ------------------------------------------------------------------ lifecycle

    def start(self, wait_s: float = 0.0) -> bool:
        """Connect in the background (retrying forever); optionally wait for the first connect."""
        properties = None
        if self.protocol == paho.MQTTv5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = SESSION_EXPIRY_S
            properties.ReceiveMaximum = 65535
        self._client.connect_async(
            self.url.host,
            self.url.port,
            keepalive=30,
            clean_start=False if self.protocol == paho.MQTTv5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
        )
        self._client.loop_start()
        if wait_s > 0:
            return self._connected.wait(wait_s)
        return self._connected.is_set()

    def stop(self) -> None:
        """Publish offline, disconnect cleanly (the session stays on the broker), stop the loop."""
        self._stopping = True
        if self._up:
            info = self._client.publish(self.status_topic, b"offline", qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=2)
        self._client.disconnect()
        self._client.loop_stop()
        self._on_status(False)

    @property
    def connected(self) -> bool:
        """True while connected to the broker with every subscription granted."""
        return self._connected.is_set()

    # ------------------------------------------------------------------ callbacks (paho thread)

    def _on_connect(
        self,
        client: paho.Client,
        _userdata: Any,
        flags: Any,
        reason: ReasonCode,
        _properties: Any,
    ) -> None:
        if reason.is_failure:
            self.last_error = f"connect refused: {reason}"
            log.warning("MQTT %s", self.last_error)
            if "unsupported protocol" in str(reason).lower():
                self._fall_back()
            self._on_status(False)
            return
        self._may_fall_back = False  # this broker speaks our version: never switch later
        self.ring.connected()
        self._generation += 1
        self._up = True
        self.last_error = None
        log.info(
            "MQTT connected to %s:%s (session present: %s)",
            self.url.host,
            self.url.port,
            getattr(flags, "session_present", None),
        )
        if self.subscriptions:
            self._suback_mid = client.subscribe(self.subscriptions)[1]
        else:
            self._subscribed(client)

    def _on_subscribe(self, client: paho.Client, _userdata: Any, mid: int,
                      reasons: list[ReasonCode], _properties: Any) -> None:
        if mid != self._suback_mid:
            return  # a SUBACK of an older connection
        refused = refused_subscriptions([f for f, _ in self.subscriptions],
                                        [r.value for r in reasons])
        if refused is None:
            self._subscribed(client)
        else:
            self.last_error = refused
            log.error("MQTT %s", refused)
            self._on_status(False)

    def _subscribed(self, client: paho.Client) -> None:
        """Every subscription granted: connected now."""
        client.publish(self.status_topic, b"online", qos=1, retain=True)
        self._connected.set()
        self._on_status(True)
        if self.on_connected is not None:
            # Off paho's thread: it may publish a lot and must not stall message intake.
            threading.Thread(target=self.on_connected, name="on-connected", daemon=True).start()

    def _fall_back(self) -> None:
        """Switch to MQTT 3.1.1 once, for brokers that drop MQTT 5 connects (e.g. amqtt)."""
        if not self._may_fall_back or self.protocol != paho.MQTTv5:
            return
        self._may_fall_back = False
        log.warning("broker does not accept MQTT 5; falling back to MQTT 3.1.1")
        self.protocol = paho.MQTTv311
        threading.Thread(target=self._restart, daemon=True).start()

    def _restart(self) -> None:
        old = self._client
        old.loop_stop()
        old.disconnect()
        self._client = self._make_client(self.protocol)
        self.start()

    def _on_disconnect(
        self,
        _client: paho.Client,
        _userdata: Any,
        _flags: Any,
        reason: ReasonCode,
        _properties: Any,
    ) -> None:
        was_connected = self._up
        self._up = False
        self._suback_mid = None
        self._connected.clear()
        if not was_connected and not self._stopping and self.protocol == paho.MQTTv5:
            self._failed_attempts += 1
            if self._failed_attempts >= 2:
                self._fall_back()
        if not self._stopping:
            self.last_error = f"disconnected: {reason}"
            log.warning("MQTT %s; reconnecting", self.last_error)
            self._next_url(_client)
        self._on_status(False)

    def _on_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        # A plain int: a prometheus inc per message takes a lock (~5 % of the hub's CPU).
        self.received += 1
        self.on_message(
            InboundMessage(
                topic=msg.topic,
                payload=bytes(msg.payload),
                qos=msg.qos,
                retain=bool(msg.retain),
                received_ns=time.time_ns(),
                ack_token=AckToken(self._generation, msg.mid, msg.qos),
            )
        )

    def _on_status(self, connected: bool) -> None:
        """A connection came up (True), went down or was stopped (False); for subclasses."""

    # ------------------------------------------------------------------ any thread

    def ack_many(self, tokens: list[Any]) -> None:
        """Acknowledge messages in order, except those of a connection that is gone."""
        for token in tokens:
            if isinstance(token, AckToken):
                self.ack_mid(token.generation, token.mid, token.qos)

    def ack_mid(self, generation: int, mid: int, qos: int) -> None:
        """Acknowledge packet ``mid`` of connection ``generation`` if that one is still up."""
        if qos == 0 or generation != self._generation or not self._up:
            return  # QoS 0 has no ack; an older connection's message is redelivered anyway
        self._client.ack(mid, qos)

    def publish(self, topic: str, payload: bytes, retain: bool = False, qos: int = 1) -> None:
        """Publish (paho queues it while disconnected)."""
        self._client.publish(topic, payload, qos=qos, retain=retain)
