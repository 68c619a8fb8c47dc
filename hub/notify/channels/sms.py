"""SMS through Aliyun SMS (阿里云短信服务 ``SendSms``, API version 2017-05-25).

The request is an RPC call signed with signature version 1.0 (HMAC-SHA1): the parameters
sorted by name and percent-encoded (RFC 3986: space ``%20``, ``*`` ``%2A``, ``~`` kept), the
string to sign ``POST&%2F&<encoded query>``, the key ``<AccessKeySecret>&``. Aliyun refuses a
``Timestamp`` more than 15 minutes off and a reused ``SignatureNonce``. The text is one
approved template (``template_code``) whose variables come from the message's fields; each
value is cut to ``param_max_chars`` (Aliyun: 35 characters for most variable types).
Rate limit answers (``isv.BUSINESS_LIMIT_CONTROL``: default 1 a minute per number) retry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from datetime import UTC, datetime
from typing import ClassVar
from urllib.parse import quote

import httpx
import orjson

from hub.notify.channels.base import Answer, ChannelDriver, Recipients, Request, json_body, short
from hub.notify.config import Rate
from hub.notify.message import Notice

RATE_LIMITED = {"isv.BUSINESS_LIMIT_CONTROL", "Throttling", "Throttling.User",
                "isv.DAY_LIMIT_CONTROL"}
CONFIG_ERRORS = {"SignatureDoesNotMatch", "InvalidAccessKeyId.NotFound", "InvalidAccessKeyId",
                 "InvalidTimeStamp.Expired", "isv.SMS_SIGNATURE_ILLEGAL",
                 "isv.SMS_TEMPLATE_ILLEGAL", "isv.TEMPLATE_MISSING_PARAMETERS",
                 "isv.ACCOUNT_NOT_EXISTS", "isv.ACCOUNT_ABNORMAL", "Forbidden.RAM",
                 "isv.SMS_SIGN_ILLEGAL", "isv.INVALID_PARAMETERS"}


def percent_encode(text: str) -> str:
    """Aliyun's POP encoding: RFC 3986 unreserved characters kept, everything else %XX."""
    return quote(text, safe="-_.~")


def string_to_sign(method: str, params: dict[str, str]) -> str:
    """``<METHOD>&%2F&<percent-encoded canonical query>``."""
    canonical = "&".join(f"{percent_encode(k)}={percent_encode(v)}"
                         for k, v in sorted(params.items()))
    return f"{method}&{percent_encode('/')}&{percent_encode(canonical)}"


def signature(secret: str, method: str, params: dict[str, str]) -> str:
    """Base64 HMAC-SHA1 keyed with ``<secret>&`` over the string to sign."""
    digest = hmac.new(f"{secret}&".encode(), string_to_sign(method, params).encode(),
                      hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


class AliyunSms(ChannelDriver):
    """SMS to the mentioned people's mobiles (and the channel's fixed numbers)."""

    type: ClassVar[str] = "sms"
    default_rate: ClassVar[Rate] = Rate(per_minute=1)
    max_bytes: ClassVar[int] = 1_000_000  # one template: groups are summarised, not split

    def params_of(self, notice: Notice) -> dict[str, str]:
        """The template variables of a notice (a group: the first alarm, count = group size)."""
        cut = self.config.param_max_chars
        values: dict[str, str] = {}
        if not notice.alarms:
            return {name: notice.title()[:cut] for name in self.config.template_params}
        first = notice.alarms[0]
        for name, source in self.config.template_params.items():
            value = first.field(source)
            if len(notice.alarms) > 1 and source == "count":
                value = str(len(notice.alarms))
            elif len(notice.alarms) > 1 and source == "message":
                value = f"{notice.title()}: {first.message}"
            values[name] = value[:cut]
        return values

    def numbers(self, to: Recipients) -> list[str]:
        """Mobiles to send to, each once."""
        return list(dict.fromkeys([*to.mobiles, *self.config.phone_numbers]))

    def build(self, notice: Notice, to: Recipients, now_s: float) -> Request:
        """A signed ``SendSms`` POST (form-encoded)."""
        cfg = self.config
        params = {
            "AccessKeyId": cfg.access_key_id, "Action": "SendSms", "Format": "JSON",
            "RegionId": cfg.region, "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": uuid.uuid4().hex, "SignatureVersion": "1.0",
            "Timestamp": datetime.fromtimestamp(now_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": "2017-05-25", "PhoneNumbers": ",".join(self.numbers(to)),
            "SignName": cfg.sign_name, "TemplateCode": cfg.template_code,
            "TemplateParam": orjson.dumps(self.params_of(notice)).decode(),
        }
        params["Signature"] = signature(cfg.access_key_secret, "POST", params)
        body = "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in params.items())
        return Request("POST", cfg.endpoint,
                       {"Content-Type": "application/x-www-form-urlencoded"}, body.encode())

    def send(self, client: httpx.Client, notice: Notice, to: Recipients,
             now_s: float) -> Answer:
        """Nobody to text is a failure of the configuration, not a send."""
        if not self.numbers(to):
            return Answer("failed", "no mobile number: nobody mentioned has one")
        return super().send(client, notice, to, now_s)

    def interpret(self, status: int, body: bytes) -> Answer:
        """``{"Code": "OK"}`` is sent."""
        data = json_body(body)
        if data is None or "Code" not in data:
            return Answer("failed", f"HTTP {status}: {short(body)}")
        code = str(data["Code"])
        detail = f"{code}: {data.get('Message', '')}"
        if code == "OK":
            return Answer("sent", detail + f" (BizId {data.get('BizId', '')})")
        if code in RATE_LIMITED:
            return Answer("retry", detail, retry_after_s=60.0)
        if code in CONFIG_ERRORS:
            return Answer("config", detail)
        return Answer("failed", detail)
