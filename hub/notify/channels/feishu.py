"""Feishu / Lark custom bot (自定义机器人): text or an interactive card, optionally signed.

Signing: ``timestamp`` (seconds) and ``sign`` = base64 HMAC-SHA256 keyed with
``"<timestamp>\\n<secret>"`` over an empty message, both in the JSON body; Feishu refuses a
timestamp more than an hour off (``19021``). Limits: 100 a minute and 5 a second per bot
(``11232`` frequency limited), a body of at most 20 KB.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any, ClassVar

from hub.notify.channels.base import (
    Answer,
    ChannelDriver,
    Recipients,
    Request,
    json_body,
    json_request,
    short,
)
from hub.notify.config import Rate
from hub.notify.message import Notice

RATE_LIMITED = {11232, 11233}
CONFIG_ERRORS = {19021, 19001, 19002, 19022, 19024}  # sign, token, bot gone, ip, keywords
TEMPLATES = {"critical": "red", "major": "orange", "minor": "yellow", "warning": "yellow",
             "info": "blue"}


def sign(secret: str, timestamp_s: int) -> str:
    """The ``sign`` field: HMAC-SHA256 keyed with ``"<ts>\\n<secret>"`` over b'', base64."""
    key = f"{timestamp_s}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


class Feishu(ChannelDriver):
    """A Feishu group bot."""

    type: ClassVar[str] = "feishu"
    default_rate: ClassVar[Rate] = Rate(per_minute=100, per_second=5)
    max_bytes: ClassVar[int] = 18_000

    def _mentions(self, to: Recipients) -> str:
        ats = [f'<at user_id="{uid}"></at>' for uid in to.feishu_ids]
        if to.everyone:
            ats.append('<at user_id="all"></at>')
        named = [] if to.feishu_ids else list(to.names)
        return " ".join(ats + [f"@{n}" for n in named])

    def build(self, notice: Notice, to: Recipients, now_s: float) -> Request:
        """``{"timestamp", "sign", "msg_type": "text"|"interactive", ...}``."""
        mentions = self._mentions(to)
        payload: dict[str, Any]
        if self.config.format == "card":
            elements: list[dict[str, Any]] = [
                {"tag": "markdown", "content": notice.markdown().split("\n", 1)[-1]}]
            if mentions:
                elements.append({"tag": "markdown", "content": mentions})
            severity = notice.alarms[0].severity if notice.alarms else "info"
            payload = {"msg_type": "interactive", "card": {
                "header": {"title": {"tag": "plain_text", "content": notice.title()[:100]},
                           "template": TEMPLATES.get(severity, "blue")},
                "elements": elements}}
        else:
            text = notice.text() + (f"\n{mentions}" if mentions else "")
            payload = {"msg_type": "text", "content": {"text": text}}
        if self.config.secret:
            timestamp = int(now_s)
            payload = {"timestamp": str(timestamp), "sign": sign(self.config.secret, timestamp),
                       **payload}
        return json_request(self.config.url, payload)

    def interpret(self, status: int, body: bytes) -> Answer:
        """``{"code": 0, "msg": "success"}`` is sent."""
        data = json_body(body)
        if data is None:
            return Answer("failed" if status != 429 else "retry", f"HTTP {status}: {short(body)}")
        code = data.get("code", data.get("StatusCode"))
        detail = f"code {code}: {data.get('msg', data.get('StatusMessage', ''))}"
        if code == 0:
            return Answer("sent", detail)
        if code in RATE_LIMITED or status == 429:
            return Answer("retry", detail, retry_after_s=1.0)
        if code in CONFIG_ERRORS:
            return Answer("config", detail)
        return Answer("failed", detail)
