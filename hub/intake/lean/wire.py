"""MQTT 3.1.1 and 5 packets as bytes: the few the hub sends, and a parser for what it receives.

The parser is the boundary with hostile input: everything the broker sends is checked, and any
packet that breaks the protocol raises ``ProtocolError`` with the reason (the client then drops
the connection and logs it). ``scan`` is the hot loop of the lean intake: it parses every
complete packet of a chunk in one pass, PUBLISH packets straight into the tuples that cross the
pipe, with no object per message beyond that tuple and its topic and payload. Fuzzed by
``bench/fuzz_mqtt.py`` (seeds in CI: ``tests/test_fuzz_seeds.py``).
"""

from __future__ import annotations

import struct
from typing import Any

# Packet types (the high nibble of the first byte).
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = range(8, 16)

MAX_REMAINING = 268_435_455  # the largest remaining length a varint can hold
PINGREQ_BYTES = b"\xc0\x00"
DISCONNECT_BYTES = b"\xe0\x00"  # 3.1.1, and 5 with reason 0 (normal: the will is not sent)
# Topics decoded and checked once, then looked up (a topic or two per device). Bounded: at
# 100,000 devices a full cache was ~14 MB of the intake process (bench/memory.py: 44 MB
# against 30), for no hit when each device reports once; 20,000 covers the drain benchmarks'
# 10,000 devices.
TOPIC_CACHE_MAX = 20_000

# MQTT 5 property identifiers -> value kind, to skip or read properties (section 2.2.2.2).
_BYTE, _TWO, _FOUR, _VARINT, _UTF8, _BINARY, _PAIR = range(7)
_PROPERTIES = {
    0x01: _BYTE, 0x02: _FOUR, 0x03: _UTF8, 0x08: _UTF8, 0x09: _BINARY, 0x0B: _VARINT,
    0x11: _FOUR, 0x12: _UTF8, 0x13: _TWO, 0x15: _UTF8, 0x16: _BINARY, 0x17: _BYTE,
    0x18: _FOUR, 0x19: _BYTE, 0x1A: _UTF8, 0x1C: _UTF8, 0x1F: _UTF8, 0x21: _TWO, 0x22: _TWO,
    0x23: _TWO, 0x24: _BYTE, 0x25: _BYTE, 0x26: _PAIR, 0x27: _FOUR, 0x28: _BYTE, 0x29: _BYTE,
    0x2A: _BYTE,
}
# Which first bytes a client may receive besides PUBLISH (reserved flags must be as given).
_FIXED_FLAGS = {CONNACK: 0, PUBACK: 0, PUBREC: 0, PUBREL: 2, PUBCOMP: 0, SUBACK: 0,
                UNSUBACK: 0, PINGRESP: 0, DISCONNECT: 0, AUTH: 0}


class ProtocolError(Exception):
    """The broker sent something MQTT does not allow; the reason is the message."""


# ------------------------------------------------------------------------------ encoding

def varint(n: int) -> bytes:
    """A remaining length (or property length) as MQTT's variable byte integer."""
    if not 0 <= n <= MAX_REMAINING:
        raise ValueError(f"length {n} out of MQTT's range (0..{MAX_REMAINING})")
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def utf8(text: str) -> bytes:
    """A UTF-8 string with its two-byte length."""
    raw = text.encode()
    if len(raw) > 0xFFFF:
        raise ValueError(f"string of {len(raw)} bytes is longer than MQTT allows (65535)")
    return struct.pack("!H", len(raw)) + raw


def binary(data: bytes) -> bytes:
    """Binary data with its two-byte length."""
    if len(data) > 0xFFFF:
        raise ValueError(f"binary of {len(data)} bytes is longer than MQTT allows (65535)")
    return struct.pack("!H", len(data)) + data


def packet(first: int, body: bytes) -> bytes:
    """A packet: its first byte, the remaining length and the body."""
    return bytes([first]) + varint(len(body)) + body


def connect(client_id: str, *, v5: bool, keepalive: int, clean: bool,
            session_expiry: int = 0, receive_maximum: int = 65535,
            will: tuple[str, bytes, int, bool] | None = None,
            username: str | None = None, password: str | None = None) -> bytes:
    """CONNECT (MQTT 5 with session expiry and receive maximum, or 3.1.1)."""
    flags = 0x02 if clean else 0
    if will is not None:
        flags |= 0x04 | (will[2] << 3) | (0x20 if will[3] else 0)
    if username is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    body = bytearray(utf8("MQTT") + bytes([5 if v5 else 4, flags]) + struct.pack("!H", keepalive))
    if v5:
        props = b"\x11" + struct.pack("!I", session_expiry) + b"\x21" + struct.pack(
            "!H", receive_maximum)
        body += varint(len(props)) + props
    body += utf8(client_id)
    if will is not None:
        if v5:
            body += b"\x00"  # no will properties
        body += utf8(will[0]) + binary(will[1])
    if username is not None:
        body += utf8(username)
    if password is not None:
        body += binary(password.encode())
    return packet(CONNECT << 4, bytes(body))


def subscribe(packet_id: int, filters: list[tuple[str, int]], *, v5: bool) -> bytes:
    """SUBSCRIBE to (filter, QoS) pairs."""
    body = bytearray(struct.pack("!H", packet_id))
    if v5:
        body += b"\x00"
    for topic, qos in filters:
        body += utf8(topic) + bytes([qos])
    return packet((SUBSCRIBE << 4) | 0x02, bytes(body))


def publish(topic: str, payload: bytes, *, qos: int, retain: bool, packet_id: int, v5: bool,
            dup: bool = False) -> bytes:
    """PUBLISH (QoS 0 or 1)."""
    first = (PUBLISH << 4) | (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
    body = utf8(topic)
    if qos:
        body += struct.pack("!H", packet_id)
    if v5:
        body += b"\x00"
    return packet(first, body + payload)


def pubacks(packet_ids: bytes | bytearray) -> bytes:
    """PUBACKs for packet ids given as big-endian pairs: one buffer for one ``send``.

    Built by slice assignment in C rather than a packet object per message: the lean intake
    acks each durable batch of thousands at once (``bench/drain.py``).
    """
    count = len(packet_ids) // 2
    out = bytearray(4 * count)
    out[0::4] = b"\x40" * count
    out[1::4] = b"\x02" * count
    out[2::4] = packet_ids[0::2]
    out[3::4] = packet_ids[1::2]
    return bytes(out)


# ------------------------------------------------------------------------------ decoding

def read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """A variable byte integer at ``pos``: (value, position after it); (-1, pos) if cut off."""
    value = shift = 0
    for i in range(4):
        if pos + i >= end:
            return -1, pos
        byte = data[pos + i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if i and not byte:
                raise ProtocolError("variable byte integer not in its shortest form")
            return value, pos + i + 1
        shift += 7
    raise ProtocolError("variable byte integer longer than four bytes")


def properties(data: bytes, pos: int, end: int) -> tuple[dict[int, Any], int]:
    """MQTT 5 properties at ``pos`` (length first): ({id: value}, position after them).

    User properties are checked and dropped; values of the others are ints, str or bytes.
    """
    length, start = read_varint(data, pos, end)
    if length < 0:
        raise ProtocolError("properties cut off")
    stop = start + length
    if stop > end:
        raise ProtocolError(f"properties of {length} bytes overrun the packet")
    found: dict[int, Any] = {}
    p = start
    while p < stop:
        ident, p = read_varint(data, p, stop)
        kind = _PROPERTIES.get(ident)
        if kind is None:
            raise ProtocolError(f"unknown property 0x{max(ident, 0):02x}")
        if kind == _BYTE:
            _need(p + 1, stop, "property")
            value: Any = data[p]
            p += 1
        elif kind == _TWO:
            _need(p + 2, stop, "property")
            value = (data[p] << 8) | data[p + 1]
            p += 2
        elif kind == _FOUR:
            _need(p + 4, stop, "property")
            value = int.from_bytes(data[p:p + 4], "big")
            p += 4
        elif kind == _VARINT:
            value, p = read_varint(data, p, stop)
            if value < 0:
                raise ProtocolError("property cut off")
        elif kind == _PAIR:
            _, p = _string(data, p, stop)
            _, p = _string(data, p, stop)
            continue
        elif kind == _UTF8:
            value, p = _string(data, p, stop)
        else:
            _need(p + 2, stop, "property")
            size = (data[p] << 8) | data[p + 1]
            _need(p + 2 + size, stop, "property")
            value = bytes(data[p + 2:p + 2 + size])
            p += 2 + size
        if ident in found and ident != 0x0B:
            raise ProtocolError(f"property 0x{ident:02x} given twice")
        found[ident] = value
    return found, stop


def _need(upto: int, end: int, what: str) -> None:
    if upto > end:
        raise ProtocolError(f"{what} cut off")


def _string(data: bytes, pos: int, end: int) -> tuple[str, int]:
    _need(pos + 2, end, "string")
    size = (data[pos] << 8) | data[pos + 1]
    _need(pos + 2 + size, end, "string")
    try:
        text = bytes(data[pos + 2:pos + 2 + size]).decode()
    except UnicodeDecodeError as exc:
        raise ProtocolError("string is not UTF-8") from exc
    if "\x00" in text:
        raise ProtocolError("string holds U+0000")
    return text, pos + 2 + size


def _topic(raw: bytes) -> str:
    """A received topic name, checked: UTF-8, not empty, no NUL, no wildcard."""
    try:
        topic = raw.decode()
    except UnicodeDecodeError as exc:
        raise ProtocolError("topic is not UTF-8") from exc
    if not topic:
        raise ProtocolError("empty topic (no topic alias was allowed)")
    if "\x00" in topic or "+" in topic or "#" in topic:
        raise ProtocolError(f"topic {topic[:80]!r} holds NUL or a wildcard")
    return topic


def scan(data: bytes, pos: int, v5: bool, received_ns: int, token: int,
         messages: list[tuple[str, bytes, int, bool, int, int]], packet_ids: bytearray,
         others: list[tuple[int, bytes]], topics: dict[bytes, str]) -> tuple[int, int]:
    """Parse every complete packet of ``data[pos:]``; return (position of the rest, next token).

    A PUBLISH becomes ``(topic, payload, qos, retain, received_ns, token)`` in ``messages``
    and its packet id two bytes in ``packet_ids`` (``00 00`` for QoS 0, which has none); any
    other packet becomes ``(first byte, body)`` in ``others``. ``topics`` caches decoded and
    checked topic names. Raises ProtocolError on a malformed packet.
    """
    end = len(data)
    append = messages.append
    while pos + 2 <= end:
        first = data[pos]
        length = data[pos + 1]
        if length < 0x80:
            p = pos + 2
        else:
            length, p = read_varint(data, pos + 1, end)
            if length < 0:
                break
        stop = p + length
        if stop > end:
            break
        if first >> 4 == PUBLISH:
            qos = (first >> 1) & 3
            if length < 2:
                raise ProtocolError("PUBLISH without a topic")
            t = p + 2 + ((data[p] << 8) | data[p + 1])
            if t > stop:
                raise ProtocolError("PUBLISH topic overruns the packet")
            raw = data[p + 2:t]
            topic = topics.get(raw)
            if topic is None:
                topic = _topic(raw)
                if len(topics) >= TOPIC_CACHE_MAX:
                    topics.clear()
                topics[raw] = topic
            if qos == 1:
                if t + 2 > stop:
                    raise ProtocolError("PUBLISH packet id cut off")
                if not (data[t] or data[t + 1]):
                    raise ProtocolError("PUBLISH with packet id 0")
                packet_ids += data[t:t + 2]
                t += 2
            elif qos == 0:
                if first & 0x08:
                    raise ProtocolError("QoS 0 PUBLISH with the DUP flag")
                packet_ids += b"\x00\x00"
            else:
                raise ProtocolError(f"PUBLISH with QoS {qos} (subscribed at most QoS 1)")
            if v5:
                if t < stop and not data[t]:
                    t += 1  # no properties, the common case
                else:  # rare: the broker passes on the publisher's properties
                    props_found, t = properties(data, t, stop)
                    if 0x23 in props_found:
                        raise ProtocolError("topic alias, which the hub never allowed")
            append((topic, data[t:stop], qos, bool(first & 1), received_ns, token))
            token += 1
        else:
            kind = first >> 4
            flags = _FIXED_FLAGS.get(kind)
            if flags is None:
                raise ProtocolError(f"packet type {kind} is never sent to a client")
            if first & 0x0F != flags:
                raise ProtocolError(f"packet type {kind} with reserved flags {first & 0x0F}")
            others.append((first, data[p:stop]))
        pos = stop
    return pos, token
