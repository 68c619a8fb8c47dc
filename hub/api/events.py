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

A subscriber that falls behind by more than its queue loses the oldest events and gets a
``resync`` event: the page then reloads every panel. The caller is a bearer token in the
Authorization header (scripts) or the console's session cookie (browsers' EventSource sends
it by itself): never a token in the URL, where it would land in access logs. A caller of
some sites receives only events of those sites.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

import anyio
import orjson
from fastapi import APIRouter, FastAPI, HTTPException, Request
from sse_starlette import EventSourceResponse

from hub.api.auth import User, resolve
from hub.api.scope import policy

log = logging.getLogger(__name__)

router = APIRouter(tags=["events"])

QUEUE_SIZE = 2000
COALESCE_S = 0.25
PING_S = 15.0
SHUTDOWN_POLL_S = 0.5
PATROL_MESSAGES = {"scan": "patrol", "hazard": "hazard"}


class _Subscriber:
    """One SSE client: its loop and bounded queue."""

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(size)
        self.overflowed = False

    def put(self, item: tuple[str, dict[str, Any]]) -> None:
        """Queue an item (runs in the subscriber's loop); drop the oldest when full."""
        if self.queue.full():
            self.overflowed = True
            self.queue.get_nowait()
        self.queue.put_nowait(item)


class EventHub:
    """Thread-safe fan-out of hub events to SSE subscribers in an asyncio loop."""

    def __init__(self, queue_size: int = QUEUE_SIZE) -> None:
        self.queue_size = queue_size
        self._subscribers: set[_Subscriber] = set()
        self._lock = threading.Lock()
        self.published = 0

    @property
    def subscribers(self) -> int:
        """How many streams are connected."""
        return len(self._subscribers)

    def publish(self, event: str, data: dict[str, Any]) -> None:
        """Send an event to every subscriber; safe from any thread, never blocks."""
        self.published += 1
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            try:
                subscriber.loop.call_soon_threadsafe(subscriber.put, (event, data))
            except RuntimeError:  # its loop is closed: the server is gone
                self.unsubscribe(subscriber)

    def subscribe(self) -> _Subscriber:
        """Register a subscriber of the running loop (call from inside the loop)."""
        subscriber = _Subscriber(asyncio.get_running_loop(), self.queue_size)
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
        online = getattr(reading, "online", None)
        if online is not None:
            self.publish("device", {"device_id": reading.device_id, "online": online,
                                    "reason": getattr(reading, "status_reason", None),
                                    "site": getattr(reading, "site", None)})
            return
        message = getattr(reading, "message", None)
        if message in PATROL_MESSAGES:
            self.publish(PATROL_MESSAGES[message], {"device_id": reading.device_id,
                                                    "site": reading.site})


def install(app: FastAPI, hub: Any) -> EventHub:
    """Create (once per hub) the event hub, hook it to the alarms and pipeline, add the route."""
    extensions: dict[str, Any] = getattr(hub, "extensions", {})
    events = extensions.get("events")
    if not isinstance(events, EventHub):
        events = EventHub()
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


async def _stream(events: EventHub, user: User,
                  shutdown: anyio.Event) -> AsyncIterator[dict[str, str]]:
    subscriber = events.subscribe()
    sites = user.sites
    try:
        yield {"event": "hello", "data": orjson.dumps(
            {"user": user.name, "role": user.role,
             "sites": None if sites is None else sorted(sites)}).decode()}
        while not shutdown.is_set():  # the server stops: end the stream properly
            try:
                first = await asyncio.wait_for(subscriber.queue.get(), SHUTDOWN_POLL_S)
            except TimeoutError:
                continue
            await asyncio.sleep(COALESCE_S)
            items = [first]
            while not subscriber.queue.empty():
                items.append(subscriber.queue.get_nowait())
            if sites is not None:  # a caller of some sites: only their events
                items = [item for item in items if item[1].get("site") in sites]
            if subscriber.overflowed:
                subscriber.overflowed = False
                yield {"event": "resync", "data": "{}"}
                continue
            if not items:
                continue
            for event, batch in _group(items).items():
                yield {"event": event, "data": orjson.dumps(batch).decode()}
    finally:
        events.unsubscribe(subscriber)


@router.get("/api/events")
@policy("sites")
async def event_stream(request: Request) -> EventSourceResponse:
    """Server-sent events: alarm transitions and device online/offline changes (viewer)."""
    user = resolve(request)
    events: EventHub | None = getattr(request.app.state, "events", None)
    if events is None:
        raise HTTPException(503, detail={"error": "unavailable",
                                         "message": "live events are not enabled"})
    shutdown = anyio.Event()
    return EventSourceResponse(
        _stream(events, user, shutdown), ping=PING_S, shutdown_event=shutdown,
        shutdown_grace_period=2 * SHUTDOWN_POLL_S,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
