"""JetStream pull consumers read straight off nats-py's socket buffer, a batch at a time.

nats-py's ``PullSubscription.fetch`` costs ~20 µs of CPU a message on top of the hub's work:
the protocol parser matches regular expressions and awaits a coroutine per message, the client
parses every message's headers (``email.parser``) and builds a ``Msg``, and ``next_msg`` makes a
uuid, a task and a ``wait_for`` task per message to take it off an ``asyncio.Queue``. The
intake needs three things of each message: its subject, its payload and its reply subject (the
ack subject, which also holds the stream's time of the message).

So: ``install`` gives one connection a parser that cuts ``MSG``/``HMSG`` frames with ``find``
and ``split`` and hands the frames of registered inboxes, all those of one socket read at once,
to a callback as ``(subject, reply, payload, headers)`` tuples; every other frame (requests,
key-value, ``PING``, ``INFO``, errors) goes through nats-py as before. ``PullConsumer`` asks for
a batch on its own inbox (``$JS.API.CONSUMER.MSG.NEXT``) and is done when the batch has come or
the server ends the request with a status (``408`` when it expired).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import cast

from nats.aio.client import Client
from nats.aio.subscription import Subscription
from nats.errors import ProtocolError
from nats.protocol.parser import AWAITING_CONTROL_LINE, Parser

log = logging.getLogger(__name__)

# subject, reply, payload, headers (None without); an empty reply is a status (the headers say)
Frame = tuple[bytes, bytes, bytes, bytes | None]
Sink = Callable[[list[Frame]], None]

LOST_GRACE_S = 1.0  # past a request's expiry with no answer: lost (a reconnect), ask again
LOST = b"lost"


class _FastParser(Parser):
    """nats-py's parser with ``MSG``/``HMSG`` cut by hand and registered inboxes' frames
    collected per socket read; anything else goes through the original one line at a time."""

    sinks: dict[int, Sink]

    async def parse(self, data: bytes = b"") -> None:
        """Parse what the socket gave; hand registered inboxes' frames on, a list per inbox."""
        buf = self.buf
        buf.extend(data)
        if self.state != AWAITING_CONTROL_LINE:  # a frame the original began before install
            await super().parse()
            buf = self.buf
            if self.state != AWAITING_CONTROL_LINE:
                return
        sinks = self.sinks
        batches: dict[int, list[Frame]] = {}
        pos, size = 0, len(buf)
        try:
            while pos < size:
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    break  # the rest of a control line is still on its way
                head = buf[pos:pos + 4]
                if head == b"HMSG" or head[:3] == b"MSG":
                    args = buf[pos:end].split()
                    try:
                        if head == b"HMSG":
                            hsize, total = int(args[-2]), int(args[-1])
                            reply = bytes(args[3]) if len(args) == 6 else b""
                        else:
                            hsize, total = 0, int(args[-1])
                            reply = bytes(args[3]) if len(args) == 5 else b""
                        sid = int(args[2])
                    except (IndexError, ValueError):
                        raise ProtocolError("nats: malformed MSG") from None
                    start = end + 2
                    if size < start + total + 2:
                        break  # the payload is still on its way
                    headers = bytes(buf[start:start + hsize]) if hsize else None
                    payload = bytes(buf[start + hsize:start + total])
                    pos = start + total + 2
                    if sid in sinks:
                        batches.setdefault(sid, []).append(
                            (bytes(args[1]), reply, payload, headers))
                    else:
                        await self.nc._process_msg(sid, bytes(args[1]), reply, payload,
                                                   headers)
                        if self.buf is not buf:  # reset by a reconnect meanwhile
                            return
                else:
                    line = bytearray(buf[pos:end + 2])
                    pos = end + 2
                    self.buf = line
                    await super().parse()
                    if self.buf is not line:  # reset meanwhile
                        return
                    self.buf = buf
        finally:
            if self.buf is buf:
                del buf[:pos]
            for sid, frames in batches.items():
                sink = sinks.get(sid)
                if sink is not None:
                    try:
                        sink(frames)
                    except Exception:  # never the read loop's end
                        log.exception("cluster: handing fetched messages on failed")


def install(nc: Client) -> dict[int, Sink]:
    """Give a connection the fast parser (idempotent); return its inbox -> sink table."""
    parser = nc._ps
    if not isinstance(parser, _FastParser):
        parser.__class__ = _FastParser  # keeps its buffer and state: safe while connected
        cast(_FastParser, parser).sinks = {}
    return cast(_FastParser, parser).sinks


class PullConsumer:
    """One durable pull consumer fetched over an inbox of its own; ``take`` gets its messages
    (frames with a reply subject) as they are read, a socket read's worth at a time."""

    def __init__(self, nc: Client, stream: str, durable: str, take: Sink) -> None:
        self.nc = nc
        self.take = take
        self.next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self.inbox = nc.new_inbox()
        self._sinks = install(nc)
        self._sub: Subscription | None = None
        self._remaining = 0
        self._waiter: asyncio.Future[bytes | None] | None = None

    async def start(self) -> None:
        """Subscribe to the inbox (nats-py subscribes it again after every reconnect)."""
        self._sub = await self.nc.subscribe(self.inbox)
        self._sinks[self._sub._id] = self._on_frames

    async def close(self) -> None:
        """Unsubscribe; frames still on their way are dropped (never acked: redelivered)."""
        if self._sub is not None:
            self._sinks.pop(self._sub._id, None)
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        self._end(LOST)

    def wake(self) -> None:
        """End the request being waited for now (the fetcher looks at its lease again)."""
        self._end(LOST)

    def _on_frames(self, frames: list[Frame]) -> None:
        messages = [f for f in frames if f[1]]
        if messages:
            self._remaining -= len(messages)
            self.take(messages)
        if len(messages) < len(frames):
            status = next(f for f in frames if not f[1])[3] or b""
            self._end(status[9:12] or b"?")  # "NATS/1.0 408 Request Timeout"
        elif self._remaining <= 0:
            self._end(None)

    def _end(self, status: bytes | None) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(status)

    async def fetch(self, batch: int, expires_s: float) -> bytes | None:
        """Ask for up to ``batch`` messages; return when all came (None) or the request ended:
        the status code (``b"408"`` when it expired, ``b"lost"`` with no answer at all)."""
        if self._sub is None:
            raise RuntimeError("pull consumer is closed")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bytes | None] = loop.create_future()
        self._waiter, self._remaining = waiter, batch
        request = b'{"batch":%d,"expires":%d}' % (batch, int(expires_s * 1e9))
        await self.nc.publish(self.next_subject, request, reply=self.inbox)
        timer = loop.call_later(expires_s + LOST_GRACE_S, self._end, LOST)
        try:
            return await waiter
        finally:
            timer.cancel()
            if self._waiter is waiter:
                self._waiter = None
