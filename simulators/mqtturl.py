"""``mqtt://[user:pass@]host:port`` URLs."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True, slots=True)
class MqttUrl:
    """A parsed broker address."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None

    def __str__(self) -> str:
        auth = f"{self.username}:***@" if self.username else ""
        return f"mqtt://{auth}{self.host}:{self.port}"


def parse_mqtt_url(url: str) -> MqttUrl:
    """Parse ``mqtt://[user:pass@]host[:port]`` (also ``tcp://``); port defaults to 1883."""
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in ("mqtt", "tcp"):
        raise ValueError(f"unsupported MQTT URL scheme {parts.scheme!r} in {url!r} "
                         "(use mqtt://host:port)")
    if not parts.hostname:
        raise ValueError(f"no host in MQTT URL {url!r}")
    return MqttUrl(parts.hostname, parts.port or 1883,
                   unquote(parts.username) if parts.username else None,
                   unquote(parts.password) if parts.password else None)
