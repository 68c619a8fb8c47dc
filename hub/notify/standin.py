"""A STAND-IN robot receiver for ``hub demo``: DingTalk, WeCom, Feishu, Aliyun SMS, webhook.

Not a platform: a small local HTTP server that takes each platform's request format on the
paths the real ones use, checks the DingTalk and Feishu signatures with the demo secrets,
answers like the platform does on success, and keeps the last messages so the console can
show them under "Notifications". A newcomer sees step 1, step 2 and the clear notice arrive
without any account.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import orjson

DEMO_ENV = {"DEMO_GY_DING_SECRET": "SECdemo-guoyuan", "DEMO_LTP_FEISHU_SECRET": "demo-longtoupu",
            "DEMO_SMS_SECRET": "demo-sms-secret"}
KEEP = 200


class StandInRobots:
    """The stand-in receiver on ``http://127.0.0.1:<port>`` (port 0: a free one)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 secrets: dict[str, str] | None = None) -> None:
        self.secrets = secrets or {}
        self.messages: deque[dict[str, Any]] = deque(maxlen=KEEP)
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer((host, port), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        name="standin-robots", daemon=True)

    def start(self) -> StandInRobots:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest messages first."""
        with self.lock:
            return list(reversed(self.messages))[:limit]

    def _record(self, platform: str, robot: str, text: str, mentions: list[str],
                signed: bool | None) -> None:
        with self.lock:
            self.messages.append({"at": time.time(), "platform": platform, "robot": robot,
                                  "text": text, "mentions": mentions, "signed": signed})

    def _sign_ok(self, key: str, given: str | None, material: bytes) -> bool:
        digest = hmac.new(key.encode(), material, hashlib.sha256).digest()
        return given == base64.b64encode(digest).decode()

    def handle(self, path: str, query: dict[str, str], body: bytes) -> dict[str, Any]:
        """Record a message; answer as the platform would on success."""
        if path == "/robot/send":
            payload = orjson.loads(body)
            text = (payload.get("markdown", {}).get("text")
                    or payload.get("text", {}).get("content", ""))
            secret = self.secrets.get("DEMO_GY_DING_SECRET")
            signed = None
            if "sign" in query and secret:
                signed = self._sign_ok(secret, query["sign"],
                                       f"{query.get('timestamp')}\n{secret}".encode())
            self._record("dingtalk", query.get("access_token", ""), text,
                         payload.get("at", {}).get("atMobiles", []), signed)
            return {"errcode": 0, "errmsg": "ok"}
        if path == "/cgi-bin/webhook/send":
            payload = orjson.loads(body)
            part = payload.get(payload.get("msgtype", "text"), {})
            self._record("wecom", query.get("key", ""), part.get("content", ""),
                         part.get("mentioned_mobile_list", []), None)
            return {"errcode": 0, "errmsg": "ok"}
        if path.startswith("/open-apis/bot/v2/hook/"):
            payload = orjson.loads(body)
            if payload.get("msg_type") == "interactive":
                card = payload.get("card", {})
                text = card.get("header", {}).get("title", {}).get("content", "") + "\n" + \
                    "\n".join(e.get("content", "") for e in card.get("elements", []))
            else:
                text = payload.get("content", {}).get("text", "")
            secret = self.secrets.get("DEMO_LTP_FEISHU_SECRET")
            signed = None
            if "sign" in payload and secret:
                key = f"{payload.get('timestamp')}\n{secret}"
                signed = self._sign_ok(key, payload["sign"], b"")
            self._record("feishu", path.rsplit("/", 1)[-1], text, [], signed)
            return {"code": 0, "msg": "success", "data": {}}
        if path == "/":
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            params = orjson.loads(form.get("TemplateParam", "{}"))
            self._record("sms", form.get("TemplateCode", ""),
                         " / ".join(str(v) for v in params.values()),
                         form.get("PhoneNumbers", "").split(","), None)
            return {"Code": "OK", "Message": "OK", "BizId": "standin",
                    "RequestId": "standin"}
        payload = orjson.loads(body or b"{}")
        self._record("webhook", path, str(payload.get("text", "")), [], None)
        return {"ok": True}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                """Take one message."""
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    answer = standin.handle(url.path, query, body)
                    status = 200
                except (ValueError, KeyError, AttributeError) as exc:
                    answer, status = {"error": str(exc)}, 400
                data = orjson.dumps(answer)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        return Handler
