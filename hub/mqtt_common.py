"""What both MQTT sides share without importing paho: the URL format, the status topic and the
connection metrics (the hub process imports this; only the intake process imports paho)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from prometheus_client import Counter, Gauge

STATUS_TOPIC = "hub/status"

MESSAGES_RECEIVED = Counter("hub_mqtt_messages_received_total", "MQTT messages received")
CONNECTS = Counter("hub_mqtt_connects_total", "successful MQTT connections")
CONNECTED = Gauge("hub_mqtt_connected", "1 while connected to the broker")


@dataclass(frozen=True, slots=True)
class MqttUrl:
    """A parsed mqtt:// or mqtts:// URL."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None


def parse_mqtt_url(url: str) -> MqttUrl:
    """Parse ``mqtt[s]://[user:pass@]host[:port]``; raise ValueError with the reason."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ValueError(f"MQTT URL {url!r}: scheme must be mqtt:// or mqtts://")
    if not parts.hostname:
        raise ValueError(f"MQTT URL {url!r}: no host")
    tls = parts.scheme in ("mqtts", "ssl")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise ValueError(f"MQTT URL {url!r}: bad port") from exc
    return MqttUrl(
        host=parts.hostname,
        port=port,
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


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
