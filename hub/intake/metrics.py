"""The MQTT intake's prometheus metrics, counted in the hub process only (the intake process
never imports prometheus_client: ~1.6 MB of modules it would not use)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

MESSAGES_RECEIVED = Counter("hub_mqtt_messages_received_total", "MQTT messages received")
CONNECTS = Counter("hub_mqtt_connects_total", "successful MQTT connections")
CONNECTED = Gauge("hub_mqtt_connected", "1 while connected to the broker")


class ReceivedCounter:
    """Messages received, counted in a plain int by the one thread that receives them and
    published to prometheus by ``count_received`` (an inc per message takes a lock: ~5 % of
    the hub's CPU once)."""

    received = 0
    _counted = 0

    def count_received(self) -> None:
        """Bring the received-messages counter up to date (one caller thread: the pipeline)."""
        received = self.received
        if received > self._counted:
            MESSAGES_RECEIVED.inc(received - self._counted)
            self._counted = received
