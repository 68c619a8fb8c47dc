"""Publish a fleet's messages to a real broker, paced by a SimClock.

Devices with a last will (XS-FL200, PT-NFC1, MFS-GW1) each get their own paho client with the
will set on their status topic, so a ``last_will`` fault really drops the TCP connection
without DISCONNECT and the broker publishes the will. The other devices (HN-BSD3, YK-FS8, no
will) share one client. ``lwt_mode="simulate"`` uses the shared client for everything and
publishes the retained ``offline`` itself instead.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from simulators.clock import SimClock
from simulators.fleet import Fleet, InjectedFault
from simulators.message import SimMessage
from simulators.mqtturl import MqttUrl, parse_mqtt_url
from simulators.timeutil import CHINA as CST

log = logging.getLogger(__name__)
MAX_IN_FLIGHT = 2000
STEP_WALL_S = 0.05
AFAP_STEP = timedelta(seconds=60)


@dataclass
class RunSummary:
    """What a run did."""

    messages: Counter[str] = field(default_factory=Counter)
    bytes: int = 0
    faults: list[InjectedFault] = field(default_factory=list)
    sim_start: datetime | None = None
    sim_end: datetime | None = None
    wall_s: float = 0.0
    errors: int = 0

    @property
    def total(self) -> int:
        """Messages published."""
        return sum(self.messages.values())

    def lines(self) -> list[str]:
        """A human summary."""
        out = [f"published {self.total} messages ({self.bytes / 1e6:.1f} MB) in "
               f"{self.wall_s:.1f} s wall, simulated {self.sim_start:%Y-%m-%d %H:%M:%S} .. "
               f"{self.sim_end:%H:%M:%S} UTC" if self.sim_start and self.sim_end else
               f"published {self.total} messages"]
        out += [f"  {model:<9} {n:>8}" for model, n in sorted(self.messages.items())]
        out.append(f"faults injected: {len(self.faults)}")
        out += [f"  +{(f.at - self.sim_start).total_seconds():>7.0f} s  {f.device:<16} {f.fault}"
                f" {f.params if any(v is not None for v in f.params.values()) else ''}"
                for f in self.faults if self.sim_start]
        if self.errors:
            out.append(f"publish errors: {self.errors}")
        return out


class Connections:
    """The simulator's MQTT clients: one per last-will device plus a shared one."""

    def __init__(self, url: MqttUrl, will_topics: dict[str, str], lwt_mode: str = "clients",
                 client_prefix: str = "sim-") -> None:
        if lwt_mode not in ("clients", "simulate"):
            raise ValueError("lwt_mode is 'clients' or 'simulate'")
        self.url = url
        self.lwt_mode = lwt_mode
        self.prefix = client_prefix
        self.will_topics = will_topics if lwt_mode == "clients" else {}
        self._lock = threading.Lock()
        self.sent = 0
        self.done = 0
        self.errors = 0
        self.connected: set[str] = set()
        self.clients: dict[str, mqtt.Client] = {}
        self.shared = self._client(f"{client_prefix}shared-{id(self):x}", None)

    def _client(self, client_id: str, will_topic: str | None) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv311, clean_session=True)
        if self.url.username:
            client.username_pw_set(self.url.username, self.url.password)
        if will_topic:
            client.will_set(will_topic, b"offline", qos=1, retain=True)
        client.max_inflight_messages_set(200)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        client.connect_async(self.url.host, self.url.port, keepalive=60)
        client.loop_start()
        return client

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object,
                    reason: object, props: object) -> None:
        if not getattr(reason, "is_failure", False):
            with self._lock:
                self.connected.add(client._client_id.decode())

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, reason: object,
                    props: object) -> None:
        with self._lock:
            self.done += 1

    def open_all(self, timeout: float = 20.0) -> None:
        """Connect a client for every last-will device and wait until all are connected."""
        for device, topic in self.will_topics.items():
            if device not in self.clients:
                self.clients[device] = self._client(f"{self.prefix}{device}", topic)
        deadline = time.monotonic() + timeout
        want = len(self.clients) + 1
        while len(self.connected) < want:
            if time.monotonic() > deadline:
                raise ConnectionError(f"only {len(self.connected)} of {want} MQTT clients "
                                      f"connected to {self.url} within {timeout:.0f} s")
            time.sleep(0.02)

    def publish(self, msg: SimMessage) -> None:
        """Publish one message (or drop / reopen a device's connection for will/connect)."""
        device = msg.device
        if msg.action == "will" and device in self.will_topics:
            self._drop(device)
            return
        if msg.action == "connect" and device in self.will_topics and device not in self.clients:
            self.clients[device] = self._client(f"{self.prefix}{device}",
                                                self.will_topics[device])
        client = self.clients.get(device, self.shared) if device in self.will_topics \
            else self.shared
        info = client.publish(msg.topic, msg.payload, qos=msg.qos, retain=msg.retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS and info.rc != mqtt.MQTT_ERR_NO_CONN:
            self.errors += 1
            return
        if info.rc == mqtt.MQTT_ERR_NO_CONN and msg.qos == 0:
            self.errors += 1
            return
        self.sent += 1

    def _drop(self, device: str) -> None:
        """Close the device's TCP connection without DISCONNECT: the broker sends the will."""
        client = self.clients.pop(device, None)
        if client is None:
            return
        client.loop_stop()
        sock = client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
        with self._lock:
            self.connected.discard(client._client_id.decode())
            # messages of the dropped client that were never acknowledged are gone
            self.done += len(client._out_messages)

    def in_flight(self) -> int:
        """Published but not yet written (QoS 0) or acknowledged (QoS 1)."""
        return self.sent - self.done

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until every publish is out, up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.in_flight() > 0 and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        """Disconnect every client cleanly."""
        for client in [*self.clients.values(), self.shared]:
            with contextlib.suppress(Exception):
                client.disconnect()
        for client in [*self.clients.values(), self.shared]:
            with contextlib.suppress(Exception):
                client.loop_stop()
        self.clients.clear()


def run(fleet: Fleet, mqtt_url: str, speed: float = 1.0, duration: float | None = None,
        stop_event: threading.Event | None = None, *, lwt_mode: str = "clients",
        progress: Callable[[str], None] | None = None, progress_every_s: float = 5.0,
        client_prefix: str = "sim-") -> RunSummary:
    """Publish ``fleet`` to the broker at ``mqtt_url`` until ``duration`` or ``stop_event``.

    ``speed`` 1 is real time, 60 is an hour per minute, 0 is as fast as possible. For
    ``speed > 0``, ``duration`` is in wall seconds (None: until ``stop_event``); for speed 0 it
    is simulated seconds and required.
    """
    if speed == 0 and duration is None:
        raise ValueError("speed 0 (as fast as possible) needs a duration in simulated seconds")
    stop_event = stop_event or threading.Event()
    url = parse_mqtt_url(mqtt_url)
    clock = SimClock(fleet.start, speed)
    summary = RunSummary(sim_start=fleet.start)
    conns = Connections(url, fleet.will_devices, lwt_mode, client_prefix)
    wall0 = time.monotonic()
    try:
        conns.open_all()
        clock = SimClock(fleet.start, speed)  # start the clock once everyone is connected
        cursor = fleet.start
        sim_end = fleet.start + timedelta(seconds=duration) if speed == 0 and duration \
            else None
        next_progress = time.monotonic() + progress_every_s
        while not stop_event.is_set():
            if speed == 0:
                assert sim_end is not None
                if cursor >= sim_end:
                    break
                target = min(cursor + AFAP_STEP, sim_end)
            else:
                if duration is not None and clock.elapsed_wall() >= duration:
                    break
                target = clock.now()
            for msg in fleet.events_between(cursor, target):
                while conns.in_flight() > MAX_IN_FLIGHT and not stop_event.is_set():
                    time.sleep(0.001)
                conns.publish(msg)
                summary.messages[msg.model] += 1
                summary.bytes += len(msg.payload)
            cursor = target
            now = time.monotonic()
            if progress and now >= next_progress:
                next_progress = now + progress_every_s
                progress(f"sim {cursor.astimezone(CST):%Y-%m-%d %H:%M:%S%z} "
                         f"(+{(cursor - fleet.start).total_seconds():.0f} s) | "
                         f"{summary.total} msgs, {summary.total / max(now - wall0, 1e-9):.0f}/s"
                         f" | faults {len(fleet.injected)} | in flight {conns.in_flight()}")
            if speed > 0:
                stop_event.wait(STEP_WALL_S)
        summary.sim_end = cursor
        conns.drain()
    finally:
        conns.close()
    summary.wall_s = time.monotonic() - wall0
    summary.faults = list(fleet.injected)
    summary.errors = conns.errors
    return summary
