"""What both MQTT sides share without importing paho or prometheus_client: the URL format, the
order in which a list of URLs is tried, and the status topic (the hub process imports this; only
the intake process imports paho)."""

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


# SUBACK failure codes (MQTT 5 reason codes; 3.1.1 has only 0x80)
_SUBACK_REFUSALS = {
    0x80: "unspecified error", 0x83: "implementation specific error", 0x87: "not authorized",
    0x8F: "topic filter invalid", 0x91: "packet identifier in use", 0x97: "quota exceeded",
    0x9E: "shared subscriptions not supported", 0xA1: "subscription identifiers not supported",
    0xA2: "wildcard subscriptions not supported",
}


def refused_subscriptions(filters: list[str], codes: list[int]) -> str | None:
    """What a SUBACK refused (each filter with its reason code), or None when all were granted;
    a SUBACK with fewer codes than filters refuses the ones it leaves out."""
    refused = []
    for i, topic in enumerate(filters):
        code = codes[i] if i < len(codes) else None
        if code is None:
            refused.append(f"{topic} (no reason code)")
        elif code >= 0x80:
            refused.append(f"{topic} (0x{code:02x} {_SUBACK_REFUSALS.get(code, 'refused')})")
    return "subscription refused: " + ", ".join(refused) if refused else None


def parse_mqtt_urls(value: str) -> list[MqttUrl]:
    """Parse ``HUB_MQTT_URL``: one URL, or several separated by commas (nodes of one cluster,
    tried in order); raise ValueError with the reason."""
    texts = [part.strip() for part in value.split(",") if part.strip()]
    if not texts:
        raise ValueError("MQTT URL: empty (mqtt://host:port, or several separated by commas)")
    urls = [parse_mqtt_url(text) for text in texts]
    if len({url.tls for url in urls}) > 1:
        # one TLS setting per client (paho's tls_set): a list is all mqtt:// or all mqtts://
        raise ValueError(f"MQTT URL {value!r}: mixes mqtt:// and mqtts:// (use one of them)")
    return urls


class UrlRing:
    """Which of several broker URLs to connect to: the first, then the next after each failed
    or lost connection, round and round. The wait before a try doubles (up to ``max_delay``)
    after every full round of failures; a connection that came up starts the count again. With
    one URL that is a plain doubling backoff on the one broker."""

    def __init__(self, urls: list[MqttUrl], min_delay: float = 1.0,
                 max_delay: float = 30.0) -> None:
        if not urls:
            raise ValueError("UrlRing needs at least one URL")
        self.urls = urls
        self.index = 0
        self.min_delay = min_delay
        self.max_delay = max_delay
        self._misses = 0  # failures since the last connection that came up

    @property
    def current(self) -> MqttUrl:
        """The URL to connect to (or connected to) now."""
        return self.urls[self.index]

    def connected(self) -> None:
        """The connection to ``current`` came up: stay on it, reset the backoff."""
        self._misses = 0

    def failed(self) -> float:
        """The connection to ``current`` failed or was lost: move to the next URL; return how
        long to wait before trying it."""
        self._misses += 1
        self.index = (self.index + 1) % len(self.urls)
        rounds = (self._misses - 1) // len(self.urls)
        return float(min(self.min_delay * 2 ** min(rounds, 16), self.max_delay))
