"""The dispatcher: due outbox rows to platform messages, grouped, rate-limited, retried.

One thread polls the outbox (woken early when the alarm service wrote new rows). Due rows
are checked once more against the alarm (an acknowledged or cleared alarm's steps are
cancelled) and the silences (``suppressed``), then grouped per (channel, kind, language):
one row is one message; many rows are one grouped message listing every alarm, split where
the platform's size limit needs it. A channel sends only when its ``SendBudget`` allows,
one request at a time, on a small pool of sender threads, so a slow robot delays only
itself. Answers: ``sent`` marks the rows; ``retry`` backs off (the platform's own wait for
rate-limit codes); ``config`` fails the rows and marks the channel broken in health;
``failed`` fails the rows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from hub.alarms.model import ACTIVE_UNACK, iso
from hub.notify import metrics
from hub.notify.channels.base import Answer, ChannelDriver, Recipients
from hub.notify.config import Rate
from hub.notify.message import Notice, describe
from hub.notify.outbox import (
    CANCELLED,
    FAILED,
    HANDOVER,
    REMINDER,
    SENT,
    STEP,
    SUPPRESSED,
    Due,
    Outbox,
)
from hub.notify.ratelimit import SendBudget

if TYPE_CHECKING:
    from hub.notify.service import NotifyService

log = logging.getLogger(__name__)
MAX_GROUP = 200


@dataclass(slots=True)
class ChannelHealth:
    """How a channel is doing."""

    state: str = "ok"  # ok, failing, config_error
    consecutive_failures: int = 0
    last_error: str | None = None
    last_error_ns: int | None = None
    last_sent_ns: int | None = None
    sent: int = 0
    failed: int = 0

    def to_json(self) -> dict[str, Any]:
        """The health form."""
        return {"state": self.state, "consecutive_failures": self.consecutive_failures,
                "last_error": self.last_error, "last_error_at": iso(self.last_error_ns),
                "last_sent_at": iso(self.last_sent_ns), "sent": self.sent,
                "failed": self.failed}


@dataclass(slots=True)
class _Batch:
    channel: str
    kind: str
    lang: str
    rows: list[Due] = field(default_factory=list)


class Dispatcher:
    """Sends due outbox rows; one polling thread, a few sender threads."""

    def __init__(self, service: NotifyService, outbox: Outbox, *,
                 wall: Callable[[], int] = time.time_ns, poll_s: float = 0.25,
                 senders: int = 4) -> None:
        self.service = service
        self.outbox = outbox
        self.wall = wall
        self.poll_s = poll_s
        self.health: dict[str, ChannelHealth] = {}
        self.budgets: dict[str, SendBudget] = {}
        self._busy: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._pool = ThreadPoolExecutor(max_workers=senders, thread_name_prefix="notify-send")
        self._client = httpx.Client(follow_redirects=False)
        self._thread = threading.Thread(target=self._loop, name="notify-dispatcher",
                                        daemon=True)
        self._seed_budgets()

    def _seed_budgets(self) -> None:
        # a restart must not forget what this minute already sent
        now = self.wall()
        for channel, at in self.outbox.recent_sends(now - 60 * 10**9):
            self.budget(channel).record(at)

    def budget(self, channel_id: str) -> SendBudget:
        """The budget of a channel (made on first use, rate from the current config)."""
        driver = self.service.driver(channel_id)
        rate = driver.rate if driver is not None else Rate(per_minute=60)
        with self._lock:
            budget = self.budgets.get(channel_id)
            if budget is None:
                budget = self.budgets[channel_id] = SendBudget(rate)
            elif budget.rate != rate:
                budget.rate = rate
        return budget

    def channel_health(self, channel_id: str) -> ChannelHealth:
        """The health record of a channel."""
        with self._lock:
            return self.health.setdefault(channel_id, ChannelHealth())

    def start(self) -> None:
        """Start the polling thread."""
        self._thread.start()

    def wake(self) -> None:
        """Poll now (new rows were written)."""
        self._wake.set()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop polling and wait for the requests in flight."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout_s)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._client.close()

    def _loop(self) -> None:
        failures = 0
        while not self._stopping:
            # the state store down: back off (and log) instead of failing four times a second
            self._wake.wait(min(self.poll_s * 2 ** failures, 10.0))
            self._wake.clear()
            if self._stopping:
                return
            try:
                self.service.maybe_reload()
                self.poll()
                failures = 0
            except Exception:
                if failures < 6:
                    log.exception("notification dispatcher failed; going on")
                failures = min(failures + 1, 6)

    # -- one poll ------------------------------------------------------------------------------

    def poll(self) -> int:
        """Send what is due and allowed now; return how many messages were handed to senders."""
        now = self.service.clock()
        with self._lock:
            # busy before the read: a send that ends after it may have changed its rows, and
            # our copies of them would go again
            busy = set(self._busy)
        rows = self.outbox.due(now)
        if not rows:
            metrics.PENDING.set(0)
            return 0
        cancel: list[Due] = []
        suppress: list[Due] = []
        unknown: list[Due] = []
        batches: dict[tuple[str, str, str], _Batch] = {}
        for row in rows:
            if row.kind == HANDOVER:  # a hazard's, carrying its text: no alarm to check
                if self.service.driver(row.channel) is None:
                    unknown.append(row)
                    continue
                lang = self.service.language_of(row.site)
                batches.setdefault((row.channel, row.kind, lang),
                                   _Batch(row.channel, row.kind, lang)).rows.append(row)
                continue
            alarm = self.service.alarm_json(row.alarm_id)
            if row.kind in (STEP, REMINDER) and (alarm is None or
                                                  alarm["state"] != ACTIVE_UNACK):
                cancel.append(row)
                continue
            if alarm is None:
                unknown.append(row)
                continue
            if self.service.silence_for(alarm, now) is not None:
                suppress.append(row)
                continue
            if self.service.driver(row.channel) is None:
                unknown.append(row)
                continue
            lang = self.service.language_of(row.site)
            key = (row.channel, row.kind, lang)
            batch = batches.setdefault(key, _Batch(row.channel, row.kind, lang))
            batch.rows.append(row)
        self.outbox.finish(cancel, CANCELLED, now, error=None, answer=None)
        if suppress:
            self.outbox.finish(suppress, SUPPRESSED, now, error="silenced", answer=None)
            for row in suppress:
                self.service.mark_silenced(row.alarm_id)
                metrics.NOTIFICATIONS.labels(row.channel, SUPPRESSED).inc(1)
        if unknown:
            self.outbox.finish(unknown, FAILED, now, error="channel or alarm unknown",
                               answer=None)
        metrics.PENDING.set(len(rows) - len(cancel) - len(suppress) - len(unknown))
        handed = 0
        for batch in batches.values():
            with self._lock:
                if batch.channel in self._busy or batch.channel in busy:
                    continue
            budget = self.budget(batch.channel)
            if budget.wait_ns(self.wall()) > 0:
                continue
            with self._lock:
                self._busy.add(batch.channel)
            self._pool.submit(self._send_batch, batch)
            handed += 1
        return handed

    def _notices(self, batch: _Batch) -> list[tuple[Notice, list[Due]]]:
        driver = self.service.driver(batch.channel)
        assert driver is not None
        if batch.kind == HANDOVER:  # one message each: a hand-over is addressed to one
            return [(Notice(HANDOVER, batch.lang, (), row.step, str(row.id), row.text or ""),
                     [row]) for row in batch.rows[:MAX_GROUP]]
        texts = []
        for row in batch.rows[:MAX_GROUP]:
            alarm = self.service.alarm_json(row.alarm_id)
            if alarm is not None:
                texts.append((describe(alarm, self.service.sites, batch.lang,
                                       self.service.console_url), row))
        # one row per alarm in a message (an alarm's rows of one channel: the newest step)
        by_alarm: dict[str, list[Due]] = defaultdict(list)
        order: list[str] = []
        for text, row in texts:
            if text.id not in by_alarm:
                order.append(text.id)
            by_alarm[text.id].append(row)
        first_text = {t.id: t for t, _ in reversed(texts)}
        parts: list[tuple[Notice, list[Due]]] = []

        def split(ids: list[str]) -> None:
            step = max(r.step for i in ids for r in by_alarm[i])
            key = ",".join(str(r.id) for i in ids for r in by_alarm[i])
            notice = Notice(batch.kind, batch.lang, tuple(first_text[i] for i in ids), step,
                            key)
            if len(ids) == 1 or driver.fits(notice):
                parts.append((notice, [r for i in ids for r in by_alarm[i]]))
                return
            half = len(ids) // 2
            split(ids[:half])
            split(ids[half:])

        if order:
            split(order)
        return parts

    def _send_batch(self, batch: _Batch) -> None:
        try:
            driver = self.service.driver(batch.channel)
            if driver is None:
                return
            budget = self.budget(batch.channel)
            for notice, rows in self._notices(batch):
                if budget.wait_ns(self.wall()) > 0:
                    break  # the rest waits, grouped with what comes next
                rows = self._still_wanted(rows)
                if not rows:
                    continue
                to = Recipients()
                for row in rows:
                    to = to.merge(self.service.recipients(row))
                budget.record(self.wall())
                started = time.perf_counter()
                answer = driver.send(self._client, notice, to, self.wall() / 1e9)
                metrics.SEND_SECONDS.labels(batch.channel).observe(time.perf_counter() - started)
                self._record(driver, budget, rows, answer)
        except Exception:
            log.exception("sending on %s failed", batch.channel)
        finally:
            with self._lock:
                self._busy.discard(batch.channel)
            self._wake.set()

    def _still_wanted(self, rows: list[Due]) -> list[Due]:
        # an ack may have come while the batch waited for its sender thread
        stale = []
        for row in rows:
            if row.kind not in (STEP, REMINDER):
                continue
            alarm = self.service.alarm_json(row.alarm_id)
            if alarm is None or alarm["state"] != ACTIVE_UNACK:
                stale.append(row)
        if stale:
            self.outbox.finish(stale, CANCELLED, self.service.clock(), error=None, answer=None)
        return [r for r in rows if r not in stale]

    def idle(self) -> bool:
        """True when no request is in flight."""
        with self._lock:
            return not self._busy

    def _record(self, driver: ChannelDriver, budget: SendBudget, rows: list[Due],
                answer: Answer) -> None:
        now = self.service.clock()
        wall = self.wall()
        health = self.channel_health(driver.id)
        metrics.MESSAGES.labels(driver.id, answer.outcome).inc()
        if answer.outcome == "sent":
            self.outbox.finish(rows, SENT, now, error=None, answer=answer.detail,
                               reminders=[r for r in rows if r.kind in (STEP, REMINDER)])
            metrics.NOTIFICATIONS.labels(driver.id, SENT).inc(len(rows))
            with self._lock:
                health.state = "ok"
                health.consecutive_failures = 0
                health.last_sent_ns = wall
                health.sent += len(rows)
            return
        with self._lock:
            health.consecutive_failures += 1
            health.last_error = answer.detail
            health.last_error_ns = wall
        if answer.outcome == "retry":
            cfg = driver.config
            attempts = min(r.attempts for r in rows) + 1
            if attempts < cfg.max_attempts:
                delay = min(cfg.backoff_s * 2 ** (attempts - 1), cfg.max_backoff_s)
                if answer.retry_after_s is not None:
                    wait = cfg.rate_limited_wait_s or answer.retry_after_s
                    delay = max(delay, wait)
                    budget.pause(wall + int(wait * 1e9))
                self.outbox.retry(rows, now + int(delay * 1e9), answer.detail)
                metrics.RETRIES.labels(driver.id).inc()
                with self._lock:
                    if health.state != "config_error":
                        health.state = "failing"
                log.info("notify %s: %s; retrying in %.1f s", driver.id, answer.detail, delay)
                return
        error = answer.detail
        if answer.outcome == "config":
            error = f"configuration error: {answer.detail}"
            metrics.CONFIG_ERRORS.labels(driver.id).inc()
            log.error("notify channel %s: %s (fix the notify file: not retried)",
                      driver.id, answer.detail)
        with self._lock:
            health.state = "config_error" if answer.outcome == "config" else "failing"
            health.failed += len(rows)
        self.outbox.finish(rows, FAILED, now, error=error, answer=answer.detail)
        metrics.NOTIFICATIONS.labels(driver.id, FAILED).inc(len(rows))
