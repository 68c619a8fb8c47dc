"""Live updates for the duty console: ``GET /api/events`` (server-sent events).

The alarm service and the pipeline run in their own threads. They call ``EventHub.publish``,
which hands each event to every subscriber's asyncio queue with ``loop.call_soon_threadsafe``
(never blocking the caller). Each SSE stream waits for an event, then gathers what arrives in a
short window and sends one message per event type with the list of items:

- ``alarm``: ``[{"id", "device_id", "site", "rule", "severity", "state", "action"}]`` for every
  alarm transition (raise, reopen, escalate, de-escalate, clear, ack, assign, comment);
- ``device``: ``[{"device_id", "online", "reason"}]`` for online/offline status readings;
- ``patrol`` and ``hazard``: ``[{"device_id", "site"}]`` when a reader sends a scan or a hazard
  report (the patrol service turns them into rounds and hazards; the page then reloads them).

Device changes are held and sent at most every ``HUB_EVENTS_DEVICE_EVERY_S`` (newest per
device), so a flood of new devices reloads the console's device panels once per period.
Streams are capped in all (``HUB_EVENTS_MAX_STREAMS``) and per caller
(``HUB_EVENTS_MAX_PER_CALLER``): beyond, 429 with the limit.

A subscriber that falls behind by more than its queue loses the oldest events and gets a
``resync`` event: the page then reloads every panel. On a cluster hub (``hub.cluster.view``)
``relays`` send every event to the other hubs, which ``deliver`` it to their own subscribers
(scopes and caps as for their own events); ``resync`` tells every stream it may have missed
some (the cluster connection was away). The caller is a bearer token in the
Authorization header (scripts) or the console's session cookie (browsers' EventSource sends
it by itself): never a token in the URL, where it would land in access logs. A caller of
some sites receives only events of those sites.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import orjson
from fastapi import APIRouter, FastAPI, HTTPException, Request
from sse_starlette import EventSourceResponse
from starlette.background import BackgroundTask

from hub.api.auth import ANONYMOUS, User, resolve
from hub.api.scope import policy

log = logging.getLogger(__name__)

router = APIRouter(tags=["events"])

QUEUE_SIZE = 2000
COALESCE_S = 0.25
DEVICE_EVERY_S = 5.0
PING_S = 15.0
SHUTDOWN_POLL_S = 0.5
PATROL_MESSAGES = {"scan": "patrol", "hazard": "hazard"}


class TooManyStreams(Exception):
    """A stream beyond the caps (in all or per caller): answered 429 with the limit."""


class _Ticket:
    """One admitted stream, released once (when the stream ends, or after the response)."""

    __slots__ = ("caller", "released")

    def __init__(self, caller: str, released: bool = False) -> None:
        self.caller = caller
        self.released = released


class _Subscriber:
    """One SSE client: its loop and bounded queue."""

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int, caller: str = "") -> None:
        self.caller = caller
        self.loop = loop
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(size)
        self.overflowed = False

    def put(self, item: tuple[str, dict[str, Any]]) -> None:
        """Queue an item (runs in the subscriber's loop); drop the oldest when full."""
        if self.queue.full():
            self.overflowed = True
            self.queue.get_nowait()
        self.queue.put_nowait(item)

    def mark_overflowed(self) -> None:
        """Events were lost on the way here: the stream sends ``resync`` (subscriber's loop)."""
        self.overflowed = True


class EventHub:
    """Thread-safe fan-out of hub events to SSE subscribers in an asyncio loop."""

    def __init__(self, queue_size: int = QUEUE_SIZE, max_streams: int = 200,
                 max_per_caller: int = 8) -> None:
        self.queue_size = queue_size
        self.max_streams = max_streams
        self.max_per_caller = max_per_caller
        self._subscribers: set[_Subscriber] = set()
        self._reserved: dict[str, int] = {}  # streams per caller, counted from admission
        self._lock = threading.Lock()
        self.published = 0
        # called with every event published here (a cluster hub: to the other hubs)
        self.relays: list[Callable[[str, dict[str, Any]], None]] = []

    @property
    def subscribers(self) -> int:
        """How many streams are connected."""
        return len(self._subscribers)

    def publish(self, event: str, data: dict[str, Any]) -> None:
        """Send an event of this hub to every subscriber (and relay); any thread, never blocks."""
        self.deliver(event, data)
        for relay in self.relays:
            relay(event, data)

    def resync(self) -> None:
        """Tell every stream it may have missed events: each sends ``resync`` (any thread)."""
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            try:
                subscriber.loop.call_soon_threadsafe(subscriber.mark_overflowed)
            except RuntimeError:
                self.unsubscribe(subscriber)

    def deliver(self, event: str, data: dict[str, Any]) -> None:
        """Send an event to every subscriber, not relayed; safe from any thread, never blocks."""
        self.published += 1
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            try:
                subscriber.loop.call_soon_threadsafe(subscriber.put, (event, data))
            except RuntimeError:  # its loop is closed: the server is gone
                self.unsubscribe(subscriber)

    def admit(self, caller: str) -> _Ticket:
        """Count a new stream of ``caller``; raise TooManyStreams beyond either cap."""
        with self._lock:
            total = sum(self._reserved.values())
            if total >= self.max_streams:
                raise TooManyStreams(f"{total} live event streams are open, the limit "
                                     f"(HUB_EVENTS_MAX_STREAMS={self.max_streams})")
            mine = self._reserved.get(caller, 0)
            if mine >= self.max_per_caller:
                raise TooManyStreams(f"{caller!r} has {mine} live event streams open, the limit "
                                     f"(HUB_EVENTS_MAX_PER_CALLER={self.max_per_caller})")
            self._reserved[caller] = mine + 1
            return _Ticket(caller)

    def release(self, ticket: _Ticket) -> None:
        """A stream admitted with ``admit`` has ended (a second release changes nothing)."""
        with self._lock:
            if ticket.released:
                return
            ticket.released = True
            caller = ticket.caller
            left = self._reserved.get(caller, 0) - 1
            if left > 0:
                self._reserved[caller] = left
            else:
                self._reserved.pop(caller, None)

    def subscribe(self, caller: str = "") -> _Subscriber:
        """Register a subscriber of the running loop (call from inside the loop)."""
        subscriber = _Subscriber(asyncio.get_running_loop(), self.queue_size, caller)
        with self._lock:
            self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: _Subscriber) -> None:
        """Forget a subscriber."""
        with self._lock:
            self._subscribers.discard(subscriber)

    # -- sources -----------------------------------------------------------------------------

    def on_alarm(self, action: str, alarm: dict[str, Any]) -> None:
        """AlarmService listener: publish an alarm transition."""
        self.publish("alarm", {
            "id": alarm.get("id"), "device_id": alarm.get("device_id"),
            "site": alarm.get("site"), "rule": alarm.get("rule"),
            "severity": alarm.get("severity"), "state": alarm.get("state"), "action": action})

    def on_reading(self, reading: Any) -> None:
        """Pipeline reading hook: publish online/offline changes, patrol scans, hazard reports."""
        online = reading.online  # attributes, not getattr: this runs for every reading
        if online is not None:
            self.publish("device", {"device_id": reading.device_id, "online": online,
                                    "reason": reading.status_reason, "site": reading.site})
            return
        message = reading.message
        if message in PATROL_MESSAGES:
            self.publish(PATROL_MESSAGES[message], {"device_id": reading.device_id,
                                                    "site": reading.site})


def install(app: FastAPI, hub: Any) -> EventHub:
    """Create (once per hub) the event hub, hook it to the alarms and pipeline, add the route."""
    extensions: dict[str, Any] = getattr(hub, "extensions", {})
    events = extensions.get("events")
    if not isinstance(events, EventHub):
        settings = getattr(hub, "settings", None)
        events = EventHub(max_streams=getattr(settings, "events_max_streams", 200),
                          max_per_caller=getattr(settings, "events_max_per_caller", 8))
        extensions["events"] = events
        alarms = getattr(hub, "alarms", None)
        if alarms is not None and hasattr(alarms, "add_listener"):
            alarms.add_listener(events.on_alarm)
        pipeline = getattr(hub, "pipeline", None)
        if pipeline is not None:
            pipeline.add_reading_hook("events", events.on_reading)
    app.state.events = events
    app.include_router(router)
    return events


def user_from_request(request: Request) -> User:
    """Resolve the caller (bearer token or session cookie); raise 401 when invalid."""
    return resolve(request)


def _group(items: list[tuple[str, dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for event, data in items:
        if event in ("device", "patrol", "hazard"):  # only the newest per device
            bucket = grouped.setdefault(event, [])
            bucket[:] = [d for d in bucket if d["device_id"] != data["device_id"]]
            bucket.append(data)
        else:
            grouped.setdefault(event, []).append(data)
    return grouped


async def _stream(events: EventHub, user: User, shutdown: anyio.Event,
                  ticket: _Ticket | None = None,
                  device_every_s: float = DEVICE_EVERY_S) -> AsyncIterator[dict[str, str]]:
    if ticket is None:  # a stream not admitted through the route (tests, in-process use)
        ticket = _Ticket(user.name, released=True)
    subscriber = events.subscribe(ticket.caller)
    sites = user.sites
    # device changes are held and sent at most every ``device_every_s``: a flood of new
    # devices then reloads the console's device panels once per period, not per burst
    held: dict[str, dict[str, Any]] = {}
    device_sent = -device_every_s
    try:
        yield {"event": "hello", "data": orjson.dumps(
            {"user": user.name, "role": user.role,
             "sites": None if sites is None else sorted(sites)}).decode()}
        while not shutdown.is_set():  # the server stops: end the stream properly
            try:
                first = await asyncio.wait_for(subscriber.queue.get(), SHUTDOWN_POLL_S)
            except TimeoutError:
                first = None
            items = []
            if first is not None:
                await asyncio.sleep(COALESCE_S)
                items.append(first)
                while not subscriber.queue.empty():
                    items.append(subscriber.queue.get_nowait())
            if sites is not None:  # a caller of some sites: only their events
                items = [item for item in items if item[1].get("site") in sites]
            if subscriber.overflowed:
                subscriber.overflowed = False
                held.clear()
                yield {"event": "resync", "data": "{}"}
                continue
            for event, batch in _group(items).items():
                if event == "device":
                    held.update((d["device_id"], d) for d in batch)
                    continue
                yield {"event": event, "data": orjson.dumps(batch).decode()}
            now = time.monotonic()
            if held and now - device_sent >= device_every_s:
                device_sent = now
                batch = list(held.values())
                held.clear()
                yield {"event": "device", "data": orjson.dumps(batch).decode()}
    finally:
        events.unsubscribe(subscriber)
        events.release(ticket)


def _caller(request: Request, user: User) -> str:
    """Who the per-caller stream cap counts: the token's user, or the address when anonymous."""
    if user.name != ANONYMOUS:
        return user.name
    return f"{ANONYMOUS}@{request.client.host if request.client else '?'}"


@router.get("/api/events")
@policy("sites")
async def event_stream(request: Request) -> EventSourceResponse:
    """Server-sent events: alarm transitions and device online/offline changes (viewer)."""
    user = resolve(request)
    events: EventHub | None = getattr(request.app.state, "events", None)
    if events is None:
        raise HTTPException(503, detail={"error": "unavailable",
                                         "message": "live events are not enabled"})
    try:
        ticket = events.admit(_caller(request, user))
    except TooManyStreams as exc:
        raise HTTPException(429, detail={"error": "too_many_streams", "message": str(exc)},
                            headers={"Retry-After": "30"}) from None
    settings = getattr(getattr(request.app.state, "hub", None), "settings", None)
    every = getattr(settings, "events_device_every_s", DEVICE_EVERY_S)
    shutdown = anyio.Event()
    return EventSourceResponse(
        _stream(events, user, shutdown, ticket, every), ping=PING_S, shutdown_event=shutdown,
        shutdown_grace_period=2 * SHUTDOWN_POLL_S,
        # also released when the stream never started (the client left at once)
        background=BackgroundTask(events.release, ticket),
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
