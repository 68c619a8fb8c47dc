"""What both MQTT sides share without importing paho or prometheus_client: the URL format and
the status topic (the hub process imports this; only the intake process imports paho)."""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import unquote, urlsplit

STATUS_TOPIC = "hub/status"


class MqttUrl(NamedTuple):
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
