"""What every channel type shares: recipients, the platform's answer, the HTTP call.

A channel module builds its platform's request from a ``Notice`` and reads the platform's
answer into an ``Answer``: ``sent``, ``retry`` (5xx, timeouts, rate-limit codes), ``config``
(a wrong signature, token or key: retrying cannot help, an operator must fix the file) or
``failed`` (the platform refused this message for good).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import httpx
import orjson

from hub.notify.config import Rate
from hub.notify.message import Notice

log = logging.getLogger(__name__)

Outcome = Literal["sent", "retry", "config", "failed"]


@dataclass(frozen=True, slots=True)
class Recipients:
    """Whom a message mentions: names, mobiles (DingTalk, WeCom, SMS) and platform ids."""

    names: tuple[str, ...] = ()
    mobiles: tuple[str, ...] = ()
    feishu_ids: tuple[str, ...] = ()
    wecom_ids: tuple[str, ...] = ()
    everyone: bool = False

    def merge(self, other: Recipients) -> Recipients:
        """The union of two recipient lists, order kept."""
        def union(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
            return tuple(dict.fromkeys(a + b))

        return Recipients(union(self.names, other.names), union(self.mobiles, other.mobiles),
                          union(self.feishu_ids, other.feishu_ids),
                          union(self.wecom_ids, other.wecom_ids),
                          self.everyone or other.everyone)


@dataclass(frozen=True, slots=True)
class Answer:
    """How the platform answered one request."""

    outcome: Outcome
    detail: str
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request to a platform."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes = b""


def json_request(url: str, payload: Any, headers: dict[str, str] | None = None) -> Request:
    """A JSON POST (UTF-8, as every platform asks)."""
    return Request("POST", url, {"Content-Type": "application/json; charset=utf-8",
                                 **(headers or {})}, orjson.dumps(payload))


def short(body: bytes, limit: int = 300) -> str:
    """The start of a response body as text (for errors and ``hub notify test``)."""
    return body[:limit].decode("utf-8", "replace")


class ChannelDriver:
    """Base of the channel types: build a request, send it, read the answer."""

    type: ClassVar[str] = ""
    default_rate: ClassVar[Rate] = Rate(per_minute=60)
    max_bytes: ClassVar[int] = 16_000  # content size at which a group is split

    def __init__(self, config: Any) -> None:
        self.config = config
        self.id: str = config.id

    @property
    def rate(self) -> Rate:
        """The limit this channel is held to (the file's, else the platform's)."""
        rate: Rate = self.config.rate or self.default_rate
        return rate

    def fits(self, notice: Notice) -> bool:
        """True when the notice's content is within the platform's size limit."""
        return len(self.content(notice).encode()) <= self.max_bytes

    def content(self, notice: Notice) -> str:
        """The text whose size the platform limits."""
        return notice.text()

    def build(self, notice: Notice, to: Recipients, now_s: float) -> Request:
        """The platform request of a notice."""
        raise NotImplementedError

    def interpret(self, status: int, body: bytes) -> Answer:
        """Read the platform's answer."""
        raise NotImplementedError

    def send(self, client: httpx.Client, notice: Notice, to: Recipients,
             now_s: float) -> Answer:
        """Send one notice; network errors and timeouts answer ``retry``."""
        request = self.build(notice, to, now_s)
        try:
            response = client.request(request.method, request.url, headers=request.headers,
                                      content=request.content, timeout=self.config.timeout_s)
        except httpx.TimeoutException as exc:
            return Answer("retry", f"timeout: {exc}")
        except httpx.HTTPError as exc:
            return Answer("retry", f"{type(exc).__name__}: {exc}")
        if response.status_code >= 500:
            return Answer("retry", f"HTTP {response.status_code}: {short(response.content)}")
        return self.interpret(response.status_code, response.content)


def json_body(body: bytes) -> dict[str, Any] | None:
    """The answer as a JSON object, or None."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def errcode_answer(status: int, body: bytes, rate_limited: set[int], config_errors: set[int],
                   *, retry_server_errors: bool) -> Answer:
    """A chat robot's ``{"errcode": 0, "errmsg": "ok"}`` reply (DingTalk, WeCom) as an Answer.

    A reply without an errcode is a failure, or with ``retry_server_errors`` a 5xx is retried.
    """
    data = json_body(body)
    if data is None or "errcode" not in data:
        retry = retry_server_errors and status >= 500
        return Answer("retry" if retry else "failed", f"HTTP {status}: {short(body)}")
    code = data.get("errcode")
    detail = f"errcode {code}: {data.get('errmsg', '')}"
    if code == 0:
        return Answer("sent", detail)
    if code in rate_limited:
        return Answer("retry", detail, retry_after_s=60.0)
    if code in config_errors:
        return Answer("config", detail)
    return Answer("failed", detail)
