"""The durable writer: every submitted batch ends up in the store or in the spool, in order.

One thread takes batches from a bounded queue and writes each to the store; when the store is
unavailable the batch goes to the spool instead. Only then is the batch's ``on_durable``
called (the MQTT adapter acknowledges the messages there), strictly in submission order. A
second thread replays the spool, oldest first, whenever the store answers again (probing with
exponential backoff and jitter). A full spool keeps the batch in memory and retries without
calling ``on_durable``, so the queue fills and ``submit`` blocks: back-pressure up to the
broker, which keeps the unacknowledged messages. Nothing is dropped.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from hub.store.base import PointStore, StoreUnavailable, WriteResult
from hub.store.spool import Spool, SpoolFull

log = logging.getLogger(__name__)

POINTS_WRITTEN = Counter("hub_points_written_total", "Points the store accepted")
POINTS_SPOOLED = Counter("hub_points_spooled_total", "Points written to the spool")
POINTS_REJECTED = Counter("hub_points_rejected_total", "Points the store refused for good")
SPOOL_BYTES = Gauge("hub_spool_bytes", "Bytes waiting in the spool")
LAST_WRITE = Gauge(
    "hub_store_last_write_timestamp_seconds", "Unix time the store last accepted a batch"
)
STORE_WRITE_SECONDS = Histogram(
    "hub_store_write_seconds",
    "Duration of one batch write to the store",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

Rejected = list[tuple[bytes, str]]


@dataclass(slots=True)
class _Batch:
    lines: list[bytes]
    on_durable: Callable[[], None]


class DurableWriter:
    """Write batches to a store, spooling them while it is down; threads start at once."""

    def __init__(
        self,
        store: PointStore,
        spool: Spool,
        on_rejected: Callable[[Rejected], None],
        retry_initial_s: float = 0.5,
        retry_max_s: float = 30.0,
        queue_batches: int = 4,
    ) -> None:
        self.store = store
        self.spool = spool
        self.on_rejected = on_rejected
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self._queue: queue.Queue[_Batch | None] = queue.Queue(maxsize=queue_batches)
        self._store_ok = True
        self._last_error: str | None = None
        self._stopping = threading.Event()
        self._abandon = threading.Event()
        self._replay_wake = threading.Event()
        self._busy = 0
        self._busy_lock = threading.Lock()
        SPOOL_BYTES.set(spool.depth()[1])
        self._writer = threading.Thread(target=self._write_loop, name="hub-writer", daemon=True)
        self._replayer = threading.Thread(
            target=self._replay_loop, name="hub-spool-replay", daemon=True
        )
        self._writer.start()
        self._replayer.start()

    # -- API -------------------------------------------------------------------------------
    def submit(self, lines: list[bytes], on_durable: Callable[[], None]) -> None:
        """Queue a batch; block while the queue is full (back-pressure)."""
        if self._stopping.is_set():
            raise RuntimeError("DurableWriter is stopped")
        self._queue.put(_Batch(lines, on_durable))

    def stop(self, timeout: float = 30.0) -> bool:
        """Flush queued batches (to the store or spool), stop the threads; True if all flushed."""
        deadline = time.monotonic() + timeout
        self._stopping.set()
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=max(0.0, timeout))
        self._writer.join(max(0.0, deadline - time.monotonic()))
        self._abandon.set()
        self._replay_wake.set()
        self._replayer.join(max(0.0, deadline - time.monotonic()))
        flushed = not self._writer.is_alive() and self._queue.empty()
        if not flushed:
            log.error("writer stopped with batches not yet durable (they stay unacknowledged)")
        return flushed

    def health(self) -> dict[str, Any]:
        """Return store_ok, spool_batches, spool_bytes, queued (batches) and last_error."""
        batches, nbytes = self.spool.depth()
        return {
            "store_ok": self._store_ok,
            "spool_batches": batches,
            "spool_bytes": nbytes,
            "queued": self._queue.qsize() + self._busy,
            "last_error": self._last_error,
        }

    # -- writer thread ---------------------------------------------------------------------
    def _write_loop(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            with self._busy_lock:
                self._busy = 1
            try:
                durable = self._make_durable(batch.lines)
            finally:
                with self._busy_lock:
                    self._busy = 0
            if not durable:
                return
            try:
                batch.on_durable()
            except Exception:
                log.exception("on_durable callback failed")

    def _make_durable(self, lines: list[bytes]) -> bool:
        """Return True once the batch is in the store or the spool; False if stop gave up."""
        if not lines:
            return True  # nothing to store: only the batch's on_durable (acks, hooks) is due
        delay = self.retry_initial_s
        while not self._abandon.is_set():
            if self._store_ok and self._write_store(lines):
                return True
            try:
                self.spool.append(lines)
            except (SpoolFull, OSError) as exc:
                self._last_error = f"spool: {exc}"
                log.warning("spool cannot take a batch (%s); holding it, retrying", exc)
                self._replay_wake.set()
                self._abandon.wait(self._jitter(delay))
                delay = min(delay * 2, self.retry_max_s)
                # The store may be back: try it directly on the next round.
                self._store_ok = True
                continue
            POINTS_SPOOLED.inc(len(lines))
            SPOOL_BYTES.set(self.spool.depth()[1])
            self._replay_wake.set()
            return True
        return False

    def _write_store(self, lines: list[bytes]) -> bool:
        """Write to the store; False (and store marked down) when it is unavailable."""
        started = time.perf_counter()
        try:
            result = self.store.write_lines(lines)
        except StoreUnavailable as exc:
            self._mark_down(str(exc))
            return False
        except Exception as exc:  # a store bug must not kill the thread: spool instead
            log.exception("store %s failed unexpectedly", self.store.name)
            self._mark_down(f"{type(exc).__name__}: {exc}")
            return False
        STORE_WRITE_SECONDS.observe(time.perf_counter() - started)
        self._accepted(lines, result)
        return True

    def _accepted(self, lines: list[bytes], result: WriteResult) -> None:
        POINTS_WRITTEN.inc(len(lines) - len(result.rejected))
        LAST_WRITE.set_to_current_time()
        if result.rejected:
            POINTS_REJECTED.inc(len(result.rejected))
            try:
                self.on_rejected(result.rejected)
            except Exception:
                log.exception("on_rejected callback failed")

    def _mark_down(self, reason: str) -> None:
        if self._store_ok:
            log.warning("store %s unavailable, spooling: %s", self.store.name, reason)
        self._store_ok = False
        self._last_error = reason

    # -- replay thread ---------------------------------------------------------------------
    def _replay_loop(self) -> None:
        delay = self.retry_initial_s
        while not self._stopping.is_set():
            self._replay_wake.clear()
            try:
                head = self.spool.peek()
            except OSError as exc:
                self._last_error = f"spool: {exc}"
                log.error("cannot read the spool: %s", exc)
                self._sleep(self.retry_max_s)
                continue
            if head is None:
                self._replay_wake.wait(1.0)
                continue
            batch_id, lines = head
            started = time.perf_counter()
            try:
                result = self.store.write_lines(lines)
            except Exception as exc:
                if not isinstance(exc, StoreUnavailable):
                    log.exception("store %s failed unexpectedly", self.store.name)
                self._mark_down(str(exc) or type(exc).__name__)
                self._sleep(self._jitter(delay))
                delay = min(delay * 2, self.retry_max_s)
                continue
            STORE_WRITE_SECONDS.observe(time.perf_counter() - started)
            if not self._store_ok:
                log.info("store %s answers again, replaying the spool", self.store.name)
            self._store_ok = True
            delay = self.retry_initial_s
            self._accepted(lines, result)
            self.spool.remove(batch_id)
            SPOOL_BYTES.set(self.spool.depth()[1])

    def _sleep(self, seconds: float) -> None:
        """Sleep, waking early when the writer stops."""
        self._stopping.wait(seconds)

    @staticmethod
    def _jitter(delay: float) -> float:
        return delay * random.uniform(0.5, 1.5)
