"""Webhook delivery (HUB_WEBHOOK_URLS): every transition as a signed JSON POST, in background.

The signature is the ``webhook`` channel type's (hub/notify/channels/webhook.py): HMAC-SHA256
over ``<X-Hub-Timestamp>.<body>``, so a receiver can refuse replays (an old timestamp or a
delivery id seen before). The notify file's ``webhook`` channels are the durable,
policy-driven form; this sender stays for the settings that predate them.

One worker thread and one bounded queue per URL, so a dead receiver delays only itself. When a
queue is full the oldest pending delivery of the LEAST severe alarm is dropped and counted
(``hub_webhook_dropped_total``), or the new one when it is less severe than everything
pending: a flood of minor events (a reader spraying hazards) never pushes a critical alarm
out, and among equals the newest state matters more than an old transition.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import orjson

from hub.alarms import metrics
from hub.notify.channels import webhook as webhook_channel

log = logging.getLogger(__name__)

SEVERITY_RANK = {"critical": 0, "major": 1, "minor": 2, "warning": 3, "info": 4}
UNRANKED = len(SEVERITY_RANK)


def sign(secret: str, body: bytes, timestamp_s: int) -> str:
    """Return the signature header value ``sha256=<hex>`` of a timestamped body."""
    return webhook_channel.sign(secret, timestamp_s, body)


class _Worker(threading.Thread):
    def __init__(self, sender: WebhookSender, url: str) -> None:
        super().__init__(name=f"webhook {url}", daemon=True)
        self.sender = sender
        self.url = url
        self.pending: deque[tuple[str, bytes, int]] = deque()
        self.cond = threading.Condition()
        self.stopping = False

    def submit(self, event: str, body: bytes, rank: int = UNRANKED) -> None:
        with self.cond:
            if len(self.pending) >= self.sender.queue_size:
                worst = max(r for _e, _b, r in self.pending)
                self.sender.dropped += 1
                metrics.WEBHOOK_DROPPED.inc()
                if rank > worst:
                    return  # less severe than all that waits: this one goes
                for index, item in enumerate(self.pending):
                    if item[2] == worst:
                        del self.pending[index]
                        break
            self.pending.append((event, body, rank))
            self.cond.notify()

    def run(self) -> None:
        client = httpx.Client(timeout=self.sender.timeout_s)
        try:
            while True:
                with self.cond:
                    while not self.pending and not self.stopping:
                        self.cond.wait()
                    if not self.pending:
                        return
                    event, body, _rank = self.pending.popleft()
                self._deliver(client, event, body)
        finally:
            client.close()

    def _deliver(self, client: httpx.Client, event: str, body: bytes) -> None:
        sender = self.sender
        delivery = uuid.uuid4().hex
        for attempt in range(sender.max_attempts):
            headers = webhook_channel.signed_headers(sender.secret or None, body,
                                                     sender.clock(), delivery, event)
            try:
                response = client.post(self.url, content=body, headers=headers)
                if response.status_code < 300:
                    sender.sent += 1
                    metrics.WEBHOOK_SENT.inc()
                    return
                if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
                    log.warning("webhook %s refused %s: HTTP %d", self.url, event,
                                response.status_code)
                    break
            except httpx.HTTPError as exc:
                log.info("webhook %s attempt %d failed: %s", self.url, attempt + 1, exc)
            if attempt + 1 < sender.max_attempts:
                delay = min(sender.backoff_s * (2 ** attempt), sender.max_backoff_s)
                with self.cond:
                    if self.stopping:
                        break
                    self.cond.wait(delay)
        sender.failed += 1
        metrics.WEBHOOK_FAILED.inc()


class WebhookSender:
    """Posts alarm events to configured URLs with an HMAC-SHA256 signature and retries."""

    def __init__(
        self,
        urls: Sequence[str],
        secret: str = "",
        *,
        queue_size: int = 1000,
        max_attempts: int = 6,
        backoff_s: float = 0.5,
        max_backoff_s: float = 60.0,
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.secret = secret
        self.queue_size = max(1, queue_size)
        self.max_attempts = max(1, max_attempts)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self.clock = clock
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._workers = [_Worker(self, url) for url in urls if url]
        for worker in self._workers:
            worker.start()

    @classmethod
    def from_text(cls, urls: str, secret: str = "", **kwargs: Any) -> WebhookSender | None:
        """Build from the comma list setting; None when no URL is configured."""
        parsed = [u.strip() for u in urls.split(",") if u.strip()]
        return cls(parsed, secret, **kwargs) if parsed else None

    def submit(self, event: str, payload: dict[str, Any]) -> None:
        """Queue one event for every URL; returns at once."""
        body = orjson.dumps({"event": event, **payload}, default=str)
        alarm = payload.get("alarm")
        rank = SEVERITY_RANK.get(str(alarm.get("severity")), UNRANKED) if isinstance(
            alarm, dict) else UNRANKED
        for worker in self._workers:
            worker.submit(event, body, rank)

    def pending(self) -> int:
        """Return how many deliveries wait in the queues."""
        return sum(len(w.pending) for w in self._workers)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the workers after the deliveries in hand (pending retries are cut short)."""
        for worker in self._workers:
            with worker.cond:
                worker.stopping = True
                worker.cond.notify_all()
        deadline = time.monotonic() + timeout_s
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
