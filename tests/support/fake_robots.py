"""FAKE DingTalk, WeCom, Feishu, Aliyun SMS and webhook receivers on one local HTTP server.

They cannot run here, so these stand-ins check what the real platforms check, from their
documentation, and answer with the real error codes:
- DingTalk custom robot: ``access_token`` known (``300001``); with 加签, ``timestamp`` (ms)
  within an hour and ``sign`` = urlencoded base64 HMAC-SHA256(secret, "ts\\nsecret")
  (``310000``); ``msgtype`` text/markdown with their fields; 20 a minute per robot
  (``130101 send too fast, exceed 20 times per minute``).
- WeCom group robot: ``key`` known (``93000``); text at most 2048 bytes, markdown 4096
  (``40058``); 20 a minute (``45009 api freq out of limit``).
- Feishu custom bot: hook token known (``19001``); with a secret, ``timestamp`` (s) within an
  hour and ``sign`` = base64 HMAC-SHA256 keyed "ts\\nsecret" over b"" (``19021``); body at
  most 20 KB (``9499``); 100 a minute and 5 a second (``11232``).
- Aliyun SendSms: signature v1 (HMAC-SHA1, ``POST&%2F&...``, key ``secret&``) checked
  (``SignatureDoesNotMatch``), AccessKeyId known (``InvalidAccessKeyId.NotFound``),
  ``Timestamp`` within 15 minutes (``InvalidTimeStamp.Expired``), nonce never reused
  (``SignatureNonceUsed``), template variables complete
  (``isv.TEMPLATE_MISSING_PARAMETERS``), one message a minute per number
  (``isv.BUSINESS_LIMIT_CONTROL``).
- Webhook: ``X-Hub-Signature-256`` over "<timestamp>.<body>", timestamp within 5 minutes,
  a delivery id seen before is a replay (409).
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlparse

import orjson

from hub.notify.channels import sms as sms_signing
from hub.notify.channels import webhook as webhook_signing


@dataclass
class Robot:
    """One fake robot (or SMS account, or webhook receiver)."""

    kind: str
    key: str
    secret: str | None = None
    per_minute: int = 20
    per_second: int | None = None
    accepted: deque[float] = field(default_factory=deque)
    messages: list[dict[str, Any]] = field(default_factory=list)
    answers: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # injected
    refused: list[dict[str, Any]] = field(default_factory=list)
    violations: int = 0
    templates: dict[str, list[str]] = field(default_factory=dict)

    def over_limit(self, now: float) -> bool:
        """True when accepting one more would break the platform's rate limit."""
        while self.accepted and self.accepted[0] <= now - 60:
            self.accepted.popleft()
        if len(self.accepted) >= self.per_minute:
            return True
        if self.per_second is not None:
            recent = sum(1 for t in self.accepted if t > now - 1)
            return recent >= self.per_second
        return False

    def max_in_window(self, window_s: float = 60.0) -> int:
        """The most messages accepted in any window of that length (for assertions)."""
        times = sorted(m["at"] for m in self.messages)
        best = 0
        start = 0
        for end, at in enumerate(times):
            while times[start] <= at - window_s:
                start += 1
            best = max(best, end - start + 1)
        return best


class FakeRobots:
    """The fake platforms on ``http://127.0.0.1:<port>``."""

    def __init__(self) -> None:
        self.robots: dict[tuple[str, str], Robot] = {}
        self.lock = threading.Lock()
        self.nonces: set[str] = set()
        self.deliveries: set[str] = set()
        self.sms_numbers: dict[str, deque[float]] = {}
        self.clock = time.time
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop the server."""
        self.server.shutdown()
        self.server.server_close()

    # -- robots --------------------------------------------------------------------------------

    def _add(self, robot: Robot) -> Robot:
        self.robots[(robot.kind, robot.key)] = robot
        return robot

    def dingtalk(self, token: str, secret: str | None = None) -> tuple[Robot, str]:
        """A DingTalk robot and its webhook URL."""
        robot = self._add(Robot("dingtalk", token, secret))
        return robot, f"{self.base}/robot/send?access_token={token}"

    def wecom(self, key: str) -> tuple[Robot, str]:
        """A WeCom robot and its webhook URL."""
        robot = self._add(Robot("wecom", key))
        return robot, f"{self.base}/cgi-bin/webhook/send?key={key}"

    def feishu(self, token: str, secret: str | None = None) -> tuple[Robot, str]:
        """A Feishu bot and its webhook URL."""
        robot = self._add(Robot("feishu", token, secret, per_minute=100, per_second=5))
        return robot, f"{self.base}/open-apis/bot/v2/hook/{token}"

    def sms(self, access_key_id: str, secret: str, templates: dict[str, list[str]]
            ) -> tuple[Robot, str]:
        """An Aliyun account (template code -> variable names) and the endpoint URL."""
        robot = self._add(Robot("sms", access_key_id, secret, per_minute=10_000,
                                templates=templates))
        return robot, f"{self.base}/"

    def webhook(self, name: str, secret: str) -> tuple[Robot, str]:
        """A signed-webhook receiver and its URL."""
        robot = self._add(Robot("webhook", name, secret, per_minute=10_000))
        return robot, f"{self.base}/hook/{name}"

    def all_messages(self) -> list[dict[str, Any]]:
        """Every accepted message of every robot, in arrival order."""
        with self.lock:
            items = [m for r in self.robots.values() for m in r.messages]
        return sorted(items, key=lambda m: m["at"])

    # -- the platforms -------------------------------------------------------------------------

    def _accept(self, robot: Robot, payload: Any, text: str, now: float) -> None:
        robot.accepted.append(now)
        robot.messages.append({"at": now, "payload": payload, "text": text,
                               "robot": robot.key, "kind": robot.kind})

    def _injected(self, robot: Robot) -> tuple[int, dict[str, Any]] | None:
        return robot.answers.pop(0) if robot.answers else None

    def handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
               body: bytes) -> tuple[int, dict[str, Any]]:
        """Answer one request like the platform would."""
        now = self.clock()
        with self.lock:
            if path == "/robot/send":
                return self._dingtalk(query, body, now)
            if path == "/cgi-bin/webhook/send":
                return self._wecom(query, body, now)
            if path.startswith("/open-apis/bot/v2/hook/"):
                return self._feishu(path.rsplit("/", 1)[-1], body, now)
            if path.startswith("/hook/"):
                return self._webhook(path.rsplit("/", 1)[-1], headers, body, now)
            if path == "/" and method == "POST":
                return self._sms(body, now)
        return 404, {"error": "no such fake endpoint"}

    def _dingtalk(self, query: dict[str, str], body: bytes, now: float
                  ) -> tuple[int, dict[str, Any]]:
        robot = self.robots.get(("dingtalk", query.get("access_token", "")))
        if robot is None:
            return 200, {"errcode": 300001, "errmsg": "token is not exist"}
        if robot.secret:
            ts = query.get("timestamp", "")
            if not ts.isdigit() or abs(now * 1000 - int(ts)) > 3_600_000:
                return 200, {"errcode": 310000, "errmsg": "invalid timestamp"}
            material = f"{ts}\n{robot.secret}".encode()
            expected = base64.b64encode(hmac.new(robot.secret.encode(), material,
                                                 hashlib.sha256).digest()).decode()
            if query.get("sign") != expected:
                return 200, {"errcode": 310000, "errmsg": "sign not match"}
        injected = self._injected(robot)
        if injected is not None:
            return injected
        payload = orjson.loads(body)
        kind = payload.get("msgtype")
        if kind == "text":
            text = payload.get("text", {}).get("content")
        elif kind == "markdown":
            md = payload.get("markdown", {})
            text = md.get("text") if md.get("title") else None
        else:
            return 200, {"errcode": 40035, "errmsg": "缺少参数 json"}
        if not text:
            return 200, {"errcode": 40035, "errmsg": "缺少参数 json"}
        at = payload.get("at", {})
        if not all(isinstance(m, str) for m in at.get("atMobiles", [])):
            return 200, {"errcode": 40035, "errmsg": "atMobiles must be strings"}
        if robot.over_limit(now):
            robot.violations += 1
            return 200, {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}
        self._accept(robot, payload, text, now)
        return 200, {"errcode": 0, "errmsg": "ok"}

    def _wecom(self, query: dict[str, str], body: bytes, now: float
               ) -> tuple[int, dict[str, Any]]:
        robot = self.robots.get(("wecom", query.get("key", "")))
        if robot is None:
            return 200, {"errcode": 93000, "errmsg": "invalid webhook url, hint: [fake]"}
        injected = self._injected(robot)
        if injected is not None:
            return injected
        payload = orjson.loads(body)
        kind = payload.get("msgtype")
        limit = {"text": 2048, "markdown": 4096}.get(kind)
        if limit is None:
            return 200, {"errcode": 40008, "errmsg": "invalid message type"}
        content = payload.get(kind, {}).get("content", "")
        if not content:
            return 200, {"errcode": 44004, "errmsg": "empty content"}
        if len(content.encode()) > limit:
            return 200, {"errcode": 40058, "errmsg": f"content exceed max length {limit}"}
        if robot.over_limit(now):
            robot.violations += 1
            return 200, {"errcode": 45009, "errmsg": "api freq out of limit"}
        self._accept(robot, payload, content, now)
        return 200, {"errcode": 0, "errmsg": "ok"}

    def _feishu(self, token: str, body: bytes, now: float) -> tuple[int, dict[str, Any]]:
        robot = self.robots.get(("feishu", token))
        if robot is None:
            return 200, {"code": 19001,
                         "msg": "param invalid: incoming webhook access token invalid"}
        if len(body) > 20 * 1024:
            return 200, {"code": 9499, "msg": "Bad Request: request body too large"}
        payload = orjson.loads(body)
        if robot.secret:
            ts = str(payload.get("timestamp", ""))
            key = f"{ts}\n{robot.secret}".encode()
            expected = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
            if (not ts.isdigit() or abs(now - int(ts)) > 3600
                    or payload.get("sign") != expected):
                return 200, {"code": 19021, "msg": "sign match fail or timestamp is not "
                                                   "within one hour from current time"}
        injected = self._injected(robot)
        if injected is not None:
            return injected
        kind = payload.get("msg_type")
        if kind == "text":
            text = payload.get("content", {}).get("text")
        elif kind == "interactive":
            card = payload.get("card", {})
            text = orjson.dumps(card).decode() if card.get("elements") else None
        else:
            return 200, {"code": 9499, "msg": "Bad Request"}
        if not text:
            return 200, {"code": 9499, "msg": "Bad Request"}
        if robot.over_limit(now):
            robot.violations += 1
            return 200, {"code": 11232, "msg": "frequency limited"}
        self._accept(robot, payload, text, now)
        return 200, {"code": 0, "msg": "success", "data": {}}

    def _sms(self, body: bytes, now: float) -> tuple[int, dict[str, Any]]:
        form = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
        request_id = "FAKE-" + hashlib.sha1(body).hexdigest()[:12]
        robot = self.robots.get(("sms", form.get("AccessKeyId", "")))
        if robot is None or robot.secret is None:
            return 404, {"Code": "InvalidAccessKeyId.NotFound",
                         "Message": "Specified access key is not found.", "RequestId": request_id}
        given = form.pop("Signature", "")
        if not hmac.compare_digest(sms_signing.signature(robot.secret, "POST", form), given):
            return 400, {"Code": "SignatureDoesNotMatch",
                         "Message": "Specified signature is not matched with our calculation.",
                         "RequestId": request_id}
        try:
            stamp = calendar.timegm(time.strptime(form.get("Timestamp", ""),
                                                  "%Y-%m-%dT%H:%M:%SZ"))
        except ValueError:
            stamp = 0
        if abs(now - stamp) > 900:
            return 400, {"Code": "InvalidTimeStamp.Expired",
                         "Message": "Specified time stamp or date value is expired.",
                         "RequestId": request_id}
        nonce = form.get("SignatureNonce", "")
        if nonce in self.nonces:
            return 400, {"Code": "SignatureNonceUsed",
                         "Message": "Specified signature nonce was used already.",
                         "RequestId": request_id}
        self.nonces.add(nonce)
        injected = self._injected(robot)
        if injected is not None:
            return injected
        variables = robot.templates.get(form.get("TemplateCode", ""))
        if variables is None:
            return 200, {"Code": "isv.SMS_TEMPLATE_ILLEGAL", "Message": "模板不合法",
                         "RequestId": request_id}
        params = orjson.loads(form.get("TemplateParam", "{}"))
        if any(v not in params for v in variables):
            return 200, {"Code": "isv.TEMPLATE_MISSING_PARAMETERS", "Message": "模板缺少变量",
                         "RequestId": request_id}
        numbers = [n for n in form.get("PhoneNumbers", "").split(",") if n]
        if not numbers:
            return 200, {"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "非法手机号",
                         "RequestId": request_id}
        for number in numbers:
            sent = self.sms_numbers.setdefault(number, deque())
            while sent and sent[0] <= now - 60:
                sent.popleft()
            if sent:
                robot.violations += 1
                return 200, {"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "触发分钟级流控",
                             "RequestId": request_id}
        for number in numbers:
            self.sms_numbers[number].append(now)
        self._accept(robot, {"form": form, "params": params, "numbers": numbers},
                     " ".join(str(v) for v in params.values()), now)
        return 200, {"Code": "OK", "Message": "OK", "BizId": request_id[5:],
                     "RequestId": request_id}

    def _webhook(self, name: str, headers: dict[str, str], body: bytes, now: float
                 ) -> tuple[int, dict[str, Any]]:
        robot = self.robots.get(("webhook", name))
        if robot is None or robot.secret is None:
            return 404, {"error": "unknown hook"}
        problem = webhook_signing.verify(robot.secret, headers, body, now)
        if problem is not None:
            return 401, {"error": problem}
        delivery = {k.lower(): v for k, v in headers.items()}.get("x-hub-delivery", "")
        if delivery in self.deliveries:
            return 409, {"error": "replayed delivery"}
        injected = self._injected(robot)
        if injected is not None:
            return injected
        self.deliveries.add(delivery)
        payload = orjson.loads(body)
        self._accept(robot, payload, payload.get("text", ""), now)
        return 200, {"ok": True}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, answer = fake.handle(self.command, url.path, query,
                                             dict(self.headers.items()), body)
                data = orjson.dumps(answer)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = _serve
            do_GET = _serve

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        return Handler


def quote_url(text: str) -> str:
    """URL-encode a value (for tests building URLs by hand)."""
    return quote(text, safe="")
