"""DingTalk custom robot (自定义机器人): text or markdown, ``at.atMobiles``, 加签 signing.

Signing: ``&timestamp=<ms>&sign=<urlencoded base64 HMAC-SHA256(secret, "<ms>\\n<secret>")>``
appended to the webhook URL; DingTalk refuses a timestamp more than an hour off. Limit: 20
messages a minute per robot (more: ``130101 send too fast``, throttled for 10 minutes).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import ClassVar
from urllib.parse import quote_plus

from hub.notify.channels.base import (
    Answer,
    ChannelDriver,
    Recipients,
    Request,
    errcode_answer,
    json_request,
)
from hub.notify.config import Rate
from hub.notify.message import Notice

RATE_LIMITED = {130101}
CONFIG_ERRORS = {310000, 300001, 300005, 400013, 410100}  # sign/keyword/ip, token, robot gone


def sign(secret: str, timestamp_ms: int) -> str:
    """The 加签 ``sign`` parameter (already URL-encoded)."""
    material = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), material, hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest))


def signed_url(url: str, secret: str | None, now_s: float) -> str:
    """The webhook URL with timestamp and sign when the robot has a secret."""
    if not secret:
        return url
    timestamp = int(now_s * 1000)
    joiner = "&" if "?" in url else "?"
    return f"{url}{joiner}timestamp={timestamp}&sign={sign(secret, timestamp)}"


class DingTalk(ChannelDriver):
    """A DingTalk group robot."""

    type: ClassVar[str] = "dingtalk"
    default_rate: ClassVar[Rate] = Rate(per_minute=20)
    max_bytes: ClassVar[int] = 15_000

    def content(self, notice: Notice) -> str:
        """Markdown or text, as configured."""
        return notice.markdown() if self.config.format == "markdown" else notice.text()

    def build(self, notice: Notice, to: Recipients, now_s: float) -> Request:
        """``{"msgtype": ..., "at": {"atMobiles": [...]}}``; mobiles are @-ed in the text too."""
        mentions = " ".join(f"@{m}" for m in to.mobiles)
        at = {"atMobiles": list(to.mobiles), "isAtAll": to.everyone}
        body = self.content(notice)
        if mentions:  # DingTalk highlights an @ only when the mobile is also in the content
            body = f"{body}\n\n{mentions}"
        if self.config.format == "markdown":
            payload = {"msgtype": "markdown", "markdown": {"title": notice.title()[:64],
                                                           "text": body}, "at": at}
        else:
            payload = {"msgtype": "text", "text": {"content": body}, "at": at}
        return json_request(signed_url(self.config.url, self.config.secret, now_s), payload)

    def interpret(self, status: int, body: bytes) -> Answer:
        """``{"errcode": 0, "errmsg": "ok"}`` is sent."""
        return errcode_answer(status, body, RATE_LIMITED, CONFIG_ERRORS,
                              retry_server_errors=True)
