"""The lean MQTT client (``hub.intake.lean``) against the real Mosquitto, item by item.

Each test drives ``LeanClient`` directly; the hub-level tests (``test_ingest_e2e.py``,
``test_mqtt_tls.py``, the torture tests) run it inside ``hub run``, where it is the default.
Malformed packets come from a fake broker (a socket that answers CONNECT and then breaks the
protocol): the real one never sends them.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hub.intake.lean import wire
from hub.intake.lean.client import LeanClient, Message
from tests.support.mqtt_util import Collector, publish_many
from tests.support.require import require_binary
from tests.support.services import MosquittoServer
from tests.test_mqtt_tls import TlsMosquitto, pki  # noqa: F401  (pki: a fixture)

TOPICS = [("t/#", 1)]


class Sink:
    """What the client hands on, per read, and its connection states."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.states: list[bool] = []
        self._cond = threading.Condition()

    def __call__(self, batch: list[Message]) -> bool:
        with self._cond:
            self.messages += batch
            self._cond.notify_all()
        return True

    def status(self, connected: bool, _error: str | None) -> None:
        with self._cond:
            self.states.append(connected)
            self._cond.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                assert left > 0, f"timed out; {len(self.messages)} messages, {self.states}"
                self._cond.wait(min(left, 0.2))


def _client(url: str, client_id: str, sink: Sink, **kwargs: Any) -> LeanClient:
    client = LeanClient(url, client_id, kwargs.pop("subscriptions", TOPICS), sink, **kwargs)
    client.on_status = sink.status
    return client


@pytest.fixture
def clients() -> Iterator[list[LeanClient]]:
    made: list[LeanClient] = []
    yield made
    for c in made:
        c.stop()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_persistent_session_qos_0_and_1_acked_only_when_told(
    mosquitto: MosquittoServer, clients: list[LeanClient], protocol: str
) -> None:
    sink = Sink()
    first = _client(mosquitto.url, "lean-session", sink, protocol=protocol)
    assert first.start(wait_s=10)
    qos1 = [(f"t/a/{i}", f"one {i}".encode(), 1, False) for i in range(300)]
    qos0 = [(f"t/b/{i}", f"zero {i}".encode(), 0, False) for i in range(5)]
    publish_many(mosquitto.url, qos1 + qos0)
    sink.wait(lambda: len(sink.messages) == 305)
    got = {(m[0], m[1], m[2]) for m in sink.messages}
    assert got == {(t, p, q) for t, p, q, _ in qos1 + qos0}
    assert [m[5] for m in sink.messages] == list(range(305))  # tokens in arrival order
    # none acked yet: 300 QoS 1 in flight at once (receive maximum 65535, not the default 20)
    acked = [m for m in sink.messages if m[5] <= 199]
    first.ack_upto(199)
    first.stop()
    # away: the session keeps what arrives now
    publish_many(mosquitto.url, [("t/c/late", b"late", 1, False)])

    again = Sink()
    second = _client(mosquitto.url, "lean-session", again, protocol=protocol)
    clients.append(second)
    assert second.start(wait_s=10)
    expected = {(t, p) for t, p, q, _ in qos1 if (t, p) not in {(m[0], m[1]) for m in acked}}
    expected.add(("t/c/late", b"late"))
    again.wait(lambda: len(again.messages) >= len(expected))
    assert {(m[0], m[1]) for m in again.messages} == expected  # no QoS 0, no acked one


def test_tls_with_ca_and_client_certificate(tmp_path: Path, pki: Path,  # noqa: F811
                                            clients: list[LeanClient]) -> None:
    require_binary("mosquitto")
    broker = TlsMosquitto(tmp_path / "tls", pki)
    broker.start()
    try:
        sink = Sink()
        client = _client(broker.url, "lean-tls", sink, ca_file=pki / "ca.crt",
                         cert_file=pki / "client.crt", key_file=pki / "client.key")
        clients.append(client)
        assert client.start(wait_s=10)
        client.publish("t/tls", b"over tls", qos=1)  # loops back through our subscription
        sink.wait(lambda: any(m[0] == "t/tls" for m in sink.messages))

        bare = Sink()
        refused = _client(broker.url, "lean-tls-nocert", bare, ca_file=pki / "ca.crt")
        clients.append(refused)
        assert not refused.start(wait_s=3)
        assert refused.last_error and "connect failed" in refused.last_error
    finally:
        broker.stop()


class PasswordMosquitto(MosquittoServer):
    """The real Mosquitto with anonymous access off and one user in a password file."""

    def _write_config(self) -> None:
        super()._write_config()
        passwords = self.workdir / "passwords"
        subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "hub", "s3cret:/@"],
                       check=True, capture_output=True)
        text = self.config_path.read_text().replace("allow_anonymous true",
                                                    "allow_anonymous false")
        self.config_path.write_text(text + f"password_file {passwords}\n")

    def _ready(self) -> bool:
        from tests.support.services import port_open

        return port_open(self.host, self.port)


def test_username_and_password(tmp_path: Path, clients: list[LeanClient]) -> None:
    require_binary("mosquitto")
    require_binary("mosquitto_passwd")
    broker = PasswordMosquitto(tmp_path / "pw")
    broker.start()
    try:
        wrong = _client(f"mqtt://hub:nope@127.0.0.1:{broker.port}", "lean-pw-wrong", Sink())
        clients.append(wrong)
        assert not wrong.start(wait_s=2)
        assert wrong.last_error and "connect refused" in wrong.last_error
        sink = Sink()
        right = _client(f"mqtt://hub:s3cret%3A%2F%40@127.0.0.1:{broker.port}", "lean-pw", sink)
        clients.append(right)
        assert right.start(wait_s=10)
        right.publish("t/pw", b"in", qos=1)
        sink.wait(lambda: any(m[0] == "t/pw" for m in sink.messages))
    finally:
        broker.stop()


def test_retained_status_online_and_offline(mosquitto: MosquittoServer,
                                            clients: list[LeanClient]) -> None:
    client = _client(mosquitto.url, "lean-status", Sink(), status_topic="hub/status")
    assert client.start(wait_s=10)
    watch = Collector(mosquitto.url, "hub/status")
    try:
        assert watch.wait_for(lambda t, p: p == b"online")
        client.stop()
        assert watch.wait_for(lambda t, p: p == b"offline")
    finally:
        watch.close()
    later = Collector(mosquitto.url, "hub/status")  # retained: a newcomer sees offline
    try:
        assert later.wait_for(lambda t, p: p == b"offline")
    finally:
        later.close()


def test_last_will_when_the_client_dies(mosquitto: MosquittoServer, tmp_path: Path) -> None:
    script = tmp_path / "die.py"
    script.write_text(
        "import sys, time\n"
        "from hub.intake.lean.client import LeanClient\n"
        "c = LeanClient(sys.argv[1], 'lean-will', [], lambda b: True, keepalive=2)\n"
        "assert c.start(wait_s=10)\n"
        "print('up', flush=True)\n"
        "time.sleep(60)\n")
    watch = Collector(mosquitto.url, "hub/status")
    proc = subprocess.Popen([sys.executable, str(script), mosquitto.url],
                            stdout=subprocess.PIPE, cwd=Path(__file__).parent.parent)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
        assert watch.wait_for(lambda t, p: p == b"online")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert watch.wait_for(lambda t, p: p == b"offline", timeout=15)  # the broker's will
    finally:
        if proc.poll() is None:
            proc.kill()
        watch.close()


def test_publishes_queued_while_disconnected_then_delivered(
    mosquitto: MosquittoServer, clients: list[LeanClient]
) -> None:
    sink = Sink()
    client = _client(mosquitto.url, "lean-pub", sink)
    clients.append(client)
    client.publish("t/queued", b"before connect", retain=True, qos=1)
    assert client.start(wait_s=10)
    sink.wait(lambda: any(m[1] == b"before connect" for m in sink.messages))
    for i in range(200):  # more than one write, all acknowledged
        client.publish("t/many", str(i).encode(), qos=1)
    sink.wait(lambda: sum(m[0] == "t/many" for m in sink.messages) == 200)
    deadline = time.monotonic() + 10
    while client._inflight and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not client._inflight  # every PUBACK of ours came back


def test_reconnects_and_resubscribes_after_the_broker_lost_the_session(
    mosquitto: MosquittoServer, clients: list[LeanClient]
) -> None:
    sink = Sink()
    client = _client(mosquitto.url, "lean-reconnect", sink)
    clients.append(client)
    assert client.start(wait_s=10)
    mosquitto.stop()
    for path in mosquitto.persistence_dir.iterdir():  # the broker forgets our subscription
        path.unlink()
    sink.wait(lambda: sink.states[-1:] == [False])
    mosquitto.start()
    sink.wait(lambda: sink.states.count(True) >= 2, timeout=40)  # backoff: 1, 2, 4 ... s
    publish_many(mosquitto.url, [("t/after", b"resubscribed", 1, False)])
    sink.wait(lambda: any(m[0] == "t/after" for m in sink.messages))


def test_keepalive_pings_and_a_silent_broker_is_dropped(
    mosquitto: MosquittoServer, clients: list[LeanClient]
) -> None:
    sink = Sink()
    client = _client(mosquitto.url, "lean-keepalive", sink, keepalive=1)
    clients.append(client)
    assert client.start(wait_s=10)
    deadline = time.monotonic() + 3.5  # idle for three keepalive periods: pings keep it up
    while time.monotonic() < deadline:
        assert client.connected and sink.states == [True]
        time.sleep(0.1)
    assert mosquitto.pid is not None
    os.kill(mosquitto.pid, signal.SIGSTOP)  # no PINGRESP any more
    try:
        sink.wait(lambda: sink.states[-1:] == [False], timeout=10)
        assert client.last_error and "PINGRESP" in client.last_error
    finally:
        os.kill(mosquitto.pid, signal.SIGCONT)
    sink.wait(lambda: sink.states.count(True) >= 2, timeout=40)


# ------------------------------------------------------------------ a fake broker for bad input

class FakeBroker:
    """Accepts connections, records each CONNECT, answers CONNACK, grants the SUBSCRIBE (QoS
    1 for each filter, as Mosquitto does) and then sends ``then`` bytes."""

    def __init__(self, then: bytes, v5: bool = True) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.then = then
        self.v5 = v5
        self.connects: list[bytes] = []
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.server.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            with conn:
                conn.settimeout(5)
                data = conn.recv(65536)
                self.connects.append(data)
                connack = b"\x20\x03\x00\x00\x00" if self.v5 else b"\x20\x02\x00\x00"
                try:
                    conn.sendall(connack)
                    conn.sendall(suback_for(conn.recv(65536), self.v5) + self.then)
                    while True:
                        chunk = conn.recv(65536)
                        if not chunk or chunk.endswith(wire.DISCONNECT_BYTES):
                            break  # a broker closes the connection on DISCONNECT
                except OSError:
                    pass

    def close(self) -> None:
        self._stop = True
        self.server.close()


def suback_for(subscribe: bytes, v5: bool) -> bytes:
    """The SUBACK granting QoS 1 to every filter of a SUBSCRIBE packet."""
    assert subscribe[0] == 0x82, f"expected SUBSCRIBE, got {subscribe[:1].hex()}"
    length, p = wire.read_varint(subscribe, 1, len(subscribe))
    end, pid, p = p + length, subscribe[p:p + 2], p + 2
    if v5:
        props, p = wire.read_varint(subscribe, p, end)
        p += props
    codes = bytearray()
    while p < end:
        p += 2 + int.from_bytes(subscribe[p:p + 2], "big") + 1  # the filter and its options
        codes.append(1)
    body = pid + (b"\x00" if v5 else b"") + codes
    return b"\x90" + wire.varint(len(body)) + body


def _publish(topic: bytes, body: bytes, first: int = 0x30) -> bytes:
    return bytes([first]) + wire.varint(2 + len(topic) + len(body)) + (
        len(topic).to_bytes(2, "big") + topic + body)


MALFORMED = {
    "qos 3": _publish(b"t/x", b"\x00\x01\x00p", first=0x36),
    "qos 2 never subscribed": _publish(b"t/x", b"\x00\x01\x00p", first=0x34),
    "topic not utf-8": _publish(b"t/\xff", b"\x00p", first=0x30),
    "wildcard in topic": _publish(b"t/#", b"\x00p"),
    "packet id 0": _publish(b"t/x", b"\x00\x00\x00p", first=0x32),
    "topic overruns": b"\x30\x04\x00\x09t/",
    "varint five bytes": b"\x30\xff\xff\xff\xff\x01",
    "subscribe to a client": b"\x82\x02\x00\x01",
    "reserved flags": b"\xd1\x00",
    "unknown property": _publish(b"t/x", b"\x01\x7fp"),
    "topic alias": _publish(b"", b"\x03\x23\x00\x01p"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_packet_drops_the_connection_with_the_reason(
    name: str, caplog: pytest.LogCaptureFixture, clients: list[LeanClient]
) -> None:
    fake = FakeBroker(MALFORMED[name])
    try:
        sink = Sink()
        client = _client(f"mqtt://127.0.0.1:{fake.port}", "lean-fuzz", sink)
        clients.append(client)
        with caplog.at_level(logging.WARNING, logger="hub.intake.lean.client"):
            client.start()  # the bad packet may come with the SUBACK: connected or not
            sink.wait(lambda: sink.states[-1:] == [False])
            sink.wait(lambda: len(fake.connects) >= 2, timeout=10)  # and it reconnects
        assert not sink.messages
        assert "protocol error" in caplog.text, caplog.text
    finally:
        fake.close()


def test_connect_asks_for_a_persistent_session_and_a_wide_window() -> None:
    fake = FakeBroker(b"")
    client = LeanClient(f"mqtt://u:p@127.0.0.1:{fake.port}", "lean-connect", TOPICS,
                        lambda b: True)
    try:
        assert client.start(wait_s=5)
        packet = fake.connects[0]
        _length, p = wire.read_varint(packet, 1, len(packet))
        body = packet[p:]
        assert body[:7] == b"\x00\x04MQTT\x05"
        flags = body[7]
        assert not flags & 0x02  # clean start off
        assert flags & 0xC0 == 0xC0 and flags & 0x04 and flags & 0x20  # user, password, will
        props, _ = wire.properties(body, 10, len(body))
        assert props == {0x11: 7 * 24 * 3600, 0x21: 65535}
    finally:
        client.stop()
        fake.close()


def test_auto_falls_back_to_3_1_1_when_5_is_refused(clients: list[LeanClient]) -> None:
    # a broker that refuses MQTT 5: CONNACK with 3.1.1's "unacceptable protocol version"
    refusing = socket.create_server(("127.0.0.1", 0))
    port = refusing.getsockname()[1]
    seen: list[int] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = refusing.accept()
            except OSError:
                return
            with conn:
                data = conn.recv(65536)
                level = data[data.index(b"MQTT") + 4]
                seen.append(level)
                conn.sendall(b"\x20\x02\x00\x01" if level == 5 else b"\x20\x02\x00\x00")
                if level == 4:
                    conn.sendall(suback_for(conn.recv(65536), v5=False))
                    while conn.recv(65536):
                        pass

    threading.Thread(target=serve, daemon=True).start()
    try:
        client = LeanClient(f"mqtt://127.0.0.1:{port}", "lean-auto", TOPICS, lambda b: True)
        clients.append(client)
        assert client.start(wait_s=10)
        assert seen[0] == 5 and seen[-1] == 4 and not client.v5
    finally:
        refusing.close()


def test_shared_subscription_splits_the_stream(mosquitto: MosquittoServer,
                                               clients: list[LeanClient]) -> None:
    sinks = [Sink(), Sink()]
    for i, sink in enumerate(sinks):
        client = _client(mosquitto.url, f"lean-shared-{i}", sink,
                         subscriptions=[("$share/hubs/t/#", 1)])
        clients.append(client)
        assert client.start(wait_s=10)
    sent = [(f"t/s/{i}", str(i).encode(), 1, False) for i in range(400)]
    publish_many(mosquitto.url, sent)
    sinks[0].wait(lambda: len(sinks[0].messages) + len(sinks[1].messages) >= 400)
    both = sinks[0].messages + sinks[1].messages
    assert sorted(m[1] for m in both) == sorted(p for _, p, _, _ in sent)  # each once
    assert sinks[0].messages and sinks[1].messages  # and both had a share
