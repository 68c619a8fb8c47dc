"""The message type the MQTT intake hands to the pipeline (no dataclasses: the intake process
imports this, and ``dataclasses`` brings ``inspect``, ``ast`` and ``dis``: ~0.8 MB)."""

from __future__ import annotations

from typing import Any, NamedTuple


class InboundMessage(NamedTuple):
    """One MQTT message as received, detached from paho.

    ``ack_token`` is opaque to everything but the MQTT adapter: it is handed back once the
    message's readings are durable, so the adapter can acknowledge it to the broker. A
    NamedTuple rather than a frozen dataclass: one is built per message and it is 6x cheaper.
    """

    topic: str
    payload: bytes
    qos: int
    retain: bool
    received_ns: int
    ack_token: Any = None


class Oversized(bytes):
    """The first bytes of a payload too large to forward, standing in for all of it.

    The intake process sends only these across the pipe; ``len()`` is the size the device
    sent, so the normalizer's size check refuses it as ``too_large`` with the real size at no
    cost to every other message.
    """

    size: int

    def __new__(cls, head: bytes, size: int) -> Oversized:
        """The stand-in of a ``size``-byte payload that began with ``head``."""
        made = super().__new__(cls, head)
        made.size = size
        return made

    def __len__(self) -> int:
        """The size of the payload as the device sent it."""
        return self.size
