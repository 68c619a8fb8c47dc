"""Device partitions as the NATS server computes them, and MQTT topics as NATS subjects.

The server's subject mapping ``{{partition(N,1)}}`` is FNV-1a (32 bit) of the wildcard token
modulo N; the hub computes the same number for a device id to know which partition's rule and
device state to load or save when a partition changes hands (``tests/test_cluster.py`` checks
it against the real server).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)
NAMED_MAX = 100  # devices a hub names in its log and /api/health

# Subjects after the mapping: <prefix>.<partition>.<the device's subject>. Topics a profile
# publishes at QoS 1 or 2 go to "hubp": the NATS MQTT layer stores such a message in its own
# replicated stream ($MQTT_msgs, as "$MQTT.msgs.hubp....") before it sends PUBACK, and the hubs
# consume it from there. QoS 0 topics go to "hubq", captured by the hub's own stream.
PARTITION_PREFIX = "hubp"
QOS0_PREFIX = "hubq"
MQTT_STORED_PREFIX = "$MQTT.msgs."
_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


def partition_of(device_id: str, partitions: int) -> int:
    """The partition the NATS server's ``partition(N, ...)`` mapping puts a device id into."""
    h = _FNV_OFFSET
    for byte in topic_level_to_token(device_id).encode():
        h = ((h ^ byte) * _FNV_PRIME) & 0xFFFFFFFF
    return h % partitions


def refused_characters(server: tuple[int, int]) -> str:
    """What nats-server's MQTT layer refuses in a topic (it closes the client's connection;
    server/mqtt.go, mqttToNATSSubjectConversion): '.' and ' ' before 2.10, which maps '.' to
    '//' (control characters, also refused, never pass the site schema)."""
    return ". " if server < (2, 10) else " "


def unpublishable(device_ids: Iterable[str], server: tuple[int, int]) -> list[str]:
    """Registered devices whose topics this server refuses, each logged (at most NAMED_MAX):
    such a device cannot publish in cluster mode, and the hub says so."""
    refused = refused_characters(server)
    found = sorted(d for d in device_ids if any(c in d for c in refused))
    for device_id in found[:NAMED_MAX]:
        log.error("device %r cannot publish in cluster mode: nats-server %d.%d closes the MQTT "
                  "connection of a topic with any of %r in it; rename the device%s", device_id,
                  *server, refused, " or run nats-server 2.10 or later" if "." in refused else "")
    return found[:NAMED_MAX]


def topic_level_to_token(level: str) -> str:
    """One MQTT topic level as the NATS MQTT gateway writes it ('.' becomes '//')."""
    return level.replace(".", "//")


def topic_to_subject(topic: str) -> str:
    """An MQTT topic (or filter: '+' -> '*', '#' -> '>') as a NATS subject."""
    out = []
    for level in topic.split("/"):
        if level == "+":
            out.append("*")
        elif level == "#":
            out.append(">")
        else:
            out.append(topic_level_to_token(level))
    return ".".join(out)


def subject_to_topic(subject: str) -> str:
    """A NATS subject from the MQTT gateway back to the MQTT topic ('//' was '.')."""
    return subject.replace("//", "\0").replace(".", "/").replace("\0", ".")


def partition_subjects(partition: int) -> dict[str, str]:
    """Source key -> the subject filter of one partition in it (see ``Sources``)."""
    return {"p": f"{MQTT_STORED_PREFIX}{PARTITION_PREFIX}.{partition}.>",
            "q": f"{QOS0_PREFIX}.{partition}.>"}
