"""What the hub and its intake process agree on: the frames, the batch limits and the config.

Imported by both sides; it imports nothing of the hub's, so the intake process loads neither
prometheus_client nor the hub-side half of ``hub.intake.process`` (``tests/test_imports.py``).
"""

from __future__ import annotations

from typing import NamedTuple

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Frames, child -> hub:
FRAME_MESSAGES = 1  # (1, [(topic, payload, qos, retain, received_ns, token), ...][, sizes])
# ``sizes`` ({token: size}) only when some payloads were too large: theirs hold only HEAD_BYTES
FRAME_STATUS = 2  # (2, connected, last_error, index of the URL in HUB_MQTT_URL's list)
FRAME_ON_CONNECT = 3  # (3,): a new connection is up; republish what must be retained
# Frames, hub -> child:
FRAME_ACK = 11  # (11, token): every message up to and including this one is durable
FRAME_PUBLISH = 12  # (12, topic, payload, qos, retain)
FRAME_STOP = 13  # (13,)
FRAME_CONFIG = 14  # (14, IntakeConfig as a dict): the first frame


FORWARD_BATCH = 1000  # messages per frame at most
HEAD_BYTES = 64  # what is kept of a payload too large to forward (a refusal's head)
CHILD_BACKLOG = 5000  # messages the child holds before paho stops reading (back-pressure)


class IntakeConfig(NamedTuple):
    """What the child needs to build its MqttClient (sent as the first frame, not on argv:
    the URL may hold a password)."""

    url: str
    client_id: str
    subscriptions: list[tuple[str, int]]
    ca_file: str | None
    cert_file: str | None
    key_file: str | None
    status_topic: str
    protocol: str
    log_level: int
    first_token: int = 0  # the child numbers its messages from here (its epoch's base)
    client: str = "lean"  # lean (hub.intake.lean) or paho
    max_payload_bytes: int = 0  # larger payloads cross the pipe as their head only (0: all)
