"""The lean MQTT client of the intake process: one I/O thread, chunks in, PUBACK batches out.

Why not paho here: paho builds an ``MQTTMessage``, calls back and writes a PUBACK for every
message, and wakes its loop per packet; in the intake process that was 25-39 µs of CPU per
message (``bench/drain.py``'s ``cpu_us_per_msg``), about as much as the whole pipeline. This
client reads the socket in chunks of up to ``CHUNK_BYTES``, parses every PUBLISH of a chunk in
one loop (``wire.scan``) straight into the tuples that cross the pipe, keeps only the packet ids
(two bytes a message), and acknowledges a durable batch with one buffer of PUBACKs.

What it does, as paho did for the hub: MQTT 5 (clean start off, session expiry, receive maximum)
and 3.1.1 (clean session off), ``auto`` trying 5 first and falling back to 3.1.1 once;
``mqtt://`` and ``mqtts://`` with a CA and a client certificate; username and password; QoS 0
and 1 in; keepalive pings; reconnect with backoff (1 s doubling to 30 s) and a SUBSCRIBE on
every connect, "connected" (status, ``online``, ``on_connected``) only once the SUBACK granted
every filter (a refusal is logged and kept in ``last_error`` with the filter and its reason
code); last will and retained ``online`` / ``offline`` on the status topic; QoS 0 and 1
publishes, queued while disconnected and resent (DUP) after a reconnect until acknowledged.
Acknowledgements belong to the connection the messages came on: a token of an older connection
acks nothing (the broker redelivers those messages). Anything the broker sends that breaks the
protocol drops the connection with the reason logged (``wire.ProtocolError``).

Only the I/O thread touches the socket (a TLS socket is not safe for a read and a write from
two threads at once); other threads queue bytes and wake it through a socket pair.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from hub.intake.common import (
    STATUS_TOPIC,
    MqttUrl,
    UrlRing,
    parse_mqtt_urls,
    refused_subscriptions,
)
from hub.intake.lean import wire
from hub.intake.lean.wire import ProtocolError

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600
KEEPALIVE_S = 30
CHUNK_BYTES = 256 * 1024  # read per pass before parsing (several recv calls under TLS)
CONNECT_TIMEOUT_S = 10.0
RECONNECT_MIN_S, RECONNECT_MAX_S = 1.0, 30.0
STOP_PUBLISH_WAIT_S = 2.0

Message = tuple[str, bytes, int, bool, int, int]  # (topic, payload, qos, retain, ns, token)

# CONNACK refusals that mean "this broker does not speak MQTT 5" (3.1.1 code 1, MQTT 5 0x84).
_UNSUPPORTED_VERSION = {1, 0x84}
_CONNACK_V3 = {1: "unacceptable protocol version", 2: "identifier rejected",
               3: "server unavailable", 4: "bad user name or password", 5: "not authorized"}


class Refused(Exception):
    """The broker answered CONNECT with a refusal."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code


class _Chunk:
    """The packet ids of the messages of one read, for acknowledging them later."""

    __slots__ = ("first", "generation", "ids", "qos0")

    def __init__(self, first: int, generation: int, ids: bytearray, qos0: bool) -> None:
        self.first = first  # token of its first message
        self.generation = generation
        self.ids = ids  # two bytes a message, 00 00 for QoS 0
        self.qos0 = qos0


class LeanClient:
    """A persistent-session subscriber and publisher; messages go to ``on_batch`` per read."""

    def __init__(
        self,
        url: str,
        client_id: str,
        subscriptions: list[tuple[str, int]],
        on_batch: Callable[[list[Message]], bool],
        *,
        ca_file: Path | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        status_topic: str = STATUS_TOPIC,
        protocol: str = "auto",
        first_token: int = 0,
        keepalive: int = KEEPALIVE_S,
    ) -> None:
        # one URL or several (a cluster's nodes): the next one after a failed or lost connection
        self.ring = UrlRing(parse_mqtt_urls(url), RECONNECT_MIN_S, RECONNECT_MAX_S)
        self.client_id = client_id
        self.subscriptions = subscriptions
        self.on_batch = on_batch  # returns False when the consumer is full: reading pauses
        self.status_topic = status_topic
        self.v5 = protocol != "3.1.1"
        self._may_fall_back = protocol == "auto"
        self.keepalive = keepalive
        self._tls = self._context(ca_file, cert_file, key_file) if self.ring.current.tls else None
        self.on_status: Callable[[bool, str | None], object] | None = None
        self.on_connected: Callable[[], object] | None = None
        self.last_error: str | None = None
        self.received = 0
        self._generation = 0
        self._connected = threading.Event()  # the connection is up (acks may go)
        self._ready = threading.Event()  # ... and the broker granted every subscription
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._lock = threading.Lock()  # guards _out, _queued, _inflight
        self._out = bytearray()  # bytes for the I/O thread to send
        self._queued: deque[tuple[str, bytes, int, bool]] = deque()  # publishes not yet sent
        self._inflight: dict[int, tuple[str, bytes, bool]] = {}  # our QoS 1 publishes unacked
        self._inflight_empty = threading.Event()
        self._inflight_empty.set()
        self._send_window = 65535  # the broker's receive maximum
        self._next_pid = 0
        self._token = first_token
        self._chunks: deque[_Chunk] = deque()
        self._ack_from = first_token  # the next token to acknowledge
        self._paused = False
        self._topics: dict[bytes, str] = {}
        self._pong = False  # a PINGRESP came (set and cleared by the I/O thread)

    @property
    def url(self) -> MqttUrl:
        """The broker URL connected to, or tried next."""
        return self.ring.current

    @staticmethod
    def _context(ca_file: Path | None, cert_file: Path | None,
                 key_file: Path | None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        if cert_file is not None:
            context.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
        return context

    # ------------------------------------------------------------------ lifecycle

    def start(self, wait_s: float = 0.0) -> bool:
        """Connect in the background (retrying forever); optionally wait for the first connect."""
        self._thread = threading.Thread(target=self._run, name="mqtt-lean", daemon=True)
        self._thread.start()
        if wait_s > 0:
            return self._ready.wait(wait_s)
        return self._ready.is_set()

    def stop(self) -> None:
        """Publish offline, send what is queued, disconnect (the session stays), end the thread."""
        if self._connected.is_set():
            self.publish(self.status_topic, b"offline", retain=True, qos=1)
            self._inflight_empty.wait(STOP_PUBLISH_WAIT_S)
        self._stopping.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(CONNECT_TIMEOUT_S + 5)

    @property
    def connected(self) -> bool:
        """True while connected to the broker with every subscription granted."""
        return self._ready.is_set()

    # ------------------------------------------------------------------ any thread

    def publish(self, topic: str, payload: bytes, retain: bool = False, qos: int = 1) -> None:
        """Publish at QoS 0 or 1 (queued while disconnected; QoS 1 resent until acknowledged)."""
        if qos not in (0, 1):
            raise ValueError(f"qos {qos}: the hub publishes at QoS 0 or 1")
        with self._lock:
            self._queued.append((topic, bytes(payload), qos, retain))
            if qos:
                self._inflight_empty.clear()  # set again once every QoS 1 one is acknowledged
        self._wake()

    def ack_upto(self, token: int) -> None:
        """Acknowledge every message up to and including ``token``, in one buffer of PUBACKs.

        Messages of a connection that is gone are skipped: the broker sends them again.
        """
        chunks = self._chunks
        out: list[bytes] = []
        generation = self._generation
        while chunks and self._ack_from <= token:
            chunk = chunks[0]
            count = len(chunk.ids) // 2
            start = self._ack_from - chunk.first
            stop = min(count, token - chunk.first + 1)
            if stop >= count:
                chunks.popleft()
            if start < stop and chunk.generation == generation:
                ids = chunk.ids[2 * start:2 * stop]
                if chunk.qos0:
                    ids = bytearray().join(ids[i:i + 2] for i in range(0, len(ids), 2)
                                           if ids[i] or ids[i + 1])
                if ids:
                    out.append(wire.pubacks(ids))
            self._ack_from = chunk.first + stop
        if out:
            with self._lock:  # the generation changes under this lock, with _out cleared
                if generation == self._generation and self._connected.is_set():
                    self._out += b"".join(out)
            self._wake()

    def resume(self) -> None:
        """The consumer has room again: read on (after ``on_batch`` returned False)."""
        if self._paused:
            self._paused = False
            self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\x00")

    # ------------------------------------------------------------------ the I/O thread

    def _run(self) -> None:
        failures_before_connack = 0
        while not self._stopping.is_set():
            sock: socket.socket | None = None
            try:
                sock, rest, session_present = self._connect()
            except Refused as exc:
                self._failed(f"connect refused: {exc}")
                if exc.code in _UNSUPPORTED_VERSION:
                    self._fall_back()
            except (OSError, ProtocolError, EOFError) as exc:
                self._failed(f"connect failed: {exc}")
                if isinstance(exc, (EOFError, ConnectionResetError)):
                    failures_before_connack += 1
                    if failures_before_connack >= 2:
                        self._fall_back()
            if sock is not None:
                self._may_fall_back = False  # this broker speaks our version: never switch
                failures_before_connack = 0
                self.ring.connected()
                try:
                    self._serve(sock, rest, session_present)
                except (OSError, ProtocolError, EOFError) as exc:
                    if not self._stopping.is_set():
                        what = "protocol error" if isinstance(exc, ProtocolError) else "lost"
                        self.last_error = f"disconnected ({what}): {exc}"
                        log.warning("MQTT %s; reconnecting", self.last_error)
                finally:
                    self._ready.clear()
                    self._connected.clear()
                    with contextlib.suppress(OSError):
                        sock.close()
                    self._status(False)
                    self._inflight_empty.set()  # nobody waits for acks of a gone connection
            if self._stopping.wait(self.ring.failed()):  # and the next URL of the list
                break

    def _failed(self, error: str) -> None:
        self.last_error = error
        log.warning("MQTT %s; retrying", error)
        self._status(False)

    def _fall_back(self) -> None:
        if self._may_fall_back and self.v5:
            self._may_fall_back = False
            self.v5 = False
            log.warning("broker does not accept MQTT 5; falling back to MQTT 3.1.1")

    def _status(self, connected: bool) -> None:
        if self.on_status is not None:
            self.on_status(connected, self.last_error)

    def _connect(self) -> tuple[socket.socket, bytes, bool]:
        """TCP (and TLS), CONNECT, CONNACK: (socket, bytes after the CONNACK, session present)."""
        raw = socket.create_connection((self.url.host, self.url.port), CONNECT_TIMEOUT_S)
        sock: socket.socket = raw
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:
                sock = self._tls.wrap_socket(raw, server_hostname=self.url.host)
            sock.sendall(wire.connect(
                self.client_id, v5=self.v5, keepalive=self.keepalive, clean=False,
                session_expiry=SESSION_EXPIRY_S, will=(self.status_topic, b"offline", 1, True),
                username=self.url.username, password=self.url.password))
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    raise EOFError("the broker closed the connection before CONNACK")
                data += chunk
                length, p = wire.read_varint(data, 1, len(data))
                if length >= 0 and p + length <= len(data):
                    break
            if data[0] != 0x20:
                raise ProtocolError(f"expected CONNACK first, got packet type {data[0] >> 4}")
            session_present = self._connack(data[p:p + length])
            # what follows the CONNACK: queued messages may come in the same segment
            return sock, data[p + length:], session_present
        except BaseException:
            with contextlib.suppress(OSError):
                sock.close()
            raise

    def _connack(self, body: bytes) -> bool:
        if len(body) < 2 or body[0] & 0xFE:
            raise ProtocolError("malformed CONNACK")
        code = body[1]
        if self.v5:
            if code:  # before the properties: a 3.1.1 broker answers MQTT 5 without any
                raise Refused(code, f"reason 0x{code:02x}")
            props, end = wire.properties(body, 2, len(body))
            if end != len(body):
                raise ProtocolError("CONNACK longer than its properties")
            self._send_window = props.get(0x21, 65535) or 65535
            if 0x13 in props:
                self.keepalive = props[0x13]
        elif len(body) != 2:
            raise ProtocolError("MQTT 3.1.1 CONNACK of more than two bytes")
        elif code:
            raise Refused(code, _CONNACK_V3.get(code, f"return code {code}"))
        return bool(body[0] & 1)

    def _serve(self, sock: socket.socket, rest: bytes, session_present: bool) -> None:
        """One connection: subscribe, announce online, then read, write and ping until it ends."""
        v5 = self.v5
        hello = bytearray()
        if self.subscriptions:
            hello += wire.subscribe(1, self.subscriptions, v5=v5)
        with self._lock:
            self._generation += 1
            generation = self._generation
            self._out.clear()  # acks of the previous connection mean nothing on this one
            # ours not yet acknowledged go again first (DUP); "online" once subscribed
            for pid, (topic, payload, retain) in self._inflight.items():
                hello += wire.publish(topic, payload, qos=1, retain=retain, packet_id=pid,
                                      v5=v5, dup=True)
        self.last_error = None
        self._connected.set()
        log.info("MQTT connected to %s:%s (session present: %s)", self.url.host, self.url.port,
                 session_present)
        sock.setblocking(False)
        sending = bytes(hello)
        if not self.subscriptions:
            self._subscribed()
        if rest:
            rest = self._feed(rest, v5, generation)
        wake_r = self._wake_r
        tls = self._tls is not None
        last_sent = time.monotonic()
        ping_sent = 0.0
        while True:
            if self._stopping.is_set():
                self._goodbye(sock, sending)
                return
            sending += self._take_output(v5)
            wants_read = not self._paused
            ready = tls and wants_read and sock.pending() > 0  # type: ignore[attr-defined]
            now = time.monotonic()
            if ping_sent:
                timeout = ping_sent + self.keepalive - now
            else:
                timeout = last_sent + self.keepalive / 2 - now
            if not ready:
                readers = [sock, wake_r] if wants_read else [wake_r]
                readable, writable, _ = select.select(
                    readers, [sock] if sending else [], [], max(0.0, timeout))
                ready = sock in readable
                if wake_r in readable:
                    with contextlib.suppress(BlockingIOError):
                        wake_r.recv(4096)
                if sending and sock in writable:
                    sending = sending[_send(sock, sending):]
                    last_sent = time.monotonic()
            if ready:
                rest = self._read(sock, rest, v5, generation)
                if self._pong:
                    ping_sent, self._pong = 0.0, False
            now = time.monotonic()
            if ping_sent and now - ping_sent > self.keepalive:
                if not self._paused:
                    raise TimeoutError(f"no PINGRESP within {self.keepalive} s")
                # not reading while the hub catches up: its PINGRESP waits unread; ping again
                # so the broker still hears from us
                ping_sent = 0.0
            # the broker's keepalive counts what we send, not what it sends: a client that only
            # receives (QoS 0, no acks) pings all the same, and the select above wakes for it
            if not ping_sent and now - last_sent >= self.keepalive / 2:
                sending += wire.PINGREQ_BYTES
                ping_sent = now

    def _take_output(self, v5: bool) -> bytes:
        """Bytes queued by other threads, and publishes the broker's window has room for."""
        with self._lock:
            out = bytes(self._out)
            self._out.clear()
            queued, inflight = self._queued, self._inflight
            while queued and (queued[0][2] == 0 or len(inflight) < self._send_window):
                topic, payload, qos, retain = queued.popleft()
                pid = 0
                if qos:
                    pid = self._free_pid()
                    inflight[pid] = (topic, payload, retain)
                    self._inflight_empty.clear()
                out += wire.publish(topic, payload, qos=qos, retain=retain, packet_id=pid,
                                    v5=v5)
        return out

    def _free_pid(self) -> int:
        pid = self._next_pid
        while True:
            pid = pid % 0xFFFF + 1
            if pid not in self._inflight:
                self._next_pid = pid
                return pid

    def _read(self, sock: socket.socket, rest: bytes, v5: bool, generation: int) -> bytes:
        """Read what is there (up to a chunk), parse it, hand the messages on; the cut-off rest."""
        parts = [rest] if rest else []
        size = 0
        while size < CHUNK_BYTES:
            try:
                data = sock.recv(CHUNK_BYTES)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            if not data:
                raise EOFError("the broker closed the connection")
            parts.append(data)
            size += len(data)
        if not size:
            return rest
        return self._feed(parts[0] if len(parts) == 1 else b"".join(parts), v5, generation)

    def _feed(self, data: bytes, v5: bool, generation: int) -> bytes:
        """Parse what was read, hand the messages on, handle the rest; the cut-off bytes."""
        messages: list[Message] = []
        ids = bytearray()
        others: list[tuple[int, bytes]] = []
        first = self._token
        pos, token = wire.scan(data, 0, v5, time.time_ns(), first, messages, ids, others,
                               self._topics)
        if messages:
            self._token = token
            # "00 00" is a QoS 0 message's id; found at an odd offset it is two real ids
            qos0 = b"\x00\x00" in ids and any(m[2] == 0 for m in messages)
            self._chunks.append(_Chunk(first, generation, ids, qos0))
            self.received += len(messages)
            if not self.on_batch(messages):
                self._paused = True
        for kind, body in others:
            self._control(kind, body, v5)
        return data[pos:]

    def _control(self, first: int, body: bytes, v5: bool) -> None:
        """A packet other than PUBLISH from the broker."""
        kind = first >> 4
        if kind == wire.PUBACK:
            if len(body) < 2 or (not v5 and len(body) != 2):
                raise ProtocolError("malformed PUBACK")
            pid = (body[0] << 8) | body[1]
            with self._lock:
                self._inflight.pop(pid, None)
                if not self._inflight and not any(q[2] for q in self._queued):
                    self._inflight_empty.set()
            if v5 and len(body) > 2 and body[2] >= 0x80:
                log.warning("MQTT publish %s refused by the broker: reason 0x%02x", pid, body[2])
        elif kind == wire.SUBACK:
            if len(body) < 3:
                raise ProtocolError("malformed SUBACK")
            codes = body[wire.properties(body, 2, len(body))[1]:] if v5 else body[2:]
            refused = refused_subscriptions([f for f, _ in self.subscriptions], list(codes))
            if refused is None:
                self._subscribed()
            else:
                self.last_error = refused
                log.error("MQTT %s", refused)
                self._status(False)
        elif kind == wire.PINGRESP:
            if body:
                raise ProtocolError("PINGRESP with a body")
            self._pong = True
        elif kind == wire.DISCONNECT and v5:
            code = body[0] if body else 0
            raise EOFError(f"the broker sent DISCONNECT (reason 0x{code:02x})")
        elif kind == wire.UNSUBACK:
            pass  # never asked for; harmless
        else:
            raise ProtocolError(f"unexpected packet type {kind}")

    def _subscribed(self) -> None:
        """Every subscription granted (I/O thread): connected now, ``online`` goes first."""
        with self._lock:
            self._queued.appendleft((self.status_topic, b"online", 1, True))
        self._ready.set()
        self._status(True)
        if self.on_connected is not None:
            # Off this thread: it may publish a lot and must not stall message intake.
            threading.Thread(target=self.on_connected, name="on-connected", daemon=True).start()

    def _goodbye(self, sock: socket.socket, sending: bytes) -> None:
        """Send what is left and DISCONNECT (normal: the will is not published), then wait for
        the broker to close: only then has it read our last PUBACKs. A successor connecting
        with our client id sooner would make it drop this connection with them unread."""
        data = sending + self._take_output(self.v5) + wire.DISCONNECT_BYTES
        sock.settimeout(STOP_PUBLISH_WAIT_S)
        with contextlib.suppress(OSError):
            sock.sendall(data)
            while sock.recv(65536):
                pass


def _send(sock: socket.socket, data: bytes) -> int:
    try:
        return sock.send(data)
    except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
        return 0


