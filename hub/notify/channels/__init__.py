"""One module per channel type; ``driver`` picks the module of a channel's ``type``."""

from __future__ import annotations

from typing import Any

from hub.notify.channels.base import ChannelDriver
from hub.notify.channels.dingtalk import DingTalk
from hub.notify.channels.feishu import Feishu
from hub.notify.channels.sms import AliyunSms
from hub.notify.channels.webhook import Webhook
from hub.notify.channels.wecom import WeCom

DRIVERS: dict[str, type[ChannelDriver]] = {
    d.type: d for d in (DingTalk, WeCom, Feishu, Webhook, AliyunSms)}


def driver(config: Any) -> ChannelDriver:
    """The driver of a channel configuration."""
    return DRIVERS[config.type](config)
