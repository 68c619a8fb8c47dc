"""Signed JSON POST to any receiver (an SMS gateway, an ops tool): the ``webhook`` type.

Headers: ``X-Hub-Timestamp`` (unix seconds), ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256
(secret, "<timestamp>.<body>")>``, ``X-Hub-Delivery`` (one id per notification, the same on
every retry). A receiver protects itself from replays by refusing a timestamp more than five
minutes off and a delivery id it has seen (docs/notifications.md). The legacy
``HUB_WEBHOOK_URLS`` sender (hub/alarms/webhooks.py) signs the same way.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, ClassVar

import orjson

from hub.notify.channels.base import Answer, ChannelDriver, Recipients, Request, short
from hub.notify.config import Rate
from hub.notify.message import Notice

SIGNATURE_HEADER = "X-Hub-Signature-256"
TIMESTAMP_HEADER = "X-Hub-Timestamp"
DELIVERY_HEADER = "X-Hub-Delivery"
REPLAY_WINDOW_S = 300


def sign(secret: str, timestamp_s: int, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, ``b"<timestamp>." + body``)."""
    material = str(timestamp_s).encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), material, hashlib.sha256).hexdigest()


def verify(secret: str, headers: dict[str, str], body: bytes, now_s: float,
           window_s: float = REPLAY_WINDOW_S) -> str | None:
    """Check a delivery as a receiver should; return the problem, or None when it is good."""
    lowered = {k.lower(): v for k, v in headers.items()}
    raw = lowered.get(TIMESTAMP_HEADER.lower(), "")
    if not raw.isdigit():
        return "missing timestamp"
    if abs(now_s - int(raw)) > window_s:
        return "timestamp outside the replay window"
    expected = sign(secret, int(raw), body)
    if not hmac.compare_digest(expected, lowered.get(SIGNATURE_HEADER.lower(), "")):
        return "signature mismatch"
    return None


def signed_headers(secret: str | None, body: bytes, now_s: float, delivery: str,
                   event: str) -> dict[str, str]:
    """The headers of one delivery (signature only with a secret)."""
    timestamp = int(now_s)
    headers = {"Content-Type": "application/json", "User-Agent": "safety-hub",
               "X-Hub-Event": event, DELIVERY_HEADER: delivery,
               TIMESTAMP_HEADER: str(timestamp)}
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, timestamp, body)
    return headers


class Webhook(ChannelDriver):
    """A signed JSON receiver."""

    type: ClassVar[str] = "webhook"
    default_rate: ClassVar[Rate] = Rate(per_minute=600)
    max_bytes: ClassVar[int] = 200_000

    def build(self, notice: Notice, to: Recipients, now_s: float,
              delivery: str = "") -> Request:
        """``{"event": "alarm.notify", "kind", "step", "title", "text", "alarms", "mention"}``."""
        payload: dict[str, Any] = {
            "event": f"alarm.notify.{notice.kind}", "kind": notice.kind, "step": notice.step,
            "title": notice.title(), "text": notice.text(),
            "alarms": [{"id": a.id, "severity": a.severity, "message": a.message,
                        "site": a.site, "device": a.device, "place": a.place, "time": a.time,
                        "count": a.count, "link": a.link} for a in notice.alarms],
            "mention": {"names": list(to.names), "mobiles": list(to.mobiles)}}
        body = orjson.dumps(payload)
        delivery = delivery or hashlib.sha256(
            notice.key.encode() if notice.key else body).hexdigest()[:32]
        return Request("POST", self.config.url,
                       signed_headers(self.config.secret, body, now_s, delivery,
                                      payload["event"]), body)

    def interpret(self, status: int, body: bytes) -> Answer:
        """2xx is sent; 408/429 retry; 401/403 are configuration errors."""
        detail = f"HTTP {status}: {short(body, 200)}"
        if status < 300:
            return Answer("sent", detail)
        if status in (408, 425, 429):
            return Answer("retry", detail, retry_after_s=5.0)
        if status in (401, 403, 404):
            return Answer("config", detail)
        return Answer("failed", detail)
