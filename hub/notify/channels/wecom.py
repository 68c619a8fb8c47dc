"""WeCom group robot (企业微信群机器人): text with ``mentioned_mobile_list``, or markdown.

The key is in the URL. Limits: 20 messages a minute per robot (more: ``45009 api freq out
of limit``); text content at most 2048 bytes, markdown 4096. Markdown cannot mention by
mobile, so mentions in markdown are ``<@userid>`` for people with a ``wecom_userid``.
"""

from __future__ import annotations

from typing import ClassVar

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

RATE_LIMITED = {45009, 45033}
CONFIG_ERRORS = {93000, 93004, 40001, 40014, 42001}  # bad webhook key, removed robot, token


class WeCom(ChannelDriver):
    """A WeCom group robot."""

    type: ClassVar[str] = "wecom"
    default_rate: ClassVar[Rate] = Rate(per_minute=20)

    @property
    def max_bytes(self) -> int:  # type: ignore[override]
        """2048 bytes of text, 4096 of markdown."""
        return 4000 if self.config.format == "markdown" else 2000

    def content(self, notice: Notice) -> str:
        """Markdown or text, as configured."""
        return notice.markdown() if self.config.format == "markdown" else notice.text()

    def build(self, notice: Notice, to: Recipients, now_s: float) -> Request:
        """``{"msgtype": "text", "text": {"content", "mentioned_mobile_list"}}`` or markdown."""
        if self.config.format == "markdown":
            mentions = " ".join(f"<@{u}>" for u in to.wecom_ids)
            body = self.content(notice) + (f"\n{mentions}" if mentions else "")
            payload = {"msgtype": "markdown", "markdown": {"content": body}}
        else:
            mobiles = list(to.mobiles) + (["@all"] if to.everyone else [])
            text: dict[str, object] = {"content": self.content(notice)}
            if mobiles:
                text["mentioned_mobile_list"] = mobiles
            if to.wecom_ids:
                text["mentioned_list"] = list(to.wecom_ids)
            payload = {"msgtype": "text", "text": text}
        return json_request(self.config.url, payload)

    def interpret(self, status: int, body: bytes) -> Answer:
        """``{"errcode": 0, "errmsg": "ok"}`` is sent."""
        return errcode_answer(status, body, RATE_LIMITED, CONFIG_ERRORS,
                              retry_server_errors=False)
