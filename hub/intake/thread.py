"""MQTT intake in a thread of the hub process (``HUB_MQTT_INTAKE=thread``): the MqttClient
with the hub's metrics, which the intake process's client does without."""

from __future__ import annotations

from hub.intake.metrics import CONNECTED, CONNECTS, ReceivedCounter
from hub.intake.paho_client import MqttClient


class ThreadIntake(ReceivedCounter, MqttClient):
    """MqttClient in the hub process: counts connects, connected and messages received."""

    def _on_status(self, connected: bool) -> None:
        if connected:
            CONNECTS.inc()
        CONNECTED.set(1 if connected else 0)
