"""The cluster intake's own JetStream pull: the frame parser against nats-py's, and
``PullConsumer`` against a real single-node nats-server with JetStream."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.protocol.parser import Parser

from hub.cluster.jetstream import consumer_config
from hub.cluster.pull import LOST, LOST_GRACE_S, Frame, PullConsumer, _FastParser, install
from tests.support.nats import CURRENT_NATS_SERVER, NATS_SERVER
from tests.support.require import require_binary
from tests.support.services import _Server, port_open

SINK_SID = 7
ACK = b"$JS.ACK.$MQTT_msgs.p3-1.1.10.5.1733000000000000000.2"


def hmsg(subject: bytes, sid: int, reply: bytes, headers: bytes, payload: bytes) -> bytes:
    """One HMSG frame as the server writes it."""
    head = b"HMSG %s %d %s%d %d\r\n" % (subject, sid, reply + b" " if reply else b"",
                                          len(headers), len(headers) + len(payload))
    return head + headers + payload + b"\r\n"


def msg(subject: bytes, sid: int, reply: bytes, payload: bytes) -> bytes:
    """One MSG frame."""
    return (b"MSG %s %d %s%d\r\n" % (subject, sid, reply + b" " if reply else b"", len(payload))
            + payload + b"\r\n")


STREAM = b"".join([
    b'INFO {"server_id":"x","max_payload":1048576}\r\n',
    msg(b"foo", 3, b"", b"hello"),
    hmsg(b"$MQTT.msgs.hubp.3.a.b", SINK_SID, ACK, b"NATS/1.0\r\nNmqtt-Pub: 1\r\n\r\n",
         b'{"v":1}'),
    b"PING\r\n",
    msg(b"$MQTT.msgs.hubp.3.a.c", SINK_SID, ACK, b"a\r\nb"),  # CRLF inside a payload
    b"+OK\r\n",
    msg(b"empty", SINK_SID, ACK, b""),
    hmsg(b"_INBOX.x", 4, b"_INBOX.y", b"NATS/1.0\r\nA: b\r\n\r\n", b"kv"),
    hmsg(b"_INBOX.z", SINK_SID, b"", b"NATS/1.0 408 Request Timeout\r\n\r\n", b""),
    b"PONG\r\n",
    b"MSG tab\t3\tr 3\r\ntab\r\n",  # tabs between the arguments
    b"-ERR 'Stale Connection'\r\n",
])


class _Recorder:
    """Stands in for nats-py's client where the parser calls it; records every call."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes,
                           headers: bytes | None) -> None:
        self.events.append(("msg", sid, bytes(subject), bytes(reply), data, headers))

    async def _process_ping(self) -> None:
        self.events.append(("ping",))

    async def _process_pong(self) -> None:
        self.events.append(("pong",))

    async def _process_info(self, info: dict[str, Any]) -> None:
        self.events.append(("info", info))

    async def _process_err(self, err: str) -> None:
        self.events.append(("err", err))


def oracle() -> tuple[list[tuple[Any, ...]], list[Frame]]:
    """What nats-py's own parser makes of STREAM: other events, and the sink's frames."""
    nc = _Recorder()
    asyncio.run(Parser(nc).parse(STREAM))
    sink = [(e[2], e[3], e[4], e[5]) for e in nc.events if e[0] == "msg" and e[1] == SINK_SID]
    return [e for e in nc.events if not (e[0] == "msg" and e[1] == SINK_SID)], sink


def chunks(data: bytes, size: int) -> Iterator[bytes]:
    """``data`` in pieces of ``size`` bytes, as socket reads might cut it."""
    for i in range(0, len(data), size):
        yield data[i:i + size]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 17, 64, len(STREAM)])
def test_fast_parser_reads_what_nats_py_reads(size: int) -> None:
    """Cut at any byte: the registered inbox gets its frames in order, batched per read,
    and every other frame and control line reaches the client as nats-py's parser has it."""
    others, frames = oracle()
    assert len(frames) == 4 and len(others) == 7  # +OK is no event
    nc = _Recorder()
    parser = Parser(nc)
    batches: list[list[Frame]] = []
    sinks = install(type("Nc", (), {"_ps": parser})())  # type: ignore[arg-type]
    sinks[SINK_SID] = batches.append
    assert isinstance(parser, _FastParser)

    async def feed() -> None:
        for piece in chunks(STREAM, size):
            await parser.parse(piece)

    asyncio.run(feed())
    assert [f for batch in batches for f in batch] == frames
    assert nc.events == others
    assert not parser.buf
    if size == len(STREAM):
        assert len(batches) == 1  # one read, one hand-over


def test_fast_parser_takes_over_mid_frame() -> None:
    """Installed while nats-py's parser is half way through a payload: nothing lost."""
    others, frames = oracle()
    nc = _Recorder()
    parser = Parser(nc)
    cut = STREAM.index(b'{"v":1}') + 3
    batches: list[list[Frame]] = []

    async def feed() -> None:
        await parser.parse(STREAM[:cut])
        sinks = install(type("Nc", (), {"_ps": parser})())  # type: ignore[arg-type]
        sinks[SINK_SID] = batches.append
        await parser.parse(STREAM[cut:])

    asyncio.run(feed())
    # the frame the original parser had begun reached the client its way, the rest the sink
    got = [("msg", SINK_SID, *f) for batch in batches for f in batch]
    assert [e for e in nc.events if e[0] == "msg" and e[1] == SINK_SID] + got == [
        ("msg", SINK_SID, *f) for f in frames]
    assert [e for e in nc.events if not (e[0] == "msg" and e[1] == SINK_SID)] == others


class _JetStreamServer(_Server):
    """One nats-server with JetStream on a free loopback port."""

    binary_name = "nats-server"
    start_timeout = 20.0

    def _write_config(self) -> None:
        self.config_path.write_text(
            f'listen: "{self.host}:{self.port}"\n'
            f'jetstream {{ store_dir: "{self.workdir / "js"}" }}\n')

    def _command(self) -> list[str]:
        return [self.binary, "-c", str(self.config_path)]

    def _ready(self) -> bool:
        return port_open(self.host, self.port)


@pytest.fixture(params=[NATS_SERVER, CURRENT_NATS_SERVER], ids=["debian", "current"])
def js_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[_JetStreamServer]:
    """A fresh single-node JetStream server, of each release the cluster tests run."""
    server = _JetStreamServer(tmp_path / "nats", require_binary(request.param))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_pull_consumer_batches_expiry_and_ack(js_server: _JetStreamServer) -> None:
    """Full batches end when they have come, a short one when the server expires the
    request (408); subjects, payloads and ack subjects are the stream's; an ack of the last
    acknowledges all; a pull of a deleted consumer ends as lost, not in a hang."""

    async def scenario() -> None:
        nc = await nats.connect(f"nats://{js_server.host}:{js_server.port}")
        try:
            js = nc.jetstream()
            await js.add_stream(name="T", subjects=["t.>"])
            for i in range(1200):
                await js.publish(f"t.d{i % 7}.x", b"%d" % i)
            await js.add_consumer("T", consumer_config("c1", "t.>", 1))
            taken: list[Frame] = []
            pull = PullConsumer(nc, "T", "c1", taken.extend)
            await pull.start()
            assert await pull.fetch(500, 2.0) is None
            assert await pull.fetch(500, 2.0) is None
            assert len(taken) == 1000
            assert await pull.fetch(500, 0.5) == b"408"  # 200 there, then the expiry
            assert [f[2] for f in taken] == [b"%d" % i for i in range(1200)]
            assert [f[0] for f in taken[:8]] == [f"t.d{i % 7}.x".encode() for i in range(8)]
            assert all(f[1].startswith(b"$JS.ACK.T.c1.1.") for f in taken)
            assert taken[-1][1].split(b".")[5] == b"1200"  # the stream sequence
            await nc.publish(taken[-1][1].decode(), b"+ACK")
            await nc.flush()
            for _ in range(50):
                info = await js.consumer_info("T", "c1")
                if info.ack_floor is not None and info.ack_floor.stream_seq == 1200:
                    break
                await asyncio.sleep(0.05)
            assert info.ack_floor is not None and info.ack_floor.stream_seq == 1200
            assert info.num_ack_pending == 0
            assert await pull.fetch(10, 0.3) == b"408"  # nothing left
            await js.delete_consumer("T", "c1")
            began = asyncio.get_running_loop().time()
            # 2.9 does not answer (lost), 2.10 and later answer 503: an end either way, no hang
            assert await pull.fetch(10, 0.3) in (LOST, b"503")
            assert asyncio.get_running_loop().time() - began < 0.3 + LOST_GRACE_S + 1
            await pull.close()
            with pytest.raises(RuntimeError):
                await pull.fetch(10, 0.3)
            assert len(taken) == 1200
        finally:
            await nc.close()

    asyncio.run(scenario())
