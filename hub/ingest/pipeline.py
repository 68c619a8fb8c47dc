"""The ingest loop: messages in, readings normalized, batches durable, then acks out.

paho's thread only puts frozen messages on a queue. One pipeline thread normalizes, updates
state, runs the rule hooks and builds batches; the durable writer stores each batch (or spools
it) and only then are the batch's messages acknowledged to the broker, in order.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from prometheus_client import Counter, Gauge

from hub.clock import HubClock
from hub.ingest.lineproto import encode_point
from hub.ingest.normalize import Normalizer
from hub.ingest.refusals import RefusalLog
from hub.intake.handoff import Handoff
from hub.model import InboundMessage, Point, Reading, Refusal
from hub.state import DeviceStates

log = logging.getLogger(__name__)

READINGS = Counter("hub_readings_total", "readings normalized, by model", ["model"])
POINTS = Counter("hub_points_total", "points built by the pipeline")
HOOK_ERRORS = Counter("hub_hook_errors_total", "exceptions raised by reading/tick hooks", ["hook"])
QUEUE_DEPTH = Gauge("hub_pipeline_queue", "messages waiting for the pipeline thread")

ReadingHook = Callable[[Reading], None]
SAVE_CHUNK = 1000  # device states snapshotted per tick: bounds the pipeline's pause
TickHook = Callable[[int], None]


class BatchWriter(Protocol):
    """What the pipeline needs of the durable writer."""

    def submit(self, lines: list[bytes], on_durable: Callable[[], None]) -> None:
        """Queue a batch; call on_durable once it is stored or spooled."""
        ...


class Pipeline:
    """Runs the ingest loop on its own thread."""

    def __init__(
        self,
        normalizer: Normalizer,
        states: DeviceStates,
        refusals: RefusalLog,
        writer: BatchWriter,
        ack: Callable[[list[Any]], None],
        *,
        batch_size: int = 5000,
        batch_interval_s: float = 0.2,
        tick_interval_s: float = 1.0,
        save_interval_s: float = 2.0,
        clock: HubClock | None = None,
        max_queue: int = 200_000,
        source: Callable[[float], list[InboundMessage]] | None = None,
    ) -> None:
        self.normalizer = normalizer
        self.states = states
        self.refusals = refusals
        self.writer = writer
        self.ack = ack
        self.batch_size = batch_size
        self.batch_interval_s = batch_interval_s
        self.tick_interval_s = tick_interval_s
        self.save_interval_s = save_interval_s
        self.clock = clock or HubClock()
        # Either the intake pushes (``submit``, from paho's thread) or this thread pulls from
        # ``source`` whenever the inbox is empty (the intake process's pipe).
        self.source = source
        self._device_clock = self.clock.mode == "device"
        self.reading_hooks: list[tuple[str, ReadingHook]] = []
        self.tick_hooks: list[tuple[str, TickHook]] = []
        self.stop_hooks: list[tuple[str, Callable[[], None]]] = []
        self.flush_hooks: list[tuple[str, Callable[[], None]]] = []
        self._handoff: Handoff[InboundMessage | None] = Handoff(max_queue)
        self._inbox = self._handoff.items
        self._readings_uncounted: dict[str, int] = {}  # per model, published on the tick
        self._points_uncounted = 0
        self._side_points: list[Point] = []
        self._side_lock = threading.Lock()
        self._lines: list[bytes] = []
        self._tokens: list[Any] = []
        self._batch_started = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.processed = 0
        self.ticks = 0  # completed ticks: lets a caller wait for the timers to have run

    # ------------------------------------------------------------------ wiring

    def add_reading_hook(self, name: str, hook: ReadingHook) -> None:
        """Call ``hook(reading)`` for every reading, in the pipeline thread."""
        self.reading_hooks.append((name, hook))

    def add_tick_hook(self, name: str, hook: TickHook) -> None:
        """Call ``hook(now_ns)`` about once per tick interval, in the pipeline thread."""
        self.tick_hooks.append((name, hook))

    def add_flush_hook(self, name: str, hook: Callable[[], None]) -> None:
        """Call ``hook()`` before each batch goes to the writer (state that must be durable
        before the batch's messages are acknowledged)."""
        self.flush_hooks.append((name, hook))

    def add_stop_hook(self, name: str, hook: Callable[[], None]) -> None:
        """Call ``hook()`` in the pipeline thread before its last flush (save rule state, ...)."""
        self.stop_hooks.append((name, hook))

    def submit(self, message: InboundMessage) -> None:
        """Hand a message over (called from paho's thread; blocks when the queue is full)."""
        self._handoff.put(message, self._stop)

    def emit_points(self, points: list[Point]) -> None:
        """Add points the hub makes itself (alarms, ...) to the next batch; any thread."""
        with self._side_lock:
            self._side_points.extend(points)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the pipeline thread."""
        self._thread = threading.Thread(target=self._run, name="hub-pipeline", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Drain what is queued, flush the last batch, stop the thread."""
        self._stop.set()
        self._inbox.append(None)
        self._handoff.wake()
        if self._thread is not None:
            self._thread.join(timeout)
        self.states.save()

    @property
    def running(self) -> bool:
        """True while the pipeline thread is alive (health reports a dead one as degraded)."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def queue_depth(self) -> int:
        """Messages waiting for the pipeline thread."""
        return len(self._inbox)

    # ------------------------------------------------------------------ the loop

    def _run(self) -> None:
        next_tick = time.monotonic() + self.tick_interval_s
        next_save = time.monotonic() + self.save_interval_s
        inbox = self._inbox
        while True:
            if not inbox:
                if self._pending():
                    timeout = self._batch_started + self.batch_interval_s - time.monotonic()
                else:
                    timeout = 0.5
                timeout = min(timeout, next_tick - time.monotonic())  # ticks stay on time
                if self.source is not None:
                    if not self._stop.is_set():
                        inbox.extend(self.source(max(0.0, min(timeout, 0.5))))
                else:
                    self._handoff.wait(min(timeout, 0.5))
            # Take what is queued without waiting, up to a batch.
            while inbox and len(self._tokens) < self.batch_size:
                message = inbox.popleft()
                if message is None:
                    break
                try:
                    self._handle(message)
                except Exception as exc:  # a bug on one message must not stop ingest
                    self._internal_error(message, exc)
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + self.tick_interval_s
                self._tick()
                QUEUE_DEPTH.set(len(inbox))
            if now >= next_save:
                next_save = now + self.save_interval_s
                self._guard("state-save", self._save_states)
            if self._pending():
                full = len(self._lines) >= self.batch_size or len(self._tokens) >= self.batch_size
                due = now - self._batch_started >= self.batch_interval_s
                if full or due or self._stop.is_set():
                    self._flush()
            if self._stop.is_set() and not inbox:
                for name, hook in self.stop_hooks:
                    self._guard(name, hook)
                self._flush()
                return

    def _pending(self) -> bool:
        return bool(self._tokens or self._lines or self._side_points)

    def _handle(self, message: InboundMessage) -> None:
        if not (self._tokens or self._lines or self._side_points):  # not _pending(): per message
            self._batch_started = time.monotonic()
        self._tokens.append(message.ack_token)
        self.processed += 1
        if self._device_clock:
            message = message._replace(received_ns=self.clock())
        result = self.normalizer.process(message)
        if isinstance(result, Refusal):
            self.refusals.record(result)
            return
        uncounted = self._readings_uncounted
        uncounted[result.model] = uncounted.get(result.model, 0) + 1
        if self._device_clock and result.time_ns != result.received_ns:
            self.clock.observe(result.time_ns)
        self._accept(result)

    def _internal_error(self, message: InboundMessage, exc: Exception) -> None:
        # Refused and recorded with the reason; its token stays in the batch, so it is acked
        # with its neighbours once they are durable, never redelivered into the same bug.
        log.exception("pipeline failed on a message of %s", message.topic)
        self.refusals.record(
            self.normalizer.refusal(message, "internal", f"{type(exc).__name__}: {exc}")
        )

    def _accept(self, reading: Reading) -> None:
        points = reading.points
        if len(points) == 1:
            self._lines.append(encode_point(points[0]))
        else:
            # every point encoded before any is added: a reading goes in whole or not at all
            self._lines += [encode_point(point) for point in points]
        self._points_uncounted += len(points)
        implied = self.states.observe(reading)
        for status in implied:
            self._accept(status)
        for name, hook in self.reading_hooks:
            try:
                hook(reading)
            except Exception:  # a rule bug must not stop ingest
                HOOK_ERRORS.labels(name).inc()
                log.exception("reading hook %s failed on %s", name, reading.device_id)

    def _tick(self) -> None:
        # prometheus counters take a lock per inc: count in plain ints, publish once a tick
        for model, count in self._readings_uncounted.items():
            READINGS.labels(model).inc(count)
        self._readings_uncounted.clear()
        if not self._pending():
            self._batch_started = time.monotonic()
        self._guard("state-save", lambda: self.states.continue_save(SAVE_CHUNK))
        now = self.clock()
        for status in self.states.check_heartbeats(now):
            self._accept(status)
        for name, hook in self.tick_hooks:
            try:
                hook(now)
            except Exception:
                HOOK_ERRORS.labels(name).inc()
                log.exception("tick hook %s failed", name)
        if self.flush_hooks and not self._pending():
            # What the tick hooks changed (patrol rounds, ...) is written by the writer's thread
            # too, even while no message comes in.
            self._flush(force=True)
        self.ticks += 1

    def _save_states(self) -> None:
        self.states.begin_save()

    def _guard(self, name: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            HOOK_ERRORS.labels(name).inc()
            log.exception("%s failed", name)

    def _flush(self, force: bool = False) -> None:
        if self._points_uncounted:
            POINTS.inc(self._points_uncounted)
            self._points_uncounted = 0
        with self._side_lock:
            side, self._side_points = self._side_points, []
        lines = self._lines
        for point in side:
            lines.append(encode_point(point))
        tokens = self._tokens
        self._lines, self._tokens = [], []
        if not lines and not tokens and not force:
            return
        ack = self.ack
        guard = self._guard
        refusals = self.refusals
        hooks = self.flush_hooks

        def on_durable() -> None:
            # In the writer's thread, so the pipeline never waits on these commits. Refusals and
            # hook state (patrol scans) are written before the messages are acked: nothing
            # vanishes unrecorded.
            guard("refusal-log", refusals.flush)
            for name, hook in hooks:
                guard(name, hook)
            guard("refusal-log", refusals.flush)  # rows a hook's writer set aside (no-op if none)
            if tokens:
                ack(tokens)

        # Even a batch of refusals only goes through the writer: acks leave in arrival order.
        self.writer.submit(lines, on_durable)
