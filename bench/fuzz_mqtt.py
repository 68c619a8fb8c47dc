"""Coverage-guided fuzzing (atheris) of the lean MQTT client's parser: what a broker may send.

Long form, by hand (atheris is in the ``fuzz`` dependency group, not in CI)::

    nice -n 19 uv run --group fuzz python bench/fuzz_mqtt.py --seconds 600 --json

An input is one flags byte and the bytes a broker sends after CONNACK. Flags: bit 0 picks MQTT
5 (set) or 3.1.1; bit 7 sends the bytes as a CONNACK's body instead; bits 1-6 pick a point
where the stream is cut in two, as two socket reads would cut it.

Invariants: ``wire.scan`` raises nothing but ``ProtocolError`` (with a reason); a stream cut in
two parses to exactly what it parses to whole (messages, tokens, packet ids, other packets,
the cut-off rest); every message has a str topic without NUL or wildcard, bytes payload, QoS 0
or 1, two bytes of packet id, and re-encoded by ``wire.publish`` scans back to itself; every
other packet goes through the client's ``_control`` raising nothing but ``ProtocolError`` or
``EOFError`` (a DISCONNECT); a CONNACK body raises nothing but ``ProtocolError`` or
``Refused``. The seeds are valid packets of every type a client receives, the malformed ones of
``tests/test_mqtt_lean.py``, and the corpus entries kept in ``tests/fuzz_seeds/mqtt``. CI runs
the target over the seeds without atheris (``tests/test_fuzz_seeds.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
import struct
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

MAX_LEN = 4096
KEPT = REPO / "tests" / "fuzz_seeds" / "mqtt"


def make_target() -> Callable[[bytes], None]:
    """Import the parser (instrumented when atheris is loaded) and return the fuzz target."""
    if "atheris" in sys.modules:
        import atheris

        with atheris.instrument_imports(include=["hub.intake.lean"]):
            import hub.intake.lean.client
            import hub.intake.lean.wire  # noqa: F401
    from hub.intake.lean import wire
    from hub.intake.lean.client import LeanClient, Refused
    from hub.intake.lean.wire import ProtocolError

    clients = {v5: LeanClient("mqtt://127.0.0.1:1", "fuzz", [("t/#", 1)], lambda b: True,
                              protocol="5" if v5 else "3.1.1") for v5 in (True, False)}

    def parse(chunks: list[bytes], v5: bool) -> Any:
        messages: list[Any] = []
        ids = bytearray()
        others: list[tuple[int, bytes]] = []
        rest = b""
        token = 0
        try:
            for chunk in chunks:
                data = rest + chunk
                pos, token = wire.scan(data, 0, v5, 7, token, messages, ids, others, {})
                assert 0 <= pos <= len(data)
                rest = data[pos:]
        except ProtocolError as exc:
            assert str(exc), "a ProtocolError without a reason"
            return "refused"
        return messages, bytes(ids), others, rest, token

    def one_input(data: bytes) -> None:
        if not data:
            return
        flags, stream = data[0], data[1:]
        v5 = bool(flags & 1)
        client = clients[v5]
        if flags & 0x80:
            with contextlib.suppress(ProtocolError, Refused):
                client._connack(stream)
            return
        whole = parse([stream], v5)
        cut = ((flags >> 1) & 0x3F) * len(stream) // 63
        assert parse([stream[:cut], stream[cut:]], v5) == whole, "a cut changed the parse"
        if whole == "refused":
            return
        messages, ids, others, _rest, token = whole
        assert token == len(messages) and len(ids) == 2 * len(messages)
        for i, (topic, payload, qos, retain, ns, tok) in enumerate(messages):
            assert type(topic) is str and topic and type(payload) is bytes
            assert not {"\x00", "+", "#"} & set(topic)
            assert qos in (0, 1) and type(retain) is bool and ns == 7 and tok == i
            pid = (ids[2 * i] << 8) | ids[2 * i + 1]
            assert (pid == 0) == (qos == 0)
            again = wire.publish(topic, payload, qos=qos, retain=retain, packet_id=pid, v5=v5)
            found: list[Any] = []
            pos, _ = wire.scan(again, 0, v5, 7, i, found, bytearray(), [], {})
            assert pos == len(again) and found == [messages[i]], (messages[i], found)
        for first, body in others:
            with contextlib.suppress(ProtocolError, EOFError):
                client._control(first, body, v5)

    return one_input


# ---------------------------------------------------------------- seed corpus


def _packets() -> Iterator[tuple[bool, bytes]]:
    """(MQTT 5?, a valid packet) of every kind a client receives."""
    from hub.intake.lean import wire

    for v5 in (True, False):
        for qos in (0, 1):
            for retain in (False, True):
                yield v5, wire.publish("roadsafety/flashlight/GY-FL-0001/telemetry",
                                       b'{"ts": 1764316800000, "battery_mv": 12450}', qos=qos,
                                       retain=retain, packet_id=qos * 513, v5=v5)
        yield v5, wire.publish("hub/status", b"", qos=1, retain=True, packet_id=1, v5=v5,
                               dup=True)
        yield v5, b"\x40\x02\x00\x07" + (b"\x40\x04\x00\x08\x10\x00" if v5 else b"")
        yield v5, b"\x90\x03\x00\x01\x01" if not v5 else b"\x90\x04\x00\x01\x00\x01"
        yield v5, b"\xd0\x00\xb0\x02\x00\x05"
    # MQTT 5 PUBLISH with properties the broker passes on: format, expiry, content type,
    # response topic, correlation, user property, subscription identifier
    props = (b"\x01\x01" + b"\x02" + struct.pack("!I", 60) + b"\x03" + wire.utf8("text/plain")
             + b"\x08" + wire.utf8("reply/to") + b"\x09" + wire.binary(b"corr")
             + b"\x26" + wire.utf8("k") + wire.utf8("v") + b"\x0b\x81\x01")
    body = wire.utf8("t/props") + b"\x00\x09" + wire.varint(len(props)) + props + b"payload"
    yield True, wire.packet(0x32, body)
    yield True, b"\xe0\x02\x8b\x00"  # DISCONNECT: server shutting down
    big = wire.publish("t/big", bytes(range(256)) * 8, qos=1, retain=False, packet_id=9,
                       v5=True)
    yield True, big


def write_seeds(seed_dir: Path) -> int:
    """Write the seed corpus: valid packets, streams of them, malformed ones, kept entries."""
    from tests.test_mqtt_lean import MALFORMED

    seeds: set[bytes] = set()
    packets = list(_packets())
    for v5, packet in packets:
        for cut in (0, 17, 63):
            seeds.add(bytes([(cut << 1) | v5]) + packet)
    for v5 in (True, False):
        stream = b"".join(p for w, p in packets if w == v5)
        seeds.add(bytes([(31 << 1) | v5]) + stream)
    for packet in MALFORMED.values():
        seeds.add(bytes([0x21]) + packet)
    for connack in (b"\x00\x00\x00", b"\x01\x00\x05\x21\x00\x14\x13\x00\x3c", b"\x00\x87",
                    b"\x00\x01", b"\x00\x00", b"\x02\x00\x00"):
        seeds.add(b"\x81" + connack)
        seeds.add(b"\x80" + connack)
    if KEPT.is_dir():
        seeds.update(p.read_bytes() for p in KEPT.iterdir())
    seed_dir.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        (seed_dir / f"seed-{hashlib.sha1(seed).hexdigest()}").write_bytes(seed)
    return len(seeds)


def main() -> int:
    from fuzz_decoders import fuzz_main

    return fuzz_main(make_target, Path(__file__).resolve(), write_seeds, "mqtt", MAX_LEN)


if __name__ == "__main__":
    sys.exit(main())
