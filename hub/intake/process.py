"""MQTT intake in a child process: paho reads and acknowledges there, the pipeline runs here.

Why a process: paho's reading costs about as much CPU per message as the whole pipeline, and
under one GIL the two capped the drain rate and put each other's pauses into the alarm latency.
The child runs the same ``MqttClient`` (TLS, MQTT 5 with the 3.1.1 fallback, connection
generations); messages cross a pipe in marshalled batches, and acknowledgements and publishes
come back through a second pipe, in order, so "ack only once durable" holds exactly as before.

If the hub process dies the child sees the pipe close and exits without acknowledging anything
more (the broker redelivers); if the child dies the hub starts a new one, and acknowledgements
of the old child's messages are dropped (their packet ids belong to a connection that is gone).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import marshal
import multiprocessing
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from hub.intake.common import STATUS_TOPIC, parse_mqtt_urls
from hub.intake.inbound import Oversized
from hub.intake.metrics import CONNECTED, CONNECTS, ReceivedCounter
from hub.intake.protocol import (
    FRAME_ACK,
    FRAME_CONFIG,
    FRAME_MESSAGES,
    FRAME_ON_CONNECT,
    FRAME_PUBLISH,
    FRAME_STATUS,
    FRAME_STOP,
    IntakeConfig,
)
from hub.model import InboundMessage

log = logging.getLogger(__name__)

PULL_MAX = 5000  # messages the pipeline takes per ``receive``
PIPE_BYTES = 1 << 20  # pipe buffer asked of Linux (default 64 KiB): frames cross in one read
_F_SETPIPE_SZ = 1031
RESTART_DELAY_S = 1.0
# A message's ack token is an int: the child's epoch above these bits, its running number below.
# The hub acknowledges in arrival order, so one token per batch stands for every message before
# it: no per-message tuple on either side, and an older child's tokens are told apart.
TOKEN_EPOCH_SHIFT = 40
# InboundMessage built from the child's tuple in C (no Python-level __new__ per message).
_INBOUND: Callable[[tuple[Any, ...]], InboundMessage] = partial(tuple.__new__, InboundMessage)


class IntakeProcess(ReceivedCounter):
    """The hub's side of the intake: same interface as ``MqttClient``, paho in a child."""

    def __init__(
        self,
        url: str,
        client_id: str,
        subscriptions: list[tuple[str, int]],
        *,
        ca_file: Path | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        status_topic: str = STATUS_TOPIC,
        protocol: str = "auto",
        client: str = "lean",
        max_payload_bytes: int = 0,
    ) -> None:
        self.urls = parse_mqtt_urls(url)
        self.url = self.urls[0]  # the one the child is connected to (or tries), as it reports
        self.on_connected: Callable[[], object] | None = None
        self.last_error: str | None = None
        self._config = IntakeConfig(
            url, client_id, subscriptions, _opt(ca_file), _opt(cert_file), _opt(key_file),
            status_topic, protocol, logging.getLogger().getEffectiveLevel(), client=client,
            max_payload_bytes=max_payload_bytes,
        )
        self._connected = threading.Event()
        self._stopping = False
        self._epoch = 0  # which child: tokens of an older child are never acknowledged
        self._send_lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._down: Connection | None = None
        self._up: tuple[Connection, int] | None = None  # (pipe from the child, its epoch)

    # ------------------------------------------------------------------ lifecycle

    def start(self, wait_s: float = 0.0) -> bool:
        """Start the child (it connects and retries forever); optionally wait for a connect."""
        self._spawn()
        if wait_s > 0:
            return self._connected.wait(wait_s)
        return self._connected.is_set()

    def stop(self) -> None:
        """Let the child publish offline and disconnect (after every ack sent so far)."""
        self._stopping = True
        proc = self._proc
        if proc is None:
            return
        self._send((FRAME_STOP,))
        # Nobody pulls messages any more: discard what the child still sends (it is not
        # acknowledged, so the broker keeps it), or a full pipe would hold the child up.
        up = self._up
        if up is not None:
            threading.Thread(target=_discard, args=(up[0],), name="intake-discard",
                             daemon=True).start()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            log.error("MQTT intake did not stop in 15 s; terminating it")
            proc.terminate()
            proc.wait(5)
        self._connected.clear()
        CONNECTED.set(0)

    @property
    def connected(self) -> bool:
        """True while the child is connected to the broker."""
        return self._connected.is_set()

    @property
    def pid(self) -> int | None:
        """The child's process id (None before start)."""
        return None if self._proc is None else self._proc.pid

    def _spawn(self) -> None:
        # A plain ``python -m hub.intake.child`` rather than multiprocessing's spawn: no resource
        # tracker process and no re-import of the hub's main module (~25 MB less in all).
        up_read, up_write = multiprocessing.Pipe(duplex=False)
        down_read, down_write = multiprocessing.Pipe(duplex=False)
        for conn in (up_read, down_read):
            _widen(conn)
        self._epoch += 1
        fds = (up_write.fileno(), down_read.fileno())
        proc = subprocess.Popen(
            [sys.executable, "-m", "hub.intake.child", str(fds[0]), str(fds[1])], pass_fds=fds,
            stdin=subprocess.DEVNULL,
        )
        # Keep only our ends open: each side then sees EOF when the other goes away.
        up_write.close()
        down_read.close()
        self._proc, self._down = proc, down_write
        config = self._config._replace(first_token=self._epoch << TOKEN_EPOCH_SHIFT)
        self._send((FRAME_CONFIG, config._asdict()))
        self._up = (up_read, self._epoch)
        log.info("MQTT intake process %s started", proc.pid)

    # ------------------------------------------------------------------ the pipeline's thread

    def receive(self, timeout: float) -> list[InboundMessage]:
        """Messages that have arrived, waiting up to ``timeout`` s for the first.

        The pipeline's thread calls it whenever its inbox is empty: no reader thread, no queue
        between the two, and the pipe itself is the back-pressure (a busy pipeline stops
        reading, the child's backlog fills, paho stops reading, the broker keeps the rest).
        """
        up = self._up
        if up is None:  # between two children
            time.sleep(min(timeout, 0.05))
            return []
        conn, epoch = up
        out: list[InboundMessage] = []
        try:
            if not conn.poll(timeout):
                return out
            while True:
                self._frame(marshal.loads(conn.recv_bytes()), out)
                if len(out) >= PULL_MAX or not conn.poll(0):
                    return out
        except (EOFError, OSError):
            self._child_gone(conn, epoch)
            return out

    def _frame(self, frame: Any, out: list[InboundMessage]) -> None:
        kind = frame[0]
        if kind == FRAME_MESSAGES:
            start = len(out)
            out += map(_INBOUND, frame[1])
            self.received += len(frame[1])
            if len(frame) > 2:  # payloads too large: their heads stand in for them
                sizes = frame[2]
                for i in range(start, len(out)):
                    size = sizes.get(out[i].ack_token)
                    if size is not None:
                        out[i] = out[i]._replace(payload=Oversized(out[i].payload, size))
        elif kind == FRAME_STATUS:
            self.url = self.urls[frame[3] % len(self.urls)]
            self._status(bool(frame[1]), frame[2])
        elif kind == FRAME_ON_CONNECT and self.on_connected is not None:
            threading.Thread(target=self.on_connected, name="on-connected", daemon=True).start()

    def _child_gone(self, conn: Connection, epoch: int) -> None:
        conn.close()
        self._up = None
        self._connected.clear()
        CONNECTED.set(0)
        if self._stopping or epoch != self._epoch:
            return
        code = self._proc.poll() if self._proc is not None else None
        self.last_error = f"MQTT intake process exited (code {code}); restarting"
        log.error("%s", self.last_error)
        threading.Thread(target=self._respawn, name="intake-respawn", daemon=True).start()

    def _respawn(self) -> None:
        time.sleep(RESTART_DELAY_S)
        if not self._stopping:
            self._spawn()

    def _status(self, connected: bool, last_error: str | None) -> None:
        self.last_error = last_error
        if connected and not self._connected.is_set():
            CONNECTS.inc()
        if connected:
            self._connected.set()
        else:
            self._connected.clear()
        CONNECTED.set(1 if connected else 0)

    # ------------------------------------------------------------------ any thread

    def ack_many(self, tokens: list[Any]) -> None:
        """Acknowledge messages in order (up to the last token), except a gone child's."""
        for token in reversed(tokens):
            if type(token) is int:
                if token >> TOKEN_EPOCH_SHIFT == self._epoch:
                    self._send((FRAME_ACK, token))
                return

    def publish(self, topic: str, payload: bytes, retain: bool = False, qos: int = 1) -> None:
        """Publish through the child (paho queues it while disconnected)."""
        self._send((FRAME_PUBLISH, topic, bytes(payload), qos, retain))

    def _send(self, frame: tuple[Any, ...]) -> None:
        data = marshal.dumps(frame)
        with self._send_lock:
            down = self._down
            if down is None:
                return
            try:
                down.send_bytes(data)
            except OSError:
                # The child is gone: what it did not ack is redelivered to its successor.
                log.warning("MQTT intake process not reachable; frame dropped")


def _widen(conn: Connection) -> None:
    """Ask for a 1 MiB pipe buffer (Linux); keep the default where that is refused."""
    with contextlib.suppress(OSError, ValueError):
        fcntl.fcntl(conn.fileno(), _F_SETPIPE_SZ, PIPE_BYTES)


def _discard(conn: Connection) -> None:
    """Read and drop frames until the child closes its end."""
    # TypeError: the receiving thread closed the connection while this read (its handle None)
    with contextlib.suppress(EOFError, OSError, TypeError):
        while True:
            conn.recv_bytes()


def _opt(path: Path | None) -> str | None:
    return None if path is None else str(path)
