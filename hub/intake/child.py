"""The MQTT intake process (``python -m hub.intake.child``): MQTT here, the pipeline in the hub.

Started and supervised by ``hub.intake.process.IntakeProcess``; see that module for the why and the
frames. Three parts: the MQTT client's network thread queues messages, a forwarder thread sends
them to the hub in batches, and the main thread carries out the hub's acks, publishes and stop in
the order they were sent. Two clients (``HUB_MQTT_CLIENT``): ``lean`` (``hub.intake.lean``:
each socket read parsed in one pass into one list of tuples, which is one frame, and a durable
batch acked with one buffer of PUBACKs) or ``paho`` (a tuple and a callback per message, acked
one by one).
"""

from __future__ import annotations

import contextlib
import logging
import marshal
import os
import signal
import sys
import threading
import time
from collections import deque
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from hub.intake.handoff import Handoff
from hub.intake.lean.client import LeanClient
from hub.intake.protocol import (
    CHILD_BACKLOG,
    FORWARD_BATCH,
    FRAME_ACK,
    FRAME_CONFIG,
    FRAME_MESSAGES,
    FRAME_ON_CONNECT,
    FRAME_PUBLISH,
    FRAME_STATUS,
    FRAME_STOP,
    HEAD_BYTES,
    LOG_FORMAT,
    IntakeConfig,
)
from hub.tuning import tune_process
from hub.tuning.malloc import trim

log = logging.getLogger(__name__)

LEAN_BACKLOG_FRAMES = 8  # socket reads (each up to 256 KiB) waiting for the forwarder at most


def _forwarding_client(config: IntakeConfig, child: _Child) -> Any:
    """paho's MqttClient whose messages go to the hub process as plain tuples (paho mode)."""
    import paho.mqtt.client as paho  # only in paho mode

    from hub.intake.paho_client import MqttClient

    class _ForwardingClient(MqttClient):
        def _on_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
            try:
                topic = msg.topic
            except UnicodeDecodeError:  # a broker let it through: the hub refuses it, named
                topic = msg._topic.decode("utf-8", "backslashreplace")
            child.take(topic, msg.payload, msg.qos, bool(msg.retain), self._generation,
                       msg.mid)

        def _on_status(self, connected: bool) -> None:
            child.send((FRAME_STATUS, connected, self.last_error, self.ring.index))

    client = _ForwardingClient(
        config.url, config.client_id, config.subscriptions, on_message=lambda _m: None,
        ca_file=_path(config.ca_file), cert_file=_path(config.cert_file),
        key_file=_path(config.key_file), status_topic=config.status_topic,
        protocol=config.protocol,
    )
    client.on_connected = child.on_connect
    return client


class _Child:
    """The child's three parts: paho's thread, a forwarder thread and the command loop."""

    def __init__(self, config: IntakeConfig, up: Connection, down: Connection) -> None:
        self.up = up
        self.down = down
        self.parent = os.getppid()
        self.backlog: Handoff[tuple[Any, ...]] = Handoff(CHILD_BACKLOG)
        # (generation, mid, qos) of every message forwarded and not yet acked, in token order
        self.unacked: deque[tuple[int, int, int]] = deque()
        self.next_token = self.first_unacked = config.first_token
        self.send_lock = threading.Lock()
        self.max_payload = config.max_payload_bytes
        self.oversized: dict[int, int] = {}  # token -> size of a payload sent as its head
        self.lean = config.client == "lean"
        self.frames: Handoff[list[Any]] = Handoff(LEAN_BACKLOG_FRAMES * 4)
        self.client: Any
        if self.lean:
            self.client = LeanClient(
                config.url, config.client_id, config.subscriptions, self.take_batch,
                ca_file=_path(config.ca_file), cert_file=_path(config.cert_file),
                key_file=_path(config.key_file), status_topic=config.status_topic,
                protocol=config.protocol, first_token=config.first_token,
            )
            self.client.on_status = lambda up, error: self.send(
                (FRAME_STATUS, up, error, self.client.ring.index))
            self.client.on_connected = self.on_connect
        else:
            self.client = _forwarding_client(config, self)

    def take_batch(self, messages: list[Any]) -> bool:
        """Queue one read's messages as one frame (lean client's thread); False when full."""
        limit = self.max_payload
        if limit and any(len(m[1]) > limit for m in messages):
            messages = [self._head_only(m) if len(m[1]) > limit else m for m in messages]
        self.frames.put(messages)
        return len(self.frames.items) < LEAN_BACKLOG_FRAMES

    def take(self, topic: str, payload: bytes | bytearray, qos: int, retain: bool, generation: int,
             mid: int) -> None:
        """Number one message and queue it for the hub (paho's thread; waits while full)."""
        token = self.next_token
        self.next_token = token + 1
        self.unacked.append((generation, mid, qos))  # before the hub can see and ack it
        message = (topic, payload, qos, retain, time.time_ns(), token)
        if self.max_payload and len(payload) > self.max_payload:
            message = self._head_only(message)
        self.backlog.put(message)

    def _head_only(self, message: tuple[Any, ...]) -> tuple[Any, ...]:
        """A message too large to forward: its head crosses the pipe, its size beside it."""
        topic, payload, qos, retain, received_ns, token = message
        self.oversized[token] = len(payload)  # refused by the hub as too_large, with the size
        return (topic, bytes(payload[:HEAD_BYTES]), qos, retain, received_ns, token)

    def _frame(self, batch: list[Any]) -> tuple[Any, ...]:
        """The frame of a batch, with the sizes of payloads sent as their head only."""
        if not self.oversized:
            return (FRAME_MESSAGES, batch)
        pop = self.oversized.pop
        return (FRAME_MESSAGES, batch, {m[5]: pop(m[5]) for m in batch if m[5] in self.oversized})

    def ack_upto(self, token: int) -> None:
        """Acknowledge every forwarded message up to and including ``token``, in order."""
        if self.lean:
            self.client.ack_upto(token)
            return
        unacked = self.unacked
        ack_mid = self.client.ack_mid
        for _ in range(min(token - self.first_unacked + 1, len(unacked))):
            generation, mid, qos = unacked.popleft()
            ack_mid(generation, mid, qos)
        self.first_unacked = max(self.first_unacked, token + 1)

    def on_connect(self) -> None:
        """Tell the hub a connection is up (it republishes retained alarms)."""
        self.send((FRAME_ON_CONNECT,))

    def send(self, frame: tuple[Any, ...]) -> None:
        """Send one frame to the hub; exit if the hub is gone."""
        data = marshal.dumps(frame)
        try:
            with self.send_lock:
                self.up.send_bytes(data)
        except OSError:
            self.exit_orphaned()

    def exit_orphaned(self) -> None:
        """The hub process is gone: leave at once, acknowledging nothing more."""
        log.error("hub process gone; MQTT intake exiting (unacknowledged messages stay queued)")
        os._exit(1)

    def forward_frames(self) -> None:
        """Send each of the lean client's reads to the hub as one frame."""
        handoff = self.frames
        frames = handoff.items
        forwarded = False
        while True:
            if not frames:
                handoff.wait(0.5)
                if not frames:
                    if os.getppid() != self.parent:
                        self.exit_orphaned()
                    if forwarded:
                        forwarded = False
                        trim()  # as in forward_loop
                    continue
            self.send(self._frame(frames.popleft()))
            self.client.resume()
            forwarded = True

    def forward_loop(self) -> None:
        """Send queued messages to the hub in batches (as many as are waiting, up to a frame)."""
        handoff = self.backlog
        backlog = handoff.items
        forwarded = False
        while True:
            if not backlog:
                handoff.wait(0.5)
                if not backlog:
                    if os.getppid() != self.parent:
                        self.exit_orphaned()
                    if forwarded:
                        # Quiet for half a second after messages: give back the heap pages a
                        # burst's backlog left free (~3 MB after 100,000 messages).
                        forwarded = False
                        trim()
                    continue
            count = min(len(backlog), FORWARD_BATCH)
            self.send(self._frame([backlog.popleft() for _ in range(count)]))
            forwarded = True

    def command_loop(self) -> None:
        """Carry out the hub's acks, publishes and stop, in the order they were sent."""
        client = self.client
        while True:
            try:
                frame = marshal.loads(self.down.recv_bytes())
            except (EOFError, OSError):
                self.exit_orphaned()
                return
            kind = frame[0]
            if kind == FRAME_ACK:
                self.ack_upto(frame[1])
            elif kind == FRAME_PUBLISH:
                client.publish(frame[1], frame[2], retain=frame[4], qos=frame[3])
            elif kind == FRAME_STOP:
                client.stop()
                return


def _path(text: str | None) -> Path | None:
    return None if text is None else Path(text)


def child_main(up_fd: int, down_fd: int) -> None:
    """Entry point of the intake process: the pipes' file descriptors, config as first frame."""
    # Ctrl-C reaches the whole process group: the hub decides when we stop, after its last acks.
    # SIGTERM keeps its default (exit): what was not acked yet is redelivered, nothing is lost.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    up, down = Connection(up_fd, readable=False), Connection(down_fd, writable=False)
    try:
        kind, fields = marshal.loads(down.recv_bytes())
    except (EOFError, OSError):
        os._exit(1)
    if kind != FRAME_CONFIG:
        raise SystemExit(f"intake: expected the config frame first, got {kind}")
    config = IntakeConfig(**fields)
    logging.basicConfig(level=config.log_level, format=LOG_FORMAT)
    child = _Child(config, up, down)
    threading.Thread(target=child.forward_frames if child.lean else child.forward_loop,
                     name="intake-forward", daemon=True).start()
    child.client.start()
    child.command_loop()
    with contextlib.suppress(OSError):
        up.close()


if __name__ == "__main__":
    tune_process()
    child_main(int(sys.argv[1]), int(sys.argv[2]))
